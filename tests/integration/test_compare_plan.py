"""Tests of ``anomalib-grad compare`` before anything trains: plan, models and presets, data checks, command line."""

from pathlib import Path

import pytest
import torch

from anomalib_grad.compare import (
    ComparisonDataError,
    ComparisonPlan,
    UnknownModelNameError,
    build_model,
    run_comparison,
)
from anomalib_grad.compare.cli import build_parser, main, plan_from_options
from anomalib_grad.compare.data import check_categories, prepare_datamodule
from anomalib_grad.compare.models import CATEGORY_ARGS, PRESETS, describe_preset, preset_args

REPO = Path(__file__).resolve().parents[2]


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
        ({"models": ["grad"], "categories": ["a"], "model_args": {"gradd": {}}}, "unknown models"),
        ({"models": ["grad"], "categories": ["a"], "category_model_args": {"a": {"padimm": {}}}}, "unknown models"),
        ({"models": ["grad"], "categories": ["a"], "seeds": []}, "at least one"),
        ({"models": ["grad"], "categories": ["a"], "seeds": [1, 1]}, "twice"),
        ({"models": ["x"], "categories": ["a"], "variants": {"x": {"abnormal_grid": False}}}, "name its base"),
        (
            {"models": ["x", "y"], "categories": ["a"], "variants": {"x": {"model": "y"}, "y": {"model": "x"}}},
            "another",
        ),
    ],
)
def test_plan_rejects_bad_settings(arguments: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ComparisonPlan(**arguments)


def test_models_on_the_command_line_pick_from_a_config(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    arguments = ["compare", "--config", "configs/compare/ablation.yaml", "--models", "[grad_convex]"]
    plan = plan_from_options(build_parser().parse_args(arguments).compare)
    assert plan.models == ["grad_convex"]
    assert plan.base_model("grad_convex") == "grad"
    assert plan.model_init_args("grad_convex", "bottle")["fusion"] == "convex"


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


def test_preset_args_apply_the_category_table() -> None:
    assert preset_args("patchcore", "bottle") == PRESETS["patchcore"][1]
    assert preset_args("patchcore", "bottle")["coreset_sampling_ratio"] == 0.01
    assert preset_args("patchcore", "magnetic_tile") == {**PRESETS["patchcore"][1], "coreset_sampling_ratio": 0.001}
    assert preset_args("padim", "magnetic_tile") == PRESETS["padim"][1]
    assert preset_args("grad") == {}
    assert describe_preset("grad") == "CPU preset"
    assert describe_preset("padim", "magnetic_tile") == "layers blocks.1/2/4, n_features=100"
    assert describe_preset("patchcore", "bottle") == "layers blocks.2/4, coreset_sampling_ratio=0.01"
    assert describe_preset("patchcore", init_args={"coreset_sampling_ratio": 0.0025}) == (
        "layers blocks.2/4, coreset_sampling_ratio=0.0025"
    )


# --- data ---------------------------------------------------------------------------------------------


def test_training_fractions_are_seeded_and_nested(compare_root: Path) -> None:
    plan = ComparisonPlan(models=["padim"], root=str(compare_root), categories=["rgb"], num_workers=0)
    kept = {}
    for fraction in (0.25, 0.5, 1.0):
        datamodule, num_train = prepare_datamodule(plan, "rgb", fraction)
        assert num_train == len(datamodule.train_data) == round(8 * fraction)
        datamodule.setup("fit")  # as the trainer does: the subset stays
        kept[fraction] = set(datamodule.train_data.samples.image_path)
    assert kept[0.25] < kept[0.5] < kept[1.0]
    again, _ = prepare_datamodule(plan, "rgb", 0.5)
    assert set(again.train_data.samples.image_path) == kept[0.5]


def test_empty_or_missing_category_fails_before_training(compare_root: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    for folder in ("train/good", "test/good"):
        (empty / folder).mkdir(parents=True)
    with pytest.raises(ComparisonDataError, match="Category 'empty'"):
        check_categories(ComparisonPlan(models=["padim"], root=str(tmp_path), categories=["empty"]))
    with pytest.raises(ComparisonDataError, match="Category 'missing'"):
        check_categories(ComparisonPlan(models=["padim"], root=str(compare_root), categories=["rgb", "missing"]))


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
    monkeypatch.chdir(REPO)
    options = build_parser().parse_args(["compare", "--config", "configs/compare/cpu_real.yaml"]).compare
    plan = plan_from_options(options)
    assert plan.models == ["grad", "patchcore", "padim"]
    assert plan.model_init_args("patchcore", "bottle") == {"coreset_sampling_ratio": 0.01}
    assert plan.model_init_args("patchcore", "magnetic_tile") == {"coreset_sampling_ratio": 0.001}
    assert len(plan.cells()) == 3 * 2 * 3  # models × categories × seeds
    assert str(options.output) == "results/compare/cpu_real"


def test_shipped_compare_config_agrees_with_the_preset_table(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    plan = plan_from_options(
        build_parser().parse_args(["compare", "--config", "configs/compare/cpu_real.yaml"]).compare
    )
    assert set(CATEGORY_ARGS) <= set(plan.categories)  # the table's every category is in the README's command
    for model in plan.models:
        for category in plan.categories:
            as_built = {**PRESETS[model][1], **plan.model_init_args(model, category)}  # as build_model merges them
            assert as_built == preset_args(model, category), (model, category)


def test_shipped_ablation_config_makes_its_variants(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    plan = plan_from_options(
        build_parser().parse_args(["compare", "--config", "configs/compare/ablation.yaml"]).compare
    )
    assert plan.seeds == [0, 1, 2]
    assert {plan.base_model(model) for model in plan.models} == {"grad"}
    paper_score = {"positional_rank": 0}  # the study keeps the paper's image score
    assert plan.model_init_args("grad_normal_only", "bottle") == {
        "abnormal_grid": False,
        "normal_epochs": 16,
        **paper_score,
    }
    epochs = {"abnormal_epochs": 4, "normal_epochs": 16, **paper_score}
    assert plan.model_init_args("grad", "bottle") == {"learn_from_real_anomalies": False, **epochs}
    assert plan.model_init_args("grad_fbp_real", "bottle") == {"learn_from_real_anomalies": True, **epochs}
    assert plan.model_init_args("grad_convex", "bottle") == {
        "fusion": "convex",
        "learn_from_real_anomalies": False,
        **epochs,
    }
    assert plan.datamodule_args["holdout_anomalies_per_type"] == 5
    for model in plan.models:  # every variant builds
        build_model(
            plan.base_model(model),
            tuple(plan.image_size),
            {**plan.model_init_args(model, "bottle"), "pre_trained": False},
        )
