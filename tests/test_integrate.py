"""tmeflow integrate: Harmony fixes a planted batch effect without losing cell types; sparse PCA is
exact; inputs that cannot be integrated fail with one line.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from _cohort import integrated, qc_params

from tmeflow import integrate, io
from tmeflow.cli import main


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    path = integrated(tmp_path_factory)
    metrics = pd.read_csv(path.parent / "integration_metrics_mqc.tsv", sep="\t", comment="#")
    return path, metrics


@pytest.mark.slow
def test_harmony_improves_mixing_and_keeps_cell_types(cohort):
    path, metrics = cohort
    print(metrics.drop(columns=["Embedding"]).to_string())
    for key in ("batch", "sample"):
        rows = metrics[metrics["batch_key"] == key].set_index("embedding")
        before, after = rows.loc["uncorrected"], rows.loc["harmony"]
        assert after["ilisi"] > before["ilisi"] + 0.1, key
        assert after["kbet_acceptance"] > before["kbet_acceptance"], key
        if key == "batch":  # the corrected key
            assert after["batch_asw"] > before["batch_asw"] + 0.1, key
        else:  # samples of one batch already mix; correcting batches must not separate them
            assert after["batch_asw"] > before["batch_asw"] - 0.02, key
        assert after["graph_connectivity"] >= before["graph_connectivity"], key
        assert after["label_asw"] >= 0.95 * before["label_asw"], key
        assert after["clisi"] >= 0.95 * before["clisi"], key
    by_batch = metrics[metrics["batch_key"] == "batch"].set_index("embedding")
    assert by_batch.loc["uncorrected", "ilisi"] < 0.1  # the planted batch effect is real
    assert by_batch.loc["harmony", "ilisi"] > 0.4


@pytest.mark.slow
def test_integrated_object_layout(cohort):
    path, _ = cohort
    adata = ad.read_h5ad(path)
    qc_total = sum(
        ad.read_h5ad(p).layers["counts"].sum() for p in sorted((path.parent.parent / "qc").glob("*.qc.h5ad"))
    )
    assert adata.layers["counts"].sum() == pytest.approx(qc_total, rel=1e-6)  # raw counts kept
    expm1 = np.expm1(adata.X[:5].toarray()).sum(axis=1)
    assert np.allclose(expm1, 1e4, rtol=1e-3)  # log1p(CP10k)
    assert adata.var["highly_variable"].sum() == 3000
    assert adata.obsm["X_pca"].shape[1] == 50 and adata.obsm["X_pca_harmony"].shape[1] == 30
    assert {"X_umap", "X_umap_uncorrected"} <= set(adata.obsm)
    assert adata.obs["leiden"].nunique() >= 8
    assert adata.uns["integration"]["use_rep"] == "X_pca_harmony"
    for name in (
        "integration_umap_uncorrected_mqc.png",
        "integration_umap_corrected_mqc.png",
        "integration_clusters.tsv",
    ):
        assert (path.parent / name).stat().st_size > 0
    # every true type sits mostly in clusters of its own (clusters are pure)
    purity = pd.crosstab(adata.obs["leiden"], adata.obs["true_cell_type"]).pipe(
        lambda t: t.max(axis=1).sum() / t.to_numpy().sum()
    )
    assert purity > 0.95


def test_sparse_pca_equals_dense_pca_of_the_regressed_scaled_matrix():
    rng = np.random.default_rng(0)
    rates = np.exp(rng.normal(size=(300, 5)) @ rng.normal(size=(5, 80)) * 0.6 - 1)  # rank-5 structure + Poisson noise
    X = sp.csr_matrix(np.log1p(rng.poisson(rates)).astype(np.float32))
    mito = rng.uniform(0, 20, 300)
    result = integrate.sparse_pca(X, 10, covariates=mito, seed=0)
    dense = X.toarray()
    design = np.column_stack([np.ones(300), mito])
    resid = dense - design @ np.linalg.lstsq(design, dense, rcond=None)[0]
    resid /= resid.std(axis=0, ddof=1)
    u, s, vt = np.linalg.svd(resid, full_matrices=False)
    for i in range(5):  # same leading components up to sign
        corr = np.corrcoef(result["scores"][:, i], u[:, i] * s[i])[0, 1]
        assert abs(corr) > 0.999
    assert np.allclose(result["variance"][:5], (s[:5] ** 2) / 299, rtol=1e-4)
    assert np.allclose(result["variance"], (s[:10] ** 2) / 299, rtol=2e-2)  # noise components: randomised SVD
    assert np.allclose(result["variance_ratio"].sum(), (s[:10] ** 2).sum() / (s**2).sum(), rtol=2e-2)


def _tiny(path, sample, genes, batch="b1", species="human", n=40, seed=0):
    rng = np.random.default_rng(seed)
    counts = sp.csr_matrix(rng.poisson(1.0, size=(n, len(genes))).astype(np.float32))
    obs = pd.DataFrame(
        {"sample": sample, "patient": "p", "condition": "c", "tissue": "t", "species": species, "batch": batch},
        index=[f"{sample}_{i}" for i in range(n)],
    )
    adata = ad.AnnData(X=counts.copy(), obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = counts
    adata.write_h5ad(path)
    return path


def _one_line_error(capsys, argv):
    code = main(argv)
    logging.getLogger("tmeflow").handlers.clear()  # main() bound a handler to this test's captured stderr
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert len(err.splitlines()) == 1 and "Traceback" not in err
    return err


def test_disjoint_gene_sets_fail_naming_the_sample(tmp_path, capsys):
    genes = [f"G{i}" for i in range(600)]
    a = _tiny(tmp_path / "A.qc.h5ad", "A", genes)
    b = _tiny(tmp_path / "B.qc.h5ad", "B", genes)
    c = _tiny(tmp_path / "C.qc.h5ad", "C", [f"ENSG{i}" for i in range(600)])
    err = _one_line_error(capsys, ["integrate", "--input", str(a), str(b), str(c), "--outdir", str(tmp_path / "out")])
    assert "C (0 of 600 genes shared)" in err and "min_shared_genes" in err
    assert not (tmp_path / "out" / "integrated.h5ad").exists()


def test_bad_inputs_exit_2(tmp_path, capsys):
    genes = [f"G{i}" for i in range(600)]
    a = _tiny(tmp_path / "A.qc.h5ad", "A", genes)
    m = _tiny(tmp_path / "M.qc.h5ad", "M", genes, species="mouse")
    assert "mix species" in _one_line_error(
        capsys, ["integrate", "--input", str(a), str(m), "--outdir", str(tmp_path / "o")]
    )
    err = _one_line_error(
        capsys, ["integrate", "--input", str(a), "--batch_key", "lane", "--outdir", str(tmp_path / "o")]
    )
    assert "batch_key 'lane'" in err
    err = _one_line_error(
        capsys, ["integrate", "--input", str(tmp_path / "missing.h5ad"), "--outdir", str(tmp_path / "o")]
    )
    assert "not found" in err


@pytest.mark.slow
def test_single_sample_skips_correction_and_scvi_runs_on_cpu(tmp_path, tmp_path_factory, caplog):
    qc = sorted((integrated(tmp_path_factory).parent.parent / "qc").glob("*.qc.h5ad"))
    params = qc_params()
    params.update(n_top_genes=500, pca_comps=20, n_pcs=10)
    out = integrate.run_integrate(qc[:1], tmp_path / "single", params)
    single = ad.read_h5ad(out)
    assert single.uns["integration"]["method"] == "none" and "X_pca_harmony" not in single.obsm
    assert "single batch" in caplog.text
    # scVI, 1 epoch on the CPU, on two samples of different batches
    batches = {str(ad.read_h5ad(p, backed="r").obs["batch"].iloc[0]): p for p in qc}
    assert len(batches) == 2
    params.update(batch_correction="scvi", scvi_max_epochs=1, scvi_n_latent=8)
    out = integrate.run_integrate(list(batches.values()), tmp_path / "scvi", params)
    adata = ad.read_h5ad(out)
    assert adata.obsm["X_scVI"].shape == (adata.n_obs, 8)
    assert np.isfinite(adata.obsm["X_scVI"]).all()
    assert adata.uns["integration"]["use_rep"] == "X_scVI"
    metrics = pd.read_csv(tmp_path / "scvi" / "integration_metrics_mqc.tsv", sep="\t", comment="#")
    assert set(metrics["embedding"]) == {"uncorrected", "scvi"}


def test_row_blocks_give_the_same_integration_as_one_block(tmp_path, tmp_path_factory, monkeypatch):
    # the counts are normalised and the output written in row blocks; 7-cell blocks must equal one block of all
    qc = sorted((integrated(tmp_path_factory).parent.parent / "qc").glob("*.qc.h5ad"))[:3]
    params = qc_params()
    params.update(n_top_genes=500, pca_comps=20, n_pcs=10)
    whole = ad.read_h5ad(integrate.run_integrate(qc, tmp_path / "whole", params))
    for module in ("preprocess", "stage"):
        monkeypatch.setattr(f"tmeflow.integrate.{module}.BLOCK_CELLS", 7)
    blocks = ad.read_h5ad(integrate.run_integrate(qc, tmp_path / "blocks", params))
    assert (blocks.obs_names == whole.obs_names).all() and (blocks.var_names == whole.var_names).all()
    for key in ("X_pca", "X_pca_harmony", "X_umap"):
        np.testing.assert_array_equal(blocks.obsm[key], whole.obsm[key])
    assert (blocks.obs["leiden"] == whole.obs["leiden"]).all()
    assert abs(blocks.X - whole.X).max() == 0 and abs(blocks.layers["counts"] - whole.layers["counts"]).max() == 0
    # the counts are the samples' own, in their order; X is log1p(CP10k) of all genes; loadings only on HVGs
    own = sp.vstack([ad.read_h5ad(p).layers["counts"][:, ad.read_h5ad(p).var_names.get_indexer(whole.var_names)]
                     for p in qc])  # fmt: skip
    assert abs(whole.layers["counts"] - own).max() == 0
    assert abs(whole.X - integrate.lognormalise(own)).max() == 0
    assert whole.var["highly_variable"].sum() == 500
    assert not whole.varm["PCs"][~whole.var["highly_variable"].to_numpy()].any()


def _lognormalise_peak(counts, copy: bool):
    """lognormalise's values and the most memory it allocated beyond its input (numpy arrays, tracemalloc)."""
    import tracemalloc

    tracemalloc.start()
    start = tracemalloc.get_traced_memory()[0]
    logged = integrate.lognormalise(counts, copy=copy)
    peak = tracemalloc.get_traced_memory()[1] - start
    tracemalloc.stop()
    return logged.toarray(), peak


