"""Grad fits its positional subspace and its image-score statistics on the pre-processed normal training images.

Oracles: NumPy's SVD per position (the subspaces), the images split by the CRC-32 parity of their paths (the
documented rule), and the map's smoothing and pooling written with ``F.avg_pool2d``. Checkpoint and export
keep both.
"""

import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.engine import Engine
from lightning.pytorch import seed_everything
from torch.nn import functional as F  # noqa: N812

from anomalib_grad import Grad
from anomalib_grad.data import SyntheticSurfaces
from tests.conftest import SMALL_MODEL
from tests.export_helpers import assert_parity, checkpoint_prediction, exported_prediction, sample_images
from tests.unit.test_positional_subspace import numpy_projection


def image_scores(distance: np.ndarray, input_size: tuple[int, int]) -> np.ndarray:
    """Upsample, 21×21 mean filter, then the maximum of the 32×32 mean: GRAD's image score of ``(N, 1, h, w)``."""
    maps = F.interpolate(torch.from_numpy(distance).float(), size=input_size, mode="bilinear", align_corners=True)
    maps = F.avg_pool2d(maps, 21, stride=1, padding=10, count_include_pad=False)
    return F.avg_pool2d(maps, 32, stride=1).flatten(1).amax(1).double().numpy()


def coarse_image_scores(distance: np.ndarray) -> np.ndarray:
    """At feature level (stride 8): 3×3 mean filter, then the maximum of the 4×4 mean: the positional image score."""
    maps = F.avg_pool2d(torch.from_numpy(distance).float(), 3, stride=1, padding=1, count_include_pad=False)
    return F.avg_pool2d(maps, 4, stride=1).flatten(1).amax(1).double().numpy()


@pytest.mark.slow
def test_engine_fit_fits_the_subspace_and_the_score_statistics(synthetic_root: Path, tmp_path: Path):
    seed_everything(0)
    model = Grad(**SMALL_MODEL, positional_rank=4, abnormal_epochs=1, normal_epochs=1, visualizer=False)
    datamodule = SyntheticSurfaces(root=synthetic_root, train_batch_size=16, num_workers=0)
    engine = Engine(default_root_dir=tmp_path, accelerator="cpu", logger=False, enable_progress_bar=False)
    engine.fit(model, datamodule=datamodule)
    subspace, fusion = model.model.positional_subspace, model.model.score_fusion
    assert bool(subspace.fitted)
    assert bool(fusion.fitted)
    # Every training image, pre-processed by hand, through the backbone.
    items = list(datamodule.train_data)
    assert len(items) == 60
    images = torch.stack([item.image for item in items])
    halves = np.array([zlib.crc32(str(item.image_path).encode()) % 2 for item in items])
    assert 0 < halves.sum() < len(items)
    model.eval()
    with torch.no_grad():
        features = model.model.extract_features(model.pre_processor.transform(images))
        reconstruction_distance = torch.linalg.vector_norm(features - model.model.reconstruct(features), dim=1)
        features = features.double().numpy()
        probe = features[:3] + 0.5
        fitted = subspace.project(torch.from_numpy(probe).float()).numpy()
    np.testing.assert_allclose(subspace.mean.numpy(), features.mean(0), atol=1e-4)
    np.testing.assert_allclose(fitted, numpy_projection(features, probe, rank=4), atol=1e-3)

    # Score statistics: each half's positional distance measured against the subspace fitted on the other half.
    positional_distance = np.empty((len(items), 1, *features.shape[2:]))
    for half in (0, 1):
        own, other = features[halves == half], features[halves != half]
        residual = own - numpy_projection(other, own, rank=4)
        positional_distance[halves == half] = np.linalg.norm(residual, axis=1, keepdims=True)
    scores = np.stack(
        [
            image_scores(reconstruction_distance[:, None].double().numpy(), model.model.input_size),
            coarse_image_scores(positional_distance),
        ],
        axis=1,
    )
    np.testing.assert_allclose(fusion.mean.numpy(), scores.mean(0), rtol=1e-3)
    np.testing.assert_allclose(fusion.std.numpy(), scores.std(0, ddof=1), rtol=1e-3)
    assert len(model.training_features.cache) == 0  # the cache the fit filled is freed with the rest after training

    reloaded = Grad.load_from_checkpoint(engine.trainer.checkpoint_callback.best_model_path).eval()
    for module, names in ((reloaded.model.positional_subspace, subspace), (reloaded.model.score_fusion, fusion)):
        for name, buffer in names.named_buffers():
            assert torch.equal(getattr(module, name), buffer), name
    images = sample_images(datamodule)
    exported = exported_prediction(reloaded.to_openvino(tmp_path / "openvino"), images)
    assert_parity(exported, checkpoint_prediction(reloaded, images))


def test_paper_model_has_no_positional_subspace():
    model = Grad(**SMALL_MODEL, positional_rank=0).model
    assert model.positional_subspace is None
    assert model.score_fusion is None
