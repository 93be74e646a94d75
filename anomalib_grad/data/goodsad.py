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

from .datamodules import MVTecLayout
from .validation import NORMAL_LABEL, DatasetLayoutError

GOODSAD_URL = "https://github.com/jianzhang96/GoodsAD"
GOODSAD_CATEGORIES = ("cigarette_box", "drink_bottle", "drink_can", "food_bottle", "food_box", "food_package")


class GoodsAD(MVTecLayout):
    """Datamodule for one category of PKU-GoodsAD; never downloads.

    Takes :class:`~anomalib_grad.data.MVTecLayout`'s arguments; ``category`` must be one of
    :data:`GOODSAD_CATEGORIES`.

    Raises:
        UnknownCategoryError: If ``category`` is not a GoodsAD category.

    Example:
        >>> datamodule = GoodsAD(root="./datasets/GoodsAD", category="food_box")
        >>> datamodule.prepare_data()  # doctest: +SKIP
    """

    CATEGORIES = GOODSAD_CATEGORIES

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
