r"""One datamodule over several categories of any anomalib image datamodule (the "unified" setting).

:class:`MultiCategory` builds one inner datamodule per category (MVTecAD, Visa, MPDD, Folder,
:class:`~anomalib_grad.data.MVTecLayout`, :class:`~anomalib_grad.data.GoodsAD`, ...) from a class
and its init args, concatenates their raw train and test samples, and then splits, augments and
batches them as one anomalib datamodule. One model is trained on the union of the categories'
normal training images; every sample keeps its category in the ``category`` column of the
datasets' samples, which :class:`~anomalib_grad.callbacks.PerCategoryMetrics` reads (through
:meth:`MultiCategory.category_lookup`) to report metrics per category.

Images of different sizes and channel counts mix freely: anomalib reads every image as RGB, and
the model's resize is appended to the augmentations of the combined datasets by anomalib's
``_update_augmentations``.

Example:
    From Python::

        >>> from anomalib_grad.data import MultiCategory
        >>> datamodule = MultiCategory(
        ...     datamodule="anomalib_grad.data.MVTecLayout",
        ...     datamodule_args={"root": "../shared/data/real"},
        ...     categories=["bottle", "magnetic_tile"],
        ... )  # doctest: +SKIP

    From the anomalib CLI::

        anomalib train --model Grad --data anomalib_grad.data.MultiCategory \\
            --data.datamodule anomalib_grad.data.MVTecLayout \\
            --data.datamodule_args '{"root": "../shared/data/real"}' \\
            --data.categories '[bottle, magnetic_tile]'
"""

import inspect
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from anomalib.data import AnomalibDataModule
from anomalib.data.utils import TestSplitMode, ValSplitMode
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import Transform

from .anomalies import TrainingAnomalies
from .categories import CATEGORY_PLACEHOLDER, resolve_categories, resolve_datamodule_class
from .samples_dataset import SamplesDataset, infer_task

logger = logging.getLogger(__name__)

CATEGORY_COLUMN = "category"


def _with_category(value: Any, category: str) -> Any:
    """Fill ``{category}`` placeholders in string (or path) init args."""
    if isinstance(value, str | Path) and CATEGORY_PLACEHOLDER in str(value):
        return type(value)(str(value).replace(CATEGORY_PLACEHOLDER, category))
    return value


