"""Static checks of the Nextflow pipeline (main.nf, workflows/, subworkflows/, modules/, conf/).

Nextflow cannot run where pytest runs, so these tests read the pipeline's files and hold them to
what tmeflow itself defines: the stage registry (``tmeflow.stages``), the CLI parser
(``tmeflow.cli.build_parser``) and ``nextflow_schema.json``. The checks live in ``nf_static.py``;
each returns a list of problems, and each is also fed a deliberately broken input here to prove it
can fail. ``nf-test`` tests for machines with Nextflow are in ``tests/nextflow/``.

Groovy syntax: every file gets the light parse (comments, strings, brackets). The full Groovy parse
(groovy-parser, an Earley parser: several seconds per file) is cached by file content in pytest's
cache; a file not parsed before is parsed only with ``TMEFLOW_GROOVY_PARSE=1`` and skipped otherwise.

When the schema or the stage registry grows, ``python tests/nf_static.py`` prints nextflow.config's
params block and ``python tests/nf_static.py <stage>`` a conf/modules.config block for a stage,
both generated from nextflow_schema.json (read them before pasting).
"""

from __future__ import annotations

import csv
import os
import re
import shutil
from pathlib import Path

import nf_static as ns
import pytest

from tmeflow import __version__
from tmeflow.stages import get_stage, pipeline_stage_names

REPO = ns.REPO
SCHEMA = ns.load_schema()
MODULES_CONFIG = REPO / "conf" / "modules.config"
NF_FILES = ns.nextflow_files()
CONFIG_FILES = ns.config_files()
NF_TEST_FILES = sorted((REPO / "tests" / "nextflow").rglob("*.nf.test")) + [REPO / "nf-test.config"]
MODULES = ns.module_dirs(REPO)
STAGE_MODULES = {name: path for name, path in MODULES.items() if name not in ns.TOOL_MODULES}
QC_MODULE = REPO / "modules" / "local" / "qc" / "main.nf"


def rel(path: Path) -> str:
    return path.relative_to(REPO).as_posix()


def test_pipeline_files_exist():
    for path in ("main.nf", "nextflow.config", "workflows/tmeflow.nf", "conf/base.config", "conf/modules.config"):
        assert (REPO / path).is_file(), path
    assert STAGE_MODULES, "no stage modules under modules/local/"


# --------------------------------------------------------------------------------------------------
# 1. Syntax
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NF_FILES + CONFIG_FILES + NF_TEST_FILES, ids=rel)
def test_light_parse(path):
    assert ns.check_balanced(path.read_text(), rel(path)) == []


@pytest.mark.parametrize(
    "broken, expected",
    [
        ('process QC {\n    script:\n    """\n    echo ${meta.id}\n    """\n', "never closed"),
        ("workflow X {\n    take:\n    a )\n}\n", "closes"),
        ("workflow X {\n    def s = 'unterminated\n}\n", "unterminated ' string"),
        ('process QC {\n    script:\n    """\n    echo\n}\n', "unterminated string"),
        ("/* never closed\nprocess QC { }\n", "unterminated /* comment"),
        ('process QC {\n    tag "${meta.id"\n}\n', 'unterminated " string'),
    ],
)
def test_light_parse_reports_broken_files(broken, expected):
    problems = ns.check_balanced(broken, "broken.nf")
    assert any(expected in problem for problem in problems), problems


def test_light_parse_ignores_brackets_in_strings_and_comments():
    text = (
        'process QC {\n    // a } in a comment\n    tag "${meta.id}"\n    script:\n'
        '    """\n    echo "}" \\$(x) [\n    """\n}\n'
    )
    assert ns.check_balanced(text) == []


@pytest.fixture(scope="module")
def groovy_cache(pytestconfig, tmp_path_factory):
    cache = getattr(pytestconfig, "cache", None)  # absent under -p no:cacheprovider
    return Path(cache.mkdir("tmeflow-groovy-parse")) if cache is not None else tmp_path_factory.mktemp("groovy-parse")


