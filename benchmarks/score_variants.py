"""Score-only variants of a trained Grad: other map smoothing and image scores, no retraining.

The map and the image score are computed from ``‖φ − x̂_rec‖₂`` at feature resolution. This script
runs a trained checkpoint once over a category's test set, keeps those raw distance maps (with the
ground truth), and evaluates every smoothing × image-score variant on them with anomalib's metrics.
The variants score the reconstruction map alone (the paper's image score). The model's own image score
(with its positional score, if it has one) is printed too; ``--positional-rank K`` first gives a
checkpoint trained without one a positional score of rank K, fitted on the category's training images
as training fits it.

Usage::

    python benchmarks/score_variants.py results/compare/X/cells/grad__magnetic_tile__1/model.ckpt \
        --root ../shared/data/real --category magnetic_tile [--positional-rank 32]
"""

import argparse
import json
from pathlib import Path

import torch
from anomalib.engine import Engine
from anomalib.metrics.aupro import _AUPRO as RawAUPRO  # noqa: N811
from anomalib.models.components.filters import GaussianBlur2d
from lightning.pytorch import Callback
from torch.nn import functional as F  # noqa: N812
from torchmetrics.functional.classification import binary_auroc, binary_average_precision

from anomalib_grad import Grad
from anomalib_grad.data import MVTecLayout
from anomalib_grad.models.grad.anomaly_map import separable_box_filter
from anomalib_grad.models.grad.components.positional_subspace import PositionalSubspace
from anomalib_grad.models.grad.components.score_fusion import StandardisedScoreSum
from anomalib_grad.models.grad.subspace_fitting import fit_positional_subspaces, fit_score_statistics
from anomalib_grad.writers import markdown_table


class RawMaps(Callback):
    """Collect the raw feature-level distance maps, masks and labels of every test batch."""

    def __init__(self, model: Grad) -> None:
        self.distances: list[torch.Tensor] = []
        self.masks: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []
        self.model_scores: list[torch.Tensor] = []
        self.model = model.model
        model.model.anomaly_map_generator.register_forward_hook(self._hook)

    def _hook(self, module: torch.nn.Module, inputs: tuple, output: tuple) -> None:
        del module
        features, reconstruction = inputs
        self.distances.append(torch.linalg.vector_norm(features - reconstruction, dim=1, keepdim=True).cpu())
        score = output[1]
        if self.model.score_fusion is not None:
            score = self.model.score_fusion(torch.stack([score, self.model.positional_score(features)], dim=1))
        self.model_scores.append(score.cpu())

    def on_test_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:  # noqa: ANN001, D102
        self.masks.append(batch.gt_mask.cpu().bool())
        self.labels.append(batch.gt_label.cpu().int())


@torch.no_grad()
def add_positional_score(model: Grad, root: str, category: str, rank: int, batch_size: int = 16) -> None:
    """Give a trained Grad a positional score of ``rank``, fitted on the category's training images as in training."""
    grad = model.model.eval()
    grad.positional_subspace = PositionalSubspace(grad.feature_extractor.out_channels, grad.feature_size, rank)
    grad.score_fusion = StandardisedScoreSum(scores=2)
    datamodule = MVTecLayout(root=root, category=category, train_batch_size=batch_size, num_workers=2, seed=0)
    datamodule.setup()
    batches = [
        (grad.extract_features(model.pre_processor.transform(batch.image)), list(batch.image_path))
        for batch in datamodule.train_dataloader()
    ]
    fit_score_statistics(grad, batches, fit_positional_subspaces(grad.positional_subspace, batches))


def collect(
    checkpoint: Path, root: str, category: str, cache: Path, batch_size: int = 16, positional_rank: int = 0
) -> dict[str, torch.Tensor]:
    """Raw distance maps ``(N, 1, h, w)``, masks ``(N, H, W)``, labels and the model's image scores ``(N,)``."""
    if cache.is_file():
        return torch.load(cache)
    model = Grad.load_from_checkpoint(checkpoint)
    if positional_rank:
        add_positional_score(model, root, category, positional_rank, batch_size)
    callback = RawMaps(model)
    engine = Engine(logger=False, enable_progress_bar=False, callbacks=[callback], default_root_dir=cache.parent)
    datamodule = MVTecLayout(root=root, category=category, eval_batch_size=batch_size, num_workers=2, seed=0)
    engine.test(model, datamodule=datamodule, verbose=False)
    data = {
        "distance": torch.cat(callback.distances),
        "mask": torch.cat(callback.masks).squeeze(1),
        "label": torch.cat(callback.labels),
        "model_score": torch.cat(callback.model_scores),
        "input_size": torch.tensor(model.model.input_size),
    }
    torch.save(data, cache)
    return data


