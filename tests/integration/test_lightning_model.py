"""Grad Lightning module: two-stage training, optimiser, checkpoints, seeds and bad input."""

from pathlib import Path

import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.engine import Engine
from lightning.pytorch import Callback, seed_everything

from anomalib_grad import Grad
from anomalib_grad.data import SyntheticSurfaces
from anomalib_grad.models.grad.input_checks import check_finite
from tests.conftest import SMALL_MODEL


class StageRecorder(Callback):
    """Snapshot parameters and buffers at each epoch start, compare at its end."""

    def __init__(self) -> None:
        self.changes: list[dict[str, bool]] = []
        self.cached: list[tuple[str, int, int]] = []

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self.before = {name: value.detach().clone() for name, value in pl_module.model.state_dict().items()}

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        after = pl_module.model.state_dict()
        self.changes.append({name: not torch.equal(value, after[name]) for name, value in self.before.items()})

    def on_validation_start(self, trainer, pl_module) -> None:  # before Grad's own hook
        cache = pl_module.training_features.cache
        self.cached.append(("validation start", len(cache), cache.nbytes))

    def on_validation_batch_start(self, trainer, pl_module, *args) -> None:
        cache = pl_module.training_features.cache
        self.cached.append(("validation batch", len(cache), cache.nbytes))


def fit(model: Grad, root: Path, tmp_path: Path, callbacks: list[Callback] | None = None) -> Engine:
    datamodule = SyntheticSurfaces(root=root, train_batch_size=16, eval_batch_size=16)
    engine = Engine(
        default_root_dir=tmp_path,
        accelerator="cpu",
        logger=False,
        enable_progress_bar=False,
        callbacks=callbacks or [],
        limit_val_batches=1,
    )
    engine.fit(model, datamodule=datamodule)
    return engine


def changed(changes: dict[str, bool], prefix: str) -> list[bool]:
    return [value for name, value in changes.items() if name.startswith(prefix)]


@pytest.mark.slow
def test_each_stage_trains_exactly_its_parameters(synthetic_root, tmp_path):
    seed_everything(0)
    model = Grad(**SMALL_MODEL, abnormal_epochs=1, normal_epochs=1, cache_dtype="float16", visualizer=False)
    recorder = StageRecorder()
    calls = []
    extract = model.model.extract_features

    def counting_extract(images):
        calls.append((model.current_epoch, model.model.training))
        return extract(images)

    model.model.extract_features = counting_extract
    fit(model, synthetic_root, tmp_path, [recorder])
    stage_a, stage_b = recorder.changes

    # stage A: abnormal grid + branch + coordinate networks learn; normal path frozen
    assert all(changed(stage_a, "abnormal_grid.")) and any(changed(stage_a, "abnormal_branch."))
    assert any(changed(stage_a, "coordinate_mapper."))
    for frozen in ("normal_grid.", "normal_branch.", "fusion.", "feature_extractor."):
        assert not any(changed(stage_a, frozen)), frozen
    # stage B: normal grid + branch + coordinates + fusion weight learn; abnormal path frozen (BN stats too)
    assert all(changed(stage_b, "normal_grid.")) and any(changed(stage_b, "normal_branch."))
    assert stage_b["fusion.weight"] and any(changed(stage_b, "coordinate_mapper."))
    for frozen in ("abnormal_grid.", "abnormal_branch.", "feature_extractor."):
        assert not any(changed(stage_b, frozen)), frozen
    # training features were computed in the first epoch only (60 images, 4 batches), then cached
    assert [epoch for epoch, training in calls if training] == [0, 0, 0, 0]
    # held (here in half precision) until the validation that ends training, freed before its first batch
    channels, (height, width) = model.model.feature_extractor.out_channels, model.model.feature_size
    assert recorder.cached[:2] == [
        ("validation start", 60, 60 * channels * height * width * 2),
        ("validation batch", 0, 0),
    ]
    assert len(model.training_features.cache) == 0  # freed after fit


