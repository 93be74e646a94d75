"""Similarity refinement of GRAD's fused reconstruction.

Refinement pulls the reconstruction towards the input where the two already
agree: per position, ``s = 0.3·[mean_c(x̂_pre − φ)² < threshold] + 0.7·cos_c(x̂_pre, φ)``
and ``x̂_rec = s·φ + (1 − s)·x̂_pre``. It is used in training as in inference.

Example:
    >>> import torch
    >>> features = torch.rand(1, 4, 3, 3) + 0.1
    >>> torch.allclose(SimilarityRefinement()(features, features), features)
    True
"""

import torch
from torch import nn
from torch.nn import functional as F  # noqa: N812


class SimilarityRefinement(nn.Module):
    """Blend the reconstruction with the input where they are similar.

    Args:
        threshold: Mean squared difference under which a position counts as
            reconstructed. Defaults to ``10.0``.
        indicator_weight: Weight of that indicator. Defaults to ``0.3``.
        cosine_weight: Weight of the cosine similarity. Defaults to ``0.7``.
    """

    def __init__(self, threshold: float = 10.0, indicator_weight: float = 0.3, cosine_weight: float = 0.7) -> None:
        super().__init__()
        self.threshold = threshold
        self.indicator_weight = indicator_weight
        self.cosine_weight = cosine_weight

    def forward(self, reconstruction: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
        """Refine a reconstruction.

        Args:
            reconstruction: Fused reconstruction x̂_pre ``(B, C, H, W)``.
            features: Input features φ ``(B, C, H, W)``.

        Returns:
            The refined reconstruction x̂_rec ``(B, C, H, W)``.
        """
        squared_error = (reconstruction - features).pow(2).mean(dim=1, keepdim=True)
        indicator = (squared_error < self.threshold).to(features.dtype)
        cosine = F.cosine_similarity(reconstruction, features, dim=1).unsqueeze(1)
        similarity = self.indicator_weight * indicator + self.cosine_weight * cosine
        return similarity * features + (1.0 - similarity) * reconstruction
