"""Output names after the sample come from ``task.ext.prefix``, nf-core style (issue 21, item 6).

``def prefix = task.ext.prefix ?: "${meta.id}"`` is how an nf-core module lets a pipeline rename its
outputs (``withName: 'X' { ext.prefix = { ... } }`` in conf/modules.config). tmeflow's modules can
take it only where the stage's CLI has an option that names the outputs without being the sample's
identity in the data: ``--sample`` of ``tmeflow bulk`` ("its output files start with it"; also the
cohort's label in the report) and of ``tmeflow deconvolve`` ("section name for output files"; also
the figure titles and MultiQC rows). QC and SPATIAL_QC pass ``--sample`` as the sample's identity
(obs 'sample', the MultiQC rows), and SPATIAL_ANALYSIS names its files after obs 'sample' with no
option for it; they keep ``${meta.id}`` (``nf_static.NO_PREFIX`` says why). The prefix is assigned
without ``def`` because the output declarations read it (as nf-core modules do).
"""

from __future__ import annotations

import nf_static as ns
import pytest

REPO = ns.REPO
MODULES = ns.module_dirs(REPO)
SCHEMA = ns.load_schema()
CONFIG = (REPO / "conf" / "modules.config").read_text()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_module_takes_ext_prefix_where_its_cli_allows(module):
    assert ns.check_ext_prefix(MODULES[module].read_text(), module, module) == []


def test_prefix_modules_pass_the_prefix_to_the_cli():
    for module, option in ns.PREFIX_OPTIONS.items():
        text = MODULES[module].read_text()
        assert ns.check_stage_command(text, CONFIG, SCHEMA, stage=module) == []
        script = ns.triple_quoted(ns.process_sections(next(iter(ns.process_blocks(text).values())))["script"])
        command = ns.interpolate(ns.tmeflow_commands(script)[0], {**ns.META_PLACEHOLDERS, "prefix": "S1_custom"})
        words = ns.shell_words(command)
        assert words[words.index(option) + 1] == "S1_custom", command


def test_prefix_check_reports_def_meta_id_and_unlisted_modules(monkeypatch):
    text = MODULES["deconvolve"].read_text()

    def problems(new_text: str, module: str = "deconvolve") -> list[str]:
        assert new_text != text
        return ns.check_ext_prefix(new_text, module, module)

    assigned = 'prefix = task.ext.prefix ?: "${meta.id}"'
    # `def` makes it local to the script: the output declarations would not see it
    assert problems(text.replace(f'    {assigned}\n    """\n    touch', f'    def {assigned}\n    """\n    touch')) == [
        'deconvolve: stub: lacks `prefix = task.ext.prefix ?: "${meta.id}"` (no def)'
    ]
    assert problems(text.replace("--sample ${prefix}", "--sample ${meta.id}")) == [
        "deconvolve: does not pass --sample ${prefix}"
    ]
    assert problems(text.replace('path("${prefix}.deconvolved.h5ad")', 'path("${meta.id}.deconvolved.h5ad")')) == [
        "deconvolve: output names are not built from ${prefix}"
    ]
    assert problems(text.replace("touch ${prefix}.deconvolved.h5ad", "touch ${meta.id}.deconvolved.h5ad")) == [
        "deconvolve: stub names files after ${meta.id}, not ${prefix}"
    ]
    monkeypatch.delitem(ns.NO_PREFIX, "qc")
    qc = MODULES["qc"].read_text()
    assert any("take task.ext.prefix" in p for p in ns.check_ext_prefix(qc, "qc", "qc"))
    assert any(
        "PREFIX_OPTIONS names no option" in p
        for p in ns.check_ext_prefix(qc.replace("def args = ", "def prefix = task.ext.prefix\n    def args = "), "cnv")
    )
