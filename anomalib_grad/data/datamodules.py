"""Anomalib datamodules for local folders in MVTec AD layout and for the built-in synthetic dataset.

:class:`MVTecLayout` reads any category folder in MVTec AD layout (``train/good``,
``test/<good|defect>``, ``ground_truth/<defect>``), whatever the category is called,
and never downloads anything: ``prepare_data`` validates the folder instead.
:class:`SyntheticSurfaces` generates the built-in textured-surface dataset on first
use and then behaves like :class:`MVTecLayout`.

Compared with :class:`anomalib.data.MVTecAD`, samples are built by
:func:`make_mvtec_layout_dataset`, which pairs every anomalous image with its mask by
file name rather than by sort position, accepts all extensions in
:data:`~anomalib_grad.data.validation.IMAGE_EXTENSIONS` and ignores hidden files.

Example:
    From Python::

        >>> from anomalib_grad.data import MVTecLayout
        >>> datamodule = MVTecLayout(root="../shared/data/real", category="magnetic_tile")
        >>> datamodule.prepare_data()  # doctest: +SKIP
        >>> datamodule.setup()  # doctest: +SKIP

    From an anomalib YAML config::

        data:
          class_path: anomalib_grad.data.SyntheticSurfaces
          init_args:
            seed: 0
"""

import logging
from pathlib import Path
from typing import Any

import pandas as pd
from anomalib.data import MVTecAD
from anomalib.data.datasets.base import AnomalibDataset
from anomalib.data.utils import LabelName, Split
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import Transform

from .anomalies import TrainingAnomalies
from .categories import UnknownCategoryError
from .synthetic import default_cache_root, generate_synthetic_surfaces
from .validation import (
    NORMAL_LABEL,
    DatasetLayoutError,
    list_images,
    scan_test_folder,
    validate_mvtec_layout,
)

logger = logging.getLogger(__name__)

_COLUMNS = ["path", "split", "label", "image_path", "label_index", "mask_path"]


def make_mvtec_layout_dataset(category_root: str | Path, split: str | Split | None = None) -> pd.DataFrame:
    """Build the samples table of one category folder in MVTec AD layout.

    Training samples come from ``train/good``; test samples from every sub-folder of ``test``
    (``good`` is normal, any other name is a defect type). Each anomalous image is paired with
    ``ground_truth/<defect>/<stem>_mask.<ext>`` (or ``<stem>.<ext>``) by name.

    Args:
        category_root (str | Path): The category folder, e.g. ``./datasets/magnetic_tile``.
        split (str | Split | None): ``"train"``, ``"test"`` or ``None`` for both. Defaults to ``None``.

    Returns:
        pd.DataFrame: One row per image with the columns anomalib expects (``path``, ``split``,
        ``label``, ``image_path``, ``label_index``, ``mask_path``; ``mask_path`` is ``None`` for
        normal images), sorted by ``image_path``. ``attrs["task"]`` is ``"segmentation"`` when the
        category has anomalous test images (all with masks), else ``"classification"``.

    Raises:
        DatasetLayoutError: If ``train/good`` holds no images or an anomalous image has no mask.

    Example:
        >>> samples = make_mvtec_layout_dataset("./datasets/magnetic_tile", split="test")  # doctest: +SKIP
        >>> sorted(samples.label.unique())  # doctest: +SKIP
        ['blowhole', 'break', 'crack', 'fray', 'good', 'uneven']
    """
    category_root = Path(category_root)
    rows: list[tuple[str, str, str, str, int, str | None]] = []
    train_images = list_images(category_root / "train" / NORMAL_LABEL)
    if not train_images:
        msg = f"Found no training images in '{category_root / 'train' / NORMAL_LABEL}'."
        raise DatasetLayoutError(msg)
    rows += [(str(category_root), "train", NORMAL_LABEL, str(path), LabelName.NORMAL, None) for path in train_images]

    for item in scan_test_folder(category_root):
        label_index = LabelName.NORMAL if item.mask is None else LabelName.ABNORMAL
        mask_path = None if item.mask is None else str(item.mask)
        rows.append((str(category_root), "test", item.label, str(item.image), label_index, mask_path))

    samples = pd.DataFrame(rows, columns=_COLUMNS)
    samples["label_index"] = samples["label_index"].astype(int)
    # As in anomalib's MVTecAD, normal images have mask_path None: keep an object column, because pandas'
    # string dtype (the default for str columns since pandas 3) would turn None into NaN, which anomalib rejects.
    samples["mask_path"] = pd.Series([row[-1] for row in rows], dtype=object)
    task = "segmentation" if (samples["label_index"] == LabelName.ABNORMAL).any() else "classification"
    if split is not None:
        split_value = split.value if isinstance(split, Split) else str(split)
        samples = samples[samples["split"] == split_value]
    samples = samples.sort_values(by="image_path", ignore_index=True)
    samples.attrs["task"] = task
    return samples


