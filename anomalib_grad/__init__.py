"""GRAD (Bi-Grid Reconstruction for Image Anomaly Detection) for anomalib.

Importing this package registers :class:`Grad` as an anomalib model, so
``anomalib train --model Grad`` and ``anomalib.models.get_model("grad")`` find it. It also makes
anomalib read 16- and 32-bit images correctly (:mod:`anomalib_grad.data.image_io`).

Example:
    >>> from anomalib_grad import Grad
    >>> model = Grad(pre_trained=False)
"""

from anomalib_grad.data.image_io import install_image_reader
from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.lightning_model import Grad
from anomalib_grad.models.grad.torch_model import GradModel

install_image_reader()

__all__ = ["FeatureBlockPaste", "Grad", "GradModel"]
