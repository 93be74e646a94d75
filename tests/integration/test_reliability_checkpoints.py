"""Checkpoints: settings come from the checkpoint, damaged or foreign files are named, training is never lost."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import lightning
import numpy as np
import pytest
import torch
from anomalib.engine import Engine
from anomalib.models import Patchcore
from lightning.pytorch import seed_everything

from anomalib_grad import Grad
from anomalib_grad.data import MVTecLayout
from anomalib_grad.data.image_io import UnreadableImageError
from anomalib_grad.deploy.checkpoint import DamagedCheckpointError, NotAGradCheckpointError
from tests.conftest import SMALL_MODEL

ANOMALIB = Path(sys.executable).parent / "anomalib"
SETTINGS = {**SMALL_MODEL, "abnormal_epochs": 1, "normal_epochs": 1}  # none of them Grad's defaults


def engine(root: Path) -> Engine:
    return Engine(default_root_dir=root, accelerator="cpu", logger=False, enable_progress_bar=False)


def datamodule(root: Path) -> MVTecLayout:
    return MVTecLayout(root=root, category="rgb", num_workers=0, train_batch_size=4, eval_batch_size=4)


@pytest.fixture(scope="module")
def trained(mixed_root, tmp_path_factory) -> Path:
    """The checkpoint of a small Grad trained on the 64×64 ``rgb`` category with non-default settings."""
    seed_everything(0)
    training = engine(tmp_path_factory.mktemp("trained"))
    training.fit(Grad(**SETTINGS, visualizer=False), datamodule=datamodule(mixed_root))
    return Path(training.trainer.checkpoint_callback.best_model_path)


def scores(predictions: list) -> np.ndarray:
    return np.concatenate([batch.pred_score.reshape(-1).numpy() for batch in predictions])


@pytest.mark.slow
def test_test_and_predict_take_the_settings_from_the_checkpoint(trained, mixed_root, tmp_path):
    reference = engine(tmp_path / "a").test(Grad(**SETTINGS), datamodule=datamodule(mixed_root), ckpt_path=trained)
    defaults = engine(tmp_path / "b").test(Grad(), datamodule=datamodule(mixed_root), ckpt_path=trained)
    assert defaults == reference
    assert 0 <= reference[0]["image_AUROC"] <= 1
    images = mixed_root / "rgb" / "test" / "good"
    expected = scores(engine(tmp_path / "c").predict(Grad(**SETTINGS), data_path=images, ckpt_path=trained))
    predicted = scores(engine(tmp_path / "d").predict(Grad(), data_path=images, ckpt_path=trained))
    np.testing.assert_allclose(predicted, expected, rtol=1e-6)
    assert len(predicted) == 3


@pytest.mark.slow
def test_cli_test_needs_no_model_arguments(trained, mixed_root, tmp_path):
    reference = engine(tmp_path / "a").test(Grad(**SETTINGS), datamodule=datamodule(mixed_root), ckpt_path=trained)
    command = [
        str(ANOMALIB),
        "test",
        "--model",
        "Grad",
        "--ckpt_path",
        str(trained),
        "--data",
        "anomalib_grad.data.MVTecLayout",
    ]
    command += [f"--data.root={mixed_root}", "--data.category=rgb", "--data.num_workers=0", "--data.eval_batch_size=4"]
    command += [f"--default_root_dir={tmp_path / 'cli'}", "--trainer.accelerator=cpu"]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore", "COLUMNS": "200"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    row = next(line for line in result.stdout.splitlines() if "image_AUROC" in line)
    assert float(row.split("│")[2]) == pytest.approx(reference[0]["image_AUROC"], abs=1e-6)


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_damaged_checkpoint_says_so_and_names_the_file(trained, mixed_root, tmp_path, damage):
    data = trained.read_bytes()
    bad = tmp_path / "model.ckpt"
    bad.write_bytes(data[:10000] if damage == "truncated" else data[:5000] + b"\0" * 5000 + data[10000:])
    expected = rf"damaged or incomplete: {bad}"
    with pytest.raises(DamagedCheckpointError, match=expected):
        Grad.load_from_checkpoint(bad)  # as `anomalib export --ckpt_path` does
    with pytest.raises(DamagedCheckpointError, match=expected):
        engine(tmp_path).test(Grad(), datamodule=datamodule(mixed_root), ckpt_path=bad)


def test_another_models_checkpoint_says_whose_it_is(mixed_root, tmp_path):
    patchcore = Patchcore(backbone="resnet18", pre_trained=False)
    path = tmp_path / "patchcore.ckpt"
    checkpoint = {  # what Lightning writes: the state dict, the init arguments, the loop states
        "state_dict": patchcore.state_dict(),
        "hyper_parameters": dict(patchcore.hparams),
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "loops": {},
    }
    torch.save(checkpoint, path)
    with pytest.raises(NotAGradCheckpointError, match=r"patchcore\.ckpt is not a GRAD checkpoint \(it is a Patchcore"):
        engine(tmp_path).test(Grad(), datamodule=datamodule(mixed_root), ckpt_path=path)
    with pytest.raises(NotAGradCheckpointError, match="it is a Patchcore"):
        Grad.load_from_checkpoint(path)


@pytest.mark.slow
def test_training_is_not_lost_when_validation_fails_and_the_test_can_be_rerun(mixed_root, tmp_path, monkeypatch):
    root = tmp_path / "data"
    shutil.copytree(mixed_root / "rgb", root / "rgb")
    bad = root / "rgb" / "test" / "good" / "001.png"
    intact = bad.read_bytes()
    bad.write_bytes(intact[: len(intact) // 2])
    monkeypatch.setattr(MVTecLayout, "prepare_data", lambda self: None)  # a datamodule that checks nothing
    seed_everything(0)
    model = Grad(**SETTINGS, visualizer=False)
    with pytest.raises(UnreadableImageError, match=str(bad)):
        engine(tmp_path / "results").train(model, datamodule=datamodule(root))  # fails in validation
    checkpoints = list((tmp_path / "results").rglob("*.ckpt"))
    assert len(checkpoints) == 1
    saved = torch.load(checkpoints[0], weights_only=False)["state_dict"]
    trained_weights = {key: value for key, value in model.state_dict().items() if key.startswith("model.")}
    assert trained_weights and all(torch.equal(saved[key], value) for key, value in trained_weights.items())
    assert torch.isnan(saved["post_processor._image_threshold"])  # written before validation

    bad.write_bytes(intact)  # the user fixes the data and runs the test again from the checkpoint
    before_validation = tmp_path / "before_validation.ckpt"
    shutil.copy(checkpoints[0], before_validation)
    results = engine(tmp_path / "rerun").test(Grad(), datamodule=datamodule(root), ckpt_path=checkpoints[0])
    assert 0 <= results[0]["image_AUROC"] <= 1

    validated = Grad.load_from_checkpoint(before_validation)  # oracle: anomalib's own validation
    engine(tmp_path / "oracle").validate(validated, datamodule=datamodule(root))
    stored = torch.load(checkpoints[0], weights_only=False)["state_dict"]
    for name in ("_image_threshold", "image_min", "image_max", "_pixel_threshold"):
        torch.testing.assert_close(stored[f"post_processor.{name}"], getattr(validated.post_processor, name))
