"""PyTorch model of GRAD: Bi-Grid Reconstruction for Image Anomaly Detection.

A frozen CNN gives aligned features φ at stride 8. Shared coordinate networks map φ to one global
coordinate per image and one local coordinate per position; a *normal* and (optionally) an *abnormal*
grid set are read at those coordinates, each feeds its fusion branch, and the two reconstructions are
fused, refined by similarity to φ, and compared with φ to give the anomaly map. The image score adds
the map's score to that of φ's distance to a per-position subspace of normal features, each
standardised on the training images.

The model owns both training stages, as anomalib's SuperSimpleNet owns its anomaly generator:
:meth:`GradModel.set_stage` freezes what a stage does not train; stage A's forward synthesises
anomalies and scores them, stage B's reconstructs normal features.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
    >>> from anomalib_grad.models.grad.torch_model import GradModel
    >>> blocks = FeatureBlockPaste(block_size=(0, 2))  # 5×5 blocks at most: the feature map is 8×8
    >>> model = GradModel(input_size=(64, 64), pre_trained=False, branch_depth=1, feature_block_paste=blocks).eval()
    >>> output = model(torch.rand(2, 3, 64, 64))
    >>> output.anomaly_map.shape, output.pred_score.shape
    (torch.Size([2, 1, 64, 64]), torch.Size([2]))
"""

from collections.abc import Sequence

import torch
from anomalib.data import InferenceBatch
from torch import nn

from anomalib_grad.models.grad.anomaly_map import AnomalyMapGenerator
from anomalib_grad.models.grad.components.coordinate_mapper import CoordinateMapper
from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.components.feature_extractor import AlignedFeatureExtractor
from anomalib_grad.models.grad.components.fusion import FusionBranch, GridFusion
from anomalib_grad.models.grad.components.gaussian_noise import GaussianFeatureNoise
from anomalib_grad.models.grad.components.grid import FeatureGrid
from anomalib_grad.models.grad.components.positional_subspace import PositionalSubspace
from anomalib_grad.models.grad.components.refinement import SimilarityRefinement
from anomalib_grad.models.grad.components.score_fusion import StandardisedScoreSum
from anomalib_grad.models.grad.input_checks import check_image_batch, check_input_size
from anomalib_grad.models.grad.stages import (
    AbnormalStageOutput,
    AnomalySynthesis,
    NormalStageOutput,
    Stage,
    check_anomaly_synthesis,
    make_anomaly_generator,
)

FEATURE_STRIDE = 8


