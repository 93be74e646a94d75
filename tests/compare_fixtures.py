"""Models that fail on purpose, for the comparison runner's tests (imported by the cell processes)."""

import os
from typing import Any

from anomalib.models import Padim


class FailingPadim(Padim):
    """PaDiM that raises in the middle of training."""

    def training_step(self, *args: Any, **kwargs: Any) -> None:
        message = "deliberate failure in training_step"
        raise RuntimeError(message)


class ExitingPadim(Padim):
    """PaDiM whose process dies without a word (as when the kernel kills it for memory)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        os._exit(3)
