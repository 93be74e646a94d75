"""Labelled anomalous training images ("external anomaly samples") for GRAD's abnormal stage.

A datamodule that holds a :class:`TrainingAnomalies` offers, beside its normal training set, a
small set of real defective images with ground-truth masks in ``anomaly_train_data``, from
either or both of:

- ``holdout_anomalies_per_type=N``: N defective images per (category, defect type), drawn with
  the datamodule's seed, *removed* from the test set before the validation split is made;
- ``external_anomalies=ROOT``: a folder in MVTec AD layout holding, for some categories,
  ``ROOT/<category>/test/<defect>/*`` images and ``ROOT/<category>/ground_truth/<defect>/*`` masks.

Only models that ask for them use them (:class:`~anomalib_grad.Grad` in stage A); the normal
training dataloader never contains them, so other models are unaffected. At setup, any overlap
between these images (or the normal training images) and the test images raises :class:`DataLeakageError`;
the validation images are drawn from the training or test images that remain.

Example:
    >>> from anomalib_grad.data import MVTecLayout
    >>> datamodule = MVTecLayout(root="../shared/data/real", category="bottle", holdout_anomalies_per_type=5)
    >>> datamodule.setup()  # doctest: +SKIP
    >>> len(datamodule.anomaly_train_data)  # doctest: +SKIP
    15
"""

import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd
from anomalib.data.datasets.base import AnomalibDataset
from anomalib.data.utils import LabelName
from torch.utils.data import DataLoader

from .samples_dataset import SamplesDataset
from .validation import DatasetLayoutError, scan_test_folder

logger = logging.getLogger(__name__)


class DataLeakageError(ValueError):
    """Raised when an image used for training is also a test or validation image.

    Example:
        >>> raise DataLeakageError("1 training anomaly is also a test image: ['a.png']")
        Traceback (most recent call last):
        ...
        anomalib_grad.data.anomalies.DataLeakageError: 1 training anomaly is also a test image: ['a.png']
    """


def make_anomaly_samples(category_root: str | Path, category: str | None = None) -> pd.DataFrame:
    """Build the samples table of the defective images (with masks) of one category folder.

    Reads ``category_root/test/<defect>/*`` for every defect folder other than ``good`` and pairs
    each image with ``category_root/ground_truth/<defect>/<stem>[_mask].<ext>``.

    Args:
        category_root (str | Path): Category folder in MVTec AD layout (``train/`` is not needed).
        category (str | None): Value of the ``category`` column. Defaults to the folder name.

    Returns:
        pd.DataFrame: Anomalous samples (``split`` ``"train"``, ``label_index`` 1) with ``mask_path``.

    Raises:
        DatasetLayoutError: If the folder has no defective images, an image has no mask, a mask differs
            in size from its image, or a file is unreadable.

    Example:
        >>> samples = make_anomaly_samples("./extra/bottle")  # doctest: +SKIP
        >>> samples.columns.tolist()  # doctest: +SKIP
        ['path', 'split', 'label', 'image_path', 'label_index', 'mask_path', 'category']
    """
    category_root = Path(category_root).expanduser()
    rows = [
        (str(category_root), "train", item.label, str(item.image), 1, str(item.mask))
        for item in scan_test_folder(category_root, "External anomaly image", check_files=True, defects_only=True)
    ]
    if not rows:
        msg = (
            f"Found no defective images in '{category_root / 'test'}'. External anomalies are read from "
            "<root>/<category>/test/<defect>/ with masks in <root>/<category>/ground_truth/<defect>/."
        )
        raise DatasetLayoutError(msg)
    samples = pd.DataFrame(rows, columns=["path", "split", "label", "image_path", "label_index", "mask_path"])
    samples["category"] = category or category_root.name
    return samples


def select_holdout(samples: pd.DataFrame, per_type: int, seed: int) -> list[int]:
    """Pick ``per_type`` anomalous rows per (category, defect type), seeded; keep one per type for testing.

    Args:
        samples (pd.DataFrame): Test samples; ``label`` (defect type) and ``category`` columns are used when present.
        per_type (int): Images to pick per defect type.
        seed (int): Seed of the draw.

    Returns:
        list[int]: Positional indices of the picked rows, sorted.

    Raises:
        DatasetLayoutError: If a picked image has no mask.

    Example:
        Two defective images of type ``a``: one is held out (a warning says that fewer than asked exist).

        >>> table = pd.DataFrame(
        ...     {"image_path": ["x.png", "y.png", "z.png"], "label": ["a", "a", "good"],
        ...      "label_index": [1, 1, 0], "mask_path": ["m", "n", None]}
        ... )
        >>> picked = select_holdout(table, per_type=5, seed=0)
        >>> len(picked), picked[0] in (0, 1)
        (1, True)
    """
    generator = np.random.default_rng(seed)
    positions = pd.Series(range(len(samples)), index=samples.index)
    anomalous = samples[samples["label_index"] == LabelName.ABNORMAL]
    keys = [column for column in ("category", "label") if column in anomalous]
    groups = anomalous.groupby(keys, sort=True) if keys else [("anomalous", anomalous)]
    picked: list[int] = []
    for key, group in groups:
        count = min(per_type, len(group) - 1)
        if count < per_type:
            logger.warning("Defect type %s has %d test images: holding out %d.", key, len(group), count)
        chosen = group.index[generator.permutation(len(group))[:count]]
        missing = [
            path
            for path, mask in zip(group.loc[chosen, "image_path"], group.loc[chosen, "mask_path"], strict=True)
            if mask is None or pd.isna(mask) or str(mask) == ""
        ]
        if missing:
            msg = f"Cannot train on held-out defective images without masks: {missing[:3]}."
            raise DatasetLayoutError(msg)
        picked.extend(int(positions[index]) for index in chosen)
    return sorted(picked)


