"""MultiCategory: category resolution, union of categories, mixed image kinds and held-out anomalies."""

import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from anomalib.data import MVTecAD

from anomalib_grad import Grad
from anomalib_grad.data import (
    DataLeakageError,
    DatasetLayoutError,
    MultiCategory,
    MVTecLayout,
    UnknownCategoryError,
)
from anomalib_grad.data.categories import known_categories, resolve_datamodule_class
from tests.conftest import SMALL_MODEL


def multi(root: Path, **kwargs) -> MultiCategory:
    arguments = {"categories": ["gray", "rgb"], "num_workers": 0, "train_batch_size": 4, "seed": 0} | kwargs
    return MultiCategory("anomalib_grad.data.MVTecLayout", {"root": root}, **arguments)


def test_all_categories_come_from_the_class_list_or_the_root_folders(mixed_root):
    assert MultiCategory("MVTecAD", {"root": "./absent"}).categories[:2] == ["bottle", "cable"]
    assert MultiCategory("GoodsAD", {"root": "./absent"}).categories[0] == "cigarette_box"
    assert MultiCategory("MVTecLayout", {"root": mixed_root}).categories == ["gray", "nodefects", "rgb"]
    assert known_categories(MVTecLayout) is None
    assert resolve_datamodule_class(MVTecAD) is MVTecAD


def test_unknown_categories_are_listed_with_the_valid_ones(mixed_root):
    with pytest.raises(UnknownCategoryError, match=r"\['botle'\].*'bottle', 'cable'"):
        MultiCategory("MVTecAD", {"root": "./absent"}, categories=["bottle", "botle"])
    with pytest.raises(UnknownCategoryError, match=r"sub-folders of .*\['gray', 'nodefects', 'rgb'\]"):
        multi(mixed_root, categories=["grey"])
    with pytest.raises(ValueError, match="Cannot find the datamodule class 'NoSuchData'"):
        MultiCategory("NoSuchData", {"root": mixed_root})
    with pytest.raises(ValueError, match=r"rejected datamodule_args.*It accepts"):
        MultiCategory("MVTecLayout", {"root": mixed_root, "colour": 1}, categories=["rgb"])


def test_union_keeps_each_sample_category_and_resizes_mixed_images(mixed_root):
    datamodule = multi(mixed_root)
    datamodule.prepare_data()
    datamodule.trainer = SimpleNamespace(model=Grad(**SMALL_MODEL))  # anomalib appends the model's resize
    datamodule.setup()
    assert datamodule.category == "gray+rgb"
    assert len(datamodule.train_data) == 12
    assert datamodule.test_data.samples["category"].value_counts().to_dict() == {"gray": 9, "rgb": 9}
    assert set(datamodule.val_data.samples["category"]) == {"gray", "rgb"}
    samples = datamodule.train_data.samples
    gray_index = samples.index[samples["category"] == "gray"][0]
    rgb_index = samples.index[samples["category"] == "rgb"][0]
    assert datamodule.train_data[gray_index].image.shape == (3, 64, 64)  # 80×80 grayscale in
    assert datamodule.train_data[rgb_index].image.shape == (3, 64, 64)
    batch = next(iter(datamodule.test_dataloader()))
    assert batch.image.shape[1:] == (3, 64, 64)
    assert batch.gt_mask.shape[1:] == (64, 64)
    lookup = datamodule.category_lookup()
    assert {lookup[path] for path in batch.image_path} <= {"gray", "rgb"}
    assert all(f"/{lookup[path]}/" in path for path in batch.image_path)


def test_folder_datamodule_with_category_placeholder(mixed_root):
    datamodule = MultiCategory(
        "Folder",
        {
            "name": "surfaces",
            "root": str(mixed_root / "{category}"),
            "normal_dir": "train/good",
            "normal_test_dir": "test/good",
            "abnormal_dir": "test/spot",
        },
        categories=["rgb", "gray"],
        num_workers=0,
    )
    datamodule.setup()
    assert datamodule.test_data.samples.groupby("category")["label_index"].sum().to_dict() == {"gray": 2, "rgb": 2}
    with pytest.raises(ValueError, match="takes no `category` argument"):
        MultiCategory("Folder", {"name": "s", "root": str(mixed_root), "normal_dir": "a"}, categories=["rgb"])