class GradModel(nn.Module):
    """GRAD torch model (defaults: the CPU preset; ``configs/grad.yaml`` holds the paper's model).

    Args:
        input_size: Image size ``(H, W)``; multiples of 16. Defaults to ``(256, 256)``.
        backbone: timm CNN name. Defaults to ``"tf_efficientnet_lite0"``.
        layers: Backbone layers at strides 8 and 16; ``None`` finds them.
        pre_trained: Use ImageNet weights. Defaults to ``True``.
        abnormal_grid: Build the abnormal grid set, branch and fusion; ``False``: the normal grid alone.
        local_grid_size: Local grid side Rl. Defaults to ``8``.
        global_grid_size: Global grid side Rg. Defaults to ``4``.
        branch_depth: Residual blocks per fusion branch (paper: 9). Defaults to ``2``.
        branch_width: Channels inside the branches; ``None`` keeps 2C (paper). Defaults to ``64``.
        fusion: How the two reconstructions are fused; ``None`` is ``GridFusion()`` (learned weight).
        anomaly_synthesis: Stage A's anomalies: ``"fbp"`` (Feature Block Paste), ``"gaussian_noise"``
            (SimpleNet's, on FBP's block shapes) or ``"none"`` (real defects only). Defaults to ``"fbp"``.
        feature_block_paste: The FBP module (block shapes of both synthesisers); ``None``: defaults.
        noise_std: σ of the Gaussian feature noise, in feature units. Defaults to ``8.0``.
        coordinate_noise_std: σ of training-time local-coordinate noise. Defaults to ``0.05``.
        coordinate_noise_probability: Probability per batch of that noise. Defaults to ``0.5``.
        refinement: The similarity refinement; ``None`` uses the paper's constants.
        positional_rank: Rank of the :class:`PositionalSubspace` whose distance map's image score is added
            to the reconstruction's (fit before training); ``0``: none, the paper's model. Defaults to ``32``.
        smoothing_size: Side of the anomaly-map mean filter. Defaults to ``21``.
        score_pool_size: Side of the pool before the image-score maximum. Defaults to ``32``.

    Raises:
        ValueError: For an unusable input size, backbone, layer, synthesis or FBP block.
    """

    def __init__(
        self,
        input_size: Sequence[int] = (256, 256),
        backbone: str = "tf_efficientnet_lite0",
        layers: Sequence[str | int] | None = None,
        pre_trained: bool = True,
        abnormal_grid: bool = True,
        local_grid_size: int = 8,
        global_grid_size: int = 4,
        branch_depth: int = 2,
        branch_width: int | None = 64,
        fusion: GridFusion | None = None,
        anomaly_synthesis: AnomalySynthesis = "fbp",
        feature_block_paste: FeatureBlockPaste | None = None,
        noise_std: float = 8.0,
        coordinate_noise_std: float = 0.05,
        coordinate_noise_probability: float = 0.5,
        refinement: SimilarityRefinement | None = None,
        positional_rank: int = 32,
        smoothing_size: int = 21,
        score_pool_size: int = 32,
    ) -> None:
        super().__init__()
        check_anomaly_synthesis(anomaly_synthesis)
        self.input_size = check_input_size(input_size)
        self.feature_size = (self.input_size[0] // FEATURE_STRIDE, self.input_size[1] // FEATURE_STRIDE)
        self.feature_extractor = AlignedFeatureExtractor(backbone, layers, pre_trained)
        channels = self.feature_extractor.out_channels
        self.coordinate_mapper = CoordinateMapper(channels, coordinate_noise_std, coordinate_noise_probability)
        # Built in this order (normal grid, abnormal grid, normal branch, abnormal branch): a seed gives the
        # same initial weights as in earlier versions.
        self.normal_grid = FeatureGrid(channels, self.feature_size, local_grid_size, global_grid_size)
        self.abnormal_grid: FeatureGrid | None = None
        self.abnormal_branch: FusionBranch | None = None
        self.fusion: GridFusion | None = None
        self.anomaly_generator: FeatureBlockPaste | GaussianFeatureNoise | None = None
        if abnormal_grid:
            self.abnormal_grid = FeatureGrid(channels, self.feature_size, local_grid_size, global_grid_size)
        self.normal_branch = FusionBranch(channels, branch_depth, branch_width)
        if abnormal_grid:
            self.abnormal_branch = FusionBranch(channels, branch_depth, branch_width, normalize_input=True)
            self.fusion = fusion or GridFusion()
            blocks = feature_block_paste or FeatureBlockPaste()
            self.anomaly_generator = make_anomaly_generator(anomaly_synthesis, blocks, noise_std, self.feature_size)
        self.positional_subspace: PositionalSubspace | None = None
        self.score_fusion: StandardisedScoreSum | None = None
        if positional_rank:
            self.positional_subspace = PositionalSubspace(channels, self.feature_size, positional_rank)
            self.score_fusion = StandardisedScoreSum(scores=2)
        self.refinement = refinement or SimilarityRefinement()
        self.anomaly_map_generator = AnomalyMapGenerator(self.input_size, smoothing_size, score_pool_size)
        for module in (self.coordinate_mapper, self.normal_branch, self.abnormal_branch):
            if module is not None:
                module.apply(_init_weights)
        self.stage: Stage = "abnormal" if abnormal_grid else "normal"

    @property
    def has_abnormal_grid(self) -> bool:
        """Whether the model has the abnormal grid set (and so a stage A)."""
        return self.abnormal_grid is not None

    def trained_parts(self) -> dict[str, tuple[Stage, ...]]:
        """The one table of which part (an attribute) trains in which stages; the backbone never trains."""
        parts: dict[str, tuple[Stage, ...]] = {
            "coordinate_mapper": ("abnormal", "normal"),
            "normal_grid": ("normal",),
            "normal_branch": ("normal",),
        }
        if self.has_abnormal_grid:
            parts |= {"abnormal_grid": ("abnormal",), "abnormal_branch": ("abnormal",), "fusion": ("normal",)}
        return parts

    def set_stage(self, stage: Stage) -> None:
        """Train the stage's parts and freeze the others (gradients and batch-norm statistics).

        Args:
            stage: ``"abnormal"`` (stage A) or ``"normal"`` (stage B).

        Raises:
            ValueError: For stage A in a model without the abnormal grid.
        """
        if stage == "abnormal" and not self.has_abnormal_grid:
            msg = "This GRAD model has no abnormal grid (abnormal_grid=False), so it has no stage A."
            raise ValueError(msg)
        self.stage = stage
        for name, stages in self.trained_parts().items():
            module = getattr(self, name)
            trained = stage in stages
            module.requires_grad_(trained).train(trained and self.training)

    def train(self, mode: bool = True) -> "GradModel":
        """Switch train/eval mode; in training, the parts frozen by the current stage stay in eval mode."""
        super().train(mode)
        if mode:
            self.set_stage(self.stage)
        return self

    def parameter_groups(self) -> dict[str, list[nn.Parameter]]:
        """Trainable parameters split into the optimiser's groups, from :meth:`trained_parts`.

        Returns:
            ``{"grids": [...], "networks": [...]}``: grid parameters (their own learning rate) and the rest.
        """
        groups: dict[str, list[nn.Parameter]] = {"grids": [], "networks": []}
        for name in self.trained_parts():
            module = getattr(self, name)
            groups["grids" if isinstance(module, FeatureGrid) else "networks"] += list(module.parameters())
        return groups

    def extract_features(self, images: torch.Tensor) -> torch.Tensor:
        """Aligned backbone features φ ``(B, C, H/8, W/8)`` of normalised images ``(B, 3, H, W)``.

        Raises:
            ValueError: If the images do not have the model's input size.
        """
        check_image_batch(images, self.input_size)
        return self.feature_extractor(images)

    def reconstruction_parts(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The two branches' reconstructions x̂_n and x̂_a (``None`` without the abnormal grid).

        Args:
            features: Features φ ``(B, C, H, W)``.

        Returns:
            ``(x̂_n, x̂_a)``, each ``(B, C, H, W)``. In stage B's training the frozen abnormal path is
            evaluated without gradients: it has nothing to train, and its backward pass would cost about as
            much as the normal branch's (the coordinates then learn from the normal path alone).
        """
        global_coordinates, local_coordinates = self.coordinate_mapper(features)
        normal = self.normal_branch(self.normal_grid(global_coordinates, local_coordinates))
        if self.abnormal_grid is None or self.abnormal_branch is None:
            return normal, None
        if self.training and self.stage == "normal":
            with torch.no_grad():
                return normal, self.abnormal_branch(self.abnormal_grid(global_coordinates, local_coordinates))
        return normal, self.abnormal_branch(self.abnormal_grid(global_coordinates, local_coordinates))

    def reconstruct(self, features: torch.Tensor) -> torch.Tensor:
        """Refined reconstruction x̂_rec ``(B, C, H, W)`` of features φ: both grid sets, fused and refined."""
        normal, abnormal = self.reconstruction_parts(features)
        fused = normal if self.fusion is None or abnormal is None else self.fusion(normal, abnormal)
        return self.refinement(fused, features)

    def abnormal_stage(
        self,
        features: torch.Tensor,
        real_features: torch.Tensor | None = None,
        real_masks: torch.Tensor | None = None,
    ) -> AbnormalStageOutput:
        """Stage A: synthesise anomalies on normal features and score them with the abnormal path.

        Args:
            features: Features of normal images ``(N, C, h, w)``; ``N`` may be zero.
            real_features: Features of real defective images ``(M, C, h, w)``, or ``None``.
            real_masks: Their binary masks on the feature grid ``(M, 1, h, w)``.

        Returns:
            Scores ``d`` ``(N + M, 1, h, w)`` (the abnormal branch's channel 0) and target masks.
            Without synthesis (``anomaly_synthesis="none"``), normal features are scored as they are,
            with empty masks.
        """
        if self.anomaly_generator is None:
            synthetic, mask = features, features.new_zeros((features.shape[0], 1, *features.shape[-2:]))
        elif len(features):
            synthetic, mask = self.anomaly_generator(features)
        else:
            synthetic, mask = features, features.new_zeros((0, 1, *features.shape[-2:]))
        if real_features is not None and real_masks is not None:
            synthetic = torch.cat([synthetic, real_features])
            mask = torch.cat([mask, real_masks.to(mask.dtype)])
        global_coordinates, local_coordinates = self.coordinate_mapper(synthetic)
        abnormal = self.abnormal_branch(self.abnormal_grid(global_coordinates, local_coordinates))  # type: ignore[misc]
        return AbnormalStageOutput(scores=abnormal[:, :1], mask=mask)

    def forward(
        self,
        images: torch.Tensor | None = None,
        features: torch.Tensor | None = None,
        real_features: torch.Tensor | None = None,
        real_masks: torch.Tensor | None = None,
    ) -> InferenceBatch | AbnormalStageOutput | NormalStageOutput:
        """Run GRAD: the current stage's training step in training mode, inference in eval mode.

        Args:
            images: Normalised images ``(B, 3, H, W)``; or give their ``features``.
            features: Backbone features φ (e.g. cached), instead of ``images``.
            real_features: Stage A only: features of real defective images.
            real_masks: Stage A only: their masks on the feature grid.

        Returns:
            In training mode, :class:`AbnormalStageOutput` (stage A) or :class:`NormalStageOutput`
            (stage B). In eval mode, an :class:`InferenceBatch` with ``pred_score`` ``(B,)`` and
            ``anomaly_map`` ``(B, 1, H, W)``.
        """
        if features is None:
            if images is None:
                msg = "GradModel needs images or features."
                raise ValueError(msg)
            features = self.extract_features(images)
        if self.training and self.stage == "abnormal":
            return self.abnormal_stage(features, real_features, real_masks)
        reconstruction = self.reconstruct(features)
        if self.training:
            return NormalStageOutput(reconstruction=reconstruction, features=features)
        anomaly_map, pred_score = self.anomaly_map_generator(features, reconstruction)
        if self.score_fusion is not None:
            pred_score = self.score_fusion(torch.stack([pred_score, self.positional_score(features)], dim=1))
        return InferenceBatch(pred_score=pred_score, anomaly_map=anomaly_map)

    def positional_score(self, features: torch.Tensor, subspace: PositionalSubspace | None = None) -> torch.Tensor:
        """Image scores ``(B,)`` of φ's distance to the positional subspace (or to another fitted ``subspace``).

        Scored at feature resolution (:meth:`AnomalyMapGenerator.coarse_image_score`): the distance map is not an
        output, so it is never upsampled.

        Raises:
            RuntimeError: If the model has no positional subspace (``positional_rank=0``).
        """
        subspace = subspace or self.positional_subspace
        if subspace is None:
            msg = "This GRAD model has no positional subspace (positional_rank=0)."
            raise RuntimeError(msg)
        return self.anomaly_map_generator.coarse_image_score(subspace(features), FEATURE_STRIDE)


def _init_weights(module: nn.Module) -> None:
    """Initialise convolutions and linears with N(0, 0.01) and zero bias (CRAD's scheme)."""
    if isinstance(module, nn.Conv2d | nn.Linear):
        nn.init.normal_(module.weight, std=0.01)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
