"""``anomalib-grad compare --devices N``: cells in parallel, the same records as one after another."""

import json
from pathlib import Path

import pytest
import torch

from anomalib_grad.compare import ComparisonPlan, run_comparison
from anomalib_grad.compare.cli import main
from anomalib_grad.compare.runner import device_slots
from anomalib_grad.data import generate_synthetic_surfaces
from tests.conftest import SMALL_MODEL

METRICS = ("image_AUROC", "image_AUPR", "pixel_AUROC", "pixel_AUPR", "pixel_AUPRO")


def test_cpu_slots_keep_the_thread_count_of_a_single_cell(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert device_slots(1, "cpu") == [{}]
    assert device_slots(2, "cpu") == [{}, {}]  # no OMP_NUM_THREADS: the same float rounding as one cell alone


def test_gpu_slots_see_one_gpu_each(monkeypatch):
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert device_slots(2, "gpu") == [{"CUDA_VISIBLE_DEVICES": "0"}, {"CUDA_VISIBLE_DEVICES": "1"}]


@pytest.mark.parametrize(
    ("devices", "accelerator", "message"),
    [(0, "cpu", "at least 1"), (9, "cpu", "has 8 CPU core"), (3, "gpu", "has 2 GPU")],
)
def test_more_devices_than_present_is_a_clear_error(devices, accelerator, message, monkeypatch, tmp_path, capsys):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(ValueError, match=message):
        device_slots(devices, accelerator)
    arguments = ["compare", "--models", "[padim]", "--root", str(tmp_path), "--categories", "[a]"]
    assert main([*arguments, "--accelerator", accelerator, "--devices", str(devices)]) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "results").exists()  # refused before anything is written


@pytest.mark.slow
def test_parallel_cells_give_the_records_of_a_sequential_run(tmp_path):
    counts = {"num_train": 8, "num_test_good": 2, "num_test_per_defect": 2}
    for index, category in enumerate(("a", "b")):
        generate_synthetic_surfaces(tmp_path / "data", category=category, seed=index, image_size=64, **counts)
    plan = ComparisonPlan(
        models=["grad", "padim"],
        root=str(tmp_path / "data"),
        categories=["a", "b"],
        model_args={"grad": {**SMALL_MODEL, "abnormal_epochs": 1, "normal_epochs": 1}, "padim": {"pre_trained": False}},
        image_size=(64, 64),
        num_workers=0,
        timing_seconds=0.2,
        num_examples=2,
        openvino=False,
    )
    run_comparison(plan, tmp_path / "sequential")
    run_comparison(plan, tmp_path / "parallel", devices=2)

    def metrics(folder: str) -> dict[str, list[float]]:
        records = [json.loads(path.read_text()) for path in sorted((tmp_path / folder / "cells").glob("*.json"))]
        return {
            Path(record["cell"]["model"]).name + record["cell"]["category"]: [
                record["rows"][0][name] for name in METRICS
            ]
            for record in records
        }

    sequential, parallel = metrics("sequential"), metrics("parallel")
    assert len(sequential) == 4
    assert parallel.keys() == sequential.keys()
    for key, values in sequential.items():
        assert parallel[key] == pytest.approx(values, abs=1e-6), key
