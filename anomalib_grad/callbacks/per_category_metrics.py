"""Per-category evaluation of any anomalib model after ``engine.test`` / ``anomalib test``.

:class:`PerCategoryMetrics` splits the test predictions by category and computes, per category,
image AUROC / AUPR / F1-max and pixel AUROC / AUPR / AUPRO with anomalib's metric classes, plus
their mean over categories. It prints a table and writes ``per_category_metrics.csv`` and
``per_category_metrics.json`` into the run folder (the trainer's ``log_dir``, else its
``default_root_dir``, which anomalib's engine sets to ``results/<model>/<data>/<category>/vN``).

The category of each test image comes from ``datamodule.category_lookup()`` (see
:class:`~anomalib_grad.data.MultiCategory`); with any other datamodule every image belongs to
``datamodule.category``.

Each batch is read after every callback's ``on_test_batch_end`` has run, so scores are the
post-processed (normalised) ones that anomalib's own evaluator sees; a category with a single
category's images therefore reproduces anomalib's metric table.

Categories with no defective (or no normal) test images: every metric of that category is
undefined and reported as NaN (``null`` in JSON) with a note; the mean is taken over the
categories where the metric is defined.

Example:
    From Python::

        >>> from anomalib.engine import Engine
        >>> from anomalib_grad.callbacks import PerCategoryMetrics
        >>> engine = Engine(callbacks=[PerCategoryMetrics()])  # doctest: +SKIP

    From an anomalib YAML config::

        trainer:
          callbacks:
            - class_path: anomalib_grad.callbacks.PerCategoryMetrics
"""

import csv
import json
import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from anomalib.data import Batch
from anomalib.metrics import AUPR, AUPRO, AUROC, F1Max
from lightning.pytorch import Callback, LightningModule, Trainer
from torchmetrics import Metric

logger = logging.getLogger(__name__)

IMAGE_FIELDS = ("pred_score", "gt_label")
PIXEL_FIELDS = ("anomaly_map", "gt_mask")
METRIC_NAMES = ("image_AUROC", "image_AUPR", "image_F1Max", "pixel_AUROC", "pixel_AUPR", "pixel_AUPRO")
COLUMNS = ("category", "n_normal", "n_defective", *METRIC_NAMES, "note")
MEAN_ROW = "mean"


def _new_metrics() -> dict[str, Metric]:
    """Fresh image and pixel metrics of one category (non-strict: a missing field gives no value)."""
    image, pixel = list(IMAGE_FIELDS), list(PIXEL_FIELDS)
    return {
        "image_AUROC": AUROC(fields=image, prefix="image_", strict=False),
        "image_AUPR": AUPR(fields=image, prefix="image_", strict=False),
        "image_F1Max": F1Max(fields=image, prefix="image_", strict=False),
        "pixel_AUROC": AUROC(fields=pixel, prefix="pixel_", strict=False),
        "pixel_AUPR": AUPR(fields=pixel, prefix="pixel_", strict=False),
        "pixel_AUPRO": AUPRO(fields=pixel, prefix="pixel_", strict=False),
    }


def _value(metric: Metric) -> float:
    value = metric.compute()
    return math.nan if value is None else float(value)


