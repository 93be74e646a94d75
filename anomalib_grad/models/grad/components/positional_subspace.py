"""Per-position principal subspace of normal features: what is normal *here*.

On aligned images (parts, tiles, boards) what counts as normal depends on where it is: a border
row is not the image centre. GRAD's grids are read at coordinates computed from the feature
alone, so nothing in its reconstruction knows the position. :class:`PositionalSubspace` adds
that knowledge the way PaDiM does, but with a model size independent of the training set: at
each feature position ``p`` it keeps the mean ``μ_p`` of the normal training features and the
``rank`` leading principal directions ``U_p`` of their scatter, and scores a feature by its
distance to that affine subspace, ``‖(I − U_p U_pᵀ)(φ_p − μ_p)‖``: a second anomaly map, used
by Grad for the image score (see :class:`~anomalib_grad.models.grad.components.score_fusion.StandardisedScoreSum`).

The statistics are accumulated in float64 over any number of batches (:meth:`update`, summed
across processes by the caller under DDP), then :meth:`fit` solves one symmetric eigenproblem
per position and frees them.

Example:
    >>> import torch
    >>> subspace = PositionalSubspace(channels=4, feature_size=(2, 2), rank=1)
    >>> axis_0 = torch.tensor([1.0, 0.0, 0.0, 0.0]).view(1, 4, 1, 1)
    >>> subspace.update(torch.randn(16, 1, 2, 2) * axis_0)  # normal features vary along axis 0 only
    >>> subspace.fit()
    >>> feature = torch.tensor([2.0, 3.0, 0.0, 0.0]).view(1, 4, 1, 1).expand(1, 4, 2, 2)
    >>> subspace(feature)[0, 0].round(decimals=3)  # the off-subspace part: 3 along axis 1
    tensor([[3., 3.],
            [3., 3.]])
"""

import torch
from torch import nn


class PositionalSubspace(nn.Module):
    """Distance of features to each position's principal subspace of normal features.

    Args:
        channels: Feature channels C.
        feature_size: Feature map size ``(h, w)``.
        rank: Principal directions kept per position, in ``[1, C]``.

    Raises:
        ValueError: If ``rank`` is outside ``[1, C]``.
    """

    def __init__(self, channels: int, feature_size: tuple[int, int], rank: int) -> None:
        super().__init__()
        if not 1 <= rank <= channels:
            msg = f"positional_rank must lie in [1, {channels}] (the feature channels) or be 0 (off), got {rank}."
            raise ValueError(msg)
        self.channels, self.feature_size, self.rank = channels, tuple(feature_size), rank
        positions = feature_size[0] * feature_size[1]
        self.register_buffer("mean", torch.zeros(channels, *feature_size))
        self.register_buffer("basis", torch.zeros(positions, channels, rank))
        self.register_buffer("fitted", torch.tensor(False))
        self.count = 0
        self._sum: torch.Tensor | None = None
        self._products: torch.Tensor | None = None

    def reset_statistics(self) -> None:
        """Forget the accumulated statistics (the fitted subspace stays until the next :meth:`fit`)."""
        self.count, self._sum, self._products = 0, None, None

    @torch.no_grad()
    def update(self, features: torch.Tensor) -> None:
        """Accumulate the float64 sums and outer products of a batch of normal features ``(N, C, h, w)``."""
        rows = features.detach().to(torch.float64).flatten(2).permute(2, 0, 1)  # (positions, N, C)
        if self._sum is None or self._products is None:
            self._sum = rows.new_zeros(rows.shape[0], rows.shape[2])
            self._products = rows.new_zeros(rows.shape[0], rows.shape[2], rows.shape[2])
        self.count += rows.shape[1]
        self._sum += rows.sum(dim=1)
        self._products += rows.transpose(1, 2) @ rows

    def statistics(self) -> tuple[int, torch.Tensor, torch.Tensor]:
        """The accumulated ``(count, sums (P, C), products (P, C, C))``, e.g. to sum them across processes.

        Raises:
            RuntimeError: If :meth:`update` was never called (a count of 0 after empty batches is returned).
        """
        if self._sum is None or self._products is None:
            msg = "PositionalSubspace has no statistics: call update() with normal training features before fit()."
            raise RuntimeError(msg)
        return self.count, self._sum, self._products

    def set_statistics(self, count: int, sums: torch.Tensor, products: torch.Tensor) -> None:
        """Replace the accumulated statistics (e.g. by their sum over processes)."""
        self.count, self._sum, self._products = count, sums, products

    @torch.no_grad()
    def fit(self) -> None:
        """Fit mean and leading directions per position from the statistics, then free them.

        Raises:
            RuntimeError: If no features were accumulated.
        """
        count, sums, products = self.statistics()
        if count == 0:
            msg = "PositionalSubspace has no statistics: call update() with normal training features before fit()."
            raise RuntimeError(msg)
        mean = sums / count
        scatter = products / count - mean.unsqueeze(2) * mean.unsqueeze(1)
        _, vectors = torch.linalg.eigh(scatter)  # ascending eigenvalues
        self.basis.copy_(vectors[:, :, -self.rank :].flip(-1).to(self.basis.dtype))
        self.mean.copy_(mean.T.reshape(self.channels, *self.feature_size).to(self.mean.dtype))
        self.fitted.fill_(True)
        self.reset_statistics()

    def project(self, features: torch.Tensor) -> torch.Tensor:
        """Project features ``(B, C, h, w)`` onto each position's subspace.

        Returns:
            ``μ + U Uᵀ (φ − μ)`` per position, ``(B, C, h, w)``.
        """
        centred = (features - self.mean).flatten(2).permute(2, 0, 1)  # (positions, B, C)
        projected = (centred @ self.basis) @ self.basis.transpose(1, 2)
        return projected.permute(1, 2, 0).reshape(features.shape) + self.mean

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        """Distance of features ``(B, C, h, w)`` to each position's subspace.

        Computed as ``sqrt(‖φ − μ‖² − ‖Uᵀ(φ − μ)‖²)`` (``U`` has orthonormal columns): one matrix
        product per position instead of the two of :meth:`project`, which halves what the exported
        graph reads of the ``P·C·rank`` basis.

        Returns:
            ``‖φ − μ − U Uᵀ (φ − μ)‖₂`` over channels, ``(B, 1, h, w)``.
        """
        centred = (features - self.mean).flatten(2).permute(2, 0, 1)  # (positions, B, C)
        squared = centred.square().sum(dim=2) - (centred @ self.basis).square().sum(dim=2)
        distance = squared.clamp_min(0).sqrt()  # (positions, B)
        return distance.T.reshape(features.shape[0], 1, *features.shape[2:])
