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


def write_mixed_categories(root: Path) -> Path:
    """Write three tiny categories in MVTec layout that differ in size, channels and defects.

    ``rgb``: 64×64 RGB, 3 defect types; ``gray``: 80×80 grayscale, 3 defect types;
    ``nodefects``: 64×64 RGB with normal test images only.
    """
    from PIL import Image

    from anomalib_grad.data import generate_synthetic_surfaces

    counts = {"num_train": 6, "num_test_good": 3}
    generate_synthetic_surfaces(root, category="rgb", seed=0, image_size=64, num_test_per_defect=2, **counts)
    gray = generate_synthetic_surfaces(root, category="gray", seed=1, image_size=80, num_test_per_defect=2, **counts)
    for path in [*(gray / "train").rglob("*.png"), *(gray / "test").rglob("*.png")]:
        Image.open(path).convert("L").save(path)
    generate_synthetic_surfaces(root, category="nodefects", seed=2, image_size=64, num_test_per_defect=0, **counts)
    return root


@pytest.fixture(scope="session")
def mixed_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Tiny categories of mixed sizes and channels (see :func:`write_mixed_categories`), generated once."""
    return write_mixed_categories(tmp_path_factory.mktemp("mixed"))


@pytest.fixture(scope="session")
def compare_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The comparison tests' data: ``rgb`` (64×64) and ``gray`` (grayscale, 80×80), 8 training images each."""
    from PIL import Image

    from anomalib_grad.data import generate_synthetic_surfaces

    root = tmp_path_factory.mktemp("compare_data")
    counts = {"num_train": 8, "num_test_good": 2, "num_test_per_defect": 2}
    generate_synthetic_surfaces(root, category="rgb", seed=0, image_size=64, **counts)
    gray = generate_synthetic_surfaces(root, category="gray", seed=1, image_size=80, **counts)
    for path in gray.rglob("*.png"):
        if "ground_truth" not in path.parts:
            Image.open(path).convert("L").save(path)
    return root


TRAINING_FIXTURES = {"trained", "comparison"}  # module fixtures that train models once for their tests


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark ``slow`` every test that uses a fixture which trains a model."""
    for item in items:
        if TRAINING_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
