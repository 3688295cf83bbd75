"""Tumour vs normal per cancer type (``tmeflow.bulk.normals``): which samples are normals (sample_type
column, TCGA barcodes), a separate normal cohort matched by cancer type, and the planted tumour-normal
genes of ``tmeflow simulate --bulk_normals`` found with calibrated null genes."""

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
    clinical = pd.DataFrame({"Sample_Type": ["Primary Tumor", "Solid Tissue Normal", "tumour", "N", "11", "01", None]},
                            index=[f"S{i}" for i in range(7)])
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
    assert in_table_normals(pd.Series(["tumour", "normal", "normal", "tumour"], index=barcodes), types) == \
        {"A": [barcodes[1]], "B": [barcodes[2]]}


def test_planted_tumour_normal_genes_found_and_null_genes_calibrated_over_20_seeds():
    """20 seeds of the simulator's tumours (60) and normals (15, same assay): the 6 planted genes (log2 FC +-1)
    are found at FDR < 0.05 in every seed, and the 14 null signature genes reject at <= 5% (p and FDR)."""
    from tmeflow.simulate import SimConfig, _bulk_expression, build_genes, build_model, normal_de_genes, simulate_normals

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
    unknown types are ignored, the batch confound is logged; without the column it is a one-line error."""
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
        log_expr, by_type = read_normal_cohort(tmp_path / "gtex.tsv", path, tumour_types, {"cancer_type_column": ""}, reader)
    assert by_type == {"COAD": ["N1", "N2"], "READ": ["N1"], "LUAD": ["N3"]}
    assert BATCH_WARNING in caplog.text and "cancer type(s) BRCA not in the tumour cohort, ignored" in caplog.text
    clinical.drop(columns="cancer_type").to_csv(path, sep="\t", index=False)
    with pytest.raises(TmeflowInputError, match="needs a cancer_type column") as error:
        read_normal_cohort(tmp_path / "gtex.tsv", path, tumour_types, {"cancer_type_column": ""}, reader)
    assert "normals_clinical.tsv" in str(error.value) and "\n" not in str(error.value)
    # without cancer types in the cohort, every normal is compared with all tumours
    assert read_normal_cohort(tmp_path / "gtex.tsv", path, None, {"cancer_type_column": ""}, reader)[1] == \
        {"all": ["N1", "N2", "N3", "N4"]}


def test_cli_normal_expression_without_its_clinical_is_one_line(tmp_path, capsys, small_bulk_args):
    expression = tmp_path / "normals.tsv"
    expression.write_text("gene\tN1\nG1\t1\n")
    assert main([*small_bulk_args, "--normal_expression", str(expression)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "normal_expression needs normal_clinical" in err and "normals.tsv" in err