# nf-test files (nextflow_process { ... } etc.) and configs are Groovy too, and parse with the same grammar
@pytest.mark.parametrize("path", NF_FILES + NF_TEST_FILES + CONFIG_FILES, ids=rel)
def test_groovy_parse(path, groovy_cache):
    text = ns.scan(path.read_text()).no_comments  # comments cannot break the grammar; fewer tokens
    if not ns.groovy_parse_cached(text, groovy_cache) and os.environ.get("TMEFLOW_GROOVY_PARSE") != "1":
        pytest.skip("not parsed since its last change; run with TMEFLOW_GROOVY_PARSE=1 (slow: seconds per file)")
    assert ns.check_groovy_parses(text, rel(path), cache_dir=groovy_cache) == []


def test_groovy_parse_reports_broken_groovy():
    assert ns.check_groovy_parses("process QC {\n    tag 'x'\n}\n") == []
    problems = ns.check_groovy_parses("process QC {\n    when:\n    task.ext.when ==\n}\n", "broken.nf")
    assert problems and "not valid Groovy" in problems[0]


# --------------------------------------------------------------------------------------------------
# 2. Each stage module's `tmeflow <stage>` line parses with tmeflow's CLI, ext.args complete
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_stage_command_parses_with_tmeflow_cli(stage):
    problems = ns.check_stage_command(
        STAGE_MODULES[stage].read_text(),
        MODULES_CONFIG.read_text(),
        SCHEMA,
        stage=stage,
        name=rel(STAGE_MODULES[stage]),
    )
    assert problems == []


def _qc_check(module: str | None = None, config: str | None = None, schema=None, stage="qc"):
    return ns.check_stage_command(
        QC_MODULE.read_text() if module is None else module,
        MODULES_CONFIG.read_text() if config is None else config,
        SCHEMA if schema is None else schema,
        stage=stage,
        name="qc/main.nf",
    )


def test_stage_command_check_reports_unknown_option():
    broken = QC_MODULE.read_text().replace(
        "--patient ${shellQuote(meta.patient)}", "--patiënt ${shellQuote(meta.patient)}"
    )
    assert broken != QC_MODULE.read_text()
    problems = _qc_check(module=broken)
    assert any("rejected by tmeflow's CLI" in p for p in problems), problems


def test_stage_command_check_reports_missing_required_option():
    broken = QC_MODULE.read_text().replace("--species ${meta.species} \\\\\n", "")
    assert broken != QC_MODULE.read_text()
    problems = _qc_check(module=broken)
    assert any("--species" in p and "rejected" in p for p in problems), problems


def test_stage_command_check_reports_wrong_stage_and_missing_args():
    text = QC_MODULE.read_text()
    assert any("module is modules/local/integrate" in p for p in _qc_check(stage="integrate"))
    no_args = re.sub(r"\n\s*\$\{args\}\n", "\n", text)
    assert no_args != text
    assert any("does not pass ${args}" in p for p in _qc_check(module=no_args))


def test_stage_command_check_reports_forgotten_and_miswired_params():
    config = MODULES_CONFIG.read_text()
    forgotten = re.sub(r'\s*"--mad_genes \$\{params\.mad_genes\}",', "", config)
    assert forgotten != config
    assert any("does not pass --mad_genes" in p for p in _qc_check(config=forgotten))
    # same default (5) on both sides: only the name check can see this one
    miswired = config.replace('"--mad_genes ${params.mad_genes}"', '"--mad_genes ${params.mad_counts}"')
    assert any("passes params.mad_counts as --mad_genes" in p for p in _qc_check(config=miswired))
    # different defaults: the CLI receives a value that is not the schema default
    swapped = config.replace('"--min_genes ${params.min_genes}"', '"--min_genes ${params.min_counts}"')
    assert any("receives --min_genes 500" in p for p in _qc_check(config=swapped))


def test_stage_command_check_reports_params_outside_schema_and_null_defaults():
    config = MODULES_CONFIG.read_text().replace('"--seed ${params.seed}"', '"--seed ${params.random_seed}"')
    assert any("params.random_seed, which nextflow_schema.json does not define" in p for p in _qc_check(config=config))
    schema = {**SCHEMA, "$defs": {**SCHEMA["$defs"]}}
    schema["$defs"]["analysis_options"] = {"properties": {"seed": {"type": "integer"}}}  # no default
    assert any("params.seed unconditionally but it has no default" in p for p in _qc_check(schema=schema))


