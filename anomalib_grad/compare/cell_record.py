"""The record of one comparison cell: what ``OUTPUT/cells/KEY.json`` holds.

A cell writes its record when it ends (:mod:`anomalib_grad.compare.cell`); the runner reads it back to
resume, and the report and charts are built from the records. :meth:`CellRecord.to_dict` writes the keys
in the order the cells have always written them, and a record read with :meth:`CellRecord.from_dict`
writes back exactly what it was read from: its keys, their order, and any key this version does not know.

Example:
    >>> from anomalib_grad.compare.plan import Cell
    >>> record = CellRecord.failure(Cell("padim", "bottle", 1.0), "RuntimeError: out of memory")
    >>> record.ok, list(record.to_dict())
    (False, ['cell', 'status', 'error'])
    >>> CellRecord.from_dict(record.to_dict()) == record
    True
"""

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from anomalib_grad.compare.plan import Cell

OK = "ok"
FAILED = "failed"
# Keys a record of each status always has, null or not; the others are written only when they have a value.
ALWAYS_WRITTEN = {
    OK: (
        "cell",
        "status",
        "init_args",
        "rows",
        "n_train",
        "fit_s",
        "test_s",
        "peak_train_mb",
        "peak_test_mb",
        "peak_train_gpu_mb",
        "peak_test_gpu_mb",
        "model_mb",
        "fusion",
        "torch",
        "examples",
        "openvino",
        "openvino_error",
    ),
    FAILED: ("cell", "status", "error"),
}


@dataclass
class CellRecord:
    """What one cell of a comparison measured, or why it failed.

    A successful cell (``status == "ok"``) has its measurements; a failed one has ``error`` only.
    The field names are the record file's keys.

    Loading is lenient, so that folders written by older or newer versions keep loading and resuming:
    a missing key (``cell`` and ``status`` aside) reads as ``None`` and is not written back, and a key this
    version does not know is kept in :attr:`extra` and written back in its place. Inside ``"cell"``, keys
    that are not :class:`Cell` fields are ignored (they are not part of the cell's key).

    Args:
        cell: The cell (model, category or ``"unified"``, training fraction, seed).
        status: ``"ok"``, or ``"failed"`` when the cell raised or its process died.
        init_args: The model's init args over its preset (the plan's, for this cell's group).
        rows: Metrics per category (:class:`~anomalib_grad.callbacks.PerCategoryMetrics` rows), the mean last.
        n_train: Training images.
        fit_s: Wall time of ``engine.fit`` in seconds.
        test_s: Wall time of ``engine.test`` in seconds.
        peak_train_mb: Peak memory the process and its data-loader workers allocated while training (MB).
        peak_test_mb: Peak memory while testing (MB).
        peak_train_gpu_mb: Peak GPU memory torch allocated while training; ``None`` off CUDA.
        peak_test_gpu_mb: Peak GPU memory torch allocated while testing; ``None`` off CUDA.
        model_mb: Size of the trained model's state dict (MB).
        fusion: Grad's ``fusion_weight`` and ``abnormal_contribution``; ``None`` for other models.
        torch: Torch inference speed, ``{"latency_ms", "images_per_s"}``.
        examples: The anomaly-map grid's test images, ``{"category", "image_path", "pred_score"}`` each.
        openvino: OpenVINO FP32 inference speed like ``torch``; ``None`` when not exported.
        openvino_error: Why the OpenVINO export failed (the cell's results stand); ``None`` otherwise.
        openvino_mb: Size of the OpenVINO weights (MB); written only when exported.
        error: Why the cell failed (``"ErrorType: message"``, or how its process ended).
        extra: Keys of the file that this version does not know, as read.
    """

    cell: Cell
    status: str
    init_args: dict[str, Any] | None = None
    rows: list[dict[str, Any]] | None = None
    n_train: int | None = None
    fit_s: float | None = None
    test_s: float | None = None
    peak_train_mb: float | None = None
    peak_test_mb: float | None = None
    peak_train_gpu_mb: float | None = None
    peak_test_gpu_mb: float | None = None
    model_mb: float | None = None
    fusion: dict[str, float] | None = None
    torch: dict[str, float] | None = None
    examples: list[dict[str, Any]] | None = None
    openvino: dict[str, float] | None = None
    openvino_error: str | None = None
    openvino_mb: float | None = None
    error: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    _read_keys: tuple[str, ...] = field(default=(), init=False, repr=False, compare=False)

    @classmethod
    def failure(cls, cell: Cell, error: str) -> "CellRecord":
        """The record of a cell that failed with ``error``."""
        return cls(cell=cell, status=FAILED, error=error)

    @property
    def ok(self) -> bool:
        """Whether the cell finished (its OpenVINO export may still have failed, see :attr:`openvino_error`)."""
        return self.status == OK

    @classmethod
    def known_keys(cls) -> tuple[str, ...]:
        """The keys this version knows, in the order a record writes them."""
        return tuple(item.name for item in fields(cls) if item.init and item.name != "extra")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CellRecord":
        """Read a record as :meth:`to_dict` (or an older or newer version) wrote it.

        Args:
            data: The record file's content.

        Returns:
            The record; it remembers the keys it was read with, for :meth:`to_dict`.
        """
        known = cls.known_keys()
        cell_fields = {item.name for item in fields(Cell)}
        values = {key: value for key, value in data.items() if key in known}
        values["cell"] = Cell(**{key: value for key, value in data["cell"].items() if key in cell_fields})
        record = cls(**values, extra={key: value for key, value in data.items() if key not in known})
        record._read_keys = tuple(data)
        return record

    def to_dict(self) -> dict[str, Any]:
        """The record as JSON-compatible data, keys in the order of the file.

        A new record has, in field order, the keys of :data:`ALWAYS_WRITTEN` for its status (null or not)
        and the others that have a value. A record read by :meth:`from_dict` has the keys it was read with,
        in the same order (unknown ones included), then any other key that got a value since.

        Returns:
            The content of the record file.
        """
        values = {name: getattr(self, name) for name in self.known_keys()} | {"cell": asdict(self.cell)}
        if self._read_keys:
            keys = [*self._read_keys, *(key for key, value in values.items() if value is not None)]
        else:
            always = ALWAYS_WRITTEN.get(self.status, ALWAYS_WRITTEN[FAILED])
            keys = [key for key, value in values.items() if key in always or value is not None]
        data = {}
        for key in dict.fromkeys([*keys, *self.extra]):
            if key in values or key in self.extra:
                data[key] = values[key] if key in values else self.extra[key]
        return data
