"""Tests for the built-in synthetic dataset and the SyntheticSurfaces datamodule."""

from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from anomalib_grad.data import SyntheticSurfaces, default_cache_root, generate_synthetic_surfaces, synthetic
from anomalib_grad.data.synthetic import COMPLETE_MARKER, DEFECT_TYPES, FORMAT_VERSION, render_sample

SMALL = {"image_size": 64, "num_train": 3, "num_test_good": 2, "num_test_per_defect": 2}


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The default-sized dataset, generated once for the module."""
    return generate_synthetic_surfaces(tmp_path_factory.mktemp("cache"))


def _files(folder: Path) -> dict[str, bytes]:
    return {str(path.relative_to(folder)): path.read_bytes() for path in sorted(folder.rglob("*")) if path.is_file()}


def _load(path: Path) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image)


def test_layout_and_counts(dataset: Path) -> None:
    assert dataset.name == "textured_surface"
    assert len(list((dataset / "train" / "good").glob("*.png"))) == 60
    assert len(list((dataset / "test" / "good").glob("*.png"))) == 15
    for defect in DEFECT_TYPES:
        images = sorted(path.stem for path in (dataset / "test" / defect).glob("*.png"))
        masks = sorted(path.stem for path in (dataset / "ground_truth" / defect).glob("*.png"))
        assert images == [f"{index:03d}" for index in range(8)]
        assert masks == [f"{stem}_mask" for stem in images]
    assert sorted(path.name for path in (dataset / "test").iterdir()) == sorted(["good", *DEFECT_TYPES])
    assert (dataset / COMPLETE_MARKER).read_text().strip() == str(FORMAT_VERSION)
    assert [path.name for path in dataset.parent.iterdir()] == ["textured_surface"]  # no staging leftovers


def test_images_are_textured_and_vary(dataset: Path) -> None:
    first, second = (_load(dataset / "train" / "good" / f"00{index}.png").astype(float) for index in (0, 1))
    assert first.shape == (256, 256, 3)
    assert (first.std(axis=(0, 1)) > 8).all()  # not a flat colour
    assert np.abs(first - second).mean() > 8  # every image is a new surface
    # One texture family: comparable global brightness.
    assert abs(first.mean() - second.mean()) < 40


def test_masks_are_binary_nonempty_and_match_image_size(dataset: Path) -> None:
    for defect in DEFECT_TYPES:
        for image_path in sorted((dataset / "test" / defect).glob("*.png")):
            mask_path = dataset / "ground_truth" / defect / f"{image_path.stem}_mask.png"
            with Image.open(mask_path) as mask_image, Image.open(image_path) as image:
                assert mask_image.mode == "L"
                assert image.mode == "RGB"
                assert mask_image.size == image.size
                mask = np.asarray(mask_image)
            assert set(np.unique(mask).tolist()) == {0, 255}, mask_path
            assert 10 < (mask > 0).sum() < 0.2 * mask.size, mask_path


@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_defect_changes_exactly_the_masked_pixels(dataset: Path, defect: str) -> None:
    for index in range(8):
        sample = render_sample(seed=0, split="test", label=defect, index=index)
        image = _load(dataset / "test" / defect / f"{index:03d}.png")
        mask = _load(dataset / "ground_truth" / defect / f"{index:03d}_mask.png") > 0
        np.testing.assert_array_equal(image, sample.image)  # the file is exactly the documented render
        change = np.abs(image.astype(int) - sample.clean.astype(int)).max(axis=-1)
        assert change[mask].min() >= 10, f"{defect} {index}: a masked pixel is barely changed"
        assert change[mask].mean() >= 30, f"{defect} {index}: defect is not clearly visible"
        # Only the anti-aliased one-pixel rim around the mask may change (alpha < 0.5 there).
        near_mask = cv2.dilate(mask.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
        assert (change[~near_mask] == 0).all(), f"{defect} {index}: pixels away from the mask changed"


@pytest.mark.parametrize("defect", DEFECT_TYPES)
def test_masked_pixels_stand_out_from_their_surroundings(dataset: Path, defect: str) -> None:
    for image_path in sorted((dataset / "test" / defect).glob("*.png")):
        image = _load(image_path).astype(float)
        mask = _load(dataset / "ground_truth" / defect / f"{image_path.stem}_mask.png") > 0
        ring = (cv2.dilate(mask.astype(np.uint8), np.ones((15, 15), np.uint8)) > 0) & ~(
            cv2.dilate(mask.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
        )
        contrast = np.abs(image[mask].mean(axis=0) - image[ring].mean(axis=0)) / image[ring].std(axis=0)
        assert contrast.max() > 2, f"{image_path} blends into its surroundings"


def test_good_images_are_defect_free_renders(dataset: Path) -> None:
    sample = render_sample(seed=0, split="test", label="good", index=4)
    assert sample.mask is None
    np.testing.assert_array_equal(_load(dataset / "test" / "good" / "004.png"), sample.clean)


def test_same_seed_gives_identical_files(tmp_path: Path) -> None:
    first = _files(generate_synthetic_surfaces(tmp_path / "a", seed=7, **SMALL))
    second = _files(generate_synthetic_surfaces(tmp_path / "b", seed=7, **SMALL))
    assert len(first) == 3 + 2 + 2 * 2 * len(DEFECT_TYPES) + 2  # images, masks, parameters and marker
    assert first == second


def test_different_seed_gives_different_images(tmp_path: Path) -> None:
    first = _files(generate_synthetic_surfaces(tmp_path / "a", seed=0, **SMALL))
    second = _files(generate_synthetic_surfaces(tmp_path / "b", seed=1, **SMALL))
    images = [name for name in first if name.endswith(".png")]
    assert images == [name for name in second if name.endswith(".png")]
    assert all(first[name] != second[name] for name in images)


def test_complete_folder_is_reused(tmp_path: Path) -> None:
    category_root = generate_synthetic_surfaces(tmp_path, **SMALL)
    sentinel = category_root / "train" / "good" / "sentinel.txt"
    sentinel.write_text("kept")
    assert generate_synthetic_surfaces(tmp_path, **SMALL) == category_root
    assert sentinel.read_text() == "kept"  # nothing was regenerated


def test_other_parameters_replace_the_folder(tmp_path: Path) -> None:
    old_image = (generate_synthetic_surfaces(tmp_path, seed=0, **SMALL) / "train" / "good" / "000.png").read_bytes()
    category_root = generate_synthetic_surfaces(tmp_path, seed=1, **SMALL)
    assert (category_root / "train" / "good" / "000.png").read_bytes() != old_image
    assert '"seed": 1' in (category_root / "generation.json").read_text()
    assert (category_root / COMPLETE_MARKER).is_file()
    assert [path.name for path in tmp_path.iterdir()] == ["textured_surface"]


def test_interrupted_generation_leaves_no_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []

    def failing_render(*args: object, **kwargs: object) -> synthetic.SyntheticSample:
        calls.append(args)
        if len(calls) > 2:
            msg = "simulated crash"
            raise KeyboardInterrupt(msg)
        return render_sample(*args, **kwargs)

    monkeypatch.setattr(synthetic, "render_sample", failing_render)
    with pytest.raises(KeyboardInterrupt, match="simulated crash"):
        generate_synthetic_surfaces(tmp_path, **SMALL)
    assert list(tmp_path.iterdir()) == []  # neither a partial category folder nor a staging folder

    monkeypatch.undo()
    category_root = generate_synthetic_surfaces(tmp_path, **SMALL)
    assert (category_root / COMPLETE_MARKER).is_file()


def test_unmarked_but_whole_folder_is_adopted(tmp_path: Path) -> None:
    category_root = generate_synthetic_surfaces(tmp_path, **SMALL)
    (category_root / COMPLETE_MARKER).unlink()  # as if the process died right after the rename
    sentinel = category_root / "sentinel.txt"
    sentinel.write_text("kept")
    generate_synthetic_surfaces(tmp_path, **SMALL)
    assert (category_root / COMPLETE_MARKER).read_text().strip() == str(FORMAT_VERSION)
    assert sentinel.read_text() == "kept"  # adopted, not regenerated


def test_unmarked_folder_with_missing_files_is_regenerated(tmp_path: Path) -> None:
    category_root = generate_synthetic_surfaces(tmp_path, **SMALL)
    (category_root / COMPLETE_MARKER).unlink()
    (category_root / "test" / "spot" / "000.png").unlink()
    generate_synthetic_surfaces(tmp_path, **SMALL)
    assert (category_root / COMPLETE_MARKER).is_file()
    assert (category_root / "test" / "spot" / "000.png").is_file()


def test_foreign_folder_is_not_overwritten(tmp_path: Path) -> None:
    user_file = tmp_path / "textured_surface" / "notes.txt"
    user_file.parent.mkdir()
    user_file.write_text("mine")
    with pytest.raises(FileExistsError, match="not created by generate_synthetic_surfaces"):
        generate_synthetic_surfaces(tmp_path, **SMALL)
    assert user_file.read_text() == "mine"


def test_empty_existing_folder_is_filled(tmp_path: Path) -> None:
    (tmp_path / "textured_surface").mkdir()
    category_root = generate_synthetic_surfaces(tmp_path, **SMALL)
    assert (category_root / COMPLETE_MARKER).is_file()
    assert len(list((category_root / "train" / "good").glob("*.png"))) == SMALL["num_train"]


def test_invalid_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="num_train >= 1"):
        generate_synthetic_surfaces(tmp_path, num_train=0)
    assert list(tmp_path.iterdir()) == []


def test_default_cache_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("ANOMALIB_GRAD_CACHE", str(tmp_path / "custom"))
    assert default_cache_root() == tmp_path / "custom"
    monkeypatch.delenv("ANOMALIB_GRAD_CACHE")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert default_cache_root() == tmp_path / ".cache" / "anomalib_grad" / "datasets"


def test_synthetic_surfaces_datamodule(dataset: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANOMALIB_GRAD_CACHE", str(dataset.parent))  # reuse the module's generated copy
    datamodule = SyntheticSurfaces()
    assert datamodule.root == dataset.parent
    assert (datamodule.train_batch_size, datamodule.eval_batch_size, datamodule.num_workers) == (16, 16, 0)
    datamodule.prepare_data()
    datamodule.setup()

    assert len(datamodule.train_data) == 60
    test_samples = datamodule.test_data.samples
    anomalous = test_samples[test_samples.label_index == 1]
    assert len(test_samples) == 15 + 8 * len(DEFECT_TYPES)
    assert len(anomalous) == 8 * len(DEFECT_TYPES)
    assert all(Path(mask_path).is_file() for mask_path in anomalous.mask_path)
    assert all(
        Path(m).stem == f"{Path(i).stem}_mask" for i, m in zip(anomalous.image_path, anomalous.mask_path, strict=True)
    )

    item = datamodule.test_data[int(anomalous.index[0])]
    assert tuple(item.image.shape) == (3, 256, 256)
    assert tuple(item.gt_mask.shape) == (256, 256)
    assert int(item.gt_label) == 1
    assert item.gt_mask.sum() > 0

    batch = next(iter(datamodule.train_dataloader()))
    assert tuple(batch.image.shape) == (16, 3, 256, 256)
