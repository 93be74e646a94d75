"""Run by tests/test_per_category_ddp.py, once per rank: ``python per_category_ddp_script.py RANK WORLD PORT OUT``.

Feeds :class:`PerCategoryMetrics` this rank's share of a fixed set of predictions (see :func:`predictions`),
inside a real gloo process group when ``WORLD > 1``, and writes its ``results`` to ``OUT/results.RANK.json``.
"""

import json
import sys
from pathlib import Path
from types import SimpleNamespace

import torch
from torch import distributed

from anomalib_grad.callbacks import PerCategoryMetrics

SIZE = 8  # anomaly maps of 8 × 8 pixels


def predictions() -> list[dict]:
    """Every test image: its path, category, the rank that scores it in a 2-process run, label, score and map.

    The split is the uneven one a unified test set can get: ``a`` on both ranks; ``b`` on rank 1 only; ``c``'s
    normal images on rank 0 and its defective ones on rank 1, so neither rank alone can rank ``c``.
    """
    generator = torch.Generator().manual_seed(0)
    images = []
    for category, ranks_by_label in {"a": ((0, 1), (0, 1)), "b": ((1,), (1,)), "c": ((0,), (1,))}.items():
        for label, ranks in enumerate(ranks_by_label):
            for index in range(6):
                mask = torch.zeros(SIZE, SIZE, dtype=torch.bool)
                if label:
                    mask[index % 4 : index % 4 + 3, 2:5] = True
                anomaly_map = torch.rand(SIZE, SIZE, generator=generator) + 0.8 * mask
                images.append(
                    {
                        "path": f"/data/{category}/{label}/{index}.png",
                        "category": category,
                        "rank": ranks[index % len(ranks)],
                        "label": label,
                        "score": float(anomaly_map.max()) + 0.3 * float(torch.rand(1, generator=generator)),
                        "map": anomaly_map,
                        "mask": mask,
                    },
                )
    return images


def batch(images: list[dict]) -> SimpleNamespace:
    """The test-step output anomalib's callbacks see, for ``images``."""
    return SimpleNamespace(
        image_path=[image["path"] for image in images],
        pred_score=torch.tensor([image["score"] for image in images]),
        gt_label=torch.tensor([image["label"] for image in images]),
        anomaly_map=torch.stack([image["map"] for image in images]),
        gt_mask=torch.stack([image["mask"] for image in images]),
    )


def main() -> None:
    rank, world_size, port, out = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], Path(sys.argv[4])
    out.mkdir(parents=True, exist_ok=True)  # every rank writes here, whichever comes first
    if world_size > 1:
        distributed.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size)
    images = [image for image in predictions() if world_size == 1 or image["rank"] == rank]
    lookup = {image["path"]: image["category"] for image in predictions()}
    trainer = SimpleNamespace(
        datamodule=SimpleNamespace(category_lookup=lambda: lookup, category=None),
        log_dir=str(out / f"rank{rank}"),
        default_root_dir=str(out),
    )
    callback = PerCategoryMetrics(print_table=False)
    callback.on_test_start(trainer, None)
    for index in range(0, len(images), 5):  # batches of 5, mixing categories as a unified loader does
        callback.on_test_batch_start(trainer, None, None, index // 5)
        callback.on_test_batch_end(trainer, None, batch(images[index : index + 5]), None, index // 5)
    callback.on_test_epoch_end(trainer, None)
    (out / f"results.{rank}.json").write_text(json.dumps(callback.results))
    if world_size > 1:
        distributed.destroy_process_group()


if __name__ == "__main__":
    main()
