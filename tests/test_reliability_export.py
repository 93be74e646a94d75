"""A killed export leaves nothing behind after the next one."""

import os
import subprocess
import sys
from pathlib import Path

import pytest
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_grad import Grad
from anomalib_grad.data import MVTecLayout

from .conftest import SMALL_MODEL

REPO = Path(__file__).resolve().parents[1]

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
