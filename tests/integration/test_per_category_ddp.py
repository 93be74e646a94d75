"""PerCategoryMetrics under DDP: ranks that see different categories, or only one label of a category."""

import json
import math
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from anomalib.metrics import AUPR, AUPRO, AUROC, F1Max

from tests.per_category_ddp_script import batch, predictions

SCRIPT = Path(__file__).parents[1] / "per_category_ddp_script.py"
ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def run_ranks(world_size: int, out: Path) -> list[list[dict]]:
    port = str(free_port())
    processes = [
        subprocess.Popen(
            [sys.executable, str(SCRIPT), str(rank), str(world_size), port, str(out)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for rank in range(world_size)
    ]
    try:
        for process in processes:
            _, stderr = process.communicate(timeout=120)  # a rank waiting on a collective the other skipped hangs
            assert process.returncode == 0, stderr[-3000:]
    finally:
        for process in processes:
            process.kill()
    return [json.loads((out / f"results.{rank}.json").read_text()) for rank in range(world_size)]


def expected_row(category: str) -> dict:
    """The row computed directly with anomalib's metric classes on all of the category's images at once."""
    images = [image for image in predictions() if image["category"] == category]
    whole = batch(images)
    image, pixel = ["pred_score", "gt_label"], ["anomaly_map", "gt_mask"]
    metrics = {
        "image_AUROC": AUROC(fields=image),
        "image_AUPR": AUPR(fields=image),
        "image_F1Max": F1Max(fields=image),
        "pixel_AUROC": AUROC(fields=pixel),
        "pixel_AUPR": AUPR(fields=pixel),
        "pixel_AUPRO": AUPRO(fields=pixel),
    }
    row = {"n_normal": sum(1 - image["label"] for image in images), "n_defective": sum(i["label"] for i in images)}
    for name, metric in metrics.items():
        metric.update(whole)
        row[name] = float(metric.compute())
    return row


def test_two_ranks_with_different_categories_report_what_one_process_reports(tmp_path):
    rank0, rank1 = run_ranks(2, tmp_path / "ddp")
    (single,) = run_ranks(1, tmp_path / "single")
    assert rank0 == rank1  # every rank ends with the same table ...
    assert [row["category"] for row in rank0] == ["a", "b", "c", "mean"]  # ... of every category of every rank
    for row in rank0[:-1]:
        expected = expected_row(row["category"])
        assert (row["n_normal"], row["n_defective"]) == (expected["n_normal"], expected["n_defective"]) == (6, 6)
        for name in ("image_AUROC", "image_AUPR", "image_F1Max", "pixel_AUROC", "pixel_AUPR", "pixel_AUPRO"):
            assert row[name] == pytest.approx(expected[name], abs=1e-6), (row["category"], name)
    # c: rank 0 holds only its normal images and rank 1 only its defective ones, yet c is ranked, not NaN
    assert not math.isnan(rank0[2]["image_AUROC"]) and rank0[2]["note"] == ""
    for ddp_row, single_row in zip(rank0, single, strict=True):
        assert ddp_row.keys() == single_row.keys()
        for name, value in single_row.items():
            assert ddp_row[name] == (pytest.approx(value, abs=1e-6) if isinstance(value, float) else value)
    assert sorted(path.name for path in (tmp_path / "ddp").rglob("per_category_metrics.*")) == [
        "per_category_metrics.csv",
        "per_category_metrics.json",
    ]  # written once, by rank 0
    assert not (tmp_path / "ddp" / "rank1").exists()
