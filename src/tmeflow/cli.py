"""``tmeflow`` command line: one subcommand per stage, plus ``run`` and ``simulate``."""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import NoReturn

from . import __version__
from .errors import EXIT_INPUT_ERROR, Interrupted, TmeflowInputError, TmeflowInputErrors
from .log import setup_logging
from .params import add_group_arguments, params_from_args
from .stages import STAGES, Stage


class _Parser(argparse.ArgumentParser):
    """Parse arguments; errors are one line.

    An argument parser whose errors are one line (``tmeflow <stage>: error: ...``, exit 2), as every
    other user mistake, instead of argparse's usage block; ``--help`` still shows the usage.
    """

    def error(self, message: str) -> NoReturn:
        line = " ".join(f"{message}; see '{self.prog} --help'".split())
        self.exit(EXIT_INPUT_ERROR, f"{self.prog}: error: {line}\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the ``tmeflow`` argument parser: one subcommand per registered stage."""
    parser = _Parser(
        prog="tmeflow",
        description="Tumour-microenvironment atlas pipeline. Each stage is a subcommand; "
        "'tmeflow run' runs them all on one machine.",
    )
    parser.add_argument("--version", action="version", version=f"tmeflow {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="<stage>", title="stages")
    for stage in STAGES:
        sub = subparsers.add_parser(stage.name, help=stage.summary, description=stage.summary)
        for opt in stage.options:
            sub.add_argument(*opt.flags, **opt.kwargs)
        for group in stage.param_groups:
            add_group_arguments(sub, group, overrides_only=stage.overrides_only)
        sub.set_defaults(stage=stage)
    return parser


def _call(stage: Stage, args: argparse.Namespace) -> None:
    from .numba_cache import enable

    enable()  # with NUMBA_CACHE_DIR set (Nextflow sets it), UMAP / PyNNDescent load compiled code from it
    module_name, function_name = stage.entry.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    function(args, {} if stage.overrides_only else params_from_args(args, stage.param_groups))


def main(argv: list[str] | None = None) -> int:
    """Run the ``tmeflow`` command line; return the exit status (2 for a user mistake)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT_ERROR
    setup_logging(args.command)
    try:
        _call(args.stage, args)
    except TmeflowInputErrors as errors:
        for line in errors.lines():
            print(f"tmeflow {args.command}: error: {line}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except TmeflowInputError as error:
        print(f"tmeflow {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    except Interrupted as interrupted:
        print(
            f"tmeflow {args.command}: {interrupted}; temporary files removed, finished stages kept "
            "(rerun with --resume to continue)",
            file=sys.stderr,
        )
        return interrupted.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
