"""Normalisation, highly variable genes and the sparse (implicitly centred and scaled) PCA."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import TmeflowInputError
from ..io import row_blocks
from ..log import get_logger
from .settings import BLOCK_CELLS, TARGET_SUM

logger = get_logger(__name__)


def lognormalise(counts, *, copy: bool = True):
    """Return log1p(counts per 10,000) of a cells x genes count matrix (sc-best-practices "Normalization").

    Row-wise, so a matrix normalised in row blocks equals the whole matrix normalised at once.

    Parameters
    ----------
    counts
        Raw counts, cells x genes (sparse or dense).
    copy
        True: ``counts`` is not changed. False: a float32 ``counts`` is not copied first but normalised in place
        as far as scanpy does (half the extra memory; for a caller that no longer needs the counts).

    Returns
    -------
    scipy.sparse.csr_matrix or numpy.ndarray
        A float32 matrix of the same shape.
    """
    import scanpy as sc

    cells = AnnData(X=counts.astype(np.float32, copy=copy))
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


def _gene_sums(counts, codes: np.ndarray, n_batches: int, clip: np.ndarray | None = None):
    """Per batch: the cells, and every gene's sum and sum of squares (each count clipped at ``clip[batch]``)."""
    n_genes = counts.shape[1]
    cells = np.zeros(n_batches)
    sums, squares = np.zeros((n_batches, n_genes)), np.zeros((n_batches, n_genes))
    for start, block in row_blocks(counts, BLOCK_CELLS):
        block_codes = codes[start : start + block.shape[0]]
        for batch in np.unique(block_codes):
            rows = block[block_codes == batch]
            values = rows.data.astype(np.float64)
            if clip is not None:
                values = np.minimum(values, clip[batch][rows.indices])
            cells[batch] += rows.shape[0]
            sums[batch] += np.bincount(rows.indices, weights=values, minlength=n_genes)
            squares[batch] += np.bincount(rows.indices, weights=values**2, minlength=n_genes)
    return cells, sums, squares


def _mean_var(cells, sums, squares) -> tuple[np.ndarray, np.ndarray]:
    """Means and unbiased variances from counts, sums and sums of squares (rows: batches)."""
    cells = np.asarray(cells, dtype=float)[..., None]
    mean = sums / cells
    return mean, (squares / cells - mean**2) * cells / (cells - 1)


def seurat_v3(counts, batches: np.ndarray | None, n_top_genes: int, genes: pd.Index, span: float = 0.3) -> pd.DataFrame:
    """Select HVGs as scanpy's ``seurat_v3`` flavour does (Stuart et al. 2019), reading the counts in row blocks.

    Per batch: a loess fit (``span``, degree 2) of log10 variance on log10 mean, each count clipped at mean +
    sqrt(cells) x the fitted SD, the variance of the clipped standardised counts; genes ranked per batch and by
    their median rank over the batches where they are in the top ``n_top_genes`` (ties: in more batches first),
    as Seurat's ``SelectIntegrationFeatures``. Two passes over ``counts``, ``BLOCK_CELLS`` rows in memory at a
    time, instead of scanpy's copy of each batch and whole-matrix checks (the same genes; tested against scanpy).

    Parameters
    ----------
    counts
        Raw counts, cells x genes (CSR, or an h5ad's backed CSR dataset).
    batches
        Batch of every cell; None: one batch.
    n_top_genes
        Genes to select.
    genes
        The gene names (the table's index).
    span
        Loess span.

    Returns
    -------
    pandas.DataFrame
        Per gene: ``means``, ``variances`` (all cells), ``highly_variable_rank`` (median rank, NaN outside the top
        of every batch), ``variances_norm`` (mean over batches), ``highly_variable_nbatches`` (with batches) and
        ``highly_variable``.
    """
    from skmisc.loess import loess

    codes = pd.factorize(batches)[0] if batches is not None else np.zeros(counts.shape[0], dtype=int)
    n_batches = int(codes.max()) + 1
    cells, sums, squares = _gene_sums(counts, codes, n_batches)
    mean, var = _mean_var(cells, sums, squares)
    reg_std = np.zeros_like(mean)
    for batch in range(n_batches):
        not_const = var[batch] > 0
        fitted = np.zeros(len(genes))
        model = loess(np.log10(mean[batch, not_const]), np.log10(var[batch, not_const]), span=span, degree=2)
        model.fit()
        fitted[not_const] = model.outputs.fitted_values
        reg_std[batch] = np.sqrt(10**fitted)
    clip = reg_std * np.sqrt(cells)[:, None] + mean
    _, clipped_sums, clipped_squares = _gene_sums(counts, codes, n_batches, clip)
    norm_var = (n := cells[:, None]) * mean**2 + clipped_squares - 2 * clipped_sums * mean
    norm_var /= (n - 1) * reg_std**2
    ranks = np.argsort(np.argsort(-norm_var, axis=1), axis=1).astype(np.float32)
    in_top = (ranks < n_top_genes).sum(axis=0)
    ranks[ranks >= n_top_genes] = np.nan
    all_mean, all_var = _mean_var(cells.sum(), sums.sum(axis=0), squares.sum(axis=0))
    table = pd.DataFrame({"means": all_mean, "variances": all_var}, index=genes)
    table["highly_variable_nbatches"] = in_top
    table["highly_variable_rank"] = np.ma.median(np.ma.masked_invalid(ranks), axis=0).filled(np.nan)
    table["variances_norm"] = norm_var.mean(axis=0)
    sort = ["highly_variable_rank", "highly_variable_nbatches"]
    order = table[sort].sort_values(sort, ascending=[True, False], na_position="last").index
    table["highly_variable"] = False
    table.loc[order[:n_top_genes], "highly_variable"] = True
    return table if batches is not None else table.drop(columns="highly_variable_nbatches")


