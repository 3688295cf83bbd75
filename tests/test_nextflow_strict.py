"""Strict-syntax and convention checks of the Nextflow layer (``nf_strict.py``), each also fed a
broken file to prove it fails; and the hard-values samplesheet through both runners' validation
and every module command line.
"""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import nf_static as ns
import nf_strict as st
import pytest

from tmeflow.samplesheet import read_samplesheet

REPO = ns.REPO
CONFIG_FILES = ns.config_files()
NF_FILES = ns.nextflow_files()
NF_TEST_FILES = sorted((REPO / "tests" / "nextflow").rglob("*.nf.test"))
INPUT_SCHEMA = json.loads((REPO / "assets" / "schema_input.json").read_text())
HARD_SHEET = REPO / "assets" / "test" / "cohort" / "samplesheet_hard_values.csv"
MODULES_CONFIG = (REPO / "conf" / "modules.config").read_text()
SCHEMA = ns.load_schema()


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


# --------------------------------------------------------------------------------------------------
# Config files: no declarations, no deprecated options
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIG_FILES + [REPO / "nf-test.config"], ids=rel)
def test_config_declares_nothing(path):
    assert st.check_config_declarations(path.read_text(), rel(path)) == []


def test_declaration_check_reports_top_level_def():
    broken = "params { outdir = null }\ndef stamp = new Date().format('yyyy')\ntrace { file = \"t_${stamp}.txt\" }\n"
    problems = st.check_config_declarations(broken, "broken.config")
    assert len(problems) == 1 and "broken.config:2: declaration `def stamp" in problems[0], problems
    in_block = "process {\n    String queue = 'x'\n}\nimport java.util.Date\n"
    assert len(st.check_config_declarations(in_block, "b.config")) == 2
    # a def inside a closure is code, not a config declaration
    assert st.check_config_declarations("process {\n    cpus = { def n = 2\n n * task.attempt }\n}\n") == []


@pytest.mark.parametrize("path", CONFIG_FILES, ids=rel)
def test_config_uses_no_deprecated_option(path):
    assert st.check_deprecated_options(path.read_text(), rel(path)) == []


def test_deprecated_option_check_reports_each_spelling():
    broken = (
        "manifest {\n    author = 'me'\n}\n"
        "manifest.defaultBranch = 'main'\n"
        "nextflow.enable.configProcessNamesValidation = false\n"
        "profiles {\n    debug {\n        nextflow.enable.configProcessNamesValidation = true\n    }\n}\n"
    )
    problems = st.check_deprecated_options(broken, "broken.config")
    assert [p.split(": ")[1].split(" ")[0] for p in problems] == [
        "manifest.author",
        "manifest.defaultBranch",
        "nextflow.enable.configProcessNamesValidation",
        "nextflow.enable.configProcessNamesValidation",
    ], problems
    assert "broken.config:2:" in problems[0] and "manifest.contributors" in problems[0]


def test_config_assignments_drop_profiles_and_selectors():
    text = (
        "profiles {\n  gpu {\n    process {\n      withLabel:process_gpu {\n        cpus = 2\n      }\n    }\n  }\n}\n"
    )
    assert st.config_assignments(text) == [("process.cpus", 5)]


# --------------------------------------------------------------------------------------------------
# Scripts: channel, quoted metadata
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NF_FILES + NF_TEST_FILES, ids=rel)
def test_channel_factories_on_channel(path):
    assert st.check_channel_factory(path.read_text(), rel(path)) == []


def test_channel_check_reports_capitalised_factory():
    broken = (
        "workflow {\n    ch = Channel.of(1)  // Channel.fromList in a comment is fine\n"
        "    log.info 'Channel.of in a string is fine'\n}\n"
    )
    problems = st.check_channel_factory(broken, "main.nf")
    assert problems == ["main.nf:2: `Channel.of` -> `channel.of` (Channel is deprecated)"]


def test_shell_safe_columns_follow_the_schema():
    safe = st.shell_safe_columns(INPUT_SCHEMA)
    assert {"id", "patient", "condition", "species", "modality"} <= safe
    assert "tissue" not in safe and "batch" not in safe


@pytest.mark.parametrize("module", sorted(ns.module_dirs(REPO)))
def test_module_metadata_is_quoted(module):
    path = ns.module_dirs(REPO)[module]
    assert st.check_meta_quoted(path.read_text(), st.shell_safe_columns(INPUT_SCHEMA), rel(path)) == []


