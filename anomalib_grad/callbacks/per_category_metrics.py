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

import logging
import math
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
from anomalib.data import Batch
from anomalib.metrics import AUPR, AUPRO, AUROC, F1Max
from lightning.pytorch import Callback, LightningModule, Trainer
from torch import distributed
from torchmetrics import Metric

from anomalib_grad.writers import markdown_table, write_csv_atomic, write_json_atomic

logger = logging.getLogger(__name__)

IMAGE_FIELDS = ("pred_score", "gt_label")
PIXEL_FIELDS = ("anomaly_map", "gt_mask")
METRIC_NAMES = ("image_AUROC", "image_AUPR", "image_F1Max", "pixel_AUROC", "pixel_AUPR", "pixel_AUPRO")
COLUMNS = ("category", "n_normal", "n_defective", *METRIC_NAMES, "note")
MEAN_ROW = "mean"


def _new_metrics() -> dict[str, Metric]:
    """Fresh image and pixel metrics of one category (non-strict: a missing field gives no value).

    They compute on the predictions they are given: under DDP the callback gathers every rank's
    predictions first, so the metrics must not synchronise again (AUPRO takes no ``sync_on_compute``).
    """
    image, pixel = list(IMAGE_FIELDS), list(PIXEL_FIELDS)
    metrics: dict[str, Metric] = {
        "image_AUROC": AUROC(fields=image, prefix="image_", strict=False),
        "image_AUPR": AUPR(fields=image, prefix="image_", strict=False),
        "image_F1Max": F1Max(fields=image, prefix="image_", strict=False),
        "pixel_AUROC": AUROC(fields=pixel, prefix="pixel_", strict=False),
        "pixel_AUPR": AUPR(fields=pixel, prefix="pixel_", strict=False),
        "pixel_AUPRO": AUPRO(fields=pixel, prefix="pixel_", strict=False),
    }
    for part in (part for metric in metrics.values() for part in metric.modules() if isinstance(part, Metric)):
        part.sync_on_compute = part._to_sync = False  # torchmetrics copies the flag at init; F1Max nests a metric
    return metrics


def _value(metric: Metric) -> float:
    value = metric.compute()
    return math.nan if value is None else float(value)


def _world() -> tuple[int, int]:
    """``(rank, world size)`` of the default process group, ``(0, 1)`` outside distributed runs."""
    if distributed.is_available() and distributed.is_initialized():
        return distributed.get_rank(), distributed.get_world_size()
    return 0, 1


def _merge(parts: list[SimpleNamespace]) -> SimpleNamespace:
    """One category's predictions, concatenated (a field is ``None`` if any part lacks it)."""
    return SimpleNamespace(
        **{
            field: None
            if any(getattr(part, field) is None for part in parts)
            else torch.cat([getattr(part, field) for part in parts])
            for field in (*IMAGE_FIELDS, *PIXEL_FIELDS)
        },
    )


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
        self._parts: dict[str, list[SimpleNamespace]] = {}
        self._lookup: dict[str, str] = {}
        self._default_category = "all"
        self._pending: Batch | None = None

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Reset the predictions and read the image-to-category map of the datamodule."""
        del pl_module
        datamodule = getattr(trainer, "datamodule", None)
        lookup = getattr(datamodule, "category_lookup", None)
        self._lookup = lookup() if callable(lookup) else {}
        self._default_category = str(getattr(datamodule, "category", "") or "all")
        self._parts, self._pending = {}, None

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
            self._parts.setdefault(category, []).append(part)

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Compute the per-category table over every rank's predictions; print and save it on rank 0.

        Under DDP each rank holds the predictions of its own share of the test images, and a rank may see
        only some of the categories (a unified test set split unevenly): rank 0 gathers all of them, computes
        the table once and sends it back, so every rank ends with the same :attr:`results`.
        """
        del pl_module
        self._consume_pending()
        predictions = {category: _merge(parts) for category, parts in self._parts.items()}
        rank, world_size = _world()
        if world_size > 1:
            gathered: list[dict[str, SimpleNamespace]] | None = [{}] * world_size if rank == 0 else None
            distributed.gather_object(predictions, gathered, dst=0)
            if gathered is not None:
                categories = sorted({category for part in gathered for category in part})
                predictions = {
                    category: _merge([part[category] for part in gathered if category in part])
                    for category in categories
                }
        results = None
        if rank == 0:
            results = [_category_row(category, predictions[category]) for category in sorted(predictions)]
            results.append(mean_row(results))
        if world_size > 1:
            shared = [results]
            distributed.broadcast_object_list(shared, src=0)
            results = shared[0]
        self.results = results
        if rank != 0:
            return
        if self.print_table:
            print(format_table(self.results))
        output_dir = Path(trainer.log_dir or trainer.default_root_dir)
        self.output_files = write_results(self.results, output_dir, self.file_stem)
        logger.info("Per-category metrics written to %s", [str(path) for path in self.output_files])


def _category_row(category: str, predictions: SimpleNamespace) -> dict[str, Any]:
    """The table row of one category from all of its test predictions."""
    labels = predictions.gt_label
    labels = torch.zeros(0) if labels is None else labels
    n_normal, n_defective = int((labels == 0).sum()), int((labels == 1).sum())
    row: dict[str, Any] = {"category": category, "n_normal": n_normal, "n_defective": n_defective}
    if n_defective == 0 or n_normal == 0:
        missing = "defective" if n_defective == 0 else "normal"
        row |= dict.fromkeys(METRIC_NAMES, math.nan)
        row["note"] = f"no {missing} test images: metrics undefined (NaN)"
        return row
    metrics = _new_metrics()
    for metric in metrics.values():
        metric.update(predictions)
    row |= {name: _value(metric) for name, metric in metrics.items()}
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
    return markdown_table(rows, COLUMNS)


def write_results(rows: list[dict[str, Any]], output_dir: Path, file_stem: str) -> list[Path]:
    """Write rows as CSV (NaN as ``nan``) and JSON (NaN as ``null``), each atomically.

    Args:
        rows (list[dict[str, Any]]): Rows with the keys of :data:`COLUMNS`.
        output_dir (Path): Folder to write into (created if needed).
        file_stem (str): File name without extension.

    Returns:
        list[Path]: The CSV and JSON paths.
    """
    csv_path, json_path = output_dir / f"{file_stem}.csv", output_dir / f"{file_stem}.json"
    write_csv_atomic(csv_path, rows, COLUMNS)
    write_json_atomic(json_path, {"categories": rows[:-1], "mean": rows[-1]})
    return [csv_path, json_path]
