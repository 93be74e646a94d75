"""Fit Grad's positional subspace and the statistics of its two image scores on the training images.

:class:`FitPositionalSubspace`, a callback of every :class:`~anomalib_grad.Grad` (its
``configure_callbacks``), works in two passes over the training loader, each through the model's
:class:`~anomalib_grad.models.grad.training_features.TrainingFeatures` (pre-processed as the
training loop does; the first pass fills the cache the first epoch would fill anyway):

1. **When training starts**, it accumulates the statistics of the normal images, sums them over DDP
   processes and fits the
   :class:`~anomalib_grad.models.grad.components.positional_subspace.PositionalSubspace`. It also
   fits two subspaces on the two halves of the images (split by a hash of the path).
2. **Before validation in training** (Grad validates once, after its last epoch), it scores every
   normal training image with the trained reconstruction and with the positional distance, and fixes
   the :class:`~anomalib_grad.models.grad.components.score_fusion.StandardisedScoreSum` statistics.
   An image's positional score comes from the subspace fitted on the *other* half: scored by the
   subspace fitted on itself, a training image looks more normal than any new image (on bottle's
   209 images the mean distance at rank 32 is 12 on training images and 18 on normal test images).

Models without a subspace (``positional_rank=0``, the paper's model) are left alone.

Example:
    >>> from anomalib.data import MVTecAD
    >>> from anomalib.engine import Engine
    >>> from anomalib_grad import Grad
    >>> Engine().fit(Grad(positional_rank=32), datamodule=MVTecAD(category="bottle"))  # doctest: +SKIP
"""

import logging
import zlib
from collections.abc import Callable, Iterable, Iterator
from functools import partial

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_grad.models.grad.components.positional_subspace import PositionalSubspace
from anomalib_grad.models.grad.components.real_anomalies import anomalous_rows_with_masks
from anomalib_grad.models.grad.torch_model import GradModel

logger = logging.getLogger(__name__)


Batches = Iterable[tuple[torch.Tensor, list[str]]]
"""Features ``(N, C, h, w)`` of normal training images with their paths, batch by batch."""
SumOverProcesses = Callable[[torch.Tensor], torch.Tensor]


def _no_processes(tensor: torch.Tensor) -> torch.Tensor:
    return tensor


def path_halves(paths: list[str]) -> torch.Tensor:
    """Which half (0 or 1) each image belongs to: the parity of a CRC-32 of its path, the same in every run."""
    return torch.tensor([zlib.crc32(str(path).encode()) % 2 for path in paths], dtype=torch.long)


@torch.no_grad()
def fit_positional_subspaces(
    subspace: PositionalSubspace, batches: Batches, sum_over_processes: SumOverProcesses = _no_processes
) -> list[PositionalSubspace]:
    """Fit ``subspace`` on all images, and one subspace on each half of them (see :func:`path_halves`).

    Returns:
        The two halves' subspaces; ``[subspace, subspace]`` when a half is empty (one training image).
    """
    halves = [
        PositionalSubspace(subspace.channels, subspace.feature_size, subspace.rank).to(subspace.mean.device)
        for _ in range(2)
    ]
    for features, paths in batches:
        half_of_image = path_halves(paths).to(features.device)
        for half, half_subspace in enumerate(halves):
            # Every half sees every batch (an empty slice adds zeros), so all processes reduce alike.
            half_subspace.update(features[half_of_image == half])
    statistics = []
    for half_subspace in halves:
        count, sums, products = half_subspace.statistics()
        count = int(sum_over_processes(torch.tensor(float(count), dtype=torch.float64, device=sums.device)).item())
        statistics.append((count, sum_over_processes(sums), sum_over_processes(products)))
    subspace.set_statistics(*(first + second for first, second in zip(*statistics, strict=True)))
    subspace.fit()
    logger.info(
        "Fitted the positional subspace (rank %d) on %d normal training images (halves: %d + %d).",
        subspace.rank,
        statistics[0][0] + statistics[1][0],
        statistics[0][0],
        statistics[1][0],
    )
    if min(count for count, _, _ in statistics) == 0:
        logger.warning("One half of the training images is empty: the score statistics use the fitted subspace.")
        return [subspace, subspace]
    for half_subspace, half_statistics in zip(halves, statistics, strict=True):
        half_subspace.set_statistics(*half_statistics)
        half_subspace.fit()
    return halves


