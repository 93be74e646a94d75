"""Checks of GRAD's inputs: usable image sizes, image batches of that size, and finite images and features.

Example:
    >>> check_input_size([256, 256])
    (256, 256)
"""

from collections.abc import Sequence

import torch

SIZE_MULTIPLE = 16  # the stride-16 map must align exactly with the stride-8 one
MIN_INPUT_SIZE = 32


def check_input_size(input_size: Sequence[int]) -> tuple[int, int]:
    """Check that the backbone can handle an image size.

    Args:
        input_size: ``(H, W)`` in pixels.

    Returns:
        The size as a tuple.

    Raises:
        ValueError: If a side is not a multiple of 16 or smaller than 32.

    Example:
        >>> check_input_size([256, 320])
        (256, 320)
    """
    size = tuple(int(side) for side in input_size)
    if len(size) != 2 or any(side < MIN_INPUT_SIZE or side % SIZE_MULTIPLE for side in size):
        msg = (
            f"input_size {tuple(input_size)} is not usable: GRAD needs (height, width), each a multiple of "
            f"{SIZE_MULTIPLE} and at least {MIN_INPUT_SIZE} pixels, e.g. (256, 256)."
        )
        raise ValueError(msg)
    return size  # type: ignore[return-value]


def check_finite(values: torch.Tensor, image_paths: Sequence[str] | None) -> None:
    """Fail clearly when images or features hold NaN or infinity.

    Args:
        values: Images or features ``(B, ...)``.
        image_paths: Paths of the batch's images, for the message.

    Raises:
        ValueError: If any value is not finite.

    Example:
        >>> check_finite(torch.ones(2, 3), ["a.png", "b.png"])
    """
    finite = torch.isfinite(values.flatten(start_dim=1)).all(dim=1)
    if bool(finite.all()):
        return
    bad = [index for index, ok in enumerate(finite.tolist()) if not ok]
    names = [image_paths[index] for index in bad] if image_paths else bad
    msg = (
        f"NaN or infinite values in the images or backbone features of {names}. Check the images and the "
        "pre-processing (normalisation), and that the backbone weights are intact."
    )
    raise ValueError(msg)


def check_image_batch(images: torch.Tensor, input_size: tuple[int, int]) -> None:
    """Fail clearly when a batch is not ``(B, 3, H, W)`` images of the model's input size.

    Args:
        images: The batch.
        input_size: The model's ``(H, W)``.

    Raises:
        ValueError: Naming the batch's shape and the size the model was built for.

    Example:
        >>> check_image_batch(torch.zeros(1, 3, 64, 32), (64, 64))  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        ValueError: GRAD was built for 64×64 images (B, 3, H, W), got a batch of shape (1, 3, 64, 32). Resize ...
    """
    if images.dim() != 4 or tuple(images.shape[-2:]) != input_size:
        msg = (
            f"GRAD was built for {input_size[0]}×{input_size[1]} images (B, 3, H, W), got a batch of shape "
            f"{tuple(images.shape)}. Resize in the pre-processor or build the model with this input_size."
        )
        raise ValueError(msg)
