"""Benchmark: OpenVINO inference on 1, 4 and 12 megapixel images, any-size graph vs the fast path.

A small Grad (the CPU preset's network at 256×256, trained for 1 + 1 epochs on the built-in data) is
exported twice: with any image size (the default: the graph resizes) and with a fixed 256×256 input.
Then, each in a fresh process (and a fresh OpenVINO cache folder):

- ``any-size graph``: anomalib's ``OpenVINOInferencer`` on the full-size images (OpenVINO compiles
  the graph again for every new input size);
- ``fast path``: :class:`~anomalib_grad.deploy.inferencer.GradOpenVINOInferencer` on the fixed-size
  graph (each image resized on the host, antialiased like training, to 256×256).

For each image size, in order, it prints the time of the first call (a new size), of a second call
(same image), and the process's resident memory after them; then the process's peak. Calls read the
PNG file, so decoding is included. Timings on a shared 2-core machine drift by ±30 %.

Usage:
    python benchmarks/openvino_large_images.py                  # about 3 minutes on 2 CPU cores
    python benchmarks/openvino_large_images.py --megapixels 1 4
"""

import argparse
import json
import logging
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import psutil
from PIL import Image

SIZES = {1: (1152, 864), 4: (2304, 1728), 12: (4000, 3000)}  # width × height: 1.0, 4.0 and 12.0 MP
F32 = {"INFERENCE_PRECISION_HINT": "f32"}
MODES = {"any-size graph": "dynamic", "fast path": "fixed"}

CHILD = """
import json, resource, sys, time
import psutil
from anomalib.deploy import OpenVINOInferencer
from anomalib_grad.deploy.inferencer import GradOpenVINOInferencer

mode, xml, images = sys.argv[1], sys.argv[2], json.loads(sys.argv[3])
process = psutil.Process()
start = time.perf_counter()
inferencer_class = GradOpenVINOInferencer if mode == "fixed" else OpenVINOInferencer
inferencer = inferencer_class(xml, device="CPU", config={"INFERENCE_PRECISION_HINT": "f32"})
rows = [{"size": "load", "first_s": time.perf_counter() - start, "rss_mb": process.memory_info().rss / 2**20}]
for megapixels, path in images:
    start = time.perf_counter()
    inferencer.predict(path)
    first = time.perf_counter() - start
    start = time.perf_counter()
    inferencer.predict(path)
    rows.append({
        "size": megapixels, "first_s": first, "second_s": time.perf_counter() - start,
        "rss_mb": process.memory_info().rss / 2**20,
    })
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({"rows": rows, "peak_mb": peak}))
"""


def train_and_export(output: Path) -> dict[str, Path]:
    """Train the small model once and export it with any size and with 256×256 (reused when present)."""
    paths = {"dynamic": output / "dynamic" / "weights" / "openvino" / "model.xml"}
    paths["fixed"] = output / "fixed" / "weights" / "openvino" / "model.xml"
    if all(path.is_file() for path in paths.values()):
        return paths
    from anomalib.engine import Engine
    from lightning.pytorch import seed_everything

    from anomalib_grad import Grad
    from anomalib_grad.data import SyntheticSurfaces

    seed_everything(0)
    model = Grad(abnormal_epochs=1, normal_epochs=1, visualizer=False)
    engine = Engine(default_root_dir=output / "run", accelerator="cpu", logger=False, enable_progress_bar=False)
    start = time.perf_counter()
    engine.fit(model, datamodule=SyntheticSurfaces(root=output / "data"))
    print(f"trained in {time.perf_counter() - start:.0f} s", flush=True)
    model.to_openvino(output / "dynamic")
    model.to_openvino(output / "fixed", input_size=(256, 256))
    return paths


def write_images(output: Path, megapixels: list[int]) -> list[tuple[int, str]]:
    """One PNG per size: a built-in test image (with a defect) enlarged."""
    source = next(iter(sorted((output / "data" / "textured_surface" / "test" / "scratch").glob("*.png"))))
    images = []
    for size in megapixels:
        path = output / "images" / f"{size}mp.png"
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.open(source).convert("RGB").resize(SIZES[size], Image.Resampling.BICUBIC).save(path)
        images.append((size, str(path)))
    return images


def run_mode(mode: str, xml: Path, images: list[tuple[int, str]]) -> dict:
    """Run one inference path in a fresh process and working directory (so an empty OpenVINO cache)."""
    with tempfile.TemporaryDirectory() as folder:
        command = [sys.executable, "-c", CHILD, mode, str(xml), json.dumps(images)]
        result = subprocess.run(command, cwd=folder, capture_output=True, text=True, check=True)
    return json.loads(result.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--output", type=Path, default=Path("results/benchmarks/openvino_large_images"))
    parser.add_argument("--megapixels", type=int, nargs="+", default=[1, 4, 12], choices=sorted(SIZES))
    arguments = parser.parse_args()
    warnings.filterwarnings("ignore")
    logging.disable(logging.WARNING)
    paths = train_and_export(arguments.output)
    images = write_images(arguments.output, arguments.megapixels)
    sizes = ", ".join(f"{size} MP {SIZES[size][0]}×{SIZES[size][1]}" for size in arguments.megapixels)
    print(f"\n{psutil.cpu_count()} CPU cores; images (W×H): {sizes}")
    print("\n| path | image | first call s | second call s | RSS after, MB |")
    print("|---|---|---|---|---|")
    for name, mode in MODES.items():
        result = run_mode(mode, paths[mode], images)
        for row in result["rows"]:
            size = "model load" if row["size"] == "load" else f"{row['size']} MP"
            second = f"{row['second_s']:.2f}" if "second_s" in row else ""
            print(f"| {name} | {size} | {row['first_s']:.2f} | {second} | {row['rss_mb']:.0f} |")
        print(f"| {name} | peak RSS | | | {result['peak_mb']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
