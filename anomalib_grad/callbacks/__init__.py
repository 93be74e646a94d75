"""Lightning callbacks for anomalib-grad.

- :class:`PerCategoryMetrics`: image and pixel metrics per category (and their mean) after testing.

Example:
    >>> from anomalib.engine import Engine
    >>> from anomalib_grad.callbacks import PerCategoryMetrics
    >>> engine = Engine(callbacks=[PerCategoryMetrics()])  # doctest: +SKIP
"""

from .per_category_metrics import PerCategoryMetrics

__all__ = ["PerCategoryMetrics"]
