"""How anomalib-grad writes files: atomically, JSON without NaN, and Markdown tables.

Every report, record, table and chart of the package is written through :func:`atomic_path`: to a
temporary file beside the target, renamed over it when complete, so a reader (or a resumed run) sees the
old file or the new one, never half of one.

Example:
    >>> import json, tempfile
    >>> from pathlib import Path
    >>> path = Path(tempfile.mkdtemp()) / "record.json"
    >>> write_json_atomic(path, {"auroc": float("nan"), "aupr": 0.5})
    >>> json.loads(path.read_text())
    {'auroc': None, 'aupr': 0.5}
    >>> print(markdown_table([{"model": "grad", "auroc": 0.98765}], ("model", "auroc")))
    | model | auroc |
    |---|---|
    | grad | 0.9877 |
"""

import csv
import json
import math
import tempfile
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it over ``path`` once the block succeeds.

    The temporary file is hidden and ends in ``.tmp`` (``.NAME.XXXX.tmp``), so no reader that looks for
    ``*.json`` or ``*.png`` ever takes it for a finished file.

    Args:
        path: The file to (re)write; its folder is created if needed.

    Yields:
        The temporary path to write to. It is removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False) as file:
        temporary = Path(file.name)
    try:
        yield temporary
        temporary.chmod(0o644)  # a temporary file is private (0600); the result is an ordinary report file
        temporary.replace(path)
    finally:
        temporary.unlink(missing_ok=True)


def write_text_atomic(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`)."""
    with atomic_path(path) as temporary:
        temporary.write_text(text, encoding="utf-8")


def json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities (at any depth of dicts, lists and tuples) replaced by ``None``.

    Example:
        >>> json_safe({"a": [1.0, float("inf")], "b": float("nan")})
        {'a': [1.0, None], 'b': None}
    """
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: json_safe(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(item) for item in value]
    return value


def write_json_atomic(path: Path, data: Any) -> None:
    """Write ``data`` as indented JSON (NaN as ``null``) to ``path`` atomically."""
    write_text_atomic(path, json.dumps(json_safe(data), indent=2))


def write_csv_atomic(path: Path, rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> None:
    """Write ``rows`` as CSV with the header ``columns`` (other keys ignored) to ``path`` atomically."""
    with atomic_path(path) as temporary, temporary.open("w", newline="", encoding="utf-8") as file:
        writer = csv.DictWriter(file, fieldnames=list(columns), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def format_value(row: dict[str, Any], column: str) -> str:
    """A table cell: floats to 4 decimals, anything else as text."""
    value = row.get(column, "")
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def markdown_table(
    rows: Sequence[dict[str, Any]],
    columns: Sequence[str],
    cell: Callable[[dict[str, Any], str], str] = format_value,
) -> str:
    """Format ``rows`` as a Markdown table of ``columns``.

    Args:
        rows: One dict per row.
        columns: Column names, in order (also the header).
        cell: Formats the value of one column of one row (default :func:`format_value`).

    Returns:
        The table, without a trailing newline.
    """
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row, column) for column in columns) + " |" for row in rows]
    return "\n".join(lines)
