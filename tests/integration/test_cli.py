"""The anomalib console script finds Grad by its bare name, its class path and a config file."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
ANOMALIB = Path(sys.executable).parent / "anomalib"
SMALL_ARGS = [
    "--model.pre_trained=false",
    "--model.input_size=[64, 64]",
    "--model.branch_depth=1",
    "--model.branch_width=16",
    "--model.fbp_block_size=[0, 2]",
    "--model.abnormal_epochs=1",
    "--model.normal_epochs=1",
    "--trainer.accelerator=cpu",
    "--trainer.enable_progress_bar=false",
]


def run(command: list[str], cwd: Path) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=600, env=environment, check=False)


def test_startup_hook_imports_nothing_heavy(tmp_path):
    code = "import sys; print('anomalib_grad' in sys.modules, 'torch' in sys.modules)"
    result = run([sys.executable, "-c", code], tmp_path)
    assert result.stdout.split() == ["False", "False"], result.stderr


def test_a_comparison_without_openvino_needs_no_openvino_installed(tmp_path):
    # `anomalib-grad compare --openvino false` is how GPU servers without OpenVINO run it (docs/compare.md).
    code = (
        "import sys; sys.modules['openvino'] = None; "  # any `import openvino` now raises ImportError
        "import anomalib_grad.compare.cell, anomalib_grad.compare.runner, anomalib_grad.compare.cli; print('ok')"
    )
    result = run([sys.executable, "-c", code], tmp_path)
    assert result.stdout.split()[-1:] == ["ok"], result.stderr[-3000:]


def test_get_model_finds_grad_in_a_fresh_interpreter(tmp_path):
    code = (
        "from anomalib.models import get_model; "
        "model = get_model('grad', pre_trained=False); "
        "print(type(model).__module__, type(model).__name__)"
    )
    result = run([sys.executable, "-c", code], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.split()[-2:] == ["anomalib_grad.models.grad.lightning_model", "Grad"]


def test_a_plugin_that_fails_to_import_says_so_on_stderr(tmp_path):
    # The hook is installed by the .pth file at startup; here it is installed by hand with a plugin
    # name that cannot be imported, so the failure path runs in a fresh interpreter.
    code = (
        "import os, _anomalib_grad_hook as hook; os.environ.pop('ANOMALIB_GRAD_NO_HOOK'); "
        "hook.PLUGIN = 'no_such_plugin'; hook.install(); import anomalib.models; print('anomalib still imports')"
    )
    environment = {**os.environ, "PYTHONWARNINGS": "ignore", "ANOMALIB_GRAD_NO_HOOK": "1"}
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600, env=environment
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip() == "anomalib still imports"
    assert "no_such_plugin: could not register GRAD with anomalib" in result.stderr
    assert "No module named 'no_such_plugin'" in result.stderr


@pytest.mark.parametrize("model_name", ["Grad", "anomalib_grad.Grad"])
def test_model_name_resolves(tmp_path, model_name):
    result = run([str(ANOMALIB), "train", "--model", model_name, "--print_config"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "class_path: anomalib_grad.Grad" in result.stdout
    assert "abnormal_epochs:" in result.stdout


@pytest.mark.slow
def test_train_with_bare_name_trains_tests_and_writes_maps(tmp_path, synthetic_root):
    command = [
        str(ANOMALIB),
        "train",
        "--model",
        "Grad",
        "--data",
        "anomalib_grad.data.SyntheticSurfaces",
        f"--data.root={synthetic_root}",
        f"--default_root_dir={tmp_path / 'results'}",
        *SMALL_ARGS,
    ]
    result = run(command, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    output = result.stdout + result.stderr
    assert "image_AUROC" in output and "pixel_AUROC" in output
    maps = list((tmp_path / "results").rglob("images/**/*.png"))
    assert len(maps) == 39  # one visualisation per test image
    assert list((tmp_path / "results").rglob("*.ckpt"))


@pytest.mark.slow
def test_train_from_cpu_preset_config(tmp_path, synthetic_root):
    command = [
        str(ANOMALIB),
        "train",
        "--config",
        str(REPO / "configs" / "grad_cpu.yaml"),
        f"--data.root={synthetic_root}",
        f"--default_root_dir={tmp_path / 'results'}",
        *SMALL_ARGS,
    ]
    result = run(command, tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "image_AUROC" in result.stdout + result.stderr


def test_paper_config_parses(tmp_path):
    result = run([str(ANOMALIB), "train", "--config", str(REPO / "configs" / "grad.yaml"), "--print_config"], tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "backbone: tf_efficientnet_b6" in result.stdout
    assert "branch_depth: 9" in result.stdout
