"""Checks of Grad's settings against each other and against the datamodule.

- With ``abnormal_grid=False`` (the normal grid alone) the abnormal path's settings mean nothing:
  :func:`check_abnormal_settings` warns once, naming those that were changed from their defaults.
- With ``anomaly_synthesis="none"`` stage A learns from real defective images only:
  :func:`check_stage_a_has_anomalies` fails before training when the datamodule offers none.

Example:
    >>> check_abnormal_settings({"abnormal_grid": False, "fusion": "learned"})  # defaults: no warning
"""

import inspect
import warnings
from collections.abc import Mapping
from typing import Any

ABNORMAL_SETTINGS = (
    "abnormal_epochs",
    "fusion",
    "fusion_weight",
    "fusion_blend",
    "anomaly_synthesis",
    "noise_std",
    "contrastive_threshold",
    "fbp_block_size",
    "fbp_intensity",
    "fbp_position",
    "fbp_walk_steps",
    "fbp_connectivity",
    "fbp_per_image",
    "fbp_blur_sigma",
    "fbp_seed",
)
"""Grad arguments that only act on the abnormal grid set, its branch, the fusion or stage A."""


def _defaults() -> dict[str, Any]:
    from anomalib_grad.models.grad.lightning_model import Grad

    return {name: parameter.default for name, parameter in inspect.signature(Grad.__init__).parameters.items()}


def _same(value: Any, default: Any) -> bool:
    if isinstance(value, list | tuple) and isinstance(default, list | tuple):
        return list(value) == list(default)
    return value == default


def check_abnormal_settings(hyperparameters: Mapping[str, Any]) -> None:
    """Warn (once per model) when abnormal-grid settings were changed for a model without the abnormal grid.

    Args:
        hyperparameters: Grad's init arguments.
    """
    defaults = _defaults()
    changed = [
        name
        for name in ABNORMAL_SETTINGS
        if name in hyperparameters and not _same(hyperparameters[name], defaults[name])
    ]
    if changed:
        warnings.warn(
            "abnormal_grid=False builds the normal grid alone, so these settings have no effect: "
            f"{', '.join(changed)}.",
            UserWarning,
            stacklevel=3,
        )


def check_stage_a_has_anomalies(datamodule: Any, stream: Any, learn_from_real_anomalies: bool) -> None:
    """Fail when stage A has neither synthetic nor real anomalies to learn from.

    Args:
        datamodule: The trainer's datamodule.
        stream: The real-anomaly stream found in it (``None`` when it offers none).
        learn_from_real_anomalies: Grad's setting.

    Raises:
        ValueError: If ``anomaly_synthesis="none"`` and there are no real defective training images.
    """
    samples = getattr(getattr(datamodule, "train_data", None), "samples", None)
    labelled = samples is not None and "label_index" in samples and bool((samples["label_index"] == 1).any())
    if learn_from_real_anomalies and (stream is not None or labelled):
        return
    reason = "learn_from_real_anomalies=False" if not learn_from_real_anomalies else "the datamodule offers none"
    msg = (
        f"anomaly_synthesis='none' trains stage A on real defective images only, but {reason}. Give the "
        "datamodule real defects (holdout_anomalies_per_type or external_anomalies of "
        "anomalib_grad.data.MVTecLayout / MultiCategory), choose anomaly_synthesis 'fbp' or 'gaussian_noise', "
        "or set abnormal_epochs=0."
    )
    raise ValueError(msg)
