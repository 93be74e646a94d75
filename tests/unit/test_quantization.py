"""The pieces of INT8 accuracy control: its metric, its validation images, its bad input."""

import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from anomalib_grad.deploy.quantization import (
    quantize_with_accuracy_control,
    synthetic_defect_accuracy,
    validation_batches,
)


def test_synthetic_defect_accuracy_is_the_mean_of_image_auroc_and_pixel_aupr():
    generator = np.random.default_rng(0)
    masks = np.zeros((12, 1, 8, 8), dtype=bool)
    masks[6:, :, 2:5, 3:6] = True
    maps = generator.uniform(size=masks.shape) + 0.8 * masks
    scores = maps.reshape(12, -1).max(axis=1)
    labels = np.repeat([0, 1], 6)
    expected = (roc_auc_score(labels, scores) + average_precision_score(masks.reshape(-1), maps.reshape(-1))) / 2
    assert synthetic_defect_accuracy(scores, maps, masks) == pytest.approx(expected, abs=1e-6)
    assert synthetic_defect_accuracy(scores, np.zeros_like(maps), masks) == 0.0  # a collapsed quantised map
    assert synthetic_defect_accuracy(np.full(12, 0.5), maps, masks) == 0.0


def test_validation_images_are_spread_training_images_then_the_same_with_defects():
    generator = np.random.default_rng(0)
    batches = [generator.uniform(size=(2, 3, 32, 32)).astype(np.float32) for _ in range(100)]
    validation, masks = validation_batches(batches, seed=0)
    normal, defective = validation[: len(validation) // 2], validation[len(validation) // 2 :]
    assert not any(mask.any() for mask in masks[:32])
    assert all(mask.shape == (2, 1, 32, 32) and mask.any() for mask in masks[32:])
    assert len(normal) == len(defective) == 32  # 64 normal images in batches of 2
    assert any(batch is batches[0] for batch in normal)
    assert any(batch is batches[-1] for batch in normal)
    for clean, changed in zip(normal, defective, strict=True):
        assert changed.shape == clean.shape
        assert not np.allclose(changed, clean)
    again = validation_batches(batches, seed=0)[0][32:]
    other = validation_batches(batches, seed=1)[0][32:]
    assert all(np.array_equal(first, second) for first, second in zip(defective, again, strict=True))
    assert not all(np.array_equal(first, second) for first, second in zip(defective, other, strict=True))


@pytest.mark.parametrize("max_drop", [0.0, 1.0, -0.1, 2.0])
def test_max_drop_outside_zero_one_is_a_clear_error(max_drop):
    with pytest.raises(ValueError, match=rf"max_drop .* in \(0, 1\); got {max_drop}"):
        quantize_with_accuracy_control(None, None, (64, 64), max_drop=max_drop)


def test_accuracy_control_without_a_datamodule_is_a_clear_error():
    with pytest.raises(ValueError, match="INT8_ACQ calibrates on training images: pass a datamodule"):
        quantize_with_accuracy_control(None, None, (64, 64))
