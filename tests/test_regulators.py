"""Immune regulators (``tmeflow.bulk.regulators``): the bundled immunomodulator list and per-type correlations."""

from __future__ import annotations

import logging

import numpy as np
import pandas as pd

from tmeflow.bulk.regulators import immunomodulator_genes, plot_regulator_heatmap, regulator_correlations
from tmeflow.signatures import resource_path


def test_bundled_immunomodulators():
    genes = immunomodulator_genes()
    assert len(genes) == 78 and len(set(genes)) == 78
    assert {"CD274", "PDCD1", "CTLA4", "HLA-A", "CXCL9", "VSIR"} <= set(genes) and "C10orf54" not in genes
    assert "shiny-iatlas" in (resource_path("immune_regulators") / "SOURCE.md").read_text()


def test_planted_score_regulator_correlation_per_type(caplog):
    """SIG tracks CD274 expression in type A only (rho ~0.9); type B is null; missing genes are logged."""
    rng = np.random.default_rng(0)
    samples = [f"S{i}" for i in range(120)]
    types = pd.Series(["A"] * 60 + ["B"] * 60, index=samples)
    sig = pd.Series(rng.normal(size=120), index=samples)
    genes = ["CD274", "PDCD1", "HLA-A", "CXCL9"]
    log_expr = pd.DataFrame(rng.normal(5, 1, (4, 120)), index=genes, columns=samples)
    log_expr.loc["CD274"] += np.where(types == "A", 2 * sig, 0)
    features = pd.DataFrame({"SIG": sig}, index=samples)
    with caplog.at_level(logging.INFO, logger="tmeflow"):
        table = regulator_correlations(features, ["SIG"], log_expr, types, 20)
    assert "4 of 78 immunomodulator genes in the expression matrix" in caplog.text
    cell = table.set_index(["cancer_type", "target"])
    assert cell.loc[("A", "CD274"), "rho"] > 0.8 and cell.loc[("A", "CD274"), "pancancer_fdr"] < 0.05
    assert cell.loc[("B", "CD274"), "pancancer_fdr"] > 0.05
    assert (cell.drop(index=[("A", "CD274")])["pancancer_fdr"] > 0.05).all()
    # without a cancer-type column the whole cohort is one group
    assert set(regulator_correlations(features, ["SIG"], log_expr, None, 20)["cancer_type"]) == {"all"}
    assert plot_regulator_heatmap(table, ["SIG"]) is not None
