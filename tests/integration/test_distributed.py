"""Grad under Lightning DDP: 2 CPU processes (gloo) against 1, and the pieces that make them agree."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from lightning.pytorch.strategies import DDPStrategy, SingleDeviceStrategy
from torch.utils.data import DataLoader, DistributedSampler

from anomalib_grad import Grad
from anomalib_grad.data.image_io import read_image
from anomalib_grad.models.grad.components.feature_block_paste import FeatureBlockPaste
from anomalib_grad.models.grad.distributed import (
    allow_unused_parameters,
    score_each_image_once,
    seed_anomalies_per_rank,
)
from tests.export_helpers import assert_parity, checkpoint_prediction, exported_prediction

SCRIPT = Path(__file__).parents[1] / "ddp_script.py"


def test_ddp_is_told_about_unused_parameters_unless_the_user_chose():
    chosen_by_us, chosen_by_user = DDPStrategy(), DDPStrategy(find_unused_parameters=False)
    allow_unused_parameters(chosen_by_us)
    allow_unused_parameters(chosen_by_user)
    allow_unused_parameters(SingleDeviceStrategy(device="cpu"))  # left alone, no error
    assert chosen_by_us._ddp_kwargs["find_unused_parameters"] is True
    assert chosen_by_user._ddp_kwargs["find_unused_parameters"] is False


def test_each_rank_draws_its_own_reproducible_blocks():
    def first_masks(rank: int, world_size: int) -> torch.Tensor:
        torch.manual_seed(0)  # what seed_everything does on every rank
        blocks = FeatureBlockPaste(block_size=(1, 3))
        seed_anomalies_per_rank(blocks, rank, world_size)
        return blocks(torch.zeros(8, 4, 16, 16))[1]

    assert torch.equal(first_masks(0, 2), first_masks(0, 2))
    assert not torch.equal(first_masks(0, 2), first_masks(1, 2))
    single = FeatureBlockPaste(block_size=(1, 3))
    seed_anomalies_per_rank(single, 0, 1)
    assert single.generator is None  # one process: the stream is exactly as before


@pytest.mark.parametrize(("size", "ranks", "batch_size"), [(39, 2, 16), (39, 2, 1), (5, 3, 2), (2, 2, 4)])
def test_every_evaluation_image_is_scored_exactly_once(size, ranks, batch_size):
    seen = []
    for rank in range(ranks):
        sampler = DistributedSampler(range(size), num_replicas=ranks, rank=rank, shuffle=False)
        loader = DataLoader(range(size), batch_size=batch_size, sampler=sampler)
        score_each_image_once([loader])
        seen += [int(index) for batch in loader for index in batch]
    assert sorted(seen) == list(range(size))


def run_script(mode: str, devices: int, data_root: Path, checkpoint: Path, out: Path) -> list[dict]:
    command = [sys.executable, str(SCRIPT), mode, str(devices), str(data_root), str(checkpoint), str(out)]
    result = subprocess.run(command, cwd=out.parent, capture_output=True, text=True, timeout=600, check=False)
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(Path(f"{out}.{rank}.json").read_text()) for rank in range(devices)]


@pytest.mark.slow
def test_two_processes_train_their_shards_and_test_like_one(synthetic_root, tmp_path):
    checkpoint = tmp_path / "ddp.ckpt"
    ranks = run_script("fit", 2, synthetic_root, checkpoint, tmp_path / "fit")
    train_images = sorted(str(path) for path in (synthetic_root / "textured_surface" / "train" / "good").iterdir())
    shards = [set(rank["train_images"]) for rank in ranks]
    assert not shards[0] & shards[1]  # each rank trains on its own shard ...
    assert sorted(shards[0] | shards[1]) == train_images  # ... and together they cover the training set
    assert [rank["cached"] for rank in ranks] == [len(shard) for shard in shards]  # a cache per rank, its images
    assert ranks[0]["fbp_seed"] != ranks[1]["fbp_seed"]
    assert [rank["stages"] for rank in ranks] == [["abnormal", "normal"]] * 2  # stages switch at the same epoch
    parameters = [[epoch["parameters"] for epoch in rank["digests"]] for rank in ranks]
    assert parameters[0] == parameters[1]  # the replicas' parameters stay equal after every epoch
    # Batch-norm statistics are each rank's own until DDP broadcasts rank 0's at the next forward; in the end
    # (what the checkpoint holds) every part is equal on both ranks.
    assert ranks[0]["digests"][-1]["state"] == ranks[1]["digests"][-1]["state"]
    before, after_a, after_b = (epoch["state"] for epoch in ranks[0]["digests"])
    trained_in_a = {part for part in before if before[part] != after_a[part]}
    trained_in_b = {part for part in before if after_a[part] != after_b[part]}
    assert trained_in_a == {"coordinate_mapper", "abnormal_grid", "abnormal_branch"}  # the paper's stage A
    assert trained_in_b == {"coordinate_mapper", "normal_grid", "normal_branch", "fusion"}  # and stage B
    again = run_script("fit", 2, synthetic_root, tmp_path / "again.ckpt", tmp_path / "again")
    assert [rank["fbp_seed"] for rank in again] == [rank["fbp_seed"] for rank in ranks]  # seeded: reproducible

    (single,) = run_script("test", 1, synthetic_root, checkpoint, tmp_path / "test1")  # the DDP checkpoint reloads
    pair = run_script("test", 2, synthetic_root, checkpoint, tmp_path / "test2")
    assert not set(pair[0]["scores"]) & set(pair[1]["scores"])  # no test image scored twice
    scores = {**pair[0]["scores"], **pair[1]["scores"]}
    assert scores.keys() == single["scores"].keys()
    assert max(abs(scores[path] - single["scores"][path]) for path in scores) < 1e-5
    for name in ("image_AUROC", "pixel_AUROC"):
        assert pair[0]["metrics"][name] == pytest.approx(single["metrics"][name], abs=1e-6)

    model = Grad.load_from_checkpoint(checkpoint).eval()  # ... and exports as usual, maps equal to the checkpoint's
    test_images = sorted((synthetic_root / "textured_surface" / "test").glob("*/*.png"))[::10]
    images = torch.stack([read_image(path, as_tensor=True) for path in test_images])
    exported = exported_prediction(model.to_openvino(tmp_path / "openvino"), images)
    assert_parity(exported, checkpoint_prediction(model, images))
