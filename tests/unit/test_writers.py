"""The shared writers: atomic replacement, JSON without NaN, CSV and Markdown tables."""

import csv
import json
from pathlib import Path

import pytest

from anomalib_grad.writers import atomic_path, markdown_table, write_csv_atomic, write_json_atomic


def test_atomic_json_write_replaces_the_file_and_keeps_it_readable(tmp_path: Path) -> None:
    path = tmp_path / "record.json"
    write_json_atomic(path, {"auroc": float("nan")})
    assert json.loads(path.read_text()) == {"auroc": None}  # JSON has no NaN
    write_json_atomic(path, {"auroc": 0.5})
    assert json.loads(path.read_text()) == {"auroc": 0.5}
    assert path.stat().st_mode & 0o777 == 0o644
    assert [file.name for file in tmp_path.iterdir()] == ["record.json"]  # no temporary left behind


def test_a_write_that_fails_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "report.md"
    path.write_text("old report")
    seen = []

    def fail_half_way() -> None:
        with atomic_path(path) as temporary:
            temporary.write_text("half a rep")
            seen.append(temporary.name)
            raise RuntimeError("disk full")

    with pytest.raises(RuntimeError, match="disk full"):
        fail_half_way()
    assert seen[0].startswith(".report.md.") and seen[0].endswith(".tmp")  # never matches *.md
    assert path.read_text() == "old report"
    assert [file.name for file in tmp_path.iterdir()] == ["report.md"]


def test_csv_keeps_the_given_columns_in_order(tmp_path: Path) -> None:
    path = tmp_path / "table.csv"
    write_csv_atomic(path, [{"b": 2, "a": 1, "extra": 3}], ["a", "b"])
    with path.open(newline="") as file:
        assert list(csv.reader(file)) == [["a", "b"], ["1", "2"]]


def test_markdown_table_formats_each_cell():
    rows = [{"name": "x|y", "value": 0.123456, "count": 3}]
    assert markdown_table(rows, ["name", "value", "count"]).splitlines() == [
        "| name | value | count |",
        "|---|---|---|",
        "| x|y | 0.1235 | 3 |",
    ]
    custom = markdown_table(rows, ["value"], cell=lambda row, column: f"{row[column]:.1f}")
    assert custom.splitlines()[-1] == "| 0.1 |"