class PerCategoryMetrics(Callback):
    """Compute image and pixel metrics per category after testing; print and save them.

    Args:
        file_stem (str): Name of the CSV and JSON files, without extension.
            Defaults to ``"per_category_metrics"``.
        print_table (bool): Print the table after testing. Defaults to ``True``.

    Attributes:
        results (list[dict[str, Any]]): After a test run, one row per category and a last
            ``"mean"`` row, with the keys of :data:`COLUMNS`.
        output_files (list[Path]): The files written by the last test run.

    Example:
        >>> callback = PerCategoryMetrics()
        >>> engine = Engine(callbacks=[callback])  # doctest: +SKIP
        >>> engine.test(model, datamodule=datamodule)  # doctest: +SKIP
        >>> callback.results[-1]["image_AUROC"]  # doctest: +SKIP
        0.97
    """

    def __init__(self, file_stem: str = "per_category_metrics", print_table: bool = True) -> None:
        super().__init__()
        self.file_stem = file_stem
        self.print_table = print_table
        self.results: list[dict[str, Any]] = []
        self.output_files: list[Path] = []
        self._metrics: dict[str, dict[str, Metric]] = {}
        self._counts: dict[str, list[int]] = {}
        self._lookup: dict[str, str] = {}
        self._default_category = "all"
        self._pending: Batch | None = None

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Reset the metrics and read the image-to-category map of the datamodule."""
        del pl_module
        datamodule = getattr(trainer, "datamodule", None)
        lookup = getattr(datamodule, "category_lookup", None)
        self._lookup = lookup() if callable(lookup) else {}
        self._default_category = str(getattr(datamodule, "category", "") or "all")
        self._metrics, self._counts, self._pending = {}, {}, None

    def on_test_batch_start(self, *args: Any, **kwargs: Any) -> None:
        """Consume the previous batch, now that every callback has post-processed it."""
        del args, kwargs
        self._consume_pending()

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the batch's predictions until the other callbacks have post-processed them."""
        del trainer, pl_module, batch, batch_idx, dataloader_idx
        self._consume_pending()
        self._pending = outputs

    def _consume_pending(self) -> None:
        batch, self._pending = self._pending, None
        if batch is None:
            return
        categories = [self._lookup.get(str(path), self._default_category) for path in batch.image_path]
        for category in dict.fromkeys(categories):
            rows = torch.tensor([index for index, name in enumerate(categories) if name == category])
            part = SimpleNamespace(
                **{
                    field: None if getattr(batch, field, None) is None else getattr(batch, field)[rows].detach().cpu()
                    for field in (*IMAGE_FIELDS, *PIXEL_FIELDS)
                },
            )
            for metric in self._metrics.setdefault(category, _new_metrics()).values():
                metric.update(part)
            labels = part.gt_label if part.gt_label is not None else torch.zeros(len(rows))
            counts = self._counts.setdefault(category, [0, 0])
            counts[0] += int((labels == 0).sum())
            counts[1] += int((labels == 1).sum())

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute, print and save the per-category table."""
        del pl_module
        self._consume_pending()
        self.results = [self._category_row(category) for category in sorted(self._metrics)]
        self.results.append(mean_row(self.results))
        if self.print_table:
            print(format_table(self.results))
        output_dir = Path(trainer.log_dir or trainer.default_root_dir)
        self.output_files = write_results(self.results, output_dir, self.file_stem)
        logger.info("Per-category metrics written to %s", [str(path) for path in self.output_files])

    def _category_row(self, category: str) -> dict[str, Any]:
        n_normal, n_defective = self._counts[category]
        row: dict[str, Any] = {"category": category, "n_normal": n_normal, "n_defective": n_defective}
        if n_defective == 0 or n_normal == 0:
            missing = "defective" if n_defective == 0 else "normal"
            row |= dict.fromkeys(METRIC_NAMES, math.nan)
            row["note"] = f"no {missing} test images: metrics undefined (NaN)"
            return row
        row |= {name: _value(metric) for name, metric in self._metrics[category].items()}
        undefined = [name for name in METRIC_NAMES if math.isnan(row[name])]
        row["note"] = f"not computed (no predictions or ground truth): {', '.join(undefined)}" if undefined else ""
        return row


def mean_row(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Average each metric over the categories where it is defined.

    Args:
        rows (list[dict[str, Any]]): Category rows.

    Returns:
        dict[str, Any]: The ``"mean"`` row (NaN where no category defines a metric).

    Example:
        >>> mean_row([{"category": "a", "n_normal": 1, "n_defective": 1, "image_AUROC": 1.0},
        ...           {"category": "b", "n_normal": 1, "n_defective": 0, "image_AUROC": float("nan")}])["image_AUROC"]
        1.0
    """
    row: dict[str, Any] = {
        "category": MEAN_ROW,
        "n_normal": sum(item["n_normal"] for item in rows),
        "n_defective": sum(item["n_defective"] for item in rows),
    }
    excluded = set()
    for name in METRIC_NAMES:
        values = [item[name] for item in rows if name in item and not math.isnan(item[name])]
        excluded |= {item["category"] for item in rows if name in item and math.isnan(item[name])}
        row[name] = sum(values) / len(values) if values else math.nan
    row["note"] = f"mean over categories with defined values; excludes {sorted(excluded)}" if excluded else ""
    return row


def format_table(rows: list[dict[str, Any]]) -> str:
    """Format result rows as a Markdown table.

    Args:
        rows (list[dict[str, Any]]): Rows with the keys of :data:`COLUMNS`.

    Returns:
        str: The table.
    """
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for row in rows:
        cells = [f"{row[name]:.4f}" if isinstance(row[name], float) else str(row[name]) for name in COLUMNS]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(rows: list[dict[str, Any]], output_dir: Path, file_stem: str) -> list[Path]:
    """Write rows as CSV (NaN as ``nan``) and JSON (NaN as ``null``).

    Args:
        rows (list[dict[str, Any]]): Rows with the keys of :data:`COLUMNS`.
        output_dir (Path): Folder to write into (created if needed).
        file_stem (str): File name without extension.

    Returns:
        list[Path]: The CSV and JSON paths.
    """
    output_dir.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = output_dir / f"{file_stem}.csv", output_dir / f"{file_stem}.json"
    with csv_path.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    clean = [
        {key: None if isinstance(value, float) and math.isnan(value) else value for key, value in row.items()}
        for row in rows
    ]
    json_path.write_text(json.dumps({"categories": clean[:-1], "mean": clean[-1]}, indent=2), encoding="utf-8")
    return [csv_path, json_path]
