"""Normalisation, highly variable genes and the sparse (implicitly centred and scaled) PCA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import TmeflowInputError
from ..log import get_logger
from .settings import TARGET_SUM

logger = get_logger(__name__)


def lognormalise(counts):
    """Return log1p(counts per 10,000) of a cells x genes count matrix (sc-best-practices "Normalization").

    Row-wise, so a matrix normalised in row blocks equals the whole matrix normalised at once.

    Parameters
    ----------
    counts
        Raw counts, cells x genes (sparse or dense); not changed.

    Returns
    -------
    scipy.sparse.csr_matrix or numpy.ndarray
        A new float32 matrix of the same shape.
    """
    import scanpy as sc

    cells = AnnData(X=counts.astype(np.float32, copy=True))
    sc.pp.normalize_total(cells, target_sum=TARGET_SUM)
    sc.pp.log1p(cells)
    return cells.X


def normalise(adata: AnnData) -> None:
    """Normalise to counts per 10,000 and ``log1p`` (:func:`lognormalise`), keeping the counts.

    Parameters
    ----------
    adata
        Cells with raw counts in ``X``.

    Adds
    ----
    ``layers['counts']``
        The raw counts.
    ``X``
        log1p(counts per 10,000) (replaces the counts).
    ``uns['log1p']``
        Scanpy's record of the transform.
    """
    adata.layers["counts"] = adata.X
    adata.X = lognormalise(adata.X)
    adata.uns["log1p"] = {"base": None}


def _seurat_dispersions(adata: AnnData, n_top_genes: int, batch_key: str | None) -> None:
    """Run the ``seurat`` flavour (dispersions of the log-normalised counts) into ``adata.var`` and ``uns['hvg']``."""
    import scanpy as sc

    logged = AnnData(X=lognormalise(adata.layers["counts"]), obs=adata.obs, var=pd.DataFrame(index=adata.var_names))
    sc.pp.highly_variable_genes(logged, flavor="seurat", n_top_genes=n_top_genes, batch_key=batch_key, subset=False)
    for column in logged.var.columns:
        adata.var[column] = logged.var[column]
    adata.uns["hvg"] = logged.uns["hvg"]


def select_hvgs(adata: AnnData, n_top_genes: int, batch_key: str | None) -> None:
    """Select highly variable genes: batch-aware ``seurat_v3`` on the counts (Stuart et al. 2019).

    seurat_v3's loess fit can fail on small or sparse data (near-singular fits); then it is retried without the
    batch key, and finally the ``seurat`` flavour (dispersions of the log-normalised counts, no loess) is used, each
    time with a warning.

    Parameters
    ----------
    adata
        Cells with raw counts in ``layers['counts']`` (``X`` is not read).
    n_top_genes
        HVGs to select (at most all genes; default 3,000 in the schema).
    batch_key
        Obs column of the batches (used when it has more than one level); None: no batch.

    Adds
    ----
    ``var['highly_variable']``
        The selected genes.
    ``var['highly_variable_rank']``, ``var['means']``, ``var['variances']`` ...
        Scanpy's HVG statistics of the flavour used.
    ``uns['hvg']``
        The flavour.
    """
    import scanpy as sc

    n_top = min(n_top_genes, adata.n_vars)
    batched = batch_key if batch_key and adata.obs[batch_key].nunique() > 1 else None
    attempts = [("seurat_v3", batched), ("seurat_v3", None), ("seurat", batched)]
    if batched is None:
        attempts = attempts[1:]
    for flavor, key in attempts:
        try:
            if flavor == "seurat_v3":
                sc.pp.highly_variable_genes(
                    adata, flavor=flavor, n_top_genes=n_top, layer="counts", batch_key=key, subset=False
                )
            else:
                _seurat_dispersions(adata, n_top, key)
            return
        except (ValueError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
            if (flavor, key) == attempts[-1]:
                raise
            logger.warning(
                "HVG selection (%s, batch_key %s) failed (%s); retrying more simply", flavor, key, str(exc).strip()[:80]
            )


def _svd_flip(u: np.ndarray, vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic signs: the largest-magnitude loading of each component is positive."""
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1
    return u * signs, vt * signs[:, None]


