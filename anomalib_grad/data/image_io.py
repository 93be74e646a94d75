"""Reading images of any bit depth, with errors that name the file.

anomalib reads every image with ``PIL.Image.open(path).convert("RGB")``. For 16-bit grayscale
(``I;16``) and 32-bit (``I``, ``F``) images that conversion clips every value above 255, so a
normal 16-bit image becomes pure white; and a truncated file fails deep inside a data loader
with ``OSError: image file is truncated`` and no file name. :func:`open_image` decodes the
whole file, scales 16-bit values (and 32-bit integers up to 65535) by 255/65535 and 32-bit
floats in [0, 1] by 255 to 8-bit, and raises :class:`UnreadableImageError` naming the file.

:func:`install_image_reader` (run when :mod:`anomalib_grad` is imported) points anomalib's
``read_image`` — used by its datasets, ``PredictDataset`` and inferencers — at :func:`read_image`
below, so training, testing and prediction read images alike; 8-bit images come out exactly
as before.

Example:
    >>> import numpy as np
    >>> from PIL import Image
    >>> Image.fromarray(np.array([[0, 257, 65535]], dtype=np.uint16)).save("gray16.png")  # doctest: +SKIP
    >>> read_image("gray16.png")[0, :, 0] * 255  # doctest: +SKIP
    array([  0.,   1., 255.])
"""

import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torchvision.transforms.v2.functional import to_dtype, to_image

SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N")
SIXTEEN_BIT_MAX = 65535
READ_ERRORS = (OSError, SyntaxError, ValueError, UnidentifiedImageError, Image.DecompressionBombError)


class UnreadableImageError(ValueError):
    """Raised when an image file is empty, corrupt, truncated or holds values that cannot be scaled.

    Example:
        >>> raise UnreadableImageError("Image file 'a.jpg' is corrupt or not a readable image.")
        Traceback (most recent call last):
        ...
        anomalib_grad.data.image_io.UnreadableImageError: Image file 'a.jpg' is corrupt or not a readable image.
    """


def _value_range_error(path: Path, image: Image.Image, values: np.ndarray, valid: str) -> UnreadableImageError:
    kind = "32-bit float" if image.mode == "F" else "32-bit integer"
    low, high = np.nanmin(values), np.nanmax(values)
    msg = (
        f"Image file '{path}' is a {kind} image with values in [{low:g}, {high:g}] (or NaN); {kind} images "
        f"must hold values in {valid}. Save it as an 8- or 16-bit image."
    )
    return UnreadableImageError(msg)


def to_8_bit(image: Image.Image, path: str | Path = "<image>") -> Image.Image:
    """Scale a 16-bit or 32-bit image to an 8-bit grayscale image; other modes are returned unchanged.

    Args:
        image: A decoded PIL image.
        path: Its file, for error messages.

    Returns:
        An ``L`` image with ``round(v · 255 / 65535)`` for 16-bit values (and 32-bit integers in
        0..65535) and ``round(v · 255)`` for 32-bit floats in [0, 1]; the image itself for other modes.

    Raises:
        UnreadableImageError: For 32-bit values outside those ranges.

    Example:
        >>> import numpy as np
        >>> from PIL import Image
        >>> np.asarray(to_8_bit(Image.fromarray(np.array([[0, 128, 129, 65535]], dtype=np.uint16))))
        array([[  0,   0,   1, 255]], dtype=uint8)
    """
    if image.mode not in (*SIXTEEN_BIT_MODES, "I", "F"):
        return image
    values = np.asarray(image)
    if image.mode == "F":
        if not (np.isfinite(values).all() and values.min() >= 0 and values.max() <= 1):
            raise _value_range_error(Path(path), image, values, "[0, 1]")
        scaled = np.rint(values * 255.0)
    else:
        if image.mode == "I" and (values.min() < 0 or values.max() > SIXTEEN_BIT_MAX):
            raise _value_range_error(Path(path), image, values, f"0..{SIXTEEN_BIT_MAX} (16-bit)")
        scaled = (values.astype(np.int64) * 255 + SIXTEEN_BIT_MAX // 2) // SIXTEEN_BIT_MAX
    return Image.fromarray(scaled.astype(np.uint8), mode="L")


def open_image(path: str | Path, kind: str = "Image") -> Image.Image:
    """Open and fully decode an image file (every format, JPEG included) as an 8-bit image.

    Args:
        path: The file.
        kind: What the file is (``"Image"``, ``"Mask"``), for error messages.

    Returns:
        The decoded image; 16- and 32-bit images scaled to 8 bits (see :func:`to_8_bit`).

    Raises:
        UnreadableImageError: If the file is empty, not an image, corrupt or truncated; the message names it.

    Example:
        >>> open_image("./datasets/MVTecAD/bottle/train/good/000.png").mode  # doctest: +SKIP
        'RGB'
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            msg = f"{kind} file '{path}' is empty (0 bytes). Replace or delete it."
            raise UnreadableImageError(msg)
        image = Image.open(path)
        image.load()
    except UnreadableImageError:
        raise
    except READ_ERRORS as error:
        msg = f"{kind} file '{path}' is corrupt or not a readable image ({type(error).__name__}: {error})."
        raise UnreadableImageError(msg) from error
    return to_8_bit(image, path)


def read_image(path: str | Path, as_tensor: bool = False) -> torch.Tensor | np.ndarray:
    """Read an image as RGB in [0, 1], like :func:`anomalib.data.utils.read_image`, at any bit depth.

    Args:
        path: The image file.
        as_tensor: Return a ``(3, H, W)`` float tensor instead of an ``(H, W, 3)`` array.

    Returns:
        The image scaled to [0, 1].

    Raises:
        UnreadableImageError: If the file cannot be read; the message names it.

    Example:
        >>> read_image("./datasets/MVTecAD/bottle/train/good/000.png", as_tensor=True).shape  # doctest: +SKIP
        torch.Size([3, 900, 900])
    """
    image = open_image(path).convert("RGB")
    return to_dtype(to_image(image), torch.float32, scale=True) if as_tensor else np.array(image) / 255.0


def install_image_reader() -> None:
    """Make anomalib read images with :func:`read_image` (datasets, ``PredictDataset``, inferencers).

    Replaces ``read_image`` in every loaded ``anomalib`` module that imported anomalib's own one,
    including :mod:`anomalib.data.utils`, so modules imported later get it too. Idempotent.
    """
    from anomalib.data.utils import image as anomalib_image

    original = anomalib_image.read_image
    if original is read_image:
        return
    for name, module in list(sys.modules.items()):
        if name.startswith("anomalib.") and getattr(module, "read_image", None) is original:
            module.read_image = read_image  # type: ignore[attr-defined]
