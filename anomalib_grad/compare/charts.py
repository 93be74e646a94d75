"""The comparison's pictures: accuracy-vs-speed bubble chart, anomaly-map grid and scaling curves.

Example:
    >>> bubble_chart(tables["summary"], Path("results/compare/bubble_chart.png"))  # doctest: +SKIP
"""

import math
from pathlib import Path
from typing import Any

import matplotlib as mpl
import numpy as np
from matplotlib.figure import Figure

from anomalib_grad.compare.report import has_gpu_memory
from anomalib_grad.writers import atomic_path


def _save(figure: Figure, path: Path) -> Path:
    with atomic_path(path) as temporary:
        figure.savefig(temporary, format=path.suffix.lstrip("."), dpi=110, bbox_inches="tight")
    return path


def bubble_chart(summary: list[dict[str, Any]], path: Path) -> Path | None:
    """Throughput vs mean image AUROC per model, bubble area proportional to peak memory (paper's Fig. 5).

    The memory is the peak GPU memory when every model ran on a CUDA device, else the peak memory
    the process and its data-loader workers allocated (see :mod:`anomalib_grad.compare.memory`).

    Args:
        summary: The report's summary rows.
        path: PNG to write.

    Returns:
        The path, or ``None`` when no model has both numbers.
    """
    rows = [row for row in summary if not math.isnan(row["image_AUROC"]) and not math.isnan(row["torch_img_s"])]
    if not rows:
        return None
    kind = "_gpu" if all(has_gpu_memory([row]) for row in rows) else ""  # one unit for every bubble
    memories = [max(row[f"peak_train{kind}_mb"], row[f"peak_test{kind}_mb"]) for row in rows]
    figure = Figure(figsize=(6.4, 4.4))  # no pyplot: the charts leave the caller's backend alone
    axes = figure.subplots()
    for row, memory in zip(rows, memories, strict=True):
        speed = row["openvino_img_s"] if not math.isnan(row["openvino_img_s"]) else row["torch_img_s"]
        axes.scatter(speed, row["image_AUROC"], s=2000 * memory / max(memories), alpha=0.45)
        label = f"{row['model']}\n{memory:.0f} MB{' GPU' if kind else ''}"
        axes.annotate(label, (speed, row["image_AUROC"]), ha="center", va="center")
    axes.set_xlabel("inference throughput, images/s (OpenVINO FP32 where exported, else torch)")
    axes.set_ylabel("mean image AUROC")
    axes.set_title(f"Accuracy vs speed; bubble area = peak {'GPU ' if kind else ''}memory")
    axes.margins(0.25)
    return _save(figure, path)


def anomaly_map_grid(examples: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """One row per test image: the image, its ground truth, then each model's normalised anomaly map.

    Args:
        examples: Per model, ``{"images", "masks", "maps"}`` arrays and ``"described"`` (category and
            path per image); the same images for every model.
        path: PNG to write.

    Returns:
        The path, or ``None`` without examples.
    """
    if not examples:
        return None
    models = list(examples)
    first = examples[models[0]]
    rows, columns = len(first["images"]), 2 + len(models)
    figure = Figure(figsize=(2.1 * columns, 2.1 * rows + 0.4), layout="constrained")
    grid = figure.subplots(rows, columns, squeeze=False)
    for row in range(rows):
        panels = [first["images"][row], first["masks"][row], *(examples[model]["maps"][row] for model in models)]
        titles = ["image", "ground truth", *models]
        for column, (panel, title) in enumerate(zip(panels, titles, strict=True)):
            axes = grid[row, column]
            is_map = column >= 2
            axes.imshow(
                np.asarray(panel, dtype=np.float32) if is_map else panel,
                cmap="jet" if is_map else "gray",
                vmin=0,
                vmax=1 if column else None,
            )
            axes.set_xticks([])
            axes.set_yticks([])
            if row == 0:
                axes.set_title(title)
        described = first["described"][row]
        grid[row, 0].set_ylabel(f"{described['category']}\n{Path(described['image_path']).parent.name}")
    figure.suptitle("Normalised anomaly maps (0.5 = each model's threshold)")
    return _save(figure, path)


def scaling_chart(scaling: list[dict[str, Any]], path: Path) -> Path | None:
    """Model size, training time and torch throughput vs number of training images, per model and group.

    Returns:
        The path, or ``None`` without scaling rows.
    """
    if not scaling:
        return None
    panels = [("model_mb", "model size (MB)"), ("train_s", "training time (s)"), ("torch_img_s", "torch images/s")]
    figure = Figure(figsize=(4.2 * len(panels), 3.6))
    axes = figure.subplots(1, len(panels))
    models = list(dict.fromkeys(row["model"] for row in scaling))
    groups = list(dict.fromkeys(row["group"] for row in scaling))
    line_styles = ["-", "--", ":", "-."]
    for model_index, model in enumerate(models):
        for group_index, group in enumerate(groups):
            points = sorted(
                (row for row in scaling if (row["model"], row["group"]) == (model, group)),
                key=lambda row: row["n_train"],
            )
            for (name, label), panel in zip(panels, axes, strict=True):
                panel.plot(
                    [row["n_train"] for row in points],
                    [row[name] for row in points],
                    color=f"C{model_index}",
                    linestyle=line_styles[group_index % len(line_styles)],
                    marker="o",
                    label=f"{model} ({group})",
                )
                panel.set_xlabel("training images")
                panel.set_ylabel(label)
    axes[0].set_yscale("log")  # a memory bank's growth stays visible next to a large constant model
    axes[0].yaxis.set_major_locator(mpl.ticker.LogLocator(subs=(1.0, 2.0, 5.0)))
    axes[0].yaxis.set_major_formatter(mpl.ticker.ScalarFormatter())
    axes[0].yaxis.set_minor_formatter(mpl.ticker.NullFormatter())
    handles, labels = axes[0].get_legend_handles_labels()
    figure.legend(handles, labels, loc="lower center", ncol=len(models), fontsize="small", bbox_to_anchor=(0.5, -0.02))
    figure.tight_layout(rect=(0, 0.06 * len(groups), 1, 1))
    return _save(figure, path)
