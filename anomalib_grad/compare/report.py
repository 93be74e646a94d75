"""The comparison report: per model and category, per model (mean over categories), and scaling tables.

Written as ``comparison.md``, ``comparison.csv`` (one row per model and category) and ``comparison.json``
(everything, raw records included) after every finished cell, so a partial comparison is readable too.

Example:
    >>> tables = build_tables(plan, records)  # doctest: +SKIP
    >>> tables["summary"][0]["model"]  # doctest: +SKIP
    'grad'
"""

import csv
import math
from pathlib import Path
from typing import Any

from anomalib_grad.callbacks.per_category_metrics import MEAN_ROW, METRIC_NAMES
from anomalib_grad.compare.plan import ComparisonPlan
from anomalib_grad.compare.records import write_json_atomic, write_text_atomic

GPU_COST_NAMES = ("peak_train_gpu_mb", "peak_test_gpu_mb")  # shown only when some model ran on a CUDA device
COST_NAMES = (
    "train_s",
    "test_s",
    "peak_train_mb",
    "peak_test_mb",
    *GPU_COST_NAMES,
    "model_mb",
    "torch_img_s",
    "openvino_img_s",
)
DETAIL_COLUMNS = ("model", "category", "n_train", *METRIC_NAMES, *COST_NAMES, "status")
SUMMARY_COLUMNS = ("model", "categories", *METRIC_NAMES, *COST_NAMES, "status")
SCALING_COLUMNS = (
    "model",
    "group",
    "fraction",
    "n_train",
    "model_mb",
    "train_s",
    "torch_img_s",
    "openvino_img_s",
    "image_AUROC",
    "pixel_AUROC",
)


def _costs(record: dict[str, Any]) -> dict[str, Any]:
    """The cost columns of a successful record."""
    openvino = record.get("openvino") or {}
    return {
        "train_s": record["fit_s"],
        "test_s": record["test_s"],
        "peak_train_mb": record["peak_train_mb"],
        "peak_test_mb": record["peak_test_mb"],
        **{name: math.nan if record.get(name) is None else record[name] for name in GPU_COST_NAMES},
        "model_mb": record["model_mb"],
        "torch_img_s": record["torch"]["images_per_s"],
        "openvino_img_s": openvino.get("images_per_s", math.nan),
    }


def _status(record: dict[str, Any]) -> str:
    if record["status"] != "ok":
        return f"failed: {record['error']}"
    return f"OpenVINO export failed: {record['openvino_error']}" if record.get("openvino_error") else "ok"


def _finite(values: list[float]) -> list[float]:
    return [value for value in values if value is not None and not math.isnan(value)]


def _mean(values: list[float]) -> float:
    finite = _finite(values)
    return sum(finite) / len(finite) if finite else math.nan


def _largest(values: list[float]) -> float:
    return max(_finite(values), default=math.nan)


def has_gpu_memory(rows: list[dict[str, Any]]) -> bool:
    """Whether any row has a peak GPU memory (a model trained or tested on a CUDA device)."""
    return any(_finite([row.get(name, math.nan) for name in GPU_COST_NAMES]) for row in rows)