def _paths(datasets: Iterable[AnomalibDataset | None]) -> set[str]:
    return {
        str(Path(path).resolve())
        for dataset in datasets
        if dataset is not None
        for path in dataset.samples["image_path"]
    }


class TrainingAnomalies:
    """Where a datamodule's real defective training images come from, and how they are split off and loaded.

    A datamodule keeps one (``self.training_anomalies``), calls :meth:`split` at the end of its ``_setup``
    (``self.test_data, self.anomaly_train_data = ...``) and serves :meth:`dataloader` as its
    ``anomaly_train_dataloader``.

    Args:
        holdout_anomalies_per_type: Defective test images per (category, defect type) moved to training.
        external_anomalies: Root in MVTec AD layout of extra defective images with masks, or ``None``.

    Raises:
        ValueError: If ``holdout_anomalies_per_type`` is negative.
        DatasetLayoutError: If ``external_anomalies`` is not a folder.

    Example:
        >>> TrainingAnomalies(holdout_anomalies_per_type=-1)
        Traceback (most recent call last):
        ...
        ValueError: holdout_anomalies_per_type must be >= 0, got -1.
    """

    def __init__(self, holdout_anomalies_per_type: int = 0, external_anomalies: str | Path | None = None) -> None:
        if holdout_anomalies_per_type < 0:
            msg = f"holdout_anomalies_per_type must be >= 0, got {holdout_anomalies_per_type}."
            raise ValueError(msg)
        self.holdout_anomalies_per_type = holdout_anomalies_per_type
        self.external_anomalies = None if external_anomalies is None else Path(external_anomalies).expanduser()
        if self.external_anomalies is not None and not self.external_anomalies.is_dir():
            msg = (
                f"external_anomalies folder '{self.external_anomalies}' does not exist. It must hold "
                "<category>/test/<defect>/ images and <category>/ground_truth/<defect>/ masks."
            )
            raise DatasetLayoutError(msg)

    def split(
        self,
        train_data: AnomalibDataset,
        test_data: AnomalibDataset,
        categories: list[str],
        seed: int | None,
    ) -> tuple[AnomalibDataset, AnomalibDataset | None]:
        """Hold out test anomalies and read external ones.

        Args:
            train_data: The normal training images.
            test_data: All test images.
            categories: Categories whose external anomalies are read.
            seed: Seed of the held-out draw (``None`` is 0).

        Returns:
            The test images left for testing, and the training anomalies (``None`` when there are none).

        Raises:
            DatasetLayoutError: If ``external_anomalies`` has no folder for any of ``categories``.
            DataLeakageError: If a training image (normal or defective) is also a test image.
        """
        parts: list[pd.DataFrame] = []
        if self.holdout_anomalies_per_type > 0:
            held = select_holdout(test_data.samples, self.holdout_anomalies_per_type, seed or 0)
            parts.append(test_data.samples.iloc[held].assign(split="train"))
            test_data = test_data.subsample(sorted(set(range(len(test_data))) - set(held)))
        if self.external_anomalies is not None:
            present = [(self.external_anomalies / name, name) for name in categories]
            present = [(folder, name) for folder, name in present if folder.is_dir()]
            if not present:
                msg = f"external_anomalies '{self.external_anomalies}' has no folder for {categories}."
                raise DatasetLayoutError(msg)
            parts.extend(make_anomaly_samples(folder, name) for folder, name in present)
        anomalies = None
        if parts:
            anomalies = SamplesDataset(pd.concat(parts, ignore_index=True), name="LabelledAnomalies")
            logger.info("Training anomalies: %d real defective images with masks.", len(anomalies))
        check_no_leakage({"anomaly_train_data": anomalies, "train_data": train_data}, test_data)
        return test_data, anomalies

    @staticmethod
    def dataloader(
        anomalies: AnomalibDataset | None, train_data: AnomalibDataset, batch_size: int
    ) -> DataLoader | None:
        """Shuffled batches of ``anomalies`` with the augmentations of ``train_data``; ``None`` without anomalies."""
        if anomalies is None:
            return None
        anomalies.augmentations = getattr(train_data, "augmentations", None)
        return DataLoader(
            anomalies, batch_size=batch_size, shuffle=True, num_workers=0, collate_fn=anomalies.collate_fn
        )


def check_no_leakage(training: dict[str, AnomalibDataset | None], test_data: AnomalibDataset) -> None:
    """Raise when an image of a training dataset is also a test image.

    Args:
        training: Training datasets by name (``None`` entries are skipped).
        test_data: The test images.

    Raises:
        DataLeakageError: Naming up to five shared images.
    """
    evaluation = _paths([test_data])
    for name, dataset in training.items():
        shared = sorted(_paths([dataset]) & evaluation)
        if shared:
            msg = (
                f"{len(shared)} image(s) of {name} are also test or validation images, e.g. {shared[:5]}. "
                "Training images must never be evaluated on: use a separate folder for external anomalies."
            )
            raise DataLeakageError(msg)
