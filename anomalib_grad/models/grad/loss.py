"""Losses of GRAD's two training stages.

Stage A trains the abnormal grid with a truncated-L1 (hinge) contrastive loss
on a per-position score ``d``: inside the anomaly mask ``d`` is pushed above
``+th``, outside below ``−th``, each side averaged over its own positions.
Stage B trains the normal grid with the mean squared error between the
features φ and the refined reconstruction.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.loss import ContrastiveLoss, ReconstructionLoss
    >>> scores = torch.tensor([[[[1.0, -1.0]]]])
    >>> mask = torch.tensor([[[[1.0, 0.0]]]])
    >>> ContrastiveLoss(threshold=0.5)(scores, mask)
    tensor(0.)
    >>> ReconstructionLoss()(torch.zeros(1, 2), torch.ones(1, 2))
    tensor(1.)
"""

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class ContrastiveLoss(nn.Module):
    """Truncated-L1 contrastive loss of the abnormal stage.

    ``mean_{mask}(relu(th − d)) + mean_{¬mask}(relu(d + th))``; a side with no
    positions contributes zero.

    Args:
        threshold: Margin ``th``. Defaults to ``0.5``.
    """

    def __init__(self, threshold: float = 0.5) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, scores: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            scores: Per-position scores ``d``, ``(B, 1, H, W)``.
            mask: Binary anomaly mask of the same shape.

        Returns:
            The scalar loss.
        """
        inside = mask > 0.5
        outside = ~inside
        inside_loss = F.relu(self.threshold - scores)[inside].sum() / inside.sum().clamp(min=1)
        outside_loss = F.relu(scores + self.threshold)[outside].sum() / outside.sum().clamp(min=1)
        return inside_loss + outside_loss


class ReconstructionLoss(nn.Module):
    """Mean squared error between features and their reconstruction (mean over B·C·H·W)."""

    def forward(self, reconstruction: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Compute the loss.

        Args:
            reconstruction: Refined reconstruction x̂_rec.
            features: Target features φ.

        Returns:
            The scalar loss.
        """
        return F.mse_loss(reconstruction, features)
