"""Fixes applied to exported OpenVINO graphs so they behave like the PyTorch model.

Antialiased resizing
--------------------

OpenVINO's ONNX reader maps ``Resize(mode=linear, antialias=1)`` to an
``Interpolate`` node with ``mode=linear_onnx`` and ``antialias=True``, but its CPU
plugin ignores ``antialias`` in that mode: downscaled images come out aliased and
differ from PyTorch's ``resize(..., antialias=True)`` by up to 0.6 (normalised
units) on a 900×900 image. ``mode=bilinear_pillow`` with PyTorch's half-pixel
coordinates is the antialiased bilinear filter PyTorch uses (OpenVINO's own PyTorch
frontend emits it); :func:`restore_antialiasing` rewrites the nodes to it.

Output names
------------
An ONNX output can reach OpenVINO with two tensor names (``{"clamp", "pred_score"}``
for a static export), and anomalib's ``OpenVINOInferencer`` takes an arbitrary one of
them. :func:`clean_output_names` leaves each output with its prediction field's name.

Example:
    >>> import openvino as ov
    >>> model = ov.Core().read_model("model.onnx")  # doctest: +SKIP
    >>> restore_antialiasing(model)  # doctest: +SKIP
    1
    >>> clean_output_names(model)  # doctest: +SKIP
"""

from pathlib import Path

import openvino as ov
from anomalib.data import InferenceBatch

PREDICTION_FIELDS = frozenset(InferenceBatch._fields)


def restore_antialiasing(model: ov.Model) -> int:
    """Rewrite antialiased bilinear ``Interpolate`` nodes so that OpenVINO applies the antialiasing.

    Args:
        model: OpenVINO model, changed in place.

    Returns:
        The number of nodes rewritten.
    """
    rewritten = 0
    for node in model.get_ordered_ops():
        if node.get_type_name() != "Interpolate":
            continue
        attributes = node.get_attributes()
        if attributes.get("mode") == "linear_onnx" and attributes.get("antialias"):
            node.set_attribute("mode", "bilinear_pillow")
            node.set_attribute("coordinate_transformation_mode", "pytorch_half_pixel")
            node.set_attribute("antialias", False)  # bilinear_pillow is antialiased by construction
            rewritten += 1
    return rewritten


def clean_output_names(model: ov.Model) -> None:
    """Give every output that carries a prediction field exactly that field's name.

    Args:
        model: OpenVINO model, changed in place.
    """
    for output in model.outputs:
        fields = output.get_names() & PREDICTION_FIELDS
        if len(fields) == 1:
            output.get_tensor().set_names(fields)


def read_model(path: str | Path) -> ov.Model:
    """Read an OpenVINO IR (``.xml``) or ONNX model, with antialiased resizes and output names fixed.

    Args:
        path: Model file.

    Returns:
        The model, ready to compile.

    Raises:
        FileNotFoundError: If the file does not exist.
    """
    path = Path(path)
    if not path.is_file():
        msg = f"No exported model at {path}."
        raise FileNotFoundError(msg)
    model = ov.Core().read_model(path)
    restore_antialiasing(model)
    clean_output_names(model)
    return model
