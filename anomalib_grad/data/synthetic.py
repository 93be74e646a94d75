"""Built-in synthetic anomaly detection dataset: textured surfaces with realistic defects.

This module renders a small, fully deterministic dataset of brushed-metal-like
surfaces and writes it once to disk in MVTec AD layout, so that models can be
trained and tested without downloading anything::

    ROOT/CATEGORY/
    ├── train/good/000.png ...
    ├── test/good/000.png ...
    ├── test/{scratch,spot,crack}/000.png ...
    └── ground_truth/{scratch,spot,crack}/000_mask.png ...

The samples are rendered by :mod:`anomalib_grad.data.synthetic_render`. Generation is atomic
(see :func:`generate_synthetic_surfaces`).

Example:
    >>> import tempfile
    >>> from pathlib import Path
    >>> category_root = generate_synthetic_surfaces(Path(tempfile.mkdtemp()) / "datasets")
    >>> sorted(path.name for path in (category_root / "test").iterdir())
    ['crack', 'good', 'scratch', 'spot']
"""

import json
import logging
import os
import shutil
import tempfile
from pathlib import Path

from PIL import Image

from .synthetic_render import DEFECT_TYPES, SyntheticSample, render_sample

__all__ = ["DEFECT_TYPES", "SyntheticSample", "default_cache_root", "generate_synthetic_surfaces", "render_sample"]

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
COMPLETE_MARKER = ".complete"
PARAMETERS_FILE = "generation.json"
CACHE_ENV_VARIABLE = "ANOMALIB_GRAD_CACHE"


def default_cache_root() -> Path:
    """Return the folder that holds generated datasets.

    Returns:
        Path: ``$ANOMALIB_GRAD_CACHE`` if that variable is set and non-empty, otherwise
        ``~/.cache/anomalib_grad/datasets``.

    Example:
        >>> default_cache_root().name
        'datasets'
    """
    configured = os.environ.get(CACHE_ENV_VARIABLE)
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "anomalib_grad" / "datasets"


