"""Exact, checked and atomic export of GRAD to PyTorch, ONNX and OpenVINO.

:class:`GradExportMixin` wraps anomalib's :class:`~anomalib.models.components.base.ExportMixin`:

- it refuses to export a model that was never trained (no score normalisation or
  threshold yet) and validates ``input_size``;
- files are written into a staging folder beside the destination and moved into
  place at the end (:mod:`~anomalib_grad.deploy.staging`), so an interrupted export
  never leaves a file that looks like a valid model, nor any litter after the next one;
- the OpenVINO model resizes with antialiasing, as training did, and its outputs
  carry exactly the prediction field names (see :mod:`~anomalib_grad.deploy.openvino_graph`);
- ``INT8_PTQ`` and ``INT8_ACQ`` calibrate on training images, and ``INT8_ACQ`` controls
  accuracy on training images with synthetic defects (anomalib's defaults use the validation
  and test splits, which hold test images): :mod:`~anomalib_grad.deploy.quantization`.

Checkpoint loading is :mod:`~anomalib_grad.deploy.checkpoint_mixin`'s.

Example:
    >>> from anomalib.deploy import ExportType
    >>> from anomalib.engine import Engine
    >>> engine = Engine()  # doctest: +SKIP
    >>> engine.export(Grad(), ExportType.OPENVINO, ckpt_path="model.ckpt")  # doctest: +SKIP
"""

import logging
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import torch
from anomalib.data import AnomalibDataModule
from anomalib.deploy import CompressionType, ExportType
from anomalib.post_processing import PostProcessor

from anomalib_grad.deploy.quantization import quantize_on_training_images, quantize_with_accuracy_control
from anomalib_grad.deploy.staging import exported_path, staged_export

logger = logging.getLogger(__name__)


class GradExportMixin:
    """Export and checkpoint loading for :class:`~anomalib_grad.Grad` (see the module docstring)."""

    def to_torch(self, export_root: Path | str, model_file_name: str = "model") -> Path:
        """Export the whole module, pre- and post-processing included, with ``torch.save``.

        Args:
            export_root: Folder; the model goes to ``<export_root>/weights/torch``.
            model_file_name: File name without suffix.

        Returns:
            Path of the ``.pt`` file.
        """
        export = partial(super().to_torch, model_file_name=model_file_name)
        return self._export_staged(export_root, ExportType.TORCH, model_file_name + ".pt", export)

    def to_onnx(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        **kwargs: Any,
    ) -> Path:
        """Export to ONNX (opset 18: antialiased ``Resize``).

        Args:
            export_root: Folder; the model goes to ``<export_root>/weights/onnx``.
            model_file_name: File name without suffix.
            input_size: Fixed image size ``(H, W)``; ``None`` accepts any size (resized inside the graph).
            kwargs: Passed to :func:`torch.onnx.export`, e.g. ``dynamic_axes={"input": {}}`` for a fixed batch of 1.

        Returns:
            Path of the ``.onnx`` file.
        """
        check_export_size(self, input_size)
        kwargs.setdefault("opset_version", 18)
        export = partial(super().to_onnx, model_file_name=model_file_name, input_size=input_size, **kwargs)
        return self._export_staged(export_root, ExportType.ONNX, model_file_name + ".onnx", export)

    def _export_staged(
        self, export_root: Path | str, export_type: ExportType, file_name: str, export: Callable[[Path], object]
    ) -> Path:
        """Check the model is trained, run ``export`` into a staging folder, move its file into place."""
        check_trained(self)
        with staged_export(export_root, export_type) as staging:
            export(staging)
        return exported_path(export_root, export_type, file_name)

    def to_openvino(
        self,
        export_root: Path | str,
        model_file_name: str = "model",
        input_size: tuple[int, int] | None = None,
        compression_type: CompressionType | None = None,
        datamodule: AnomalibDataModule | None = None,
        metric: Any = None,
        task: Any = None,
        max_drop: float = 0.01,
        ov_kwargs: dict[str, Any] | None = None,
        onnx_kwargs: dict[str, Any] | None = None,
    ) -> Path:
        """Export to OpenVINO IR, optionally compressed (FP16, INT8 weights, INT8 post-training quantisation).

        ``export_root`` (the model goes to ``<export_root>/weights/openvino``), ``model_file_name`` and
        ``input_size`` are as for :meth:`to_onnx`.

        Args:
            export_root: Folder.
            model_file_name: File name without suffix.
            input_size: Fixed image size, or ``None``.
            compression_type: ``FP16``, ``INT8``, ``INT8_PTQ`` or ``INT8_ACQ``; ``None`` keeps FP32.
            datamodule: Data for ``INT8_PTQ`` (training images calibrate) and ``INT8_ACQ``.
            metric: Metric for ``INT8_ACQ``.
            task: Task for ``INT8_ACQ``.
            max_drop: Largest accuracy drop ``INT8_ACQ`` accepts.
            ov_kwargs: Passed to :func:`openvino.convert_model`, e.g. ``{"input": [1, 3, 256, 256]}``.
            onnx_kwargs: Passed to :func:`torch.onnx.export`.

        Returns:
            Path of the ``.xml`` file (its weights are the ``.bin`` beside it).
        """
        import openvino as ov

        from anomalib_grad.deploy.openvino_graph import clean_output_names, restore_antialiasing

        check_trained(self)
        check_export_size(self, input_size)
        with staged_export(export_root, ExportType.OPENVINO) as staging:
            onnx_path = self.to_onnx(staging / "onnx", model_file_name, input_size, **(onnx_kwargs or {}))
            model = ov.convert_model(onnx_path, **(ov_kwargs or {}))
            restore_antialiasing(model)
            clean_output_names(model)
            if compression_type not in {None, CompressionType.FP16}:
                model = self._compress_ov_model(model, compression_type, datamodule, metric, task, max_drop)
            ov_path = staging / "weights" / ExportType.OPENVINO.value / (model_file_name + ".xml")
            ov_path.parent.mkdir(parents=True, exist_ok=True)
            ov.save_model(model, ov_path, compress_to_fp16=compression_type == CompressionType.FP16)
        return exported_path(export_root, ExportType.OPENVINO, model_file_name + ".xml")

    def _post_training_quantization_ov(self, model: Any, datamodule: AnomalibDataModule | None = None) -> Any:
        """Quantise with NNCF, calibrated on up to 300 training images (never on test images).

        Args:
            model: OpenVINO model.
            datamodule: Datamodule whose training images calibrate.

        Returns:
            The quantised OpenVINO model.

        Raises:
            ValueError: Without a datamodule.
        """
        return quantize_on_training_images(model, datamodule, self.model.input_size)

    def _accuracy_control_quantization_ov(
        self,
        model: Any,
        datamodule: AnomalibDataModule | None = None,
        metric: Any = None,
        task: Any = None,
        max_drop: float = 0.01,
    ) -> Any:
        """Quantise with NNCF's accuracy control on training images (never on test images).

        Args:
            model: OpenVINO model.
            datamodule: Datamodule whose training images calibrate and validate.
            metric: Must be ``None``: accuracy is measured on synthetic defects (no labels needed).
            task: Unused (image scores and maps are both measured).
            max_drop: Largest accepted loss of that accuracy against the FP32 model.

        Returns:
            The quantised OpenVINO model.

        Raises:
            ValueError: Without a datamodule, with a metric, or with ``max_drop`` outside (0, 1).
        """
        del task
        if metric is not None:
            msg = (
                f"Grad's INT8_ACQ measures accuracy without labels, as image AUROC and pixel AUPR on training images "
                f"with synthetic defects, so it takes no metric (got {metric!r})."
            )
            raise ValueError(msg)
        return quantize_with_accuracy_control(model, datamodule, self.model.input_size, max_drop)


