"""Shared fixtures: small, fast GRAD models and the optional real data."""

from pathlib import Path

import pytest

from anomalib_grad import Grad

REAL_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "real"

SMALL_MODEL = {
    "pre_trained": False,
    "input_size": (64, 64),
    "branch_depth": 1,
    "branch_width": 16,
    "fbp_block_size": (0, 2),
}


@pytest.fixture
def small_grad() -> Grad:
    """A GRAD model on 64×64 images with random backbone weights: fast to build and run."""
    return Grad(**SMALL_MODEL)


def real_category(name: str) -> Path:
    """Root of ``../shared/data/real`` if ``name`` is there, else skip the test."""
    if not (REAL_DATA / name / "train" / "good").is_dir():
        pytest.skip(f"real data not found at {REAL_DATA / name}")
    return REAL_DATA


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in synthetic dataset, generated once per test session."""
    from anomalib_grad.data import generate_synthetic_surfaces

    root = tmp_path_factory.mktemp("synthetic")
    generate_synthetic_surfaces(root)
    return root
