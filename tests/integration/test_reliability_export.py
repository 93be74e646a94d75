"""A killed export leaves nothing behind after the next one; the large-image fast path matches the checkpoint."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data.utils import read_image
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from PIL import Image

from anomalib_grad import Grad
from anomalib_grad.data import MVTecLayout
from anomalib_grad.deploy.inferencer import GradOpenVINOInferencer
from tests.conftest import SMALL_MODEL

REPO = Path(__file__).resolve().parents[2]
F32 = {"INFERENCE_PRECISION_HINT": "f32"}

KILLED_EXPORT = """
import os, sys
import openvino
from anomalib_grad import Grad

def killed(*args, **kwargs):
    os._exit(9)  # like kill -9 while the export writes its model: no clean-up runs

openvino.save_model = killed
Grad.load_from_checkpoint(sys.argv[1]).to_openvino(sys.argv[2])
"""


@pytest.fixture(scope="module")
def trained(mixed_root, tmp_path_factory) -> tuple[Grad, Path]:
    """A small Grad trained briefly on the 64×64 ``rgb`` category, and its checkpoint."""
    seed_everything(0)
    engine = Engine(default_root_dir=tmp_path_factory.mktemp("trained"), accelerator="cpu", logger=False)
    datamodule = MVTecLayout(root=mixed_root, category="rgb", num_workers=0, train_batch_size=4, eval_batch_size=4)
    engine.fit(Grad(**SMALL_MODEL, abnormal_epochs=1, normal_epochs=1, visualizer=False), datamodule=datamodule)
    checkpoint = Path(engine.trainer.checkpoint_callback.best_model_path)
    return Grad.load_from_checkpoint(checkpoint).eval(), checkpoint


@pytest.mark.slow
def test_a_killed_export_leaves_no_staging_or_temporary_files_after_the_next_export(trained, tmp_path):
    model, checkpoint = trained
    xml = model.to_openvino(tmp_path / "export")
    previous = {path.name: path.read_bytes() for path in xml.parent.iterdir()}
    temporary = tmp_path / "tmp"
    temporary.mkdir()
    environment = {**os.environ, "TMPDIR": str(temporary), "PYTHONPATH": os.pathsep.join(sys.path)}
    command = [sys.executable, "-c", KILLED_EXPORT, str(checkpoint), str(tmp_path / "export")]
    result = subprocess.run(command, env=environment, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert result.returncode == 9, result.stderr[-3000:]
    assert list(temporary.iterdir()) == []  # the ONNX file was written inside the staging folder, not in /tmp
    left = [path for path in xml.parent.iterdir() if path.name.startswith(".export-")]
    assert len(left) == 1 and any(left[0].rglob("*.onnx"))  # the killed export's staging, up to a full copy
    assert {path.name: path.read_bytes() for path in xml.parent.iterdir() if path.is_file()} == previous

    model.to_openvino(tmp_path / "export")  # the next export
    assert sorted(path.name for path in xml.parent.iterdir()) == ["model.bin", "model.xml"]


def checkpoint_prediction(model: Grad, image: torch.Tensor) -> dict[str, np.ndarray]:
    """What anomalib's test and predict loops compute: the training transform, the model, the post-processor."""
    with torch.no_grad():
        prediction = model.post_processor(model.model(model.pre_processor.transform(image[None])))
    return {name: value.numpy() for name, value in prediction._asdict().items() if value is not None}


@pytest.mark.slow
def test_large_images_through_a_fixed_size_graph_match_the_checkpoint(trained, mixed_root, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the inferencer writes an openvino_cache folder into the working directory
    model = trained[0]
    xml = model.to_openvino(tmp_path, input_size=(64, 64))  # the model's size
    inferencer = GradOpenVINOInferencer(xml, device="CPU", config=F32)
    shape = inferencer.input_blob.get_partial_shape()
    assert inferencer.image_size == (64, 64) and shape[2].is_static and shape[3].is_static  # one size, one compile
    for name, size in (("good/000.png", (1200, 900)), ("scratch/000.png", (700, 1000))):
        large = Image.open(mixed_root / "rgb" / "test" / name).convert("RGB").resize(size, Image.Resampling.BICUBIC)
        path = tmp_path / f"large_{size[0]}.png"
        large.save(path)
        reference = checkpoint_prediction(model, read_image(path, as_tensor=True))
        prediction = inferencer.predict(path)
        assert sorted(prediction.image.shape) == [1, 3, 64, 64]  # resized on the host, before the graph
        # Normalised maps lie in [0, 1]; a good image's may be all 0 (below the threshold), a scratch's is not.
        span = reference["anomaly_map"].max() - reference["anomaly_map"].min()
        assert span > 0 or name.startswith("good")
        difference = np.abs(prediction.anomaly_map.reshape(reference["anomaly_map"].shape) - reference["anomaly_map"])
        assert difference.max() < 1e-3
        np.testing.assert_allclose(prediction.pred_score.reshape(-1), reference["pred_score"], rtol=1e-4, atol=1e-7)
        np.testing.assert_array_equal(prediction.pred_label.reshape(-1), reference["pred_label"].reshape(-1))
