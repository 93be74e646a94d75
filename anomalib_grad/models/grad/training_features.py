"""Backbone features of everything Grad trains on, each image's computed once.

GRAD's backbone is frozen and its training images are not augmented, so a training image's
features are the same in every epoch. :class:`TrainingFeatures` is the one place that turns
training images into features: through the :class:`FeatureCache`, checked finite, and, for images
that do not come through the training loop (the real defects of stage A, the positional
subspace's fitting pass), pre-processed with the model's own transform first, exactly as
anomalib's pre-processor prepares the training batch.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.training_features import TrainingFeatures
    >>> inputs = TrainingFeatures()
    >>> calls = []
    >>> def extract(images):
    ...     calls.append(len(images))
    ...     return images.mean(dim=1, keepdim=True)
    >>> _ = inputs.features(["a.png", "b.png"], torch.ones(2, 3, 4, 4), extract)
    >>> _ = inputs.features(["b.png", "a.png"], torch.ones(2, 3, 4, 4), extract)
    >>> calls  # the second batch came from the cache
    [2]
"""

import logging
from collections.abc import Callable, Sequence
from typing import Any

import torch
from anomalib.data import Batch

from anomalib_grad.models.grad.components.feature_cache import CacheDtype, FeatureCache
from anomalib_grad.models.grad.components.real_anomalies import RealAnomalyStream, mask_to_feature_grid
from anomalib_grad.models.grad.input_checks import check_finite

logger = logging.getLogger(__name__)

Extract = Callable[[torch.Tensor], torch.Tensor]
Transform = Callable[..., Any] | None


class TrainingFeatures:
    """Cached, checked features of training images and of the datamodule's real defects.

    Args:
        cache_features: Cache features by image path. Defaults to ``True``.
        learn_from_real_anomalies: Serve real defective images (the batch's own and the datamodule's
            ``anomaly_train_dataloader()``) to stage A. Defaults to ``True``.
        cache_dtype: Precision of the cached features (see :class:`FeatureCache`). Defaults to ``"float32"``.
    """

    def __init__(
        self, cache_features: bool = True, learn_from_real_anomalies: bool = True, cache_dtype: CacheDtype = "float32"
    ) -> None:
        self.cache = FeatureCache(enabled=cache_features, dtype=cache_dtype)
        self.learn_from_real_anomalies = learn_from_real_anomalies
        self.real_anomalies: RealAnomalyStream | None = None

    def setup(self, datamodule: Any) -> None:
        """Turn the cache off for augmented training images; find the datamodule's real defects.

        Args:
            datamodule: The trainer's datamodule (or ``None``).
        """
        if getattr(datamodule, "train_augmentations", None) is not None:
            logger.info("Training images are augmented: backbone features are not cached.")
            self.cache.enabled = False
        if self.learn_from_real_anomalies:
            self.real_anomalies = RealAnomalyStream.from_datamodule(datamodule)
            if self.real_anomalies is not None:
                logger.info("Stage A learns from %d real anomalous images beside FBP.", len(self.real_anomalies))

    def features(
        self,
        image_paths: Sequence[str] | None,
        images: torch.Tensor,
        extract: Extract,
        transform: Transform = None,
    ) -> torch.Tensor:
        """Features of a batch of training images, from the cache when it has them.

        Args:
            image_paths: One path per image (the cache key), or ``None``.
            images: The images, pre-processed unless ``transform`` is given.
            extract: The model's feature function.
            transform: The pre-processor's transform, for images that did not come through the training loop.

        Returns:
            Features ``(B, C, h, w)``.

        Raises:
            ValueError: If a feature is not finite (the error names the images).
        """
        if transform is not None:
            images = transform(images)
        features = self.cache.get_or_compute(image_paths, images, extract)
        check_finite(features, image_paths)
        return features

    def real_anomaly_features(
        self,
        batch: Batch,
        features: torch.Tensor,
        anomalous: torch.Tensor,
        extract: Extract,
        transform: Transform,
        feature_size: tuple[int, int],
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Features ``(N, C, h, w)`` and feature-grid masks ``(N, 1, h, w)`` of a stage-A step's real defects.

        They are the batch's own ``anomalous`` images plus, when the datamodule offers training anomalies,
        one batch of those, pre-processed (images and masks) by ``transform`` like the training batch; ``N``
        is zero with ``learn_from_real_anomalies`` off.

        Args:
            batch: The training batch (pre-processed).
            features: Its features.
            anomalous: Its anomalous rows, ``(B,)`` booleans.
            extract: The model's feature function.
            transform: The pre-processor's transform, or ``None``.
            feature_size: The feature grid ``(h, w)``.

        Returns:
            The features and masks, concatenated in that order.
        """
        parts = [(features[:0], features.new_zeros((0, 1, *feature_size)))]
        if self.learn_from_real_anomalies and bool(anomalous.any()):
            parts.append((features[anomalous], mask_to_feature_grid(batch.gt_mask[anomalous], feature_size)))
        if self.learn_from_real_anomalies and self.real_anomalies is not None:
            real = self.real_anomalies.next_batch(features.device)
            images, masks = transform(real.image, real.gt_mask) if transform is not None else (real.image, real.gt_mask)
            parts.append((self.features(real.image_path, images, extract), mask_to_feature_grid(masks, feature_size)))
        return torch.cat([part[0] for part in parts]), torch.cat([part[1].to(features.dtype) for part in parts])
