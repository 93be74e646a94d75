"""Accuracy on real MVTec-layout data from ../shared/data/real (skipped when absent).

A shortened CPU schedule (1 + 6 epochs instead of 4 + 16) keeps this under a few
minutes; the floors are set below what it measured (README has the full preset's numbers).
"""

import pytest
import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_grad import Grad
from anomalib_grad.data import MVTecLayout
from tests.conftest import real_category

pytestmark = pytest.mark.slow


def test_bottle_accuracy_with_a_short_cpu_schedule(tmp_path):
    root = real_category("bottle")
    seed_everything(0)
    model = Grad(abnormal_epochs=1, normal_epochs=6, visualizer=False)
    datamodule = MVTecLayout(root=root, category="bottle", train_batch_size=16, eval_batch_size=16, num_workers=2)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False)
    engine.fit(model, datamodule=datamodule)
    metrics = engine.test(model, datamodule=datamodule, verbose=False)[0]
    assert metrics["image_AUROC"] >= 0.97
    assert metrics["pixel_AUROC"] >= 0.95


def test_grayscale_images_of_varying_size_are_scored(tmp_path):
    root = real_category("magnetic_tile")
    datamodule = MVTecLayout(root=root, category="magnetic_tile", eval_batch_size=4, num_workers=0)
    datamodule.setup()
    model = Grad(pre_trained=False, input_size=(128, 128), fbp_block_size=(0, 4)).eval()
    sizes = set()
    for index in range(0, len(datamodule.test_data), len(datamodule.test_data) // 6):
        item = datamodule.test_data[index]
        sizes.add(tuple(item.image.shape[-2:]))
        assert item.image.shape[0] == 3  # grayscale read as RGB
        with torch.no_grad():
            prediction = model(item.image.unsqueeze(0))  # pre-processor resizes any size
        assert prediction.anomaly_map.shape[-2:] == (128, 128)
        assert torch.isfinite(prediction.pred_score).all()
    assert len(sizes) > 1  # the category really mixes image sizes
