"""GRAD's training schedule: which stage each epoch trains, the optimiser and the trainer settings.

Stage A (the abnormal grid) trains for ``abnormal_epochs``, then stage B (the normal grid) for
``normal_epochs``; AdamW trains the grids at ``grid_lr`` and everything else at ``lr``, StepLR
decays both, and gradients are clipped by norm.

Example:
    >>> from anomalib_grad.models.grad.schedule import TrainingSchedule
    >>> schedule = TrainingSchedule(abnormal_epochs=2, normal_epochs=3)
    >>> [schedule.stage_at(epoch) for epoch in range(5)]
    ['abnormal', 'abnormal', 'normal', 'normal', 'normal']
    >>> schedule.trainer_arguments["max_epochs"]
    5
"""

from dataclasses import dataclass
from typing import Any

from lightning.pytorch.utilities.types import OptimizerLRScheduler
from torch import nn
from torch.optim import AdamW
from torch.optim.lr_scheduler import StepLR

from anomalib_grad.models.grad.stages import Stage


@dataclass(frozen=True)
class TrainingSchedule:
    """Epochs per stage, optimiser and gradient clipping (defaults: the CPU preset, 50 epochs in all).

    Args:
        abnormal_epochs: Stage A's epochs.
        normal_epochs: Stage B's epochs.
        grid_lr: The grids' AdamW learning rate.
        lr: The other parts' AdamW learning rate.
        weight_decay: AdamW's weight decay.
        lr_step_epochs: Epochs between StepLR's decays.
        lr_gamma: StepLR's decay factor.
        gradient_clip_val: Largest gradient norm.

    Raises:
        ValueError: If ``abnormal_epochs < 0`` or ``normal_epochs < 1``.
    """

    abnormal_epochs: int = 4
    normal_epochs: int = 46
    grid_lr: float = 0.1
    lr: float = 1e-3
    weight_decay: float = 0.01
    lr_step_epochs: int = 40
    lr_gamma: float = 0.1
    gradient_clip_val: float = 0.1

    def __post_init__(self) -> None:
        if self.abnormal_epochs < 0 or self.normal_epochs < 1:
            msg = (
                f"Need abnormal_epochs >= 0 and normal_epochs >= 1, got {self.abnormal_epochs} and "
                f"{self.normal_epochs}."
            )
            raise ValueError(msg)

    def stage_at(self, epoch: int) -> Stage:
        """``"abnormal"`` for the first ``abnormal_epochs`` (zero-based) epochs, then ``"normal"``."""
        return "abnormal" if epoch < self.abnormal_epochs else "normal"

    def optimizer(self, groups: dict[str, list[nn.Parameter]]) -> OptimizerLRScheduler:
        """AdamW over ``{"grids": [...], "networks": [...]}`` (see ``GradModel.parameter_groups``) and StepLR.

        Returns:
            The optimiser and its epoch-wise scheduler, as Lightning's ``configure_optimizers`` returns them.
        """
        optimizer = AdamW(
            [{"params": groups["grids"], "lr": self.grid_lr}, {"params": groups["networks"], "lr": self.lr}],
            weight_decay=self.weight_decay,
        )
        scheduler = StepLR(optimizer, step_size=self.lr_step_epochs, gamma=self.lr_gamma)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "epoch"}}

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        """Both stages' epochs, gradient clipping, and validation once after training."""
        total_epochs = self.abnormal_epochs + self.normal_epochs
        return {
            "max_epochs": total_epochs,
            "gradient_clip_val": self.gradient_clip_val,
            "gradient_clip_algorithm": "norm",
            "num_sanity_val_steps": 0,
            "check_val_every_n_epoch": total_epochs,
        }
