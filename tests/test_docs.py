"""The user documentation keeps up with the pipeline: docs/output.md names every file a module
publishes, docs/parameters.md is the schema's current rendering, docs/usage.md covers every profile,
and the README links the docs.

Convention of docs/output.md checked here: one ``## `<folder>/` `` section per publish folder
(``${params.outdir}/<folder>`` in conf/modules.config), and in it every ``path(...)`` output glob of
the module's ``output:`` block (versions.yml aside, which is not published) matches at least one file
name written in backticks, where ``${meta.id}`` is spelled ``<sample>`` and other ``<...>``
placeholders (``<test>_vs_<reference>``, ``<level>``, ...) stand where the glob has ``*``. A
``{a,b}`` alternative must be documented for each of its expansions. A token may be a path
(``multiqc/multiqc_data/``): its last component is matched too.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest
from nf_static import (
    REPO,
    expand_braces,
    glob_match,
    interpolate,
    matching_close,
    output_paths,
    process_blocks,
    process_sections,
    scan,
    selector_matches,
    withname_blocks,
)

DOCS = REPO / "docs"
SAMPLE = "<sample>"


# --------------------------------------------------------------------------------------------------
# docs/output.md covers every published output
# --------------------------------------------------------------------------------------------------


def publish_folder(config_text: str, process: str) -> str | None:
    """``<folder>`` of ``path: { "${params.outdir}/<folder>" }`` in the last withName block of ``process``."""
    bodies = [body for selector, body in withname_blocks(config_text) if selector_matches(selector, process)]
    for body in reversed(bodies):
        match = re.search(r"path\s*:\s*\{\s*\"\$\{params\.outdir\}/([\w./-]+)\"\s*\}", scan(body).no_comments)
        if match:
            return match.group(1)
    return None


def module_outputs(repo: Path = REPO) -> dict[str, list[tuple[str, str]]]:
    """``{publish folder: [(module, output glob with ${meta.id} / ${prefix} as <sample>), ...]}`` of modules/local."""
    config = (repo / "conf" / "modules.config").read_text()
    outputs: dict[str, list[tuple[str, str]]] = {}
    for path in sorted((repo / "modules" / "local").glob("*/main.nf")):
        for process, body in process_blocks(path.read_text()).items():
            folder = publish_folder(config, process) or path.parent.name
            for output in output_paths(process_sections(body).get("output", "")):
                if output.pattern == "versions.yml":
                    continue
                # ${prefix}: task.ext.prefix ?: "${meta.id}" (BULK, DECONVOLVE), the sample by default
                pattern = interpolate(output.pattern, {"meta.id": SAMPLE, "prefix": SAMPLE})
                outputs.setdefault(folder, []).append((path.parent.name, pattern))
    return outputs


def doc_sections(text: str) -> dict[str, list[str]]:
    """``{folder: backticked tokens}`` of the ``## `<folder>/` `` sections of a markdown page."""
    sections: dict[str, list[str]] = {}
    current = None
    for line in text.splitlines():
        heading = re.match(r"^##\s+`([\w.-]+)/`", line)
        if heading:
            current = heading.group(1)
            sections.setdefault(current, [])
            continue
        if line.startswith("#"):
            current = None
            continue
        if current is not None:
            sections[current] += re.findall(r"`([^`]+)`", line)
    return sections


def output_doc_problems(
    doc_text: str, outputs: dict[str, list[tuple[str, str]]], name: str = "docs/output.md"
) -> list[str]:
    sections = doc_sections(doc_text)
    problems = []
    for folder, items in outputs.items():
        if folder not in sections:
            problems.append(f"{name}: no '## `{folder}/`' section (outputs of {items[0][0]})")
            continue
        candidates = set()
        for token in sections[folder]:
            candidates |= {token, token.rstrip("/").rsplit("/", 1)[-1]}
        for module, pattern in items:
            for expanded in expand_braces(pattern):
                if not any(glob_match(candidate, expanded) for candidate in candidates):
                    problems.append(f"{name}: section {folder}/ names no file matching {expanded!r} (module {module})")
    return problems


def test_output_doc_names_every_module_output():
    outputs = module_outputs()
    assert {"qc", "integrate", "annotate", "cnv", "subcluster", "spatial_analysis", "bulk", "multiqc"} <= set(outputs)
    assert ("qc", "<sample>.qc_stats_mqc.tsv") in outputs["qc"]
    assert output_doc_problems((DOCS / "output.md").read_text(), outputs) == []


def test_output_doc_sections_follow_the_analysis_order():
    order = list(doc_sections((DOCS / "output.md").read_text()))
    assert order == [
        "qc",
        "integrate",
        "annotate",
        "cnv",
        "subcluster",
        "composition",
        "de",
        "pathways",
        "trajectory",
        "communication",
        "spatial_qc",
        "deconvolve",
        "spatial_analysis",
        "bulk",
        "atlas",
        "multiqc",
        "pipeline_info",
    ]


