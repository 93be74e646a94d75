"""Never lose a training to a failure after the last epoch.

anomalib's checkpoint is written when validation ends, and GRAD validates once, after its last
epoch, on images the data check may not have seen (anomalib's own datamodules check nothing): a
corrupt test image then stopped the run with no checkpoint at all. :class:`TrainedCheckpoint`

- writes the trainer's checkpoint (``weights/lightning/model.ckpt``) when validation starts during
  training, so the trained weights are on disk before any validation or test image is read;
  anomalib's checkpoint callback then overwrites that same file after validation, with the
  thresholds and normalisation;
- when a test starts from a checkpoint written before validation (no thresholds), validates on the
  datamodule's validation set first, exactly as training would have (anomalib's pre- and
  post-processor hooks), and stores the thresholds and normalisation in that checkpoint file.

So after a failure, fix the data and run ``anomalib test --model Grad --ckpt_path <model.ckpt>
--data ...``.

Example:
    >>> from anomalib.engine import Engine
    >>> engine = Engine(callbacks=[TrainedCheckpoint()])  # Grad adds it by itself  # doctest: +SKIP
"""

import logging
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_grad.deploy.checkpoint import read_checkpoint

logger = logging.getLogger(__name__)


def statistics_missing(post_processor: Any) -> bool:
    """Whether a post-processor lacks the thresholds or normalisation that validation computes.

    Args:
        post_processor: An anomalib ``PostProcessor`` (anything else counts as complete).

    Returns:
        ``True`` when an enabled statistic is NaN.

    Example:
        >>> from anomalib.post_processing import PostProcessor
        >>> statistics_missing(PostProcessor())
        True
    """
    names = []
    if getattr(post_processor, "enable_thresholding", False):
        names.append("image_threshold")
    if getattr(post_processor, "enable_normalization", False):
        names += ["image_min", "image_max"]
    return any(not bool(torch.isfinite(torch.as_tensor(getattr(post_processor, name)))) for name in names)


def validate_in_test(trainer: Trainer, pl_module: LightningModule) -> None:
    """Fit the post-processor's thresholds and normalisation on the validation set, as validation does.

    Args:
        trainer: The trainer (testing).
        pl_module: The model.

    Raises:
        RuntimeError: Without a datamodule that has a validation set.
    """
    datamodule = trainer.datamodule
    if datamodule is None or not hasattr(datamodule, "val_dataloader"):
        msg = (
            f"The checkpoint {trainer.ckpt_path} was written before validation, so it has no thresholds or "
            "normalisation yet; test it with a datamodule (--data ...) so that it can be validated first."
        )
        raise RuntimeError(msg)
    pre_processor, post_processor = pl_module.pre_processor, pl_module.post_processor
    for index, batch in enumerate(datamodule.val_dataloader()):
        batch = pl_module.transfer_batch_to_device(batch, pl_module.device, 0)
        if pre_processor is not None:
            pre_processor.on_validation_batch_start(trainer, pl_module, batch, index)
        with torch.no_grad():
            outputs = pl_module.validation_step(batch, index)
        post_processor.on_validation_batch_end(trainer, pl_module, outputs, batch, index)
    post_processor.on_validation_epoch_end(trainer, pl_module)


class TrainedCheckpoint(Callback):
    """Checkpoint before validation; validate a test's checkpoint that was written before validation."""

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """During training, write the trainer's checkpoint before any validation image is read.

        Args:
            trainer: The trainer.
            pl_module: The model.
        """
        del pl_module
        callback = trainer.checkpoint_callback
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking or callback is None:
            return
        if callback.monitor is not None or callback.save_top_k == 0 or callback.dirpath is None:
            return  # a metric decides which checkpoints to keep: leave it to the callback
        path = callback.format_checkpoint_name({"epoch": trainer.current_epoch, "step": trainer.global_step})
        trainer.save_checkpoint(path)
        callback.best_model_path = path  # so the callback overwrites this file after validation
        logger.info("Trained model saved before validation: %s", path)

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Validate first when the test's checkpoint was written before validation, and update that file.

        Args:
            trainer: The trainer.
            pl_module: The model.
        """
        post_processor = getattr(pl_module, "post_processor", None)
        if trainer.ckpt_path is None or post_processor is None or not statistics_missing(post_processor):
            return
        logger.info("%s was written before validation: validating before the test.", trainer.ckpt_path)
        validate_in_test(trainer, pl_module)
        checkpoint, _ = read_checkpoint(trainer.ckpt_path)
        checkpoint["state_dict"].update(post_processor.state_dict(prefix="post_processor."))
        trainer.strategy.checkpoint_io.save_checkpoint(checkpoint, trainer.ckpt_path)
        logger.info("Thresholds and normalisation stored in %s.", trainer.ckpt_path)
