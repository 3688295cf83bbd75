"""Calibration of the malignant call (issue 15 item 9): a cell's CNV profile does not depend on the
cells it is processed with (infercnvpy's per-chunk noise threshold)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from tmeflow import cnv
from tmeflow.params import group_properties


def default_params(**overrides):
    params = {name: spec.get("default") for name, spec in group_properties("cnv_options").items()}
    params.update(seed=0, cnv_window=51, cnv_step=5, cnv_min_gene_fraction=0.0)
    params.update(overrides)
    return params


def atlas_with_gain(seed: int = 0, n_genes: int = 1500, n_t: int = 60, n_normal: int = 60, n_tumour: int = 120):
    """T cells, normal epithelium and tumour epithelium with a 3x gain of chromosome 1, tumour cells
    first (so that chunks of cells differ in their CNV spread). Log1p CP10k in X, counts in layers."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    positions = cnv.bundled_positions("human")
    positions = positions[~positions["chromosome"].isin(["X", "Y"])]
    genes = np.sort(rng.choice(positions.index.to_numpy(), n_genes, replace=False))
    means = rng.lognormal(0.0, 1.0, n_genes)
    gain = np.where(positions.loc[genes, "chromosome"].astype(str).to_numpy() == "1", 3.0, 1.0)
    types = ["epithelial"] * (n_tumour + n_normal) + ["T"] * n_t
    mu = np.vstack([means * gain] * n_tumour + [means] * (n_normal + n_t))
    obs = pd.DataFrame({"cell_type": types, "compartment": ["epithelial" if t != "T" else "immune" for t in types],
                        "patient": "P1", "sample": "P1", "species": "human"}, index=[f"c{i}" for i in range(len(types))])
    counts = rng.poisson(mu).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = adata.X.copy()
    total = counts.sum(axis=1, keepdims=True)
    adata.X = sp.csr_matrix(np.log1p(counts * 1e4 / total).astype(np.float32))
    return adata


def test_cnv_profile_does_not_depend_on_chunking(monkeypatch):
    """The same cells give the same CNV rows in one chunk or in chunks of 40 cells (before: the noise
    filter used each chunk's SD, so the tumour-only first chunk zeroed more of its cells' signal)."""
    adata = atlas_with_gain()
    params = default_params()
    cnv.prepare(adata, params)
    whole = adata.copy()
    cnv.call_malignant(whole, params)
    import infercnvpy

    original = infercnvpy.tl.infercnv
    monkeypatch.setattr(infercnvpy.tl, "infercnv", lambda *args, **kwargs: original(*args, **{**kwargs, "chunksize": 40}))
    if hasattr(cnv.infer, "chunk_cells"):
        monkeypatch.setattr(cnv.infer, "chunk_cells", lambda n_genes: 40)
    chunked = adata.copy()
    cnv.call_malignant(chunked, params)
    a, b = whole.obsm["X_cnv"].toarray(), chunked.obsm["X_cnv"].toarray()
    assert np.count_nonzero(a) > 0.05 * a.size
    np.testing.assert_allclose(a, b, atol=1e-5)


def test_one_chunk_is_infercnvpys_own_result():
    """A group that fits in one chunk gets exactly infercnvpy's result with its default filter."""
    import infercnvpy

    adata = atlas_with_gain()
    params = default_params()
    cnv.prepare(adata, params)
    genes = adata.var["cnv_gene"].to_numpy(dtype=bool)
    reference = np.asarray(adata.X[-60:].mean(axis=0))
    _, ours = cnv.infer_group(adata[:, genes], reference[:, genes], params)
    _, theirs, _ = infercnvpy.tl.infercnv(adata[:, genes], reference=reference[:, genes], window_size=51, step=5,
                                          lfc_clip=params["cnv_lfc_clip"], inplace=False, n_jobs=1, chunksize=10000)
    np.testing.assert_allclose(ours.toarray(), theirs.toarray(), atol=1e-6)
