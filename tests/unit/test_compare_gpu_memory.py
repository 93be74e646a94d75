"""Peak GPU memory in ``anomalib-grad compare``: measured on a CUDA device, reported only where measured.

The CI machine has no GPU: the measurement is checked against torch's CUDA memory counters (replaced
here), and the report with records as a cell writes them on a GPU and on a CPU.
"""

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from PIL import Image

from anomalib_grad.callbacks.per_category_metrics import MEAN_ROW, METRIC_NAMES
from anomalib_grad.compare import CellRecord, ComparisonPlan
from anomalib_grad.compare.charts import bubble_chart
from anomalib_grad.compare.memory import MEGABYTE, PeakMemory
from anomalib_grad.compare.report import build_tables, write_report

PLAN = ComparisonPlan(models=["grad", "padim"], categories=["a", "b"], openvino=False)


def record(key: str, gpu_mb: tuple[float, float] | None) -> dict:
    """A successful cell record file, as ``run_cell`` writes it (GPU fields ``None`` on a CPU)."""
    model, category, _, seed = key.split("__")
    rows = [{"category": name, **dict.fromkeys(METRIC_NAMES, 0.9)} for name in (category, MEAN_ROW)]
    return {
        "cell": {"model": model, "category": category, "fraction": 1.0, "seed": int(seed.removeprefix("seed"))},
        "status": "ok",
        "rows": rows,
        "n_train": 10,
        "fit_s": 1.0,
        "test_s": 1.0,
        "peak_train_mb": 3000.0,
        "peak_test_mb": 2000.0,
        "peak_train_gpu_mb": None if gpu_mb is None else gpu_mb[0],
        "peak_test_gpu_mb": None if gpu_mb is None else gpu_mb[1],
        "model_mb": 32.0,
        "torch": {"images_per_s": 100.0},
        "openvino": None,
    }


def records(gpu: bool, drop: tuple[str, ...] = ()) -> dict[str, CellRecord]:
    """Per-category cells of two models; on a GPU, padim's larger peak is on category ``b``; ``drop``: keys left out."""
    memory = {"grad__a__1__seed0": (900.0, 400.0), "grad__b__1__seed0": (950.0, 300.0)}
    memory |= {"padim__a__1__seed0": (500.0, 700.0), "padim__b__1__seed0": (600.0, 1200.0)}
    files = {key: record(key, gpu_mb if gpu else None) for key, gpu_mb in memory.items()}
    return {key: CellRecord.from_dict({k: v for k, v in data.items() if k not in drop}) for key, data in files.items()}


def test_peak_gpu_memory_is_read_from_torch_on_a_cuda_device(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device: calls.append(("reset", device)))
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device: 256 * MEGABYTE)
    cuda = torch.device("cuda")
    with PeakMemory(device=cuda) as memory:
        calls.append("block")
    assert calls == [("reset", cuda), "block"]  # the peak is reset before the block runs
    assert memory.peak_gpu_mb == 256
    with PeakMemory(device=torch.device("cpu")) as memory:
        pass
    assert memory.peak_gpu_mb is None
    assert memory.peak_mb > 0


def test_gpu_memory_columns_appear_only_when_measured(tmp_path: Path) -> None:
    for gpu in (True, False):
        folder = tmp_path / ("gpu" if gpu else "cpu")
        folder.mkdir()
        paths = write_report(PLAN, records(gpu), folder)
        with paths["csv"].open() as file:
            header = next(csv.reader(file))
        markdown = paths["md"].read_text()
        assert ("peak_train_gpu_mb" in header) == gpu
        assert ("peak_test_gpu_mb" in markdown) == gpu
        assert ("peak GPU MB" in markdown) == gpu
        assert "peak_train_mb" in header  # host memory is always reported


def test_summary_takes_the_largest_gpu_peak_per_model() -> None:
    summary = {row["model"]: row for row in build_tables(PLAN, records(gpu=True))["summary"]}
    assert summary["grad"]["peak_train_gpu_mb"] == 950
    assert summary["padim"]["peak_test_gpu_mb"] == 1200
    cpu_summary = build_tables(PLAN, records(gpu=False))["summary"]
    assert all(math.isnan(row["peak_train_gpu_mb"]) for row in cpu_summary)


def test_old_records_without_gpu_fields_still_report(tmp_path: Path) -> None:
    old = records(gpu=False, drop=("peak_train_gpu_mb", "peak_test_gpu_mb"))
    paths = write_report(PLAN, old, tmp_path)
    detail = json.loads(paths["json"].read_text())["detail"]
    assert [row["peak_train_gpu_mb"] for row in detail] == [None] * 4


def test_bubble_chart_sizes_bubbles_by_gpu_memory_when_measured(tmp_path: Path) -> None:
    gpu_summary = build_tables(PLAN, records(gpu=True))["summary"]
    cpu_summary = build_tables(PLAN, records(gpu=False))["summary"]
    gpu_chart = bubble_chart(gpu_summary, tmp_path / "gpu.png")
    cpu_chart = bubble_chart(cpu_summary, tmp_path / "cpu.png")
    with Image.open(gpu_chart) as gpu_image, Image.open(cpu_chart) as cpu_image:
        assert gpu_image.tobytes() != cpu_image.tobytes()  # different sizes and labels


def test_bubble_chart_of_models_measured_on_gpu_and_cpu_uses_host_memory_for_all(tmp_path: Path) -> None:
    mixed = records(gpu=True)
    for key in ("padim__a__1__seed0", "padim__b__1__seed0"):  # padim ran on the CPU
        mixed[key].peak_train_gpu_mb = mixed[key].peak_test_gpu_mb = None
    chart = bubble_chart(build_tables(PLAN, mixed)["summary"], tmp_path / "mixed.png")
    cpu_chart = bubble_chart(build_tables(PLAN, records(gpu=False))["summary"], tmp_path / "cpu.png")
    with Image.open(chart) as mixed_image, Image.open(cpu_chart) as cpu_image:
        assert mixed_image.tobytes() == cpu_image.tobytes()  # host memory, the unit every model has
