"""PerCategoryMetrics after engine.test: per-category rows, the mean, undefined categories, files, any model."""

import json
import math
import warnings

import pytest
from anomalib.engine import Engine
from anomalib.models import Padim

from anomalib_grad import Grad
from anomalib_grad.callbacks import PerCategoryMetrics
from anomalib_grad.callbacks.per_category_metrics import METRIC_NAMES, mean_row
from anomalib_grad.data import MultiCategory, MVTecLayout
from anomalib_grad.models.grad.components.real_anomalies import RealAnomalyStream
from tests.conftest import SMALL_MODEL

ENGINE_ARGS = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False}


def test_mean_skips_undefined_categories_and_says_so():
    rows = [
        {"category": "a", "n_normal": 2, "n_defective": 2} | dict.fromkeys(METRIC_NAMES, 0.5),
        {"category": "b", "n_normal": 2, "n_defective": 0} | dict.fromkeys(METRIC_NAMES, math.nan),
        {"category": "c", "n_normal": 1, "n_defective": 1} | dict.fromkeys(METRIC_NAMES, 1.0),
    ]
    mean = mean_row(rows)
    assert mean["image_AUROC"] == 0.75 and mean["n_defective"] == 3
    assert "excludes ['b']" in mean["note"]


@pytest.mark.slow
def test_unified_grad_on_mixed_categories_reports_each_category(mixed_root, tmp_path, monkeypatch, capsys):
    warnings.filterwarnings("ignore")
    draws = []
    original = RealAnomalyStream.next_batch
    monkeypatch.setattr(RealAnomalyStream, "next_batch", lambda self, device: draws.append(1) or original(self, device))
    datamodule = MultiCategory(
        "MVTecLayout",
        {"root": mixed_root},
        categories="all",
        train_batch_size=8,
        eval_batch_size=8,
        num_workers=0,
        seed=0,
        holdout_anomalies_per_type=1,
    )
    callback = PerCategoryMetrics()
    model = Grad(**SMALL_MODEL, abnormal_epochs=1, normal_epochs=1, visualizer=False)
    engine = Engine(default_root_dir=tmp_path, callbacks=[callback], **ENGINE_ARGS)
    engine.fit(model, datamodule=datamodule)
    assert len(draws) == 3  # stage A: one anomaly batch per training batch (18 images, batch 8); none in stage B
    engine.test(model, datamodule=datamodule, verbose=False)

    rows = {row["category"]: row for row in callback.results}
    assert list(rows) == ["gray", "nodefects", "rgb", "mean"]
    assert (rows["gray"]["n_normal"], rows["gray"]["n_defective"]) == (3, 3)  # 3 of 6 held out for training
    assert rows["nodefects"]["n_defective"] == 0
    assert all(math.isnan(rows["nodefects"][name]) for name in METRIC_NAMES)
    assert "no defective test images" in rows["nodefects"]["note"]
    for category in ("gray", "rgb"):
        assert all(0.0 <= rows[category][name] <= 1.0 for name in METRIC_NAMES), rows[category]
    assert rows["mean"]["image_AUROC"] == pytest.approx((rows["gray"]["image_AUROC"] + rows["rgb"]["image_AUROC"]) / 2)
    assert "excludes ['nodefects']" in rows["mean"]["note"]

    csv_path, json_path = callback.output_files
    assert csv_path.parent == json_path.parent and str(csv_path.parent).startswith(str(tmp_path))
    assert csv_path.read_text().splitlines()[0].startswith("category,n_normal,n_defective,image_AUROC")
    saved = json.loads(json_path.read_text())
    assert [row["category"] for row in saved["categories"]] == ["gray", "nodefects", "rgb"]
    assert saved["categories"][1]["image_AUROC"] is None
    assert "| mean |" in capsys.readouterr().out


@pytest.mark.slow
def test_single_category_matches_anomalibs_own_metrics_for_another_model(mixed_root, tmp_path):
    warnings.filterwarnings("ignore")
    datamodule = MVTecLayout(root=mixed_root, category="rgb", train_batch_size=8, eval_batch_size=8, num_workers=0)
    model = Padim(
        backbone="resnet18",
        pre_trained=False,
        n_features=20,
        pre_processor=Padim.configure_pre_processor(image_size=(64, 64)),
        visualizer=False,
    )
    callback = PerCategoryMetrics(print_table=False)
    engine = Engine(default_root_dir=tmp_path, callbacks=[callback], **ENGINE_ARGS)
    engine.fit(model, datamodule=datamodule)
    anomalib_metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    row = callback.results[0]
    assert row["category"] == "rgb" and (row["n_normal"], row["n_defective"]) == (3, 6)
    assert row["image_AUROC"] == pytest.approx(anomalib_metrics["image_AUROC"], abs=1e-6)
    assert row["pixel_AUROC"] == pytest.approx(anomalib_metrics["pixel_AUROC"], abs=1e-6)
