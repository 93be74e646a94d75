"""Benchmark: where the time of Grad's OpenVINO graph goes, per operation (OpenVINO's own profiling).

Exports ``GradModel`` (backbone, both grids, fusion branches, refinement, anomaly map; no pre- or
post-processing) through ONNX to OpenVINO FP32 at a fixed input size, runs it with ``PERF_COUNT`` on, and sums the
executed time of every node over the runs, grouped by the part of the model it belongs to (the module
path the ONNX export keeps in node names) and by operation type. Timing needs no trained weights: the graph
and its shapes are those of a trained model.

Usage:
    python benchmarks/openvino_profile.py --batch 1 --runs 50
    python benchmarks/openvino_profile.py --batch 8 --runs 10 --branch-depth 9 --branch-width 0  # paper head
"""

import argparse
import re
import tempfile
from collections import defaultdict
from pathlib import Path

import openvino as ov
import torch

from anomalib_grad import Grad

PART_PATTERN = re.compile(r"/model/([a-z_]+)")


def part_of(node_name: str) -> str:
    """The top-level sub-module of ``GradModel`` a node was converted from (``other`` when none is named)."""
    match = PART_PATTERN.search(node_name)
    return match.group(1) if match else "other"


class _Network(torch.nn.Module):
    """Wrap ``GradModel`` so that node names start with ``/model/``."""

    def __init__(self, model: torch.nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        output = self.model(images)
        return output.pred_score, output.anomaly_map


def profile(batch: int, runs: int, size: int, branch_depth: int, branch_width: int | None) -> None:
    """Print the executed time per model part and per operation type, and their shares."""
    model = Grad(input_size=(size, size), branch_depth=branch_depth, branch_width=branch_width).model.eval()
    images = torch.rand(batch, 3, size, size)
    with tempfile.TemporaryDirectory() as folder, torch.no_grad():  # through ONNX, as Grad exports
        onnx_path = Path(folder) / "grad.onnx"
        torch.onnx.export(_Network(model), (images,), onnx_path, opset_version=18, dynamo=False)
        converted = ov.convert_model(onnx_path)
    config = {"PERF_COUNT": "YES", "INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    compiled = ov.Core().compile_model(converted, "CPU", config)
    request = compiled.create_infer_request()
    for _ in range(3):  # warm-up
        request.infer({0: images.numpy()})
    by_part: dict[str, float] = defaultdict(float)
    by_type: dict[tuple[str, str], float] = defaultdict(float)
    for _ in range(runs):
        request.infer({0: images.numpy()})
        for info in request.profiling_info:
            if info.status != info.Status.EXECUTED:
                continue
            milliseconds = info.real_time.total_seconds() * 1000 / runs
            by_part[part_of(info.node_name)] += milliseconds
            by_type[(part_of(info.node_name), info.node_type)] += milliseconds
    total = sum(by_part.values())
    print(f"batch {batch}, {size}x{size}, branch depth {branch_depth}, width {branch_width}: {total:.2f} ms per run")
    print("| part | ms per run | share |\n|---|---|---|")
    for part, milliseconds in sorted(by_part.items(), key=lambda item: -item[1]):
        print(f"| {part} | {milliseconds:.2f} | {milliseconds / total:.1%} |")
    print("\n| part | operation | ms per run | share |\n|---|---|---|---|")
    for (part, node_type), milliseconds in sorted(by_type.items(), key=lambda item: -item[1])[:15]:
        print(f"| {part} | {node_type} | {milliseconds:.2f} | {milliseconds / total:.1%} |")


def main() -> None:
    """Run the profile from the command line."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--branch-depth", type=int, default=2)
    parser.add_argument("--branch-width", type=int, default=64, help="0 for 2C (the paper's)")
    args = parser.parse_args()
    profile(args.batch, args.runs, args.size, args.branch_depth, args.branch_width or None)


if __name__ == "__main__":
    main()
