"""PyTorch model of GRAD: Bi-Grid Reconstruction for Image Anomaly Detection.

A frozen CNN gives aligned features φ at stride 8. Shared coordinate networks
map φ to one global coordinate per image and one local coordinate per
position; both a *normal* and an *abnormal* grid set are read at those
coordinates, each feeds its fusion branch, and the two reconstructions are
fused, refined by similarity to φ, and compared with φ to give the anomaly map.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.torch_model import GradModel
    >>> model = GradModel(input_size=(64, 64), pre_trained=False, branch_depth=1, branch_width=32).eval()
    >>> output = model(torch.rand(2, 3, 64, 64))
    >>> output.anomaly_map.shape, output.pred_score.shape
    (torch.Size([2, 1, 64, 64]), torch.Size([2]))
"""

from collections.abc import Sequence
from typing import Literal

import torch
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_grad.models.grad.anomaly_map import AnomalyMapGenerator, SimilarityRefinement
from anomalib_grad.models.grad.components.coordinate_mapper import CoordinateMapper
from anomalib_grad.models.grad.components.feature_extractor import AlignedFeatureExtractor
from anomalib_grad.models.grad.components.fusion import FusionBranch, GridFusion
from anomalib_grad.models.grad.components.grid import FeatureGrid

FEATURE_STRIDE = 8
SIZE_MULTIPLE = 16  # the stride-16 map must align exactly with the stride-8 one
MIN_INPUT_SIZE = 32


def check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    """Check that the backbone can handle an image size.

    Args:
        input_size: ``(H, W)`` in pixels.

    Returns:
        The size as a tuple.

    Raises:
        ValueError: If a side is not a multiple of 16 or smaller than 32.

    Example:
        >>> check_input_size([256, 256])
        (256, 256)
    """
    size = tuple(int(side) for side in input_size)
    if len(size) != 2 or any(side < MIN_INPUT_SIZE or side % SIZE_MULTIPLE for side in size):
        msg = (
            f"input_size {tuple(input_size)} is not usable: GRAD needs (height, width), each a multiple of "
            f"{SIZE_MULTIPLE} and at least {MIN_INPUT_SIZE} pixels, e.g. (256, 256)."
        )
        raise ValueError(msg)
    return size  # type: ignore[return-value]


