"""Contract of Feature Block Paste."""

import math

import pytest
import torch

from anomalib_grad import FeatureBlockPaste


def test_mask_shape_and_binary_values():
    features, mask = FeatureBlockPaste(seed=0)(torch.zeros(4, 3, 32, 32))
    assert features.shape == (4, 3, 32, 32)
    assert mask.shape == (4, 1, 32, 32)
    assert set(mask.unique().tolist()) == {0.0, 1.0}


def test_features_change_exactly_where_the_blurred_block_lands():
    paste = FeatureBlockPaste(block_size=3, intensity=10.0, seed=1)
    original = torch.randn(2, 5, 24, 24)
    augmented, mask = paste(original)
    changed = (augmented - original).abs() > 1e-6
    blurred = paste.blur(mask * 10.0) > 0
    # every channel changes, and only where the blurred block is non-zero
    assert torch.equal(changed, blurred.expand_as(changed))
    # the block lies inside the blurred region, and the blur widens it
    assert bool((blurred[mask > 0]).all())
    assert blurred.sum() > mask.sum()


def test_block_stays_inside_bounds_and_within_its_size():
    paste = FeatureBlockPaste(block_size=(2, 4), seed=2)
    for _ in range(50):
        _, mask = paste(torch.zeros(1, 1, 12, 16))
        rows = mask[0, 0].any(dim=1).nonzero()
        cols = mask[0, 0].any(dim=0).nonzero()
        assert rows.max() - rows.min() + 1 <= 9
        assert cols.max() - cols.min() + 1 <= 9


def test_intensity_scales_the_paste():
    low = FeatureBlockPaste(block_size=3, intensity=4.0, seed=3)
    high = FeatureBlockPaste(block_size=3, intensity=12.0, seed=3)
    zeros = torch.zeros(1, 1, 16, 16)
    low_paste, low_mask = low(zeros)
    high_paste, high_mask = high(zeros)
    assert torch.equal(low_mask, high_mask)
    assert torch.allclose(high_paste, 3 * low_paste)
    assert high_paste.max() > 0


def test_same_seed_same_block_and_different_seed_different_block():
    first = [FeatureBlockPaste(seed=7)(torch.zeros(1, 1, 32, 32))[1] for _ in range(2)]
    assert torch.equal(first[0], first[1])
    stream = FeatureBlockPaste(seed=7)
    masks = [stream(torch.zeros(1, 1, 32, 32))[1] for _ in range(5)]
    assert any(not torch.equal(masks[0], other) for other in masks[1:])


def test_reset_restarts_the_stream():
    paste = FeatureBlockPaste(seed=5)
    first = paste(torch.zeros(1, 1, 32, 32))[1]
    paste.reset()
    assert torch.equal(first, paste(torch.zeros(1, 1, 32, 32))[1])


def test_unseeded_paste_follows_torch_global_seed():
    torch.manual_seed(11)
    first = FeatureBlockPaste()(torch.zeros(1, 1, 32, 32))[1]
    torch.manual_seed(11)
    assert torch.equal(first, FeatureBlockPaste()(torch.zeros(1, 1, 32, 32))[1])


def test_per_batch_shares_one_block_and_per_image_draws_several():
    shared = FeatureBlockPaste(seed=0)(torch.zeros(6, 1, 32, 32))[1]
    assert all(torch.equal(shared[0], mask) for mask in shared)
    own = FeatureBlockPaste(seed=0, per_image=True)(torch.zeros(6, 1, 32, 32))[1]
    assert any(not torch.equal(own[0], mask) for mask in own[1:])


def test_fixed_block_and_position():
    paste = FeatureBlockPaste(block_size=0, position=(5, 9), seed=0)
    _, mask = paste(torch.zeros(1, 1, 16, 16))
    assert mask.sum() == 1
    assert mask[0, 0, 9, 5] == 1


def test_walk_steps_and_four_connectivity():
    # with B = 2 and one 4-neighbour step the walk visits exactly two adjacent cells
    paste = FeatureBlockPaste(block_size=2, walk_steps=1, connectivity=4, seed=0)
    for _ in range(10):
        _, mask = paste(torch.zeros(1, 1, 16, 16))
        cells = mask[0, 0].nonzero()
        assert len(cells) == 2
        assert (cells[0] - cells[1]).abs().sum() == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"block_size": (5, 2)}, "reversed"),
        ({"block_size": -1}, ">= 0"),
        ({"intensity": (8.0, float("nan"))}, "finite"),
        ({"walk_steps": (3, 1)}, "reversed"),
        ({"connectivity": 6}, "connectivity"),
        ({"blur_sigma": 0.0}, "blur_sigma"),
        ({"position": (1, 2, 3)}, "position"),
    ],
)
def test_invalid_controls_are_rejected(kwargs, message):
    with pytest.raises(ValueError, match=message):
        FeatureBlockPaste(**kwargs)


def test_block_larger_than_features_is_rejected():
    with pytest.raises(ValueError, match="larger than the 8×8 feature map"):
        FeatureBlockPaste(block_size=(0, 9))(torch.zeros(1, 1, 8, 8))


def test_fixed_position_that_lets_the_block_leave_is_rejected():
    with pytest.raises(ValueError, match="position x range"):
        FeatureBlockPaste(block_size=3, position=(1, 8)).check_fits((16, 16))


def test_blur_is_the_3x3_gaussian_of_the_paper():
    """One pasted cell spreads as a normalised 3×3 Gaussian with σ = 0.8, computed here by hand."""
    paste = FeatureBlockPaste(block_size=0, intensity=10.0, position=(5, 5), seed=0)
    augmented, _ = paste(torch.zeros(1, 1, 11, 11))
    side = math.exp(-1 / (2 * 0.8**2))  # weight of a neighbour, the centre's being 1
    total = (1 + 2 * side) ** 2
    window = augmented[0, 0, 4:7, 4:7]
    expected = torch.tensor([[side * side, side, side * side], [side, 1.0, side], [side * side, side, side * side]])
    assert torch.allclose(window, 10.0 * expected / total, atol=1e-6)
    assert augmented.sum() == pytest.approx(10.0, abs=1e-5)  # the blur keeps the pasted mass
