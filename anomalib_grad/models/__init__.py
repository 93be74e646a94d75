"""The models of the plugin: GRAD, and components shared with the comparison presets."""

from anomalib_grad.models.grad import Grad, GradModel

__all__ = ["Grad", "GradModel"]
