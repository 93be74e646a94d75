"""Sum of image scores, each standardised by its spread on normal training images.

Grad scores an image twice: the maximum of its pooled reconstruction map (GRAD's, position-free)
and the same of its positional-subspace distance map (what is normal *here*). The two live on
different scales, so :class:`StandardisedScoreSum` turns each into a z-score with the mean and
standard deviation it has on normal training images and adds them: an image counts as anomalous
when it is unusual for either model, as measured on data neither score saw labels of. The sum is
given in the first score's units (its training mean plus the summed z-scores times its standard
deviation): the ranking is the sum's, and an image whose second score is average keeps its first
score exactly. That matters to anomalib, which thresholds the anomaly map with the image threshold
when it has no masks to fit a pixel threshold on: the first score must be the map's.

The statistics are accumulated over any number of batches (:meth:`update`, float64 sums that a
caller can add up across processes), then :meth:`fit` fixes them in buffers that travel with the
checkpoint and the exported graph.

Example:
    >>> import torch
    >>> fusion = StandardisedScoreSum(scores=2)
    >>> fusion.update(torch.tensor([[1.0, 10.0], [3.0, 30.0]]))  # means 2 and 20, std 1.414 and 14.14
    >>> fusion.fit()
    >>> fusion(torch.tensor([[2.0, 20.0], [4.0, 20.0], [2.0, 40.0]])).round(decimals=3)
    tensor([2., 4., 4.])
"""

import torch
from torch import nn


class StandardisedScoreSum(nn.Module):
    """Sum of z-scores of several image scores, standardised on normal training images, in the first's units.

    Args:
        scores: Number of image scores combined.
    """

    def __init__(self, scores: int = 2) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(scores))
        self.register_buffer("std", torch.ones(scores))
        self.register_buffer("fitted", torch.tensor(False))
        self.reset_statistics()

    def reset_statistics(self) -> None:
        """Forget the accumulated statistics (the fitted ones stay until the next :meth:`fit`)."""
        self.statistics = torch.zeros(3, self.mean.numel(), dtype=torch.float64)

    @torch.no_grad()
    def update(self, scores: torch.Tensor) -> None:
        """Accumulate count, sum and sum of squares of image scores ``(N, scores)`` of normal images."""
        rows = scores.detach().to(device="cpu", dtype=torch.float64)
        self.statistics += torch.stack([torch.ones_like(rows).sum(0), rows.sum(0), rows.square().sum(0)])

    @torch.no_grad()
    def fit(self) -> None:
        """Fix mean and (unbiased) standard deviation from the statistics, then forget them.

        Raises:
            RuntimeError: With fewer than two images accumulated (no spread to standardise by).
        """
        count, total, squares = self.statistics
        if float(count.min()) < 2:
            msg = f"StandardisedScoreSum needs the scores of at least 2 normal training images, got {int(count.min())}."
            raise RuntimeError(msg)
        mean = total / count
        variance = ((squares - count * mean.square()) / (count - 1)).clamp(min=0)
        floor = 1e-6 * mean.abs().clamp(min=1e-6)  # a constant score must not divide by zero
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(variance.sqrt().maximum(floor).to(self.std.dtype))
        self.fitted.fill_(True)
        self.reset_statistics()

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        """Combine image scores ``(B, scores)`` into one score ``(B,)``: ``μ₁ + σ₁ · Σᵢ (sᵢ − μᵢ) / σᵢ``."""
        return self.mean[0] + self.std[0] * ((scores - self.mean) / self.std).sum(dim=1)
