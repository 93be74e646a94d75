"""The comparison's charts draw without pyplot, so importing them leaves a notebook's plotting backend alone."""

import subprocess
import sys

CHECK = "import matplotlib; matplotlib.use('svg'); import anomalib_grad.compare; print(matplotlib.get_backend())"


def test_importing_compare_keeps_the_matplotlib_backend():
    result = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, check=True)
    assert result.stdout.strip().splitlines()[-1] == "svg"  # the notebook's inline backend survives the same way
