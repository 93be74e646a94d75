"""GRAD (Bi-Grid Reconstruction for Image Anomaly Detection) for anomalib.

Importing this package registers :class:`Grad` as an anomalib model, so
``anomalib train --model Grad`` and ``anomalib.models.get_model("grad")`` find it. It also makes
anomalib read 16- and 32-bit images correctly (:mod:`anomalib_grad.data.image_io`), and the CLI report
bad Grad arguments in one line (:mod:`anomalib_grad.cli.argument_errors`).

Example:
    >>> from anomalib_grad import Grad
    >>> model = Grad(pre_trained=False)
"""

from anomalib_grad.cli.argument_errors import register_argument_errors
from anomalib_grad.data.image_io import install_image_reader
from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.lightning_model import Grad
from anomalib_grad.models.grad.torch_model import GradModel

install_image_reader()
register_argument_errors(Grad)

__all__ = ["FeatureBlockPaste", "Grad", "GradModel"]
