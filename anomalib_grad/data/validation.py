"""Validation of datasets stored on disk in MVTec AD layout.

The expected layout of one category is::

    ROOT/CATEGORY/
    ├── train/good/*.png                      normal training images
    ├── test/good/*.png                       normal test images (optional)
    ├── test/<defect>/<name>.png              anomalous test images, any defect names
    └── ground_truth/<defect>/<name>_mask.png one mask per anomalous test image

Masks may also be named exactly like their image (``<name>.png``). Images may be
grayscale (8- or 16-bit), RGB or RGBA and use any of :data:`IMAGE_EXTENSIONS` (case-insensitive);
files and folders whose name starts with a dot are ignored.

:func:`scan_test_folder` is the one walk of ``test/`` and ``ground_truth/`` (used by this check, by the
datamodules' sample tables and by external defects). :func:`validate_mvtec_layout` checks all of this up
front and raises a :class:`DatasetLayoutError` that names the offending path, instead of letting a
training run fail halfway with a low-level error.

Example:
    >>> validate_mvtec_layout("./datasets/MVTecAD", "bottle")  # doctest: +SKIP
"""

import logging
from dataclasses import dataclass
from pathlib import Path

from .image_io import UnreadableImageError, open_image

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
NORMAL_LABEL = "good"
MASK_SUFFIX = "_mask"

_LAYOUT_HINT = (
    "Expected MVTec AD layout: CATEGORY/train/good/<images>, CATEGORY/test/<good|defect>/<images> and "
    "CATEGORY/ground_truth/<defect>/<image name>_mask.png."
)


class DatasetLayoutError(ValueError):
    """Raised when a dataset folder does not follow the MVTec AD layout or holds unreadable files.

    Example:
        >>> raise DatasetLayoutError("Category folder 'data/tile' does not exist.")
        Traceback (most recent call last):
        ...
        anomalib_grad.data.validation.DatasetLayoutError: Category folder 'data/tile' does not exist.
    """


def _is_visible(path: Path) -> bool:
    return not path.name.startswith(".")


def list_images(folder: Path) -> list[Path]:
    """List the image files directly inside ``folder``, sorted by name.

    Hidden files (for example macOS ``._000.png`` resource forks) are skipped.

    Args:
        folder (Path): Folder to list; a missing folder yields an empty list.

    Returns:
        list[Path]: Files with one of :data:`IMAGE_EXTENSIONS` (case-insensitive).

    Example:
        >>> list_images(Path("./datasets/MVTecAD/bottle/train/good"))[:1]  # doctest: +SKIP
        [PosixPath('datasets/MVTecAD/bottle/train/good/000.png')]
    """
    if not folder.is_dir():
        return []
    return sorted(
        path
        for path in folder.iterdir()
        if _is_visible(path) and path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    )


def list_subfolders(folder: Path) -> list[Path]:
    """List the visible sub-folders of ``folder``, sorted by name (empty if ``folder`` is missing).

    Args:
        folder (Path): Folder to list.

    Returns:
        list[Path]: Sub-folders whose name does not start with a dot.

    Example:
        >>> [path.name for path in list_subfolders(Path("./datasets/MVTecAD/bottle/test"))]  # doctest: +SKIP
        ['broken_large', 'broken_small', 'contamination', 'good']
    """
    if not folder.is_dir():
        return []
    return sorted(path for path in folder.iterdir() if _is_visible(path) and path.is_dir())


def index_masks(mask_folder: Path) -> dict[str, Path]:
    """Map image stems to their mask files in one ``ground_truth/<defect>`` folder.

    ``000_mask.png`` and ``000.png`` both map to stem ``000``; when both exist the
    ``_mask`` file wins, and among extensions the earlier one in :data:`IMAGE_EXTENSIONS`.

    Args:
        mask_folder (Path): Folder holding the masks of one defect type.

    Returns:
        dict[str, Path]: Mask path for each image stem.

    Example:
        >>> index_masks(Path("./datasets/MVTecAD/bottle/ground_truth/broken_large"))["000"]  # doctest: +SKIP
        PosixPath('datasets/MVTecAD/bottle/ground_truth/broken_large/000_mask.png')
    """
    ranked: dict[str, tuple[tuple[int, int], Path]] = {}
    for mask_path in list_images(mask_folder):
        has_suffix = mask_path.stem.endswith(MASK_SUFFIX)
        stem = mask_path.stem.removesuffix(MASK_SUFFIX) if has_suffix else mask_path.stem
        rank = (0 if has_suffix else 1, IMAGE_EXTENSIONS.index(mask_path.suffix.lower()))
        if stem not in ranked or rank < ranked[stem][0]:
            ranked[stem] = (rank, mask_path)
    return {stem: mask_path for stem, (_, mask_path) in ranked.items()}


def _checked_image_size(path: Path, kind: str = "Image") -> tuple[int, int]:
    """Return ``(width, height)`` of an image file after decoding all of it (see :func:`open_image`).

    Raises:
        DatasetLayoutError: If the file is empty, not an image, corrupt or truncated (any format).
    """
    try:
        return open_image(path, kind).size
    except UnreadableImageError as error:
        raise DatasetLayoutError(str(error)) from error


def _format_size(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]} (width x height)"


@dataclass(frozen=True)
class LabelledImage:
    """One image under ``test/`` of a category folder.

    Attributes:
        label: Its folder: ``"good"`` or the defect type.
        image: The image file.
        mask: Its ground-truth mask (defective images only).
    """

    label: str
    image: Path
    mask: Path | None = None