def test_lognormalise_in_place_gives_the_copy_s_values_in_half_the_extra_memory():
    rng = np.random.default_rng(0)
    counts = sp.random(2000, 500, density=0.3, format="csr", dtype=np.float32, random_state=rng)
    counts.data = rng.poisson(3, counts.nnz).astype(np.float32) + 1
    integrate.lognormalise(counts[:10])  # imports and compiles outside the measurement
    expected, copy_peak = _lognormalise_peak(counts, copy=True)
    assert counts.data.max() > 1 and (counts.data == np.round(counts.data)).all()  # the counts are unchanged
    logged, in_place_peak = _lognormalise_peak(counts, copy=False)
    np.testing.assert_array_equal(logged, expected)
    assert in_place_peak < 0.6 * copy_peak, (in_place_peak, copy_peak)


@pytest.mark.parametrize("batch_key", ["batch", None])
def test_seurat_v3_in_row_blocks_selects_scanpys_genes(tmp_path_factory, monkeypatch, batch_key):
    import scanpy as sc

    qc = sorted((integrated(tmp_path_factory).parent.parent / "qc").glob("*.qc.h5ad"))
    cells = ad.concat([ad.read_h5ad(p) for p in qc])
    cells.X = cells.layers["counts"]
    expected = sc.pp.highly_variable_genes(cells, flavor="seurat_v3", n_top_genes=800, batch_key=batch_key,
                                           inplace=False)  # fmt: skip
    monkeypatch.setattr("tmeflow.integrate.preprocess.BLOCK_CELLS", 97)
    path = tmp_path_factory.mktemp("hvg") / "counts.h5ad"
    ad.AnnData(X=cells.X).write_h5ad(path)
    with __import__("h5py").File(path) as handle:  # read from disk in blocks of 97 cells
        batches = cells.obs[batch_key].to_numpy() if batch_key else None
        table = integrate.seurat_v3(ad.io.sparse_dataset(handle["X"]), batches, 800, cells.var_names)
    assert list(table.columns) == [c for c in table.columns if c in expected.columns]
    assert (table["highly_variable"] == expected["highly_variable"]).all() and table["highly_variable"].sum() == 800
    np.testing.assert_array_equal(table["highly_variable_rank"], expected["highly_variable_rank"])
    for column in ("means", "variances", "variances_norm"):
        np.testing.assert_allclose(table[column], expected[column], rtol=1e-9)
    if batch_key:
        np.testing.assert_array_equal(table["highly_variable_nbatches"], expected["highly_variable_nbatches"])


