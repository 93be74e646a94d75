"""Feature Block Paste (FBP): synthetic anomalies in feature space.

FBP draws a random-walk shape inside a ``(2B+1)×(2B+1)`` block, writes the
intensity ``I`` at the visited cells around a centre ``P`` of a zero map,
blurs that map with a small Gaussian and adds it to every channel of the
feature map. The unblurred cells are the anomaly mask. Every control is a
fixed value or an inclusive range ``(low, high)``, and all randomness comes
from the module's own seedable generator.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
    >>> paste = FeatureBlockPaste(block_size=2, intensity=10.0, seed=0)
    >>> features, mask = paste(torch.zeros(2, 4, 16, 16))
    >>> mask.shape, bool(mask.any()), bool(features.abs().sum() > 0)
    (torch.Size([2, 1, 16, 16]), True, True)
"""

import math
from typing import Literal

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812

IntRange = int | tuple[int, int]
FloatRange = float | tuple[float, float]

_MOVES = {
    8: [(dx, dy) for dx in (-1, 0, 1) for dy in (-1, 0, 1)],
    4: [(1, 0), (-1, 0), (0, 1), (0, -1)],
}


def _as_range(value: IntRange | FloatRange, name: str, minimum: float) -> tuple[float, float]:
    """Turn a fixed value or a ``(low, high)`` pair into a checked range.

    Args:
        value: A number or a pair of numbers.
        name: Parameter name for the error message.
        minimum: Smallest allowed value.

    Returns:
        ``(low, high)``.

    Raises:
        ValueError: If the range is malformed, reversed, non-finite or below ``minimum``.
    """
    low, high = (value, value) if isinstance(value, int | float) else tuple(value)
    if not (math.isfinite(low) and math.isfinite(high)):
        msg = f"FBP {name} must be finite, got {value}."
        raise ValueError(msg)
    if low > high:
        msg = f"FBP {name} range {value} is reversed: low must be <= high."
        raise ValueError(msg)
    if low < minimum:
        msg = f"FBP {name} must be >= {minimum}, got {value}."
        raise ValueError(msg)
    return low, high


class GaussianBlur3x3(nn.Module):
    """3×3 Gaussian blur of one-channel maps, borders reflected (the kernel is not saved in checkpoints).

    Args:
        sigma: Standard deviation of the Gaussian, in cells.
    """

    def __init__(self, sigma: float) -> None:
        super().__init__()
        weights = torch.exp(-torch.tensor([-1.0, 0.0, 1.0]).pow(2) / (2 * sigma**2))
        kernel = torch.outer(weights, weights)
        self.register_buffer("kernel", (kernel / kernel.sum()).view(1, 1, 3, 3), persistent=False)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        """Blur ``(B, 1, H, W)`` maps."""
        return F.conv2d(F.pad(maps, (1, 1, 1, 1), mode="reflect"), self.kernel.to(maps))


