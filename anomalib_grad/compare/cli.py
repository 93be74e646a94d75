"""``anomalib-grad compare``: GRAD, PatchCore, PaDiM (and any anomalib model) side by side on your data.

Every option can come from a YAML file (``--config compare.yaml``, keys as the options without
dashes) and be overridden on the command line.

Example:
    From the shell::

        anomalib-grad compare --models '[grad, patchcore, padim]' --root ../shared/data/real --categories bottle
        anomalib-grad compare --config configs/compare/cpu_real.yaml
"""

import dataclasses
import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from anomalib_grad.compare.data import ComparisonDataError
from anomalib_grad.compare.models import UnknownModelNameError
from anomalib_grad.compare.plan import ComparisonPlan, PlanMismatchError
from anomalib_grad.compare.runner import run_comparison


def build_parser() -> ArgumentParser:
    """The ``anomalib-grad`` parser with its ``compare`` subcommand."""
    compare = ArgumentParser(description=__doc__.split("\n\n")[0])
    compare.add_argument("--config", action=ActionConfigFile, help="YAML file with any of the options below")
    compare.add_class_arguments(ComparisonPlan, nested_key=None, fail_untyped=False)
    compare.add_argument("--output", type=Path, default=Path("results/compare"), help="results folder (resumable)")
    compare.add_argument("--devices", type=int, default=1, help="cells run at once (one per GPU, or CPU processes)")
    parser = ArgumentParser(prog="anomalib-grad", description="Tools of the anomalib-grad plugin.")
    subcommands = parser.add_subcommands(required=True)
    subcommands.add_subcommand("compare", compare, help="train and test models side by side; report and charts")
    return parser


def plan_from_options(options: Namespace) -> ComparisonPlan:
    """The plan described by the parsed ``compare`` options."""
    return ComparisonPlan(**{field.name: options[field.name] for field in dataclasses.fields(ComparisonPlan)})


def main(arguments: list[str] | None = None) -> int:
    """Entry point of the ``anomalib-grad`` console script.

    Returns:
        The exit code: 0, or 2 with a one-line message for a plan that cannot run.
    """
    config = build_parser().parse_args(arguments)
    options = config.compare
    try:
        plan = plan_from_options(options)
        outputs = run_comparison(plan, Path(options.output), devices=options.devices)
    except (ValueError, FileExistsError) as error:
        kind = (
            type(error).__name__
            if isinstance(error, UnknownModelNameError | ComparisonDataError | PlanMismatchError)
            else "error"
        )
        print(f"anomalib-grad compare: {kind}: {error}", file=sys.stderr)
        return 2
    print("\n".join(f"{kind}: {path}" for kind, path in outputs.items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
