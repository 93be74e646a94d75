"""Residual normalisation of a trained Grad, evaluated without retraining.

The anomaly map is ``‖φ − x̂_rec‖₂`` over channels: channels and positions whose features vary a lot
on normal images dominate it. This script keeps the residuals ``r = φ − x̂_rec`` of the training
images of a trained checkpoint, derives normal statistics from them, and evaluates maps that divide
the residual by them (per channel, per channel and position, or the distance by its per-position
mean) on the test set, with the smoothing and image scores of :mod:`score_variants`.

Usage::

    python benchmarks/residual_variants.py CELL/model.ckpt --root ../shared/data/real --category magnetic_tile
"""

import argparse
from pathlib import Path

import torch
from score_variants import evaluate, print_table  # same folder

from anomalib_grad import Grad
from anomalib_grad.data import MVTecLayout

EPSILON = 1e-6


def residuals(model: Grad, dataset: torch.utils.data.Dataset, batch_size: int = 16) -> dict[str, torch.Tensor]:
    """Residuals ``(N, C, h, w)`` (float16) of every image, each pre-processed on its own, with masks and labels."""
    chunks, masks, labels = [], [], []
    for start in range(0, len(dataset), batch_size):
        items = [dataset[index] for index in range(start, min(start + batch_size, len(dataset)))]
        images = torch.cat([model.pre_processor.transform(item.image[None]) for item in items])
        with torch.no_grad():
            features = model.model.extract_features(images)
            chunks.append((features - model.model.reconstruct(features)).half())
        size = model.model.input_size
        for item in items:
            mask = (
                torch.zeros(size)
                if item.gt_mask is None
                else item.gt_mask.float().reshape(1, 1, *item.gt_mask.shape[-2:])
            )
            masks.append(torch.nn.functional.interpolate(mask.reshape(1, 1, *mask.shape[-2:]), size=size)[0, 0] > 0.5)
            labels.append(int(item.gt_label))
    return {"residual": torch.cat(chunks), "mask": torch.stack(masks), "label": torch.tensor(labels)}


def collect(checkpoint: Path, root: str, category: str, cache: Path) -> dict[str, dict[str, torch.Tensor]]:
    """Training and test residuals of a checkpoint (cached beside it)."""
    if cache.is_file():
        return torch.load(cache)
    model = Grad.load_from_checkpoint(checkpoint).eval()
    datamodule = MVTecLayout(root=root, category=category, seed=0)
    datamodule.setup()
    data = {"train": residuals(model, datamodule.train_data), "test": residuals(model, datamodule.test_data)}
    data["input_size"] = torch.tensor(model.model.input_size)
    torch.save(data, cache)
    return data


def normalised_distances(data: dict, kind: str) -> torch.Tensor:
    """Test distance maps ``(N, 1, h, w)`` under one normalisation."""
    train, test = data["train"]["residual"].float(), data["test"]["residual"].float()
    if kind == "none":
        return torch.linalg.vector_norm(test, dim=1, keepdim=True)
    if kind == "channel":
        scale = train.pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt()[0]
        return torch.linalg.vector_norm(test / (scale + EPSILON), dim=1, keepdim=True)
    if kind == "channel_position":
        scale = train.pow(2).mean(dim=0).sqrt()
        return torch.linalg.vector_norm(test / (scale + EPSILON), dim=1, keepdim=True)
    distances = torch.linalg.vector_norm(test, dim=1, keepdim=True)
    train_distances = torch.linalg.vector_norm(train, dim=1, keepdim=True)
    if kind == "position":
        return distances / train_distances.mean(dim=0)
    if kind == "position_z":
        return (distances - train_distances.mean(dim=0)) / train_distances.std(dim=0)
    msg = f"unknown normalisation {kind}"
    raise ValueError(msg)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--root", default="../shared/data/real")
    parser.add_argument("--category", required=True)
    parser.add_argument(
        "--normalisations", nargs="+", default=["none", "channel", "channel_position", "position", "position_z"]
    )
    parser.add_argument("--smoothings", nargs="+", default=["mean21", "gauss4"])
    parser.add_argument("--scores", nargs="+", default=["pool32", "pool16", "pool8", "top1"])
    arguments = parser.parse_args()
    data = collect(
        arguments.checkpoint, arguments.root, arguments.category, arguments.checkpoint.parent / "residuals.pt"
    )
    rows = []
    for kind in arguments.normalisations:
        maps = {
            "distance": normalised_distances(data, kind),
            "mask": data["test"]["mask"],
            "label": data["test"]["label"],
            "input_size": data["input_size"],
        }
        rows += [
            {"normalisation": kind, **row} for row in evaluate(maps, arguments.smoothings, arguments.scores, False)
        ]
    print_table(rows)


if __name__ == "__main__":
    main()
