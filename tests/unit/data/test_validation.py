"""Tests for MVTec-layout validation and the MVTecLayout datamodule."""

import re
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomalib_grad.data import DatasetLayoutError, MVTecLayout, validate_mvtec_layout
from anomalib_grad.data.datamodules import make_mvtec_layout_dataset

REAL_DATA_ROOT = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "real"
IMAGE_SIZE = (32, 24)  # width, height


def _save_image(path: Path, mode: str = "RGB", size: tuple[int, int] = IMAGE_SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    channels = {"L": (), "RGB": (3,), "RGBA": (4,)}[mode]
    pixels = np.random.default_rng(len(path.name)).integers(0, 256, (size[1], size[0], *channels), dtype=np.uint8)
    Image.fromarray(pixels, mode=mode).save(path)
    return path


def _save_mask(path: Path, size: tuple[int, int] = IMAGE_SIZE) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    mask = np.zeros((size[1], size[0]), dtype=np.uint8)
    mask[4:10, 5:12] = 255
    Image.fromarray(mask, mode="L").save(path)
    return path


def _make_dataset(root: Path, category: str = "widget", mode: str = "RGB", extension: str = ".png") -> Path:
    """Write a tiny valid category: 2 train, 1 good and 2 anomalous test images with masks."""
    category_root = root / category
    for name in ("000", "001"):
        _save_image(category_root / "train" / "good" / f"{name}{extension}", mode)
    _save_image(category_root / "test" / "good" / f"000{extension}", mode)
    for name in ("000", "001"):
        _save_image(category_root / "test" / "dent" / f"{name}{extension}", mode)
        _save_mask(category_root / "ground_truth" / "dent" / f"{name}_mask.png")
    return category_root


def test_error_is_a_value_error() -> None:
    assert issubclass(DatasetLayoutError, ValueError)


@pytest.mark.parametrize(
    ("mode", "extension"),
    [("RGB", ".png"), ("L", ".png"), ("RGBA", ".png"), ("RGB", ".JPG"), ("L", ".jpeg"), ("RGB", ".bmp"), ("L", ".tif")],
)
def test_valid_layouts_pass_and_load_as_rgb(tmp_path: Path, mode: str, extension: str) -> None:
    _make_dataset(tmp_path, mode=mode, extension=extension)
    validate_mvtec_layout(tmp_path, "widget")

    datamodule = MVTecLayout(root=tmp_path, category="widget", num_workers=0)
    datamodule.prepare_data()
    datamodule.setup()
    assert len(datamodule.train_data) == 2
    assert len(datamodule.test_data) == 3
    item = datamodule.test_data[0]
    assert tuple(item.image.shape) == (3, IMAGE_SIZE[1], IMAGE_SIZE[0])
    assert tuple(item.gt_mask.shape) == (IMAGE_SIZE[1], IMAGE_SIZE[0])


def test_hidden_files_and_plain_mask_names_are_accepted(tmp_path: Path) -> None:
    category_root = _make_dataset(tmp_path)
    (category_root / "train" / "good" / "._000.png").write_bytes(b"macOS resource fork, not a PNG")
    (category_root / "ground_truth" / "dent" / "001_mask.png").rename(
        category_root / "ground_truth" / "dent" / "001.png"
    )
    validate_mvtec_layout(tmp_path, "widget")
    samples = make_mvtec_layout_dataset(category_root)
    assert len(samples) == 5
    assert samples.set_index("image_path").loc[str(category_root / "test" / "dent" / "001.png"), "mask_path"] == str(
        category_root / "ground_truth" / "dent" / "001.png",
    )


def test_missing_root(tmp_path: Path) -> None:
    with pytest.raises(DatasetLayoutError, match=r"Dataset root '.*nowhere' does not exist"):
        validate_mvtec_layout(tmp_path / "nowhere", "widget")


def test_missing_category_lists_available_ones(tmp_path: Path) -> None:
    _make_dataset(tmp_path, category="widget")
    with pytest.raises(DatasetLayoutError, match=r"Category folder '.*gadget' does not exist.*'widget'"):
        validate_mvtec_layout(tmp_path, "gadget")


def test_empty_category(tmp_path: Path) -> None:
    (tmp_path / "widget").mkdir()
    (tmp_path / "widget" / ".DS_Store").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match=r"Category folder '.*widget' is empty"):
        validate_mvtec_layout(tmp_path, "widget")


def test_missing_train_good(tmp_path: Path) -> None:
    _save_image(tmp_path / "widget" / "test" / "good" / "000.png")
    with pytest.raises(DatasetLayoutError, match=r"Training folder '.*train/good' does not exist"):
        validate_mvtec_layout(tmp_path, "widget")


