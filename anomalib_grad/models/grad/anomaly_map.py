"""Anomaly map and image score of GRAD.

The anomaly map is ``‖φ − x̂_rec‖₂`` over channels, upsampled to the input size and
smoothed by a mean filter; the image score is the maximum of the map after an
average pool. Everything is tensor arithmetic without data-dependent branches, so
it exports with the model.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.anomaly_map import AnomalyMapGenerator
    >>> generator = AnomalyMapGenerator(input_size=(64, 64))
    >>> anomaly_map, score = generator(torch.rand(2, 8, 8, 8), torch.rand(2, 8, 8, 8))
    >>> anomaly_map.shape, score.shape
    (torch.Size([2, 1, 64, 64]), torch.Size([2]))
"""

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class AnomalyMapGenerator(nn.Module):
    """Anomaly map and image score from features and their reconstruction.

    Args:
        input_size: Image size ``(H, W)`` the map is upsampled to.
        smoothing_size: Side of the mean filter applied to the map. Defaults to ``21``.
        score_pool_size: Side of the average pool before the image-score maximum.
            Defaults to ``32``; clipped to the image size.
    """

    def __init__(self, input_size: tuple[int, int], smoothing_size: int = 21, score_pool_size: int = 32) -> None:
        super().__init__()
        if smoothing_size < 1 or smoothing_size % 2 == 0:
            msg = f"smoothing_size must be a positive odd number, got {smoothing_size}."
            raise ValueError(msg)
        self.input_size = tuple(input_size)
        self.smoothing_size = smoothing_size
        self.score_pool_size = max(1, min(score_pool_size, *self.input_size))

    def forward(self, features: torch.Tensor, reconstruction: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Compute the anomaly map and the image score.

        Args:
            features: Input features φ ``(B, C, h, w)``.
            reconstruction: Refined reconstruction x̂_rec ``(B, C, h, w)``.

        Returns:
            Anomaly map ``(B, 1, H, W)`` and image scores ``(B,)``.
        """
        distance = torch.linalg.vector_norm(features - reconstruction, dim=1, keepdim=True)
        anomaly_map = self.smooth(distance)
        return anomaly_map, self.image_score(anomaly_map)

    def smooth(self, distance: torch.Tensor) -> torch.Tensor:
        """Upsample a feature-level distance map ``(B, 1, h, w)`` to the input size and smooth it."""
        anomaly_map = F.interpolate(distance, size=self.input_size, mode="bilinear", align_corners=True)
        return separable_box_filter(anomaly_map, self.smoothing_size, padding=self.smoothing_size // 2)

    def image_score(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """Maximum of the average-pooled map ``(B, 1, H, W)``: image scores ``(B,)``."""
        pooled = separable_box_filter(anomaly_map, self.score_pool_size, padding=0)
        return pooled.flatten(start_dim=1).amax(dim=1)

    def coarse_image_score(self, distance: torch.Tensor, stride: int) -> torch.Tensor:
        """Image scores ``(B,)`` of a feature-level map ``(B, 1, h, w)`` of the given stride, without upsampling.

        The smoothing and pooling windows are scaled down by ``stride`` (the smoothing's kept odd), so
        they cover about the same image area as :meth:`smooth` and :meth:`image_score` at a ``stride²``
        fraction of the cost.
        """
        smoothing = max(1, self.smoothing_size // stride) | 1
        pool = max(1, min(self.score_pool_size // stride, *distance.shape[-2:]))
        smoothed = separable_box_filter(distance, smoothing, padding=smoothing // 2)
        return separable_box_filter(smoothed, pool, padding=0).flatten(start_dim=1).amax(dim=1)


def separable_box_filter(images: torch.Tensor, size: int, padding: int) -> torch.Tensor:
    """Mean over ``size``×``size`` windows (stride 1), as a column pass then a row pass.

    Equal to ``F.avg_pool2d(images, size, stride=1, padding=padding, count_include_pad=False)``:
    a window's valid area is the product of its valid height and width, so the mean factorises.
    Costs ``2·size`` instead of ``size²`` operations per pixel (5× faster for the 21×21 filter).

    Args:
        images: Maps ``(B, C, H, W)``.
        size: Window side.
        padding: Zero padding on each side, excluded from the means.

    Returns:
        The filtered maps.
    """
    columns = F.avg_pool2d(images, (size, 1), stride=1, padding=(padding, 0), count_include_pad=False)
    return F.avg_pool2d(columns, (1, size), stride=1, padding=(0, padding), count_include_pad=False)
