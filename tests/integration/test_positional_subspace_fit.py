"""Grad fits its positional subspace on the pre-processed normal training images; checkpoint and export keep it."""

from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_grad import Grad
from anomalib_grad.data import SyntheticSurfaces
from tests.conftest import SMALL_MODEL
from tests.integration.test_export import assert_parity, checkpoint_prediction, exported_prediction, sample_images
from tests.unit.test_positional_subspace import numpy_projection


@pytest.mark.slow
def test_engine_fit_fits_the_subspace_on_all_normal_training_images(synthetic_root: Path, tmp_path: Path):
    seed_everything(0)
    model = Grad(**SMALL_MODEL, positional_rank=4, abnormal_epochs=1, normal_epochs=1, visualizer=False)
    datamodule = SyntheticSurfaces(root=synthetic_root, train_batch_size=16, num_workers=0)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False)
    engine.fit(model, datamodule=datamodule)
    subspace = model.model.positional_subspace
    assert bool(subspace.fitted)
    # The oracle: every training image, pre-processed by hand, through the backbone, then NumPy's SVD per position.
    images = torch.stack([item.image for item in datamodule.train_data])
    assert len(images) == 60
    model.eval()
    with torch.no_grad():
        features = model.model.extract_features(model.pre_processor.transform(images)).double().numpy()
        probe = features[:3] + 0.5
        fitted = subspace(torch.from_numpy(probe).float()).numpy()
    np.testing.assert_allclose(subspace.mean.numpy(), features.mean(0), atol=1e-4)
    np.testing.assert_allclose(fitted, numpy_projection(features, probe, rank=4), atol=1e-3)
    assert len(model.training_features.cache) == 0  # the cache the fit filled is freed with the rest after training

    reloaded = Grad.load_from_checkpoint(engine.trainer.checkpoint_callback.best_model_path).eval()
    for name in ("mean", "basis", "fitted"):
        assert torch.equal(getattr(reloaded.model.positional_subspace, name), getattr(subspace, name)), name
    images = sample_images(datamodule)
    exported = exported_prediction(reloaded.to_openvino(tmp_path / "openvino"), images)
    assert_parity(exported, checkpoint_prediction(reloaded, images))


def test_paper_model_has_no_positional_subspace():
    assert Grad(**SMALL_MODEL).model.positional_subspace is None