def sparse_pca(
    X,
    n_comps: int,
    *,
    covariates: np.ndarray | None = None,
    scale: bool = True,
    seed: int = 0,
    n_iter: int = 7,
    oversample: int = 10,
) -> dict[str, np.ndarray]:
    """Compute an implicitly centred, regressed and scaled PCA (randomised SVD, Halko, Martinsson & Tropp 2011).

    PCA of ``X`` centred per gene, with ``covariates`` regressed out per gene by least squares and scaled to unit
    variance, all applied implicitly inside the randomised SVD, so a sparse ``X`` is never densified.

    Parameters
    ----------
    X
        Cells x genes, sparse or dense.
    n_comps
        Components (at most min(cells, genes) - 1).
    covariates
        Cells x covariates regressed out per gene (e.g. % mitochondrial counts); None: centring only.
    scale
        Scale every gene's residual to unit variance (default, as ``sc.pp.scale`` without clipping).
    seed
        Seed of the random starting block.
    n_iter
        Power iterations (default 7, as scikit-learn's randomised SVD).
    oversample
        Extra columns of the random block (default 10).

    Returns
    -------
    dict
        ``scores`` (cells x comps), ``loadings`` (genes x comps), ``variance`` and ``variance_ratio`` per component;
        signs fixed so that each component's largest loading is positive.
    """
    X = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    n, g = X.shape
    design = np.ones((n, 1))
    if covariates is not None:
        cov = np.asarray(covariates, dtype=np.float64).reshape(n, -1)
        design = np.hstack([design, cov - cov.mean(axis=0)])
    gram = design.T @ design
    dtx = np.asarray(X.T @ design).T  # d x g
    coef = np.linalg.solve(gram, dtx)  # d x g: per-gene least-squares fit on the design
    # Residual sum of squares per gene: sum X^2 - 2 sum X (D B) + sum (D B)^2
    sq = np.asarray(X.multiply(X).sum(axis=0)).ravel() if sp.issparse(X) else (X**2).sum(axis=0)
    cross = (dtx * coef).sum(axis=0)
    fitted = np.einsum("kg,kl,lg->g", coef, gram, coef)
    rss = np.maximum(sq - 2 * cross + fitted, 0.0)
    std = np.sqrt(rss / max(n - 1, 1)) if scale else np.ones(g)
    std[std == 0] = 1.0

    def matmat(v: np.ndarray) -> np.ndarray:  # (residual / std) @ v
        w = v / std[:, None]
        return np.asarray(X @ w) - design @ (coef @ w)

    def rmatmat(u: np.ndarray) -> np.ndarray:  # (residual / std).T @ u
        return (np.asarray(X.T @ u) - coef.T @ (design.T @ u)) / std[:, None]

    k = min(n_comps, n - 1, g - 1)
    width = min(k + oversample, n, g)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(matmat(rng.standard_normal((g, width))))
    for _ in range(n_iter):
        z, _ = np.linalg.qr(rmatmat(q))
        q, _ = np.linalg.qr(matmat(z))
    small = rmatmat(q).T  # width x g
    u_small, s, vt = np.linalg.svd(small, full_matrices=False)
    u = q @ u_small
    u, vt = _svd_flip(u[:, :k], vt[:k])
    s = s[:k]
    variance = s**2 / max(n - 1, 1)
    total = (rss / max(n - 1, 1) / std**2).sum()
    return {"scores": u * s, "loadings": vt.T, "variance": variance, "variance_ratio": variance / total}


def pca(adata: AnnData, *, n_comps: int, regress_mito: bool, seed: int) -> None:
    """Run the sparse PCA (:func:`sparse_pca`) of the HVGs of the log-normalised matrix.

    Parameters
    ----------
    adata
        Cells with log-normalised ``X`` and ``var['highly_variable']``.
    n_comps
        Components (``pca_comps``).
    regress_mito
        Regress % mitochondrial counts (``obs['pct_counts_mt']``) out of every gene first.
    seed
        Seed of the randomised SVD.

    Adds
    ----
    ``obsm['X_pca']``
        Cells x components scores.
    ``varm['PCs']``
        Gene loadings (0 for non-HVGs).
    ``uns['pca']``
        ``variance``, ``variance_ratio`` and the parameters.
    """
    hvg = adata.var["highly_variable"].to_numpy()
    covariates = None
    if regress_mito:
        if "pct_counts_mito" not in adata.obs:
            raise TmeflowInputError(
                "regress_mito needs obs 'pct_counts_mito' (written by tmeflow qc)", column="pct_counts_mito"
            )
        covariates = adata.obs["pct_counts_mito"].to_numpy(dtype=float)
    matrix = adata.X if hvg.all() else adata.X[:, hvg]
    result = sparse_pca(matrix, n_comps, covariates=covariates, seed=seed)
    adata.obsm["X_pca"] = result["scores"].astype(np.float32)
    loadings = np.zeros((adata.n_vars, result["loadings"].shape[1]), dtype=np.float32)
    loadings[hvg] = result["loadings"]
    adata.varm["PCs"] = loadings
    adata.uns["pca"] = {
        "variance": result["variance"],
        "variance_ratio": result["variance_ratio"],
        "params": {"zero_center": True, "implicit_scaling": True, "regress_mito": bool(regress_mito)},
    }
