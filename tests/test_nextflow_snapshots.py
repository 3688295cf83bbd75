"""Stub snapshots of the modules' nf-tests agree with the modules (issue 21, item 6).

Every module's ``-stub`` nf-test asserts ``snapshot(process.out).match()`` against the committed
``tests/nextflow/modules/<module>.nf.test.snap``. nf-test cannot run here, so ``nf_snapshots.py``
derives each snapshot from the module's output declarations and stub block, in nf-test's format; these
tests fail when a module's stub outputs (or its ext.prefix) and its committed snapshot disagree. After
changing a module's outputs or stub, ``python tests/nf_snapshots.py`` rewrites the snapshots (as
``nf-test test --update-snapshot`` would where Nextflow runs).
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import nf_snapshots as snaps
import nf_static as ns
import pytest

from tmeflow import __version__

REPO = ns.REPO
MODULES = ns.module_dirs(REPO)
CONFIG = (REPO / "conf" / "modules.config").read_text()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_stub_snapshot_matches_the_module(module):
    nf_test = snaps.TESTS_DIR / f"{module}.nf.test"
    assert snaps.stub_tests(nf_test), f"{module}: no -stub test"
    assert snaps.check_snapshot(MODULES[module], nf_test, CONFIG, __version__) == []


def test_snapshot_values_are_nf_tests():
    # md5 of an empty file, and of the "\n" that `echo "" | gzip` compresses (nf-test hashes it unzipped)
    assert hashlib.md5(b"").hexdigest() == "d41d8cd98f00b204e9800998ecf8427e"
    assert hashlib.md5(b"\n").hexdigest() == "68b329da9893e34099c7d8ad5cb9c940"
    snap = json.loads((snaps.TESTS_DIR / "deconvolve.nf.test.snap").read_text())
    (content,) = snap["spatial section of the test cohort - stub"]["content"]
    meta = {
        "batch": "visium",
        "condition": "primary",
        "id": "P1_primary_visium1",
        "modality": "spatial",
        "patient": "P1",
        "species": "human",
        "tissue": "primary_tumour",
    }
    empty = "d41d8cd98f00b204e9800998ecf8427e"
    assert content["h5ad"] == [[meta, f"P1_primary_visium1.deconvolved.h5ad:md5,{empty}"]]
    assert content["0"] == content["h5ad"]
    assert content["proportions_fine"] == []  # optional, not made by the stub
    assert content["mqc"] == [
        [
            f"P1_primary_visium1.deconvolution_agreement_mqc.tsv:md5,{empty}",
            f"P1_primary_visium1.deconvolution_mqc.tsv:md5,{empty}",
        ]
    ]
    versions = hashlib.md5(f'"DECONVOLVE":\n    tmeflow: {__version__}\n'.encode()).hexdigest()
    assert content["versions"] == [f"versions.yml:md5,{versions}"]
    # channels by index and by name, keys sorted as strings (nf-test's TreeMap): "10" before "2"
    assert list(content) == sorted(content) and {"0", "9", "versions"} <= set(content)
    gz = json.loads((snaps.TESTS_DIR / "qc.nf.test.snap").read_text())
    (qc,) = gz["first single-cell sample of the test cohort - stub"]["content"]
    assert qc["cells"][0][1] == "S1.qc_cells.tsv.gz:md5,68b329da9893e34099c7d8ad5cb9c940"
    report = json.loads((snaps.TESTS_DIR / "report.nf.test.snap").read_text())
    (multiqc,) = report["a few report files - stub"]["content"]
    assert multiqc["data"] == [[]]  # a folder is the list of its files: mkdir multiqc_data


def test_pretty_print_is_groovy_json_output():
    # as nf-core/modules' star/align snapshot shows it: an empty channel is "[", a blank indented line, "]"
    text = snaps.pretty({"t": {"content": [{"0": [], "1": ["a.bam:md5,x"]}]}})
    assert text == (
        "{\n"
        '    "t": {\n'
        '        "content": [\n'
        "            {\n"
        '                "0": [\n'
        "                    \n"
        "                ],\n"
        '                "1": [\n'
        '                    "a.bam:md5,x"\n'
        "                ]\n"
        "            }\n"
        "        ]\n"
        "    }\n"
        "}"
    )


@pytest.fixture
def deconvolve_copy(tmp_path: Path) -> tuple[Path, Path]:
    module = tmp_path / "modules" / "local" / "deconvolve" / "main.nf"
    module.parent.mkdir(parents=True)
    shutil.copy(MODULES["deconvolve"], module)
    nf_test = tmp_path / "deconvolve.nf.test"
    shutil.copy(snaps.TESTS_DIR / "deconvolve.nf.test", nf_test)
    shutil.copy(snaps.TESTS_DIR / "deconvolve.nf.test.snap", tmp_path / "deconvolve.nf.test.snap")
    return module, nf_test


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, 1))


def test_snapshot_check_reports_a_stub_that_changed(deconvolve_copy):
    module, nf_test = deconvolve_copy
    _edit(module, "    touch ${prefix}.deconvolution_agreement_mqc.tsv\n", "")
    assert snaps.check_snapshot(module, nf_test, CONFIG, __version__) == [
        f"{nf_test}.snap: 'spatial section of the test cohort - stub' differs from the module's stub outputs "
        "in ['8', 'mqc']"
    ]


def test_snapshot_check_reports_an_ext_prefix_and_a_new_version(deconvolve_copy):
    module, nf_test = deconvolve_copy
    config = CONFIG.replace(
        "withName: 'DECONVOLVE' {", "withName: 'DECONVOLVE' {\n        ext.prefix = { \"${meta.id}_c2l\" }"
    )
    assert config != CONFIG
    problems = snaps.check_snapshot(module, nf_test, config, __version__)
    assert len(problems) == 1 and "'h5ad'" in problems[0] and "'versions'" not in problems[0], problems
    assert any("'versions'" in p for p in snaps.check_snapshot(module, nf_test, CONFIG, "9.9.9"))


def test_snapshot_check_reports_a_missing_assert_file_and_format(deconvolve_copy):
    module, nf_test = deconvolve_copy
    snap = nf_test.with_name(nf_test.name + ".snap")
    snap.write_text(json.dumps(json.loads(snap.read_text()), indent=2))
    assert snaps.check_snapshot(module, nf_test, CONFIG, __version__) == [
        f"{nf_test}.snap: not in nf-test's format (python tests/nf_snapshots.py rewrites it)"
    ]
    snap.unlink()
    _edit(nf_test, f"{{ assert {snaps.SNAPSHOT_ASSERT} }},\n", "")
    assert snaps.check_snapshot(module, nf_test, CONFIG, __version__) == [
        f"{nf_test}: test 'spatial section of the test cohort - stub' does not `assert {snaps.SNAPSHOT_ASSERT}`",
        f"{nf_test}.snap: missing (python tests/nf_snapshots.py writes it)",
    ]
