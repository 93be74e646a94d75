"""Run a comparison: every cell of the plan in its own process, resumable, with a progress bar.

Before anything trains, the model names and the categories are checked (a typo or an empty category
fails at once, not an hour later). Each cell runs as ``python -m anomalib_grad.compare.cell`` and writes
its record when it ends; a cell that fails, or whose process dies, is recorded as failed and the
comparison goes on. Running the same plan into the same folder again skips the cells already done
(failed ones are tried again); a folder of another plan is refused. The report and the charts are
rewritten after every cell. A folder is locked while a comparison runs in it (a second one is refused),
and a cell exits when the comparison that started it dies.

Example:
    >>> from anomalib_grad.compare import ComparisonPlan, run_comparison
    >>> plan = ComparisonPlan(models=["grad", "patchcore", "padim"], root="../shared/data/real",
    ...                       categories=["bottle"], model_args={"patchcore": {"coreset_sampling_ratio": 0.01}})
    >>> outputs = run_comparison(plan, Path("results/compare"))  # doctest: +SKIP
    >>> sorted(outputs)  # doctest: +SKIP
    ['bubble_chart', 'csv', 'json', 'md', 'map_grid']
"""

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor, as_completed
from pathlib import Path
from queue import Queue
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from anomalib_grad.compare.cell import EXAMPLES_FILE, PARENT_PID_VARIABLE
from anomalib_grad.compare.cell_record import CellRecord
from anomalib_grad.compare.charts import anomaly_map_grid, bubble_chart, scaling_chart
from anomalib_grad.compare.data import check_categories
from anomalib_grad.compare.models import check_model_names
from anomalib_grad.compare.plan import Cell, ComparisonPlan
from anomalib_grad.compare.records import ResultsFolder, write_json_atomic
from anomalib_grad.compare.report import build_tables, write_report

LOG_TAIL_LINES = 5


def _child_environment(device_environment: dict[str, str] | None = None) -> dict[str, str]:
    """This interpreter's import path for the cell process, so it imports what the runner imports.

    It also names this process, so that the cell exits when it dies
    (:func:`~anomalib_grad.compare.cell.exit_with_parent`), and adds ``device_environment`` (the device slot).
    """
    environment = dict(os.environ) | (device_environment or {})
    environment["PYTHONPATH"] = os.pathsep.join(path for path in sys.path if path)
    environment[PARENT_PID_VARIABLE] = str(os.getpid())
    return environment


def run_cell_process(
    plan_file: Path,
    cell: Cell,
    folder: ResultsFolder,
    lock: int | None = None,
    device_environment: dict[str, str] | None = None,
) -> CellRecord:
    """Run one cell in a new Python process and return its record (a failure record if it wrote none).

    The cell inherits the results folder's lock (``lock``, a file descriptor), so the folder stays locked
    for as long as the cell runs, and exits by itself if this process dies. ``device_environment`` is added
    to its environment (which GPU, or how many CPU threads, it may use).
    """
    cell_dir, record_file = folder.cell_dir(cell), folder.record_file(cell)
    cell_dir.mkdir(parents=True, exist_ok=True)
    record_file.unlink(missing_ok=True)
    log_file = cell_dir / "log.txt"
    command = [
        sys.executable,
        "-m",
        "anomalib_grad.compare.cell",
        str(plan_file),
        json.dumps(cell.__dict__),
        str(cell_dir),
        str(record_file),
    ]
    with log_file.open("w", encoding="utf-8") as log:
        process = subprocess.run(
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=_child_environment(device_environment),
            pass_fds=() if lock is None else (lock,),
            check=False,
        )
    if record_file.is_file():
        return CellRecord.from_dict(json.loads(record_file.read_text(encoding="utf-8")))
    tail = log_file.read_text(encoding="utf-8", errors="replace").strip().splitlines()[-LOG_TAIL_LINES:]
    reason = "killed (out of memory?)" if process.returncode < 0 else f"exit code {process.returncode}"
    record = CellRecord.failure(cell, f"process {reason}: {' / '.join(tail)}")
    write_json_atomic(record_file, record.to_dict())
    return record


def load_examples(plan: ComparisonPlan, folder: ResultsFolder, records: dict[str, CellRecord]) -> dict:
    """The anomaly-map grid's arrays per model, from the successful full-fraction cells, group by group."""
    examples: dict[str, dict[str, Any]] = {}
    for model in plan.models:
        parts = []
        for group in plan.training_groups:
            cell = Cell(model, group, plan.full_fraction, plan.seeds[0])
            path = folder.cell_dir(cell) / EXAMPLES_FILE
            record = records.get(cell.key)
            if record is not None and record.ok and path.is_file():
                with np.load(path) as arrays:
                    parts.append(({name: arrays[name] for name in arrays.files}, record.examples))
        if len(parts) == len(plan.training_groups):
            examples[model] = {
                name: np.concatenate([part[0][name] for part in parts]) for name in ("images", "masks", "maps")
            }
            examples[model]["described"] = [item for part in parts for item in part[1]]
    return examples


def write_outputs(plan: ComparisonPlan, folder: ResultsFolder) -> dict[str, Path]:
    """Rewrite the report and the charts from the records on disk."""
    records = folder.finished(plan)
    outputs = write_report(plan, records, folder.root)
    tables = build_tables(plan, records)
    charts = {
        "bubble_chart": bubble_chart(tables["summary"], folder.root / "bubble_chart.png"),
        "map_grid": anomaly_map_grid(load_examples(plan, folder, records), folder.root / "anomaly_maps.png"),
        "scaling_chart": scaling_chart(tables["scaling"], folder.root / "scaling.png"),
    }
    return outputs | {name: path for name, path in charts.items() if path is not None}


