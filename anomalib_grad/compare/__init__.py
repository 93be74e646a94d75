"""Side-by-side comparison of GRAD with PatchCore, PaDiM and any anomalib model (``anomalib-grad compare``).

Example:
    >>> from pathlib import Path
    >>> from anomalib_grad.compare import ComparisonPlan, run_comparison
    >>> plan = ComparisonPlan(models=["grad", "patchcore", "padim"], root="../shared/data/real",
    ...                       categories=["bottle", "magnetic_tile"])
    >>> run_comparison(plan, Path("results/compare"))  # doctest: +SKIP
"""

from anomalib_grad.compare.cell_record import CellRecord
from anomalib_grad.compare.data import ComparisonDataError
from anomalib_grad.compare.models import UnknownModelNameError, build_model
from anomalib_grad.compare.plan import Cell, ComparisonPlan, PlanMismatchError
from anomalib_grad.compare.runner import run_comparison

__all__ = [
    "Cell",
    "CellRecord",
    "ComparisonDataError",
    "ComparisonPlan",
    "PlanMismatchError",
    "UnknownModelNameError",
    "build_model",
    "run_comparison",
]
