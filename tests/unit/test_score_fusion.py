"""StandardisedScoreSum against NumPy: z-scores with the training mean and unbiased standard deviation, summed."""

import numpy as np
import pytest
import torch

from anomalib_grad.models.grad.components.score_fusion import StandardisedScoreSum


def test_statistics_over_uneven_batches_equal_numpy_and_standardise_each_score():
    generator = torch.Generator().manual_seed(0)
    training = torch.randn(37, 2, generator=generator) * torch.tensor([0.3, 40.0]) + torch.tensor([5.0, -100.0])
    fusion = StandardisedScoreSum(scores=2)
    for part in training.split(10):
        fusion.update(part)
    fusion.fit()
    array = training.double().numpy()
    np.testing.assert_allclose(fusion.mean.numpy(), array.mean(0), rtol=1e-5)
    np.testing.assert_allclose(fusion.std.numpy(), array.std(0, ddof=1), rtol=1e-5)
    test = torch.tensor([[5.6, -100.0], [5.0, -20.0]])
    z_sum = ((test.double().numpy() - array.mean(0)) / array.std(0, ddof=1)).sum(1)
    expected = array[:, 0].mean() + array[:, 0].std(ddof=1) * z_sum  # in the first score's units
    np.testing.assert_allclose(fusion(test).numpy(), expected, rtol=1e-4)
    assert bool(fusion.fitted)


def test_a_constant_score_does_not_divide_by_zero():
    fusion = StandardisedScoreSum(scores=2)
    fusion.update(torch.tensor([[3.0, 1.0], [3.0, 2.0], [3.0, 3.0]]))
    fusion.fit()
    assert torch.isfinite(fusion(torch.tensor([[4.0, 2.0]]))).all()


def test_fit_needs_two_training_images():
    fusion = StandardisedScoreSum(scores=2)
    fusion.update(torch.tensor([[3.0, 1.0]]))
    with pytest.raises(RuntimeError, match="at least 2 normal training images, got 1"):
        fusion.fit()