def test_stage_command_check_reports_missing_ext_args():
    config = MODULES_CONFIG.read_text().replace("withName: 'QC'", "withName: 'QC_OLD'")
    assert any("sets no ext.args for process QC" in p for p in _qc_check(config=config))


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_stage_module_passes_every_cli_option(stage):
    assert ns.check_stage_options_passed(STAGE_MODULES[stage].read_text(), stage, rel(STAGE_MODULES[stage])) == []


def test_stage_options_check_reports_inputs_never_passed():
    bulk = (REPO / "modules" / "local" / "bulk" / "main.nf").read_text()
    unstaged = bulk.replace("${signatures_arg}", "").replace("${reference_arg}", "")
    assert unstaged != bulk
    problems = ns.check_stage_options_passed(unstaged, "bulk", "bulk")
    assert len(problems) == 2, problems
    assert any("--signatures" in p for p in problems) and any("--reference" in p for p in problems)
    cnv = (REPO / "modules" / "local" / "cnv" / "main.nf").read_text()
    problems = ns.check_stage_options_passed(cnv.replace("--n_jobs ${task.cpus}", ""), "cnv", "cnv")
    assert problems and "--n_jobs" in problems[0]
    # without its exemption, --species (taken from the atlas) is reported too; an exempt option
    # that the module passes after all is reported as a stale exemption
    assert any("--species" in p for p in ns.check_stage_options_passed(cnv, "cnv", "cnv", not_passed={}))
    stale = {"cnv": {"species": "x", "n_jobs": "y"}}
    assert any(
        "remove it from OPTIONS_NOT_PASSED" in p
        for p in ns.check_stage_options_passed(cnv, "cnv", "cnv", not_passed=stale)
    )


def test_ext_args_evaluation_of_conditional_items():
    defaults = {"markers": None, "seed": 0, "flag": True}
    source = (
        """{ [ params.markers ? "--markers ${params.markers}" : '', "--seed ${params.seed}", """
        """params.flag ? '--x 1' : '' ].join(' ') }"""
    )
    assert ns.evaluate_ext_args(source, defaults) == ("--seed 0 --x 1", [])
    quoted = """{ [ params.markers ? "--markers '${params.seed}'" : '' ].join(' ') }"""
    assert ns._flag_value_pairs(quoted) == [("markers", "seed")]
    args, problems = ns.evaluate_ext_args("{ [ params.seed + 1 ].join(' ') }", defaults)
    assert problems and "not understood" in problems[0]


@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_stage_publishes_like_tmeflow_run(stage):
    process = next(iter(ns.process_blocks(STAGE_MODULES[stage].read_text())))
    assert ns.check_publish_dir(MODULES_CONFIG.read_text(), process, get_stage(stage).folder) == []


def test_publish_dir_check_reports_other_folder():
    config = MODULES_CONFIG.read_text().replace('"${params.outdir}/qc"', '"${params.outdir}/QC"')
    assert any("does not publish to" in p for p in ns.check_publish_dir(config, "QC", "qc"))


def test_config_selectors_name_real_processes():
    processes = [p for path in MODULES.values() for p in ns.process_blocks(path.read_text())]
    for config in CONFIG_FILES:
        assert ns.check_config_selectors(config.read_text(), processes, rel(config)) == []
    stale = MODULES_CONFIG.read_text() + "\nprocess {\n    withName: 'CELLRANGER' {\n        ext.args = ''\n    }\n}\n"
    assert any("CELLRANGER" in p for p in ns.check_config_selectors(stale, processes))


# --------------------------------------------------------------------------------------------------
# 3. Includes resolve
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NF_FILES, ids=rel)
def test_includes_resolve(path):
    assert ns.check_includes(path) == []


