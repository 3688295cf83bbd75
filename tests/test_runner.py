"""`tmeflow run`: the embedded runner executes every pipeline stage and writes the published layout."""

from __future__ import annotations

import json

import anndata as ad
import pandas as pd
import pytest

from tmeflow.cli import main
from tmeflow.samplesheet import read_samplesheet
from tmeflow.stages import pipeline_stage_names


@pytest.mark.slow
def test_run_executes_every_pipeline_stage(pipeline_results):
    summary = json.loads((pipeline_results / "pipeline_info" / "run_summary.json").read_text())
    assert sorted(summary["stages"]) == sorted(pipeline_stage_names())


@pytest.mark.slow
def test_qc_outputs_per_sample(pipeline_results, simulated_cohort):
    sc_samples = [row.sample for row in read_samplesheet(simulated_cohort / "samplesheet.csv") if row.modality == "sc"]
    for sample in sc_samples:
        kept = ad.read_h5ad(pipeline_results / "qc" / f"{sample}.qc.h5ad", backed="r")
        stats = pd.read_csv(pipeline_results / "qc" / f"{sample}.qc_stats_mqc.tsv", sep="\t", comment="#")
        assert stats.loc[0, "cells_kept"] == kept.n_obs > 0
        assert "counts" in kept.layers and "true_cell_type" in kept.obs
    valid = pd.read_csv(pipeline_results / "pipeline_info" / "samplesheet.valid.csv")
    assert set(sc_samples) <= set(valid["sample"])


@pytest.mark.slow
def test_two_bulk_cohorts_and_an_immunotherapy_cohort_get_distinct_outputs(pipeline_results, simulated_cohort):
    """The simulated cohort's three bulk rows (bulk, bulk_validation, immunotherapy) run in one `tmeflow run`:
    each has its own files and report tables, its own samples, and only the immunotherapy cohort (response,
    OS and PFS) gets the response table, ROC and optimised-split KM figure; the report shows every cohort.
    (tests/test_nextflow_static.py holds the same outdir to the BULK module's output globs for all three rows.)
    """
    import re

    truth = json.loads((simulated_cohort / "truth.json").read_text())
    bulk = pipeline_results / "bulk"
    cohorts = {
        "bulk": 60,
        "bulk_validation": truth["bulk_validation"]["n_samples"],
        "immunotherapy": truth["immunotherapy"]["n_samples"],
    }
    samples = {}
    for cohort, n in cohorts.items():
        summary = json.loads((bulk / f"{cohort}.bulk_summary.json").read_text())
        assert summary["cohort"] == cohort and summary["samples"] == n
        scores = pd.read_csv(bulk / f"{cohort}.bulk_scores.tsv", sep="\t")
        samples[cohort] = set(scores["sample"])
        assert (bulk / f"{cohort}.bulk_survival.tsv").stat().st_size > 0
    assert not (samples["bulk"] & samples["bulk_validation"]) and not (samples["bulk"] & samples["immunotherapy"])
    assert json.loads((bulk / "bulk_validation.bulk_summary.json").read_text())["endpoints"].keys() == {"OS"}
    clinical = pd.read_csv(simulated_cohort / "immunotherapy" / "clinical.tsv", sep="\t")
    assert set(clinical["response"]) == {"CR", "PR", "SD", "PD"} and (clinical["pfs_time"] <= clinical["os_time"]).all()
    assert truth["immunotherapy"]["responders"] == int(clinical["response"].isin(["CR", "PR"]).sum())
    io_summary = json.loads((bulk / "immunotherapy.bulk_summary.json").read_text())
    assert (
        io_summary["endpoints"].keys() == {"OS", "PFS"}
        and io_summary["response"]["responders"] == truth["immunotherapy"]["responders"]
    )
    for cohort in ("bulk", "bulk_validation"):
        assert (
            not (bulk / f"{cohort}.bulk_response.tsv").exists()
            and not (bulk / f"{cohort}.bulk_immunotherapy_km.png").exists()
        )
    assert (bulk / "immunotherapy.bulk_immunotherapy_km.png").stat().st_size > 10000
    assert (bulk / "immunotherapy.bulk_response_roc.png").stat().st_size > 5000
    response = pd.read_csv(bulk / "immunotherapy.bulk_response.tsv", sep="\t").set_index("feature")
    assert (response["n_responders"] == truth["immunotherapy"]["responders"]).all() and response["auc"].between(
        0, 1
    ).all()
    html = (pipeline_results / "multiqc" / "multiqc_report.html").read_text()
    for cohort in cohorts:
        assert f"tmeflow_bulk_survival_{cohort}" in html
    assert re.search("tmeflow_figure_immunotherapy_bulk_immunotherapy_km", html)


