"""Run by tests/test_distributed.py in its own processes: ``python ddp_script.py fit|test DEVICES DATA CKPT OUT``.

Lightning's DDP launcher starts this script once more per extra rank. ``fit`` trains a tiny Grad and records,
per rank, which training images it saw, how many features it cached, each epoch's stage and a digest of each
trainable part before training and after each epoch; ``test`` tests ``CKPT`` and records,
per rank, each test image's score, and the metrics on rank 0. Records go to ``OUT.<rank>.json``.
"""

import hashlib
import json
import sys
import warnings
from pathlib import Path

from anomalib.engine import Engine
from lightning.pytorch import seed_everything

from anomalib_grad import Grad
from anomalib_grad.data import SyntheticSurfaces

TINY = {"pre_trained": False, "input_size": (64, 64), "branch_depth": 1, "branch_width": 16, "fbp_block_size": (0, 2)}


class RecordingGrad(Grad):
    """Grad that writes down what this rank trained on and scored."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.record: dict = {"train_images": [], "cached": 0, "scores": {}, "fbp_seed": None}
        self.record |= {"stages": [], "digests": []}  # per epoch; digests: before training, then after each epoch

    def part_digests(self) -> dict[str, dict[str, str]]:
        """Digests of each trainable part's parameters, and of its parameters and buffers (batch-norm statistics)."""

        def digest(tensors) -> str:
            return hashlib.sha256(b"".join(t.detach().cpu().numpy().tobytes() for t in tensors)).hexdigest()

        parts = {name: getattr(self.model, name) for name in self.model.trained_parts()}
        return {
            "parameters": {name: digest(part.parameters()) for name, part in parts.items()},
            "state": {name: digest(part.state_dict().values()) for name, part in parts.items()},
        }

    def on_train_start(self) -> None:
        super().on_train_start()
        self.record["digests"].append(self.part_digests())

    def on_train_epoch_start(self) -> None:
        self.record["stages"].append(self.schedule.stage_at(self.current_epoch))

    def training_step(self, batch, *args, **kwargs):
        self.record["train_images"] += list(batch.image_path)
        output = super().training_step(batch, *args, **kwargs)
        if self.record["fbp_seed"] is None and self.model.anomaly_generator.generator is not None:
            self.record["fbp_seed"] = self.model.anomaly_generator.generator.initial_seed()
        return output

    def on_train_epoch_end(self) -> None:
        self.record["cached"] = max(self.record["cached"], len(self.training_features.cache))
        self.record["digests"].append(self.part_digests())

    def on_test_batch_end(self, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        for path, score in zip(outputs.image_path, outputs.pred_score.flatten().tolist(), strict=True):
            self.record["scores"][path] = score


def main() -> None:
    warnings.filterwarnings("ignore")
    mode, devices, data_root, checkpoint, out = sys.argv[1], int(sys.argv[2]), *sys.argv[3:6]
    seed_everything(0)
    model = RecordingGrad(**TINY, abnormal_epochs=1, normal_epochs=1, visualizer=False)
    datamodule = SyntheticSurfaces(root=data_root, train_batch_size=8, eval_batch_size=16, num_workers=0)
    engine = Engine(
        accelerator="cpu",
        devices=devices,
        strategy="ddp" if devices > 1 else "auto",
        logger=False,
        enable_progress_bar=False,
        default_root_dir=Path(out).parent / f"{mode}{devices}",
    )
    if mode == "fit":
        engine.fit(model, datamodule=datamodule)
        engine.trainer.save_checkpoint(checkpoint)  # Lightning writes it on rank 0 only
    else:
        metrics = engine.test(model, datamodule=datamodule, ckpt_path=checkpoint, verbose=False)[0]
        model.record["metrics"] = {name: float(value) for name, value in metrics.items()}
    Path(f"{out}.{engine.trainer.global_rank}.json").write_text(json.dumps(model.record))


if __name__ == "__main__":
    main()
