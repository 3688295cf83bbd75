"""Parameters: one definition in nextflow_schema.json, read by the CLI and by `tmeflow run`."""

from __future__ import annotations

import json

import pytest

from tmeflow import params
from tmeflow.cli import build_parser, main
from tmeflow.errors import TmeflowInputError
from tmeflow.stages import STAGES, get_stage


def test_packaged_schema_is_the_repository_schema(repo_root):
    assert params.load_schema() == json.loads((repo_root / "nextflow_schema.json").read_text())


def test_every_schema_parameter_is_documented():
    for name, spec in params.all_properties().items():
        assert spec.get("type") in {"string", "integer", "number", "boolean"}, name
        assert spec.get("description"), f"{name} has no description"


def test_stage_options_take_schema_defaults_and_types():
    args = build_parser().parse_args(
        [
            "qc",
            "--input",
            "x",
            "--sample",
            "S",
            "--patient",
            "P",
            "--condition",
            "primary",
            "--species",
            "human",
            "--outdir",
            "o",
        ]
    )
    qc_params = params.params_from_args(args, get_stage("qc").param_groups)
    schema_defaults = params.defaults()
    assert qc_params == {name: schema_defaults[name] for name in qc_params}
    assert set(qc_params) >= {"min_genes", "max_pct_mito", "qc_mode", "seed"}


@pytest.mark.parametrize(("value", "expected"), [("true", True), ("false", False), ("True", True), ("0", False)])
def test_boolean_options_accept_true_false(value, expected):
    args = build_parser().parse_args(
        [
            "qc",
            "--input",
            "x",
            "--sample",
            "S",
            "--patient",
            "P",
            "--condition",
            "c",
            "--species",
            "human",
            "--outdir",
            "o",
            "--drop_failed_samples",
            value,
        ]
    )
    assert args.drop_failed_samples is expected


def test_out_of_range_and_unknown_parameters_are_one_line_errors(tmp_path):
    bad = tmp_path / "params.yaml"
    bad.write_text("max_pct_mito: 120\n")
    with pytest.raises(TmeflowInputError, match="max_pct_mito.*maximum"):
        params.read_params_file(bad)
    bad.write_text("min_gene: 10\n")
    with pytest.raises(TmeflowInputError, match="unknown parameter.*min_gene"):
        params.read_params_file(bad)
    bad.write_text("- a list\n")
    with pytest.raises(TmeflowInputError, match="must map"):
        params.read_params_file(bad)


def test_run_merges_defaults_params_file_and_command_line(tmp_path):
    from tmeflow.runner import resolve_params

    params_file = tmp_path / "params.yaml"
    params_file.write_text("input: sheet.csv\noutdir: results\nmin_genes: 300\nmax_pct_mito: 15\n")
    args = build_parser().parse_args(["run", "--params-file", str(params_file), "--min_genes", "400"])
    resolved = resolve_params(args)
    assert resolved["min_genes"] == 400  # command line beats the file
    assert resolved["max_pct_mito"] == 15  # the file beats the default
    assert resolved["min_counts"] == params.defaults()["min_counts"]


def test_run_help_lists_every_stage_parameter(capsys):
    with pytest.raises(SystemExit):
        main(["run", "--help"])
    text = capsys.readouterr().out
    stage_params = {
        name
        for stage in STAGES
        if stage.pipeline
        for group in stage.param_groups
        for name in params.group_properties(group)
    }
    assert stage_params
    missing = [name for name in stage_params if f"--{name}" not in text]
    assert not missing


def test_cli_lists_every_stage_and_version(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    assert all(stage.name in text for stage in STAGES)
    with pytest.raises(SystemExit):
        main(["--version"])
    assert capsys.readouterr().out.startswith("tmeflow ")
