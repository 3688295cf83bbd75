"""Tumour vs normal per cancer type (``tmeflow.bulk.normals``): which samples are normals (sample_type
column, TCGA barcodes), a separate normal cohort matched by cancer type, and the planted tumour-normal
genes of ``tmeflow simulate --bulk_normals`` found with calibrated null genes.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tmeflow.bulk.normals import BATCH_WARNING, in_table_normals, sample_states, tumour_normal_table
from tmeflow.cli import main
from tmeflow.errors import TmeflowInputError


def test_sample_states_from_a_column_and_from_tcga_barcodes(caplog):
    source = Path("clinical.tsv")
    clinical = pd.DataFrame(
        {"Sample_Type": ["Primary Tumor", "Solid Tissue Normal", "tumour", "N", "11", "01", None]},
        index=[f"S{i}" for i in range(7)],
    )
    with caplog.at_level(logging.INFO, logger="tmeflow"):
        states = sample_states(clinical, "", source)
    assert list(states.fillna("NA")) == ["tumour", "normal", "tumour", "normal", "normal", "tumour", "NA"]
    assert "sample types from clinical column Sample_Type: 3 tumour, 3 normal, 1 neither (left out)" in caplog.text
    with pytest.raises(TmeflowInputError, match="sample type 'cell line' is neither tumour nor normal") as error:
        sample_states(clinical.assign(Sample_Type=["cell line"] * 7), "", source)
    assert "column Sample_Type" in str(error.value) and "\n" not in str(error.value)
    with pytest.raises(TmeflowInputError, match="sample_type_column is not a clinical column"):
        sample_states(clinical, "tissue_state", source)
    # no column: TCGA barcodes' sample-type code (R's make.names dots read as dashes); 20 (control) left out
    barcodes = ["TCGA-AB-0001-01A-11R", "TCGA.AB.0001.11A", "TCGA-AB-0002-01", "TCGA-AB-0003-20A"]
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="tmeflow"):
        states = sample_states(pd.DataFrame(index=barcodes), "", source)
    assert list(states.fillna("NA")) == ["tumour", "normal", "tumour", "NA"]
    assert "TCGA barcodes' sample-type code" in caplog.text and "2 tumour, 1 normal, 1 neither" in caplog.text
    # identifiers that are not all 15+ character TCGA barcodes tell nothing: every sample is a tumour, as before
    assert sample_states(pd.DataFrame(index=["TCGA-AB-0001", "GSM1"]), "", source) is None
    # in-table normals belong to their own row's cancer type
    types = pd.Series(["A", "A", "B", "B"], index=barcodes)
    assert in_table_normals(pd.Series(["tumour", "normal", "normal", "tumour"], index=barcodes), types) == {
        "A": [barcodes[1]],
        "B": [barcodes[2]],
    }


@pytest.mark.slow
def test_planted_tumour_normal_genes_found_and_null_genes_calibrated_over_20_seeds():
    """20 seeds of the simulator's tumours (60) and normals (15, same assay): the 6 planted genes (log2 FC +-1)
    are found at FDR < 0.05 in every seed, and the 14 null signature genes reject at <= 5% (p and FDR).
    """
    from tmeflow.simulate import (
        SimConfig,
        _bulk_expression,
        build_genes,
        build_model,
        normal_de_genes,
        simulate_normals,
    )

    config = SimConfig(outdir=Path("unused"), n_genes=1500, n_bulk=60)
    rng = np.random.default_rng(0)
    model = build_model(config, build_genes(config, rng), rng)
    genes = model.programmes["fate_A"]
    planted = normal_de_genes(model)
    assert len(planted) == 6 and set(planted) < set(genes)
    tables = []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        tumours, truth = _bulk_expression(model, 60, rng)
        normals = simulate_normals(model, 15, truth.attrs["platform"], rng)
        values = np.log2(pd.concat([tumours, normals], axis=1).loc[genes].T + 1.0)
        table = tumour_normal_table(values, {g: "gene" for g in genes}, None, {"all": list(normals.columns)})
        tables.append(table.assign(seed=seed))
    table = pd.concat(tables, ignore_index=True)
    hit = table["feature"].isin(list(planted))
    assert hit.sum() == 6 * 20 and (table.loc[hit, "fdr"] < 0.05).all()
    signs = np.sign(table.loc[hit, "log2fc"]) == table.loc[hit, "feature"].map(planted).map(np.sign)
    assert signs.all()
    null = table[~hit]
    assert len(null) == 14 * 20
    assert (null["p"] < 0.05).mean() <= 0.05 and (null["fdr"] < 0.05).mean() <= 0.05


def test_separate_normal_cohort_matched_by_cancer_type(tmp_path, caplog):
    """A GTEx-style normal cohort: its cancer_type column maps each normal to one or more types (comma-separated);
    unknown types are ignored, the batch confound is logged; without the column it is a one-line error.
    """
    from tmeflow.bulk.normals import read_normal_cohort

    expression = pd.DataFrame(np.arange(12.0).reshape(3, 4), index=["G1", "G2", "G3"], columns=["N1", "N2", "N3", "N4"])
    clinical = pd.DataFrame({"sample": ["N1", "N2", "N3", "N4"], "cancer_type": ["COAD,READ", "COAD", "LUAD", "BRCA"]})
    tumour_types = pd.Series(["COAD", "READ", "LUAD"], index=["T1", "T2", "T3"])

    def reader(path, clinical_path):
        """Stands in for the cohort's reader: (clinical, log2 expression)."""
        clin = pd.read_csv(clinical_path, sep="\t").set_index("sample")
        return clin, expression

    path = tmp_path / "normals_clinical.tsv"
    clinical.to_csv(path, sep="\t", index=False)
    with caplog.at_level(logging.INFO, logger="tmeflow"):
        log_expr, by_type = read_normal_cohort(tmp_path / "gtex.tsv", path, tumour_types, "", reader)
    assert by_type == {"COAD": ["N1", "N2"], "READ": ["N1"], "LUAD": ["N3"]}
    assert BATCH_WARNING in caplog.text and "cancer type(s) BRCA not in the tumour cohort, ignored" in caplog.text
    clinical.drop(columns="cancer_type").to_csv(path, sep="\t", index=False)
    with pytest.raises(TmeflowInputError, match="needs a cancer_type column") as error:
        read_normal_cohort(tmp_path / "gtex.tsv", path, tumour_types, "", reader)
    assert "normals_clinical.tsv" in str(error.value) and "\n" not in str(error.value)
    # without cancer types in the cohort, every normal is compared with all tumours
    assert read_normal_cohort(tmp_path / "gtex.tsv", path, None, "", reader)[1] == {"all": ["N1", "N2", "N3", "N4"]}


