"""The comparison report: per model and category, per model (mean over categories), and scaling tables.

Written as ``comparison.md``, ``comparison.csv`` (one row per model and category) and ``comparison.json``
(everything, raw records included) after every finished cell, so a partial comparison is readable too.

Example:
    >>> tables = build_tables(plan, records)  # doctest: +SKIP
    >>> tables["summary"][0]["model"]  # doctest: +SKIP
    'grad'
"""

import math
import statistics
from pathlib import Path
from typing import Any

from anomalib_grad.callbacks.per_category_metrics import MEAN_ROW, METRIC_NAMES
from anomalib_grad.compare.cell_record import CellRecord
from anomalib_grad.compare.plan import Cell, ComparisonPlan
from anomalib_grad.writers import markdown_table, write_csv_atomic, write_json_atomic, write_text_atomic

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
FUSION_NAMES = ("fusion_weight", "abnormal_contribution")  # Grad's abnormal path at inference; NaN for others
DETAIL_COLUMNS = ("model", "category", "n_train", "seeds", *METRIC_NAMES, *FUSION_NAMES, *COST_NAMES, "status")
SUMMARY_COLUMNS = ("model", "categories", "seeds", *METRIC_NAMES, *FUSION_NAMES, *COST_NAMES, "status")
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
STD_SUFFIX = "_std"


def _or_nan(value: float | None) -> float:
    return math.nan if value is None else value


def _costs(record: CellRecord) -> dict[str, Any]:
    """The cost columns of a successful record."""
    openvino = record.openvino or {}
    return {
        "train_s": record.fit_s,
        "test_s": record.test_s,
        "peak_train_mb": record.peak_train_mb,
        "peak_test_mb": record.peak_test_mb,
        "peak_train_gpu_mb": _or_nan(record.peak_train_gpu_mb),
        "peak_test_gpu_mb": _or_nan(record.peak_test_gpu_mb),
        "model_mb": record.model_mb,
        "torch_img_s": record.torch["images_per_s"],
        "openvino_img_s": openvino.get("images_per_s", math.nan),
    }


def _status(record: CellRecord) -> str:
    if not record.ok:
        return f"failed: {record.error}"
    return f"OpenVINO export failed: {record.openvino_error}" if record.openvino_error else "ok"


def _finite(values: list[float]) -> list[float]:
    return [value for value in values if value is not None and not math.isnan(value)]


def _mean(values: list[float]) -> float:
    finite = _finite(values)
    return sum(finite) / len(finite) if finite else math.nan


def _std(values: list[float]) -> float:
    """Sample standard deviation over seeds (NaN for fewer than two values)."""
    finite = _finite(values)
    return statistics.stdev(finite) if len(finite) > 1 else math.nan


def _fusion(record: CellRecord) -> dict[str, float]:
    fusion = record.fusion or {}
    return {name: _or_nan(fusion.get(name)) for name in FUSION_NAMES}


def _largest(values: list[float]) -> float:
    return max(_finite(values), default=math.nan)


def has_gpu_memory(rows: list[dict[str, Any]]) -> bool:
    """Whether any row has a peak GPU memory (a model trained or tested on a CUDA device)."""
    return any(_finite([row.get(name, math.nan) for name in GPU_COST_NAMES]) for row in rows)