def test_select_hvgs_falls_back_to_seurat_dispersions_of_the_log_counts(monkeypatch, caplog):
    import scanpy as sc

    rng = np.random.default_rng(1)
    counts = sp.csr_matrix(rng.poisson(rng.gamma(0.5, 2.0, size=(1, 400)), size=(300, 400)).astype(np.float32))
    cells = ad.AnnData(obs=pd.DataFrame({"batch": ["a", "b"] * 150}, index=[f"c{i}" for i in range(300)]),
                       var=pd.DataFrame(index=[f"g{i}" for i in range(400)]), layers={"counts": counts})  # fmt: skip
    reference = ad.AnnData(X=counts.copy(), obs=cells.obs.copy(), var=cells.var.copy())
    integrate.normalise(reference)
    sc.pp.highly_variable_genes(reference, flavor="seurat", n_top_genes=50, batch_key="batch")

    def loess_fails(*args, **kwargs):
        raise ValueError("simulated near-singular loess fit")

    monkeypatch.setattr("tmeflow.integrate.preprocess.seurat_v3", loess_fails)
    integrate.select_hvgs(cells, 50, "batch")
    assert caplog.text.count("retrying more simply") == 2
    assert cells.uns["hvg"]["flavor"] == "seurat"
    assert (cells.var["highly_variable"] == reference.var["highly_variable"]).all()
    assert cells.var["highly_variable"].sum() == 50


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_kbet_on_ten_points_segregated_and_interleaved_by_hand():
    """KBET with k0 = 5 (the cell and its 4 nearest neighbours) on 10 cells of 2 batches of 5 on a line.

    Expected counts per neighbourhood: 5 x 5/10 = 2.5 per batch. Segregated (batch A at x = 0..4, B at
    x = 100..104): every neighbourhood is 5 + 0, chi2 = 2 x 2.5^2 / 2.5 = 5.0, p = P(chi2_1 > 5) = 0.0253 < 0.05:
    all rejected, acceptance 0. Interleaved (A, B, A, ... at x = 0..9): every neighbourhood of 5 consecutive
    cells is 3 + 2, chi2 = 2 x 0.5^2 / 2.5 = 0.2, p = 0.655: none rejected, acceptance 1.
    """
    from tmeflow import metrics

    batches = ["A"] * 5 + ["B"] * 5
    segregated = np.c_[[0, 1, 2, 3, 4, 100, 101, 102, 103, 104], np.zeros(10)]
    assert metrics.kbet_acceptance(segregated, batches, k0=5) == 0.0
    interleaved = np.c_[np.arange(10), np.zeros(10)]
    assert metrics.kbet_acceptance(interleaved, ["A", "B"] * 5, k0=5) == 1.0
    # with k0 = 3 the segregated case is 3 + 0 vs 1.5 each: chi2 = 2 x 1.5^2 / 1.5 = 3.0, p = 0.083: not rejected
    assert metrics.kbet_acceptance(segregated, batches, k0=3) == 1.0


