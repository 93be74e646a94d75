"""Gaussian feature noise: SimpleNet's anomaly synthesis, on Feature Block Paste's block shapes.

SimpleNet (Liu et al., CVPR 2023) makes feature-level anomalies by adding Gaussian noise to
features. For GRAD's contrastive loss every synthetic anomaly needs a mask, so the noise is added
**on the mask region only**: the same random-walk blocks as :class:`FeatureBlockPaste` (same
sizes, positions and seedable stream), filled with i.i.d. noise ``N(0, noise_std²)`` per channel
and position instead of FBP's blurred constant intensity. The two synthesisers differ only in what
they paste, which is what the paper's ablation (FBP vs Gaussian noise) compares.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
    >>> noise = GaussianFeatureNoise(FeatureBlockPaste(block_size=2, seed=0), noise_std=1.0)
    >>> features, mask = noise(torch.zeros(2, 4, 16, 16))
    >>> bool((features[mask.expand_as(features) == 0] == 0).all()), bool(features.abs().sum() > 0)
    (True, True)
"""

import torch
from torch import nn

from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste


class GaussianFeatureNoise(nn.Module):
    """Add Gaussian noise to features inside random-walk blocks.

    Args:
        blocks: Where the noise goes: the block masks of this Feature Block Paste (its intensity and
            blur are not used).
        noise_std: Standard deviation of the noise, in feature units.

    Raises:
        ValueError: If ``noise_std`` is not positive.
    """

    def __init__(self, blocks: FeatureBlockPaste, noise_std: float) -> None:
        super().__init__()
        if not noise_std > 0:
            msg = f"noise_std must be positive (the standard deviation of the Gaussian feature noise), got {noise_std}."
            raise ValueError(msg)
        self.blocks = blocks
        self.noise_std = noise_std

    def forward(self, features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Add noise inside freshly drawn blocks.

        Args:
            features: Features ``(B, C, H, W)``.

        Returns:
            Noisy features ``(B, C, H, W)`` and the binary mask ``(B, 1, H, W)``.
        """
        mask, _ = self.blocks.draw_masks(features)
        noise = torch.randn(features.shape, generator=self.blocks.generator).to(features)
        return features + self.noise_std * noise * mask, mask
