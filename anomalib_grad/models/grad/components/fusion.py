"""Fusion branches that turn grid samples into reconstructed features, and their fusion.

Each grid set has a branch: a stack of residual 3×3 blocks (ResNet
``BasicBlock``) followed by a 1×1 convolution back to C channels. The paper's
branch works at 2C channels with 9 blocks; ``width`` narrows it (a 1×1
projection first), which is what makes a CPU preset affordable.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.fusion import FusionBranch, GridFusion
    >>> branch = FusionBranch(channels=8, depth=2, width=16)
    >>> branch(torch.rand(2, 16, 4, 4)).shape
    torch.Size([2, 8, 4, 4])
    >>> GridFusion("learned")(torch.ones(1), torch.ones(1))
    tensor([0.8000], grad_fn=<AddBackward0>)
"""

from typing import Literal

import torch
from torch import nn
from torchvision.models.resnet import BasicBlock


class FusionBranch(nn.Module):
    """Residual branch mapping ``[global, local]`` grid samples (2C) to C channels.

    Args:
        channels: Feature channels C; the input has 2C channels.
        depth: Number of residual blocks. Defaults to ``9``.
        width: Channels inside the blocks; ``None`` keeps 2C (the paper).
        normalize_input: Instance-normalise the input (per sample and channel),
            as the abnormal branch does. Defaults to ``False``.
    """

    def __init__(self, channels: int, depth: int = 9, width: int | None = None, normalize_input: bool = False) -> None:
        super().__init__()
        if depth < 0:
            msg = f"Fusion branch depth must be >= 0, got {depth}."
            raise ValueError(msg)
        width = width or 2 * channels
        if width <= 0:
            msg = f"Fusion branch width must be positive, got {width}."
            raise ValueError(msg)
        layers: list[nn.Module] = []
        if normalize_input:
            layers.append(nn.InstanceNorm2d(2 * channels))
        if width != 2 * channels:
            layers.append(nn.Conv2d(2 * channels, width, kernel_size=1))
        layers.extend(BasicBlock(width, width) for _ in range(depth))
        layers.append(nn.Conv2d(width, channels, kernel_size=1))
        self.layers = nn.Sequential(*layers)

    def forward(self, grid_samples: torch.Tensor) -> torch.Tensor:
        """Reconstruct features from grid samples.

        Args:
            grid_samples: ``(B, 2C, H, W)``.

        Returns:
            Reconstructed features ``(B, C, H, W)``.
        """
        return self.layers(grid_samples)


class GridFusion(nn.Module):
    """Fuse the normal and abnormal reconstructions.

    ``"learned"`` (official code): ``x̂_n + w·x̂_a`` with a learnable scalar ``w``
    starting at ``initial_weight``. ``"convex"`` (the paper's formula):
    ``λ·x̂_n + (1 − λ)·x̂_a`` with a fixed ``λ = blend``.

    Args:
        mode: ``"learned"`` or ``"convex"``. Defaults to ``"learned"``.
        initial_weight: Start value of ``w``. Defaults to ``-0.2``.
        blend: ``λ`` of the convex blend, in ``[0, 1]``. Defaults to ``0.9``.
    """

    def __init__(
        self,
        mode: Literal["learned", "convex"] = "learned",
        initial_weight: float = -0.2,
        blend: float = 0.9,
    ) -> None:
        super().__init__()
        if mode not in {"learned", "convex"}:
            msg = f"Fusion mode must be 'learned' or 'convex', got '{mode}'."
            raise ValueError(msg)
        if not 0.0 <= blend <= 1.0:
            msg = f"Convex fusion blend must lie in [0, 1], got {blend}."
            raise ValueError(msg)
        self.mode = mode
        self.blend = blend
        self.weight = nn.Parameter(torch.tensor(initial_weight)) if mode == "learned" else None

    def terms(self, normal: torch.Tensor, abnormal: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The normal and abnormal terms whose sum is the fused reconstruction.

        Args:
            normal: Normal-branch output x̂_n.
            abnormal: Abnormal-branch output x̂_a.

        Returns:
            ``(x̂_n, w·x̂_a)`` for the learned weight, ``(λ·x̂_n, (1 − λ)·x̂_a)`` for the convex blend.
        """
        if self.weight is None:
            return self.blend * normal, (1.0 - self.blend) * abnormal
        return normal, self.weight * abnormal

    def forward(self, normal: torch.Tensor, abnormal: torch.Tensor) -> torch.Tensor:
        """Fuse the two reconstructions.

        Args:
            normal: Normal-branch output x̂_n.
            abnormal: Abnormal-branch output x̂_a.

        Returns:
            The fused reconstruction x̂_pre.
        """
        normal_term, abnormal_term = self.terms(normal, abnormal)
        return normal_term + abnormal_term