@torch.no_grad()
def fit_score_statistics(
    model: GradModel,
    batches: Batches,
    halves: list[PositionalSubspace],
    sum_over_processes: SumOverProcesses = _no_processes,
) -> None:
    """Fit ``model.score_fusion`` on the training images' two image scores (each half by the other half's subspace).

    Raises:
        RuntimeError: If the model has no positional score.
    """
    fusion = model.score_fusion
    if fusion is None:
        msg = "This GRAD model has no positional score (positional_rank=0): there are no score statistics to fit."
        raise RuntimeError(msg)
    was_training = model.training
    model.eval()
    fusion.reset_statistics()
    for features, paths in batches:
        _, reconstruction_score = model.anomaly_map_generator(features, model.reconstruct(features))
        half_of_image = path_halves(paths).to(features.device)
        positional_score = torch.empty_like(reconstruction_score)
        for half, other in ((0, 1), (1, 0)):
            rows = half_of_image == half
            if rows.any():
                positional_score[rows] = model.positional_score(features[rows], halves[other])
        fusion.update(torch.stack([reconstruction_score, positional_score], dim=1))
    fusion.statistics = sum_over_processes(fusion.statistics.to(fusion.mean.device)).cpu()
    fusion.fit()
    model.train(was_training)
    logger.info("Image-score statistics: mean %s, std %s.", fusion.mean.tolist(), fusion.std.tolist())


class FitPositionalSubspace(Callback):
    """Fit the positional subspace when training starts and the score statistics before validation."""

    def __init__(self) -> None:
        self.halves: list[PositionalSubspace] = []
        self.scored = False

    @staticmethod
    def _normal_features(trainer: Trainer, pl_module: LightningModule) -> Iterator[tuple[torch.Tensor, list[str]]]:
        """Features of the normal images of each training batch, with their paths."""
        for batch in trainer.train_dataloader:
            batch = trainer.strategy.batch_to_device(batch)
            features = pl_module.training_features.features(
                batch.image_path, batch.image, pl_module.model.extract_features, pl_module.pre_processing_transform
            )
            normal = ~anomalous_rows_with_masks(batch)
            if normal.any():
                paths = [path for path, keep in zip(batch.image_path, normal.tolist(), strict=True) if keep]
                yield features[normal], paths

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Pass 1: fit the subspace on all normal training images, and one on each half."""
        subspace = pl_module.model.positional_subspace
        if subspace is not None:
            batches = self._normal_features(trainer, pl_module)
            self.halves = fit_positional_subspaces(subspace, batches, partial(trainer.strategy.reduce, reduce_op="sum"))

    def on_train_batch_end(self, *args: object, **kwargs: object) -> None:
        """The reconstruction changed: its score statistics are out of date."""
        del args, kwargs
        self.scored = False

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Pass 2 before validating in training, so the thresholds are set on the final scores."""
        if trainer.state.fn == TrainerFn.FITTING:
            self._fit_score_statistics(trainer, pl_module)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Pass 2 if training ended without validating after its last step."""
        self._fit_score_statistics(trainer, pl_module)

    def _fit_score_statistics(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if pl_module.model.score_fusion is None or not self.halves or self.scored:
            return
        batches = self._normal_features(trainer, pl_module)
        fit_score_statistics(pl_module.model, batches, self.halves, partial(trainer.strategy.reduce, reduce_op="sum"))
        self.scored = True
