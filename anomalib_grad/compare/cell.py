"""Train, test and measure one cell of a comparison (one model, one category or unified, one fraction).

The runner starts each cell as its own process (``python -m anomalib_grad.compare.cell``), so a cell's
peak memory is its own, and a cell that crashes or is killed takes nothing else with it. The cell
writes its record (a JSON file) atomically when it ends, successful or not, and exits as soon as the
runner that started it is gone (:func:`exit_with_parent`), so a killed comparison leaves no cell behind.

Example:
    >>> from anomalib_grad.compare.plan import Cell, ComparisonPlan
    >>> plan = ComparisonPlan(models=["padim"], root="../shared/data/real", categories=["bottle"])
    >>> record = run_cell(plan, Cell("padim", "bottle", 1.0), Path("results/compare/cells/padim__bottle__1__seed0"))
    ... # doctest: +SKIP
    >>> record.rows[0]["image_AUROC"]  # doctest: +SKIP
    1.0
"""

import io
import json
import logging
import os
import shutil
import sys
import threading
import time
import traceback
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch
from anomalib.data import AnomalibDataModule
from anomalib.engine import Engine
from anomalib.models import AnomalibModule
from lightning.pytorch import seed_everything
from torchvision.transforms.v2.functional import resize

from anomalib_grad.callbacks import PerCategoryMetrics
from anomalib_grad.compare.cell_record import OK, CellRecord
from anomalib_grad.compare.data import prepare_datamodule
from anomalib_grad.compare.memory import MEGABYTE, PeakMemory
from anomalib_grad.compare.models import build_model
from anomalib_grad.compare.plan import UNIFIED, Cell, ComparisonPlan
from anomalib_grad.compare.records import write_json_atomic
from anomalib_grad.compare.throughput import export_openvino, measure_speed, openvino_runner, torch_runner
from anomalib_grad.models.grad import Grad

EXAMPLES_FILE = "examples.npz"
PARENT_PID_VARIABLE = "ANOMALIB_GRAD_COMPARE_PARENT_PID"
PARENT_CHECK_S = 0.5
ORPHAN_EXIT_CODE = 3


def exit_with_parent(parent_pid: int | None = None, interval_s: float = PARENT_CHECK_S) -> None:
    """Exit this process (at once, with its threads) when the process that started it is gone.

    A daemon thread compares the parent process id with ``parent_pid`` every ``interval_s``; when the
    runner dies (even by ``kill -9``) the cell is re-parented and exits instead of running on beside a
    new comparison in the same folder. Its data-loader workers follow, as they exit with their parent.

    Args:
        parent_pid: The runner's pid; default: ``$ANOMALIB_GRAD_COMPARE_PARENT_PID`` (set by the runner),
            else the current parent.
        interval_s: Seconds between checks.
    """
    expected = parent_pid or int(os.environ.get(PARENT_PID_VARIABLE, os.getppid()))

    def watch() -> None:
        while os.getppid() == expected:
            time.sleep(interval_s)
        print(f"The comparison (pid {expected}) that started this cell is gone: exiting.", file=sys.stderr)
        os._exit(ORPHAN_EXIT_CODE)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


def _device(accelerator: str) -> torch.device:
    wants_gpu = accelerator in {"gpu", "cuda"} or (accelerator == "auto" and torch.cuda.is_available())
    return torch.device("cuda" if wants_gpu else "cpu")


def _state_dict_megabytes(model: AnomalibModule) -> float:
    """Size of the trained model's state dict as ``torch.save`` writes it (no optimiser state)."""
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.tell() / MEGABYTE


def _fusion_statistics(model: AnomalibModule) -> dict[str, float] | None:
    """Grad's fusion weight and abnormal-to-normal contribution on the validation images (``None`` otherwise)."""
    if isinstance(model, Grad) and model.model.fusion is not None:
        return model.fusion_statistics.result()
    return None


def example_indices(datamodule: AnomalibDataModule, group: str, per_category: int) -> list[tuple[str, int]]:
    """The test images of the anomaly-map grid, the same for every model.

    Per category, the first normal image and the first image of each defect type (by path),
    ``per_category`` at most.

    Returns:
        ``(category, index in test_data)`` pairs.
    """
    samples = datamodule.test_data.samples.reset_index(drop=True)
    lookup = datamodule.category_lookup() if group == UNIFIED else {}
    chosen: dict[str, dict[str, int]] = {}
    for index in sorted(range(len(samples)), key=lambda i: str(samples.image_path[i])):
        path = str(samples.image_path[index])
        category = lookup.get(path, group)
        defect = "good" if int(samples.label_index[index]) == 0 else Path(path).parent.name
        chosen.setdefault(category, {}).setdefault(defect, index)
    pairs = []
    for category, by_defect in sorted(chosen.items()):
        ordered = [by_defect.pop("good")] if "good" in by_defect else []
        ordered += [by_defect[name] for name in sorted(by_defect)]
        pairs += [(category, index) for index in ordered[:per_category]]
    return pairs


