"""Reading checkpoint files with errors a user can act on: damaged files, other models' checkpoints.

- :func:`read_checkpoint` loads a checkpoint and raises :class:`DamagedCheckpointError`
  ("damaged or incomplete: <path>") for a truncated or corrupt file instead of torch's
  ``OSError: [Errno 22] Invalid argument`` or ``ValueError: negative seek value``.
- :func:`check_grad_checkpoint` raises :class:`NotAGradCheckpointError` for another model's
  checkpoint and says whose it is (:func:`checkpoint_owner`: the anomalib model whose arguments
  the checkpoint's hyperparameters are).
- :class:`CheckedCheckpointIO` gives Lightning's ``ckpt_path`` loads (``anomalib test``,
  ``anomalib predict``, resumed training) the same damaged-file error.

Example:
    >>> checkpoint = read_checkpoint("results/Grad/.../weights/lightning/model.ckpt")  # doctest: +SKIP
    >>> check_grad_checkpoint(checkpoint, "model.ckpt")  # doctest: +SKIP
"""

import inspect
import io
import pickle
import zipfile
from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import IO, Any

import torch
from anomalib.utils.serialization import anomalib_safe_globals
from lightning.fabric.plugins import CheckpointIO

COMPONENT_ARGUMENTS = frozenset({"pre_processor", "post_processor", "evaluator", "visualizer"})
LOAD_ERRORS = (RuntimeError, OSError, EOFError, ValueError, zipfile.BadZipFile, pickle.UnpicklingError)


class DamagedCheckpointError(ValueError):
    """Raised when a checkpoint file is truncated or corrupt."""


class NotAGradCheckpointError(ValueError):
    """Raised when a checkpoint holds another model than GRAD."""


def _intact_archive(source: str | Path | bytes) -> bool:
    """Whether a checkpoint is a complete zip archive (torch's format) whose members pass their CRC check."""
    try:
        with zipfile.ZipFile(io.BytesIO(source) if isinstance(source, bytes) else source) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


def damaged_checkpoint_error(path: object, error: BaseException) -> DamagedCheckpointError:
    """The error for a checkpoint that could not be loaded because the file is damaged.

    Args:
        path: The checkpoint.
        error: What torch raised.

    Returns:
        The error to raise.
    """
    msg = (
        f"The checkpoint is damaged or incomplete: {path} ({type(error).__name__}: {error}). It was probably cut "
        "off while being written or copied: copy it again, or train again."
    )
    return DamagedCheckpointError(msg)


def load_checked(load: Callable[[], Any], path: object, data: str | Path | bytes) -> Any:
    """Run a checkpoint load and turn failures of a damaged file into :class:`DamagedCheckpointError`.

    Args:
        load: Loads the checkpoint.
        path: The checkpoint, for the message.
        data: Its file or bytes, to tell a damaged archive from other failures.

    Returns:
        What ``load`` returned.

    Raises:
        DamagedCheckpointError: If loading failed and the file is not an intact archive.
    """
    try:
        return load()
    except FileNotFoundError:
        raise
    except LOAD_ERRORS as error:
        if _intact_archive(data):
            raise
        raise damaged_checkpoint_error(path, error) from error


def read_checkpoint(source: str | Path | IO[bytes], weights_only: bool = True) -> tuple[dict[str, Any], bytes]:
    """Load a checkpoint on the CPU.

    Args:
        source: Checkpoint file or file object.
        weights_only: Restrict unpickling to tensors and anomalib's allowlisted types.

    Returns:
        The checkpoint and the file's bytes (to load it again without reading the file twice).

    Raises:
        DamagedCheckpointError: If the file is truncated or corrupt.

    Example:
        >>> checkpoint, _ = read_checkpoint("model.ckpt")  # doctest: +SKIP
    """
    data = Path(source).read_bytes() if isinstance(source, str | Path) else source.read()

    def load() -> Any:
        with anomalib_safe_globals():
            return torch.load(io.BytesIO(data), map_location="cpu", weights_only=weights_only)

    return load_checked(load, source, data), data


@cache
def _anomalib_model_arguments() -> dict[str, frozenset[str]]:
    """Each anomalib model class's init arguments, without the four components (never saved)."""
    import anomalib.models
    from anomalib.models import AnomalibModule

    arguments = {}
    for name in anomalib.models.__all__:
        model_class = getattr(anomalib.models, name, None)
        if isinstance(model_class, type) and issubclass(model_class, AnomalibModule):
            parameters = inspect.signature(model_class.__init__).parameters
            arguments[name] = frozenset(parameters) - {"self", "args", "kwargs"} - COMPONENT_ARGUMENTS
    return arguments


def checkpoint_owner(checkpoint: dict[str, Any]) -> list[str]:
    """The anomalib models whose init arguments are exactly the checkpoint's saved hyperparameters.

    Args:
        checkpoint: A Lightning checkpoint of an anomalib model.

    Returns:
        Model class names (usually one; empty when none matches).

    Example:
        >>> checkpoint_owner({"hyper_parameters": {}})
        []
    """
    saved = frozenset(checkpoint.get("hyper_parameters") or {})
    if not saved:
        return []
    return [name for name, arguments in _anomalib_model_arguments().items() if arguments == saved]


def check_grad_checkpoint(checkpoint: Any, source: object) -> None:
    """Fail clearly when a checkpoint does not hold a GRAD model, saying whose it is.

    Args:
        checkpoint: The loaded checkpoint.
        source: Where it came from, for the message.

    Raises:
        NotAGradCheckpointError: If it has no GRAD grids.
    """
    state_dict = checkpoint.get("state_dict") if isinstance(checkpoint, dict) else None
    if isinstance(state_dict, dict) and any(key.startswith("model.normal_grid.") for key in state_dict):
        return
    owners = checkpoint_owner(checkpoint) if isinstance(checkpoint, dict) else []
    modules = sorted({key.split(".")[1] for key in state_dict or {} if key.startswith("model.") and "." in key[6:]})
    if owners:
        found = f"it is a {' or '.join(owners)} checkpoint"
        use = f"; test it with --model {owners[0]}"
    else:
        found = f"its model has {', '.join(modules[:6])}" if modules else "it has no model weights"
        use = ""
    msg = f"{source} is not a GRAD checkpoint ({found}{use}). Pass the checkpoint of a trained Grad model."
    raise NotAGradCheckpointError(msg)


class CheckedCheckpointIO(CheckpointIO):
    """Wraps the trainer's checkpoint IO: a damaged checkpoint raises :class:`DamagedCheckpointError`.

    Args:
        checkpoint_io: The IO that does the work (e.g. anomalib's ``AnomalibCheckpointIO``).
    """

    def __init__(self, checkpoint_io: CheckpointIO) -> None:
        self.checkpoint_io = checkpoint_io

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any, storage_options: Any = None) -> None:
        """Save with the wrapped IO (Lightning writes through an atomic transaction)."""
        self.checkpoint_io.save_checkpoint(checkpoint, path, storage_options=storage_options)

    def load_checkpoint(self, path: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        """Load with the wrapped IO (same arguments); a truncated or corrupt file says so and names itself.

        Raises:
            DamagedCheckpointError: If the file is damaged.
        """
        return load_checked(lambda: self.checkpoint_io.load_checkpoint(path, *args, **kwargs), path, path)

    def remove_checkpoint(self, path: Any) -> None:
        """Remove with the wrapped IO."""
        self.checkpoint_io.remove_checkpoint(path)

    def teardown(self) -> None:
        """Tear the wrapped IO down."""
        self.checkpoint_io.teardown()
