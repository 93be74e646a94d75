"""Coordinate networks that map features to positions in the grids.

Both grid sets are read at the same coordinates: one global coordinate per image
(which whole-map node to blend) and one local coordinate per feature position.
All coordinates lie in ``(-1, 1)``, the range of :func:`torch.nn.functional.grid_sample`.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.coordinate_mapper import CoordinateMapper
    >>> mapper = CoordinateMapper(channels=152)
    >>> global_coordinates, local_coordinates = mapper(torch.rand(2, 152, 32, 32))
    >>> global_coordinates.shape, local_coordinates.shape
    (torch.Size([2, 2]), torch.Size([2, 2, 32, 32]))
"""

import torch
from torch import nn


class CoordinateMapper(nn.Module):
    """Global and local coordinate networks shared by the normal and abnormal grids.

    The global branch pools φ and applies ``Linear(C, C) → tanh → Linear(C, 2) → tanh``;
    the local branch applies the same per position with 1×1 convolutions. During
    training, with probability ``noise_probability`` per batch, Gaussian noise of
    standard deviation ``noise_std`` is added to the local coordinates.

    Args:
        channels: Feature channels C.
        noise_std: Standard deviation of the training-time coordinate noise.
            Defaults to ``0.05``.
        noise_probability: Probability per batch of adding that noise.
            Defaults to ``0.5``.
    """

    def __init__(self, channels: int, noise_std: float = 0.05, noise_probability: float = 0.5) -> None:
        super().__init__()
        self.global_mapper = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, channels),
            nn.Tanh(),
            nn.Linear(channels, 2),
            nn.Tanh(),
        )
        self.local_mapper = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.Tanh(),
            nn.Conv2d(channels, 2, kernel_size=1),
            nn.Tanh(),
        )
        self.noise_std = noise_std
        self.noise_probability = noise_probability

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Map features to grid coordinates.

        Args:
            features: Features φ ``(B, C, H, W)``.

        Returns:
            Global coordinates ``(B, 2)`` and local coordinates ``(B, 2, H, W)``.
        """
        global_coordinates = self.global_mapper(features)
        local_coordinates = self.local_mapper(features)
        if self.training and torch.rand(()).item() < self.noise_probability:
            local_coordinates = local_coordinates + self.noise_std * torch.randn_like(local_coordinates)
        return global_coordinates, local_coordinates