def save_examples(
    model: AnomalibModule,
    datamodule: AnomalibDataModule,
    group: str,
    plan: ComparisonPlan,
    path: Path,
) -> list[dict[str, Any]]:
    """Predict the grid's test images and save image, ground truth and normalised map at the plan's size.

    Returns:
        ``{"category", "image_path", "pred_score"}`` per example, in the saved order.
    """
    run = torch_runner(model, torch.device("cpu"))
    images, masks, maps, described = [], [], [], []
    for category, index in example_indices(datamodule, group, plan.num_examples):
        item = datamodule.test_data[index]
        image = resize(item.image[None], list(plan.image_size)).clamp(0, 1)
        prediction = run(image)
        anomaly_map = prediction.anomaly_map.reshape(1, 1, *prediction.anomaly_map.shape[-2:]).float()
        mask = (
            torch.zeros(1, *plan.image_size)
            if item.gt_mask is None
            else item.gt_mask.reshape(1, *item.gt_mask.shape[-2:])
        )
        images.append((image[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8))
        masks.append(resize(mask.float(), list(plan.image_size))[0].numpy() > 0.5)
        maps.append(resize(anomaly_map, list(plan.image_size))[0, 0].numpy().astype(np.float16))
        described.append(
            {
                "category": category,
                "image_path": str(item.image_path),
                "pred_score": float(prediction.pred_score.reshape(-1)[0]),
            }
        )
    np.savez_compressed(path, images=np.stack(images), masks=np.stack(masks), maps=np.stack(maps))
    return described


def run_cell(plan: ComparisonPlan, cell: Cell, folder: Path) -> CellRecord:
    """Train and test one cell, and measure it.

    Args:
        plan: The comparison plan.
        cell: The cell.
        folder: The cell's folder (anomalib's run folder, the checkpoint and the grid examples).

    Returns:
        The record: per-category metrics (``rows``), training images, wall times, peak memory while
        training and testing (host, and GPU on a CUDA device), model size, throughput in torch and
        OpenVINO, and the grid examples.
    """
    seed_everything(cell.seed)
    datamodule, n_train = prepare_datamodule(plan, cell.category, cell.fraction)
    init_args = plan.model_init_args(cell.model, cell.category)
    model = build_model(plan.base_model(cell.model), plan.image_size, init_args)
    metrics = PerCategoryMetrics(print_table=False)
    engine = Engine(
        default_root_dir=folder / "run",
        accelerator=plan.accelerator,
        devices=1,
        logger=False,
        enable_progress_bar=False,
        callbacks=[metrics],
    )
    device = _device(plan.accelerator)
    with PeakMemory(device=device) as training_memory:
        start = time.perf_counter()
        engine.fit(model, datamodule=datamodule)
        fit_seconds = time.perf_counter() - start
    with PeakMemory(device=device) as testing_memory:
        start = time.perf_counter()
        engine.test(model, datamodule=datamodule, verbose=False)
        test_seconds = time.perf_counter() - start
    if engine.best_model_path:
        shutil.copy(engine.best_model_path, folder / "model.ckpt")
        shutil.rmtree(folder / "run", ignore_errors=True)
    record = CellRecord(
        cell=cell,
        status=OK,
        init_args=init_args,
        rows=metrics.results,
        n_train=n_train,
        fit_s=fit_seconds,
        test_s=test_seconds,
        peak_train_mb=training_memory.peak_mb,
        peak_test_mb=testing_memory.peak_mb,
        peak_train_gpu_mb=training_memory.peak_gpu_mb,
        peak_test_gpu_mb=testing_memory.peak_gpu_mb,
        model_mb=_state_dict_megabytes(model),
        fusion=_fusion_statistics(model),
    )
    test_images = torch.stack([datamodule.test_data[i].image for i in range(plan.throughput_batch_size)])
    batch = resize(test_images, list(plan.image_size)).clamp(0, 1)
    record.torch = measure_speed(torch_runner(model, device), batch, plan.timing_seconds)
    record.examples = save_examples(model, datamodule, cell.category, plan, folder / EXAMPLES_FILE)
    if plan.openvino and cell.fraction == plan.full_fraction:  # the scaling cells time torch only
        try:
            xml = export_openvino(model, folder / "openvino", batch)
            record.openvino = measure_speed(openvino_runner(xml), batch, plan.timing_seconds)
            record.openvino_mb = xml.with_suffix(".bin").stat().st_size / MEGABYTE
        except Exception as error:  # any export failure is reported; the cell's results stand
            record.openvino_error = f"{type(error).__name__}: {error}"
    return record


def main(arguments: list[str] | None = None) -> int:
    """Run one cell from the command line: ``PLAN_JSON CELL_JSON FOLDER RECORD_JSON``.

    Writes the record (``"status": "failed"`` with the error when the cell raises) and returns the exit code.
    """
    plan_file, cell_json, folder, record_file = arguments or sys.argv[1:]
    plan = ComparisonPlan(**json.loads(Path(plan_file).read_text(encoding="utf-8")))
    cell = Cell(**json.loads(cell_json))
    Path(folder).mkdir(parents=True, exist_ok=True)
    warnings.filterwarnings("ignore")
    logging.getLogger("lightning").setLevel(logging.ERROR)
    try:
        record = run_cell(plan, cell, Path(folder))
    except Exception as error:  # recorded; the runner goes on with other cells
        traceback.print_exc()
        record = CellRecord.failure(cell, f"{type(error).__name__}: {error}")
    write_json_atomic(Path(record_file), record.to_dict())
    return 0 if record.ok else 1


if __name__ == "__main__":
    exit_with_parent()
    sys.exit(main())