def check_trained(module: Any) -> None:
    """Refuse to export a model whose scores were never normalised or thresholded.

    Args:
        module: The model to export.

    Raises:
        RuntimeError: If its post-processor has no statistics yet.
    """
    post_processor = getattr(module, "post_processor", None)
    if not isinstance(post_processor, PostProcessor):
        return
    statistics = torch.stack([post_processor.image_min, post_processor.image_max, post_processor.image_threshold])
    if not bool(torch.isfinite(statistics).all()):
        msg = (
            f"{type(module).__name__} has not been trained: it has no score normalisation or threshold yet, so an "
            "export would output meaningless scores and labels. Train it first (`anomalib train`, `engine.train`) "
            "and export from the checkpoint: `anomalib export --model Grad --export_type openvino --ckpt_path "
            "<run>/weights/lightning/model.ckpt`."
        )
        raise RuntimeError(msg)


def check_export_size(module: Any, input_size: tuple[int, int] | None) -> None:
    """Check the fixed input size of a static export.

    Args:
        module: The model to export.
        input_size: ``(H, W)`` or ``None`` (any size).

    Raises:
        ValueError: If the size is not two positive integers, or differs from the model's
            input size while there is no pre-processor to resize.
    """
    if input_size is None:
        return
    if len(input_size) != 2 or not all(isinstance(side, int) and side > 0 for side in input_size):
        msg = f"input_size must be two positive integers (height, width), got {input_size!r}."
        raise ValueError(msg)
    model_size = tuple(module.model.input_size)
    if module.pre_processor is None and tuple(input_size) != model_size:
        msg = (
            f"This model has no pre-processor to resize images, so a static export must use its input size "
            f"{model_size}, got {tuple(input_size)}."
        )
        raise ValueError(msg)
