"""INT8 quantisation of an exported OpenVINO model with NNCF, on training images only.

Two recipes, both calibrated on up to 300 normal training images (anomalib's own
calibrates on the validation split, which holds test images):

- :func:`quantize_on_training_images` (``INT8_PTQ``): post-training quantisation of the
  convolutions; the operation types in :data:`NOT_QUANTISED` stay in floating point.
- :func:`quantize_with_accuracy_control` (``INT8_ACQ``): the same quantisation, then NNCF's
  accuracy control returns convolutions to floating point, most harmful first, until the
  quantised model detects and localises defects as well as the FP32 model. That is measured on
  training images and the same images with synthetic (Perlin-noise) defects: no test image and
  no real label is used, and the images with defects give the activations that normal
  calibration images never reach. (Accuracy control of the *whole* graph does not work here:
  with the post-processing quantised every image gets the same score, and reverting
  operations one at a time did not leave that state within 20 steps on ``bottle``.)

Example:
    >>> import openvino as ov
    >>> from anomalib_grad.data import MVTecLayout
    >>> datamodule = MVTecLayout(root="../shared/data/real", category="bottle")  # doctest: +SKIP
    >>> model = ov.Core().read_model("weights/openvino/model.xml")  # doctest: +SKIP
    >>> int8 = quantize_with_accuracy_control(model, datamodule, (256, 256))  # doctest: +SKIP
"""

import logging
from collections.abc import Iterable
from typing import Any

import numpy as np
import torch
from anomalib.data import AnomalibDataModule
from anomalib.data.utils.generators import PerlinAnomalyGenerator
from torchmetrics.functional.classification import binary_auroc, binary_average_precision
from torchvision.transforms.v2.functional import resize

logger = logging.getLogger(__name__)

CALIBRATION_IMAGES = 300
VALIDATION_IMAGES = 64  # normal training images; as many again with synthetic defects
RANKING_ITEMS = 16  # validation batches (those the quantised model gets most wrong) that rank the operations
NOT_QUANTISED = (  # OpenVINO operation types kept in floating point by INT8_PTQ
    "MatMul",
    "Interpolate",
    "AvgPool",
    "MaxPool",
    "ReduceMax",
    "ReduceMean",
    "ReduceL2",
    "Add",
    "Subtract",
    "Multiply",
    "Divide",
    "Power",
    "Sqrt",
    "Concat",
    "Maximum",
    "Minimum",
    "Clamp",
)


def quantize_on_training_images(
    model: Any, datamodule: AnomalibDataModule | None, default_size: tuple[int, int]
) -> Any:
    """Quantise the convolutions of an OpenVINO model to INT8 (``INT8_PTQ``), calibrated on training images.

    Convolutions (and the normalisation before the abnormal branch) hold nearly all the compute.
    The operations in :data:`NOT_QUANTISED` (grid reads, distances, map upsampling, smoothing,
    score pooling and normalisation) stay in floating point: calibration sees normal images only,
    so quantisers after the backbone clip the large values that anomalies produce (on ``bottle``
    GRAD's image AUROC fell to 0.75 with them).

    Args:
        model: OpenVINO model of any anomalib model (images in [0, 1] go in).
        datamodule: Datamodule whose training images calibrate.
        default_size: Size the images are resized to when the model accepts any size.

    Returns:
        The quantised model.

    Raises:
        ValueError: Without a datamodule.
    """
    import nncf

    calibration = training_batches(model, datamodule, default_size, "INT8_PTQ")
    ignored_scope = nncf.IgnoredScope(types=list(NOT_QUANTISED), validate=False)
    return nncf.quantize(model, nncf.Dataset(calibration), subset_size=len(calibration), ignored_scope=ignored_scope)


def quantize_with_accuracy_control(
    model: Any,
    datamodule: AnomalibDataModule | None,
    default_size: tuple[int, int],
    max_drop: float = 0.01,
    seed: int = 0,
) -> Any:
    """Quantise an OpenVINO model to INT8 with NNCF's accuracy control (``INT8_ACQ``), on training images only.

    The convolutions are quantised as by :func:`quantize_on_training_images`; NNCF then returns them to
    floating point, ranked by how much each changes the outputs, until the accuracy on synthetic defects
    (:func:`synthetic_defect_accuracy`) is at most ``max_drop`` below the FP32 model's. The validation
    images are :data:`VALIDATION_IMAGES` training images and the same images with Perlin-noise defects
    (drawn with ``seed``).

    Args:
        model: OpenVINO model of any anomalib model with ``pred_score`` and ``anomaly_map`` outputs.
        datamodule: Datamodule whose training images calibrate and validate.
        default_size: Size the images are resized to when the model accepts any size.
        max_drop: Largest accepted loss of accuracy, in (0, 1).
        seed: Seed of the synthetic defects.

    Returns:
        The quantised model.

    Raises:
        ValueError: Without a datamodule, or with ``max_drop`` outside (0, 1).
    """
    import nncf
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    if not 0 < max_drop < 1:
        msg = f"max_drop is the largest accepted loss of accuracy on synthetic defects, in (0, 1); got {max_drop}."
        raise ValueError(msg)
    calibration = training_batches(model, datamodule, default_size, "INT8_ACQ")
    images, masks = validation_batches(calibration, seed)
    validation = list(enumerate(images))

    def accuracy(compiled: Any, items: Iterable[tuple[int, np.ndarray]]) -> tuple[float, list[list[np.ndarray]]]:
        indices, outputs = zip(*((index, compiled(batch)) for index, batch in items), strict=True)
        scores = np.concatenate([result[compiled.output("pred_score")].reshape(-1) for result in outputs])
        maps = np.concatenate([result[compiled.output("anomaly_map")] for result in outputs])
        metric = synthetic_defect_accuracy(scores, maps, np.concatenate([masks[index] for index in indices]))
        return metric, [floating_outputs(result) for result in outputs]  # NNCF ranks operations by these

    count = sum(len(batch) for batch in images)
    logger.info("INT8_ACQ: at most %.3f loss of accuracy on %d validation images.", max_drop, count)
    return nncf.quantize_with_accuracy_control(
        model,
        nncf.Dataset(calibration),
        nncf.Dataset(validation, lambda item: item[1]),
        accuracy,
        max_drop=max_drop,
        subset_size=len(calibration),
        ignored_scope=nncf.IgnoredScope(types=list(NOT_QUANTISED), validate=False),
        advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(ranking_subset_size=RANKING_ITEMS),
    )


