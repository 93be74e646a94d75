"""Fit Grad's positional subspace on the training images before the first training step.

:class:`FitPositionalSubspace`, a callback of every :class:`~anomalib_grad.Grad` (its
``configure_callbacks``), makes one pass over the training loader when training starts: it
pre-processes each batch as the training loop will and computes the backbone features through the
model's :class:`~anomalib_grad.models.grad.training_features.TrainingFeatures` (so the pass fills the
cache that the first epoch would fill anyway),
accumulates the statistics of the normal images, sums them over DDP processes and fits the
:class:`~anomalib_grad.models.grad.components.positional_subspace.PositionalSubspace`. Models
without one (``positional_rank=0``, the paper's model) are left alone.

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib.engine import Engine
    >>> from anomalib_grad import Grad
    >>> Engine().fit(Grad(positional_rank=32), datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
"""

import logging

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_grad.models.grad.components.real_anomalies import anomalous_rows_with_masks

logger = logging.getLogger(__name__)


class FitPositionalSubspace(Callback):
    """Fit the model's positional subspace on the normal training images when training starts."""

    @torch.no_grad()
    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """One pass over the training loader: accumulate, reduce over processes, fit."""
        subspace = pl_module.model.positional_subspace
        if subspace is None:
            return
        subspace.reset_statistics()
        for batch in trainer.train_dataloader:
            batch = trainer.strategy.batch_to_device(batch)
            features = pl_module.training_features.features(
                batch.image_path, batch.image, pl_module.model.extract_features, pl_module.pre_processing_transform
            )
            normal = features[~anomalous_rows_with_masks(batch)]
            if len(normal):
                subspace.update(normal)
        count, sums, products = subspace.statistics()
        count_tensor = torch.tensor(float(count), dtype=torch.float64, device=sums.device)
        count = int(trainer.strategy.reduce(count_tensor, reduce_op="sum").item())
        sums = trainer.strategy.reduce(sums, reduce_op="sum")
        products = trainer.strategy.reduce(products, reduce_op="sum")
        subspace.set_statistics(count, sums, products)
        subspace.fit()
        logger.info("Fitted the positional subspace (rank %d) on %d normal training images.", subspace.rank, count)
