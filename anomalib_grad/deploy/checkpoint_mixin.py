"""Loading GRAD checkpoints with the settings they were trained with, and keeping training safe.

:class:`GradCheckpointMixin` gives :class:`~anomalib_grad.Grad`:

- ``load_from_checkpoint`` that names a damaged file or another model's checkpoint and takes the
  backbone weights from the checkpoint (nothing is downloaded);
- ``on_load_checkpoint`` that adopts the checkpoint's settings: ``anomalib test`` and
  ``anomalib predict --model Grad --ckpt_path C`` build ``Grad()`` with default arguments before
  Lightning loads ``C``; when ``C`` was trained with other settings (``input_size``, branch width,
  ...), the model is rebuilt from the checkpoint's hyperparameters first, as ``anomalib export``
  does, instead of failing with ``size mismatch for model.normal_grid.global_grid``;
- the trainer's checkpoint IO wrapped by :class:`~anomalib_grad.deploy.checkpoint.CheckedCheckpointIO`;
- the callbacks :class:`~anomalib_grad.callbacks.TrainedCheckpoint` (the checkpoint written before
  validation) and :class:`~anomalib_grad.callbacks.ReadableImages` (prediction inputs checked first).

Example:
    >>> model = Grad.load_from_checkpoint("results/Grad/.../weights/lightning/model.ckpt")  # doctest: +SKIP
"""

import inspect
import io
import logging
from collections.abc import Sequence
from functools import cache
from pathlib import Path
from typing import IO, Any, Self

from lightning.pytorch import Callback, LightningModule

from anomalib_grad.callbacks.readable_images import ReadableImages
from anomalib_grad.callbacks.trained_checkpoint import TrainedCheckpoint
from anomalib_grad.deploy.checkpoint import (
    COMPONENT_ARGUMENTS,
    CheckedCheckpointIO,
    check_grad_checkpoint,
    read_checkpoint,
)

logger = logging.getLogger(__name__)

IGNORED_SETTINGS = frozenset({"pre_trained"})  # the weights come from the checkpoint either way
LEGACY_BLUR_KEY = "feature_block_paste.blur.kernel"  # saved by versions up to 0.1.0, now a fixed 3×3 kernel


@cache
def _lightning_attributes() -> frozenset[str]:
    """Attributes every LightningModule has (trainer links, internals): never copied from a rebuilt model."""
    return frozenset(vars(LightningModule()))


def _same(value: Any, other: Any) -> bool:
    if isinstance(value, list | tuple) and isinstance(other, list | tuple):
        return len(value) == len(other) and all(_same(a, b) for a, b in zip(value, other, strict=True))
    return value == other


def changed_settings(current: dict[str, Any], saved: dict[str, Any]) -> dict[str, Any]:
    """The saved settings that differ from the current ones.

    Args:
        current: The model's hyperparameters.
        saved: The checkpoint's.

    Returns:
        Name → saved value, for each setting the model has with another value.

    Example:
        >>> changed_settings({"input_size": (256, 256), "lr": 0.001}, {"input_size": [64, 64], "lr": 0.001})
        {'input_size': [64, 64]}
    """
    return {
        name: value
        for name, value in saved.items()
        if name in current and name not in IGNORED_SETTINGS and not _same(current[name], value)
    }