def test_meta_quote_check_reports_unquoted_tissue():
    qc = (REPO / "modules" / "local" / "qc" / "main.nf").read_text()
    broken = qc.replace("${shellQuote(meta.tissue)}", "${meta.tissue}")
    assert broken != qc
    problems = st.check_meta_quoted(broken, st.shell_safe_columns(INPUT_SCHEMA), "modules/local/qc/main.nf")
    assert problems == [
        "modules/local/qc/main.nf: QC script: `${meta.tissue}` reaches the shell unquoted; "
        "write ${shellQuote(meta.tissue)}"
    ]
    quoted_by_hand = qc.replace("${shellQuote(meta.tissue)}", "'${meta.tissue}'")  # breaks on Peyer's patch
    assert st.check_meta_quoted(quoted_by_hand, st.shell_safe_columns(INPUT_SCHEMA), "qc")


def test_groovy_shell_quote_matches_its_python_twin():
    utils = (REPO / "subworkflows" / "local" / "utils_tmeflow" / "main.nf").read_text()
    body = re.search(r"def shellQuote\(value\) \{(.*?)\n\}", utils, flags=re.S)
    assert body and """return "'" + value.toString().replace("'", "'\\\\''") + "'\"""" in body.group(1)
    for value in ["lymph node", "stomach (antrum)", "Peyer's patch", "côlon – sigmoïde", "$HOME `id` \\ ;|&*", "1", ""]:
        assert ns.shell_words("printf " + st.shell_quote(value)) == ["printf", value]


# --------------------------------------------------------------------------------------------------
# Versions
# --------------------------------------------------------------------------------------------------


def test_versions_fit_the_syntax_and_plugins():
    config = (REPO / "nextflow.config").read_text()
    assert st.check_versions(config) == []
    assert st.nf_schema_version(config) >= st.NF_SCHEMA_MIN


@pytest.mark.parametrize(
    ("old", "new", "expected"),
    [
        ("nf-schema@2.8.0", "nf-schema@2.3.0", "nf-schema@2.3.0: need >= 2.7.0"),
        ("nf-schema@2.8.0", "nf-schema@3.1.0", "nf-schema@3.1.0: need >= 2.7.0"),
        ("'!>=25.10.0'", "'!>=25.04.0'", "but nf-schema >= 2.6.0 needs 25.10.0"),
        ("'!>=25.10.0'", "'!>=25.10.0 <26.0'", "caps newer releases"),
        ("'!>=25.10.0'", "'>=25.10.0'", "only warns"),
    ],
)
def test_version_check_reports_broken_manifests(old, new, expected):
    config = (REPO / "nextflow.config").read_text()
    broken = config.replace(old, new)
    assert broken != config
    assert any(expected in p for p in st.check_versions(broken)), st.check_versions(broken)


# --------------------------------------------------------------------------------------------------
# GPUs, profiles, conda
# --------------------------------------------------------------------------------------------------


def test_gpu_routing():
    assert st.check_gpu_routing(REPO) == []


def test_gpu_routing_check_reports_double_flags_and_missing_routes(tmp_path):
    (tmp_path / "conf").mkdir()
    config = (
        (REPO / "nextflow.config")
        .read_text()
        .replace(
            "    gpu {\n        includeConfig 'conf/gpu.config'\n    }",
            "    gpu {\n        docker.runOptions = '-u $(id -u):$(id -g) --gpus all'\n"
            "        includeConfig 'conf/gpu.config'\n    }",
        )
    )
    (tmp_path / "nextflow.config").write_text(config)
    for path in (REPO / "conf").glob("*.config"):
        (tmp_path / "conf" / path.name).write_text(path.read_text())
    gpu = (REPO / "conf" / "gpu.config").read_text()
    (tmp_path / "conf" / "gpu.config").write_text(
        gpu.replace(
            "'--gres=gpu:1' : null }\n        containerOptions = {\n            params",
            "null : null }\n        containerOptions = {\n            params",
        ).replace(
            "[ request: 1, type: 'nvidia-tesla-t4' ] : 1 }\n        machineType      = { workflow",
            "1 : 1 }\n        machineType      = { workflow",
            1,
        )
    )
    (tmp_path / "conf" / "slurm.config").write_text(
        (REPO / "conf" / "slurm.config").read_text() + "\nprocess.container = 'ghcr.io/tmeflow/tmeflow:0.1.0-gpu'\n"
    )
    problems = st.check_gpu_routing(tmp_path)
    assert any("docker.runOptions gives every task a GPU" in p for p in problems), problems
    assert any("INTEGRATE does not ask SLURM for --gres=gpu:1" in p for p in problems), problems
    assert any("withLabel:process_gpu accelerator has no type" in p for p in problems), problems
    assert any("conf/slurm.config: names the CUDA image" in p for p in problems), problems