def test_output_doc_check_reports_missing_misplaced_and_partly_documented_outputs():
    outputs = {
        "qc": [("qc", "<sample>.qc.h5ad"), ("qc", "<sample>.qc_stats_mqc.tsv")],
        "de": [("de", "de_*_vs_*.tsv")],
        "spatial_analysis": [("spatial_analysis", "<sample>.{regions,tls}.png")],
        "multiqc": [("report", "*multiqc_data")],
    }
    doc = "\n".join(
        [
            "# outputs",
            "## `qc/`",
            "| `<sample>.qc.h5ad` | kept cells |",
            "## `de/`",
            "| `de_<contrast>.tsv` | the glob needs `_vs_` |",
            "| `<sample>.qc_stats_mqc.tsv` | in the wrong section |",
            "## `spatial_analysis/`",
            "| `<sample>.regions.png` | only one of the two |",
        ]
    )
    problems = output_doc_problems(doc, outputs, "doc")
    assert problems == [
        "doc: section qc/ names no file matching '<sample>.qc_stats_mqc.tsv' (module qc)",
        "doc: section de/ names no file matching 'de_*_vs_*.tsv' (module de)",
        "doc: section spatial_analysis/ names no file matching '<sample>.tls.png' (module spatial_analysis)",
        "doc: no '## `multiqc/`' section (outputs of report)",
    ]
    fixed = doc + "\n| `<sample>.tls.png` |\n## `multiqc/`\n`multiqc/multiqc_data/`\n"
    fixed = fixed.replace("| `<sample>.qc.h5ad` | kept cells |", "| `<sample>.qc.h5ad`, `<sample>.qc_stats_mqc.tsv` |")
    fixed = fixed.replace("`de_<contrast>.tsv`", "`de_<test>_vs_<reference>.tsv`")
    assert output_doc_problems(fixed, outputs, "doc") == []


# --------------------------------------------------------------------------------------------------
# docs/parameters.md is generated from the schema
# --------------------------------------------------------------------------------------------------


def _renderer():
    spec = importlib.util.spec_from_file_location("render_parameters", REPO / "dev" / "render_parameters.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_parameters_doc_is_up_to_date():
    renderer = _renderer()
    assert (DOCS / "parameters.md").read_text() == renderer.current(), "run: python dev/render_parameters.py"


def test_parameters_doc_lists_every_parameter_and_notices_a_schema_change():
    renderer = _renderer()
    schema = json.loads((REPO / "nextflow_schema.json").read_text())
    text = renderer.render(schema, renderer.stages_by_group())
    for group in schema["$defs"].values():
        for name in group["properties"]:
            assert f"| `--{name}` |" in text
    schema["$defs"]["qc_options"]["properties"]["min_genes"]["description"] = "Changed."
    assert renderer.render(schema, renderer.stages_by_group()) != text
    # '<sample>' in a help text must survive as text, not vanish as an HTML tag
    assert "<sample>" not in text.split("## Groups")[1]


# --------------------------------------------------------------------------------------------------
# docs/usage.md covers every profile; the README links the docs
# --------------------------------------------------------------------------------------------------


def config_profiles(config_text: str) -> list[str]:
    """Names of the top-level entries of the ``profiles { }`` block."""
    code = scan(config_text).code
    match = re.search(r"\bprofiles\s*\{", code)
    if not match:
        return []
    open_at = match.end() - 1
    inner = code[open_at + 1 : matching_close(code, open_at)]
    names = []
    for entry in re.finditer(r"\b(\w+)\s*\{", inner):
        before = inner[: entry.start()]
        if before.count("{") == before.count("}"):
            names.append(entry.group(1))
    return names


def usage_problems(usage_text: str, profiles: list[str]) -> list[str]:
    return [f"docs/usage.md does not mention profile `{p}`" for p in profiles if f"`{p}`" not in usage_text]


def test_usage_doc_mentions_every_profile():
    profiles = config_profiles((REPO / "nextflow.config").read_text())
    assert {
        "test",
        "test_full",
        "docker",
        "singularity",
        "apptainer",
        "conda",
        "gpu",
        "slurm",
        "awsbatch",
        "google",
    } <= set(profiles)
    assert "process" not in profiles  # nested blocks are not profiles
    assert usage_problems((DOCS / "usage.md").read_text(), profiles) == []


def test_usage_check_reports_a_missing_profile():
    assert usage_problems("use `docker` or `conda`", ["docker", "gpu"]) == [
        "docs/usage.md does not mention profile `gpu`"
    ]


@pytest.mark.parametrize("doc", ["docs/usage.md", "docs/output.md", "docs/parameters.md"])
def test_readme_links_the_docs(doc):
    assert f"]({doc})" in (REPO / "README.md").read_text()