def test_include_check_reports_missing_file_missing_component_and_unused(tmp_path):
    (tmp_path / "modules" / "qc").mkdir(parents=True)
    (tmp_path / "modules" / "qc" / "main.nf").write_text("process QC {\n    script:\n    'true'\n}\n")
    (tmp_path / "lib.nf").write_text("def helper(x) {\n    return x\n}\nworkflow SUB {\n    main:\n    QC()\n}\n")
    main = tmp_path / "main.nf"
    main.write_text(
        "include { QC } from './modules/qc'\n"
        "include { QC as QC_AGAIN } from './modules/qc/main.nf'\n"
        "include { helper; SUB } from './lib'\n"
        "include { CNV } from './modules/cnv'\n"
        "include { MISSING } from './modules/qc'\n"
        "include { validateParameters } from 'plugin/nf-schema'\n"
        "workflow {\n    QC(helper(1))\n    SUB()\n    CNV()\n    MISSING()\n    validateParameters()\n}\n"
    )
    problems = ns.check_includes(main)
    assert len(problems) == 3, problems
    assert any("'./modules/cnv': no such file" in p for p in problems)
    assert any("defines no process/workflow/def MISSING" in p for p in problems)
    assert any("QC_AGAIN is included but never used" in p for p in problems)


# --------------------------------------------------------------------------------------------------
# 4. Parameters: used ones exist in the schema; nextflow.config defaults equal the schema's
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", NF_FILES + CONFIG_FILES + NF_TEST_FILES, ids=rel)
def test_params_exist_in_schema(path):
    assert ns.check_params_in_schema(path.read_text(), SCHEMA, rel(path)) == []


def test_params_check_reports_unknown_params():
    nf = 'workflow {\n    X(params.inputt)\n    // params.in_a_comment is ignored\n    Y("${params.outdir}/a")\n}\n'
    assert ns.check_params_in_schema(nf, SCHEMA, "main.nf") == [
        "main.nf: params.inputt is not defined in nextflow_schema.json"
    ]
    config = "params {\n    input = 'a.csv'\n    max_cpus = 2\n}\nparams.max_memory = '6.GB'\n"
    problems = ns.check_params_in_schema(config, SCHEMA, "test.config")
    assert {p.split("params.")[1].split()[0] for p in problems} == {"max_cpus", "max_memory"}
    assert ns.check_params_in_schema(config, SCHEMA, "test.config", allowed={"max_cpus", "max_memory"}) == []


def test_config_defaults_equal_schema_defaults():
    assert ns.check_config_defaults((REPO / "nextflow.config").read_text(), SCHEMA) == []


def test_config_defaults_check_reports_differences():
    config = (REPO / "nextflow.config").read_text()

    baseline = set(ns.check_config_defaults(config, SCHEMA))

    def problems_after(old: str, new: str) -> list[str]:
        changed = re.sub(old, new, config, count=1, flags=re.M)
        assert changed != config, old
        return [p for p in ns.check_config_defaults(changed, SCHEMA) if p not in baseline]

    assert any("min_genes is 300" in p for p in problems_after(r"^(\s*min_genes\s*=\s*)200", r"\g<1>300"))
    assert any("min_genes is '200'" in p for p in problems_after(r"^(\s*min_genes\s*=\s*)200", r"\g<1>'200'"))
    assert any(
        "strict_counts is 'false'" in p for p in problems_after(r"^(\s*strict_counts\s*=\s*)false", r"\g<1>'false'")
    )
    assert any("outdir is 'results'" in p for p in problems_after(r"^(\s*outdir\s*=\s*)null", r"\g<1>'results'"))
    assert any("qc_mode is 'mad'" in p for p in problems_after(r"^(\s*qc_mode\s*=\s*)'fixed'", r"\g<1>'mad'"))
    assert any("seed has no default" in p for p in problems_after(r"^\s*seed\s*=.*\n", ""))
    # integers and numbers compare by value: 25 == 25.0 for a "number"
    assert not problems_after(r"^(\s*max_pct_mito\s*=\s*)25", r"\g<1>25.0")


# --------------------------------------------------------------------------------------------------
# 5. Stage modules == tmeflow's pipeline stages, each included and called
# --------------------------------------------------------------------------------------------------


def test_stage_modules_match_stage_registry():
    assert ns.check_stage_modules(REPO, pipeline_stage_names()) == []


