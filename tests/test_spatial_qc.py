"""tmeflow spatial_qc: spot QC, clustering and spatially variable genes on a simulated section,
and one-line exit-2 errors for broken Space Ranger folders.

``spatial_qc_output`` (cached for the whole session) is also used by the deconvolution and spatial
analysis tests, so each simulated section is processed once.
"""

from __future__ import annotations

import functools
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tiny

from tmeflow.cli import main

EPITHELIAL_MARKERS = {"EPCAM", "KRT8", "KRT18", "KRT19", "CDH1", "CLDN4", "CLDN7", "KRT7", "ELF3", "SPINT2"}
SECTION_META = ["--patient", "P1", "--condition", "primary", "--species", "human"]


def section_dir(cohort: Path) -> Path:
    return next((cohort / "spatial").iterdir())


def work_dir(cohort: Path, name: str) -> Path:
    """A folder beside the (pytest temporary) simulated cohort, shared by the spatial tests."""
    folder = cohort.parent / f"{cohort.name}_{name}"
    folder.mkdir(exist_ok=True)
    return folder


@functools.cache
def spatial_qc_output(cohort: Path) -> Path:
    """Run ``tmeflow spatial_qc`` once per cohort; the path of ``<section>.spatial.h5ad``."""
    section = section_dir(cohort)
    outdir = work_dir(cohort, "spatial_qc")
    code = main(
        [
            "spatial_qc",
            "--input",
            str(section / "outs"),
            "--sample",
            section.name,
            *SECTION_META,
            "--outdir",
            str(outdir),
            "--spatial_n_svg",
            "50",
        ]
    )
    assert code == 0
    return outdir / f"{section.name}.spatial.h5ad"


@pytest.fixture(scope="module")
def qc_h5ad(simulated_cohort) -> Path:
    return spatial_qc_output(simulated_cohort)


@pytest.mark.slow
def test_spatial_qc_outputs(qc_h5ad, simulated_cohort):
    import anndata as ad

    adata = ad.read_h5ad(qc_h5ad)
    sample = qc_h5ad.name.split(".")[0]
    truth = pd.read_csv(section_dir(simulated_cohort) / "truth_spots.tsv", sep="\t", index_col=0)
    assert adata.n_obs == len(truth)  # simulated spots all pass the default filters
    assert (adata.obs["in_tissue"] == 1).all()
    counts = adata.layers["counts"]
    assert np.allclose(counts.data, np.round(counts.data))
    assert not np.allclose(adata.X.data, np.round(adata.X.data))  # X is log-normalised
    assert adata.obs["leiden"].nunique() >= 2
    assert adata.obsm["spatial"].shape == (adata.n_obs, 2)
    assert sample in adata.uns["spatial"] and adata.uns["spatial"][sample]["images"]
    assert adata.obs["sample"].iloc[0] == sample
    svg = pd.read_csv(qc_h5ad.parent / f"{sample}.spatially_variable_genes.tsv", sep="\t")
    assert len(svg) == 50 and svg["I"].is_monotonic_decreasing
    # the tumour blob makes the epithelial (malignant) markers the most spatially structured genes
    assert len(EPITHELIAL_MARKERS & set(svg["gene"].head(20))) >= 3
    for name in ("spatial_qc.png", "spatial_svg.png", "spatial_qc_stats_mqc.tsv", "spatial_spots.tsv.gz"):
        assert (qc_h5ad.parent / f"{sample}.{name}").stat().st_size > 0


def _broken_copy(simulated_cohort, tmp_path) -> Path:
    outs = tmp_path / "outs"
    shutil.copytree(section_dir(simulated_cohort) / "outs", outs)
    return outs


def _run_expect_error(outs: Path, tmp_path: Path, capsys, *extra: str) -> str:
    code = main(
        ["spatial_qc", "--input", str(outs), "--sample", "bad", *SECTION_META, "--outdir", str(tmp_path / "o"), *extra]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tmeflow spatial_qc: error:")]
    assert code == 2
    assert len(errors) == 1 and "Traceback" not in err  # one line, no traceback (log lines aside)
    assert not (tmp_path / "o" / "bad.spatial.h5ad").exists()
    return errors[0]


@pytest.mark.slow
def test_barcodes_not_in_positions_exit_2(simulated_cohort, tmp_path, capsys):
    outs = _broken_copy(simulated_cohort, tmp_path)
    positions = outs / "spatial" / "tissue_positions.csv"
    table = pd.read_csv(positions)
    table["barcode"] = "X" + table["barcode"].astype(str)
    table.to_csv(positions, index=False)
    assert "missing from the positions file" in _run_expect_error(outs, tmp_path, capsys)


@pytest.mark.slow
def test_no_spots_in_tissue_exit_2(simulated_cohort, tmp_path, capsys):
    outs = _broken_copy(simulated_cohort, tmp_path)
    positions = outs / "spatial" / "tissue_positions.csv"
    table = pd.read_csv(positions)
    table["in_tissue"] = 0
    table.to_csv(positions, index=False)
    assert "in tissue" in _run_expect_error(outs, tmp_path, capsys)


@pytest.mark.slow
def test_too_few_spots_after_filters_exit_2(simulated_cohort, tmp_path, capsys):
    message = _run_expect_error(
        section_dir(simulated_cohort) / "outs", tmp_path, capsys, "--spatial_min_counts", "10000000"
    )
    assert "spatial_min_counts" in message


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_spot_filter_reasons_of_six_spots_by_hand():
    from tmeflow import spatial_qc

    obs = tiny.frame(
        {
            "in_tissue": [1, 0, 1, 1, 1, 0],
            "total_counts": [800, 800, 50, 800, 800, 10],
            "n_genes_by_counts": [400, 400, 400, 20, 400, 5],
            "pct_counts_mito": [5.0, 5.0, 5.0, 5.0, 40.0, 90.0],
        },
        prefix="s",
    )
    thresholds = {"min_counts": 100, "min_genes": 50, "max_pct_mito": 30.0}
    # s0 passes; s1 outside the tissue; s2 50 < 100 counts; s3 20 < 50 genes; s4 40 > 30 % mito;
    # s5 fails everything: not_in_tissue, the first listed, wins
    assert spatial_qc.spot_filter_reasons(obs, **thresholds).tolist() == [
        "",
        "not_in_tissue",
        "spatial_min_counts",
        "spatial_min_genes",
        "spatial_max_pct_mito",
        "not_in_tissue",
    ]


def test_spacing_and_first_ring_smoothing_on_a_chain_of_five_spots():
    from tmeflow import spatial_qc

    # spots at x = 0, 100, ..., 400: every nearest neighbour is 100 away
    assert spatial_qc.spot_spacing(tiny.line(5, 100.0)) == 100.0
    # mean of each spot and its chain neighbours, (sum of neighbours + own) / (degree + 1), of [0, 0, 3, 0, 0]:
    # s0 (0 + 0) / 2 = 0; s1 (0 + 3 + 0) / 3 = 1; s2 (0 + 0 + 3) / 3 = 1; s3 (3 + 0 + 0) / 3 = 1; s4 (0 + 0) / 2 = 0
    smoothed = spatial_qc.smooth(np.array([0.0, 0.0, 3.0, 0.0, 0.0]), tiny.chain_graph(5))
    np.testing.assert_allclose(smoothed, [0.0, 1.0, 1.0, 1.0, 0.0])