def _read_parameters(category_root: Path) -> dict | None:
    try:
        return json.loads((category_root / PARAMETERS_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(category_root: Path, parameters: dict) -> bool:
    marker = category_root / COMPLETE_MARKER
    return (
        marker.is_file()
        and marker.read_text(encoding="utf-8").strip() == str(FORMAT_VERSION)
        and _read_parameters(category_root) == parameters
    )


def _layout(parameters: dict) -> list[tuple[str, str, int, Path, Path | None]]:
    """List ``(split, label, index, image path, mask path or None)`` of every sample, relative to the category."""
    counts = [("train", "good", parameters["num_train"]), ("test", "good", parameters["num_test_good"])]
    counts += [("test", defect, parameters["num_test_per_defect"]) for defect in DEFECT_TYPES]
    entries = []
    for split, label, count in counts:
        width = max(3, len(str(count - 1)))
        for index in range(count):
            mask = None if label == "good" else Path("ground_truth", label, f"{index:0{width}d}_mask.png")
            entries.append((split, label, index, Path(split, label, f"{index:0{width}d}.png"), mask))
    return entries


def _write_dataset(target: Path, parameters: dict) -> None:
    """Render every sample described by ``parameters`` into the empty folder ``target``."""
    for split, label, index, image_path, mask_path in _layout(parameters):
        sample = render_sample(parameters["seed"], split, label, index, parameters["image_size"])
        (target / image_path).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(sample.image, mode="RGB").save(target / image_path, compress_level=1)
        if mask_path is not None and sample.mask is not None:
            (target / mask_path).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(sample.mask, mode="L").save(target / mask_path, compress_level=1)
    (target / PARAMETERS_FILE).write_text(json.dumps(parameters, indent=2) + "\n", encoding="utf-8")


def generate_synthetic_surfaces(
    root: Path,
    category: str = "textured_surface",
    seed: int = 0,
    image_size: int = 256,
    num_train: int = 60,
    num_test_good: int = 15,
    num_test_per_defect: int = 8,
) -> Path:
    """Write the synthetic textured-surface dataset to ``root / category`` unless it is already there.

    The dataset is rendered into a temporary sibling folder, renamed into place and only then
    marked complete with a ``.complete`` file. An existing complete folder generated with the
    same parameters is reused as is; one generated with other parameters, or unmarked and missing
    files, is replaced. The same arguments always produce byte-identical files.

    Args:
        root (Path): Dataset root folder; created if missing.
        category (str): Name of the category folder. Defaults to ``"textured_surface"``.
        seed (int): Seed of the generator. Defaults to ``0``.
        image_size (int): Side length of the square images in pixels. Defaults to ``256``.
        num_train (int): Number of defect-free training images. Defaults to ``60``.
        num_test_good (int): Number of defect-free test images. Defaults to ``15``.
        num_test_per_defect (int): Number of test images per defect type. Defaults to ``8``.

    Returns:
        Path: The category folder, ``root / category``.

    Raises:
        ValueError: If a count is negative, ``num_train`` is zero or ``image_size`` is below 32.
        FileExistsError: If ``root / category`` exists, is not empty and was not created by this function.

    Example:
        >>> category_root = generate_synthetic_surfaces(Path("/tmp/surfaces"), seed=1)
        >>> len(list((category_root / "train" / "good").glob("*.png")))
        60
    """
    if image_size < 32 or num_train < 1 or min(num_test_good, num_test_per_defect) < 0:
        msg = (
            "Expected image_size >= 32, num_train >= 1 and non-negative test counts, got "
            f"image_size={image_size}, num_train={num_train}, num_test_good={num_test_good}, "
            f"num_test_per_defect={num_test_per_defect}."
        )
        raise ValueError(msg)
    root = Path(root).expanduser()
    category_root = root / category
    parameters: dict[str, object] = {
        "format_version": FORMAT_VERSION,
        "seed": seed,
        "image_size": image_size,
        "num_train": num_train,
        "num_test_good": num_test_good,
        "num_test_per_defect": num_test_per_defect,
        "defect_types": list(DEFECT_TYPES),
    }
    if _is_complete(category_root, parameters):
        return category_root
    existing_parameters = _read_parameters(category_root)
    if existing_parameters is None and category_root.exists() and any(category_root.iterdir()):
        msg = (
            f"'{category_root}' exists but was not created by generate_synthetic_surfaces (no '{PARAMETERS_FILE}'). "
            "Refusing to overwrite it: choose another root or category, or delete the folder."
        )
        raise FileExistsError(msg)
    if existing_parameters == parameters and all(
        (category_root / path).is_file() for entry in _layout(parameters) for path in entry[3:] if path is not None
    ):
        # Renamed into place but not yet marked, by a concurrent run or one that died in between.
        (category_root / COMPLETE_MARKER).write_text(f"{FORMAT_VERSION}\n", encoding="utf-8")
        return category_root

    root.mkdir(parents=True, exist_ok=True)
    logger.info("Generating synthetic dataset in %s (seed=%d).", category_root, seed)
    staging = Path(tempfile.mkdtemp(prefix=f".{category}.partial-", dir=root))
    staging.chmod(0o755)  # mkdtemp creates private (0o700) folders; the dataset is meant to be shared.
    retired: Path | None = None
    try:
        _write_dataset(staging, parameters)
        if category_root.exists():  # Output of this function with other parameters or missing files.
            retired = Path(tempfile.mkdtemp(prefix=f".{category}.retired-", dir=root))
            category_root.replace(retired / category)
        try:
            staging.replace(category_root)
        except OSError:
            # Another process renamed its copy into place first; identical parameters give identical files.
            if _read_parameters(category_root) != parameters:
                raise
    finally:
        for leftover in (staging, retired):
            if leftover is not None and leftover.exists():
                shutil.rmtree(leftover, ignore_errors=True)
    (category_root / COMPLETE_MARKER).write_text(f"{FORMAT_VERSION}\n", encoding="utf-8")
    return category_root