def _seurat_dispersions(counts, obs: pd.DataFrame, genes: pd.Index, n_top_genes: int, batch_key: str | None):
    """Select HVGs with the ``seurat`` flavour (dispersions of the log-normalised counts, in memory)."""
    import scanpy as sc

    in_memory = counts if sp.issparse(counts) or isinstance(counts, np.ndarray) else counts.to_memory()
    logged = AnnData(X=lognormalise(in_memory), obs=obs, var=pd.DataFrame(index=genes))
    sc.pp.highly_variable_genes(logged, flavor="seurat", n_top_genes=n_top_genes, batch_key=batch_key, subset=False)
    return logged.var


def hvg_table(counts, obs: pd.DataFrame, genes: pd.Index, n_top_genes: int, batch_key: str | None):
    """Select highly variable genes: batch-aware ``seurat_v3`` on the counts (:func:`seurat_v3`, Stuart et al. 2019).

    seurat_v3's loess fit can fail on small or sparse data (near-singular fits); then it is retried without the
    batch key, and finally the ``seurat`` flavour (dispersions of the log-normalised counts, no loess; the counts
    are then held in memory) is used, each time with a warning.

    Parameters
    ----------
    counts
        Raw counts, cells x genes (CSR, or an h5ad's backed CSR dataset).
    obs
        The cells (``batch_key``).
    genes
        The gene names.
    n_top_genes
        HVGs to select (at most all genes; default 3,000 in the schema).
    batch_key
        Obs column of the batches (used when it has more than one level); None: no batch.

    Returns
    -------
    tuple
        ``(table, flavour)``: per gene ``highly_variable``, ``highly_variable_rank``, ``means``, ``variances`` ...
        (scanpy's HVG statistics of the flavour used), and the flavour's name.
    """
    n_top = min(n_top_genes, len(genes))
    batched = batch_key if batch_key and obs[batch_key].nunique() > 1 else None
    attempts = [("seurat_v3", batched), ("seurat_v3", None), ("seurat", batched)]
    if batched is None:
        attempts = attempts[1:]

    def attempt(flavor: str, key: str | None) -> pd.DataFrame:
        if flavor == "seurat_v3":
            return seurat_v3(counts, obs[key].to_numpy() if key else None, n_top, genes)
        return _seurat_dispersions(counts, obs, genes, n_top, key)

    for flavor, key in attempts[:-1]:
        try:
            return attempt(flavor, key), flavor
        except (ValueError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
            logger.warning(
                "HVG selection (%s, batch_key %s) failed (%s); retrying more simply", flavor, key, str(exc).strip()[:80]
            )
    flavor, key = attempts[-1]
    return attempt(flavor, key), flavor


def select_hvgs(adata: AnnData, n_top_genes: int, batch_key: str | None) -> None:
    """Select highly variable genes of ``adata`` (:func:`hvg_table`).

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
    table, flavor = hvg_table(adata.layers["counts"], adata.obs, adata.var_names, n_top_genes, batch_key)
    for column in table.columns:
        adata.var[column] = table[column].to_numpy()
    adata.uns["hvg"] = {"flavor": flavor}


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
