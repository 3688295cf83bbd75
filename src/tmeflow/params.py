"""Pipeline parameters, defined once in ``nextflow_schema.json``.

The Nextflow pipeline (nf-schema) and tmeflow read the same schema: stage CLIs take their options,
types, choices and defaults from it, and ``tmeflow run --params-file`` is validated against it.
"""

from __future__ import annotations

import argparse
import json
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from .errors import TmeflowInputError

_TYPES = {"integer": int, "number": float, "string": str}

# Parameters that only steer Nextflow itself (publishing, logging); tmeflow accepts and ignores them.
NEXTFLOW_ONLY = frozenset({"publish_dir_mode", "validate_params", "monochrome_logs", "version", "multiqc_config"})


@cache
def load_schema() -> dict[str, Any]:
    """Load the pipeline's parameter schema (``nextflow_schema.json``, shipped as package data)."""
    text = resources.files("tmeflow").joinpath("resources", "nextflow_schema.json").read_text()
    return json.loads(text)


def group_properties(group: str) -> dict[str, dict[str, Any]]:
    """Parameter specs of one ``$defs`` group of the schema."""
    return load_schema()["$defs"][group]["properties"]


def all_properties() -> dict[str, dict[str, Any]]:
    """Every parameter of the schema, by name."""
    properties: dict[str, dict[str, Any]] = {}
    for group in load_schema()["$defs"].values():
        properties.update(group["properties"])
    return properties


def defaults() -> dict[str, Any]:
    """Default value of every parameter (None where the schema gives none)."""
    return {name: spec.get("default") for name, spec in all_properties().items()}


def parse_bool(value: str | bool) -> bool:
    """Parse a command-line boolean (``true``/``1``/``yes`` or ``false``/``0``/``no``)."""
    if isinstance(value, bool):
        return value
    lowered = value.strip().lower()
    if lowered in {"true", "1", "yes"}:
        return True
    if lowered in {"false", "0", "no"}:
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def option_help(spec: dict[str, Any]) -> str:
    """Return the ``--help`` line of a schema parameter.

    The ``--help`` line of a schema parameter: its description and, where the schema gives one,
    its default as JSON (optional paths and strings without a default show none).
    """
    description = spec.get("description", "")
    return f"{description} (default: {json.dumps(spec['default'])})" if "default" in spec else description


def add_group_arguments(parser: argparse.ArgumentParser, group: str, *, overrides_only: bool = False) -> None:
    """Add one option per parameter of a schema group, with the schema's type, choices and default.

    With ``overrides_only`` every option defaults to None, so that only the options given on the
    command line override other sources (``tmeflow run --params-file``).
    """
    title = load_schema()["$defs"][group].get("title", group)
    arguments = parser.add_argument_group(title)
    for name, spec in group_properties(group).items():
        default = None if overrides_only else spec.get("default")
        help_text = option_help(spec).replace("%", "%%")  # argparse formats help with %
        if spec.get("type") == "boolean":
            arguments.add_argument(
                f"--{name}",
                type=parse_bool,
                nargs="?",
                const=True,
                default=default,
                metavar="true|false",
                help=help_text,
            )
        else:
            arguments.add_argument(
                f"--{name}",
                type=_TYPES[spec.get("type", "string")],
                choices=spec.get("enum"),
                default=default,
                help=help_text,
            )


def params_from_args(args: argparse.Namespace, groups: tuple[str, ...]) -> dict[str, Any]:
    """Return the schema parameters of ``groups`` as given on the command line, validated."""
    params = {name: getattr(args, name) for group in groups for name in group_properties(group)}
    validate(params, source="command line")
    return params


def _parameter_validator() -> jsonschema.Validator:
    flat = {"type": "object", "properties": all_properties(), "additionalProperties": False}
    return jsonschema.Draft202012Validator(flat, format_checker=None)


def validate(params: dict[str, Any], *, source: str) -> None:
    """Check parameter values against the schema (None means unset); raise one :class:`TmeflowInputError`."""
    given = {name: value for name, value in params.items() if value is not None}
    for error in sorted(_parameter_validator().iter_errors(given), key=lambda e: list(e.path)):
        if error.validator == "additionalProperties":
            unknown = sorted(set(given) - set(all_properties()))
            raise TmeflowInputError(f"unknown parameter(s) {', '.join(unknown)} in {source}; see nextflow_schema.json")
        name = error.path[0] if error.path else "?"
        raise TmeflowInputError(f"parameter {name} in {source}: {error.message}")


def read_params_file(path: str | Path) -> dict[str, Any]:
    """Read a Nextflow-style ``-params-file`` (YAML or JSON) and validate it against the schema."""
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("params file not found", file=path)
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise TmeflowInputError(f"params file is not valid YAML/JSON ({str(exc).splitlines()[0]})", file=path) from exc
    if not isinstance(data, dict):
        raise TmeflowInputError("params file must map parameter names to values", file=path)
    validate(data, source=str(path))
    return data