@pytest.fixture()
def pipeline_copy(tmp_path):
    for folder in ("modules", "workflows", "subworkflows"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    shutil.copy(REPO / "main.nf", tmp_path / "main.nf")
    return tmp_path


def test_stage_module_check_reports_missing_extra_and_unwired_modules(pipeline_copy):
    stages = sorted(STAGE_MODULES)  # the stages that have modules: independent of the registry's state
    baseline = ns.check_stage_modules(pipeline_copy, stages)
    assert not any("/modules/local/qc/" in p for p in baseline), baseline
    # a stage of the registry without a module
    problems = ns.check_stage_modules(pipeline_copy, [*stages, "cellcycle"])
    assert any("stage 'cellcycle' (tmeflow.stages) has no modules/local/cellcycle/main.nf" in p for p in problems)
    # a module that is not a stage
    (pipeline_copy / "modules" / "local" / "scrublet").mkdir()
    (pipeline_copy / "modules" / "local" / "scrublet" / "main.nf").write_text("process SCRUBLET {\n}\n")
    problems = ns.check_stage_modules(pipeline_copy, stages)
    assert any("modules/local/scrublet/ is neither" in p for p in problems)
    assert any("SCRUBLET is not included and called" in p for p in problems)
    # a stage module that nothing calls
    sc_qc = pipeline_copy / "subworkflows" / "local" / "sc_qc" / "main.nf"
    sc_qc.write_text(sc_qc.read_text().replace("QC ( ch_counts )", "ch_counts.view()"))
    problems = ns.check_stage_modules(pipeline_copy, stages)
    assert any("process QC is not included and called" in p for p in problems)


def test_stage_module_check_reports_misnamed_process(pipeline_copy):
    module = pipeline_copy / "modules" / "local" / "qc" / "main.nf"
    module.write_text(module.read_text().replace("process QC {", "process SC_QC_CELLS {"))
    problems = ns.check_stage_modules(pipeline_copy, sorted(STAGE_MODULES))
    assert any("process is SC_QC_CELLS, expected QC" in p for p in problems)


# --------------------------------------------------------------------------------------------------
# Module conventions (nf-core style)
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_conventions(module):
    path = MODULES[module]
    assert ns.check_module_conventions(path.read_text(), __version__, rel(path), tool=module in ns.TOOL_MODULES) == []


def test_module_convention_check_reports_breaches():
    text = QC_MODULE.read_text()

    def problems(new_text: str) -> list[str]:
        assert new_text != text
        return ns.check_module_conventions(new_text, __version__, "qc")

    own_image = text.replace('    conda "', f'    container "ghcr.io/tmeflow/tmeflow:{__version__}"\n    conda "')
    assert any("names a container" in p and "conf/containers.config" in p for p in problems(own_image))
    assert any("resource label" in p for p in problems(text.replace("process_medium", "process_huge")))
    assert any(
        "stub does not create output" in p for p in problems(text.replace("touch ${meta.id}.qc_scatter.png\n", ""))
    )
    assert any("does not emit" in p for p in problems(text.replace("emit: versions", "emit: version")))
    assert any("task.ext.when" in p for p in problems(text.replace("task.ext.when == null || task.ext.when", "true")))
    assert any('tag "$meta.id"' in p for p in problems(text.replace('tag "$meta.id"', "tag 'qc'")))


def test_base_config_sizes_every_label():
    text = (REPO / "conf" / "base.config").read_text()
    assert ns.check_resource_labels(text) == []
    assert any(
        "withLabel:process_high_memory" in p
        for p in ns.check_resource_labels(text.replace("withLabel:process_high_memory", "withLabel:process_bigmem"))
    )
    assert ns.retry_exit_codes("((130..145) + 104 + 175)") == ns.RETRY_EXIT_CODES
    assert any(
        "exit codes" in p for p in ns.check_resource_labels(text.replace("(130..145) + 104", "(130..143) + 104"))
    )
    assert any(
        "exit codes" in p
        for p in ns.check_resource_labels(text.replace("((130..145) + 104 + 175)", "[104, 134, 137, 139, 140, 143]"))
    )
    gpu_everywhere = text.replace("withLabel:process_gpu {\n", "withLabel:process_gpu {\n        accelerator = 1\n")
    assert any("outside -profile gpu" in p for p in ns.check_resource_labels(gpu_everywhere))


# --------------------------------------------------------------------------------------------------
# Software versions by topic channel
# --------------------------------------------------------------------------------------------------

WORKFLOW_FILES = [path for path in NF_FILES if "modules" not in path.relative_to(REPO).parts]


VERSIONS_CONSUMERS = ns.versions_topic_consumers(REPO)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_sends_versions_to_topic(module):
    path = MODULES[module]
    assert ns.check_versions_topic(path.read_text(), rel(path), consumer=module in VERSIONS_CONSUMERS) == []


def test_the_report_consumes_the_versions_topic(pipeline_copy):
    assert len(VERSIONS_CONSUMERS) == 1, VERSIONS_CONSUMERS  # the report module
    workflow = pipeline_copy / "workflows" / "tmeflow.nf"
    text = workflow.read_text()
    renamed = re.sub(r"\bch_collated_versions\b", "ch_software", text)
    assert renamed != text
    workflow.write_text(renamed)
    assert ns.versions_topic_consumers(pipeline_copy) == VERSIONS_CONSUMERS
    workflow.write_text(text.replace("softwareVersionsToYAML(", "sorted("))
    assert ns.versions_topic_consumers(pipeline_copy) == set()


def test_versions_topic_check_reports_missing_topic_and_consumer_deadlock():
    text = QC_MODULE.read_text()
    no_topic = text.replace(", topic: versions", "")
    assert no_topic != text
    assert any("not sent to the versions topic" in p for p in ns.check_versions_topic(no_topic, "qc"))
    assert any("must not emit to it" in p for p in ns.check_versions_topic(text, "report", consumer=True))
    assert ns.check_versions_topic(no_topic, "report", consumer=True) == []


def test_versions_collected_by_topic_not_plumbing():
    texts = {rel(path): path.read_text() for path in WORKFLOW_FILES}
    assert ns.check_versions_collected(texts) == []


def test_versions_collection_check_reports_plumbing():
    texts = {rel(path): path.read_text() for path in WORKFLOW_FILES}
    sc_qc = "subworkflows/local/sc_qc/main.nf"
    plumbed = {**texts, sc_qc: re.sub(r"(\n\s*emit:\n)", r"\1    versions = QC.out.versions\n", texts[sc_qc], count=1)}
    assert plumbed[sc_qc] != texts[sc_qc]
    problems = ns.check_versions_collected(plumbed)
    assert any("mixes .out.versions" in p for p in problems) and any("emits versions" in p for p in problems)
    workflow = "workflows/tmeflow.nf"
    untopical = texts[workflow].replace("channel.topic('versions')", "ch_versions")
    assert untopical != texts[workflow]
    problems = ns.check_versions_collected({**texts, workflow: untopical})
    assert any("keeps a ch_versions channel" in p for p in problems)
    assert any("no workflow collects channel.topic('versions')" in p for p in problems)


def test_nextflow_version_allows_topic_channels():
    config = (REPO / "nextflow.config").read_text()
    others = [(REPO / "main.nf").read_text(), *(path.read_text() for path in CONFIG_FILES)]
    assert ns.check_topic_support(config, True, others) == []
    assert ns.nextflow_version_floor(config) >= (25, 4)
    old = re.sub(r"(nextflowVersion\s*=\s*')[^']*'", r"\g<1>!>=24.04.2'", config)
    assert old != config and ns.nextflow_version_floor(old) == (24, 4, 2)
    assert any("need 25.04" in p for p in ns.check_topic_support(old, True, others))
    assert ns.check_topic_support(old, True, ["nextflow.preview.topic = true\n"]) == []
    ancient = re.sub(r"(nextflowVersion\s*=\s*')[^']*'", r"\g<1>!>=23.10.1'", config)
    assert any(
        "need Nextflow >= 24.04" in p
        for p in ns.check_topic_support(ancient, True, ["nextflow.preview.topic = true\n"])
    )
    assert ns.check_topic_support(ancient, False) == []


# --------------------------------------------------------------------------------------------------
# nf-test files for machines with Nextflow (tests/nextflow/)
# --------------------------------------------------------------------------------------------------


def test_every_module_and_subworkflow_has_an_nf_test():
    assert ns.check_nf_tests(REPO) == []


def test_pipeline_nf_test_runs_stub_and_real():
    path = REPO / "tests" / "nextflow" / "pipeline.nf.test"
    assert ns.check_pipeline_nf_test(ns.read_nf_test(path), path.read_text()) == []


@pytest.fixture()
def nf_test_copy(pipeline_copy):
    shutil.copytree(REPO / "tests" / "nextflow", pipeline_copy / "tests" / "nextflow")
    return pipeline_copy


def test_nf_test_check_reports_missing_misnamed_and_stubless_tests(nf_test_copy):
    tests = nf_test_copy / "tests" / "nextflow"
    assert ns.check_nf_tests(nf_test_copy) == []
    (tests / "modules" / "cnv.nf.test").unlink()
    (tests / "subworkflows" / "spatial.nf.test").unlink()
    qc = tests / "modules" / "qc.nf.test"
    qc.write_text(qc.read_text().replace('process "QC"', 'process "QC_OLD"'))
    de = tests / "modules" / "de.nf.test"
    de.write_text(re.sub(r'\n\s*options "-stub"\n', "\n", de.read_text()))
    (tests / "modules" / "orphan.nf.test").write_text(
        'nextflow_process {\n    name "gone"\n    script "../../../modules/local/gone/main.nf"\n    process "GONE"\n'
        '    test("x") {\n        then {\n            assert process.success\n        }\n    }\n}\n'
    )
    problems = ns.check_nf_tests(nf_test_copy)
    expected = [
        "no nf-test tests/nextflow/modules/cnv.nf.test",
        "workflow SPATIAL has no nf-test",
        "process 'QC_OLD' is not defined in modules/local/qc/main.nf",
        "does not test process QC of modules/local/qc/main.nf",
        'de.nf.test: has no test with options "-stub"',
        "orphan.nf.test: script does not name an existing file",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)
    assert len(problems) == len(expected), problems


def test_pipeline_nf_test_check_reports_missing_cases():
    path = REPO / "tests" / "nextflow" / "pipeline.nf.test"
    text = path.read_text()
    no_stub = re.sub(r'\n\s*options "-stub"\n', "\n", text)
    assert no_stub != text
    problems = ns.check_pipeline_nf_test(ns.read_nf_test(path, no_stub), no_stub)
    assert problems == ['pipeline.nf.test: has no test with options "-stub"'], problems
    no_report = text.replace("multiqc/multiqc_report.html", "multiqc/report.html")
    assert any(
        "multiqc_report.html" in p for p in ns.check_pipeline_nf_test(ns.read_nf_test(path, no_report), no_report)
    )


# --------------------------------------------------------------------------------------------------
# Profiles: included configs exist; cloud profiles are complete
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", CONFIG_FILES, ids=rel)
def test_included_configs_exist(path):
    assert ns.check_config_includes(path.read_text(), REPO, rel(path)) == []


def test_cloud_profiles_include_their_configs():
    config = (REPO / "nextflow.config").read_text()
    assert set(ns.CLOUD_PROFILES) <= set(ns.profile_blocks(config))
    assert ns.check_cloud_profiles(config) == []


def test_cloud_profile_check_reports_incomplete_profiles(tmp_path):
    config = (REPO / "nextflow.config").read_text()
    moved = config.replace("includeConfig 'conf/google.config'", "includeConfig 'conf/gcp.config'")
    assert moved != config
    assert any("profile google does not include conf/google.config" in p for p in ns.check_cloud_profiles(moved))
    assert any("includeConfig 'conf/gcp.config' names no file" in p for p in ns.check_config_includes(moved, REPO))
    (tmp_path / "conf").mkdir()
    aws = (REPO / "conf" / "awsbatch.config").read_text()
    (tmp_path / "conf" / "awsbatch.config").write_text(
        re.sub(r"\n\s*queue\s*=.*\n", "\n", aws).replace("'awsbatch'", "'local'")
    )
    (tmp_path / "conf" / "google.config").write_text(
        (REPO / "conf" / "google.config").read_text().replace("conda.enabled = false", "")
    )
    problems = ns.check_cloud_profiles(config, tmp_path)
    assert any("does not set executor = 'awsbatch'" in p for p in problems), problems
    assert any("awsbatch.config: does not set queue" in p for p in problems), problems
    assert any("google.config: does not turn conda off" in p for p in problems), problems
    assert len(problems) == 3, problems


# --------------------------------------------------------------------------------------------------
# 6. Output globs match what the stage writes (needs the `pipeline_results` fixture)
# --------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def results(request):
    try:
        return request.getfixturevalue("pipeline_results")
    except pytest.FixtureLookupError:
        pytest.skip("fixture pipeline_results (a `tmeflow run` outdir) is not defined in tests/conftest.py")


def _samples(outdir: Path) -> list[str]:
    sheet = outdir / "pipeline_info" / "samplesheet.valid.csv"
    with open(sheet, newline="") as handle:
        return [row["sample"] for row in csv.DictReader(handle)]


@pytest.mark.slow
@pytest.mark.parametrize("stage", sorted(STAGE_MODULES))
def test_module_outputs_match_stage_outputs(stage, results):
    outdir = Path(results)
    stage_dir = outdir / get_stage(stage).folder
    problems = ns.check_outputs_produced(
        STAGE_MODULES[stage].read_text(), stage_dir, _samples(outdir), rel(STAGE_MODULES[stage])
    )
    assert problems == []


def test_output_check_reports_unmatched_globs(tmp_path):
    stage_dir = tmp_path / "qc"
    stage_dir.mkdir()
    for name in ("S1.qc.h5ad", "S1.qc_cells.tsv.gz", "S1.qc_violin.png", "S1.qc_scatter.png", "S1.qc_stats_mqc.tsv"):
        (stage_dir / name).write_text("x")
    # S2 was dropped by QC: no h5ad (optional), everything else written
    for name in ("S2.qc_cells.tsv.gz", "S2.qc_violin.png", "S2.qc_scatter.png", "S2.qc_stats_mqc.tsv"):
        (stage_dir / name).write_text("x")
    text = QC_MODULE.read_text()
    assert ns.check_outputs_produced(text, stage_dir, ["S1", "S2", "S3_other_modality"]) == []
    renamed = text.replace('"${meta.id}.qc_violin.png"', '"${meta.id}_violin.png"')
    problems = ns.check_outputs_produced(renamed, stage_dir, ["S1", "S2"])
    assert len(problems) == 2 and all("_violin.png" in p for p in problems), problems
    braces = text.replace('"${meta.id}.qc_violin.png"', '"${meta.id}.qc_{violin,scatter}.png"')
    assert ns.check_outputs_produced(braces, stage_dir, ["S1", "S2"]) == []
    assert not ns.glob_match("S2.qc_box.png", "S2.qc_{violin,scatter}.png")
    (stage_dir / "S1.qc.h5ad").unlink()
    assert any("optional output" in p for p in ns.check_outputs_produced(text, stage_dir, ["S1", "S2"]))
    assert any("wrote no" in p for p in ns.check_outputs_produced(text, tmp_path / "nothing", ["S1"]))


def test_stage_command_check_reports_file_params_not_staged():
    annotate = REPO / "modules" / "local" / "annotate" / "main.nf"
    config = MODULES_CONFIG.read_text()
    assert ns.check_stage_command(annotate.read_text(), config, SCHEMA, stage="annotate") == []
    unstaged = annotate.read_text().replace("${markers_arg}", "")
    assert any(
        "--markers is neither staged" in p for p in ns.check_stage_command(unstaged, config, SCHEMA, stage="annotate")
    )
    via_args = config.replace(
        '"--n_marker_genes ${params.n_marker_genes}",',
        '"--n_marker_genes ${params.n_marker_genes}", "--markers ${params.markers}",',
    )
    assert any(
        "passes the file parameter --markers" in p
        for p in ns.check_stage_command(annotate.read_text(), via_args, SCHEMA, stage="annotate")
    )
    # probe_annotation and gene_positions are schema file parameters too, staged by BULK and CNV
    for stage, variable, param in (
        ("bulk", "probes_arg", "probe_annotation"),
        ("cnv", "positions_arg", "gene_positions"),
    ):
        module = (REPO / "modules" / "local" / stage / "main.nf").read_text()
        assert ns.check_stage_command(module, config, SCHEMA, stage=stage) == []
        unstaged = module.replace("${" + variable + "}", "")
        assert unstaged != module
        assert any(
            f"--{param} is neither staged" in p for p in ns.check_stage_command(unstaged, config, SCHEMA, stage=stage)
        )
