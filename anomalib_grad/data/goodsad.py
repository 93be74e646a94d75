"""PKU-GoodsAD: six categories of retail goods (Zhang et al., 2024), in its published folder layout.

The dataset is published at https://github.com/jianzhang96/GoodsAD and has no automatic
download: fetch it by hand and extract it so that ``<root>/<category>/train/good`` exists.
Each category is laid out like MVTec AD::

    <root>/<category>/train/good/*.jpg
    <root>/<category>/test/good/*.jpg
    <root>/<category>/test/<defect>/*.jpg
    <root>/<category>/ground_truth/<defect>/<stem>[_mask].png

Example:
    >>> from anomalib_grad.data import GoodsAD, MultiCategory
    >>> datamodule = GoodsAD(root="./datasets/GoodsAD", category="drink_can")  # doctest: +SKIP
    >>> unified = MultiCategory("GoodsAD", {"root": "./datasets/GoodsAD"}, categories="all")
    >>> len(unified.categories)
    6
"""

from pathlib import Path

from anomalib.data.utils import TestSplitMode, ValSplitMode
from torchvision.transforms.v2 import Transform

from .categories import UnknownCategoryError
from .datamodules import MVTecLayout
from .validation import NORMAL_LABEL, DatasetLayoutError

GOODSAD_URL = "https://github.com/jianzhang96/GoodsAD"
GOODSAD_CATEGORIES = ("cigarette_box", "drink_bottle", "drink_can", "food_bottle", "food_box", "food_package")


class GoodsAD(MVTecLayout):
    """Datamodule for one category of PKU-GoodsAD; never downloads.

    Args:
        root (Path | str): Folder that holds the category folders. Defaults to ``"./datasets/GoodsAD"``.
        category (str): One of :data:`GOODSAD_CATEGORIES`. Defaults to ``"drink_can"``.
        train_batch_size (int): Training batch size. Defaults to ``32``.
        eval_batch_size (int): Validation and test batch size. Defaults to ``32``.
        num_workers (int): Number of dataloader workers. Defaults to ``8``.
        train_augmentations (Transform | None): Augmentations for training images. Defaults to ``None``.
        val_augmentations (Transform | None): Augmentations for validation images. Defaults to ``None``.
        test_augmentations (Transform | None): Augmentations for test images. Defaults to ``None``.
        augmentations (Transform | None): Augmentations for every split without its own. Defaults to ``None``.
        test_split_mode (TestSplitMode | str): How to obtain the test set. Defaults to ``TestSplitMode.FROM_DIR``.
        test_split_ratio (float): See :class:`MVTecLayout`. Defaults to ``0.2``.
        val_split_mode (ValSplitMode | str): How to obtain the validation set.
            Defaults to ``ValSplitMode.SAME_AS_TEST``.
        val_split_ratio (float): See :class:`MVTecLayout`. Defaults to ``0.5``.
        seed (int | None): Seed of the random subset splits and held-out anomalies. Defaults to ``None``.
        holdout_anomalies_per_type (int): See :class:`MVTecLayout`. Defaults to ``0``.
        external_anomalies (Path | str | None): See :class:`MVTecLayout`. Defaults to ``None``.

    Raises:
        UnknownCategoryError: If ``category`` is not a GoodsAD category.

    Example:
        >>> datamodule = GoodsAD(root="./datasets/GoodsAD", category="food_box")
        >>> datamodule.prepare_data()  # doctest: +SKIP
    """

    CATEGORIES = GOODSAD_CATEGORIES

    def __init__(
        self,
        root: Path | str = "./datasets/GoodsAD",
        category: str = "drink_can",
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
        external_anomalies: Path | str | None = None,
    ) -> None:
        if category not in GOODSAD_CATEGORIES:
            msg = f"Unknown GoodsAD category '{category}'. Valid: {list(GOODSAD_CATEGORIES)}."
            raise UnknownCategoryError(msg)
        super().__init__(
            root=root,
            category=category,
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
            holdout_anomalies_per_type=holdout_anomalies_per_type,
            external_anomalies=external_anomalies,
        )

    def prepare_data(self) -> None:
        """Check that the category was downloaded and follows the layout; never downloads.

        Raises:
            DatasetLayoutError: If ``<root>/<category>/train/good`` is missing (with download
                instructions) or the folder breaks the layout.
        """
        train_folder = Path(self.root) / self.category / "train" / NORMAL_LABEL
        if not train_folder.is_dir():
            msg = (
                f"GoodsAD category '{self.category}' not found: '{train_folder}' does not exist. GoodsAD has no "
                f"automatic download. Download it manually from {GOODSAD_URL} (see its README for the data links) "
                f"and extract it so that '{Path(self.root)}/<category>/train/good' exists for the categories "
                f"{list(GOODSAD_CATEGORIES)}; then pass that folder as root."
            )
            raise DatasetLayoutError(msg)
        super().prepare_data()