def test_optimizer_groups_and_trainer_arguments():
    model = Grad(**SMALL_MODEL, abnormal_epochs=3, normal_epochs=5, grid_lr=0.2, lr=0.004, lr_step_epochs=2)
    optimizer_config = model.configure_optimizers()
    grids, networks = optimizer_config["optimizer"].param_groups
    assert grids["lr"] == 0.2 and networks["lr"] == 0.004
    assert len(grids["params"]) == 4  # local + global grid of both sets
    trainable = {id(p) for name, p in model.model.named_parameters() if not name.startswith("feature_extractor")}
    assert {id(p) for p in grids["params"] + networks["params"]} == trainable
    assert optimizer_config["lr_scheduler"]["scheduler"].step_size == 2
    arguments = model.trainer_arguments
    assert arguments["max_epochs"] == 8
    assert arguments["gradient_clip_val"] == 0.1
    assert arguments["check_val_every_n_epoch"] == 8


@pytest.mark.slow
def test_checkpoint_reload_gives_identical_outputs(synthetic_root, tmp_path):
    seed_everything(1)
    model = Grad(**SMALL_MODEL, abnormal_epochs=1, normal_epochs=1, visualizer=False)
    engine = fit(model, synthetic_root, tmp_path)
    checkpoint = tmp_path / "grad.ckpt"
    engine.trainer.save_checkpoint(checkpoint)
    reloaded = Grad.load_from_checkpoint(checkpoint)  # weights_only=True, as anomalib does
    images = torch.rand(3, 3, 64, 64)
    model.eval()
    reloaded.eval()
    expected, actual = model.model(images), reloaded.model(images)
    assert torch.equal(expected.anomaly_map, actual.anomaly_map)
    assert torch.equal(expected.pred_score, actual.pred_score)
    # the full pipeline (pre-processing, thresholds and normalisation) comes back too
    image = torch.rand(1, 3, 100, 80)
    assert torch.equal(model(image).pred_score, reloaded(image).pred_score)
    assert torch.equal(model(image).pred_label, reloaded(image).pred_label)


@pytest.mark.slow
def test_seeded_training_is_reproducible(synthetic_root, tmp_path):
    weights = []
    for run in range(2):
        seed_everything(3)
        model = Grad(**SMALL_MODEL, abnormal_epochs=1, normal_epochs=1, visualizer=False, evaluator=False)
        fit(model, synthetic_root, tmp_path / str(run))
        weights.append(model.model.state_dict())
    assert all(torch.equal(weights[0][name], weights[1][name]) for name in weights[0])


def test_nan_image_in_a_validation_batch_is_a_clear_error(small_grad):
    images = torch.rand(2, 3, 64, 64)
    images[1, 0, 3, 3] = float("nan")
    batch = ImageBatch(image=images, image_path=["good.png", "broken.png"])
    with pytest.raises(ValueError, match=r"NaN or infinite values .*broken\.png"):
        small_grad.validation_step(batch)


def test_nan_in_images_is_a_clear_error(small_grad):
    with pytest.raises(ValueError, match=r"NaN or infinite values .*b\.png"):
        check_finite(torch.tensor([[1.0, 2.0], [float("nan"), 0.0]]), ["a.png", "b.png"])
    check_finite(torch.ones(2, 3), ["a.png", "b.png"])  # finite input passes silently


def test_invalid_arguments_are_rejected():
    with pytest.raises(ValueError, match="normal_epochs >= 1"):
        Grad(**SMALL_MODEL, normal_epochs=0)
    with pytest.raises(ValueError, match="larger than the 8×8 feature map"):
        Grad(**{**SMALL_MODEL, "fbp_block_size": (0, 9)})
    with pytest.raises(ValueError, match="reversed"):
        Grad(**{**SMALL_MODEL, "fbp_intensity": (16.0, 8.0)})
    with pytest.raises(ValueError, match="multiple of 16"):
        Grad(**{**SMALL_MODEL, "input_size": (100, 100)})
