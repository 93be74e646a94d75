"""Real anomalous images in Grad's training: mask reduction, stage A mixing, stage B ignoring them."""

import pytest
import torch
from anomalib.data import ImageBatch
from torch.utils.data import DataLoader

from anomalib_grad import Grad
from anomalib_grad.models.grad.components.real_anomalies import MASK_COVERAGE, RealAnomalyStream, mask_to_feature_grid
from tests.conftest import SMALL_MODEL


def make_batch(labels: list[int], with_masks: bool = True) -> ImageBatch:
    masks = torch.zeros(len(labels), 64, 64, dtype=torch.bool)
    masks[torch.tensor(labels, dtype=torch.bool), 8:24, 8:24] = True
    return ImageBatch(
        image=torch.rand(len(labels), 3, 64, 64),
        gt_label=torch.tensor(labels),
        gt_mask=masks if with_masks else None,
        image_path=[f"image_{index}.png" for index in range(len(labels))],
    )


def test_mask_to_feature_grid_thresholds_coverage_and_keeps_thin_defects():
    mask = torch.zeros(2, 32, 32)
    mask[0, :8, :8] = 1  # one full cell
    mask[0, 8:10, :8] = 1  # a quarter of the cell below it
    mask[0, 16, :8] = 1  # an eighth of a cell: below MASK_COVERAGE, dropped as the others are larger
    mask[1, 20, 20] = 1  # a single pixel: too small for any cell, its cell is kept
    grid = mask_to_feature_grid(mask, (4, 4))
    assert grid.shape == (2, 1, 4, 4)
    assert MASK_COVERAGE == 0.25
    assert grid[0, 0, :, 0].tolist() == [1.0, 1.0, 0.0, 0.0]
    assert grid[0].sum() == 2
    assert grid[1, 0, 2, 2] == 1 and grid[1].sum() == 1
    assert mask_to_feature_grid(torch.zeros(1, 32, 32), (4, 4)).sum() == 0


def test_stage_b_trains_on_normal_images_only():
    model = Grad(**SMALL_MODEL, abnormal_epochs=0)
    batch = make_batch([0, 1, 0])
    torch.manual_seed(0)  # same coordinate noise in both computations
    loss = model.training_step(batch)["loss"]
    torch.manual_seed(0)
    features = model.model.extract_features(batch.image[[0, 2]])
    expected = model.reconstruction_loss(model.model.reconstruct(features), features)
    assert torch.isclose(loss, expected)
    assert model.training_step(make_batch([1, 1])) is None


def test_stage_a_scores_real_anomalies_against_their_masks():
    model = Grad(**SMALL_MODEL)
    batch = make_batch([0, 1])
    features = model.model.extract_features(batch.image)
    real_features, real_mask = model.real_anomaly_features(batch, features, batch.gt_label.bool())
    assert real_features.shape[0] == 1 and real_mask.shape == (1, 1, 8, 8)
    assert real_mask[0, 0, 1:3, 1:3].eq(1).all() and real_mask.sum() == 4
    model.training_features.learn_from_real_anomalies = False
    assert model.real_anomaly_features(batch, features, batch.gt_label.bool())[0].shape[0] == 0


def test_stage_a_draws_from_the_datamodule_anomalies():
    model = Grad(**SMALL_MODEL)
    anomalies = make_batch([1, 1, 1])
    items = list(anomalies)
    model.training_features.real_anomalies = RealAnomalyStream(
        DataLoader(items, batch_size=2, collate_fn=ImageBatch.collate)
    )
    batch = make_batch([0, 0])
    features = model.model.extract_features(batch.image)
    sizes = [model.real_anomaly_features(batch, features, batch.gt_label.bool())[0].shape[0] for _ in range(3)]
    assert sizes == [2, 1, 2]  # cycles through the 3 anomalies
    assert torch.isfinite(model.training_step(batch)["loss"])


def test_anomalous_training_images_without_masks_fail_clearly():
    with pytest.raises(ValueError, match=r"need ground-truth masks.*image_1\.png"):
        Grad(**SMALL_MODEL).training_step(make_batch([0, 1], with_masks=False))
