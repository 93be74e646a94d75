"""Images of any bit depth read correctly everywhere; corrupt images are named, before any work."""

from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import PredictDataset
from anomalib.data.utils import read_image as anomalib_read_image
from anomalib.engine import Engine
from lightning.pytorch import Callback
from PIL import Image

from anomalib_grad import Grad
from anomalib_grad.data import DatasetLayoutError, MVTecLayout, validate_mvtec_layout
from anomalib_grad.data.image_io import UnreadableImageError
from tests.conftest import SMALL_MODEL

SIZE = (24, 32)  # height, width


def pixels_8_bit(seed: int) -> np.ndarray:
    """A grayscale 8-bit picture whose every value 0..255 occurs."""
    values = np.random.default_rng(seed).permutation(np.arange(SIZE[0] * SIZE[1]) % 256)
    return values.reshape(SIZE).astype(np.uint8)


def truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def write_jpeg_category(root: Path, category: str = "widget") -> Path:
    """A tiny MVTec-layout category in JPEG: 3 train, 2 good and 1 defective test image with its mask."""
    category_root = root / category
    for split, label, count in (("train", "good", 3), ("test", "good", 2), ("test", "dent", 1)):
        folder = category_root / split / label
        folder.mkdir(parents=True, exist_ok=True)
        for index in range(count):
            rgb = np.stack([pixels_8_bit(index + len(label))] * 3, axis=-1)
            Image.fromarray(rgb).save(folder / f"{index:03d}.jpg", quality=95)
    mask = np.zeros(SIZE, dtype=np.uint8)
    mask[4:10, 5:12] = 255
    (category_root / "ground_truth" / "dent").mkdir(parents=True)
    Image.fromarray(mask).save(category_root / "ground_truth" / "dent" / "000_mask.png")
    return category_root


def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 128, 129, 257, 1000, 32896, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "gray16.png")
    assert Image.open(tmp_path / "gray16.png").mode == "I;16"  # a real 16-bit file
    expected = np.round(values / 257.0) / 255.0  # 8-bit-scaled: 0, 0, 1, 1, 4, 128, 255
    image = anomalib_read_image(tmp_path / "gray16.png")  # anomalib's own reader, as its datasets call it
    for channel in range(3):
        np.testing.assert_allclose(image[..., channel], expected, atol=1e-12)
    tensor = anomalib_read_image(tmp_path / "gray16.png", as_tensor=True)
    np.testing.assert_allclose(tensor[0].numpy(), expected, atol=1e-6)


def test_32_bit_float_and_integer_images_are_scaled(tmp_path):
    floats = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    Image.fromarray(floats).save(tmp_path / "float.tif")
    integers = np.array([[0, 257, 65535]], dtype=np.int32)
    Image.fromarray(integers).save(tmp_path / "int32.tif")
    assert Image.open(tmp_path / "float.tif").mode == "F"
    assert Image.open(tmp_path / "int32.tif").mode == "I"
    np.testing.assert_allclose(anomalib_read_image(tmp_path / "float.tif")[0, :, 0], np.round(floats[0] * 255) / 255)
    np.testing.assert_allclose(anomalib_read_image(tmp_path / "int32.tif")[0, :, 0], [0, 1 / 255, 1])


def test_float_image_out_of_range_is_named(tmp_path):
    Image.fromarray(np.array([[0.0, 3.5]], dtype=np.float32)).save(tmp_path / "hdr.tif")
    with pytest.raises(UnreadableImageError, match=r"hdr\.tif' is a 32-bit float image with values in \[0, 3\.5\]"):
        anomalib_read_image(tmp_path / "hdr.tif")


@pytest.mark.slow
def test_16_bit_images_train_test_and_predict_like_8_bit_ones(tmp_path):
    category = tmp_path / "widget"
    for split in ("train", "test"):
        folder = category / split / "good"
        folder.mkdir(parents=True)
        Image.fromarray(pixels_8_bit(0)).save(folder / "000.png")  # 8-bit
        Image.fromarray(pixels_8_bit(1).astype(np.uint16) * 257).save(folder / "001.png")  # 16-bit: 255 ↦ 65535
    expected = {"000.png": pixels_8_bit(0), "001.png": pixels_8_bit(1)}
    validate_mvtec_layout(tmp_path, "widget")  # the data check accepts them
    datamodule = MVTecLayout(root=tmp_path, category="widget", num_workers=0)
    datamodule.setup()
    # training and test samples, and what `anomalib predict --data <folder>` reads
    datasets = [datamodule.train_data, datamodule.test_data, PredictDataset(category / "test" / "good")]
    for dataset in datasets:
        assert len(dataset) == 2
        for index in range(len(dataset)):
            item = dataset[index]
            target = torch.from_numpy(expected[Path(item.image_path).name]).float().div(255).expand(3, *SIZE)
            torch.testing.assert_close(item.image, target, atol=1e-6, rtol=0)


@pytest.mark.parametrize("split", ["train", "test"])
def test_data_check_decodes_jpeg_fully_and_names_the_file(tmp_path, split):
    category_root = write_jpeg_category(tmp_path)
    bad = truncate(category_root / split / "good" / "001.jpg")
    with pytest.raises(DatasetLayoutError, match=rf"'{bad}' is corrupt or not a readable image"):
        validate_mvtec_layout(tmp_path, "widget")


def test_truncated_jpeg_read_later_names_the_file(tmp_path):
    bad = truncate(write_jpeg_category(tmp_path) / "test" / "good" / "001.jpg")
    with pytest.raises(UnreadableImageError, match=rf"'{bad}' is corrupt .*truncated"):
        anomalib_read_image(bad)


class CountPredictedBatches(Callback):
    def __init__(self) -> None:
        self.batches = 0

    def on_predict_batch_start(self, *args, **kwargs) -> None:
        self.batches += 1


def test_predict_on_a_folder_with_corrupt_images_fails_before_any_work_naming_them(tmp_path):
    folder = write_jpeg_category(tmp_path) / "train" / "good"  # 000, 001, 002
    bad = [truncate(folder / "000.jpg"), folder / "002.jpg"]
    bad[1].write_bytes(b"not an image")
    counter = CountPredictedBatches()
    engine = Engine(default_root_dir=tmp_path / "results", accelerator="cpu", logger=False, callbacks=[counter])
    with pytest.raises(UnreadableImageError, match="2 of 3 images cannot be read, so nothing was predicted") as error:
        engine.predict(Grad(**SMALL_MODEL, visualizer=False), data_path=folder)
    assert all(str(path) in str(error.value) for path in bad)
    assert str(folder / "001.jpg") not in str(error.value)
    assert counter.batches == 0
