"""GRAD's two training stages: their names and what the torch model's training forward returns in each.

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

Stage = Literal["abnormal", "normal"]
AnomalySynthesis = Literal["fbp", "gaussian_noise", "none"]
ANOMALY_SYNTHESES = ("fbp", "gaussian_noise", "none")


class AbnormalStageOutput(NamedTuple):
    """Stage A's training output: the abnormal branch's per-position score ``d`` and its target mask."""

    scores: torch.Tensor
    mask: torch.Tensor


class NormalStageOutput(NamedTuple):
    """Stage B's training output: the refined reconstruction of normal features, and those features."""

    reconstruction: torch.Tensor
    features: torch.Tensor
