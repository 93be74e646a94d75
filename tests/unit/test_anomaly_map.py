"""Anomaly map and image score: the separable box filter equals the 2-D mean filter of the spec."""

import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from anomalib_grad.models.grad.anomaly_map import AnomalyMapGenerator, separable_box_filter


@pytest.mark.parametrize(("size", "padding"), [(21, 10), (32, 0), (5, 2), (1, 0)])
def test_separable_box_filter_equals_the_2d_mean_filter(size, padding):
    images = torch.rand(2, 1, 48, 40, generator=torch.Generator().manual_seed(size))
    expected = F.avg_pool2d(images, size, stride=1, padding=padding, count_include_pad=False)
    torch.testing.assert_close(separable_box_filter(images, size, padding), expected, rtol=1e-5, atol=1e-6)


def test_map_and_score_follow_the_spec():
    generator = torch.Generator().manual_seed(0)
    features = torch.rand(2, 8, 8, 8, generator=generator)
    reconstruction = torch.rand(2, 8, 8, 8, generator=generator)
    anomaly_map, score = AnomalyMapGenerator((64, 64), smoothing_size=21, score_pool_size=32)(features, reconstruction)
    distance = torch.linalg.vector_norm(features - reconstruction, dim=1, keepdim=True)
    upsampled = F.interpolate(distance, size=(64, 64), mode="bilinear", align_corners=True)
    expected_map = F.avg_pool2d(upsampled, 21, stride=1, padding=10, count_include_pad=False)
    expected_score = F.avg_pool2d(expected_map, 32, stride=1).flatten(1).amax(1)
    torch.testing.assert_close(anomaly_map, expected_map, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(score, expected_score, rtol=1e-5, atol=1e-6)
