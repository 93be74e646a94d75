"""Tests of ``anomalib-grad compare`` that train: runner, resume, report and charts."""

import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_grad.compare import Cell, ComparisonPlan, PlanMismatchError, run_comparison
from anomalib_grad.compare.records import ResultsFolder
from anomalib_grad.compare.runner import load_examples, run_cell_process
from tests.conftest import SMALL_MODEL

FAILING = "tests.compare_fixtures.FailingPadim"
TINY_GRAD = {**SMALL_MODEL, "abnormal_epochs": 1, "normal_epochs": 1}
FAST = {"image_size": (64, 64), "num_workers": 0, "timing_seconds": 0.2, "num_examples": 2}


def scaling_plan(root: Path) -> ComparisonPlan:
    return ComparisonPlan(
        models=["grad", "patchcore", FAILING],
        root=str(root),
        categories=["rgb"],
        train_fractions=[0.5, 1.0],
        model_args={"grad": TINY_GRAD, "patchcore": {"coreset_sampling_ratio": 0.5}, FAILING: {"pre_trained": False}},
        **FAST,
    )


@pytest.fixture(scope="module")
def comparison(compare_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ComparisonPlan, Path, dict]:
    """Grad, PatchCore and a model failing mid-training, on 50 % and 100 % of ``rgb``, OpenVINO included."""
    plan = scaling_plan(compare_root)
    output = tmp_path_factory.mktemp("comparison") / "results"
    outputs = run_comparison(plan, output)
    return plan, output, outputs


# --- runner, report, charts -----------------------------------------------------------------------------


def test_report_lists_every_model_and_records_the_failure(comparison: tuple) -> None:
    _, output, outputs = comparison
    assert {"md", "csv", "json", "bubble_chart", "map_grid", "scaling_chart"} <= set(outputs)
    report = json.loads((output / "comparison.json").read_text())
    detail = {row["model"]: row for row in report["detail"]}
    assert set(detail) == {"grad", "patchcore", FAILING}
    assert detail[FAILING]["status"] == "failed: RuntimeError: deliberate failure in training_step"
    assert detail[FAILING]["image_AUROC"] is None
    for model in ("grad", "patchcore"):
        row = detail[model]
        assert row["status"] == "ok"
        assert row["n_train"] == 8
        for name in ("image_AUROC", "image_AUPR", "image_F1Max", "pixel_AUROC", "pixel_AUPR", "pixel_AUPRO"):
            assert 0 <= row[name] <= 1
        assert row["peak_train_mb"] > row["model_mb"] > 0
        assert row["torch_img_s"] > 0
        assert row["openvino_img_s"] > 0
    assert detail["grad"]["abnormal_contribution"] > 0  # the abnormal path's share is reported for Grad
    assert -1 < detail["grad"]["fusion_weight"] < 0
    assert detail["patchcore"]["fusion_weight"] is None and detail["patchcore"]["abnormal_contribution"] is None
    assert "abnormal_contribution" in (output / "comparison.md").read_text()
    assert "deliberate failure" in (output / "comparison.md").read_text()
    assert (output / "comparison.csv").read_text().count("\n") == 4  # header + 3 models
    assert "gpu" not in (output / "comparison.csv").read_text().splitlines()[0]  # trained on the CPU


def test_scaling_memory_bank_grows_grid_does_not(comparison: tuple) -> None:
    _, output, _ = comparison
    scaling = json.loads((output / "comparison.json").read_text())["scaling"]
    size = {(row["model"], row["n_train"]): row["model_mb"] for row in scaling}
    assert set(size) == {("grad", 4), ("grad", 8), ("patchcore", 4), ("patchcore", 8)}
    assert size["grad", 4] == pytest.approx(size["grad", 8], abs=1e-6)
    assert size["patchcore", 8] > size["patchcore", 4]


def test_anomaly_map_grid_shows_the_same_images_for_every_model(comparison: tuple) -> None:
    plan, output, outputs = comparison
    folder = ResultsFolder(output)
    examples = load_examples(plan, folder, folder.finished(plan))
    assert set(examples) == {"grad", "patchcore"}  # the failed model has no maps
    paths = [[item["image_path"] for item in examples[model]["described"]] for model in examples]
    assert paths[0] == paths[1]
    assert "/good/" in paths[0][0] and "/good/" not in paths[0][1]  # a normal image, then a defective one
    for model in examples:
        assert examples[model]["maps"].shape == (2, 64, 64)
        assert np.isfinite(examples[model]["maps"]).all()
    for kind in ("bubble_chart", "map_grid", "scaling_chart"):
        with Image.open(outputs[kind]) as image:
            assert min(image.size) > 200