def _summary_line(cell: Cell, record: CellRecord, seconds: float) -> str:
    if not record.ok:
        return f"{cell.key}: FAILED after {seconds:.0f} s: {record.error}"
    mean = record.rows[-1]
    return (
        f"{cell.key}: image AUROC {mean['image_AUROC']:.4f}, pixel AUROC {mean['pixel_AUROC']:.4f}, "
        f"trained in {record.fit_s:.0f} s, {record.torch['images_per_s']:.1f} img/s torch ({seconds:.0f} s)"
    )


def run_comparison(plan: ComparisonPlan, output: Path, devices: int = 1) -> dict[str, Path]:
    """Run (or resume) the comparison and write its report.

    Args:
        plan: What to compare.
        output: Results folder (new, or one this plan wrote before).
        devices: Cells run at once, one per GPU (``CUDA_VISIBLE_DEVICES``) or, on a CPU, side by side on its cores
            (each with torch's usual thread count, as one cell alone would have, so that it computes the same
            numbers). Records are those of a sequential run, timings aside: parallel cells share the machine.

    Returns:
        The report's files by kind (``md``, ``csv``, ``json``, ``bubble_chart``, ``map_grid``, ``scaling_chart``).

    Raises:
        UnknownModelNameError: For a model name that does not resolve.
        ComparisonDataError: For a category that is missing or empty.
        PlanMismatchError: If ``output`` holds another plan's results.
        ResultsFolderInUseError: If another comparison is running in ``output``.
        ValueError: If ``devices`` is below 1 or more than the machine has.
    """
    slots = device_slots(devices, plan.accelerator)
    check_model_names([plan.base_model(model) for model in plan.models])
    folder = ResultsFolder(output)
    with folder.lock() as lock:
        folder.claim(plan)
        check_categories(plan)
        finished = {key for key, record in folder.finished(plan).items() if record.ok}
        pending = [cell for cell in plan.cells() if cell.key not in finished]
        if finished:
            print(f"Resuming {output}: {len(finished)} of {len(plan.cells())} cells already done.", flush=True)
        durations: list[float] = []
        columns = [
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TextColumn("{task.fields[eta]}"),
        ]
        with Progress(*columns) as progress:
            task = progress.add_task("comparison", total=len(plan.cells()), completed=len(finished), eta="")
            cells = _run_cells(pending, slots, folder, lock, progress, task)
            for index, (cell, record, seconds) in enumerate(cells):
                durations.append(seconds)
                remaining = (len(pending) - index - 1) * sum(durations) / len(durations) / len(slots)
                progress.update(task, advance=1, eta=f"~{remaining / 60:.0f} min left" if remaining else "")
                progress.console.print(_summary_line(cell, record, seconds))
                write_outputs(plan, folder)
        return write_outputs(plan, folder)


def device_slots(devices: int, accelerator: str) -> list[dict[str, str]]:
    """The environment of each of ``devices`` parallel cell processes.

    Args:
        devices: Number of cells to run at once.
        accelerator: The plan's accelerator: on a GPU each slot sees one GPU; on a CPU, the whole machine.

    Returns:
        One environment mapping per slot (empty where the cell sees the whole machine).

    Raises:
        ValueError: If ``devices`` is below 1 or more than the GPUs (or CPU cores) present.
    """
    if devices < 1:
        msg = f"--devices must be at least 1, got {devices}."
        raise ValueError(msg)
    if devices == 1:
        return [{}]
    if accelerator in {"gpu", "cuda"} or (accelerator == "auto" and torch.cuda.is_available()):
        present = torch.cuda.device_count()
        if devices > present:
            msg = f"--devices {devices} but this machine has {present} GPU(s): use at most {present}."
            raise ValueError(msg)
        return [{"CUDA_VISIBLE_DEVICES": str(index)} for index in range(devices)]
    cores = os.cpu_count() or 1
    if devices > cores:
        msg = f"--devices {devices} but this machine has {cores} CPU core(s): use at most {cores}."
        raise ValueError(msg)
    return [{}] * devices  # CPU cells keep torch's thread count: their numbers equal a sequential run's


def _run_cells(
    cells: list[Cell],
    slots: list[dict[str, str]],
    folder: ResultsFolder,
    lock: int | None,
    progress: Progress,
    task: TaskID,
) -> Iterator[tuple[Cell, CellRecord, float]]:
    """Run ``cells`` on ``slots`` (one at a time per slot) and yield ``(cell, record, seconds)`` as each ends."""
    free: Queue[dict[str, str]] = Queue()
    for slot in slots:
        free.put(slot)

    def run(cell: Cell) -> tuple[Cell, CellRecord, float]:
        slot = free.get()
        try:
            start = time.perf_counter()
            record = run_cell_process(folder.plan_file, cell, folder, lock, slot)
            return cell, record, time.perf_counter() - start
        finally:
            free.put(slot)

    if len(slots) == 1:
        for cell in cells:
            progress.update(task, description=f"{cell.model} / {cell.category} / {cell.fraction:g}")
            yield run(cell)
        return
    progress.update(task, description=f"{len(slots)} cells at a time")
    with ThreadPoolExecutor(max_workers=len(slots)) as pool:
        yield from (future.result() for future in as_completed([pool.submit(run, cell) for cell in cells]))
