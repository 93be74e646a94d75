"""The positional subspace against a NumPy oracle: per-position mean, principal directions, projection, distance."""

import numpy as np
import pytest
import torch
from torch.nn import functional as F  # noqa: N812

from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.components.positional_subspace import PositionalSubspace
from anomalib_grad.models.grad.torch_model import GradModel


def tiny_model_args() -> dict:
    """A small GradModel's arguments (64 px: an 8×8 feature map, so FBP blocks of at most 5×5)."""
    blocks = FeatureBlockPaste(block_size=(0, 2))
    return {
        "input_size": (64, 64),
        "pre_trained": False,
        "branch_depth": 1,
        "branch_width": 8,
        "feature_block_paste": blocks,
    }


def low_rank_features(count: int = 40, channels: int = 6, size: tuple[int, int] = (2, 3)) -> torch.Tensor:
    """Features whose spread differs per position: position p varies mostly along its own 2 directions."""
    generator = torch.Generator().manual_seed(0)
    positions = size[0] * size[1]
    directions = torch.randn(positions, 2, channels, generator=generator)
    weights = torch.randn(count, positions, 2, generator=generator) * torch.tensor([3.0, 2.0])
    features = torch.einsum("npk,pkc->npc", weights, directions) + 0.05 * torch.randn(count, positions, channels)
    features += torch.arange(positions, dtype=torch.float32).view(1, positions, 1)  # a mean per position
    return features.permute(0, 2, 1).reshape(count, channels, *size)


def numpy_projection(train: np.ndarray, test: np.ndarray, rank: int) -> np.ndarray:
    """Project ``test`` (N, C, h, w) onto each position's top-``rank`` PCA subspace of ``train`` via SVD."""
    projected = np.empty_like(test)
    for row in range(train.shape[2]):
        for column in range(train.shape[3]):
            samples = train[:, :, row, column]
            mean = samples.mean(axis=0)
            _, _, vt = np.linalg.svd(samples - mean, full_matrices=False)
            basis = vt[:rank].T
            projected[:, :, row, column] = mean + (test[:, :, row, column] - mean) @ basis @ basis.T
    return projected


@pytest.mark.parametrize("rank", [1, 2, 6])
def test_projection_equals_per_position_pca_fitted_over_batches(rank):
    features = low_rank_features()
    subspace = PositionalSubspace(channels=6, feature_size=(2, 3), rank=rank)
    for part in features.split(15):  # statistics accumulated over uneven batches
        subspace.update(part)
    subspace.fit()
    test = low_rank_features(count=5) * 1.5
    expected = numpy_projection(features.double().numpy(), test.double().numpy(), rank)
    np.testing.assert_allclose(subspace.project(test).numpy(), expected, atol=1e-4)
    distance = np.linalg.norm(test.double().numpy() - expected, axis=1, keepdims=True)
    # The distance comes from ‖φ − μ‖² − ‖Uᵀ(φ − μ)‖²: its square is exact to float32 rounding, the distance
    # itself only to about its square root where it is 0 (rank 6 = C).
    np.testing.assert_allclose(subspace(test).numpy() ** 2, distance**2, rtol=1e-4, atol=1e-3)
    np.testing.assert_allclose(subspace.mean.numpy(), features.double().mean(0).numpy(), atol=1e-5)
    assert bool(subspace.fitted)


def test_full_rank_projection_is_the_identity_and_statistics_are_freed():
    features = low_rank_features()
    subspace = PositionalSubspace(channels=6, feature_size=(2, 3), rank=6)
    subspace.update(features)
    subspace.fit()
    torch.testing.assert_close(subspace.project(features), features, atol=1e-4, rtol=0)
    assert float(subspace(features).square().max()) < 1e-3  # squared: see the test above
    with pytest.raises(RuntimeError, match="no statistics"):
        subspace.statistics()


@pytest.mark.parametrize("rank", [-1, 7])
def test_rank_outside_the_channels_is_rejected(rank):
    with pytest.raises(ValueError, match=r"positional_rank must lie in \[1, 6\]"):
        PositionalSubspace(channels=6, feature_size=(2, 3), rank=rank)


def test_fit_without_features_says_what_is_missing():
    with pytest.raises(RuntimeError, match="call update\\(\\) with normal training features"):
        PositionalSubspace(channels=6, feature_size=(2, 3), rank=2).fit()


def test_grad_model_adds_the_standardised_positional_score_to_the_image_score_only():
    torch.manual_seed(0)
    plain = GradModel(**tiny_model_args(), positional_rank=0)
    torch.manual_seed(0)
    model = GradModel(**tiny_model_args(), positional_rank=3)
    images = torch.rand(4, 3, 64, 64)
    features = model.extract_features(images)
    model.positional_subspace.update(features + torch.randn_like(features))
    model.positional_subspace.fit()
    model.score_fusion.mean.copy_(torch.tensor([1.0, 2.0]))
    model.score_fusion.std.copy_(torch.tensor([0.5, 4.0]))
    plain_output, output = plain.eval()(images), model.eval()(images)
    torch.testing.assert_close(output.anomaly_map, plain_output.anomaly_map)  # the map stays the reconstruction's
    # Oracle: the positional distance at feature level (stride 8), through the 3x3 mean filter (21 // 8, odd) and
    # the max of the 4x4 mean (32 // 8), by hand.
    residual = features - model.positional_subspace.project(features)
    smoothed = F.avg_pool2d(residual.norm(dim=1, keepdim=True), 3, stride=1, padding=1, count_include_pad=False)
    positional = F.avg_pool2d(smoothed, 4, stride=1).flatten(1).amax(1)
    expected = 1.0 + 0.5 * ((plain_output.pred_score - 1.0) / 0.5 + (positional - 2.0) / 4.0)
    torch.testing.assert_close(output.pred_score, expected, rtol=1e-4, atol=1e-4)
    assert not any(key.startswith(("positional_subspace", "score_fusion")) for key in plain.state_dict())
    assert {"positional_subspace.basis", "score_fusion.mean", "score_fusion.std"} <= set(model.state_dict())