class MultiCategory(AnomalibDataModule):
    """Datamodule over the union of several categories of another image datamodule.

    Args:
        datamodule (str | type[AnomalibDataModule]): The per-category datamodule: a class, a class path
            (``"anomalib.data.MVTecAD"``) or a name exported by anomalib.data or anomalib_grad.data.
        datamodule_args (dict[str, Any] | None): Init args of that class, except ``category``; a
            ``{category}`` placeholder in a string arg (e.g. Folder's ``root: ./data/{category}``) is
            filled per category. Defaults to ``None``.
        categories (str | Sequence[str]): Category names, or ``"all"`` (the class's known categories,
            else the sub-folders of ``datamodule_args["root"]``). Defaults to ``"all"``.
        train_batch_size (int): Training batch size. Defaults to ``32``.
        eval_batch_size (int): Validation and test batch size. Defaults to ``32``.
        num_workers (int): Number of dataloader workers. Defaults to ``8``.
        train_augmentations (Transform | None): Augmentations for training images. Defaults to ``None``.
        val_augmentations (Transform | None): Augmentations for validation images. Defaults to ``None``.
        test_augmentations (Transform | None): Augmentations for test images. Defaults to ``None``.
        augmentations (Transform | None): Augmentations for every split without its own. Defaults to ``None``.
        test_split_mode (TestSplitMode | str): How to obtain the test set. Defaults to ``TestSplitMode.FROM_DIR``.
        test_split_ratio (float): Fraction of training images used as normal test images when there are
            no normal test images. Defaults to ``0.2``.
        val_split_mode (ValSplitMode | str): How to obtain the validation set.
            Defaults to ``ValSplitMode.SAME_AS_TEST``.
        val_split_ratio (float): Fraction of images used for validation by splitting modes. Defaults to ``0.5``.
        seed (int | None): Seed of the random splits and of the held-out anomalies. Defaults to ``None``.
        holdout_anomalies_per_type (int): Defective test images per (category, defect type) moved from
            the test set into ``anomaly_train_data`` (used by Grad's stage A). Defaults to ``0``.
        external_anomalies (str | Path | None): Root in MVTec AD layout of extra defective images with
            masks (``<category>/test/<defect>``, ``<category>/ground_truth/<defect>``) for
            ``anomaly_train_data``. Defaults to ``None``.

    Raises:
        UnknownCategoryError: If a category is unknown; the message lists the valid ones.
        ValueError: If the datamodule class cannot be found or rejects its init args.

    Example:
        >>> datamodule = MultiCategory("MVTecAD", {"root": "./datasets/MVTecAD"}, categories=["bottle", "cable"])
        >>> datamodule.categories
        ['bottle', 'cable']
    """

    def __init__(
        self,
        datamodule: str | type[AnomalibDataModule],
        datamodule_args: dict[str, Any] | None = None,
        categories: str | Sequence[str] = "all",
        train_batch_size: int = 32,
        eval_batch_size: int = 32,
        num_workers: int = 8,
        train_augmentations: Transform | None = None,
        val_augmentations: Transform | None = None,
        test_augmentations: Transform | None = None,
        augmentations: Transform | None = None,
        test_split_mode: TestSplitMode | str = TestSplitMode.FROM_DIR,
        test_split_ratio: float = 0.2,
        val_split_mode: ValSplitMode | str = ValSplitMode.SAME_AS_TEST,
        val_split_ratio: float = 0.5,
        seed: int | None = None,
        holdout_anomalies_per_type: int = 0,
        external_anomalies: str | Path | None = None,
    ) -> None:
        super().__init__(
            train_batch_size=train_batch_size,
            eval_batch_size=eval_batch_size,
            num_workers=num_workers,
            train_augmentations=train_augmentations,
            val_augmentations=val_augmentations,
            test_augmentations=test_augmentations,
            augmentations=augmentations,
            test_split_mode=test_split_mode,
            test_split_ratio=test_split_ratio,
            val_split_mode=val_split_mode,
            val_split_ratio=val_split_ratio,
            seed=seed,
        )
        self.datamodule_class = resolve_datamodule_class(datamodule)
        self.datamodule_args = dict(datamodule_args or {})
        if "category" in self.datamodule_args:
            msg = "Give the categories with `categories`, not `datamodule_args['category']`."
            raise ValueError(msg)
        self.categories = resolve_categories(self.datamodule_class, categories, self.datamodule_args.get("root"))
        self.datamodules = {name: self._build_datamodule(name) for name in self.categories}
        self.category = "+".join(self.categories) if len(self.categories) <= 3 else f"{len(self.categories)}_categories"
        self.training_anomalies = TrainingAnomalies(holdout_anomalies_per_type, external_anomalies)
        self.anomaly_train_data: SamplesDataset | None = None

    def _build_datamodule(self, category: str) -> AnomalibDataModule:
        """Instantiate the inner datamodule of one category."""
        parameters = inspect.signature(self.datamodule_class.__init__).parameters
        arguments = {key: _with_category(value, category) for key, value in self.datamodule_args.items()}
        has_placeholder = any(CATEGORY_PLACEHOLDER in str(value) for value in self.datamodule_args.values())
        if "category" in parameters:
            arguments["category"] = category
        elif not has_placeholder:
            msg = (
                f"{self.datamodule_class.__name__} takes no `category` argument: put '{CATEGORY_PLACEHOLDER}' in one "
                "of its datamodule_args (e.g. root: ./datasets/{category}) so each category reads its own folder."
            )
            raise ValueError(msg)
        try:
            return self.datamodule_class(**arguments)
        except TypeError as error:
            accepted = [name for name in parameters if name != "self"]
            msg = f"{self.datamodule_class.__name__} rejected datamodule_args {sorted(arguments)}: {error}. "
            msg += f"It accepts {accepted}."
            raise ValueError(msg) from error

    @property
    def name(self) -> str:
        """Name used by anomalib for the results folder, e.g. ``MultiCategory_MVTecLayout``."""
        return f"MultiCategory_{self.datamodule_class.__name__}"

    def prepare_data(self) -> None:
        """Prepare (download or validate) every category's data with its own datamodule."""
        for datamodule in self.datamodules.values():
            datamodule.prepare_data()

    def _setup(self, _stage: str | None = None) -> None:
        """Concatenate the categories' raw train and test samples, tagged with their category."""
        train_parts, test_parts = [], []
        for category, datamodule in self.datamodules.items():
            datamodule._setup()  # Raw datasets: splitting happens once, on the union.
            train_parts.append(datamodule.train_data.samples.assign(**{CATEGORY_COLUMN: category}))
            test_parts.append(datamodule.test_data.samples.assign(**{CATEGORY_COLUMN: category}))
        train_samples, test_samples = (
            pd.concat(train_parts, ignore_index=True),
            pd.concat(test_parts, ignore_index=True),
        )
        task = infer_task(pd.concat([train_samples, test_samples], ignore_index=True))
        self.train_data = SamplesDataset(train_samples, name=self.name, task=task)
        test_data = SamplesDataset(test_samples, name=self.name, task=task)
        without_defects = [
            category
            for category, part in zip(self.categories, test_parts, strict=True)
            if not (part.label_index == 1).any()
        ]
        if without_defects:
            logger.warning("Categories without defective test images (image metrics undefined): %s", without_defects)
        self.test_data, self.anomaly_train_data = self.training_anomalies.split(
            self.train_data, test_data, list(self.categories), self.seed
        )

    def anomaly_train_dataloader(self, batch_size: int | None = None) -> DataLoader | None:
        """Shuffled batches of ``anomaly_train_data`` (half the training batch size by default), or ``None``."""
        return TrainingAnomalies.dataloader(
            self.anomaly_train_data, self.train_data, batch_size or max(1, self.train_batch_size // 2)
        )

    def category_lookup(self) -> dict[str, str]:
        """Map every image path of the datasets set up so far to its category.

        Returns:
            dict[str, str]: Category per image path (train, validation, test and training anomalies).

        Example:
            >>> datamodule.category_lookup()["../shared/data/real/bottle/test/good/000.png"]  # doctest: +SKIP
            'bottle'
        """
        lookup: dict[str, str] = {}
        for subset in ("train_data", "val_data", "test_data", "anomaly_train_data"):
            dataset = getattr(self, subset, None)
            if dataset is not None and CATEGORY_COLUMN in dataset.samples:
                lookup.update(zip(dataset.samples["image_path"], dataset.samples[CATEGORY_COLUMN], strict=True))
        return lookup
