"""Time the OpenVINO exports of a finished comparison again, interleaved, so machine drift hits all alike.

`anomalib-grad compare` times each model right after training it, minutes apart from the others; on a shared
VM the speed of the CPU drifts over such spans. This script compiles every exported model of a results folder
and times them round-robin (`--rounds` rounds of `--seconds` each), then prints the median throughput per
model and category and the spread over rounds.

Run:
    python benchmarks/interleaved_openvino.py results/compare/cpu_real --rounds 5 --seconds 3
"""

import argparse
import statistics
from pathlib import Path

import torch

from anomalib_grad.compare.throughput import measure_speed, openvino_runner


def exported_models(folder: Path) -> dict[str, Path]:
    """The ``.xml`` of every cell of ``folder`` that has an OpenVINO export, by cell key."""
    exports = {
        xml.relative_to(folder / "cells").parts[0]: xml
        for xml in sorted((folder / "cells").glob("*/openvino/**/*.xml"))
    }
    if not exports:
        msg = f"No OpenVINO exports under {folder / 'cells'}: run `anomalib-grad compare` with openvino on first."
        raise SystemExit(msg)
    return exports


def main() -> None:
    """Parse the arguments, time the exports round-robin and print a Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path, help="results folder of `anomalib-grad compare`")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=3.0, help="timed window per model and round")
    parser.add_argument("--image-size", type=int, nargs=2, default=(256, 256))
    arguments = parser.parse_args()

    runners = {key: openvino_runner(xml) for key, xml in exported_models(arguments.folder).items()}
    batch = torch.rand(1, 3, *arguments.image_size, generator=torch.Generator().manual_seed(0))
    speeds: dict[str, list[float]] = {key: [] for key in runners}
    for _ in range(arguments.rounds):
        for key, run in runners.items():
            speeds[key].append(measure_speed(run, batch, arguments.seconds)["images_per_s"])

    print(f"OpenVINO FP32, batch 1, {arguments.rounds} interleaved rounds of {arguments.seconds:g} s per model\n")
    print("| cell | median img/s | min | max |\n|---|---|---|---|")
    for key, values in speeds.items():
        print(f"| {key} | {statistics.median(values):.1f} | {min(values):.1f} | {max(values):.1f} |")


if __name__ == "__main__":
    main()
