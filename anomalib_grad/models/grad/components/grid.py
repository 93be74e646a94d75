"""A grid set: a local grid of feature vectors and a global grid of feature maps.

The local grid ``(1, C, Rl, Rl)`` is read once per feature position; every node
of the global grid ``(1, C·H·W, Rg, Rg)`` stores a whole ``C×H×W`` map and is
read once per image. Reads are bilinear with zero padding, exactly as
``grid_sample(..., align_corners=False)``, so the grid is a continuous memory of
features. They are written as a product of tent weights and a matrix product:
for one coordinate per image that is far cheaper than ``grid_sample`` on the
batch-expanded global grid, in both directions, and it exports as a MatMul.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.grid import FeatureGrid
    >>> grid = FeatureGrid(channels=8, feature_size=(4, 4), local_grid_size=8, global_grid_size=4)
    >>> sampled = grid(torch.zeros(2, 2), torch.zeros(2, 2, 4, 4))
    >>> sampled.shape
    torch.Size([2, 16, 4, 4])
"""

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


def bilinear_weights(coordinates: torch.Tensor, grid_size: int) -> torch.Tensor:
    """Bilinear weights of every node of a square grid for normalised coordinates.

    Matches ``grid_sample(mode="bilinear", padding_mode="zeros",
    align_corners=False)``: node ``i`` sits at ``(2i + 1) / R − 1`` and gets the
    tent weight ``max(0, 1 − |u − i|)`` per axis, ``u`` being the coordinate in
    node units; nodes outside the grid simply do not exist (zero padding).

    Args:
        coordinates: ``(..., 2)`` coordinates ``(x, y)`` in ``[-1, 1]``.
        grid_size: Grid side R.

    Returns:
        Weights ``(..., R·R)``, row-major over ``(y, x)``.

    Example:
        >>> bilinear_weights(torch.tensor([[0.0, 0.0]]), 2)
        tensor([[0.2500, 0.2500, 0.2500, 0.2500]])
    """
    nodes = torch.arange(grid_size, dtype=coordinates.dtype, device=coordinates.device)
    position = ((coordinates + 1.0) * grid_size - 1.0) / 2.0
    tents = F.relu(1.0 - (position.unsqueeze(-1) - nodes).abs())
    x_weights, y_weights = tents[..., 0, :], tents[..., 1, :]
    return (y_weights.unsqueeze(-1) * x_weights.unsqueeze(-2)).flatten(start_dim=-2)


class FeatureGrid(nn.Module):
    """One grid set (normal or abnormal) of GRAD.

    Args:
        channels: Feature channels C.
        feature_size: Feature map size ``(H, W)``.
        local_grid_size: Side Rl of the local grid. Defaults to ``8``.
        global_grid_size: Side Rg of the global grid. Defaults to ``4``.
    """

    def __init__(
        self,
        channels: int,
        feature_size: tuple[int, int],
        local_grid_size: int = 8,
        global_grid_size: int = 4,
    ) -> None:
        super().__init__()
        height, width = feature_size
        self.channels = channels
        self.feature_size = (height, width)
        self.local_grid = nn.Parameter(torch.empty(1, channels, local_grid_size, local_grid_size))
        self.global_grid = nn.Parameter(torch.empty(1, channels * height * width, global_grid_size, global_grid_size))
        nn.init.xavier_normal_(self.local_grid)
        nn.init.xavier_normal_(self.global_grid)

    def forward(self, global_coordinates: torch.Tensor, local_coordinates: torch.Tensor) -> torch.Tensor:
        """Read the grids at the given coordinates.

        Args:
            global_coordinates: One ``(x, y)`` per image, ``(B, 2)`` in ``(-1, 1)``.
            local_coordinates: One ``(x, y)`` per position, ``(B, 2, H, W)``.

        Returns:
            ``[global, local]`` samples concatenated on channels, ``(B, 2C, H, W)``.
        """
        batch_size, _, height, width = local_coordinates.shape
        global_weights = bilinear_weights(global_coordinates, self.global_grid.shape[-1])
        global_sample = global_weights @ self.global_grid.flatten(start_dim=2)[0].T
        local_weights = bilinear_weights(local_coordinates.permute(0, 2, 3, 1), self.local_grid.shape[-1])
        local_sample = local_weights.flatten(start_dim=1, end_dim=2) @ self.local_grid.flatten(start_dim=2)[0].T
        return torch.cat(
            [
                global_sample.view(batch_size, self.channels, height, width),
                local_sample.transpose(1, 2).reshape(batch_size, self.channels, height, width),
            ],
            dim=1,
        )
