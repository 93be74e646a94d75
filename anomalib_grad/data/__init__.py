"""Datasets and datamodules for anomalib-grad.

- :class:`MVTecLayout`: any local category folder in MVTec AD layout (never downloads).
- :class:`SyntheticSurfaces`: the built-in synthetic textured-surface dataset, generated on first use.
- :func:`validate_mvtec_layout`: check a folder and raise :class:`DatasetLayoutError` naming the problem.
- :func:`generate_synthetic_surfaces` and :func:`default_cache_root`: write the synthetic dataset.

Example:
    >>> from anomalib_grad.data import SyntheticSurfaces
    >>> datamodule = SyntheticSurfaces()
    >>> datamodule.prepare_data()
"""

from .datamodules import MVTecLayout, SyntheticSurfaces
from .synthetic import default_cache_root, generate_synthetic_surfaces
from .validation import DatasetLayoutError, validate_mvtec_layout

__all__ = [
    "DatasetLayoutError",
    "MVTecLayout",
    "SyntheticSurfaces",
    "default_cache_root",
    "generate_synthetic_surfaces",
    "validate_mvtec_layout",
]
