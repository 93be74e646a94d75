"""Grid sampling matches grid_sample (bilinear, zero padding, align_corners=False)."""

import torch
from torch.nn import functional as F  # noqa: N812

from anomalib_grad.models.grad.components.grid import FeatureGrid, bilinear_weights


def test_grid_reads_equal_grid_sample_including_outside_coordinates():
    torch.manual_seed(0)
    grid = FeatureGrid(channels=5, feature_size=(6, 7), local_grid_size=8, global_grid_size=4)
    global_coordinates = torch.rand(3, 2) * 2.4 - 1.2
    local_coordinates = torch.rand(3, 2, 6, 7) * 2.4 - 1.2
    sampled = grid(global_coordinates, local_coordinates)
    expected_global = F.grid_sample(
        grid.global_grid.expand(3, -1, -1, -1), global_coordinates.view(3, 1, 1, 2), align_corners=False
    ).view(3, 5, 6, 7)
    expected_local = F.grid_sample(
        grid.local_grid.expand(3, -1, -1, -1), local_coordinates.permute(0, 2, 3, 1), align_corners=False
    )
    assert sampled.shape == (3, 10, 6, 7)
    assert torch.allclose(sampled[:, :5], expected_global, atol=1e-6)
    assert torch.allclose(sampled[:, 5:], expected_local, atol=1e-6)


def test_node_centre_reads_exactly_one_node():
    # node (x=1, y=2) of a 4x4 grid sits at ((2*1+1)/4 - 1, (2*2+1)/4 - 1)
    weights = bilinear_weights(torch.tensor([[-0.25, 0.25]]), 4)
    assert weights.sum() == 1
    assert weights[0, 2 * 4 + 1] == 1


def test_gradients_reach_both_grids_and_coordinates():
    grid = FeatureGrid(channels=2, feature_size=(3, 3), local_grid_size=4, global_grid_size=2)
    global_coordinates = torch.zeros(2, 2, requires_grad=True)
    local_coordinates = (torch.rand(2, 2, 3, 3) * 0.5).requires_grad_()
    grid(global_coordinates, local_coordinates).pow(2).sum().backward()
    assert grid.global_grid.grad.abs().sum() > 0
    assert grid.local_grid.grad.abs().sum() > 0
    assert local_coordinates.grad.abs().sum() > 0