def test_label_asw_of_two_pairs_by_hand():
    """Silhouette s = (b - a) / max(a, b): points 0, 1 (label x) and 10, 11 (label y) on a line.
    x=0: a = 1, b = (10 + 11) / 2 = 10.5, s = 1 - 1/10.5 = 0.904762; x=1: a = 1, b = (9 + 10) / 2 = 9.5,
    s = 1 - 1/9.5 = 0.894737; y mirrors x. Mean 0.899749, scaled (s + 1) / 2 = 0.949875.
    """
    from tmeflow import metrics

    embedding = np.c_[[0.0, 1.0, 10.0, 11.0], np.zeros(4)]
    assert metrics.label_asw(embedding, ["x", "x", "y", "y"]) == pytest.approx(0.949875, abs=1e-6)


def test_plot_umaps_returns_the_figure_without_writing(tmp_path, monkeypatch):
    """Plotting contract (issue 21): ``plot_umaps`` takes the data, returns one panel per key, saves nothing.

    Ten cells, two samples x two conditions: two panels titled by the keys, each legend lists that key's two
    categories; the cell left NaN in the embedding (as in a subsampled uncorrected UMAP) is not drawn (9 points).
    """
    from matplotlib.figure import Figure

    from tmeflow.integrate import plot_umaps

    monkeypatch.chdir(tmp_path)
    coords = np.c_[np.arange(10.0), np.arange(10.0)]
    coords[3] = np.nan
    cells = ad.AnnData(
        X=np.zeros((10, 1), dtype=np.float32),
        obs=pd.DataFrame(
            {"sample": ["S1", "S2"] * 5, "condition": ["a"] * 5 + ["b"] * 5}, index=[f"c{i}" for i in range(10)]
        ),
    )
    cells.obsm["X_umap"] = coords
    fig = plot_umaps(cells, "X_umap", ["sample", "condition"], "Tiny")
    assert isinstance(fig, Figure)
    assert [ax.get_title() for ax in fig.axes] == ["sample", "condition"]
    assert [[t.get_text() for t in ax.get_legend().get_texts()] for ax in fig.axes] == [["S1", "S2"], ["a", "b"]]
    assert [len(ax.collections[0].get_offsets()) for ax in fig.axes] == [9, 9]
    assert fig._suptitle.get_text() == "Tiny"
    assert list(tmp_path.iterdir()) == []  # nothing saved
    io.save_figure(fig, tmp_path / "umap.png")
    assert (tmp_path / "umap.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