def test_train_good_without_images(tmp_path: Path) -> None:
    category_root = _make_dataset(tmp_path)
    for image_path in (category_root / "train" / "good").iterdir():
        image_path.unlink()
    (category_root / "train" / "good" / "README.txt").write_text("no images here")
    with pytest.raises(DatasetLayoutError, match=r"Training folder '.*train/good' contains no images"):
        validate_mvtec_layout(tmp_path, "widget")


def test_missing_mask_names_image_and_expected_path(tmp_path: Path) -> None:
    category_root = _make_dataset(tmp_path)
    (category_root / "ground_truth" / "dent" / "001_mask.png").unlink()
    image = category_root / "test" / "dent" / "001.png"
    expected = category_root / "ground_truth" / "dent" / "001_mask.png"
    pattern = rf"'{re.escape(str(image))}' has no ground-truth mask\. Expected '{re.escape(str(expected))}'"
    with pytest.raises(DatasetLayoutError, match=pattern):
        validate_mvtec_layout(tmp_path, "widget")


def test_mask_size_mismatch(tmp_path: Path) -> None:
    category_root = _make_dataset(tmp_path)
    _save_mask(category_root / "ground_truth" / "dent" / "000_mask.png", size=(16, 24))
    with pytest.raises(DatasetLayoutError, match=r"Mask '.*000_mask\.png' has size 16x24 .* has size 32x24"):
        validate_mvtec_layout(tmp_path, "widget")


def test_zero_byte_image(tmp_path: Path) -> None:
    category_root = _make_dataset(tmp_path)
    (category_root / "test" / "good" / "000.png").write_bytes(b"")
    with pytest.raises(DatasetLayoutError, match=r"Image file '.*test/good/000\.png' is empty \(0 bytes\)"):
        validate_mvtec_layout(tmp_path, "widget")


@pytest.mark.parametrize("content", [b"definitely not an image", "truncated"])
def test_corrupt_image(tmp_path: Path, content: bytes | str) -> None:
    category_root = _make_dataset(tmp_path)
    image_path = category_root / "train" / "good" / "001.png"
    data = image_path.read_bytes()
    image_path.write_bytes(data[: len(data) // 2] if content == "truncated" else content)
    with pytest.raises(DatasetLayoutError, match=r"Image file '.*train/good/001\.png' is corrupt"):
        validate_mvtec_layout(tmp_path, "widget")


def test_corrupt_mask(tmp_path: Path) -> None:
    category_root = _make_dataset(tmp_path)
    (category_root / "ground_truth" / "dent" / "001_mask.png").write_bytes(b"\x89PNG garbage")
    with pytest.raises(DatasetLayoutError, match=r"Mask file '.*ground_truth/dent/001_mask\.png' is corrupt"):
        validate_mvtec_layout(tmp_path, "widget")


def test_prepare_data_validates_instead_of_downloading(tmp_path: Path) -> None:
    datamodule = MVTecLayout(root=tmp_path, category="magnetic_tile", num_workers=0)
    with pytest.raises(DatasetLayoutError, match="magnetic_tile' does not exist"):
        datamodule.prepare_data()
    assert list(tmp_path.iterdir()) == []  # nothing was downloaded


def test_masks_are_paired_by_name_not_by_sort_order(tmp_path: Path) -> None:
    # anomalib's make_mvtec_ad_dataset pairs sorted images with sorted masks, which fails here:
    # "1.png" < "12.png" but "12_mask.png" < "1_mask.png".
    category_root = tmp_path / "tile"
    _save_image(category_root / "train" / "good" / "0.png")
    for stem in ("1", "12"):
        _save_image(category_root / "test" / "crack" / f"{stem}.png")
        _save_mask(category_root / "ground_truth" / "crack" / f"{stem}_mask.png")
    samples = make_mvtec_layout_dataset(category_root, split="test")
    assert samples.attrs["task"] == "segmentation"
    assert [Path(path).name for path in samples.mask_path] == ["1_mask.png", "12_mask.png"]


def test_real_magnetic_tile() -> None:
    category_root = REAL_DATA_ROOT / "magnetic_tile"
    if not category_root.is_dir():
        pytest.skip(f"real data not available at {category_root}")
    datamodule = MVTecLayout(root=REAL_DATA_ROOT, category="magnetic_tile", num_workers=0)
    datamodule.prepare_data()
    datamodule.setup()

    assert len(datamodule.train_data) == len(list((category_root / "train" / "good").glob("*.png")))
    test_samples = datamodule.test_data.samples
    anomalous = test_samples[test_samples.label_index == 1]
    assert set(test_samples.label) - {"good"} == {path.name for path in (category_root / "ground_truth").iterdir()}
    assert len(anomalous) > 0
    assert all(
        Path(m).stem == f"{Path(i).stem}_mask" for i, m in zip(anomalous.image_path, anomalous.mask_path, strict=True)
    )

    item = datamodule.test_data[int(anomalous.index[0])]
    assert item.image.shape[0] == 3
    assert item.image.shape[1:] == item.gt_mask.shape
    assert int(item.gt_label) == 1
