"""MSI, copy-number and methylation tables (``tmeflow.bulk.molecular``): readers with one-line errors and
TCGA barcode matching shared with the MAF, and the simulator's planted score-MSI and CNV-expression
correlations found with calibrated nulls over 20 seeds.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tmeflow.bulk.molecular import gene_correlations, read_gene_table, read_msi
from tmeflow.bulk.pancancer import value_correlations
from tmeflow.cli import main
from tmeflow.errors import TmeflowInputError

SAMPLES = pd.Index([f"TCGA-AB-{i:04d}-01" for i in range(1, 5)])


def _one_line_error(call, match: str, *names: str) -> str:
    with pytest.raises(TmeflowInputError, match=match) as error:
        call()
    text = str(error.value)
    assert "\n" not in text and all(name in text for name in names), text
    return text


def test_msi_table_matched_by_tcga_patient_barcodes(tmp_path, caplog):
    path = tmp_path / "msi.tsv"
    pd.DataFrame({"barcode": [s[:12] for s in SAMPLES[:3]], "MSI_Score": [0.3, 0.5, 1.2]}).to_csv(
        path, sep="\t", index=False
    )
    with caplog.at_level(logging.INFO, logger="tmeflow"):
        msi = read_msi(path, SAMPLES)
    assert msi.name == "MSI" and list(msi.index) == list(SAMPLES)
    assert msi.iloc[:3].tolist() == [0.3, 0.5, 1.2] and np.isnan(msi.iloc[3])
    assert "3 of 4 cohort samples matched by truncation to the TCGA patient (12 characters)" in caplog.text
    pd.DataFrame({"barcode": SAMPLES, "a": 1.0, "b": 2.0}).to_csv(path, sep="\t", index=False)
    _one_line_error(lambda: read_msi(path, SAMPLES), "MSI table needs a column msi_score", "msi.tsv", "msi_score")
    pd.DataFrame({"barcode": SAMPLES, "msi": ["0.1", "high", "0.2", "0.3"]}).to_csv(path, sep="\t", index=False)
    _one_line_error(lambda: read_msi(path, SAMPLES), "non-numeric values \\(e.g. 'high'\\)", "column msi")
    pd.DataFrame({"barcode": ["GSM1", "GSM2"], "msi": [0.1, 0.2]}).to_csv(path, sep="\t", index=False)
    _one_line_error(lambda: read_msi(path, SAMPLES), "none of the 2 MSI samples", "msi.tsv")
    # two aliquots on one cohort sample: the MAF's rule, naming the table
    pd.DataFrame({"barcode": [SAMPLES[0] + "A", SAMPLES[0] + "B"], "msi": [0.1, 0.2]}).to_csv(
        path, sep="\t", index=False
    )
    _one_line_error(lambda: read_msi(path, SAMPLES), "MSI barcodes .* all match cohort sample TCGA-AB-0001-01")


def test_gistic_and_beta_tables_are_read_and_validated(tmp_path):
    path = tmp_path / "all_thresholded.by_genes.txt"
    table = pd.DataFrame(
        {
            "Gene Symbol": ["G1", "G2"],
            "Locus ID": [11, 12],
            "Cytoband": ["1p36", "2q11"],
            **{s + "A-11D-A123-01": [2, -1] for s in SAMPLES},
        }
    )
    table.to_csv(path, sep="\t", index=False)
    cnv = read_gene_table(path, SAMPLES, "CNV")
    assert list(cnv.index) == list(SAMPLES) and list(cnv.columns) == ["G1", "G2"]
    assert (cnv["G1"] == 2).all() and (cnv["G2"] == -1).all()
    table[SAMPLES[1] + "A-11D-A123-01"] = [0.37, 0]
    table.to_csv(path, sep="\t", index=False)
    _one_line_error(
        lambda: read_gene_table(path, SAMPLES, "CNV"),
        "GISTIC thresholded levels .*found 0.37",
        "all_thresholded.by_genes.txt",
        f"column {SAMPLES[1]}A-11D-A123-01",
    )
    # samples x genes is read too; M-values are refused with the conversion
    beta = pd.DataFrame({"sample": SAMPLES, "G1": [0.1, 0.2, 0.9, 3.5]})
    beta.to_csv(tmp_path / "beta.csv", index=False)
    _one_line_error(
        lambda: read_gene_table(tmp_path / "beta.csv", SAMPLES, "methylation"),
        "beta values in \\[0, 1\\] \\(found 3.5",
        "beta.csv",
    )
    beta.assign(G1=[0.1, 0.2, 0.9, 0.5]).to_csv(tmp_path / "beta.csv", index=False)
    assert read_gene_table(tmp_path / "beta.csv", SAMPLES, "methylation")["G1"].tolist() == [0.1, 0.2, 0.9, 0.5]


@pytest.mark.slow
def test_planted_msi_and_cnv_correlations_found_and_nulls_calibrated_over_20_seeds():
    """20 seeds of the simulator's pan-cancer tumours (5 types x 50, the score-MSI effect planted in TYPE1): the
    pipeline's ssGSEA score correlates with MSI at pan-cancer FDR < 0.05 in TYPE1 every time and the 4 null types
    reject at <= 5% (FDR); the CNV-driven gene is found in every type and the 19 null genes reject at <= 5%. Raw
    p < 0.05 of the 80 null MSI tests: within the binomial 99% bound of a uniform p (<= 9/80); of the 1,900 null
    CNV tests: <= 6% (ties, see below).
    """
    from tmeflow.signatures import ssgsea
    from tmeflow.simulate import (
        SimConfig,
        _bulk_expression,
        build_genes,
        build_model,
        cancer_type_labels,
        cnv_gene,
        planted_types,
        signature_score,
        simulate_cnv,
        simulate_msi,
    )

    config = SimConfig(outdir=Path("unused"), n_genes=1500, n_bulk=250, bulk_cancer_types=5, bulk_planted_types=1)
    rng = np.random.default_rng(0)
    model = build_model(config, build_genes(config, rng), rng)
    genes = model.programmes["fate_A"]
    msi_tables, cnv_tables = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        expression, _ = _bulk_expression(model, config.n_bulk, rng)
        types = pd.Series(cancer_type_labels(config.n_bulk, config.bulk_cancer_types), index=expression.columns)
        z = signature_score(expression, genes)
        msi = simulate_msi(z, types.to_numpy(), config, rng).set_index("sample")["msi_score"]
        cnv, expression = simulate_cnv(expression, model, rng)
        log_expr = np.log2(expression + 1.0)
        score = ssgsea(log_expr, {"SIG": genes}).T
        msi_tables.append(value_correlations(score, {"SIG": "user_signature"}, msi, types, 20, "MSI"))
        cnv_table = cnv.drop(columns=["Locus ID", "Cytoband"]).T
        cnv_tables.append(gene_correlations(cnv_table, log_expr, genes, types, "CNV"))
    msi_table, cnv_table = pd.concat(msi_tables, ignore_index=True), pd.concat(cnv_tables, ignore_index=True)
    planted = msi_table["cancer_type"].isin(planted_types(config))
    assert planted.sum() == 20 and (msi_table.loc[planted, "pancancer_fdr"] < 0.05).all()
    null_msi = msi_table[~planted]
    assert (
        len(null_msi) == 80 and (null_msi["pancancer_fdr"] < 0.05).mean() <= 0.05 and (null_msi["p"] < 0.05).sum() <= 9
    )
    hit = cnv_table["feature"] == cnv_gene(model)
    assert (
        hit.sum() == 5 * 20
        and (cnv_table.loc[hit, "pancancer_fdr"] < 0.05).all()
        and (cnv_table.loc[hit, "rho"] > 0.3).all()
    )
    null = cnv_table[~hit]
    assert len(null) == 19 * 5 * 20
    assert (null["pancancer_fdr"] < 0.05).mean() <= 0.05
    # raw p: Spearman's t approximation (as R's cor.test) is slightly liberal with 5 tied CNV levels (5.5% at 0.05
    # over 20,000 null draws of n = 50); reported, the BH FDR above is what calls a gene
    assert (null["p"] < 0.05).mean() <= 0.06


def test_cli_bad_copy_number_table_is_one_line_before_writing(tmp_path, capsys, small_bulk_args):
    path = tmp_path / "segments.tsv"
    pd.DataFrame({"gene": ["G1"], **{f"S{i}": [0.42] for i in range(12)}}).to_csv(path, sep="\t", index=False)
    assert main([*small_bulk_args, "--copy_number", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "GISTIC thresholded levels" in err and "segments.tsv" in err and "column S0" in err
    assert not (tmp_path / "out").exists()
