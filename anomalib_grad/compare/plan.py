"""What a comparison runs: models and their variants, data, categories, fractions and seeds, and the cells.

A *cell* is one model trained and tested once: on one category (or on all of them at once in the
unified setting) with one fraction of the training set and one seed. A comparison is the list of its
cells; each finished cell is saved on its own, so an interrupted comparison resumes cell by cell, and
a plan that only adds models or seeds to a folder's plan continues it.

A *variant* is a named model with its own init args, e.g. ``grad_normal_only`` = ``grad`` with
``abnormal_grid: false``: an ablation is then one comparison.

Example:
    >>> plan = ComparisonPlan(
    ...     models=["grad", "grad_normal_only"], root="../shared/data/real", categories=["bottle"], seeds=[0, 1],
    ...     variants={"grad_normal_only": {"model": "grad", "abnormal_grid": False}},
    ... )
    >>> [cell.key for cell in plan.cells()][:2]
    ['grad__bottle__1__seed0', 'grad_normal_only__bottle__1__seed0']
    >>> plan.base_model("grad_normal_only"), plan.model_init_args("grad_normal_only", "bottle")
    ('grad', {'abnormal_grid': False})
"""

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from anomalib_grad.compare.models import PRESETS

UNIFIED = "unified"


class PlanMismatchError(ValueError):
    """The results folder holds the cells of another comparison plan."""


@dataclass(frozen=True)
class Cell:
    """One model trained and tested on one category (or all, unified), a fraction of the training set, a seed.

    Args:
        model: Model (or variant) name as given in the plan.
        category: Category name, or ``"unified"`` for one model on every category.
        fraction: Fraction of the training images used, in ``(0, 1]``.
        seed: Seed of the model's training (and of its random parts).
    """

    model: str
    category: str
    fraction: float
    seed: int = 0

    @property
    def key(self) -> str:
        """File-system-safe identifier, e.g. ``"patchcore__bottle__0.25__seed0"``."""
        model = re.sub(r"[^A-Za-z0-9_.-]", "_", self.model)
        return f"{model}__{self.category}__{self.fraction:g}__seed{self.seed}"