def scan_test_folder(
    category_root: Path,
    role: str = "Anomalous test image",
    check_files: bool = False,
    defects_only: bool = False,
) -> list[LabelledImage]:
    """List the images under ``test/``, each defective one paired with ``ground_truth/<defect>/<stem>[_mask].<ext>``.

    Args:
        category_root: Category folder in MVTec AD layout (a missing ``test/`` gives no images).
        role: How an error message names a defective image, e.g. ``"External anomaly image"``.
        check_files: Also decode every image and mask in full and compare each mask's size with its image's.
        defects_only: Leave out ``test/good``.

    Returns:
        The images, by label folder then file name.

    Raises:
        DatasetLayoutError: If a defective image has no mask; with ``check_files``, also if a file is unreadable
            or a mask differs in size from its image.

    Example:
        >>> [item.label for item in scan_test_folder(Path("./datasets/MVTecAD/bottle"))][:1]  # doctest: +SKIP
        ['broken_large']
    """
    images = []
    for label_folder in list_subfolders(category_root / "test"):
        label = label_folder.name
        if label == NORMAL_LABEL and defects_only:
            continue
        mask_folder = category_root / "ground_truth" / label
        masks = {} if label == NORMAL_LABEL else index_masks(mask_folder)
        for image_path in list_images(label_folder):
            image_size = _checked_image_size(image_path) if check_files else None
            if label == NORMAL_LABEL:
                images.append(LabelledImage(label, image_path))
                continue
            mask_path = masks.get(image_path.stem)
            if mask_path is None:
                expected = mask_folder / f"{image_path.stem}{MASK_SUFFIX}.png"
                msg = (
                    f"{role} '{image_path}' has no ground-truth mask. Expected '{expected}' "
                    f"(or '{image_path.stem}' with any of {', '.join(IMAGE_EXTENSIONS)})."
                )
                raise DatasetLayoutError(msg)
            if check_files and (mask_size := _checked_image_size(mask_path, kind="Mask")) != image_size:
                msg = (
                    f"Mask '{mask_path}' has size {_format_size(mask_size)} but its image '{image_path}' has size "
                    f"{_format_size(image_size)}. Each mask must have exactly the size of its image."
                )
                raise DatasetLayoutError(msg)
            images.append(LabelledImage(label, image_path, mask_path))
    return images


def _check_folders(root: Path, category: str) -> Path:
    """Check the folder structure down to ``train/good`` and return the category folder."""
    if not root.exists():
        msg = (
            f"Dataset root '{root}' does not exist. It should contain the category folder '{category}'. {_LAYOUT_HINT}"
        )
        raise DatasetLayoutError(msg)
    if not root.is_dir():
        msg = f"Dataset root '{root}' is not a folder. {_LAYOUT_HINT}"
        raise DatasetLayoutError(msg)

    category_root = root / category
    if not category_root.is_dir():
        available = ", ".join(f"'{path.name}'" for path in list_subfolders(root)) or "none"
        msg = (
            f"Category folder '{category_root}' does not exist. "
            f"Categories found in '{root}': {available}. {_LAYOUT_HINT}"
        )
        raise DatasetLayoutError(msg)
    if not any(_is_visible(path) for path in category_root.iterdir()):
        msg = f"Category folder '{category_root}' is empty. {_LAYOUT_HINT}"
        raise DatasetLayoutError(msg)

    train_folder = category_root / "train" / NORMAL_LABEL
    if not train_folder.is_dir():
        msg = (
            f"Training folder '{train_folder}' does not exist; it must hold the normal training images. {_LAYOUT_HINT}"
        )
        raise DatasetLayoutError(msg)
    if not list_images(train_folder):
        msg = (
            f"Training folder '{train_folder}' contains no images. "
            f"Supported extensions (case-insensitive): {', '.join(IMAGE_EXTENSIONS)}."
        )
        raise DatasetLayoutError(msg)
    return category_root


def validate_mvtec_layout(root: str | Path, category: str) -> None:
    """Check that ``root / category`` is a readable dataset in MVTec AD layout.

    Every image and mask is decoded in full (any format: a truncated JPEG is caught too), 16-bit
    and 32-bit images as they will be read for training. Each anomalous test image must have a mask of the same size in
    ``ground_truth/<defect>/``. A missing ``test`` folder is allowed (anomalib then samples normal
    test images from the training set) but logged as a warning.

    Args:
        root (str | Path): Dataset root folder that contains the category folder.
        category (str): Name of the category folder, for example ``"bottle"`` or ``"magnetic_tile"``.

    Raises:
        DatasetLayoutError: If the root or category folder is missing, the category folder is empty,
            ``train/good`` is missing or holds no images, an anomalous test image has no mask, a mask
            differs in size from its image, or an image or mask file is empty or unreadable. The
            message names the offending path and what was expected.

    Example:
        >>> validate_mvtec_layout("./datasets/MVTecAD", "bottle")  # doctest: +SKIP
        >>> validate_mvtec_layout("./datasets/MVTecAD", "botle")  # doctest: +SKIP
        Traceback (most recent call last):
        ...
        DatasetLayoutError: Category folder 'datasets/MVTecAD/botle' does not exist. Categories found in ...
    """
    root = Path(root).expanduser()
    category_root = _check_folders(root, category)

    for image_path in list_images(category_root / "train" / NORMAL_LABEL):
        _checked_image_size(image_path)

    test_root = category_root / "test"
    if not test_root.is_dir():
        logger.warning("No test folder '%s': normal test images will be sampled from the training set.", test_root)
        return
    scan_test_folder(category_root, check_files=True)
