"""The datamodules of a comparison: one per category, or one for all (unified), and training subsets.

Example:
    >>> from anomalib_grad.compare.plan import ComparisonPlan
    >>> plan = ComparisonPlan(models=["grad"], root="../shared/data/real", categories=["bottle"])
    >>> datamodule, num_train = prepare_datamodule(plan, "bottle", fraction=0.25)  # doctest: +SKIP
    >>> num_train  # doctest: +SKIP
    52
"""

from typing import Any

import torch
from anomalib.data import AnomalibDataModule
from lightning.pytorch.trainer.states import TrainerFn

from anomalib_grad.compare.plan import UNIFIED, ComparisonPlan
from anomalib_grad.data import MultiCategory
from anomalib_grad.data.categories import resolve_datamodule_class


class ComparisonDataError(ValueError):
    """A category of the comparison cannot be used (missing, empty, or without test images)."""


def _datamodule_args(plan: ComparisonPlan) -> dict[str, Any]:
    arguments = {name: value for name, value in plan.datamodule_args.items() if name != "seed"}  # see data_seed
    if plan.root is not None:
        arguments["root"] = plan.root
    return arguments


def build_datamodule(plan: ComparisonPlan, group: str) -> AnomalibDataModule:
    """The datamodule one model of the plan trains and tests on.

    Args:
        plan: The comparison plan.
        group: A category, or ``"unified"`` for all the plan's categories in one
            :class:`~anomalib_grad.data.MultiCategory`.

    Returns:
        The datamodule (not set up).
    """
    loader_args = {
        "train_batch_size": plan.batch_size,
        "eval_batch_size": plan.batch_size,
        "num_workers": plan.num_workers,
        "seed": plan.data_seed,
    }
    if group == UNIFIED:
        return MultiCategory(plan.datamodule, _datamodule_args(plan), categories=plan.categories, **loader_args)
    return resolve_datamodule_class(plan.datamodule)(**_datamodule_args(plan), category=group, **loader_args)


def check_categories(plan: ComparisonPlan) -> None:
    """Set up every category's datamodule once, before anything trains, and fail with a clear message.

    Args:
        plan: The comparison plan.

    Raises:
        ComparisonDataError: For a category that cannot be read, has no training images, or no test images.
    """
    for category in plan.categories:
        try:
            datamodule = build_datamodule(plan, category)
            datamodule.prepare_data()
            datamodule.setup()
        except (OSError, ValueError, KeyError) as error:
            msg = f"Category '{category}' of {plan.datamodule} cannot be used: {error}"
            raise ComparisonDataError(msg) from error
        for subset in ("train_data", "test_data"):
            if len(getattr(datamodule, subset)) == 0:
                msg = f"Category '{category}' of {plan.datamodule} has no {subset.split('_')[0]}ing images."
                raise ComparisonDataError(msg.replace("testing", "test"))


def prepare_datamodule(plan: ComparisonPlan, group: str, fraction: float) -> tuple[AnomalibDataModule, int]:
    """Build and set up the datamodule of one cell, keeping ``fraction`` of its training images.

    Args:
        plan: The comparison plan.
        group: A category, or ``"unified"``.
        fraction: Fraction of the training images to keep.

    Returns:
        The datamodule (the trainer will not set it up again, so the subset stays) and its number of
        training images.
    """
    datamodule = build_datamodule(plan, group)
    datamodule.prepare_data()
    datamodule.setup(TrainerFn.FITTING)  # marks it set up: the trainer's own setup() keeps the subset below
    return datamodule, use_training_fraction(datamodule, fraction, plan.data_seed)


def use_training_fraction(datamodule: AnomalibDataModule, fraction: float, seed: int) -> int:
    """Keep a seeded random ``fraction`` of the (set-up) datamodule's training images.

    Args:
        datamodule: A datamodule after ``setup()``.
        fraction: Fraction in ``(0, 1]``; at least one image is kept.
        seed: Seed of the random choice (the same seed keeps nested subsets for growing fractions).

    Returns:
        The number of training images kept.
    """
    total = len(datamodule.train_data)
    count = max(1, round(fraction * total))
    if count < total:
        order = torch.randperm(total, generator=torch.Generator().manual_seed(seed)).tolist()
        datamodule.train_data = datamodule.train_data.subsample(sorted(order[:count]))
    return count
