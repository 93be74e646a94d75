"""Inference speed of a trained anomalib model: torch eager, and its OpenVINO export on the CPU.

Both include the model's pre- and post-processing (anomalib runs them inside ``forward`` and inside
the exported graph). Timings are medians over a fixed window after warm-up.

Example:
    >>> timing = measure_speed(lambda images: model(images), torch.rand(1, 3, 256, 256))  # doctest: +SKIP
    >>> timing["images_per_s"]  # doctest: +SKIP
    48.1
"""

import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from anomalib.models import AnomalibModule

FP32 = {"INFERENCE_PRECISION_HINT": "f32"}
OPSET = 18  # anomalib's default opset 14 cannot export PaDiM (Pad)


def measure_speed(run: Callable[[torch.Tensor], object], batch: torch.Tensor, seconds: float = 5.0) -> dict[str, float]:
    """Median latency of ``run(batch)`` over repeated calls after three warm-up calls.

    Args:
        run: The inference call (it must finish its work before returning, e.g. synchronise a GPU).
        batch: Its input.
        seconds: Length of the timed window (at least five calls are timed).

    Returns:
        ``{"latency_ms": ..., "images_per_s": ...}``.
    """
    for _ in range(3):
        run(batch)
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < 5:
        start = time.perf_counter()
        run(batch)
        times.append(time.perf_counter() - start)
    latency = statistics.median(times)
    return {"latency_ms": 1000 * latency, "images_per_s": len(batch) / latency}


def torch_runner(model: AnomalibModule, device: torch.device) -> Callable[[torch.Tensor], object]:
    """``model(images)`` in eval and inference mode on ``device``, synchronised on a GPU."""
    model = model.eval().to(device)

    def run(images: torch.Tensor) -> object:
        with torch.inference_mode():
            prediction = model(images.to(device))
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return prediction

    return run


def export_openvino(model: AnomalibModule, folder: Path, batch: torch.Tensor) -> Path:
    """Export ``model`` to OpenVINO IR for exactly the shape of ``batch`` (every model exported alike).

    A fixed shape for every model: anomalib's PatchCore export fixes the batch at 2 when it is left dynamic.

    Args:
        model: Trained model.
        folder: Export folder.
        batch: Example input ``(N, C, H, W)``.

    Returns:
        Path of the ``.xml`` file.
    """
    onnx_kwargs = {"dynamic_shapes": ({0: len(batch)},), "opset_version": OPSET}
    size = (int(batch.shape[-2]), int(batch.shape[-1]))
    xml = model.cpu().to_openvino(folder, input_size=size, onnx_kwargs=onnx_kwargs)
    return Path(xml)


def openvino_runner(xml: Path) -> Callable[[torch.Tensor], object]:
    """Compile an exported model for the CPU (FP32) and return a function running it on a batch."""
    import openvino as ov  # here, not at the top: `--openvino false` runs where OpenVINO is not installed

    from anomalib_grad.deploy.openvino_graph import read_model

    compiled = ov.Core().compile_model(read_model(xml), "CPU", FP32)
    return lambda images: compiled(images.numpy())