class FeatureBlockPaste(nn.Module):
    """Paste a blurred random-walk block into feature maps.

    Args:
        block_size: Block half-size B (the block is ``(2B+1)²``), fixed or
            range. Defaults to ``(0, 9)`` (official code).
        intensity: Value I written at the walked cells, fixed or range.
            Defaults to ``(8.0, 16.0)``.
        position: Block centre ``(x, y)`` in feature cells; each coordinate fixed
            or a range. ``None`` draws it uniformly where the block fits.
        walk_steps: Number of walk steps N, fixed or range; ``None`` draws it from
            ``[B, 2B]`` (the paper). The official code uses 100.
        connectivity: ``8`` moves Δx, Δy ∈ {−1, 0, 1} (the paper); ``4`` moves
            to the four neighbours (official code).
        per_image: Draw one block per image instead of one per batch.
        blur_sigma: σ of the 3×3 Gaussian blur. Defaults to ``0.8``.
        seed: Seed of the generator; ``None`` seeds it from torch's global RNG
            on first use (so :func:`lightning.seed_everything` fixes it).

    Raises:
        ValueError: For invalid ranges, connectivity or blur.
    """

    def __init__(
        self,
        block_size: IntRange = (0, 9),
        intensity: FloatRange = (8.0, 16.0),
        position: tuple[IntRange, IntRange] | None = None,
        walk_steps: IntRange | None = None,
        connectivity: Literal[4, 8] = 8,
        per_image: bool = False,
        blur_sigma: float = 0.8,
        seed: int | None = None,
    ) -> None:
        super().__init__()
        self.block_size = _as_range(block_size, "block_size", 0)
        self.intensity = _as_range(intensity, "intensity", -math.inf)
        self.walk_steps = None if walk_steps is None else _as_range(walk_steps, "walk_steps", 0)
        if position is not None and len(position) != 2:
            msg = f"FBP position must be (x, y), got {position}."
            raise ValueError(msg)
        self.position = None if position is None else tuple(_as_range(p, "position", 0) for p in position)
        if connectivity not in _MOVES:
            msg = f"FBP connectivity must be 4 or 8, got {connectivity}."
            raise ValueError(msg)
        if not blur_sigma > 0:
            msg = f"FBP blur_sigma must be positive, got {blur_sigma}."
            raise ValueError(msg)
        self.moves = torch.tensor(_MOVES[connectivity])
        self.per_image = per_image
        self.blur = GaussianBlur3x3(blur_sigma)
        self.seed = seed
        self.generator: torch.Generator | None = None

    def reset(self, seed: int | None = None) -> None:
        """Restart the random stream.

        Args:
            seed: New seed; ``None`` reuses the constructor's seed (or draws one
                from torch's global RNG if that was ``None`` too).
        """
        seed = self.seed if seed is None else seed
        if seed is None:
            seed = int(torch.randint(0, 2**62, (1,)).item())
        self.generator = torch.Generator().manual_seed(seed)

    def check_fits(self, feature_size: tuple[int, int]) -> None:
        """Check that every block this FBP can draw fits a feature map.

        Args:
            feature_size: Feature map size ``(H, W)``.

        Raises:
            ValueError: If the largest block or a fixed position does not fit.
        """
        height, width = feature_size
        largest = 2 * int(self.block_size[1]) + 1
        if largest > min(height, width):
            msg = (
                f"FBP block_size up to {int(self.block_size[1])} gives {largest}×{largest} blocks, larger than the "
                f"{height}×{width} feature map: lower block_size or raise the input size."
            )
            raise ValueError(msg)
        if self.position is not None:
            half = int(self.block_size[1])
            for (low, high), extent, axis in zip(self.position, (width, height), "xy", strict=True):
                if low < half or high > extent - 1 - half:
                    msg = (
                        f"FBP position {axis} range ({int(low)}, {int(high)}) lets a block of half-size {half} leave "
                        f"the {height}×{width} feature map; keep it within [{half}, {extent - 1 - half}]."
                    )
                    raise ValueError(msg)

    def _integer(self, value_range: tuple[float, float]) -> int:
        low, high = int(value_range[0]), int(value_range[1])
        return int(torch.randint(low, high + 1, (1,), generator=self.generator).item())

    def _uniform(self, value_range: tuple[float, float]) -> float:
        low, high = value_range
        return low + (high - low) * float(torch.rand(1, generator=self.generator).item())

    def random_walk_shape(self, block_size: int) -> torch.Tensor:
        """Draw a block shape by a random walk from the block's centre.

        Args:
            block_size: Half-size B; the shape is ``(2B+1, 2B+1)``.

        Returns:
            A boolean ``(2B+1, 2B+1)`` shape with the visited cells set.
        """
        side = 2 * block_size + 1
        shape = torch.zeros(side, side, dtype=torch.bool)
        steps = self._integer(self.walk_steps or (block_size, 2 * block_size))
        choices = torch.randint(0, len(self.moves), (steps,), generator=self.generator)
        x = y = block_size
        shape[y, x] = True
        for dx, dy in self.moves[choices].tolist():
            x = min(max(x + dx, 0), side - 1)
            y = min(max(y + dy, 0), side - 1)
            shape[y, x] = True
        return shape

    def draw_block(self, feature_size: tuple[int, int]) -> tuple[torch.Tensor, float]:
        """Draw one block: where it lies and how strong it is.

        Args:
            feature_size: Feature map size ``(H, W)``.

        Returns:
            A boolean ``(H, W)`` map of the walked cells and the intensity.
        """
        height, width = feature_size
        block_size = self._integer(self.block_size)
        shape = self.random_walk_shape(block_size)
        fitting = ((block_size, width - 1 - block_size), (block_size, height - 1 - block_size))
        x_range, y_range = self.position or fitting
        x_centre, y_centre = self._integer(x_range), self._integer(y_range)
        cells = torch.zeros(height, width, dtype=torch.bool)
        top, left = y_centre - block_size, x_centre - block_size
        cells[top : top + shape.shape[0], left : left + shape.shape[1]] = shape
        return cells, self._uniform(self.intensity)

    def draw_masks(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Draw the block masks for a batch: one block per batch, or one per image.

        Args:
            features: Features ``(B, C, H, W)`` (only their shape, device and dtype are used).

        Returns:
            The binary mask ``(B, 1, H, W)`` and the intensities, ``(1, 1, 1, 1)`` or ``(B, 1, 1, 1)``.
        """
        feature_size = (features.shape[-2], features.shape[-1])
        self.check_fits(feature_size)
        if self.generator is None:
            self.reset()
        blocks = [self.draw_block(feature_size) for _ in range(features.shape[0] if self.per_image else 1)]
        cells = torch.stack([block_cells for block_cells, _ in blocks]).unsqueeze(1)
        intensities = torch.tensor([intensity for _, intensity in blocks]).view(-1, 1, 1, 1)
        mask = cells.to(device=features.device, dtype=features.dtype).expand(features.shape[0], -1, -1, -1)
        return mask, intensities.to(device=features.device, dtype=features.dtype)

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Paste synthetic anomalies.

        Args:
            features: Features ``(B, C, H, W)``.

        Returns:
            Augmented features ``(B, C, H, W)`` and the binary mask ``(B, 1, H, W)``.
        """
        mask, intensities = self.draw_masks(features)
        return features + self.blur(mask * intensities), mask
