"""Bad ``--model.*`` arguments of ``anomalib train/test/predict/export --model Grad`` in one line.

jsonargparse builds the model inside its check of the ``model`` argument's type (``AnomalibModule |
None``), so an error raised by ``Grad(...)`` (an input size that is not a multiple of 16, an unknown
backbone or layer, an FBP block larger than the feature map, ``normal_epochs 0``, a backbone without
offline weights) ended, after a ~190-line traceback, as jsonargparse's "Does not validate against any
of the Union subtypes" with the model's settings dumped below the actual sentence.

:func:`register_argument_errors` gives jsonargparse a class instantiator for Grad (the mechanism
``LightningCLI`` uses for its model) that turns such an error into :class:`GradArgumentError`, a
``SystemExit``: it passes through jsonargparse and anomalib's CLI untouched and Python prints its one
line, ``anomalib: error: Grad: <the sentence>``, with no traceback (exit status 1). Building ``Grad``
from Python is unaffected and raises the original error.

Example:
    >>> from anomalib_grad import Grad
    >>> register_argument_errors(Grad)  # done when anomalib_grad is imported
"""

from typing import Any

from anomalib_grad.models.components.pretrained_weights import PretrainedWeightsError

ARGUMENT_ERRORS = (ValueError, TypeError, PretrainedWeightsError)


class GradArgumentError(SystemExit):
    """A bad model argument given on the command line or in a config file; exits with its one-line message.

    Args:
        message: What is wrong and what would be valid.

    Example:
        >>> str(GradArgumentError("input_size (60, 60) is not usable"))
        'anomalib: error: Grad: input_size (60, 60) is not usable'
    """

    def __init__(self, message: str) -> None:
        super().__init__(f"anomalib: error: Grad: {' '.join(message.split())}")


def instantiate_reporting_errors(class_type: type, *args: Any, **kwargs: Any) -> Any:
    """Jsonargparse instantiator: build the model; an argument error becomes :class:`GradArgumentError`.

    Args:
        class_type: Grad or a subclass.
        args: Positional init arguments.
        kwargs: Init arguments.

    Returns:
        The model.

    Raises:
        GradArgumentError: If the arguments are not valid.
    """
    try:
        return class_type(*args, **kwargs)
    except ARGUMENT_ERRORS as error:
        raise GradArgumentError(str(error)) from error


def register_argument_errors(model_class: type) -> None:
    """Register :func:`instantiate_reporting_errors` with jsonargparse for ``model_class`` and its subclasses.

    jsonargparse merges the class instantiators of its context into every parser's, so anomalib's CLI
    parser uses it without being changed. Does nothing with a jsonargparse that lacks that context.

    Args:
        model_class: The model class (:class:`~anomalib_grad.Grad`).
    """
    try:
        from jsonargparse._common import class_instantiators
    except ImportError:  # another jsonargparse: errors stay as they are
        return
    current = class_instantiators.get() or {}
    key = (model_class, True)
    if key not in current:
        class_instantiators.set({**current, key: instantiate_reporting_errors})
