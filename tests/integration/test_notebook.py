"""The quick-start notebook: stored without outputs, and runs top to bottom with sensible results."""

import json
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "01_grad_quickstart.ipynb"
SUMMARY_PREFIX = "SUMMARY "


def read_notebook() -> nbformat.NotebookNode:
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    nbformat.validate(notebook)
    return notebook


def test_notebook_is_stored_without_outputs():
    code_cells = [cell for cell in read_notebook().cells if cell.cell_type == "code"]
    assert code_cells
    for index, cell in enumerate(code_cells):
        assert cell.outputs == [], f"code cell {index} has outputs: strip them before committing"
        assert cell.execution_count is None, f"code cell {index} has an execution count"


def summary_of(notebook: nbformat.NotebookNode) -> dict:
    """The JSON line the last code cell prints."""
    last = [cell for cell in notebook.cells if cell.cell_type == "code"][-1]
    text = "".join(output.get("text", "") for output in last.outputs if output.output_type == "stream")
    lines = [line for line in text.splitlines() if line.startswith(SUMMARY_PREFIX)]
    assert len(lines) == 1, text
    return json.loads(lines[0].removeprefix(SUMMARY_PREFIX))


@pytest.mark.slow
def test_notebook_runs_top_to_bottom(tmp_path, monkeypatch):
    # Built-in data, generated into a fresh cache; every output of the notebook goes under tmp_path.
    for name in ("GRAD_DATA_ROOT", "GRAD_CATEGORY", "GRAD_NOTEBOOK_WORKDIR", "MPLBACKEND"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ANOMALIB_GRAD_CACHE", str(tmp_path / "cache"))
    notebook = read_notebook()
    client = nbclient.NotebookClient(
        notebook, timeout=1800, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    )
    client.execute()  # raises CellExecutionError, naming the cell, if any cell raises

    outputs = [output for cell in notebook.cells if cell.cell_type == "code" for output in cell.outputs]
    assert not [output for output in outputs if output.output_type == "error"]
    figures = [output for output in outputs if "image/png" in output.get("data", {})]
    assert len(figures) >= 4  # FBP block, anomaly maps, score histogram, torch vs OpenVINO maps

    summary = summary_of(notebook)
    assert Path(summary["python_prefix"]) == Path(sys.prefix)  # the kernel ran this environment
    assert summary["grad_image_AUROC"] >= 0.9
    assert summary["grad_pixel_AUROC"] >= 0.9
    assert 0 <= summary["patchcore_image_AUROC"] <= 1
    assert summary["map_range"] > 0
    assert summary["openvino_max_map_difference"] < 1e-3 * summary["map_range"]

    workdir = tmp_path / "results" / "notebook"
    assert (workdir / "export" / "weights" / "openvino" / "model.xml").is_file()
    assert (workdir / "openvino_cache").is_dir()  # the inferencer's cache stays in the work folder
