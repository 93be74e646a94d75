"""Lightning callbacks for anomalib-grad.

- :class:`PerCategoryMetrics`: image and pixel metrics per category (and their mean) after testing.
- :class:`TrainedCheckpoint`: the checkpoint written before validation, validated when a test needs it
  (:class:`~anomalib_grad.Grad` adds it by itself).
- :class:`ReadableImages`: every prediction image checked before the first is predicted (added by Grad).

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_grad.callbacks import PerCategoryMetrics
    >>> engine = Engine(callbacks=[PerCategoryMetrics()])  # doctest: +SKIP
"""

from .per_category_metrics import PerCategoryMetrics
from .readable_images import ReadableImages
from .trained_checkpoint import TrainedCheckpoint

__all__ = ["PerCategoryMetrics", "ReadableImages", "TrainedCheckpoint"]