def test_core_facility_profiles_exist():
    profiles = ns.profile_blocks((REPO / "nextflow.config").read_text())
    assert {"wave", "arm64", "shifter", "charliecloud", "gpu"} <= set(profiles)
    assert (
        "shifter.enabled        = true" in profiles["shifter"]
        and "charliecloud.enabled   = true" in profiles["charliecloud"]
    )
    config = ns.scan((REPO / "nextflow.config").read_text()).no_comments
    include = re.search(
        r"^includeConfig params\.custom_config_base && \(!System\.getenv\('NXF_OFFLINE'\).*\"/dev/null\"$",
        config,
        flags=re.M,
    )
    assert include, "no nf-core institutional config include that NXF_OFFLINE skips"


def test_test_full_caps_resources():
    code = ns.scan((REPO / "conf" / "test_full.config").read_text()).no_comments
    assert re.search(r"resourceLimits\s*=\s*\[[^\]]*cpus[^\]]*memory[^\]]*time", code)


def test_conda_environment_is_named_after_the_version():
    from tmeflow import __version__

    env = (REPO / "containers" / "environment.yml").read_text()
    assert re.search(rf"^name: tmeflow-{re.escape(__version__)}\b", env, flags=re.M), (
        "Nextflow names a conda env by the hash of environment.yml's text: "
        "without the version in it an upgrade reuses the old code"
    )


def test_qc_dropping_every_sample_fails_the_run():
    code = ns.scan((REPO / "subworkflows" / "local" / "sc_qc" / "main.nf").read_text()).no_comments
    assert re.search(r"QC\.out\.h5ad\s*\.ifEmpty\s*\{\s*error\(", code), "SC_QC lets an empty atlas through"


# --------------------------------------------------------------------------------------------------
# The hard-values samplesheet: both runners, every module command line
# --------------------------------------------------------------------------------------------------


def _hard_rows() -> list[dict[str, str]]:
    with open(HARD_SHEET, newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_hard_values_sheet_has_the_hard_values():
    rows = _hard_rows()
    values = [v for row in rows for k, v in row.items() if k in ("sample", "patient", "condition", "tissue", "batch")]
    assert any(" " in v for v in values) and any("(" in v for v in values) and any("'" in v for v in values)
    assert any(v.isdigit() for v in values) and any(not v.isascii() for v in values)
    assert sum(row["modality"] == "bulk" for row in rows) == 2


def test_hard_values_sheet_passes_tmeflow_validation_as_text():
    rows = read_samplesheet(HARD_SHEET)
    by_sample = {row.sample: row for row in rows}
    for raw in _hard_rows():
        row = by_sample[raw["sample"]]
        assert row.meta() == {k: raw[k] for k in ("sample", "patient", "condition", "tissue", "species", "batch")}
        assert all(isinstance(v, str) for v in row.meta().values())


@pytest.mark.parametrize("stage", ["qc", "spatial_qc"])
def test_module_command_lines_carry_every_row_unchanged(stage):
    module = (REPO / "modules" / "local" / stage / "main.nf").read_text()
    modality = {"qc": "sc", "spatial_qc": "spatial"}[stage]
    rows = [row for row in _hard_rows() if row["modality"] == modality]
    assert rows
    for row in rows:
        meta = {"id": row["sample"], **{k: row[k] for k in ("patient", "condition", "tissue", "species", "batch")}}
        assert ns.check_stage_command(module, MODULES_CONFIG, SCHEMA, stage=stage, name=stage, meta=meta) == []


def test_command_line_check_reports_a_value_the_shell_splits():
    qc = (REPO / "modules" / "local" / "qc" / "main.nf").read_text()
    broken = qc.replace("${shellQuote(meta.tissue)}", "${meta.tissue}")
    meta = {
        "id": "S1",
        "patient": "P1",
        "condition": "primary",
        "tissue": "lymph node",
        "species": "human",
        "batch": "b1",
    }
    problems = ns.check_stage_command(broken, MODULES_CONFIG, SCHEMA, stage="qc", name="qc", meta=meta)
    assert any("unrecognized arguments: node" in p for p in problems), problems
    meta["tissue"] = "stomach (antrum)"
    problems = ns.check_stage_command(broken, MODULES_CONFIG, SCHEMA, stage="qc", name="qc", meta=meta)
    assert any("does not split like a shell would" in p and "syntax error" in p for p in problems), problems
