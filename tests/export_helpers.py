"""Predictions of a checkpoint and of its exports, compared: the export tests' helpers."""

from pathlib import Path

import numpy as np
import openvino as ov
import torch
from anomalib.data.utils import read_image

from anomalib_grad import Grad
from anomalib_grad.data import SyntheticSurfaces
from anomalib_grad.deploy.openvino_graph import read_model


def checkpoint_prediction(model: Grad, images: torch.Tensor) -> dict[str, np.ndarray]:
    """What anomalib's test and predict loops compute: the training transform, the model, the post-processor."""
    with torch.no_grad():
        prediction = model.post_processor(model.model(model.pre_processor.transform(images)))
    return {name: value.numpy() for name, value in prediction._asdict().items() if value is not None}


def exported_prediction(path: Path, images: torch.Tensor) -> dict[str, np.ndarray]:
    compiled = ov.Core().compile_model(read_model(path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    result = compiled(images.numpy())
    return {output.get_any_name(): result[output] for output in compiled.outputs}


def assert_parity(exported: dict[str, np.ndarray], reference: dict[str, np.ndarray]) -> None:
    assert set(exported) == set(reference), (set(exported), set(reference))
    span = reference["anomaly_map"].max() - reference["anomaly_map"].min()
    assert span > 0
    assert np.abs(exported["anomaly_map"].reshape(reference["anomaly_map"].shape) - reference["anomaly_map"]).max() < (
        1e-3 * span
    )
    np.testing.assert_array_equal(exported["pred_label"].reshape(-1), reference["pred_label"].reshape(-1))
    np.testing.assert_allclose(exported["pred_score"].reshape(-1), reference["pred_score"], rtol=1e-4, atol=1e-7)


def sample_images(datamodule: SyntheticSurfaces, count: int = 4) -> torch.Tensor:
    datamodule.setup()
    dataset = datamodule.test_data
    indices = np.linspace(0, len(dataset) - 1, count).astype(int)  # good and defective
    return torch.stack([read_image(dataset[int(index)].image_path, as_tensor=True) for index in indices])
