"""GRAD's ablation switches, the real-defect path and the fusion statistics (issue: prove the two ideas)."""

import warnings
from pathlib import Path

import openvino as ov
import pytest
import torch
from anomalib.data import ImageBatch
from anomalib.engine import Engine
from lightning.pytorch import Callback, seed_everything

from anomalib_grad import Grad
from anomalib_grad.data import MVTecLayout, SyntheticSurfaces
from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.components.gaussian_noise import GaussianFeatureNoise
from tests.conftest import SMALL_MODEL


class BackboneInputs(Callback):
    """Record every tensor that reaches the backbone, and the test images' paths in order."""

    def __init__(self, model: Grad) -> None:
        self.inputs: list[torch.Tensor] = []
        self.test_paths: list[str] = []
        model.model.feature_extractor.register_forward_pre_hook(lambda _, args: self.inputs.append(args[0].clone()))

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.test_paths += list(batch.image_path)


def engine(tmp_path: Path, callbacks: list[Callback] | None = None) -> Engine:
    return Engine(
        default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False, callbacks=callbacks
    )


@pytest.mark.slow
def test_real_defects_reach_the_backbone_exactly_as_test_images_do(mixed_root, tmp_path):
    """The grayscale 80×80 category needs the model's resize and normalisation; training must apply both."""
    seed_everything(0)
    model = Grad(**SMALL_MODEL, abnormal_epochs=1, normal_epochs=1, visualizer=False)
    recorder = BackboneInputs(model)
    layout = {"root": mixed_root, "category": "gray", "train_batch_size": 4, "eval_batch_size": 1, "num_workers": 0}
    training = MVTecLayout(**layout, holdout_anomalies_per_type=1, seed=0)
    run = engine(tmp_path, [recorder])
    run.fit(model, datamodule=training)
    held_out = list(training.anomaly_train_data.samples.image_path)
    assert len(held_out) == 3
    fit_inputs = torch.cat(recorder.inputs)
    recorder.inputs.clear()
    run.test(model, datamodule=MVTecLayout(**layout), verbose=False)  # the test path sees every defect
    test_inputs = dict(zip(recorder.test_paths, torch.cat(recorder.inputs), strict=True))
    for path in held_out:
        expected = test_inputs[path]
        assert bool((expected < 0).any())  # ImageNet-normalised
        distances = (fit_inputs - expected).flatten(1).abs().amax(1)
        assert float(distances.min()) < 1e-5, path


def all_anomalous_batch() -> ImageBatch:
    masks = torch.zeros(2, 64, 64, dtype=torch.bool)
    masks[:, 8:24, 8:24] = True
    return ImageBatch(
        image=torch.rand(2, 3, 64, 64),
        gt_label=torch.tensor([1, 1]),
        gt_mask=masks,
        image_path=["a.png", "b.png"],
    )


def test_stage_a_batch_of_only_anomalous_images_trains():
    model = Grad(**SMALL_MODEL)
    loss = model.training_step(all_anomalous_batch())["loss"]
    assert torch.isfinite(loss)
    loss.backward()
    assert model.model.abnormal_grid.local_grid.grad.abs().sum() > 0


def exported_constants(model: Grad, folder: Path) -> dict[str, int]:
    """Name → size of every constant of the model's OpenVINO export."""
    exported = ov.Core().read_model(model.to_openvino(folder))
    constants = [op for op in exported.get_ops() if op.get_type_name() == "Constant"]
    return {op.get_friendly_name(): op.get_output_tensor(0).size for op in constants}


@pytest.mark.slow
def test_normal_grid_alone_has_no_abnormal_part_in_state_dict_or_export(synthetic_root, tmp_path):
    models = {}
    for abnormal_grid in (False, True):
        seed_everything(0)
        model = Grad(**SMALL_MODEL, abnormal_grid=abnormal_grid, abnormal_epochs=1, normal_epochs=1, visualizer=False)
        engine(tmp_path).fit(model, datamodule=SyntheticSurfaces(root=synthetic_root, train_batch_size=16))
        models[abnormal_grid] = model
    alone, both = models[False], models[True]
    assert alone.trainer.current_epoch == 1  # stage B only: abnormal_epochs means nothing without the grid
    names = list(alone.model.state_dict())
    assert not [name for name in names if name.startswith(("abnormal", "fusion", "anomaly_generator"))]
    assert any(name.startswith("normal_grid.") for name in names)
    assert any(name.startswith("abnormal_grid.") for name in both.model.state_dict())
    constants = {key: exported_constants(model, tmp_path / str(key)) for key, model in models.items()}
    assert not [name for name in constants[False] if "abnormal" in name or "fusion" in name]
    assert [name for name in constants[True] if "abnormal" in name]  # the oracle: names survive the export
    abnormal_size = sum(value.numel() for name, value in both.model.state_dict().items() if "abnormal" in name)
    assert sum(constants[True].values()) - sum(constants[False].values()) >= abnormal_size