def test_cli_normal_expression_without_its_clinical_is_one_line(tmp_path, capsys, small_bulk_args):
    expression = tmp_path / "normals.tsv"
    expression.write_text("gene\tN1\nG1\t1\n")
    assert main([*small_bulk_args, "--normal_expression", str(expression)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "normal_expression needs normal_clinical" in err and "normals.tsv" in err


def test_separate_normal_cohort_read_with_the_cohorts_rules_and_compared(tmp_path, caplog):
    """read_cohort with normal_expression/normal_clinical: a GTEx-like table (other gene order, one extra gene,
    counts per type from a comma-separated mapping), the cohort's own in-table normals set aside (logged) and the
    separate ones compared; the planted gene differs (FDR < 0.05), another gene's fold change equals a hand
    computation; the batch caveat is logged.
    """
    from tmeflow.bulk.run import read_cohort
    from tmeflow.bulk.settings import BulkSettings
    from tmeflow.signatures import read_bundled_gmt

    rng = np.random.default_rng(3)
    genes = read_bundled_gmt("estimate")["ImmuneSignature"][:31]
    extra, genes = genes[30], genes[:30]
    tumours = pd.DataFrame(rng.lognormal(3, 0.3, (30, 40)), index=genes, columns=[f"T{i}" for i in range(40)])
    tumours.index.name = "gene"
    in_table = pd.DataFrame(rng.lognormal(3, 0.3, (30, 5)), index=genes, columns=[f"IN{i}" for i in range(5)])
    pd.concat([tumours, in_table], axis=1).to_csv(tmp_path / "expr.tsv", sep="\t")
    pd.DataFrame(
        {
            "sample": [*tumours.columns, *in_table.columns],
            "cancer_type": ["A"] * 20 + ["B"] * 20 + ["A"] * 5,
            "sample_type": ["tumour"] * 40 + ["normal"] * 5,
        }
    ).to_csv(tmp_path / "clin.tsv", sep="\t", index=False)
    normals = pd.DataFrame(
        rng.lognormal(3, 0.3, (31, 12)), index=genes[::-1] + [extra], columns=[f"GTEX{i}" for i in range(12)]
    )
    normals.loc[genes[0]] *= 4.0  # planted: lower in tumours
    normals.index.name = "gene"
    normals.to_csv(tmp_path / "gtex.tsv", sep="\t")
    pd.DataFrame({"SAMPID": normals.columns, "cancer_type": ["A,B"] * 6 + ["B"] * 4 + ["LUAD"] * 2}).to_csv(
        tmp_path / "gtex_samples.tsv", sep="\t", index=False
    )
    settings = BulkSettings.defaults().replace(
        bulk_values="tpm",
        normal_expression=str(tmp_path / "gtex.tsv"),
        normal_clinical=str(tmp_path / "gtex_samples.tsv"),
    )
    with caplog.at_level(logging.INFO, logger="tmeflow"):
        cohort = read_cohort(tmp_path / "expr.tsv", tmp_path / "clin.tsv", settings)
    assert list(cohort.log_expr.columns) == list(tumours.columns) and cohort.normals_separate
    assert {t: len(s) for t, s in cohort.normals.items()} == {"A": 6, "B": 10}
    assert "the 5 normals of the expression table are not compared" in caplog.text and BATCH_WARNING in caplog.text
    values = pd.concat([cohort.log_expr, cohort.normal_expr.loc[cohort.log_expr.index]], axis=1).loc[genes[:2]].T
    table = tumour_normal_table(values, {genes[0]: "gene", genes[1]: "gene"}, cohort.types, cohort.normals).set_index(
        ["cancer_type", "feature"]
    )
    planted, null = table.xs(genes[0], level="feature"), table.xs(genes[1], level="feature")
    assert (planted["fdr"] < 0.05).all() and (planted["log2fc"] < -1).all()
    # the other gene's log2 FC is the hand computation on the raw tables (genes matched by name, normals by mapping)
    hand = {
        t: np.log2(tumours.loc[genes[1], cols] + 1).mean() - np.log2(normals.loc[genes[1], gtex] + 1).mean()
        for t, cols, gtex in (
            ("A", tumours.columns[:20], normals.columns[:6]),
            ("B", tumours.columns[20:], normals.columns[:10]),
        )
    }
    assert np.allclose(null["log2fc"], pd.Series(hand)[null.index])
