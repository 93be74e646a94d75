"""Real anomalous training images for GRAD's abnormal stage ("external anomaly samples").

In stage A, beside the Feature Block Paste anomalies, the abnormal grid may learn from real
defective images with ground-truth masks: their features are scored by the abnormal path and
the contrastive loss's target is their mask reduced to the feature grid by
:func:`mask_to_feature_grid`. :class:`RealAnomalyStream` serves batches of such images without
end, from a datamodule's ``anomaly_train_dataloader()`` (see :mod:`anomalib_grad.data.anomalies`).

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.real_anomalies import mask_to_feature_grid
    >>> mask = torch.zeros(1, 16, 16)
    >>> mask[0, :8, :8] = 1
    >>> mask_to_feature_grid(mask, (2, 2))[0, 0]
    tensor([[1., 0.],
            [0., 0.]])
"""

from collections.abc import Iterator
from typing import Any

import torch
from anomalib.data import Batch
from torch.nn import functional as F  # noqa: N812
from torch.utils.data import DataLoader

MASK_COVERAGE = 0.25
"""A feature cell is anomalous when the defect covers this fraction of it (or the most any cell is covered)."""


def mask_to_feature_grid(mask: torch.Tensor, feature_size: tuple[int, int]) -> torch.Tensor:
    """Reduce pixel masks to binary masks on the feature grid.

    A cell is anomalous when the defect covers at least :data:`MASK_COVERAGE` of it; for a defect
    too thin or small to cover that much of any cell, its most covered cells are marked instead,
    so no real anomaly is lost.

    Args:
        mask (torch.Tensor): Pixel masks ``(B, H, W)`` or ``(B, 1, H, W)``, nonzero inside defects.
        feature_size (tuple[int, int]): Feature grid ``(h, w)``.

    Returns:
        torch.Tensor: Float masks ``(B, 1, h, w)`` of zeros and ones.

    Example:
        >>> mask_to_feature_grid(torch.ones(2, 8, 8), (4, 4)).shape
        torch.Size([2, 1, 4, 4])
    """
    if mask.dim() == 3:
        mask = mask.unsqueeze(1)
    coverage = F.adaptive_avg_pool2d((mask > 0).float(), feature_size)
    threshold = coverage.amax(dim=(-2, -1), keepdim=True).clamp(max=MASK_COVERAGE)
    return ((coverage >= threshold) & (coverage > 0)).float()


class RealAnomalyStream:
    """Endless, reshuffled batches of real anomalous images from a dataloader.

    Args:
        dataloader (DataLoader): Batches with ``image``, ``image_path`` and ``gt_mask``.

    Example:
        >>> stream = RealAnomalyStream.from_datamodule(datamodule)  # doctest: +SKIP
        >>> batch = stream.next_batch(torch.device("cpu"))  # doctest: +SKIP
    """

    def __init__(self, dataloader: DataLoader) -> None:
        self.dataloader = dataloader
        self._iterator: Iterator[Batch] | None = None

    @classmethod
    def from_datamodule(cls, datamodule: Any) -> "RealAnomalyStream | None":
        """Build a stream from ``datamodule.anomaly_train_dataloader()``, or ``None`` when it offers none.

        Args:
            datamodule (Any): A datamodule, possibly with ``anomaly_train_dataloader``.

        Returns:
            RealAnomalyStream | None: The stream, or ``None``.
        """
        factory = getattr(datamodule, "anomaly_train_dataloader", None)
        dataloader = factory() if callable(factory) else None
        return None if dataloader is None else cls(dataloader)

    def __len__(self) -> int:
        return len(self.dataloader.dataset)  # type: ignore[arg-type]

    def next_batch(self, device: torch.device) -> Batch:
        """Return the next batch on ``device``, starting a new pass when one ends.

        Args:
            device (torch.device): Device of the returned tensors.

        Returns:
            Batch: Images and masks of real anomalies.
        """
        if self._iterator is None:
            self._iterator = iter(self.dataloader)
        try:
            batch = next(self._iterator)
        except StopIteration:
            self._iterator = iter(self.dataloader)
            batch = next(self._iterator)
        return batch.update(image=batch.image.to(device), gt_mask=batch.gt_mask.to(device))


def anomalous_rows_with_masks(batch: Batch) -> torch.Tensor:
    """Return a boolean vector marking the batch's anomalous images (``gt_label == 1``).

    Args:
        batch (Batch): A training batch.

    Returns:
        torch.Tensor: ``(B,)`` booleans; all ``False`` when the batch has no labels.

    Raises:
        ValueError: If an anomalous training image has no ground-truth mask.
    """
    labels = getattr(batch, "gt_label", None)
    if labels is None:
        return torch.zeros(len(batch.image), dtype=torch.bool, device=batch.image.device)
    anomalous = labels.bool().to(batch.image.device)
    if bool(anomalous.any()) and getattr(batch, "gt_mask", None) is None:
        names = [path for path, flag in zip(batch.image_path or [], anomalous.tolist(), strict=False) if flag]
        msg = f"Anomalous training images need ground-truth masks, none given for {names[:3]}."
        raise ValueError(msg)
    return anomalous
