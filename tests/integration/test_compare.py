"""Tests of ``anomalib-grad compare``: plan, models, data checks, runner, resume, report and charts."""

import dataclasses
import json
import statistics
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomalib_grad.compare import (
    Cell,
    ComparisonDataError,
    ComparisonPlan,
    PlanMismatchError,
    UnknownModelNameError,
    build_model,
    run_comparison,
)
from anomalib_grad.compare.cli import build_parser, main, plan_from_options
from anomalib_grad.compare.data import check_categories, prepare_datamodule
from anomalib_grad.compare.records import ResultsFolder
from anomalib_grad.compare.runner import load_examples, run_cell_process
from anomalib_grad.data import generate_synthetic_surfaces
from tests.conftest import SMALL_MODEL

FAILING = "tests.compare_fixtures.FailingPadim"
TINY_GRAD = {**SMALL_MODEL, "abnormal_epochs": 1, "normal_epochs": 1}
FAST = {"image_size": (64, 64), "num_workers": 0, "timing_seconds": 0.2, "num_examples": 2}


@pytest.fixture(scope="module")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Two tiny categories in MVTec layout: ``rgb`` (64×64) and ``gray`` (grayscale, 80×80)."""
    root = tmp_path_factory.mktemp("compare_data")
    counts = {"num_train": 8, "num_test_good": 2, "num_test_per_defect": 2}
    generate_synthetic_surfaces(root, category="rgb", seed=0, image_size=64, **counts)
    gray = generate_synthetic_surfaces(root, category="gray", seed=1, image_size=80, **counts)
    for path in gray.rglob("*.png"):
        if "ground_truth" not in path.parts:
            Image.open(path).convert("L").save(path)
    return root


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
def comparison(data_root: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[ComparisonPlan, Path, dict]:
    """Grad, PatchCore and a model failing mid-training, on 50 % and 100 % of ``rgb``, OpenVINO included."""
    plan = scaling_plan(data_root)
    output = tmp_path_factory.mktemp("comparison") / "results"
    outputs = run_comparison(plan, output)
    return plan, output, outputs


# --- plan ---------------------------------------------------------------------------------------------


def test_plan_cells_run_largest_fraction_first() -> None:
    plan = ComparisonPlan(models=["grad", "padim"], categories=["a", "b"], train_fractions=[1.0, 0.25])
    keys = [cell.key.removesuffix("__seed0") for cell in plan.cells()]
    assert keys[:4] == ["grad__a__1", "padim__a__1", "grad__b__1", "padim__b__1"]
    assert keys[4:] == ["grad__a__0.25", "padim__a__0.25", "grad__b__0.25", "padim__b__0.25"]
    unified = ComparisonPlan(models=["grad"], categories=["a", "b"], unified=True)
    assert [cell.key for cell in unified.cells()] == ["grad__unified__1__seed0"]


def test_variants_and_seeds_make_their_own_cells() -> None:
    plan = ComparisonPlan(
        models=["grad", "grad_normal_only"],
        categories=["a"],
        seeds=[0, 1],
        variants={"grad_normal_only": {"model": "grad", "abnormal_grid": False, "normal_epochs": 3}},
        model_args={"grad_normal_only": {"normal_epochs": 5}},
    )
    assert [cell.key for cell in plan.cells()] == [
        "grad__a__1__seed0",
        "grad_normal_only__a__1__seed0",
        "grad__a__1__seed1",
        "grad_normal_only__a__1__seed1",
    ]
    assert plan.base_model("grad_normal_only") == "grad" and plan.base_model("padim") == "padim"
    assert plan.model_init_args("grad_normal_only", "a") == {"abnormal_grid": False, "normal_epochs": 5}
    assert plan.model_init_args("grad", "a") == {}


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        ({"models": [], "categories": ["a"]}, "at least one"),
        ({"models": ["grad", "grad"], "categories": ["a"]}, "twice"),
        ({"models": ["grad"], "categories": ["a"], "train_fractions": [0.0, 1.0]}, r"\(0, 1\]"),
        ({"models": ["grad"], "categories": ["a"], "model_args": {"padim": {}}}, "not in the plan"),
        ({"models": ["grad"], "categories": ["a"], "seeds": []}, "at least one"),
        ({"models": ["grad"], "categories": ["a"], "seeds": [1, 1]}, "twice"),
        ({"models": ["x"], "categories": ["a"], "variants": {"x": {"abnormal_grid": False}}}, "name its base"),
        ({"models": ["grad"], "categories": ["a"], "variants": {"x": {"model": "grad"}}}, "not in the plan"),
        (
            {"models": ["x", "y"], "categories": ["a"], "variants": {"x": {"model": "y"}, "y": {"model": "x"}}},
            "another",
        ),
    ],
)
def test_plan_rejects_bad_settings(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ComparisonPlan(**arguments)


def test_category_model_args_override_model_args() -> None:
    plan = ComparisonPlan(
        models=["patchcore"],
        categories=["a", "b"],
        model_args={"patchcore": {"coreset_sampling_ratio": 0.01, "num_neighbors": 3}},
        category_model_args={"b": {"patchcore": {"coreset_sampling_ratio": 0.001}}},
    )
    assert plan.model_init_args("patchcore", "a") == {"coreset_sampling_ratio": 0.01, "num_neighbors": 3}
    assert plan.model_init_args("patchcore", "b") == {"coreset_sampling_ratio": 0.001, "num_neighbors": 3}


# --- models -------------------------------------------------------------------------------------------


def test_unknown_model_name_lists_the_valid_ones(tmp_path: Path) -> None:
    plan = ComparisonPlan(models=["grad", "patchcorr"], categories=["rgb"], root=str(tmp_path))
    with pytest.raises(UnknownModelNameError, match=r"Unknown model 'patchcorr'.*patchcore.*stfpm"):
        run_comparison(plan, tmp_path / "results")
    assert not (tmp_path / "results").exists()  # refused before anything is written
    with pytest.raises(UnknownModelNameError, match="not an anomalib model"):
        build_model("pathlib.Path", (64, 64))


def test_anomalib_model_names_resolve_in_any_spelling() -> None:
    assert type(build_model("Ganomaly", (64, 64))).__name__ == "Ganomaly"
    assert type(build_model("reverse_distillation", (64, 64), {"pre_trained": False})).__name__ == (
        "ReverseDistillation"
    )


def test_presets_share_the_backbone_weights() -> None:
    grad, patchcore, padim = (build_model(name, (192, 160)) for name in ("grad", "patchcore", "padim"))
    stems = [model.model.feature_extractor.feature_extractor.conv_stem.weight for model in (patchcore, padim)]
    grad_stem = next(value for key, value in grad.model.state_dict().items() if key.endswith("conv_stem.weight"))
    assert torch.equal(stems[0], stems[1])
    assert torch.equal(stems[0], grad_stem)
    assert stems[0].abs().sum() > 0
    assert patchcore.pre_processor.transform.transforms[0].size == [192, 160]
    assert grad.model.input_size == (192, 160)


# --- data ---------------------------------------------------------------------------------------------


def test_training_fractions_are_seeded_and_nested(data_root: Path) -> None:
    plan = ComparisonPlan(models=["padim"], root=str(data_root), categories=["rgb"], num_workers=0)
    kept = {}
    for fraction in (0.25, 0.5, 1.0):
        datamodule, num_train = prepare_datamodule(plan, "rgb", fraction)
        assert num_train == len(datamodule.train_data) == round(8 * fraction)
        datamodule.setup("fit")  # as the trainer does: the subset stays
        kept[fraction] = set(datamodule.train_data.samples.image_path)
    assert kept[0.25] < kept[0.5] < kept[1.0]
    again, _ = prepare_datamodule(plan, "rgb", 0.5)
    assert set(again.train_data.samples.image_path) == kept[0.5]


def test_empty_or_missing_category_fails_before_training(data_root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    for folder in ("train/good", "test/good"):
        (empty / folder).mkdir(parents=True)
    with pytest.raises(ComparisonDataError, match="Category 'empty'"):
        check_categories(ComparisonPlan(models=["padim"], root=str(tmp_path), categories=["empty"]))
    with pytest.raises(ComparisonDataError, match="Category 'missing'"):
        check_categories(ComparisonPlan(models=["padim"], root=str(data_root), categories=["rgb", "missing"]))


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


def test_a_folder_of_another_plan_is_refused(comparison: tuple, data_root: Path) -> None:
    plan, output, _ = comparison
    other = ComparisonPlan(models=["grad"], root=str(data_root), categories=["rgb"], **FAST)
    with pytest.raises(PlanMismatchError, match=r"another comparison \(.*model 'patchcore' is no longer"):
        run_comparison(other, output)
    changed = dataclasses.replace(plan, model_args={**plan.model_args, "patchcore": {"coreset_sampling_ratio": 0.2}})
    with pytest.raises(PlanMismatchError, match=r"model 'patchcore'.*0\.5.*0\.2"):
        run_comparison(changed, output)


@pytest.mark.slow
def test_a_plan_that_adds_models_or_seeds_continues_the_folder(data_root: Path, tmp_path: Path) -> None:
    base = {"root": str(data_root), "categories": ["rgb"], "openvino": False, **FAST}
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


def test_a_dead_cell_process_is_recorded(data_root: Path, tmp_path: Path) -> None:
    plan = ComparisonPlan(models=["tests.compare_fixtures.ExitingPadim"], root=str(data_root), categories=["rgb"])
    folder = ResultsFolder(tmp_path / "results")
    folder.claim(plan)
    record = run_cell_process(folder.plan_file, plan.cells()[0], folder)
    assert record.status == "failed"
    assert "exit code 3" in record.error
    assert json.loads(folder.record_file(plan.cells()[0]).read_text())["status"] == "failed"


@pytest.mark.slow
def test_unified_setting_reports_each_category(data_root: Path, tmp_path: Path) -> None:
    plan = ComparisonPlan(
        models=["padim"], root=str(data_root), categories=["rgb", "gray"], unified=True, openvino=False, **FAST
    )
    run_comparison(plan, tmp_path / "results")
    report = json.loads((tmp_path / "results" / "comparison.json").read_text())
    rows = {row["category"]: row for row in report["detail"]}
    assert set(rows) == {"rgb", "gray"}
    assert rows["gray"]["n_train"] == rows["rgb"]["n_train"] == 16  # one model on both categories
    assert all(0 <= rows[name]["pixel_AUROC"] <= 1 for name in rows)
    assert report["summary"][0]["categories"] == 2
    assert report["summary"][0]["openvino_img_s"] is None


# --- command line -------------------------------------------------------------------------------------


def test_config_file_and_command_line_give_the_same_plan(tmp_path: Path) -> None:
    config = tmp_path / "compare.yaml"
    config.write_text(
        "models: [grad, patchcore]\ncategories: [bottle]\nroot: data\n"
        "model_args:\n  patchcore: {coreset_sampling_ratio: 0.01}\n"
    )
    from_file = build_parser().parse_args(["compare", "--config", str(config), "--image_size", "[128, 128]"])
    assert from_file.compare.models == ["grad", "patchcore"]
    assert from_file.compare.model_args == {"patchcore": {"coreset_sampling_ratio": 0.01}}
    assert tuple(from_file.compare.image_size) == (128, 128)


def test_command_line_bad_plan_exits_with_a_message(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    arguments = ["compare", "--models", "[nope]", "--categories", "[rgb]", "--output", str(tmp_path / "out")]
    assert main(arguments) == 2
    error = capsys.readouterr().err
    assert "UnknownModelNameError: Unknown model 'nope'" in error
    assert "patchcore" in error


def test_shipped_compare_config_makes_a_valid_plan(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    options = build_parser().parse_args(["compare", "--config", "configs/compare/cpu_real.yaml"]).compare
    plan = plan_from_options(options)
    assert plan.models == ["grad", "patchcore", "padim"]
    assert plan.model_init_args("patchcore", "bottle") == {"coreset_sampling_ratio": 0.01}
    assert plan.model_init_args("patchcore", "magnetic_tile") == {"coreset_sampling_ratio": 0.001}
    assert len(plan.cells()) == 3 * 2 * 3  # models × categories × seeds
    assert str(options.output) == "results/compare/cpu_real"


def test_shipped_ablation_config_makes_the_four_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[2])
    plan = plan_from_options(
        build_parser().parse_args(["compare", "--config", "configs/compare/ablation.yaml"]).compare
    )
    assert plan.seeds == [0, 1, 2]
    assert {plan.base_model(model) for model in plan.models} == {"grad"}
    assert plan.model_init_args("grad_normal_only", "bottle") == {"abnormal_grid": False, "normal_epochs": 16}
    epochs = {"abnormal_epochs": 4, "normal_epochs": 16}
    assert plan.model_init_args("grad", "bottle") == {"learn_from_real_anomalies": False, **epochs}
    assert plan.model_init_args("grad_fbp_real", "bottle") == {"learn_from_real_anomalies": True, **epochs}
    assert plan.datamodule_args["holdout_anomalies_per_type"] == 5
    for model in plan.models:  # every variant builds
        build_model(
            plan.base_model(model),
            tuple(plan.image_size),
            {**plan.model_init_args(model, "bottle"), "pre_trained": False},
        )
