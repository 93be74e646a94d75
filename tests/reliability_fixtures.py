"""A model whose cell process runs for a long time, for the comparison runner's tests (imported by the cells)."""

import os
import time
from pathlib import Path
from typing import Any

from anomalib.models import Padim

MARKER_VARIABLE = "ANOMALIB_GRAD_TEST_CELL_MARKER"
SLEEP_S = 120


class SleepingPadim(Padim):
    """PaDiM that writes its process id to ``$ANOMALIB_GRAD_TEST_CELL_MARKER`` and then sleeps for two minutes.

    Without that variable it is plain PaDiM with random weights (no download), so a rerun of an interrupted
    comparison finishes it.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if MARKER_VARIABLE in os.environ:
            Path(os.environ[MARKER_VARIABLE]).write_text(str(os.getpid()))
            time.sleep(SLEEP_S)
        super().__init__(*args, **{"pre_trained": False, **kwargs})