class GradModel(nn.Module):
    """GRAD torch model.

    Args:
        input_size: Image size ``(H, W)``; multiples of 16. Defaults to ``(256, 256)``.
        backbone: timm CNN name. Defaults to ``"tf_efficientnet_lite0"``.
        layers: Backbone layers at strides 8 and 16; ``None`` finds them.
        pre_trained: Use ImageNet weights. Defaults to ``True``.
        local_grid_size: Local grid side Rl. Defaults to ``8``.
        global_grid_size: Global grid side Rg. Defaults to ``4``.
        branch_depth: Residual blocks per fusion branch. Defaults to ``9``.
        branch_width: Channels inside the branches; ``None`` keeps 2C.
        fusion: ``"learned"`` weight (official code) or ``"convex"`` blend (paper).
        fusion_weight: Start value of the learned fusion weight. Defaults to ``-0.2``.
        fusion_blend: λ of the convex blend. Defaults to ``0.9``.
        coordinate_noise_std: σ of training-time local-coordinate noise. Defaults to ``0.05``.
        coordinate_noise_probability: Probability per batch of that noise. Defaults to ``0.5``.
        smoothing_size: Side of the anomaly-map mean filter. Defaults to ``21``.
        score_pool_size: Side of the pool before the image-score maximum. Defaults to ``32``.

    Raises:
        ValueError: For an unusable input size, backbone or layer.
    """

    def __init__(
        self,
        input_size: Sequence[int] = (256, 256),
        backbone: str = "tf_efficientnet_lite0",
        layers: Sequence[str | int] | None = None,
        pre_trained: bool = True,
        local_grid_size: int = 8,
        global_grid_size: int = 4,
        branch_depth: int = 9,
        branch_width: int | None = None,
        fusion: Literal["learned", "convex"] = "learned",
        fusion_weight: float = -0.2,
        fusion_blend: float = 0.9,
        coordinate_noise_std: float = 0.05,
        coordinate_noise_probability: float = 0.5,
        smoothing_size: int = 21,
        score_pool_size: int = 32,
    ) -> None:
        super().__init__()
        self.input_size = check_input_size(input_size)
        self.feature_size = (self.input_size[0] // FEATURE_STRIDE, self.input_size[1] // FEATURE_STRIDE)
        self.feature_extractor = AlignedFeatureExtractor(backbone, layers, pre_trained)
        channels = self.feature_extractor.out_channels
        self.coordinate_mapper = CoordinateMapper(channels, coordinate_noise_std, coordinate_noise_probability)
        self.normal_grid = FeatureGrid(channels, self.feature_size, local_grid_size, global_grid_size)
        self.abnormal_grid = FeatureGrid(channels, self.feature_size, local_grid_size, global_grid_size)
        self.normal_branch = FusionBranch(channels, branch_depth, branch_width)
        self.abnormal_branch = FusionBranch(channels, branch_depth, branch_width, normalize_input=True)
        self.fusion = GridFusion(fusion, fusion_weight, fusion_blend)
        self.refinement = SimilarityRefinement()
        self.anomaly_map_generator = AnomalyMapGenerator(self.input_size, smoothing_size, score_pool_size)
        for module in (self.coordinate_mapper, self.normal_branch, self.abnormal_branch):
            module.apply(_init_weights)

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """Compute the aligned backbone features φ.

        Args:
            images: Normalised images ``(B, 3, H, W)`` of the model's input size.

        Returns:
            Features ``(B, C, H/8, W/8)``.

        Raises:
            ValueError: If the images do not have the model's input size.
        """
        if tuple(images.shape[-2:]) != self.input_size or images.dim() != 4:
            msg = (
                f"GRAD was built for {self.input_size[0]}×{self.input_size[1]} images (B, 3, H, W), got a batch of "
                f"shape {tuple(images.shape)}. Resize in the pre-processor or build the model with this input_size."
            )
            raise ValueError(msg)
        return self.feature_extractor(images)

    def abnormal_scores(self, features: torch.Tensor) -> torch.Tensor:
        """Per-position score ``d`` of the abnormal branch (its channel 0).

        Args:
            features: Features φ, possibly with pasted anomalies.

        Returns:
            Scores ``(B, 1, H, W)``.
        """
        global_coordinates, local_coordinates = self.coordinate_mapper(features)
        abnormal = self.abnormal_branch(self.abnormal_grid(global_coordinates, local_coordinates))
        return abnormal[:, :1]

    def reconstruct(self, features: torch.Tensor) -> torch.Tensor:
        """Reconstruct features from both grid sets, fuse and refine.

        Args:
            features: Features φ ``(B, C, H, W)``.

        Returns:
            Refined reconstruction x̂_rec ``(B, C, H, W)``.
        """
        global_coordinates, local_coordinates = self.coordinate_mapper(features)
        normal = self.normal_branch(self.normal_grid(global_coordinates, local_coordinates))
        abnormal = self.abnormal_branch(self.abnormal_grid(global_coordinates, local_coordinates))
        return self.refinement(self.fusion(normal, abnormal), features)

    def forward(self, images: torch.Tensor) -> InferenceBatch | tuple[torch.Tensor, torch.Tensor]:
        """Run GRAD.

        Args:
            images: Normalised images ``(B, 3, H, W)``.

        Returns:
            In training mode, the reconstruction and the features. In eval mode,
            an :class:`InferenceBatch` with ``pred_score`` ``(B,)`` and
            ``anomaly_map`` ``(B, 1, H, W)``.
        """
        features = self.extract_features(images)
        reconstruction = self.reconstruct(features)
        if self.training:
            return reconstruction, features
        anomaly_map, pred_score = self.anomaly_map_generator(features, reconstruction)
        return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map)


def check_finite(values: torch.Tensor, image_paths: Sequence[str] | None) -> None:
    """Fail clearly when images or features hold NaN or infinity.

    Args:
        values: Images or features ``(B, ...)``.
        image_paths: Paths of the batch's images, for the message.

    Raises:
        ValueError: If any value is not finite.
    """
    finite = torch.isfinite(values.flatten(start_dim=1)).all(dim=1)
    if bool(finite.all()):
        return
    bad = [index for index, ok in enumerate(finite.tolist()) if not ok]
    names = [image_paths[index] for index in bad] if image_paths else bad
    msg = (
        f"NaN or infinite values in the images or backbone features of {names}. Check the images and the "
        "pre-processing (normalisation), and that the backbone weights are intact."
    )
    raise ValueError(msg)


def _init_weights(module: nn.Module) -> None:
    """Initialise convolutions and linears with N(0, 0.01) and zero bias (CRAD's scheme)."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.normal_(module.weight, std=0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