class MVTecLayoutDataset(AnomalibDataset):
    """Torch dataset over one split of a category folder in MVTec AD layout.

    Args:
        root (str | Path): Dataset root folder that contains the category folder.
        category (str): Name of the category folder; any name is accepted.
        augmentations (Transform | None): Augmentations applied to image (and mask). Defaults to ``None``.
        split (str | Split | None): ``"train"``, ``"test"`` or ``None`` for both. Defaults to ``None``.

    Example:
        >>> dataset = MVTecLayoutDataset("./datasets", "magnetic_tile", split="train")  # doctest: +SKIP
        >>> dataset[0].image.shape  # doctest: +SKIP
        torch.Size([3, 213, 256])
    """

    def __init__(
        self,
        root: str | Path,
        category: str,
        augmentations: Transform | None = None,
        split: str | Split | None = None,
    ) -> None:
        super().__init__(augmentations=augmentations)
        self.root_category = Path(root) / category
        self.category = category
        self.split = split
        self.samples = make_mvtec_layout_dataset(self.root_category, split=split)


class MVTecLayout(MVTecAD):
    """Datamodule for a local category folder in MVTec AD layout; never downloads.

    Unlike :class:`anomalib.data.MVTecAD`, the category may have any name (e.g. ``"magnetic_tile"``),
    ``prepare_data`` validates the folder with :func:`validate_mvtec_layout` and raises a
    :class:`DatasetLayoutError` naming the problem, and masks are paired with images by file name.

    Args:
        root (Path | str): Dataset root folder that contains the category folder.
        category (str): Name of the category folder.
        holdout_anomalies_per_type (int): Defective test images per defect type moved from the test set
            into ``anomaly_train_data`` (real anomalies for Grad's stage A; see
            :mod:`anomalib_grad.data.anomalies`). Defaults to ``0``.
        external_anomalies (Path | str | None): Root in MVTec AD layout of extra defective images with
            masks (``<category>/test/<defect>``, ``<category>/ground_truth/<defect>``) for
            ``anomaly_train_data``. Defaults to ``None``.
        kwargs: Any argument of :class:`anomalib.data.MVTecAD`, with its default: batch sizes (32), workers (8),
            augmentations, test and validation split modes and ratios, and ``seed`` (of the random splits and
            of the held-out anomalies).

    Example:
        >>> datamodule = MVTecLayout(root="./datasets", category="magnetic_tile")  # doctest: +SKIP
        >>> datamodule.prepare_data()  # doctest: +SKIP
        >>> datamodule.setup()  # doctest: +SKIP
        >>> len(datamodule.train_data)  # doctest: +SKIP
        761
    """

    CATEGORIES = None  # Any category folder under ``root``.

    def __init__(
        self,
        root: Path | str,
        category: str,
        holdout_anomalies_per_type: int = 0,
        external_anomalies: Path | str | None = None,
        **kwargs: Any,  # the rest of MVTecAD's arguments (jsonargparse follows them)
    ) -> None:
        if self.CATEGORIES is not None and category not in self.CATEGORIES:
            msg = f"Unknown {type(self).__name__} category '{category}'. Valid: {list(self.CATEGORIES)}."
            raise UnknownCategoryError(msg)
        super().__init__(root=Path(root).expanduser(), category=category, **kwargs)
        self.training_anomalies = TrainingAnomalies(holdout_anomalies_per_type, external_anomalies)
        self.anomaly_train_data: AnomalibDataset | None = None

    def prepare_data(self) -> None:
        """Validate the dataset folder instead of downloading it.

        Raises:
            DatasetLayoutError: If the folder does not follow the MVTec AD layout or holds unreadable files.
        """
        validate_mvtec_layout(self.root, self.category)

    def _setup(self, _stage: str | None = None) -> None:
        """Create the train and test datasets; anomalib derives the validation set from them."""
        self.train_data = MVTecLayoutDataset(root=self.root, category=self.category, split=Split.TRAIN)
        test_data = MVTecLayoutDataset(root=self.root, category=self.category, split=Split.TEST)
        self.test_data, self.anomaly_train_data = self.training_anomalies.split(
            self.train_data, test_data, [self.category], self.seed
        )

    def anomaly_train_dataloader(self, batch_size: int | None = None) -> DataLoader | None:
        """Shuffled batches of ``anomaly_train_data`` (half the training batch size by default), or ``None``."""
        return TrainingAnomalies.dataloader(
            self.anomaly_train_data, self.train_data, batch_size or max(1, self.train_batch_size // 2)
        )


class SyntheticSurfaces(MVTecLayout):
    """Datamodule for the built-in synthetic dataset of textured surfaces with scratches, spots and cracks.

    The dataset (60 training images, 15 normal and 3 x 8 anomalous test images, 256 x 256 RGB) is
    generated by :func:`generate_synthetic_surfaces` on the first ``prepare_data`` call, in a few
    seconds, and reused afterwards. It needs no download, which makes it suited to smoke tests,
    tutorials and CI.

    Args:
        root (Path | str | None): Folder that holds the generated category folder. ``None`` uses
            :func:`default_cache_root` (``$ANOMALIB_GRAD_CACHE`` or ``~/.cache/anomalib_grad/datasets``).
            Defaults to ``None``.
        category (str): Name of the generated category folder. Defaults to ``"textured_surface"``.
        seed (int): Seed of the generated images and of the random subset splits. Defaults to ``0``.
        train_batch_size (int): Training batch size. Defaults to ``16``.
        eval_batch_size (int): Validation and test batch size. Defaults to ``16``.
        num_workers (int): Number of dataloader workers. Defaults to ``0``.
        kwargs: Any other argument of :class:`MVTecLayout` (augmentations, split modes and ratios, held-out
            or external anomalies), with its default.

    Example:
        >>> datamodule = SyntheticSurfaces(seed=0)
        >>> datamodule.prepare_data()  # generates the images on first use
        >>> datamodule.setup()
        >>> len(datamodule.train_data), len(datamodule.test_data)
        (60, 39)
    """

    def __init__(
        self,
        root: Path | str | None = None,
        category: str = "textured_surface",
        seed: int = 0,
        train_batch_size: int = 16,
        eval_batch_size: int = 16,
        num_workers: int = 0,
        **kwargs: Any,  # the rest of MVTecLayout's arguments (jsonargparse follows them)
    ) -> None:
        super().__init__(
            root=default_cache_root() if root is None else root,
            category=category,
            seed=seed,
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            **kwargs,
        )

    def prepare_data(self) -> None:
        """Generate the dataset unless a complete copy with the same seed exists, then validate it.

        Raises:
            FileExistsError: If the category folder exists but was not created by the generator.
            DatasetLayoutError: If the generated folder fails validation.
        """
        generate_synthetic_surfaces(self.root, category=self.category, seed=self.seed)
        validate_mvtec_layout(self.root, self.category)
