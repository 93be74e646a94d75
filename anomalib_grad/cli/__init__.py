"""Command-line integration with anomalib's CLI: model-argument errors in one line.

Example:
    >>> from anomalib_grad.cli import GradArgumentError
"""

from .argument_errors import GradArgumentError, register_argument_errors

__all__ = ["GradArgumentError", "register_argument_errors"]