def _shown(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> tuple[str, ...]:
    """The columns to write: the GPU memory columns only when some row has them."""
    return columns if has_gpu_memory(rows) else tuple(name for name in columns if name not in GPU_COST_NAMES)


def _seed_records(
    plan: ComparisonPlan, records: dict[str, CellRecord], model: str, group: str, fraction: float
) -> list[CellRecord]:
    """The finished records of one model, group and fraction, one per seed that ran."""
    cells = (Cell(model, group, fraction, seed) for seed in plan.seeds)
    return [records[cell.key] for cell in cells if cell.key in records]


def _category_rows(record: CellRecord) -> list[dict[str, Any]]:
    """A successful record's metric rows per category (its mean row left out)."""
    return [row for row in record.rows if row["category"] != MEAN_ROW]


def _status_of(records: list[CellRecord]) -> str:
    failed = list(dict.fromkeys(status for status in map(_status, records) if status != "ok"))
    return "; ".join(failed) if failed else "ok"


def _detail_rows(model: str, group: str, runs: list[CellRecord]) -> list[dict[str, Any]]:
    """Rows per category of one model and group: metrics as mean and std over seeds, costs as mean."""
    ok = [record for record in runs if record.ok]
    per_seed = [_category_rows(record) for record in ok]
    categories = [row["category"] for row in per_seed[0]] if per_seed else [group]
    costs = [_costs(record) for record in ok]
    rows = []
    for index, category in enumerate(categories):
        row: dict[str, Any] = {"model": model, "category": category, "n_train": _or_nan(runs[0].n_train)}
        row["seeds"] = len(ok)
        for name in METRIC_NAMES:
            values = [seed_rows[index][name] for seed_rows in per_seed]
            row[name], row[name + STD_SUFFIX] = _mean(values), _std(values)
        row |= {name: _mean([_fusion(record)[name] for record in ok]) for name in FUSION_NAMES}
        shared = index == 0  # a unified model's costs are given once, on its first category
        row |= {name: _mean([cost[name] for cost in costs]) if shared else math.nan for name in COST_NAMES}
        rows.append(row | {"status": _status_of(runs)})
    return rows


def _summary_row(plan: ComparisonPlan, model: str, records: dict[str, CellRecord]) -> dict[str, Any] | None:
    """One model's row: per seed the mean over categories, then mean ± std over seeds; costs per seed, averaged."""
    runs = {group: _seed_records(plan, records, model, group, plan.full_fraction) for group in plan.training_groups}
    if not any(runs.values()):
        return None
    per_seed_metrics: list[dict[str, float]] = []
    per_seed_costs: list[dict[str, float]] = []
    categories: set[str] = set()
    for seed in plan.seeds:
        seed_records = [records.get(Cell(model, group, plan.full_fraction, seed).key) for group in runs]
        ok = [record for record in seed_records if record is not None and record.ok]
        if not ok:
            continue
        rows = [row for record in ok for row in _category_rows(record)]
        categories |= {row["category"] for row in rows}
        per_seed_metrics.append({name: _mean([row[name] for row in rows]) for name in METRIC_NAMES})
        costs = [_costs(record) for record in ok]
        summed = {"train_s", "test_s", "model_mb"}
        per_seed_costs.append(
            {
                name: (sum if name in summed else _largest if "peak" in name else _mean)([c[name] for c in costs])
                for name in COST_NAMES
            }
        )
    row: dict[str, Any] = {"model": model, "categories": len(categories), "seeds": len(per_seed_metrics)}
    for name in METRIC_NAMES:
        values = [metrics[name] for metrics in per_seed_metrics]
        row[name], row[name + STD_SUFFIX] = _mean(values), _std(values)
    all_runs = [record for group_runs in runs.values() for record in group_runs if record.ok]
    row |= {name: _mean([_fusion(record)[name] for record in all_runs]) for name in FUSION_NAMES}
    for name in COST_NAMES:
        values = [costs[name] for costs in per_seed_costs]
        row[name] = (_largest if "peak" in name else _mean)(values) if values else math.nan
    row["status"] = _status_of([record for group_runs in runs.values() for record in group_runs])
    return row


def build_tables(plan: ComparisonPlan, records: dict[str, CellRecord]) -> dict[str, list[dict[str, Any]]]:
    """Turn the finished cells' records into the report's tables.

    Args:
        plan: The comparison plan.
        records: Finished records by cell key (see :class:`~anomalib_grad.compare.records.ResultsFolder`).

    Returns:
        ``{"detail": ..., "summary": ..., "scaling": ...}``: rows per model and category at the largest
        training fraction (metrics: mean over seeds, with ``<metric>_std``; costs: mean over seeds); per
        model, the metrics averaged over categories per seed, then mean and std over seeds, times and model
        sizes summed over the models trained (per seed, then averaged), peak memory the largest, throughput
        averaged; and per model, group and fraction the costs vs number of training images, averaged over
        seeds (only when the plan has several fractions).
    """
    detail, summary, scaling = [], [], []
    for model in plan.models:
        for group in plan.training_groups:
            runs = _seed_records(plan, records, model, group, plan.full_fraction)
            if runs:
                detail += _detail_rows(model, group, runs)
        row = _summary_row(plan, model, records)
        if row is not None:
            summary.append(row)
        if len(plan.train_fractions) < 2:
            continue
        for fraction in reversed(plan.train_fractions):
            for group in plan.training_groups:
                ok = [record for record in _seed_records(plan, records, model, group, fraction) if record.ok]
                if not ok:
                    continue
                costs = [_costs(record) for record in ok]
                row = {"model": model, "group": group, "fraction": fraction, "n_train": ok[0].n_train}
                row |= {name: _mean([cost[name] for cost in costs]) for name in SCALING_COLUMNS[4:8]}
                for name in ("image_AUROC", "pixel_AUROC"):
                    row[name] = _mean([_mean([item[name] for item in _category_rows(record)]) for record in ok])
                scaling.append(row)
    return {"detail": detail, "summary": summary, "scaling": scaling}


def _cell(row: dict[str, Any], name: str) -> str:
    value = row.get(name, math.nan)
    if isinstance(value, float):
        if math.isnan(value):
            return "–"
        if name in METRIC_NAMES or name in FUSION_NAMES:
            spread = row.get(name + STD_SUFFIX, math.nan)
            return f"{value:.4f}" if math.isnan(spread) else f"{value:.4f} ± {spread:.4f}"
        return f"{value:g}" if name == "fraction" else f"{value:.1f}"
    return str(value).replace("|", "/")


def write_report(plan: ComparisonPlan, records: dict[str, CellRecord], folder: Path) -> dict[str, Path]:
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
        f"{setting}; image size {plan.image_size[0]}×{plan.image_size[1]}; seeds {plan.seeds} (metrics: mean ± std "
        f"over seeds); {done} of {len(plan.cells())} cells finished. fusion_weight / abnormal_contribution: Grad's "
        "fusion weight and ‖w·x̂_a‖ / ‖x̂_n‖ on the validation images (how much the abnormal grid changes the "
        "reconstruction). Costs: train/test s are wall times; peak MB is the memory the process and its "
        "data-loader workers allocated (PSS of anonymous and shared-memory pages summed: pages shared with the "
        f"workers count once, library code not at all){gpu_memory}; model MB is the state dict; "
        f"img/s at batch {plan.throughput_batch_size} "
        f"({'OpenVINO FP32 on the CPU' if plan.openvino else 'no OpenVINO export'}).",
        "## Per model (metrics and img/s: mean over categories; s and model MB: total; peak MB: largest)",
        markdown_table(tables["summary"], _shown(SUMMARY_COLUMNS, tables["summary"]), _cell),
        "## Per model and category",
        markdown_table(tables["detail"], _shown(DETAIL_COLUMNS, tables["detail"]), _cell),
    ]
    if tables["scaling"]:
        sections += [
            "## Scaling with the number of training images",
            markdown_table(tables["scaling"], SCALING_COLUMNS, _cell),
        ]
    paths = {"md": folder / "comparison.md", "csv": folder / "comparison.csv", "json": folder / "comparison.json"}
    write_text_atomic(paths["md"], "\n\n".join(sections) + "\n")
    columns = [*_shown(DETAIL_COLUMNS, tables["detail"]), *(name + STD_SUFFIX for name in METRIC_NAMES)]
    write_csv_atomic(paths["csv"], tables["detail"], columns)
    raw = {key: record.to_dict() for key, record in records.items()}  # as the record files hold them
    write_json_atomic(paths["json"], {"plan": plan.to_dict(), **tables, "records": raw})
    return paths
