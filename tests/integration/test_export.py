"""Export to OpenVINO, ONNX and torch: parity with the checkpoint, fixed and dynamic shapes, bad input."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import openvino as ov
import pytest
import torch
from anomalib.data.utils import read_image
from anomalib.deploy import CompressionType, ExportType, OpenVINOInferencer
from anomalib.engine import Engine
from anomalib.models import Padim
from anomalib.pre_processing.utils.transform import get_exportable_transform
from lightning.pytorch import seed_everything
from torchvision.transforms.v2.functional import to_pil_image

from anomalib_grad import Grad
from anomalib_grad.data import SyntheticSurfaces
from anomalib_grad.deploy import quantization
from anomalib_grad.deploy.openvino_graph import read_model
from anomalib_grad.deploy.quantization import NOT_QUANTISED, quantize_on_training_images
from tests.conftest import REAL_DATA, SMALL_MODEL
from tests.export_helpers import assert_parity, checkpoint_prediction, exported_prediction, sample_images

ANOMALIB = Path(sys.executable).parent / "anomalib"


@pytest.fixture(scope="module")
def trained(synthetic_root, tmp_path_factory) -> tuple[Grad, Path, SyntheticSurfaces]:
    """A small GRAD trained briefly on the built-in data, its checkpoint and datamodule."""
    seed_everything(0)
    root = tmp_path_factory.mktemp("trained")
    model = Grad(**SMALL_MODEL, abnormal_epochs=1, normal_epochs=2, visualizer=False)
    datamodule = SyntheticSurfaces(root=synthetic_root, train_batch_size=16, eval_batch_size=16)
    engine = Engine(default_root_dir=root, accelerator="cpu", logger=False, enable_progress_bar=False)
    engine.fit(model, datamodule=datamodule)
    checkpoint = Path(engine.trainer.checkpoint_callback.best_model_path)
    return Grad.load_from_checkpoint(checkpoint).eval(), checkpoint, datamodule


@pytest.fixture(scope="module")
def openvino_export(trained, tmp_path_factory) -> Path:
    """The trained model exported to OpenVINO FP32 with dynamic batch and image size."""
    return trained[0].to_openvino(tmp_path_factory.mktemp("openvino"))


def test_openvino_matches_the_checkpoint_on_builtin_images(trained, openvino_export):
    model, _, datamodule = trained
    images = sample_images(datamodule)  # 256×256, resized to 64×64 inside the graph
    assert_parity(exported_prediction(openvino_export, images), checkpoint_prediction(model, images))


def test_openvino_matches_the_checkpoint_on_large_images_of_any_size(trained, openvino_export):
    model, _, datamodule = trained
    images = torch.nn.functional.interpolate(sample_images(datamodule, 2), size=(900, 700), mode="bicubic").clamp(0, 1)
    reference = checkpoint_prediction(model, images)
    assert_parity(exported_prediction(openvino_export, images), reference)
    # anomalib's stock export turns antialiasing off: the same images then give another map
    stock = get_exportable_transform(model.pre_processor.transform)
    with torch.no_grad():
        stock_map = model.post_processor(model.model(stock(images))).anomaly_map.numpy()
    span = reference["anomaly_map"].max() - reference["anomaly_map"].min()
    assert np.abs(stock_map - reference["anomaly_map"]).max() > 1e-3 * span


@pytest.mark.parametrize("category", ["bottle", "magnetic_tile"])
def test_openvino_matches_the_checkpoint_on_real_images(trained, openvino_export, category):
    if not (REAL_DATA / category).is_dir():
        pytest.skip(f"real data not found at {REAL_DATA / category}")
    model = trained[0]
    paths = sorted((REAL_DATA / category / "test").glob("*/*.png"))[::40][:6]
    for path in paths:  # one at a time: magnetic-tile images differ in size and are grayscale
        image = read_image(path, as_tensor=True).unsqueeze(0)
        assert_parity(exported_prediction(openvino_export, image), checkpoint_prediction(model, image))


def test_dynamic_batch_gives_the_same_per_image_results(trained, openvino_export):
    images = sample_images(trained[2], 3)
    batched = exported_prediction(openvino_export, images)
    for index in range(3):
        single = exported_prediction(openvino_export, images[index : index + 1])
        np.testing.assert_allclose(single["anomaly_map"][0], batched["anomaly_map"][index], atol=1e-5)


def test_onnx_matches_the_checkpoint(trained, tmp_path):
    model, _, datamodule = trained
    path = model.to_onnx(tmp_path)
    assert path == tmp_path / "weights" / "onnx" / "model.onnx"
    images = sample_images(datamodule, 2)
    assert_parity(exported_prediction(path, images), checkpoint_prediction(model, images))


def test_fixed_batch_and_size_export_works_with_anomalibs_inferencer(trained, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the inferencer writes an openvino_cache folder into the working directory
    model, _, datamodule = trained
    onnx_kwargs = {"dynamic_axes": {"input": {}}}  # no dynamic axis: batch of 1
    path = model.to_openvino(tmp_path, input_size=(256, 256), onnx_kwargs=onnx_kwargs)
    assert list(ov.Core().read_model(path).input(0).shape) == [1, 3, 256, 256]
    image_path = datamodule.test_data.samples.image_path.iloc[-1]
    prediction = OpenVINOInferencer(path, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"}).predict(image_path)
    exported = {name: getattr(prediction, name) for name in ("pred_score", "pred_label", "anomaly_map", "pred_mask")}
    assert_parity(exported, checkpoint_prediction(model, read_image(image_path, as_tensor=True).unsqueeze(0)))


def test_openvino_inferencer_on_a_folder_matches_anomalib_predict(trained, openvino_export, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the inferencer writes an openvino_cache folder into the working directory
    _, checkpoint, datamodule = trained
    folder = tmp_path / "images"
    folder.mkdir()
    images = sample_images(datamodule, 3)
    for image, size in zip(images, [(300, 200), (90, 64), (256, 256)], strict=True):
        resized = torch.nn.functional.interpolate(image[None], size=size, mode="bilinear")[0]
        to_pil_image(resized.clamp(0, 1)).save(folder / f"{size[0]}x{size[1]}.png")
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False)
    batches = engine.predict(Grad(**SMALL_MODEL), data_path=folder, ckpt_path=checkpoint)
    inferencer = OpenVINOInferencer(openvino_export, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
    assert len(batches) == 3
    for batch in batches:
        prediction = inferencer.predict(batch.image_path[0])
        exported = {name: getattr(prediction, name) for name in ("pred_score", "pred_label", "anomaly_map")}
        reference = {name: getattr(batch, name).numpy() for name in ("pred_score", "pred_label", "anomaly_map")}
        assert_parity(exported, reference)


def test_torch_export_reloads_and_matches(trained, tmp_path):
    model, _, datamodule = trained
    path = model.to_torch(tmp_path)
    reloaded = torch.load(path, weights_only=False)["model"].eval()
    images = sample_images(datamodule, 2)
    with torch.no_grad():
        prediction = reloaded(images)
    reference = checkpoint_prediction(model, images)
    np.testing.assert_allclose(prediction.anomaly_map.numpy(), reference["anomaly_map"], atol=1e-6)
    np.testing.assert_array_equal(prediction.pred_label.numpy(), reference["pred_label"])


def test_int8_post_training_quantisation_calibrates_on_training_images(trained, tmp_path, monkeypatch):
    import nncf

    model, _, datamodule = trained
    calibrations = []
    quantize = nncf.quantize

    def recording_quantize(ov_model, dataset, **kwargs):
        calibrations.append(list(dataset.get_inference_data()))
        return quantize(ov_model, dataset, **kwargs)

    monkeypatch.setattr(nncf, "quantize", recording_quantize)
    path = model.to_openvino(tmp_path, compression_type=CompressionType.INT8_PTQ, datamodule=datamodule)
    (calibration,) = calibrations
    train_images = [read_image(item, as_tensor=True) for item in datamodule.train_data.samples.image_path]
    assert len(calibration) == len(train_images)
    assert calibration[0].shape == (1, 3, 64, 64)
    quantised = ov.Core().read_model(path)
    quantizers = [node for node in quantised.get_ordered_ops() if node.get_type_name() == "FakeQuantize"]
    assert quantizers
    for quantizer in quantizers:  # grid reads, distances and the map post-processing stay in floating point
        consumers = {target.get_node().get_type_name() for target in quantizer.output(0).get_target_inputs()}
        assert not consumers & set(NOT_QUANTISED), consumers
    images = sample_images(datamodule, 6)
    exported = exported_prediction(path, images)
    assert exported["anomaly_map"].shape == (6, 1, 64, 64)
    assert np.isfinite(exported["anomaly_map"]).all()
    assert np.isfinite(exported["pred_score"]).all()  # accuracy on real data: benchmarks/export_speed.py


def test_int8_accuracy_control_calibrates_and_validates_on_training_images_only(trained, tmp_path, monkeypatch):
    import nncf

    model, _, datamodule = trained
    monkeypatch.setattr(quantization, "VALIDATION_IMAGES", 4)
    calls = []

    def recording_quantize(ov_model, calibration, validation, validation_fn, **kwargs):  # NNCF's loop: benchmarks
        calls.append((list(calibration.get_inference_data()), list(validation.get_data()), validation_fn, kwargs))
        return ov_model

    monkeypatch.setattr(nncf, "quantize_with_accuracy_control", recording_quantize)
    model.to_openvino(tmp_path, compression_type=CompressionType.INT8_ACQ, datamodule=datamodule, max_drop=0.05)
    ((calibration, validation, accuracy, kwargs),) = calls
    assert len(calibration) == len(datamodule.train_data)
    assert kwargs["max_drop"] == 0.05
    assert len(validation) == 8
    for _, image in validation[:4]:  # training images: no test image, no label
        assert any(np.array_equal(image, train_image) for train_image in calibration)
    for _, image in validation[4:]:  # the same with synthetic defects
        assert not any(np.array_equal(image, train_image) for train_image in calibration)
    fp32 = ov.Core().compile_model(read_model(model.to_openvino(tmp_path / "fp32")), "CPU")
    metric, outputs = accuracy(fp32, validation)
    assert 0 < metric <= 1
    assert len(outputs) == 8  # the score and map of each item rank the operations


def test_int8_accuracy_control_takes_no_metric(trained, tmp_path):
    model, _, datamodule = trained
    with pytest.raises(ValueError, match="takes no metric"):
        model.to_openvino(tmp_path, compression_type=CompressionType.INT8_ACQ, datamodule=datamodule, metric="F1Score")


def test_cli_exports_a_checkpoint_to_openvino(trained, tmp_path):
    model, checkpoint, datamodule = trained
    command = [str(ANOMALIB), "export", "--model", "Grad", "--export_type", "openvino"]
    command += ["--ckpt_path", str(checkpoint), "--export_root", str(tmp_path)]
    result = subprocess.run(
        command,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    image = sample_images(datamodule, 1)
    exported = exported_prediction(tmp_path / "weights" / "openvino" / "model.xml", image)
    assert_parity(exported, checkpoint_prediction(model, image))


def test_untrained_model_is_not_exported(tmp_path):
    with pytest.raises(RuntimeError, match="has not been trained"):
        Grad(**SMALL_MODEL).to_openvino(tmp_path)
    assert not (tmp_path / "weights" / "openvino" / "model.xml").exists()


def test_checkpoint_of_another_model_is_a_clear_error(tmp_path):
    path = tmp_path / "padim.ckpt"
    padim = Padim(backbone="resnet18", layers=["layer1"], pre_trained=False, n_features=10)
    torch.save({"state_dict": padim.state_dict(), "hyper_parameters": {"backbone": "resnet18"}}, path)
    with pytest.raises(ValueError, match=r"is not a GRAD checkpoint.*feature_extractor"):
        Grad.load_from_checkpoint(path)
    with pytest.raises(ValueError, match="is not a GRAD checkpoint"):
        Engine(default_root_dir=tmp_path, logger=False).export(Grad(**SMALL_MODEL), ExportType.OPENVINO, ckpt_path=path)


@pytest.mark.parametrize("input_size", [(0, 64), (64,), (64.5, 64)])
def test_wrong_static_input_size_is_a_clear_error(trained, tmp_path, input_size):
    with pytest.raises(ValueError, match="input_size must be two positive integers"):
        trained[0].to_openvino(tmp_path, input_size=input_size)


def test_static_size_without_a_pre_processor_must_be_the_model_size(trained, tmp_path):
    model = Grad(**SMALL_MODEL, pre_processor=False)
    model.post_processor.load_state_dict(trained[0].post_processor.state_dict())
    with pytest.raises(ValueError, match="no pre-processor"):
        model.to_onnx(tmp_path, input_size=(128, 128))


def test_missing_output_folder_is_created_and_a_file_in_the_way_is_an_error(trained, tmp_path):
    path = trained[0].to_torch(tmp_path / "new" / "folder")
    assert path.is_file()
    blocker = tmp_path / "blocker"
    blocker.write_text("not a folder")
    with pytest.raises(NotADirectoryError, match="is a file, not a folder"):
        trained[0].to_torch(blocker)


def interrupt_onnx_export(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the ONNX exporter die after writing half a file (OpenVINO export runs it first)."""

    def interrupted_export(*args, f, **kwargs):
        Path(f).write_bytes(b"\x08\x07half an onnx model")
        raise KeyboardInterrupt

    monkeypatch.setattr(torch.onnx, "export", interrupted_export)


def test_interrupted_export_leaves_no_model_that_looks_valid(trained, tmp_path, monkeypatch):
    interrupt_onnx_export(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        trained[0].to_onnx(tmp_path)
    assert list((tmp_path / "weights" / "onnx").iterdir()) == []


def test_interrupted_export_keeps_the_previous_export_intact(trained, openvino_export, monkeypatch):
    before = {path.name: path.read_bytes() for path in openvino_export.parent.iterdir()}
    interrupt_onnx_export(monkeypatch)
    with pytest.raises(KeyboardInterrupt):
        trained[0].to_openvino(openvino_export.parents[2])
    assert {path.name: path.read_bytes() for path in openvino_export.parent.iterdir()} == before


def test_int8_without_a_datamodule_is_a_clear_error():
    with pytest.raises(ValueError, match="calibrates on training images"):
        quantize_on_training_images(None, None, (64, 64))


def test_reading_a_missing_exported_model_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="No exported model"):
        read_model(tmp_path / "model.xml")
