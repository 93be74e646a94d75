"""A pre-processor whose exported graph resizes exactly like training and testing.

anomalib's :class:`~anomalib.pre_processing.PreProcessor` exports a copy of its
transform with antialiasing turned off, because the legacy ONNX exporter could not
express an antialiased resize. The exported model then sees different pixels than
the checkpoint for every image that is not already at the model's input size (a
900×900 MVTec image resized to 256×256 differs by up to 0.6 in normalised units),
so scores and maps drift silently. The dynamo ONNX exporter writes ``Resize`` with
``antialias=1`` (opset 18) and :func:`~anomalib_grad.deploy.openvino_graph.restore_antialiasing`
makes OpenVINO honour it, so :class:`ExactPreProcessor` keeps antialiasing in the
exported transform.

Example:
    >>> from torchvision.transforms.v2 import Compose, Normalize, Resize
    >>> pre_processor = ExactPreProcessor(Compose([Resize((256, 256)), Normalize([0.5] * 3, [0.5] * 3)]))
    >>> pre_processor.export_transform.transforms[0].antialias
    True
"""

import copy
from typing import Any

from anomalib.pre_processing import PreProcessor
from anomalib.pre_processing.utils.transform import convert_center_crop_transform
from torchvision.transforms.v2 import Transform


class ExactPreProcessor(PreProcessor):
    """Pre-processor that exports its transform unchanged (antialiasing kept).

    Args:
        transform: Transform applied in training, testing and inside exported models.
    """

    def __init__(self, transform: Transform | None = None) -> None:
        super().__init__(transform=transform)
        self.export_transform = exact_export_transform(self.transform)

    def load_checkpoint_config(self, config: dict[str, Any]) -> None:
        """Restore the transform from a checkpoint and rebuild its exact export copy.

        Args:
            config: Plain-data configuration written by :meth:`checkpoint_config`.
        """
        super().load_checkpoint_config(config)
        self.export_transform = exact_export_transform(self.transform)


def exact_export_transform(transform: Transform | None) -> Transform | None:
    """Copy a transform for export, changing only what export cannot express (``CenterCrop``).

    Args:
        transform: The training and testing transform.

    Returns:
        An exportable copy that computes the same pixels, or ``None``.
    """
    if transform is None:
        return None
    return convert_center_crop_transform(copy.deepcopy(transform))