@dataclass
class ComparisonPlan:
    """A side-by-side comparison: every model on the same data, image size and backbone weights.

    Args:
        models: Model names: ``grad``, ``patchcore`` and ``padim`` (the shared-backbone presets of
            :mod:`anomalib_grad.compare.models`), any other anomalib model name (``"stfpm"``), a
            class path (``"my_package.MyModel"``), or the name of one of the plan's ``variants``.
        categories: Categories of the datamodule, each evaluated on its own test set.
        root: Dataset root, passed to the datamodule as ``root`` (``None``: not passed).
        datamodule: Class path of an anomalib image datamodule that takes ``category``.
        datamodule_args: Further init args of the datamodule (batch sizes and seed are set by the plan).
        unified: Train one model on all categories together (:class:`~anomalib_grad.data.MultiCategory`)
            instead of one model per category; metrics are still reported per category.
        image_size: Image size ``(H, W)`` every model is trained and tested at.
        train_fractions: Fractions of the training images to train on; more than one turns on the
            scaling report (model size, training and inference time vs number of training images).
        model_args: Init args per model name, e.g. ``{"patchcore": {"coreset_sampling_ratio": 0.01}}``.
        category_model_args: Init args per category and model, applied over ``model_args``, e.g.
            ``{"magnetic_tile": {"patchcore": {"coreset_sampling_ratio": 0.001}}}``.
        variants: Named variants of a model: ``{name: {"model": base, **init_args}}``; the variant's init
            args come first, then ``model_args`` and ``category_model_args`` of the variant's name.
        seeds: Seeds; every model is trained once per seed and the report gives mean ± std over seeds.
            The data (validation split, held-out anomalies, training subsets) does not change with it:
            its seed is ``datamodule_args["seed"]`` (default 0).
        accelerator: Lightning accelerator for training and torch inference (``"cpu"``, ``"gpu"``, ``"auto"``).
        batch_size: Training and evaluation batch size.
        num_workers: Data-loader workers.
        throughput_batch_size: Batch size of the throughput measurement.
        timing_seconds: Length of each throughput measurement, after warm-up.
        openvino: Also export the models of the main table (largest fraction) to OpenVINO and time them
            (FP32, CPU); the scaling report times torch only.
        num_examples: Test images per category shown in the anomaly-map grid.

    Raises:
        ValueError: On an empty model or category list, duplicate names, fractions outside ``(0, 1]``, or model
            args for a name that is neither a model of the plan, a variant nor a preset. Args of a variant or preset
            the plan does not run are ignored, so that ``--models`` can pick some of a config's models.
    """

    models: list[str]
    categories: list[str]
    root: str | Path | None = None
    datamodule: str = "anomalib_grad.data.MVTecLayout"
    datamodule_args: dict[str, Any] = field(default_factory=dict)
    unified: bool = False
    image_size: tuple[int, int] = (256, 256)
    train_fractions: list[float] = field(default_factory=lambda: [1.0])
    model_args: dict[str, dict[str, Any]] = field(default_factory=dict)
    category_model_args: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)
    variants: dict[str, dict[str, Any]] = field(default_factory=dict)
    seeds: list[int] = field(default_factory=lambda: [0])
    accelerator: str = "auto"
    batch_size: int = 16
    num_workers: int = 2
    throughput_batch_size: int = 1
    timing_seconds: float = 5.0
    openvino: bool = True
    num_examples: int = 4

    def __post_init__(self) -> None:
        self.models, self.categories, self.seeds = list(self.models), list(self.categories), list(self.seeds)
        self.root = None if self.root is None else str(self.root)
        self.image_size = (int(self.image_size[0]), int(self.image_size[1]))
        self.train_fractions = sorted(float(fraction) for fraction in self.train_fractions)
        for name, values in (("models", self.models), ("categories", self.categories), ("seeds", self.seeds)):
            if not values:
                msg = f"The comparison needs at least one entry in `{name}`."
                raise ValueError(msg)
            if len(set(values)) != len(values):
                msg = f"`{name}` lists a name twice: {values}."
                raise ValueError(msg)
        bad = [fraction for fraction in self.train_fractions if not 0 < fraction <= 1 or math.isnan(fraction)]
        if bad or len(set(self.train_fractions)) != len(self.train_fractions):
            msg = f"`train_fractions` must be distinct numbers in (0, 1], got {self.train_fractions}."
            raise ValueError(msg)
        # Args of a preset or variant the plan does not run are kept unused (``--models`` picks from a
        # config); any other name is a typo.
        known = set(self.models) | set(self.variants) | set(PRESETS)
        unknown = sorted(set(self.model_args) - known)
        unknown += sorted(
            f"{category}.{name}"
            for category, args in self.category_model_args.items()
            for name in args
            if name not in known
        )
        if unknown:
            msg = (
                f"Model args given for unknown models: {unknown}; name a model of the plan {self.models}, "
                f"a variant {sorted(self.variants)} or a preset {sorted(PRESETS)}."
            )
            raise ValueError(msg)
        for name, variant in self.variants.items():
            if not isinstance(variant, dict) or not isinstance(variant.get("model"), str):
                msg = f"Variant '{name}' must name its base model, e.g. {{model: grad, abnormal_grid: false}}."
                raise ValueError(msg)
            if variant["model"] in self.variants:
                msg = f"Variant '{name}' is based on another variant ('{variant['model']}'); name a model instead."
                raise ValueError(msg)

    @property
    def training_groups(self) -> list[str]:
        """What one model is trained on: each category, or ``["unified"]``."""
        return [UNIFIED] if self.unified else self.categories

    @property
    def full_fraction(self) -> float:
        """The largest training fraction: the cells of the main comparison table."""
        return self.train_fractions[-1]

    @property
    def data_seed(self) -> int:
        """Seed of the data: validation split, held-out anomalies and training subsets (not of the models)."""
        return int(self.datamodule_args.get("seed", 0))

    def cells(self) -> list[Cell]:
        """Every cell, in run order: by fraction (largest first), then seed, then group, then model."""
        return [
            Cell(model, group, fraction, seed)
            for fraction in reversed(self.train_fractions)
            for seed in self.seeds
            for group in self.training_groups
            for model in self.models
        ]

    def base_model(self, model: str) -> str:
        """The model a name builds: the variant's base model, or the name itself."""
        return self.variants[model]["model"] if model in self.variants else model

    def model_init_args(self, model: str, group: str) -> dict[str, Any]:
        """Init args of ``model`` (or variant) when trained on ``group`` (a category or ``"unified"``)."""
        variant = {name: value for name, value in self.variants.get(model, {}).items() if name != "model"}
        return {**variant, **self.model_args.get(model, {}), **self.category_model_args.get(group, {}).get(model, {})}

    def to_dict(self) -> dict[str, Any]:
        """The plan as JSON-compatible data."""
        data = asdict(self)
        data["image_size"] = list(self.image_size)
        return json.loads(json.dumps(data, default=str))

    def _models_as_built(self, model: str) -> dict[str, Any]:
        """What a model name means in this plan: its base model and its init args per group."""
        return {
            "model": self.base_model(model),
            "args": {group: self.model_init_args(model, group) for group in self.training_groups},
        }

    def check_same_as(self, saved: dict[str, Any], folder: Path) -> None:
        """Raise unless this plan runs the same cells as ``saved`` (a plan read from a results folder), or more.

        A plan may add models, variants and seeds to the saved one (the finished cells are kept, only the
        new ones run); everything else, and the meaning of every saved model, must be the same.

        Args:
            saved: :meth:`to_dict` of the plan that wrote the folder.
            folder: The results folder, for the message.

        Raises:
            PlanMismatchError: Naming the fields that differ.
        """
        current = _as_json(self.to_dict())
        extendable = {"models", "seeds", "variants", "model_args", "category_model_args"}
        differences = [
            f"{name}: {saved.get(name)!r} there, {current.get(name)!r} now"
            for name in sorted(set(current) | set(saved))
            if name not in extendable and current.get(name) != saved.get(name)
        ]
        try:
            previous = ComparisonPlan(**saved)
        except (TypeError, ValueError) as error:
            differences.append(f"the saved plan is not readable by this version ({error})")
        else:
            differences += [f"seed {seed} is no longer in seeds" for seed in previous.seeds if seed not in self.seeds]
            for model in previous.models:
                if model not in self.models:
                    differences.append(f"model '{model}' is no longer in models")
                elif _as_json(previous._models_as_built(model)) != _as_json(self._models_as_built(model)):
                    differences.append(
                        f"model '{model}': {previous._models_as_built(model)} there, {self._models_as_built(model)} now"
                    )
        if differences:
            msg = (
                f"The results folder {folder} holds another comparison ({'; '.join(differences)}). "
                "Resuming would mix results of different plans: choose a new output folder, or delete this one."
            )
            raise PlanMismatchError(msg)


def _as_json(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists), so a saved plan compares with a new one."""
    return json.loads(json.dumps(value))
