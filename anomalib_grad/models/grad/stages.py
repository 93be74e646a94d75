"""GRAD's two training stages: their names, stage A's anomaly generator, and what each stage's forward returns.

Stage A (``"abnormal"``) trains the abnormal grid set on synthetic and real anomalies; stage B
(``"normal"``) trains the normal grid set to reconstruct normal features.

Example:
    >>> import torch
    >>> output = NormalStageOutput(reconstruction=torch.zeros(1, 2, 4, 4), features=torch.ones(1, 2, 4, 4))
    >>> output.reconstruction.shape
    torch.Size([1, 2, 4, 4])
"""

from typing import Literal, NamedTuple

import torch

from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.components.gaussian_noise import GaussianFeatureNoise

Stage = Literal["abnormal", "normal"]
AnomalySynthesis = Literal["fbp", "gaussian_noise", "none"]
ANOMALY_SYNTHESES = ("fbp", "gaussian_noise", "none")


def check_anomaly_synthesis(anomaly_synthesis: str) -> None:
    """Raise a ``ValueError`` listing the valid names unless ``anomaly_synthesis`` is one of them."""
    if anomaly_synthesis not in ANOMALY_SYNTHESES:
        msg = f"Unknown anomaly_synthesis '{anomaly_synthesis}': use one of {', '.join(ANOMALY_SYNTHESES)}."
        raise ValueError(msg)


def make_anomaly_generator(
    anomaly_synthesis: AnomalySynthesis, blocks: FeatureBlockPaste, noise_std: float, feature_size: tuple[int, int]
) -> FeatureBlockPaste | GaussianFeatureNoise | None:
    """Stage A's anomaly generator: ``blocks`` itself (FBP), Gaussian noise on its block shapes, or none.

    Raises:
        ValueError: If the blocks cannot fit ``feature_size`` or ``noise_std`` is not positive.
    """
    blocks.check_fits(feature_size)
    if anomaly_synthesis == "fbp":
        return blocks
    if anomaly_synthesis == "gaussian_noise":
        return GaussianFeatureNoise(blocks, noise_std)
    return None


class AbnormalStageOutput(NamedTuple):
    """Stage A's training output: the abnormal branch's per-position score ``d`` and its target mask."""

    scores: torch.Tensor
    mask: torch.Tensor


class NormalStageOutput(NamedTuple):
    """Stage B's training output: the refined reconstruction of normal features, and those features."""

    reconstruction: torch.Tensor
    features: torch.Tensor