def smooth(maps: torch.Tensor, kind: str) -> torch.Tensor:
    """Smooth full-size maps ``(N, 1, H, W)``: ``none``, ``meanK`` (K×K box) or ``gaussS`` (σ = S)."""
    if kind == "none":
        return maps
    if kind.startswith("mean"):
        size = int(kind[4:])
        return separable_box_filter(maps, size, padding=size // 2)
    sigma = float(kind[5:])
    blur = GaussianBlur2d(sigma=sigma, channels=1)
    return torch.cat([blur(part) for part in maps.split(32)])


def image_score(maps: torch.Tensor, kind: str) -> torch.Tensor:
    """Image score of maps ``(N, 1, H, W)``: ``poolK`` (max of K×K mean) or ``topP`` (mean of top P % pixels)."""
    if kind.startswith("pool"):
        size = int(kind[4:])
        pooled = maps if size == 1 else separable_box_filter(maps, size, padding=0)
        return pooled.flatten(1).amax(1)
    fraction = float(kind[3:]) / 100
    flat = maps.flatten(1)
    k = max(1, round(fraction * flat.shape[1]))
    return flat.topk(k, dim=1).values.mean(1)


def _unit(values: torch.Tensor) -> torch.Tensor:
    """Min-max scale to ``[0, 1]`` (torchmetrics applies a sigmoid to scores outside it, creating ties)."""
    return (values - values.min()) / (values.max() - values.min()).clamp(min=1e-12)


def evaluate(data: dict[str, torch.Tensor], smoothings: list[str], scores: list[str], aupro: bool) -> list[dict]:
    """Metrics of every variant."""
    size = tuple(int(side) for side in data["input_size"])
    upsampled = torch.cat(
        [F.interpolate(part, size=size, mode="bilinear", align_corners=True) for part in data["distance"].split(32)]
    )
    masks = F.interpolate(data["mask"][:, None].float(), size=size, mode="nearest")[:, 0] > 0.5
    labels = data["label"]
    rows = []
    for smoothing in smoothings:
        maps = _unit(smooth(upsampled, smoothing))
        pixel = {
            "pixel_AUROC": float(binary_auroc(maps.flatten(), masks.flatten().int())),
            "pixel_AUPR": float(binary_average_precision(maps.flatten(), masks.flatten().int())),
        }
        if aupro:
            metric = RawAUPRO()
            metric.update(maps[:, 0], masks)
            pixel["pixel_AUPRO"] = float(metric.compute())
        for score in scores:
            values = _unit(image_score(maps, score))
            rows.append(
                {
                    "smoothing": smoothing,
                    "score": score,
                    "image_AUROC": float(binary_auroc(values, labels)),
                    "image_AUPR": float(binary_average_precision(values, labels)),
                    **pixel,
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    """Print result rows as a Markdown table (text columns as they are, numbers to 4 decimals)."""
    print(markdown_table(rows, list(rows[0])))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("--root", default="../shared/data/real")
    parser.add_argument("--category", required=True)
    parser.add_argument("--smoothings", nargs="+", default=["none", "mean21", "mean9", "gauss4", "gauss2", "gauss8"])
    parser.add_argument("--scores", nargs="+", default=["pool32", "pool16", "pool8", "pool1", "top0.1", "top1"])
    parser.add_argument("--aupro", action="store_true")
    parser.add_argument("--eval-batch-size", type=int, default=16)
    parser.add_argument("--positional-rank", type=int, default=0, help="add a positional score of this rank first")
    parser.add_argument("--output", type=Path)
    arguments = parser.parse_args()
    rank = arguments.positional_rank
    cache = arguments.checkpoint.parent / f"raw_maps_b{arguments.eval_batch_size}{f'_rank{rank}' if rank else ''}.pt"
    data = collect(arguments.checkpoint, arguments.root, arguments.category, cache, arguments.eval_batch_size, rank)
    rows = evaluate(data, arguments.smoothings, arguments.scores, arguments.aupro)
    print_table(rows)
    scores, labels = _unit(data["model_score"]), data["label"]
    auroc, aupr = float(binary_auroc(scores, labels)), float(binary_average_precision(scores, labels))
    added = f" (positional rank {rank} added)" if rank else ""
    print(f"The model's own image score{added}: image AUROC {auroc:.4f}, AUPR {aupr:.4f}")
    if arguments.output:
        arguments.output.write_text(json.dumps(rows, indent=2), encoding="utf-8")


if __name__ == "__main__":
    main()
