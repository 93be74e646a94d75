"""A comparison's cell dies with it; a parallel one resumes where it was killed; a folder in use is refused."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from anomalib_grad.compare import ComparisonPlan, records, run_comparison
from anomalib_grad.compare.cli import main
from anomalib_grad.compare.records import ResultsFolder, ResultsFolderInUseError
from tests.reliability_fixtures import MARKER_VARIABLE

REPO = Path(__file__).resolve().parents[2]
SLEEPING = "tests.reliability_fixtures.SleepingPadim"
FAST = {"image_size": (64, 64), "num_workers": 0, "timing_seconds": 0.2, "num_examples": 2, "openvino": False}

RUNNER = """
import sys
from pathlib import Path
from anomalib_grad.compare import ComparisonPlan, run_comparison
plan = ComparisonPlan(models={models!r}, root=sys.argv[1], categories=["rgb"], **{fast!r})
run_comparison(plan, Path(sys.argv[2]), devices={devices})
"""


def gone(process: psutil.Process) -> bool:
    try:
        return process.status() == psutil.STATUS_ZOMBIE  # exited, not reaped by its new parent yet
    except psutil.NoSuchProcess:
        return True


@pytest.mark.slow
def test_a_cell_exits_when_its_comparison_is_killed_and_the_folder_is_free_again(mixed_root, tmp_path):
    marker, output = tmp_path / "cell.pid", tmp_path / "results"
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), MARKER_VARIABLE: str(marker)}
    runner_code = RUNNER.format(models=[SLEEPING], fast=FAST, devices=1)
    command = [sys.executable, "-c", runner_code, str(mixed_root), str(output)]
    runner = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 300
    while not marker.exists():
        assert runner.poll() is None, runner.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the cell did not start"
        time.sleep(0.2)
    cell = psutil.Process(int(marker.read_text()))  # sleeps for two minutes in its model's constructor
    assert cell.ppid() == runner.pid
    try:
        runner.send_signal(signal.SIGKILL)  # kill -9 of `anomalib-grad compare`
        runner.wait()
        deadline = time.monotonic() + 30
        while not gone(cell) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert gone(cell), "the cell kept running after its comparison was killed"
        with ResultsFolder(output).lock(wait_s=5):  # a rerun may use the folder at once
            pass
    finally:
        if not gone(cell):
            cell.kill()


@pytest.mark.slow
def test_a_killed_parallel_comparison_resumes_with_only_its_unfinished_cells(mixed_root, tmp_path):
    marker, output = tmp_path / "cell.pid", tmp_path / "results"
    models = ["padim", SLEEPING]  # two cells side by side: PaDiM finishes, the sleeping one is cut off
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path), MARKER_VARIABLE: str(marker)}
    command = [sys.executable, "-c", RUNNER.format(models=models, fast=FAST, devices=2), str(mixed_root), str(output)]
    runner = subprocess.Popen(command, cwd=REPO, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    finished = output / "cells" / "padim__rgb__1__seed0.json"
    deadline = time.monotonic() + 300
    while not (marker.exists() and finished.exists()):
        assert runner.poll() is None, runner.stderr.read().decode()[-3000:]
        assert time.monotonic() < deadline, "the cells did not start"
        time.sleep(0.2)
    cell = psutil.Process(int(marker.read_text()))
    runner.send_signal(signal.SIGKILL)  # kill -9 of `anomalib-grad compare --devices 2` mid-run
    runner.wait()
    deadline = time.monotonic() + 30
    while not gone(cell) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert gone(cell)
    first = finished.read_text()
    assert sorted(path.name for path in (output / "cells").glob("*.json")) == [finished.name]  # no half record

    environment.pop(MARKER_VARIABLE)  # the rerun's sleeping model trains at once
    command[2] = RUNNER.format(models=models, fast=FAST, devices=2)
    rerun = subprocess.run(command, cwd=REPO, env=environment, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr[-3000:]
    assert finished.read_text() == first  # the finished cell was not run again
    records = ResultsFolder(output).finished(ComparisonPlan(models=models, categories=["rgb"], **FAST))
    assert sorted(record.status for record in records.values()) == ["ok", "ok"], records


def test_a_results_folder_in_use_is_refused(mixed_root, tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(records, "LOCK_WAIT_S", 0.5)
    plan = ComparisonPlan(models=["padim"], root=str(mixed_root), categories=["rgb"], **FAST)
    output = tmp_path / "results"
    with ResultsFolder(output).lock():  # another comparison runs in the folder
        with pytest.raises(ResultsFolderInUseError, match=f"{output} is in use by another comparison"):
            run_comparison(plan, output)
        arguments = ["compare", "--models", "[padim]", "--root", str(mixed_root), "--categories", "[rgb]"]
        assert main([*arguments, "--output", str(output)]) == 2
    assert "is in use by another comparison" in capsys.readouterr().err
    assert not (output / "cells").exists()  # nothing ran