class GradCheckpointMixin:
    """Checkpoint loading and training safety for :class:`~anomalib_grad.Grad` (see the module docstring)."""

    @classmethod
    def load_from_checkpoint(
        cls,
        checkpoint_path: str | Path | IO,
        map_location: Any = None,
        hparams_file: str | Path | None = None,
        strict: bool | None = None,
        weights_only: bool | None = None,
        **kwargs: Any,
    ) -> Self:
        """Load a GRAD checkpoint; the backbone weights come from it, nothing is downloaded.

        Args:
            checkpoint_path: Checkpoint file or file object.
            map_location: As :meth:`lightning.pytorch.LightningModule.load_from_checkpoint`.
            hparams_file: As Lightning.
            strict: As Lightning.
            weights_only: As Lightning.
            kwargs: Overrides of the saved hyperparameters.

        Returns:
            The model.

        Raises:
            DamagedCheckpointError: If the file is truncated or corrupt.
            NotAGradCheckpointError: If it holds another model.
        """
        checkpoint, data = read_checkpoint(checkpoint_path, weights_only=weights_only is not False)
        check_grad_checkpoint(checkpoint, checkpoint_path)
        kwargs.setdefault("pre_trained", False)
        return super().load_from_checkpoint(  # type: ignore[misc]
            io.BytesIO(data), map_location, hparams_file, strict, weights_only, **kwargs
        )

    def setup(self, stage: str) -> None:
        """Make the trainer's checkpoint loads name damaged files.

        Args:
            stage: Lightning's stage.
        """
        strategy = self.trainer.strategy  # type: ignore[attr-defined]
        if not isinstance(strategy.checkpoint_io, CheckedCheckpointIO):
            strategy.checkpoint_io = CheckedCheckpointIO(strategy.checkpoint_io)
        super().setup(stage)  # type: ignore[misc]

    def configure_callbacks(self) -> Sequence[Callback] | Callback:
        """Anomalib's component callbacks, plus the checkpoint before validation and the prediction image check.

        Returns:
            The callbacks.
        """
        callbacks = super().configure_callbacks()  # type: ignore[misc]
        callbacks = [callbacks] if isinstance(callbacks, Callback) else list(callbacks)
        return [*callbacks, TrainedCheckpoint(), ReadableImages()]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Check that the checkpoint holds GRAD and adopt its settings before its weights are loaded.

        Args:
            checkpoint: The checkpoint Lightning is loading.

        Raises:
            NotAGradCheckpointError: If it holds another model.
        """
        trainer = getattr(self, "_trainer", None)
        source = getattr(trainer, "ckpt_path", None) or "The checkpoint"
        check_grad_checkpoint(checkpoint, source)
        self.adopt_settings(checkpoint.get("hyper_parameters") or {}, source)
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        checkpoint.get("state_dict", {}).pop(LEGACY_BLUR_KEY, None)
        # anomalib's datamodule copied the model's resize into its datasets when it was set up, before this
        # checkpoint was loaded; let it copy the checkpoint's.
        update_augmentations = getattr(getattr(trainer, "datamodule", None), "_update_augmentations", None)
        if callable(update_augmentations):
            update_augmentations()

    def adopt_settings(self, saved: dict[str, Any], source: object = "the checkpoint") -> None:
        """Rebuild the model with the saved settings where they differ from this model's.

        The pre- and post-processor, evaluator and visualizer stay (the first two then restore their
        configuration from the checkpoint, as anomalib does); everything the settings build (the torch
        model, losses, epochs, ...) is taken from a model built with the saved settings.

        Args:
            saved: The checkpoint's hyperparameters.
            source: The checkpoint, for the log.
        """
        current = dict(self.hparams)  # type: ignore[attr-defined]
        changed = changed_settings(current, saved)
        if not changed:
            return
        parameters = inspect.signature(type(self).__init__).parameters
        settings = {name: value for name, value in saved.items() if name in parameters}
        logger.info(
            "Using the settings %s was trained with: %s.",
            source,
            ", ".join(f"{name}={value!r}" for name, value in changed.items()),
        )
        rebuilt = type(self)(**{**settings, "pre_trained": False}, **dict.fromkeys(COMPONENT_ARGUMENTS, False))
        for name, module in rebuilt.named_children():
            if name not in COMPONENT_ARGUMENTS:
                setattr(self, name, module)
        for name, value in vars(rebuilt).items():
            if name not in _lightning_attributes() and name not in COMPONENT_ARGUMENTS:
                object.__setattr__(self, name, value)
