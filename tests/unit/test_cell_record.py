"""CellRecord writes a cell's record file exactly as the cells always wrote it, and reads old and new ones."""

import json
from pathlib import Path

import pytest

from anomalib_grad.compare.cell_record import CellRecord
from anomalib_grad.compare.plan import Cell
from anomalib_grad.writers import write_json_atomic

# A successful cell's record as cell.py wrote it (key order included), OpenVINO export and all.
OK_RECORD = {
    "cell": {"model": "grad", "category": "bottle", "fraction": 1.0, "seed": 0},
    "status": "ok",
    "init_args": {"abnormal_epochs": 4, "normal_epochs": 16},
    "rows": [
        {"category": "bottle", "image_AUROC": 1.0, "pixel_AUROC": 0.9812, "pixel_AUPRO": None},
        {"category": "mean", "image_AUROC": 1.0, "pixel_AUROC": 0.9812, "pixel_AUPRO": None},
    ],
    "n_train": 209,
    "fit_s": 118.25,
    "test_s": 9.5,
    "peak_train_mb": 2210.4,
    "peak_test_mb": 1804.0,
    "peak_train_gpu_mb": None,
    "peak_test_gpu_mb": None,
    "model_mb": 14.2,
    "fusion": {"fusion_weight": -0.31, "abnormal_contribution": 0.12},
    "torch": {"latency_ms": 41.0, "images_per_s": 24.39},
    "examples": [{"category": "bottle", "image_path": "bottle/test/good/000.png", "pred_score": 0.1}],
    "openvino": {"latency_ms": 12.5, "images_per_s": 80.0},
    "openvino_error": None,
    "openvino_mb": 13.9,
}
FAILED_RECORD = {
    "cell": {"model": "patchcore", "category": "magnetic_tile", "fraction": 0.25, "seed": 2},
    "status": "failed",
    "error": "process killed (out of memory?): epoch 0 / loading",
}


def dumped(data: dict) -> str:
    return json.dumps(data, indent=2)


@pytest.mark.parametrize("data", [OK_RECORD, FAILED_RECORD], ids=["ok", "failed"])
def test_a_record_file_reads_and_writes_back_byte_for_byte(data: dict, tmp_path: Path) -> None:
    written, rewritten = tmp_path / "written.json", tmp_path / "rewritten.json"
    write_json_atomic(written, data)  # as the cell wrote it
    record = CellRecord.from_dict(json.loads(written.read_text(encoding="utf-8")))
    write_json_atomic(rewritten, record.to_dict())
    assert rewritten.read_bytes() == written.read_bytes()
    assert json.dumps(record.to_dict()) == json.dumps(data)
    assert record.ok is (data["status"] == "ok")


def test_attributes_are_the_record_keys() -> None:
    record = CellRecord.from_dict(OK_RECORD)
    assert record.cell == Cell("grad", "bottle", 1.0, 0)
    assert record.rows[-1]["pixel_AUROC"] == 0.9812
    assert record.torch["images_per_s"] == 24.39
    assert record.peak_train_gpu_mb is None
    assert record.error is None
    failed = CellRecord.from_dict(FAILED_RECORD)
    assert failed.error.startswith("process killed")
    assert failed.rows is None


def test_a_new_record_writes_the_keys_cells_always_wrote() -> None:
    values = {key: value for key, value in OK_RECORD.items() if key not in {"cell", "openvino_mb"}}
    record = CellRecord(cell=Cell("grad", "bottle", 1.0), **values)
    without_export_size = {key: value for key, value in OK_RECORD.items() if key != "openvino_mb"}
    assert dumped(record.to_dict()) == dumped(without_export_size)  # nulls kept, openvino_mb only when set
    record.openvino_mb = 13.9
    assert dumped(record.to_dict()) == dumped(OK_RECORD)
    failure = CellRecord.failure(Cell("patchcore", "magnetic_tile", 0.25, 2), FAILED_RECORD["error"])
    assert dumped(failure.to_dict()) == dumped(FAILED_RECORD)
    assert failure == CellRecord.from_dict(FAILED_RECORD)


def test_a_record_without_an_optional_key_reads_it_as_none_and_writes_it_back_without() -> None:
    older = {key: value for key, value in OK_RECORD.items() if key not in {"fusion", "peak_train_gpu_mb"}}
    record = CellRecord.from_dict(older)
    assert record.fusion is None and record.peak_train_gpu_mb is None
    assert dumped(record.to_dict()) == dumped(older)
    record.fusion = {"fusion_weight": -0.5, "abnormal_contribution": 0.2}  # a value set later is written, last
    assert list(record.to_dict())[-1] == "fusion"


def test_unknown_keys_are_kept_in_place_and_unknown_cell_keys_ignored() -> None:
    items = list(OK_RECORD.items())
    newer = {**dict(items[:3]), "energy_j": 12.5, **dict(items[3:]), "notes": ["a"]}  # keys of a newer version
    newer["cell"] = {**OK_RECORD["cell"], "device": "cuda:1"}
    record = CellRecord.from_dict(newer)
    assert record.extra == {"energy_j": 12.5, "notes": ["a"]}
    assert record.cell == Cell("grad", "bottle", 1.0, 0)
    assert dumped(record.to_dict()) == dumped({**newer, "cell": OK_RECORD["cell"]})