def test_resume_runs_only_the_missing_and_failed_cells(comparison: tuple, capsys: pytest.CaptureFixture) -> None:
    plan, output, _ = comparison
    folder = ResultsFolder(output)
    records = {cell.key: folder.record_file(cell) for cell in plan.cells()}
    removed = Cell("grad", "rgb", 0.5, 0).key
    records[removed].unlink()
    before = {key: path.stat().st_mtime_ns for key, path in records.items() if path.exists()}
    run_comparison(plan, output)
    assert "Resuming" in capsys.readouterr().out
    after = {key: path.stat().st_mtime_ns for key, path in records.items()}
    rerun = {key for key in records if key not in before or after[key] != before[key]}
    assert rerun == {removed, Cell(FAILING, "rgb", 1.0, 0).key, Cell(FAILING, "rgb", 0.5, 0).key}
    assert json.loads(records[removed].read_text())["status"] == "ok"


def test_a_folder_of_another_plan_is_refused(comparison: tuple, compare_root: Path) -> None:
    plan, output, _ = comparison
    other = ComparisonPlan(models=["grad"], root=str(compare_root), categories=["rgb"], **FAST)
    with pytest.raises(PlanMismatchError, match=r"another comparison \(.*model 'patchcore' is no longer"):
        run_comparison(other, output)
    changed = dataclasses.replace(plan, model_args={**plan.model_args, "patchcore": {"coreset_sampling_ratio": 0.2}})
    with pytest.raises(PlanMismatchError, match=r"model 'patchcore'.*0\.5.*0\.2"):
        run_comparison(changed, output)


@pytest.mark.slow
def test_a_plan_that_adds_models_or_seeds_continues_the_folder(compare_root: Path, tmp_path: Path) -> None:
    base = {"root": str(compare_root), "categories": ["rgb"], "openvino": False, **FAST}
    first = ComparisonPlan(models=["padim"], **base)
    output = tmp_path / "results"
    run_comparison(first, output)
    folder = ResultsFolder(output)
    done = folder.record_file(first.cells()[0]).stat().st_mtime_ns
    more = ComparisonPlan(
        models=["padim", "padim_small"],
        seeds=[0, 1],
        variants={"padim_small": {"model": "padim", "n_features": 20}},
        **base,
    )
    run_comparison(more, output)
    assert folder.record_file(first.cells()[0]).stat().st_mtime_ns == done  # kept, not rerun
    assert all(folder.record_file(cell).is_file() for cell in more.cells())
    report = json.loads((output / "comparison.json").read_text())
    summary = {row["model"]: row for row in report["summary"]}
    assert summary["padim"]["seeds"] == summary["padim_small"]["seeds"] == 2
    seed_values = [json.loads(folder.record_file(cell).read_text())["rows"][0]["pixel_AUROC"] for cell in more.cells()]
    padim = [value for cell, value in zip(more.cells(), seed_values, strict=True) if cell.model == "padim"]
    assert summary["padim"]["pixel_AUROC"] == pytest.approx(sum(padim) / 2)
    assert summary["padim"]["pixel_AUROC_std"] == pytest.approx(statistics.stdev(padim))
    assert " ± " in (output / "comparison.md").read_text()
    with pytest.raises(PlanMismatchError, match="seed 1 is no longer"):
        run_comparison(dataclasses.replace(more, seeds=[0]), output)


def test_a_dead_cell_process_is_recorded(compare_root: Path, tmp_path: Path) -> None:
    plan = ComparisonPlan(models=["tests.compare_fixtures.ExitingPadim"], root=str(compare_root), categories=["rgb"])
    folder = ResultsFolder(tmp_path / "results")
    folder.claim(plan)
    record = run_cell_process(folder.plan_file, plan.cells()[0], folder)
    assert record.status == "failed"
    assert "exit code 3" in record.error
    assert json.loads(folder.record_file(plan.cells()[0]).read_text())["status"] == "failed"


@pytest.mark.slow
def test_unified_setting_reports_each_category(compare_root: Path, tmp_path: Path) -> None:
    plan = ComparisonPlan(
        models=["padim"], root=str(compare_root), categories=["rgb", "gray"], unified=True, openvino=False, **FAST
    )
    run_comparison(plan, tmp_path / "results")
    report = json.loads((tmp_path / "results" / "comparison.json").read_text())
    rows = {row["category"]: row for row in report["detail"]}
    assert set(rows) == {"rgb", "gray"}
    assert rows["gray"]["n_train"] == rows["rgb"]["n_train"] == 16  # one model on both categories
    assert all(0 <= rows[name]["pixel_AUROC"] <= 1 for name in rows)
    assert report["summary"][0]["categories"] == 2
    assert report["summary"][0]["openvino_img_s"] is None