def test_category_without_defects_sets_up(mixed_root, caplog):
    datamodule = multi(mixed_root, categories=["nodefects", "rgb"])
    datamodule.setup()
    counts = datamodule.test_data.samples.groupby("category")["label_index"].sum().to_dict()
    assert counts == {"nodefects": 0, "rgb": 6}
    assert "without defective test images" in caplog.text


def test_holdout_moves_seeded_anomalies_from_test_to_training(mixed_root):
    datamodule = multi(mixed_root, holdout_anomalies_per_type=1)
    datamodule.setup()
    held = datamodule.anomaly_train_data.samples
    assert held.groupby("category")["label"].nunique().to_dict() == {"gray": 3, "rgb": 3}
    assert len(held) == 6 and (held["label_index"] == 1).all() and held["mask_path"].notna().all()
    test_paths = set(datamodule.test_data.samples["image_path"]) | set(datamodule.val_data.samples["image_path"])
    assert not test_paths & set(held["image_path"])
    assert len(datamodule.test_data) == 18 - 6
    again = multi(mixed_root, holdout_anomalies_per_type=1)
    again.setup()
    assert list(again.anomaly_train_data.samples["image_path"]) == list(held["image_path"])
    batch = next(iter(datamodule.anomaly_train_dataloader()))
    assert batch.gt_mask is not None and batch.gt_label.all()


def test_holdout_keeps_one_test_image_per_defect_type(mixed_root):
    datamodule = multi(mixed_root, categories=["rgb"], holdout_anomalies_per_type=5)
    datamodule.setup()
    assert len(datamodule.anomaly_train_data) == 3  # 2 per type, 1 kept for testing
    assert datamodule.test_data.samples.groupby("label").size().to_dict() == {
        "crack": 1,
        "good": 3,
        "scratch": 1,
        "spot": 1,
    }


def test_external_anomalies_from_the_test_set_are_refused_as_leakage(mixed_root):
    datamodule = multi(mixed_root, external_anomalies=mixed_root)
    with pytest.raises(DataLeakageError, match="also test or validation images"):
        datamodule.setup()


def test_external_anomalies_are_loaded_for_training(mixed_root, tmp_path):
    shutil.copytree(mixed_root / "rgb" / "test" / "spot", tmp_path / "rgb" / "test" / "spot")
    shutil.copytree(mixed_root / "rgb" / "ground_truth" / "spot", tmp_path / "rgb" / "ground_truth" / "spot")
    datamodule = MVTecLayout(root=mixed_root, category="gray", external_anomalies=tmp_path, num_workers=0)
    with pytest.raises(DatasetLayoutError, match="has no folder for \\['gray'\\]"):
        datamodule.setup()
    datamodule = multi(mixed_root, external_anomalies=tmp_path)
    datamodule.setup()
    assert len(datamodule.anomaly_train_data) == 2
    assert set(datamodule.anomaly_train_data.samples["category"]) == {"rgb"}


def test_external_anomalies_without_masks_or_with_wrong_sizes_fail_clearly(mixed_root, tmp_path):
    from PIL import Image

    shutil.copytree(mixed_root / "rgb" / "test" / "spot", tmp_path / "rgb" / "test" / "spot")
    with pytest.raises(DatasetLayoutError, match="has no ground-truth mask"):
        multi(mixed_root, external_anomalies=tmp_path).setup()
    masks = tmp_path / "rgb" / "ground_truth" / "spot"
    shutil.copytree(mixed_root / "rgb" / "ground_truth" / "spot", masks)
    first = sorted(masks.iterdir())[0]
    Image.open(first).resize((32, 32)).save(first)
    with pytest.raises(DatasetLayoutError, match=r"has size 32x32.*Each mask must have exactly the size"):
        multi(mixed_root, external_anomalies=tmp_path).setup()
    with pytest.raises(DatasetLayoutError, match="does not exist"):
        multi(mixed_root, external_anomalies=tmp_path / "absent")
