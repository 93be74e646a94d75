"""Grad under Lightning's DDP: unused parameters per stage, and every evaluation image scored exactly once.

Four things differ from a single process; :class:`DistributedGrad`, a callback of every
:class:`~anomalib_grad.Grad` (its ``configure_callbacks``), takes care of them:

- Each stage trains only its own parts, so DDP's reducer must be told that some parameters get no
  gradient (:func:`allow_unused_parameters`); Lightning calls the ``setup`` hooks before it wraps
  the model, so ``--trainer.strategy ddp`` works as it is.
- Every rank would draw the same FBP blocks (``seed_everything`` seeds all ranks alike):
  :func:`seed_anomalies_per_rank` gives rank ``r`` the stream of seed ``base + r``, where ``base`` is
  ``fbp_seed`` or one draw from the (seeded) global RNG, so the draws differ between ranks and repeat
  for a seed.
- Lightning's training ``DistributedSampler`` deals the images out anew every epoch, so each rank's
  feature cache would fill with every image in turn. :func:`keep_training_shards` gives each rank the same
  images every epoch (:class:`FixedShardSampler`, shuffled within the shard), and its cache holds just those.
- Lightning shards validation and test sets with a ``DistributedSampler`` that pads the last shard with
  repeated images, which would count those images twice in the thresholds, the normalisation and the test
  metrics. :func:`score_each_image_once` gives the loaders Lightning's ``UnrepeatedDistributedSampler``
  instead (shards may then differ by one image, as in Lightning's own prediction loop).

Example:
    >>> from torch.utils.data import DataLoader, DistributedSampler
    >>> loader = DataLoader(list(range(5)), batch_size=2, sampler=DistributedSampler(list(range(5)), 2, 1, False))
    >>> len(list(loader.batch_sampler.sampler))  # padded: image 0 is scored twice over both ranks
    3
    >>> score_each_image_once(loader)
    >>> list(loader.batch_sampler.sampler)
    [1, 3]
"""

from collections.abc import Callable, Iterable, Iterator

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler
from lightning.pytorch.strategies import DDPStrategy, Strategy
from torch.utils.data import DataLoader, DistributedSampler

from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.components.gaussian_noise import GaussianFeatureNoise


class DistributedGrad(Callback):
    """Run Grad under DDP as in one process (see the module docstring); on one process it changes nothing."""

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        """The reducer skips the parameters a stage leaves unused; each rank draws its own anomalies."""
        del stage
        allow_unused_parameters(trainer.strategy)
        seed_anomalies_per_rank(pl_module.model.anomaly_generator, trainer.global_rank, trainer.world_size)

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Each rank trains on the same images every epoch (its feature cache stays its own)."""
        del pl_module
        keep_training_shards(trainer.train_dataloader)

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score every validation image exactly once (thresholds and normalisation see no repeats)."""
        del pl_module
        score_each_image_once(trainer.val_dataloaders)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Score every test image exactly once."""
        del pl_module
        score_each_image_once(trainer.test_dataloaders)


def allow_unused_parameters(strategy: Strategy | None) -> None:
    """Let a DDP strategy's reducer skip parameters without gradients, unless its user chose already.

    Args:
        strategy: The trainer's strategy; anything but :class:`~lightning.pytorch.strategies.DDPStrategy` is
            left alone.
    """
    if isinstance(strategy, DDPStrategy):
        strategy._ddp_kwargs.setdefault("find_unused_parameters", True)  # Lightning has no public setter


def seed_anomalies_per_rank(
    generator: FeatureBlockPaste | GaussianFeatureNoise | None, rank: int, world_size: int
) -> None:
    """Give each rank its own reproducible stream of synthetic anomalies (nothing changes on one process).

    Args:
        generator: The model's anomaly generator, or ``None``.
        rank: This process's global rank.
        world_size: Number of processes.
    """
    if generator is None or world_size < 2:
        return
    blocks = generator.blocks if isinstance(generator, GaussianFeatureNoise) else generator
    base = blocks.seed if blocks.seed is not None else int(torch.randint(0, 2**62, (1,)).item())
    blocks.reset(base + rank)


class FixedShardSampler(DistributedSampler):
    """A ``DistributedSampler`` whose rank keeps the images of epoch 0 and only reorders them each epoch.

    Example:
        >>> shards = [FixedShardSampler(range(6), num_replicas=2, rank=rank, seed=0) for rank in (0, 1)]
        >>> first = [sorted(shard) for shard in shards]
        >>> for shard in shards:
        ...     shard.set_epoch(1)
        >>> [sorted(shard) for shard in shards] == first, sorted(first[0] + first[1])
        (True, [0, 1, 2, 3, 4, 5])
    """

    def __iter__(self) -> Iterator[int]:
        """This rank's images, in an order drawn from ``seed + epoch``."""
        epoch, self.epoch = self.epoch, 0
        shard = list(super().__iter__())
        self.epoch = epoch
        if not self.shuffle:
            return iter(shard)
        order = torch.randperm(len(shard), generator=torch.Generator().manual_seed(self.seed + epoch))
        return iter([shard[position] for position in order.tolist()])


def keep_training_shards(loaders: DataLoader | Iterable[DataLoader] | None) -> None:
    """Give DDP training loaders a :class:`FixedShardSampler` (same options as Lightning's sampler).

    Args:
        loaders: A loader, several, or ``None``.
    """
    _replace_distributed_samplers(
        loaders,
        lambda old: FixedShardSampler(
            old.dataset, num_replicas=old.num_replicas, rank=old.rank, shuffle=old.shuffle, seed=old.seed
        ),
    )


def score_each_image_once(loaders: DataLoader | Iterable[DataLoader] | None) -> None:
    """Replace the padding ``DistributedSampler`` of evaluation loaders by one that repeats no image.

    Args:
        loaders: A loader, several (Lightning's ``val_dataloaders`` / ``test_dataloaders``), or ``None``.
    """
    _replace_distributed_samplers(
        loaders,
        lambda old: UnrepeatedDistributedSampler(
            old.dataset, num_replicas=old.num_replicas, rank=old.rank, shuffle=False
        ),
    )


def _replace_distributed_samplers(
    loaders: DataLoader | Iterable[DataLoader] | None, make: Callable[[DistributedSampler], DistributedSampler]
) -> None:
    """Swap the plain ``DistributedSampler`` inside each loader's batch sampler for ``make(old)``."""
    if loaders is None:
        return
    for loader in [loaders] if isinstance(loaders, DataLoader) else loaders:
        batch_sampler = getattr(loader, "batch_sampler", None)
        sampler = getattr(batch_sampler, "sampler", None)
        if type(sampler) is DistributedSampler:
            batch_sampler.sampler = make(sampler)
