"""OpenVINO inference on images of any size at one fixed graph size: the fast path for large images.

Grad's default export accepts any image size and resizes inside the graph. OpenVINO compiles a
dynamic-shape graph again for every new image size, and keeps what it compiled: on 12-megapixel
images of new sizes the first call took 20-26 s and memory grew to 3.8 GB. The fast path resizes on
the host instead, to the model's input size, with the same antialiased bilinear resize as training
(:func:`torchvision.transforms.v2.functional.resize`), so the graph always sees one size:

- export with a fixed size (``anomalib export ... --input_size "[256,256]"``, the model's size), and
- predict with :class:`GradOpenVINOInferencer`, which reads that size from the graph (or takes
  ``image_size`` for a dynamic-size export).

``benchmarks/openvino_large_images.py`` measures both paths at 1, 4 and 12 megapixels.

Example:
    >>> inferencer = GradOpenVINOInferencer("results/weights/openvino/model.xml", device="CPU")  # doctest: +SKIP
    >>> inferencer.predict("large_image.png").pred_score  # doctest: +SKIP
"""

from pathlib import Path

import numpy as np
import torch
from anomalib.deploy import OpenVINOInferencer
from torchvision.transforms.v2.functional import resize


class GradOpenVINOInferencer(OpenVINOInferencer):
    """anomalib's OpenVINO inferencer, resizing every image on the host to one fixed size first.

    Args:
        path: The exported model (``.xml``, ``.bin`` or ``.onnx``).
        device: OpenVINO device. Defaults to ``"AUTO"``.
        config: OpenVINO configuration, e.g. ``{"INFERENCE_PRECISION_HINT": "f32"}``.
        image_size: ``(H, W)`` to resize to; ``None`` reads it from a fixed-size graph (a dynamic-size
            graph then gets the images unchanged, as with anomalib's inferencer).

    Example:
        >>> inferencer = GradOpenVINOInferencer("model.xml", image_size=(256, 256))  # doctest: +SKIP
    """

    def __init__(
        self,
        path: str | Path | tuple[bytes, bytes],
        device: str | None = "AUTO",
        config: dict | None = None,
        image_size: tuple[int, int] | None = None,
    ) -> None:
        super().__init__(path, device=device, config=config)
        shape = self.input_blob.get_partial_shape()
        if image_size is None and shape.rank.is_static and shape[2].is_static and shape[3].is_static:
            image_size = (shape[2].get_length(), shape[3].get_length())
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))

    def pre_process(self, image: np.ndarray) -> np.ndarray:
        """Pre-process like anomalib (``(N, 3, H, W)`` in [0, 1]), then resize antialiased to ``image_size``.

        Args:
            image: Image ``(H, W, 3)`` or ``(N, H, W, 3)``, in [0, 1] or [0, 255].

        Returns:
            The batch at ``image_size``.
        """
        image = super().pre_process(image)
        if self.image_size is None or tuple(image.shape[-2:]) == self.image_size:
            return image
        return resize(torch.from_numpy(np.ascontiguousarray(image)), list(self.image_size), antialias=True).numpy()
