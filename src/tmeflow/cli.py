"""``tmeflow`` command line: one subcommand per stage, plus ``run`` and ``simulate``."""

from __future__ import annotations

import argparse
import importlib
import sys

from . import __version__
from .errors import EXIT_INPUT_ERROR, TmeflowInputError
from .log import setup_logging
from .params import add_group_arguments, params_from_args
from .stages import STAGES, Stage


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
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
    module_name, function_name = stage.entry.split(":")
    function = getattr(importlib.import_module(module_name), function_name)
    function(args, {} if stage.overrides_only else params_from_args(args, stage.param_groups))


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return EXIT_INPUT_ERROR
    setup_logging(args.command)
    try:
        _call(args.stage, args)
    except TmeflowInputError as error:
        print(f"tmeflow {args.command}: error: {error}", file=sys.stderr)
        return EXIT_INPUT_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
