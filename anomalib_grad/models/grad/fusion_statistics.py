"""How much the abnormal grid contributes to GRAD's reconstruction, measured on validation images.

:class:`FusionStatistics` hooks the model's fusion during a validation epoch and averages, per
image, ``‖abnormal term‖ / ‖normal term‖`` (``‖w·x̂_a‖ / ‖x̂_n‖`` for the learned weight, norms
over C·H·W). A ratio near zero means the abnormal path changes almost nothing at inference. As a
callback of :class:`~anomalib_grad.Grad` it does so every validation epoch and logs both numbers.

Example:
    >>> import torch
    >>> from anomalib_grad.models.grad.components.fusion import GridFusion
    >>> fusion = GridFusion("learned", initial_weight=-0.5)
    >>> statistics = FusionStatistics()
    >>> with statistics.watching(fusion):
    ...     _ = fusion(torch.ones(2, 3, 4, 4), torch.ones(2, 3, 4, 4))
    >>> statistics.result()
    {'fusion_weight': -0.5, 'abnormal_contribution': 0.5}
"""

import math
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from anomalib_grad.models.grad.components.fusion import GridFusion


class FusionStatistics(Callback):
    """Running mean of the abnormal-to-normal norm ratio of a fusion's terms, and its weight."""

    def __init__(self) -> None:
        self.ratio_sum = 0.0
        self.count = 0
        self.weight = math.nan
        self._hooks = ExitStack()

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Watch the model's fusion (if it has one) during the validation epoch."""
        del trainer
        if pl_module.model.fusion is not None:
            self._hooks.enter_context(self.watching(pl_module.model.fusion))

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        """Log ``fusion_weight`` and ``abnormal_contribution`` of the epoch."""
        del trainer
        self._hooks.close()
        if pl_module.model.fusion is not None:
            for name, value in self.result().items():
                if not math.isnan(value):
                    pl_module.log(name, value, batch_size=1)

    @contextmanager
    def watching(self, fusion: GridFusion) -> Iterator["FusionStatistics"]:
        """Measure every forward of ``fusion`` inside the ``with`` block (the statistics restart)."""
        self.ratio_sum, self.count = 0.0, 0
        self.weight = float(fusion.weight.detach()) if fusion.weight is not None else 1.0 - fusion.blend

        def hook(module: GridFusion, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
            del output
            normal, abnormal = (term.detach().flatten(start_dim=1) for term in module.terms(*inputs))
            ratios = torch.linalg.vector_norm(abnormal, dim=1) / torch.linalg.vector_norm(normal, dim=1).clamp(1e-12)
            self.ratio_sum += float(ratios.sum())
            self.count += len(ratios)

        handle = fusion.register_forward_hook(hook)
        try:
            yield self
        finally:
            handle.remove()

    def result(self) -> dict[str, float]:
        """``fusion_weight`` (w, or 1 − λ for the convex blend) and the mean ``abnormal_contribution``."""
        ratio = self.ratio_sum / self.count if self.count else math.nan
        return {"fusion_weight": self.weight, "abnormal_contribution": ratio}