def training_batches(
    model: Any,
    datamodule: AnomalibDataModule | None,
    default_size: tuple[int, int],
    compression: str,
) -> list[np.ndarray]:
    """Up to :data:`CALIBRATION_IMAGES` training images, resized and batched as the model's input takes them.

    Args:
        model: OpenVINO model (its input shape gives the size and batch when static).
        datamodule: Datamodule whose training images are used.
        default_size: Size used when the model accepts any size.
        compression: Name of the compression, for the error message.

    Returns:
        Batches of images, ``(B, 3, H, W)`` float32 arrays.

    Raises:
        ValueError: Without a datamodule.
    """
    if datamodule is None:
        msg = f"{compression} calibrates on training images: pass a datamodule (CLI: --data ...)."
        raise ValueError(msg)
    datamodule.setup("fit")
    dataset = datamodule.train_data
    count = min(CALIBRATION_IMAGES, len(dataset))
    shape = model.input(0).get_partial_shape()
    size = (shape[2].get_length(), shape[3].get_length()) if shape[2].is_static else default_size
    batch = shape[0].get_length() if shape[0].is_static else 1
    images = [resize(dataset[index].image, list(size)) for index in range(count)]
    logger.info("Calibrating %s on %d training images at %s.", compression, count - count % batch, size)
    return [torch.stack(images[start : start + batch]).numpy() for start in range(0, count - batch + 1, batch)]


def validation_batches(batches: list[np.ndarray], seed: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Evenly spaced training batches, then the same batches with Perlin-noise defects, and their masks.

    Args:
        batches: Training batches (:func:`training_batches`).
        seed: Seed of the synthetic defects.

    Returns:
        About :data:`VALIDATION_IMAGES` normal images and as many with defects, in batches, and the
        defect masks ``(B, 1, H, W)`` of each batch (all 0 for the normal ones).
    """
    count = max(1, min(len(batches), VALIDATION_IMAGES // len(batches[0])))
    normal = [batches[index] for index in np.linspace(0, len(batches) - 1, count).round().astype(int)]
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        generator = PerlinAnomalyGenerator(probability=1.0)  # draws at construction too
        defective = [generator(torch.from_numpy(batch)) for batch in normal]
    images = normal + [image.numpy() for image, _ in defective]
    masks = [np.zeros((len(batch), 1, *batch.shape[2:]), dtype=bool) for batch in normal]
    return images, masks + [mask.numpy() > 0.5 for _, mask in defective]


def synthetic_defect_accuracy(scores: np.ndarray, anomaly_maps: np.ndarray, masks: np.ndarray) -> float:
    """Mean of the image AUROC and the pixel AUPR against synthetic defects.

    Args:
        scores: ``(N,)`` image scores.
        anomaly_maps: ``(N, 1, H, W)`` anomaly maps (any layout with ``N·H·W`` values).
        masks: ``(N, 1, H, W)`` boolean defect masks; an image is defective when its mask is not empty.

    Returns:
        Accuracy in [0, 1]; 0 for scores or maps that are all equal (a collapsed model).
    """
    labels = torch.from_numpy(masks.reshape(len(masks), -1).any(axis=1)).int()
    pixels = torch.from_numpy(masks.reshape(-1)).int()
    scores, values = torch.from_numpy(scores.astype(np.float32)), torch.from_numpy(anomaly_maps.astype(np.float32))
    if scores.min() == scores.max() or values.min() == values.max():
        return 0.0
    image_auroc = binary_auroc(scores, labels)
    pixel_aupr = binary_average_precision(values.reshape(-1), pixels)
    return float((image_auroc + pixel_aupr) / 2)


def floating_outputs(result: Any) -> list[np.ndarray]:
    """The score and map outputs of one inference, without the boolean labels and masks.

    Args:
        result: What calling a compiled model on a batch returned.

    Returns:
        Its floating-point outputs.
    """
    return [value for value in result.values() if np.issubdtype(value.dtype, np.floating)]