def test_run_rejects_a_bad_samplesheet_before_writing(tmp_path, capsys):
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "sample,patient,condition,tissue,species,batch,modality,data\nS1,P1,primary,t,human,b1,sc,nope.h5ad\n"
    )
    outdir = tmp_path / "results"
    assert main(["run", "--input", str(sheet), "--outdir", str(outdir)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "row 2, column data" in err
    assert not outdir.exists()


@pytest.mark.parametrize("param", ["probe_annotation", "gene_positions", "markers"])
def test_run_rejects_a_missing_user_file_before_writing(tmp_path, capsys, param):
    """User files are read by their stages (bulk, cnv, annotate) from the parameters; tmeflow run checks
    them first, as nf-schema does for Nextflow, instead of failing hours later.
    """
    (tmp_path / "S1.h5ad").write_text("")
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        "sample,patient,condition,tissue,species,batch,modality,data\nS1,P1,primary,t,human,b1,sc,S1.h5ad\n"
    )
    outdir = tmp_path / "results"
    assert main(["run", "--input", str(sheet), "--outdir", str(outdir), f"--{param}", str(tmp_path / "nope.tsv")]) == 2
    errors = capsys.readouterr().err.strip().splitlines()
    # every problem at once, one line each: the missing file and the (empty) count file
    assert f"{param} file not found" in errors[0] and "S1.h5ad" in errors[1] and len(errors) == 2, errors
    assert not outdir.exists()


def test_test_profile_and_params_file_agree(repo_root):
    """conf/test.config (Nextflow) and assets/test/params.yaml (tmeflow run) run the same test."""
    import sys

    import yaml

    sys.path.insert(0, str(repo_root / "tests"))
    from nf_static import params_assignments, parse_groovy_literal

    config = {
        name: source for name, source in params_assignments((repo_root / "conf" / "test.config").read_text()).items()
    }
    params_file = yaml.safe_load((repo_root / "assets" / "test" / "params.yaml").read_text())
    assert set(config) == set(params_file)
    assert config.pop("input").strip("\"'").endswith(params_file.pop("input"))
    assert {name: parse_groovy_literal(source) for name, source in config.items()} == params_file


def test_bundled_test_samplesheet_is_valid(repo_root):
    rows = read_samplesheet(repo_root / "assets" / "test" / "cohort" / "samplesheet.csv")
    assert {row.modality for row in rows} == {"sc", "spatial", "bulk"}


def test_each_bulk_cohort_gets_its_own_files(repo_root, tmp_path, monkeypatch):
    """Two bulk rows (TCGA plus a GEO validation set) of the hard-values samplesheet: the bulk stage
    runs once per row with the row's name, which starts every file it writes (no overwriting).
    """
    import tmeflow.bulk
    from tmeflow.runner import _Pipeline, _run_bulk

    calls, species_seen = [], []

    def fake_run_bulk(expression, clinical, outdir, params, *, reference, signatures, sample, species):
        calls.append(sample)
        species_seen.append(species)
        (outdir / f"{sample}.bulk_summary.json").parent.mkdir(parents=True, exist_ok=True)
        (outdir / f"{sample}.bulk_summary.json").write_text("{}")

    monkeypatch.setattr(tmeflow.bulk, "run_bulk", fake_run_bulk)
    rows = [
        row
        for row in read_samplesheet(repo_root / "assets" / "test" / "cohort" / "samplesheet_hard_values.csv")
        if row.modality == "bulk"
    ]
    _run_bulk(_Pipeline(tmp_path, {}), rows, tmp_path / "atlas.h5ad", [])
    assert calls == ["TCGA-COAD", "GSE39582"]
    assert species_seen == [row.species for row in rows]  # the bulk cohort's species is its samplesheet row's
    assert sorted(p.name for p in (tmp_path / "bulk").iterdir()) == [
        "GSE39582.bulk_summary.json",
        "TCGA-COAD.bulk_summary.json",
    ]
