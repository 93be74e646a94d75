"""GRAD: Bi-Grid Reconstruction for Image Anomaly Detection.

``torch_model.py`` holds the algorithm (:class:`GradModel`, with its anomaly synthesis and its
two training stages), ``lightning_model.py`` the anomalib plumbing (:class:`Grad`), and
``components/`` one part of the network per file.

Example:
    >>> from anomalib_grad.models.grad import Grad
    >>> model = Grad(pre_trained=False)
"""

from anomalib_grad.models.grad.lightning_model import Grad
from anomalib_grad.models.grad.torch_model import GradModel

__all__ = ["Grad", "GradModel"]
