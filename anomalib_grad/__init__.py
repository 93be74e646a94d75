"""GRAD (Bi-Grid Reconstruction for Image Anomaly Detection) for anomalib.

Importing this package registers :class:`Grad` as an anomalib model, so
``anomalib train --model Grad`` and ``anomalib.models.get_model("grad")`` find it.

Example:
    >>> from anomalib_grad import Grad
    >>> model = Grad(pre_trained=False)
"""

from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.lightning_model import Grad
from anomalib_grad.models.grad.torch_model import GradModel

__all__ = ["FeatureBlockPaste", "Grad", "GradModel"]
