"""Per-sample QC on a simulated sample with planted low-quality cells and doublets."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import tiny

from tmeflow.cli import main
from tmeflow.params import defaults
from tmeflow.qc import mad_outlier, run_qc
from tmeflow.samplesheet import read_samplesheet


@pytest.fixture(scope="module")
def planted_sample(tmp_path_factory):
    """One primary-tumour sample of 2,000 cells: 10% low-quality cells, 8% heterotypic doublets."""
    outdir = tmp_path_factory.mktemp("sim")
    code = main(
        [
            "simulate",
            "--outdir",
            str(outdir),
            "--n_cells",
            "2000",
            "--n_patients",
            "1",
            "--conditions",
            "primary",
            "--n_sections",
            "0",
            "--n_bulk",
            "0",
            "--low_quality_rate",
            "0.1",
            "--doublet_rate",
            "0.08",
            "--seed",
            "3",
        ]
    )
    assert code == 0
    (row,) = [row for row in read_samplesheet(outdir / "samplesheet.csv") if row.modality == "sc"]
    return row


def _qc(row, outdir, **overrides):
    params = {**defaults(), **overrides}
    return run_qc(row.data, row.meta(), outdir, params)


def _removal_rates(row, result):
    truth = ad.read_h5ad(row.data).obs["true_qc"].astype(str)
    cells = pd.read_csv(result.h5ad.parent / f"{row.sample}.qc_cells.tsv.gz", sep="\t", index_col=0)
    removed = pd.Series(cells["qc_fail_reason"].fillna("").to_numpy() != "", index=cells["barcode"].astype(str))
    removed = removed.reindex(truth.index)
    rates = {label: float(removed[truth == label].mean()) for label in ("good", "low_quality", "doublet")}
    rates["precision"] = float((truth[removed] != "good").mean())
    return rates


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["fixed", "mad"])
def test_planted_bad_cells_are_removed_and_good_cells_kept(planted_sample, tmp_path, mode):
    result = _qc(planted_sample, tmp_path, qc_mode=mode)
    rates = _removal_rates(planted_sample, result)
    print(f"qc_mode={mode}: removed {rates}")
    assert rates["low_quality"] >= 0.95
    assert rates["doublet"] >= 0.5
    assert rates["good"] <= 0.05
    assert rates["precision"] >= 0.85
    kept = ad.read_h5ad(result.h5ad)
    counts = kept.layers["counts"]
    assert np.allclose(counts.data, np.round(counts.data)) and counts.data.min() > 0
    np.testing.assert_allclose(np.expm1(kept.X[:5].toarray()).sum(axis=1), 1e4, rtol=1e-3)
    assert set(kept.obs["sample"]) == {planted_sample.sample}
    assert kept.obs_names[0].startswith(f"{planted_sample.sample}_")
    assert result.stats["cells_kept"] == kept.n_obs
    stats = pd.read_csv(tmp_path / f"{planted_sample.sample}.qc_stats_mqc.tsv", sep="\t", comment="#")
    assert stats.loc[0, "cells_in"] == 2000 and stats.loc[0, "cells_kept"] == kept.n_obs
    assert (tmp_path / f"{planted_sample.sample}.qc_violin.png").stat().st_size > 0


def test_mad_outliers_by_hand():
    values = np.array([1.0, 2, 3, 4, 100])  # median 3, MAD 1
    assert mad_outlier(values, 5).tolist() == [False, False, False, False, True]
    assert mad_outlier(np.array([-10.0, 2, 3, 4, 5]), 3, upper_only=True).tolist() == [False] * 5


def _qc_cli(row, outdir, *extra):
    return main(
        [
            "qc",
            "--input",
            str(row.data),
            "--sample",
            row.sample,
            "--patient",
            row.patient,
            "--condition",
            row.condition,
            "--species",
            row.species,
            "--outdir",
            str(outdir),
            *extra,
        ]
    )


@pytest.mark.slow
def test_too_few_cells_fails_with_one_line_and_writes_nothing(planted_sample, tmp_path, capsys):
    assert _qc_cli(planted_sample, tmp_path, "--min_cells_per_sample", "100000") == 2
    error = capsys.readouterr().err.strip().splitlines()[-1]
    assert error.startswith("tmeflow qc: error: only") and planted_sample.sample in error
    assert "min_cells_per_sample 100000" in error
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_dropped_sample_writes_stats_but_no_h5ad(planted_sample, tmp_path):
    assert _qc_cli(planted_sample, tmp_path, "--min_cells_per_sample", "100000", "--drop_failed_samples") == 0
    names = {path.name for path in tmp_path.iterdir()}
    assert f"{planted_sample.sample}.qc_stats_mqc.tsv" in names
    assert f"{planted_sample.sample}.qc.h5ad" not in names


@pytest.mark.slow
def test_wrong_species_is_caught(planted_sample, tmp_path, capsys):
    row = planted_sample
    code = main(
        [
            "qc",
            "--input",
            str(row.data),
            "--sample",
            row.sample,
            "--patient",
            row.patient,
            "--condition",
            row.condition,
            "--species",
            "mouse",
            "--outdir",
            str(tmp_path),
        ]
    )
    assert code == 2
    assert "species is mouse but the mitochondrial genes look human" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_scrublet_knn_is_exact_above_scanpys_brute_force_size():
    """3,000 cells (9,000 with Scrublet's simulated doublets: scanpy would use PyNNDescent's approximate
    kNN above 8,192): the scores are those of the exact kNN, and the planted doublets are called.
    """
    import scanpy as sc

    from tmeflow.qc import detect_doublets

    rng = np.random.default_rng(7)
    n_cells, n_genes, n_types = 3000, 400, 6
    programmes = rng.gamma(0.6, 1.0, size=(n_types, n_genes))
    types = rng.integers(0, n_types, n_cells)
    means = programmes[types] * rng.lognormal(np.log(4), 0.3, size=(n_cells, 1))
    planted = rng.choice(n_cells, 150, replace=False)  # heterotypic doublets: two cells' expression summed
    partners = (types[planted] + rng.integers(1, n_types, planted.size)) % n_types
    means[planted] += programmes[partners] * rng.lognormal(np.log(4), 0.3, size=(planted.size, 1))
    counts = rng.poisson(means).astype(np.float32)
    adata = ad.AnnData(X=__import__("scipy.sparse", fromlist=["csr_matrix"]).csr_matrix(counts))
    scores, called = detect_doublets(adata, expected_rate=0.06, seed=0, sample="S")
    exact = adata.copy()
    sc.pp.scrublet(
        exact, expected_doublet_rate=0.06, n_prin_comps=30, random_state=0, verbose=False, use_approx_neighbors=False
    )
    np.testing.assert_allclose(scores, exact.obs["doublet_score"].to_numpy(), rtol=0, atol=1e-12)
    assert called[planted].mean() > 0.6
    assert called[np.setdiff1d(np.arange(n_cells), planted)].mean() < 0.03


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_fixed_filter_reasons_of_six_cells_by_hand():
    """Fixed thresholds; a cell failing several filters gets the first listed one."""
    from tmeflow.qc import QcSettings, filter_reasons

    obs = tiny.frame(
        {
            "n_genes_by_counts": [300, 150, 300, 300, 300, 100],
            "total_counts": [1000, 1000, 400, 1000, 1000, 300],
            "pct_counts_mito": [5.0, 5.0, 5.0, 25.0, 5.0, 50.0],
            "pct_counts_hb": [0.0, 0.0, 0.0, 0.0, 10.0, 10.0],
        }
    )
    settings = QcSettings.defaults().replace(
        qc_mode="fixed", min_genes=200, min_counts=500, max_pct_mito=20.0, max_pct_hb=5.0
    )
    reasons = filter_reasons(obs, settings)
    # c0 passes all; c1 150 < 200 genes; c2 400 < 500 counts; c3 25 > 20 % mito; c4 10 > 5 % hb;
    # c5 fails all four (100 < 200, 300 < 500, 50 > 20, 10 > 5): min_genes, the first listed, wins
    assert reasons.tolist() == ["", "min_genes", "min_counts", "max_pct_mito", "max_pct_hb", "min_genes"]
    assert reasons.index.tolist() == obs.index.tolist()