def test_normal_grid_alone_warns_once_about_settings_that_mean_nothing():
    small = {name: value for name, value in SMALL_MODEL.items() if name != "fbp_block_size"}
    with pytest.warns(UserWarning, match=r"no effect: fbp_per_image, fbp_blur_sigma\.$") as caught:
        Grad(**small, abnormal_grid=False, fbp_blur_sigma=1.5, fbp_per_image=True)
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        Grad(**small, abnormal_grid=False)  # defaults: nothing to warn about (the FBP block need not fit)


def test_unknown_anomaly_synthesis_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"Unknown anomaly_synthesis 'perlin'.*fbp, gaussian_noise, none"):
        Grad(**SMALL_MODEL, anomaly_synthesis="perlin")


@pytest.mark.parametrize("std", [0.0, -1.0])
def test_non_positive_noise_std_is_rejected(std):
    with pytest.raises(ValueError, match="noise_std must be positive"):
        Grad(**SMALL_MODEL, anomaly_synthesis="gaussian_noise", noise_std=std)


def test_no_synthesis_without_real_defects_fails_before_training(synthetic_root, tmp_path):
    model = Grad(**SMALL_MODEL, anomaly_synthesis="none", visualizer=False)
    with pytest.raises(ValueError, match=r"anomaly_synthesis='none'.*offers none.*holdout_anomalies_per_type"):
        engine(tmp_path).fit(model, datamodule=SyntheticSurfaces(root=synthetic_root, train_batch_size=16))


def test_no_synthesis_trains_stage_a_on_real_defects_only():
    model = Grad(**SMALL_MODEL, anomaly_synthesis="none")
    normal = torch.randn(3, 152, 8, 8)
    real_masks = torch.zeros(1, 1, 8, 8)
    real_masks[..., 2:4, 2:4] = 1
    model.model.train()
    output = model.model(features=normal, real_features=torch.randn(1, 152, 8, 8), real_masks=real_masks)
    assert output.mask.shape == (4, 1, 8, 8)
    assert output.mask[:3].sum() == 0 and torch.equal(output.mask[3], real_masks[0])


def test_gaussian_noise_lands_only_inside_the_blocks_with_the_chosen_spread():
    noise = GaussianFeatureNoise(FeatureBlockPaste(block_size=(6, 6), walk_steps=200, seed=0), noise_std=3.0)
    features = torch.zeros(8, 64, 16, 16)
    noisy, mask = noise(features)
    inside = mask.expand_as(noisy) > 0
    assert bool((noisy[~inside] == 0).all())
    assert abs(float(noisy[inside].std()) - 3.0) < 0.15
    assert abs(float(noisy[inside].mean())) < 0.15


def test_switches_reach_the_torch_model():
    model = Grad(
        **{**SMALL_MODEL, "fbp_block_size": 2},
        anomaly_synthesis="gaussian_noise",
        noise_std=2.5,
        fbp_blur_sigma=1.3,
        refinement_threshold=4.0,
        refinement_indicator_weight=0.1,
        refinement_cosine_weight=0.5,
        coordinate_noise_std=0.2,
        coordinate_noise_probability=0.9,
    ).model
    assert isinstance(model.anomaly_generator, GaussianFeatureNoise) and model.anomaly_generator.noise_std == 2.5
    assert model.anomaly_generator.blocks.block_size == (2, 2)
    assert (model.refinement.threshold, model.refinement.indicator_weight, model.refinement.cosine_weight) == (
        4.0,
        0.1,
        0.5,
    )
    assert (model.coordinate_mapper.noise_std, model.coordinate_mapper.noise_probability) == (0.2, 0.9)
    expected_sigma = FeatureBlockPaste(blur_sigma=1.3).blur.kernel
    assert torch.equal(Grad(**SMALL_MODEL, fbp_blur_sigma=1.3).model.anomaly_generator.blur.kernel, expected_sigma)


@pytest.mark.slow
def test_fusion_statistics_match_a_hand_computation_on_validation_images(synthetic_root, tmp_path):
    seed_everything(0)
    model = Grad(**SMALL_MODEL, abnormal_epochs=1, normal_epochs=1, visualizer=False)
    datamodule = SyntheticSurfaces(root=synthetic_root, train_batch_size=16, eval_batch_size=64)
    engine(tmp_path).fit(model, datamodule=datamodule)
    result = model.fusion_statistics.result()
    weight = float(model.model.fusion.weight)
    assert result["fusion_weight"] == pytest.approx(weight)
    images = torch.stack([item.image for item in datamodule.val_data])
    model.eval()
    with torch.no_grad():
        features = model.model.extract_features(model.pre_processor.transform(images))
        normal, abnormal = model.model.reconstruction_parts(features)
    expected = ((weight * abnormal).flatten(1).norm(dim=1) / normal.flatten(1).norm(dim=1)).mean()
    assert result["abnormal_contribution"] == pytest.approx(float(expected), rel=1e-4)
    assert model.trainer.callback_metrics["abnormal_contribution"] == pytest.approx(float(expected), rel=1e-4)
