"""GoodsAD on a tiny generated replica of its published layout (JPEG images, PNG masks)."""

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_grad.data import GOODSAD_CATEGORIES, DatasetLayoutError, GoodsAD, MultiCategory, UnknownCategoryError


def write_goodsad_replica(root: Path) -> Path:
    """Two train, one good and two defective test images per category; masks with and without ``_mask``."""
    generator = np.random.default_rng(0)
    for category in GOODSAD_CATEGORIES:
        folder = root / category
        for split, label, count in (("train", "good", 2), ("test", "good", 1), ("test", "miss", 2)):
            (folder / split / label).mkdir(parents=True, exist_ok=True)
            for index in range(count):
                pixels = generator.integers(0, 255, (40, 48, 3), dtype=np.uint8)
                Image.fromarray(pixels).save(folder / split / label / f"{index:03d}.jpg")
        masks = folder / "ground_truth" / "miss"
        masks.mkdir(parents=True)
        mask = np.zeros((40, 48), dtype=np.uint8)
        mask[10:20, 10:20] = 255
        Image.fromarray(mask).save(masks / "000_mask.png")
        Image.fromarray(mask).save(masks / "001.png")
    return root


@pytest.fixture(scope="module")
def goodsad_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_goodsad_replica(tmp_path_factory.mktemp("goodsad"))


def test_missing_dataset_explains_the_manual_download(tmp_path):
    datamodule = GoodsAD(root=tmp_path, category="drink_can")
    with pytest.raises(DatasetLayoutError, match=r"Download it manually from https://github.com/jianzhang96/GoodsAD"):
        datamodule.prepare_data()
    with pytest.raises(DatasetLayoutError, match=r"<category>/train/good"):
        datamodule.prepare_data()


def test_unknown_goodsad_category_lists_the_valid_ones(tmp_path):
    with pytest.raises(UnknownCategoryError, match=r"cigarette_box.*food_package"):
        GoodsAD(root=tmp_path, category="drink_cans")


def test_replica_reads_images_and_pairs_masks_by_name(goodsad_root):
    datamodule = GoodsAD(root=goodsad_root, category="food_box", num_workers=0)
    datamodule.prepare_data()
    datamodule.setup()
    samples = datamodule.test_data.samples
    assert len(datamodule.train_data) == 2 and len(samples) == 3
    masks = sorted(Path(path).name for path in samples["mask_path"].dropna())
    assert masks == ["000_mask.png", "001.png"]
    assert datamodule.test_data[0].image.shape == (3, 40, 48)


def test_all_six_categories_train_as_one(goodsad_root):
    datamodule = MultiCategory("GoodsAD", {"root": goodsad_root}, categories="all", num_workers=0)
    datamodule.prepare_data()
    datamodule.setup()
    assert datamodule.categories == sorted(GOODSAD_CATEGORIES)
    assert len(datamodule.train_data) == 12
    assert set(datamodule.test_data.samples["category"]) == set(GOODSAD_CATEGORIES)
