"""Datasets and datamodules for anomalib-grad.

- :class:`MVTecLayout`: any local category folder in MVTec AD layout (never downloads).
- :class:`SyntheticSurfaces`: the built-in synthetic textured-surface dataset, generated on first use.
- :class:`GoodsAD`: PKU-GoodsAD's six categories, from a manually downloaded copy.
- :class:`MultiCategory`: several categories of any image datamodule as one (unified training).
- :class:`DataLeakageError`: raised when a training image is also a test or validation image.
- :func:`validate_mvtec_layout`: check a folder and raise :class:`DatasetLayoutError` naming the problem.
- :func:`generate_synthetic_surfaces` and :func:`default_cache_root`: write the synthetic dataset.

Example:
    >>> from anomalib_grad.data import SyntheticSurfaces
    >>> datamodule = SyntheticSurfaces()
    >>> datamodule.prepare_data()
"""

from .anomalies import DataLeakageError
from .categories import UnknownCategoryError
from .datamodules import MVTecLayout, SyntheticSurfaces
from .goodsad import GOODSAD_CATEGORIES, GoodsAD
from .multi_category import MultiCategory
from .synthetic import default_cache_root, generate_synthetic_surfaces
from .validation import DatasetLayoutError, validate_mvtec_layout

__all__ = [
    "GOODSAD_CATEGORIES",
    "DataLeakageError",
    "DatasetLayoutError",
    "GoodsAD",
    "MVTecLayout",
    "MultiCategory",
    "SyntheticSurfaces",
    "UnknownCategoryError",
    "default_cache_root",
    "generate_synthetic_surfaces",
    "validate_mvtec_layout",
]
