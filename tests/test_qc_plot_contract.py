"""Issue 21 plotting contract for qc, annotate, cnv, composition, de, neighbourhood DA and pathways.

Each plot returns its figure and neither saves nor closes it; the stage's writing code saves it. The signature
rule for every plot of the package lives in tests/test_plot_contract.py. Hand-built 6-12 cell fixtures with
hand-computed expectations; no simulator, no pipeline.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp


@pytest.fixture
def qc_cells():
    """Six cells: four kept, one failed on genes, one on mitochondrial fraction."""
    return pd.DataFrame(
        {
            "n_genes_by_counts": [999, 1999, 2999, 3999, 99, 1499],
            "total_counts": [2000, 4000, 6000, 8000, 150, 3000],
            "pct_counts_mito": [1.0, 2.0, 3.0, 4.0, 5.0, 40.0],
            "pct_counts_hb": [0.0, 0.0, 0.1, 0.0, 0.0, 0.0],
            "qc_fail_reason": ["", "", "", "", "min_genes", "max_pct_mito"],
        },
        index=[f"c{i}" for i in range(6)],
    )


def _hlines(ax) -> list[float]:
    return [line.get_ydata()[0] for line in ax.get_lines() if line.get_linestyle() == "--"]


def test_qc_violins_draw_the_given_thresholds_and_save_nothing(qc_cells, tmp_path, monkeypatch):
    from tmeflow.plotting import pyplot
    from tmeflow.qc import plot_qc_violins

    monkeypatch.chdir(tmp_path)
    plt = pyplot()
    fig = plot_qc_violins(qc_cells, "S1", thresholds={"n_genes_by_counts": 199, "pct_counts_mito": 20.0})
    assert plt.fignum_exists(fig.number)  # not closed
    assert list(tmp_path.iterdir()) == []  # not saved
    genes, counts, mito, hb = fig.axes
    assert _hlines(genes) == [pytest.approx(np.log10(200))]  # log10(1 + 199)
    assert _hlines(counts) == [] and _hlines(hb) == []
    assert _hlines(mito) == [pytest.approx(20.0)]
    assert fig._suptitle.get_text() == "S1: 4 of 6 cells kept"
    plt.close(fig)
    fig = plot_qc_violins(qc_cells, "S1")
    assert all(_hlines(ax) == [] for ax in fig.axes)
    plt.close(fig)


def test_qc_scatter_counts_cells_per_reason(qc_cells):
    from tmeflow.plotting import pyplot
    from tmeflow.qc import plot_qc_scatter

    fig = plot_qc_scatter(qc_cells, "S1")
    labels = sorted(text.get_text() for text in fig.axes[0].get_legend().get_texts())
    assert labels == ["kept (4)", "max_pct_mito (1)", "min_genes (1)"]
    pyplot().close(fig)


def test_qc_write_outputs_saves_both_figures(qc_cells, tmp_path):
    from tmeflow.qc import QcSettings, write_outputs

    cells = qc_cells.assign(barcode=qc_cells.index, pct_counts_ribo=0.0, doublet_score=0.1)
    stats = {"Sample": "S1", "cells_in": 6, "cells_kept": 4, "pct_kept": 66.7, "median_genes": 2499.0}
    stats |= {"median_umis": 5000.0, "median_pct_mito": 2.5, "doublet_rate": 0.0}
    write_outputs(None, cells, stats, "S1", tmp_path, QcSettings.defaults(), {})
    for name in ("S1.qc_violin.png", "S1.qc_scatter.png"):
        assert (tmp_path / name).read_bytes()[:4] == b"\x89PNG"


def _cnv_adata(n_per_patient: int = 6):
    import anndata as ad

    rng = np.random.default_rng(0)
    n = 2 * n_per_patient
    obs = pd.DataFrame(
        {
            "patient": ["P1"] * n_per_patient + ["P2"] * n_per_patient,
            "malignant": [False, False, True, True, True, False] * 2,
            "cnv_reference": [True, True, False, False, False, False] * 2,
            "cnv_cluster": pd.Categorical(["P1:0", "P1:0", "P1:1", "P1:1", "P1:1", "P1:0"] * 2),
            "cell_type": pd.Categorical(["T", "T", "Malignant", "Malignant", "Malignant", "B"] * 2),
            "cnv_score": rng.uniform(0, 1, n),
        },
        index=[f"c{i}" for i in range(n)],
    )
    adata = ad.AnnData(X=sp.csr_matrix((n, 3)), obs=obs)
    adata.obsm["X_cnv"] = sp.csr_matrix(rng.normal(0, 0.1, (n, 10)))
    adata.uns["cnv"] = {"chr_pos": {"chr1": 0, "chr2": 4, "chr3": 7}}
    return adata


def test_cnv_heatmap_orders_cells_and_subsamples():
    from tmeflow.cnv.plots import plot_heatmap
    from tmeflow.plotting import pyplot

    fig = plot_heatmap(_cnv_adata(), "P1", seed=0)
    strip, matrix = fig.axes[0], fig.axes[1]
    status = strip.get_images()[0].get_array().ravel().tolist()
    assert status == [0, 0, 1, 2, 2, 2]  # reference, other, malignant
    assert matrix.get_images()[0].get_array().shape == (6, 10)
    assert [t.get_text() for t in matrix.get_xticklabels()] == ["1", "2", "3"]
    pyplot().close(fig)
    fig = plot_heatmap(_cnv_adata(), "P1", seed=0, max_cells=4)
    assert fig.axes[1].get_images()[0].get_array().shape == (4, 10)
    pyplot().close(fig)


def test_cnv_violin_marks_malignant_clusters():
    from tmeflow.cnv.plots import plot_violin
    from tmeflow.plotting import pyplot

    fig = plot_violin(_cnv_adata(), seed=0)
    by_type, by_cluster = fig.axes
    assert [t.get_text() for t in by_type.get_xticklabels()] == ["B", "Malignant", "T"]
    colours = {t.get_text(): t.get_color() for t in by_cluster.get_xticklabels()}
    assert colours["P1:1"] == "#cc3311" and colours["P1:0"] != "#cc3311"
    pyplot().close(fig)


def test_pathways_heatmap_z_scores_rows():
    from tmeflow.pathways import plot_heatmap
    from tmeflow.plotting import pyplot

    frame = pd.DataFrame({"a": [1.0, 5.0], "b": [2.0, 5.0], "c": [3.0, 5.0]}, index=["sig1", "sig2"])
    fig = plot_heatmap(frame, "t")
    shown = np.asarray(fig.axes[0].get_images()[0].get_array())
    np.testing.assert_allclose(shown, [[-1.0, 0.0, 1.0], [0.0, 0.0, 0.0]])  # (x - mean) / sd (ddof 1); sd 0 -> 1
    pyplot().close(fig)
    fig = plot_heatmap(frame, "t", center=False)
    np.testing.assert_allclose(np.asarray(fig.axes[0].get_images()[0].get_array()), frame.to_numpy())
    pyplot().close(fig)