def _shown(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The columns to write: the GPU memory columns only when some row has them."""
    return columns if has_gpu_memory(rows) else tuple(name for name in columns if name not in GPU_COST_NAMES)


def build_tables(plan: ComparisonPlan, records: dict[str, dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Turn the finished cells' records into the report's tables.

    Args:
        plan: The comparison plan.
        records: Finished records by cell key (see :class:`~anomalib_grad.compare.records.ResultsFolder`).

    Returns:
        ``{"detail": ..., "summary": ..., "scaling": ...}``: rows per model and category at the largest
        training fraction; per model, metrics averaged over categories, times and model sizes summed over
        the models trained, peak memory the largest, throughput averaged; and per model, group and
        fraction the costs vs number of training images (only when the plan has several fractions).
    """
    detail, summary, scaling = [], [], []
    for model in plan.models:
        model_rows, model_costs, statuses = [], [], []
        for cell in (cell for cell in plan.cells() if cell.model == model):
            record = records.get(cell.key)
            if record is None:
                continue
            ok = record["status"] == "ok"
            category_rows = [row for row in record.get("rows", []) if row["category"] != MEAN_ROW] if ok else []
            costs = _costs(record) if ok else {}
            if cell.fraction == plan.full_fraction:
                statuses.append(_status(record))
                if ok:
                    model_costs.append(costs)
                    model_rows += category_rows
                categories = [row["category"] for row in category_rows] or [cell.category]
                for index, category in enumerate(categories):
                    row = {"model": model, "category": category, "n_train": record.get("n_train", math.nan)}
                    row |= {name: category_rows[index][name] if ok else math.nan for name in METRIC_NAMES}
                    shared = index == 0  # a unified model's costs are given once, on its first category
                    row |= {name: costs.get(name, math.nan) if shared else math.nan for name in COST_NAMES}
                    detail.append(row | {"status": _status(record)})
            if ok and len(plan.train_fractions) > 1:
                scaling.append(
                    {
                        "model": model,
                        "group": cell.category,
                        "fraction": cell.fraction,
                        "n_train": record["n_train"],
                        **{name: costs[name] for name in ("model_mb", "train_s", "torch_img_s", "openvino_img_s")},
                        "image_AUROC": _mean([row["image_AUROC"] for row in category_rows]),
                        "pixel_AUROC": _mean([row["pixel_AUROC"] for row in category_rows]),
                    }
                )
        if not statuses:
            continue
        row = {"model": model, "categories": len({row["category"] for row in model_rows})}
        row |= {name: _mean([item[name] for item in model_rows]) for name in METRIC_NAMES}
        for name in COST_NAMES:
            values = [costs[name] for costs in model_costs]
            total = sum if name in {"train_s", "test_s", "model_mb"} else _largest if "peak" in name else _mean
            row[name] = total(values) if values else math.nan
        failed = [status for status in statuses if status != "ok"]
        row["status"] = "; ".join(failed) if failed else "ok"
        summary.append(row)
    return {"detail": detail, "summary": summary, "scaling": scaling}


def _cell(value: Any, name: str) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        return f"{value:.4f}" if name in METRIC_NAMES else f"{value:g}" if name == "fraction" else f"{value:.1f}"
    return str(value).replace("|", "/")


def markdown_table(rows: list[dict[str, Any]], columns: tuple[str, ...]) -> str:
    """Rows as a Markdown table (``–`` where a value is undefined or not measured)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_cell(row.get(name, math.nan), name) for name in columns) + " |" for row in rows]
    return "\n".join(lines)


def write_report(plan: ComparisonPlan, records: dict[str, dict[str, Any]], folder: Path) -> dict[str, Path]:
    """Write the Markdown, CSV and JSON report into ``folder``.

    Returns:
        The paths written, by format.
    """
    tables = build_tables(plan, records)
    setting = "unified (one model for all categories)" if plan.unified else "one model per category"
    gpu_memory = ", peak GPU MB the most torch allocated on the GPU" if has_gpu_memory(tables["detail"]) else ""
    done = sum(1 for cell in plan.cells() if cell.key in records)
    sections = [
        f"# Comparison: {', '.join(plan.models)} on {', '.join(plan.categories)}",
        f"{setting}; image size {plan.image_size[0]}×{plan.image_size[1]}; {done} of {len(plan.cells())} cells "
        f"finished. Costs: train/test s are wall times; peak MB is the resident memory of the process and its "
        f"data-loader workers{gpu_memory}; model MB is the state dict; img/s at batch {plan.throughput_batch_size} "
        f"({'OpenVINO FP32 on the CPU' if plan.openvino else 'no OpenVINO export'}).",
        "## Per model (metrics and img/s: mean over categories; s and model MB: total; peak MB: largest)",
        markdown_table(tables["summary"], _shown(SUMMARY_COLUMNS, tables["summary"])),
        "## Per model and category",
        markdown_table(tables["detail"], _shown(DETAIL_COLUMNS, tables["detail"])),
    ]
    if tables["scaling"]:
        sections += [
            "## Scaling with the number of training images",
            markdown_table(tables["scaling"], SCALING_COLUMNS),
        ]
    paths = {"md": folder / "comparison.md", "csv": folder / "comparison.csv", "json": folder / "comparison.json"}
    write_text_atomic(paths["md"], "\n\n".join(sections) + "\n")
    temporary = paths["csv"].with_suffix(".csv.tmp")
    with temporary.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=_shown(DETAIL_COLUMNS, tables["detail"]), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(tables["detail"])
    temporary.replace(paths["csv"])
    write_json_atomic(paths["json"], {"plan": plan.to_dict(), **tables, "records": records})
    return paths
