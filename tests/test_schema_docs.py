"""Parameter documentation: the schema documents every parameter, and ``--help`` says what it says.

``nextflow_schema.json`` is the one definition of the pipeline's parameters. Every parameter has a
type, a one-line ``description`` (shown by ``tmeflow <stage> --help`` and nf-schema's ``--help``),
a longer ``help_text`` (what it does, why the default, when to change it) and a default, except the
optional paths/strings that default to unset (``null``; nf-core leaves their default out). The help
of every ``tmeflow`` subcommand that takes schema parameters (``tmeflow run`` included) shows each
one with the schema's description and default.

Fast: reads JSON and builds the argparse parser, nothing heavy.
"""

from __future__ import annotations

import argparse
import copy
import json
import re
from typing import Any

import pytest

from tmeflow import params
from tmeflow.cli import build_parser
from tmeflow.stages import STAGES, get_stage

_TYPES = {"string": (str,), "integer": (int,), "number": (int, float), "boolean": (bool,)}


def schema_doc_problems(schema: dict[str, Any]) -> list[str]:
    """Every parameter of every ``$defs`` group: known type, description, help_text, and a default
    of that type unless it is a string (an optional path or text that defaults to unset).
    """
    problems = []
    for group_name, group in schema.get("$defs", {}).items():
        for name, spec in group.get("properties", {}).items():
            where = f"{group_name}.{name}"
            kind = spec.get("type")
            if kind not in _TYPES:
                problems.append(f"{where}: type {kind!r} is not one of {sorted(_TYPES)}")
            for key in ("description", "help_text"):
                if not str(spec.get(key, "")).strip():
                    problems.append(f"{where}: no {key}")
            if "default" not in spec:
                if kind != "string":
                    problems.append(f"{where}: no default (only optional string/path parameters may leave it out)")
            elif spec["default"] is not None and kind in _TYPES:
                value = spec["default"]
                if not isinstance(value, _TYPES[kind]) or (kind in ("integer", "number") and isinstance(value, bool)):
                    problems.append(f"{where}: default {value!r} is not of type {kind}")
    return problems


def expected_help(spec: dict[str, Any]) -> str:
    """What ``--help`` must say of a schema parameter: its description, then its default as JSON."""
    description = spec.get("description", "")
    return f"{description} (default: {json.dumps(spec['default'])})" if "default" in spec else description


def _squeeze(text: str) -> str:
    # argparse wraps help at spaces and after hyphens: compare without any whitespace.
    return re.sub(r"\s+", "", text)


def help_problems(
    parser: argparse.ArgumentParser, properties: dict[str, dict[str, Any]], name: str = "<parser>"
) -> list[str]:
    """Each parameter of ``properties`` is an option of ``parser`` whose help is the schema's
    description and default, and the formatted ``--help`` shows it.
    """
    options = {opt: action for action in parser._actions for opt in action.option_strings}
    formatted = _squeeze(parser.format_help())
    problems = []
    for param, spec in properties.items():
        action = options.get(f"--{param}")
        if action is None:
            problems.append(f"{name}: no --{param} option")
            continue
        want = expected_help(spec)
        have = (action.help or "").replace("%%", "%")
        if action.help == argparse.SUPPRESS:
            problems.append(f"{name}: --{param} is hidden from --help")
        elif have != want:
            problems.append(f"{name}: --{param} help is {have!r}, the schema says {want!r}")
        elif _squeeze(want) not in formatted:
            problems.append(f"{name}: --help does not show {want!r} for --{param}")
    return problems


def subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


def stage_properties(stage_name: str) -> dict[str, dict[str, Any]]:
    return {
        name: spec
        for group in get_stage(stage_name).param_groups
        for name, spec in params.group_properties(group).items()
    }


# --------------------------------------------------------------------------------------------------
# The schema documents every parameter
# --------------------------------------------------------------------------------------------------


def test_every_schema_parameter_has_type_description_help_text_and_default():
    assert schema_doc_problems(params.load_schema()) == []


def test_schema_doc_check_reports_missing_help_text_default_and_type():
    schema = copy.deepcopy(params.load_schema())
    qc = schema["$defs"]["qc_options"]["properties"]
    del qc["mad_counts"]["help_text"]
    del qc["min_genes"]["default"]
    qc["max_pct_hb"]["default"] = "1"
    qc["qc_mode"]["description"] = " "
    problems = schema_doc_problems(schema)
    assert "qc_options.mad_counts: no help_text" in problems
    assert any(p.startswith("qc_options.min_genes: no default") for p in problems)
    assert any(p.startswith("qc_options.max_pct_hb: default '1' is not of type number") for p in problems)
    assert "qc_options.qc_mode: no description" in problems
    assert len(problems) == 4


def test_optional_paths_may_leave_the_default_out():
    schema = {
        "$defs": {
            "g": {
                "properties": {
                    "markers": {"type": "string", "format": "file-path", "description": "d", "help_text": "h"}
                }
            }
        }
    }
    assert schema_doc_problems(schema) == []


# --------------------------------------------------------------------------------------------------
# --help shows the schema's description and default
# --------------------------------------------------------------------------------------------------


def test_run_help_lists_every_parameter_with_schema_description_and_default():
    run = subparsers()["run"]
    properties = stage_properties("run")
    assert {"min_genes", "batch_correction", "seed", "deconvolution_method", "communication_top_n"} <= set(properties)
    assert help_problems(run, properties, "tmeflow run") == []
    # The run's own options: the samplesheet, the results folder and a Nextflow-style params file.
    text = run.format_help()
    assert all(option in text for option in ("--input", "--outdir", "--params-file"))


@pytest.mark.parametrize("stage", [s.name for s in STAGES if s.param_groups and s.name != "run"])
def test_stage_help_shows_schema_description_and_default(stage):
    assert help_problems(subparsers()[stage], stage_properties(stage), f"tmeflow {stage}") == []


def test_help_check_reports_missing_option_other_text_and_missing_default():
    properties = {
        "min_genes": {"type": "integer", "default": 200, "description": "Minimum genes per cell."},
        "max_pct_mito": {"type": "number", "default": 25, "description": "Maximum % mito."},
        "markers": {"type": "string", "description": "Marker table."},
        "seed": {"type": "integer", "default": 0, "description": "Random seed."},
    }
    parser = argparse.ArgumentParser(prog="demo")
    parser.add_argument("--min_genes", help="Minimum genes per cell.")  # default left out
    parser.add_argument("--max_pct_mito", help="Maximum %% mito. (default: 25)")  # '%' escaped; matches
    parser.add_argument("--markers", help="A marker file.")  # other text
    problems = help_problems(parser, properties, "demo")
    assert len(problems) == 3, problems
    assert any("--min_genes help is" in p for p in problems)
    assert any("--markers help is" in p for p in problems)
    assert "demo: no --seed option" in problems


def test_optional_parameters_show_no_null_default():
    run = subparsers()["run"]
    markers = next(a for a in run._actions if "--markers" in a.option_strings)
    assert "(default:" not in markers.help
    assert markers.help == params.all_properties()["markers"]["description"]
