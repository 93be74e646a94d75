"""The results folder of a comparison: its plan and one record per finished cell, written atomically.

Layout::

    OUTPUT/plan.json                 the plan (a folder holds one plan)
    OUTPUT/.lock                     locked while a comparison runs in the folder (by it and its cells)
    OUTPUT/cells/KEY.json            one record per cell ("status": "ok" or "failed"; see cell_record.CellRecord)
    OUTPUT/cells/KEY/                the cell's checkpoint, grid examples, OpenVINO export and log
    OUTPUT/comparison.{md,csv,json}  the report, rewritten after every cell
    OUTPUT/*.png                     the charts and the anomaly-map grid

Example:
    >>> folder = ResultsFolder(Path("results/compare"))  # doctest: +SKIP
    >>> folder.finished(plan)  # doctest: +SKIP
    {'grad__bottle__1__seed0': CellRecord(cell=Cell(model='grad', ...), status='ok', ...)}
"""

import fcntl
import json
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from anomalib_grad.compare.cell_record import CellRecord
from anomalib_grad.compare.plan import Cell, ComparisonPlan
from anomalib_grad.writers import write_json_atomic

LOCK_FILE = ".lock"
LOCK_WAIT_S = 10.0  # a cell of a killed comparison exits within about a second (see cell.exit_with_parent)


class ResultsFolderInUseError(FileExistsError):
    """Raised when another comparison (or a cell it left running) is writing into the results folder."""


class ResultsFolder:
    """Reads and writes a comparison's results folder.

    Args:
        root: The folder (created on :meth:`claim`).
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.plan_file = self.root / "plan.json"
        self.cells_dir = self.root / "cells"

    def claim(self, plan: ComparisonPlan) -> None:
        """Use the folder for ``plan``: write the plan, or check that it runs the plan already there (or more).

        Raises:
            PlanMismatchError: If the folder holds another plan.
            FileExistsError: If the folder is not empty and holds no plan (not a comparison's folder).
        """
        if self.plan_file.is_file():
            plan.check_same_as(json.loads(self.plan_file.read_text(encoding="utf-8")), self.root)
            write_json_atomic(self.plan_file, plan.to_dict())  # the plan may add models or seeds
            return
        if self.root.is_file() or (self.root.is_dir() and any(path.name != LOCK_FILE for path in self.root.iterdir())):
            msg = f"{self.root} exists and is not a comparison's results folder (no plan.json): choose another output."
            raise FileExistsError(msg)
        self.root.mkdir(parents=True, exist_ok=True)
        write_json_atomic(self.plan_file, plan.to_dict())

    @contextmanager
    def lock(self, wait_s: float | None = None) -> Iterator[int]:
        """Hold the folder's lock while a comparison runs in it; the cells inherit it.

        The lock is an ``flock`` on ``OUTPUT/.lock``: the system releases it when the last process holding
        it ends, however it ends, so a killed comparison leaves no stale lock, and a cell process that
        outlived its comparison keeps the folder locked until it exits.

        Args:
            wait_s: How long to wait for a lock held by someone else; ``None``: :data:`LOCK_WAIT_S`.

        Yields:
            The lock file's descriptor (pass it to the cell processes).

        Raises:
            ResultsFolderInUseError: If the folder stays locked for ``wait_s``.
        """
        self.root.mkdir(parents=True, exist_ok=True)
        descriptor = os.open(self.root / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = time.monotonic() + (LOCK_WAIT_S if wait_s is None else wait_s)
            while True:
                try:
                    fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        msg = (
                            f"{self.root} is in use by another comparison (or a cell process it left running): "
                            "wait for it to finish, stop it, or choose another --output."
                        )
                        raise ResultsFolderInUseError(msg) from None
                    time.sleep(0.2)
            yield descriptor
        finally:
            os.close(descriptor)

    def record_file(self, cell: Cell) -> Path:
        """Where the record of ``cell`` is written."""
        return self.cells_dir / f"{cell.key}.json"

    def cell_dir(self, cell: Cell) -> Path:
        """The working folder of ``cell``."""
        return self.cells_dir / cell.key

    def finished(self, plan: ComparisonPlan) -> dict[str, CellRecord]:
        """Records of the plan's cells that exist, keyed by cell key (failed ones included)."""
        records = {}
        for cell in plan.cells():
            path = self.record_file(cell)
            if path.is_file():
                records[cell.key] = CellRecord.from_dict(json.loads(path.read_text(encoding="utf-8")))
        return records
