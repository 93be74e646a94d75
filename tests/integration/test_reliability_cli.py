"""Bad model arguments on anomalib's command line: one line that names the problem, no traceback."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from anomalib.cli import AnomalibCLI

from anomalib_grad.cli import GradArgumentError
from anomalib_grad.models.components import pretrained_weights

ANOMALIB = Path(sys.executable).parent / "anomalib"

BAD_ARGUMENTS = {
    "unknown backbone": (["--model.backbone=not_a_timm_model"], "Unknown or unsupported backbone 'not_a_timm_model'"),
    "offline backbone without weights": (["--model.backbone=resnet18"], "Cannot get ImageNet weights for backbone"),
    "input size not a multiple of 16": (["--model.input_size=[60, 60]"], r"input_size \(60, 60\) is not usable"),
    "FBP block larger than the feature map": (["--model.input_size=[64, 64]"], "larger than the 8×8 feature map"),
    "normal_epochs 0": (["--model.normal_epochs=0"], "normal_epochs >= 1, got 4 and 0"),
    "unknown layer": (["--model.layers=[blocks.9, blocks.4]"], "Layer 'blocks.9' not found in backbone"),
}


@pytest.mark.parametrize("case", list(BAD_ARGUMENTS))
def test_bad_model_arguments_end_in_one_line_naming_the_problem(case, tmp_path, monkeypatch):
    monkeypatch.setattr(pretrained_weights, "hub_reachable", lambda: False)  # never the network
    arguments, expected = BAD_ARGUMENTS[case]
    command = ["train", "--model", "Grad", *arguments, "--data", "anomalib_grad.data.SyntheticSurfaces"]
    with pytest.raises(SystemExit) as error:
        AnomalibCLI([*command, f"--data.root={tmp_path}"], run=False)
    assert isinstance(error.value, GradArgumentError)
    message = str(error.value.code)
    assert message.startswith("anomalib: error: Grad: ")
    assert "\n" not in message and "Union" not in message and "Namespace" not in message
    assert re.search(expected, message), message


def test_the_command_prints_the_line_and_no_traceback(tmp_path):
    command = [str(ANOMALIB), "train", "--model", "Grad", "--model.input_size=[60, 60]"]
    command += ["--data", "anomalib_grad.data.SyntheticSurfaces", f"--data.root={tmp_path}"]
    environment = {**os.environ, "PYTHONWARNINGS": "ignore"}
    result = subprocess.run(command, capture_output=True, text=True, env=environment, timeout=600, check=False)
    assert result.returncode == 1
    output = result.stdout + result.stderr
    assert "Traceback" not in output and "Does not validate against any of the Union subtypes" not in output
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("anomalib: error: Grad: input_size (60, 60) is not usable"), result.stderr[-2000:]
    assert "multiple of 16" in last_line
