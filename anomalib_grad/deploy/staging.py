"""Staged, atomic publication of exported models; staging left by a killed export is removed.

An export writes into a hidden staging folder beside its destination,
``weights/<type>/.export-<pid>-<random>/``, temporary files (the ONNX file of an OpenVINO
export) included, and moves the files into place at the end: old model files out first, the
new model file (``.xml``, ``.onnx``, ``.pt``) last. An interrupted export therefore leaves no
file that looks like a valid model, and the previous export intact. A killed one (``kill -9``)
leaves its staging folder; the next export into the same destination removes every staging
folder whose process no longer runs.

Example:
    >>> with staged_export("results", ExportType.ONNX) as staging:  # doctest: +SKIP
    ...     write_files(staging / "weights" / "onnx")
"""

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
from anomalib.deploy import ExportType

MODEL_SUFFIXES = (".xml", ".onnx", ".pt")
STAGING_PREFIX = ".export-"


def staging_owner(folder: Path) -> int | None:
    """The process id in a staging folder's name (``.export-<pid>-<random>``), or ``None``.

    Args:
        folder: A staging folder.

    Returns:
        The pid of the export that made it; ``None`` for other names (older versions').

    Example:
        >>> staging_owner(Path(".export-1234-ab_cd"))
        1234
    """
    pid = folder.name.removeprefix(STAGING_PREFIX).split("-", 1)[0]
    return int(pid) if pid.isdigit() else None


def remove_stale_staging(destination: Path) -> list[Path]:
    """Remove the staging folders of exports that are no longer running.

    Args:
        destination: An export's ``weights/<type>`` folder.

    Returns:
        The folders removed.
    """
    removed = []
    for folder in destination.glob(f"{STAGING_PREFIX}*"):
        pid = staging_owner(folder)
        if folder.is_dir() and (pid is None or not psutil.pid_exists(pid)):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


@contextmanager
def staged_export(export_root: Path | str, export_type: ExportType) -> Iterator[Path]:
    """Stage an export beside its destination and publish it only when it completed.

    Args:
        export_root: The export's root folder (created when missing).
        export_type: Decides the ``weights/<type>`` sub-folder.

    Yields:
        A staging root to export into (as if it were ``export_root``).

    Raises:
        NotADirectoryError: If ``export_root`` or a parent is a file.
    """
    destination = Path(export_root) / "weights" / export_type.value
    try:
        destination.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError) as error:
        msg = f"Cannot export to {destination}: {error.filename} is a file, not a folder."
        raise NotADirectoryError(msg) from error
    remove_stale_staging(destination)
    staging = Path(tempfile.mkdtemp(prefix=f"{STAGING_PREFIX}{os.getpid()}-", dir=destination))
    try:
        yield staging
        publish(staging / "weights" / export_type.value, destination)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def publish(source: Path, destination: Path) -> None:
    """Move exported files into place: old model files out first, new model files in last.

    Args:
        source: Folder holding the complete export.
        destination: Final folder (same file system).
    """
    files = sorted(source.iterdir(), key=lambda path: path.suffix in MODEL_SUFFIXES)
    for path in files:
        if path.suffix in MODEL_SUFFIXES:
            (destination / path.name).unlink(missing_ok=True)
    for path in files:
        path.replace(destination / path.name)


def exported_path(export_root: Path | str, export_type: ExportType, file_name: str) -> Path:
    """Path of an exported model file.

    Args:
        export_root: The export's root folder.
        export_type: Export format.
        file_name: Model file name.

    Returns:
        ``<export_root>/weights/<type>/<file_name>``.
    """
    return Path(export_root) / "weights" / export_type.value / file_name
