"""Check every image of a prediction run before predicting any, and name all unreadable ones.

``anomalib predict --data <folder>`` reads the images one by one, so one corrupt file used to stop
the run halfway with ``OSError: image file is truncated`` and no file name. :class:`ReadableImages`
decodes every image of the predict dataloaders when prediction starts (with
:func:`~anomalib_grad.data.image_io.open_image`) and raises one
:class:`~anomalib_grad.data.image_io.UnreadableImageError` that lists every unreadable file, before
any image is predicted. The policy is the data check's: fail before any work, never skip silently.

Example:
    >>> from anomalib.engine import Engine
    >>> engine = Engine(callbacks=[ReadableImages()])  # doctest: +SKIP
    >>> engine.predict(model, data_path="path/to/images", ckpt_path="model.ckpt")  # doctest: +SKIP
"""

from collections.abc import Sequence
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_grad.data.image_io import UnreadableImageError, open_image

LISTED = 20  # unreadable files named in the message


def image_paths(dataset: Any) -> list[str]:
    """The image files of an anomalib dataset or ``PredictDataset`` (none for other datasets).

    Args:
        dataset: A dataset.

    Returns:
        The paths it will read.

    Example:
        >>> image_paths(object())
        []
    """
    if hasattr(dataset, "image_filenames"):  # anomalib.data.PredictDataset
        return [str(path) for path in dataset.image_filenames]
    samples = getattr(dataset, "samples", None)
    if samples is not None and "image_path" in samples:
        return [str(path) for path in samples["image_path"]]
    return []


def check_images_readable(paths: Sequence[str]) -> None:
    """Decode every image and fail with one error that names all unreadable files.

    Args:
        paths: Image files.

    Raises:
        UnreadableImageError: If any file cannot be read.

    Example:
        >>> check_images_readable([])
    """
    problems = []
    for path in paths:
        try:
            open_image(path)
        except UnreadableImageError as error:
            problems.append(str(error))
    if problems:
        listed = "\n  ".join(problems[:LISTED])
        more = f"\n  ... and {len(problems) - LISTED} more" if len(problems) > LISTED else ""
        msg = (
            f"{len(problems)} of {len(paths)} images cannot be read, so nothing was predicted. Replace or delete "
            f"them and run again:\n  {listed}{more}"
        )
        raise UnreadableImageError(msg)


class ReadableImages(Callback):
    """Fail a prediction run before its first image when any of its images cannot be read."""

    def on_predict_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Decode every image of the predict dataloaders.

        Args:
            trainer: The trainer.
            pl_module: The model.

        Raises:
            UnreadableImageError: Naming every unreadable image.
        """
        del pl_module
        loaders = trainer.predict_dataloaders
        if loaders is None:
            return
        loaders = [loaders] if hasattr(loaders, "dataset") else list(loaders)
        check_images_readable([path for loader in loaders for path in image_paths(getattr(loader, "dataset", None))])
