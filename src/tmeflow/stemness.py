"""Stemness / differentiation potency: original CytoTRACE and its comparison between conditions.

Original CytoTRACE (Gulati et al. 2020, *Science* 367:405) and its comparison between conditions with samples
as units (used by ``tmeflow pathways``).

Why not CytoTRACE 2 (Kang et al. 2024): ``cytotrace2-py`` does ship its model weights inside the
package (``package_data`` ``resources/17_models_weights/*.pt``, so it would run offline), but CytoTRACE 2
is under the "Stanford non-commercial software licence agreement" (the package's DESCRIPTION), which
an MIT pipeline cannot depend on, and its Python package calls R (``Rscript smoothDatakNN.R``) for the
kNN smoothing. The original CytoTRACE is implemented here instead.

CytoTRACE, as published
    1. *Gene counts*: the number of genes detected per cell (raw counts ``> 0``), the observation that
       less differentiated cells express more genes.
    2. *Gene counts signature (GCS)*: the ``n_genes`` (200) genes whose expression (log-normalised
       ``X``) is most correlated (Pearson) with gene counts over the cells, among genes detected in at
       least 5 cells; a cell's GCS is the mean of their log expression (the log of their geometric
       mean).
    3. *Smoothing on the kNN graph*: the GCS is diffused over the row-normalised kNN graph ``M``
       (``p <- alpha M p + (1 - alpha) GCS``, ``alpha = 0.9``, to convergence), so that similar cells
       get similar potency.
    4. The score is the rank of the smoothed GCS scaled to (0, 1]: 1 = least differentiated.
    The non-negative least-squares denoising step that CytoTRACE runs before the diffusion (on batches
    of 3,000 cells) is not implemented. The kNN graph is the atlas' (``obsp['connectivities']``, from
    integration) when present, else ``n_neighbors`` neighbours on 30 principal components of ``X``.

Depth
    CytoTRACE rests on gene counts, so it follows sequencing depth: cells sequenced less deeply look
    more differentiated. On the simulated cohort (no potency planted) the B cells of two metastasis
    samples have ~35% fewer UMIs than in the primary samples and score lower (FDR 0.012). The
    per-sample table gives the median detected genes beside the mean score; read a stemness
    difference together with it.

Comparison between conditions
    Cells are not replicates; samples are. Per sample and cell type with at least ``min_cells`` cells
    the mean CytoTRACE score; per cell type and contrast a moderated linear model ``~ condition`` or,
    paired, ``~ condition + patient`` (:func:`tmeflow.stats.condition_contrast`), Benjamini-Hochberg
    FDR over the cell types of a contrast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .io import row_blocks
from .stats import bh_fdr, condition_contrast

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure


N_SIGNATURE_GENES = 200
MIN_GENE_CELLS = 5
ALPHA = 0.9
TEST_COLUMNS = [
    "contrast",
    "cell_type",
    "difference",
    "t",
    "df",
    "pvalue",
    "fdr",
    "mean_test",
    "mean_reference",
    "n_samples_test",
    "n_samples_reference",
    "design",
]


def gene_counts_signature(
    counts: np.ndarray | sp.spmatrix, X: np.ndarray | sp.spmatrix, *, n_genes: int = N_SIGNATURE_GENES
) -> tuple[np.ndarray, np.ndarray, list[int]]:
    """Compute CytoTRACE's gene counts and gene counts signature (GCS) per cell (module docstring).

    Parameters
    ----------
    counts
        Raw counts, cells x genes (dense, sparse or an h5ad's backed CSR dataset): the number of detected genes
        per cell.
    X
        Expression the GCS averages, cells x genes (log-normalised; same storage choices). Both are read in row
        blocks (:func:`tmeflow.io.row_blocks`): two passes over ``X``, one over ``counts``.
    n_genes
        Genes most correlated with the gene counts that form the signature (CytoTRACE: 200).

    Returns
    -------
    tuple of (ndarray, ndarray, list of int)
        Gene counts per cell, GCS per cell and the column indices of the signature genes.
    """
    n_cells, n_all_genes = X.shape
    gene_counts, cells_per_gene = np.zeros(n_cells), np.zeros(n_all_genes)
    sums, squares, with_counts = np.zeros(n_all_genes), np.zeros(n_all_genes), np.zeros(n_all_genes)
    for (start, count_rows), (_, rows) in zip(row_blocks(counts), row_blocks(X), strict=True):
        detected = sp.csr_matrix(count_rows) > 0 if sp.issparse(count_rows) else np.asarray(count_rows) > 0
        block_counts = np.asarray(detected.sum(axis=1)).ravel().astype(float)
        gene_counts[start : start + len(block_counts)] = block_counts
        cells_per_gene += np.asarray(detected.sum(axis=0)).ravel()
        x = _float64(rows)
        sums += np.asarray(x.sum(axis=0)).ravel()
        squares += np.asarray((x.multiply(x) if sp.issparse(x) else x * x).sum(axis=0)).ravel()
        with_counts += np.asarray(x.T @ block_counts).ravel()
    mean, square = sums / n_cells, squares / n_cells
    sd = np.sqrt(np.clip(square - mean**2, 0, None))
    cov = with_counts / n_cells - mean * gene_counts.mean()  # E[x c] - E[x] E[c]
    with np.errstate(divide="ignore", invalid="ignore"):
        corr = cov / (sd * gene_counts.std())
    corr[(cells_per_gene < MIN_GENE_CELLS) | ~np.isfinite(corr)] = -np.inf
    top = [int(i) for i in np.argsort(-corr)[: min(n_genes, int(np.isfinite(corr).sum()))]]
    gcs = np.concatenate([np.asarray(_float64(rows)[:, top].mean(axis=1)).ravel() for _, rows in row_blocks(X)])
    return gene_counts, gcs, top


def _float64(rows):
    return sp.csr_matrix(rows, dtype=np.float64) if sp.issparse(rows) else np.asarray(rows, dtype=np.float64)


def knn_graph(adata: AnnData, *, n_neighbors: int, seed: int) -> sp.csr_matrix:
    """Return the atlas' kNN connectivities, or a kNN graph on up to 30 principal components of ``X``.

    Parameters
    ----------
    adata
        The cells (``obsp['connectivities']`` used when present and non-empty; not modified).
    n_neighbors
        Neighbours of the graph built when the atlas has none.
    seed
        Seed of the PCA and the neighbour search.

    Returns
    -------
    csr_matrix
        Cells x cells connectivities.
    """
    graph = adata.obsp.get("connectivities") if hasattr(adata, "obsp") else None
    if graph is not None and graph.shape == (adata.n_obs, adata.n_obs) and graph.nnz:
        return sp.csr_matrix(graph)
    import anndata as ad
    import scanpy as sc

    matrix = adata.X.to_memory() if hasattr(adata.X, "to_memory") else adata.X.copy()  # X on disk: read it
    work = ad.AnnData(X=matrix, obs=pd.DataFrame(index=adata.obs_names.astype(str)))
    n_comps = int(min(30, work.n_obs - 1, work.n_vars - 1))
    sc.pp.pca(work, n_comps=n_comps, random_state=seed)
    sc.pp.neighbors(work, n_neighbors=int(min(n_neighbors, work.n_obs - 1)), random_state=seed)
    return sp.csr_matrix(work.obsp["connectivities"])


def diffuse(
    graph: sp.csr_matrix, values: np.ndarray, *, alpha: float = ALPHA, tol: float = 1e-6, max_iter: int = 10_000
) -> np.ndarray:
    """Smooth ``values`` on a graph: ``p <- alpha M p + (1 - alpha) values`` until it converges (CytoTRACE).

    ``M`` is the row-normalised ``graph``; iteration stops when the largest change is below ``tol`` times the range
    of ``values``.

    Parameters
    ----------
    graph
        Cells x cells connectivities.
    values
        The value per cell (the GCS).
    alpha
        Weight of the neighbours (CytoTRACE's 0.9, :data:`ALPHA`).
    tol
        Convergence tolerance, relative to the range of ``values``.
    max_iter
        Most iterations.

    Returns
    -------
    ndarray
        The smoothed value per cell.
    """
    degree = np.asarray(graph.sum(axis=1)).ravel()
    markov = sp.diags(np.divide(1.0, degree, out=np.zeros_like(degree, dtype=float), where=degree > 0)) @ graph
    p0 = np.asarray(values, dtype=float)
    scale = max(float(np.ptp(p0)), 1e-12)
    p = p0.copy()
    for _ in range(max_iter):
        nxt = alpha * (markov @ p) + (1 - alpha) * p0
        nxt[degree == 0] = p0[degree == 0]
        if np.max(np.abs(nxt - p)) < tol * scale:
            return nxt
        p = nxt
    return p


def cytotrace(adata: AnnData, *, n_neighbors: int = 30, seed: int = 0) -> pd.DataFrame:
    """Score each cell's differentiation potency by CytoTRACE (Gulati et al. 2020, Science 367:405).

    Raw counts come from ``layers['counts']`` (else ``X``); ``adata`` is not modified.

    Parameters
    ----------
    adata
        The cells, log-normalised ``X``.
    n_neighbors
        Neighbours of the smoothing graph when the atlas has none (:func:`knn_graph`).
    seed
        Seed of that graph.

    Returns
    -------
    DataFrame
        Per cell (indexed by ``obs_names``): ``n_genes_detected``, ``gene_counts_signature`` and ``cytotrace`` (rank
        of the smoothed GCS scaled to (0, 1]; 1 = least differentiated).
    """
    from scipy.stats import rankdata

    counts = adata.layers["counts"] if "counts" in adata.layers else adata.X
    gene_counts, gcs, _ = gene_counts_signature(counts, adata.X)
    smoothed = diffuse(knn_graph(adata, n_neighbors=n_neighbors, seed=seed), gcs)
    return pd.DataFrame(
        {
            "n_genes_detected": gene_counts.astype(int),
            "gene_counts_signature": gcs,
            "cytotrace": rankdata(smoothed, method="average") / len(smoothed),
        },
        index=adata.obs_names,
    )


def sample_means(obs: pd.DataFrame, score: str, *, min_cells: int) -> pd.DataFrame:
    """Average ``score`` per sample and cell type, with the sample's condition and patient.

    Parameters
    ----------
    obs
        Cell metadata: ``sample``, ``condition``, ``cell_type``, ``score`` and, when present, ``patient`` and
        ``n_genes_detected``.
    score
        The column averaged.
    min_cells
        Smallest group (sample x cell type) kept.

    Returns
    -------
    DataFrame
        One row per sample and cell type: the keys, ``n_cells``, ``mean_score`` and (with ``n_genes_detected``)
        ``median_genes_detected``.
    """
    keys = (
        ["sample", "condition", "patient", "cell_type"]
        if "patient" in obs.columns
        else ["sample", "condition", "cell_type"]
    )
    frame = obs[keys + [score]].copy()
    for key in keys:
        frame[key] = frame[key].astype(str)
    grouped = frame.groupby(keys, observed=True)[score]
    parts = [grouped.size().rename("n_cells"), grouped.mean().rename("mean_score")]
    if "n_genes_detected" in obs.columns:  # CytoTRACE follows depth: show it beside the score
        genes = obs["n_genes_detected"].groupby([frame[k] for k in keys], observed=True).median()
        parts.append(genes.rename("median_genes_detected"))
    table = pd.concat(parts, axis=1).reset_index()
    return table[table["n_cells"] >= min_cells].reset_index(drop=True)


def compare_conditions(
    means: pd.DataFrame, samples: pd.DataFrame, pairs: list[tuple[str, str]], *, min_samples: int = 2
) -> pd.DataFrame:
    """Compare the per-sample mean score between conditions per cell type, samples as units.

    A moderated test (:func:`tmeflow.stats.condition_contrast`) per contrast and cell type, BH FDR per contrast.

    Parameters
    ----------
    means
        The table of :func:`sample_means`.
    samples
        Sample metadata indexed by sample (``condition``, ``patient``).
    pairs
        (test, reference) condition pairs.
    min_samples
        Fewest samples per condition for a cell type to be tested.

    Returns
    -------
    DataFrame
        :data:`TEST_COLUMNS`: per contrast and cell type, ``difference`` (test minus reference, score units), ``t``,
        ``df``, ``pvalue``, ``fdr``, the group means and sample numbers, and the ``design``.
    """
    parts = []
    wide = means.pivot_table(index="sample", columns="cell_type", values="mean_score", observed=True)
    for test, reference in pairs:
        used = samples[samples["condition"].isin([test, reference])]
        y = wide.reindex(used.index)
        fit = condition_contrast(y, used, test, reference, min_samples=min_samples)
        if not len(fit):
            continue
        is_test = (used["condition"] == test).to_numpy()
        fit = fit.rename(columns={"estimate": "difference"})
        fit["mean_test"] = y[is_test].mean().reindex(fit.index).to_numpy()
        fit["mean_reference"] = y[~is_test].mean().reindex(fit.index).to_numpy()
        fit["fdr"] = bh_fdr(fit["pvalue"])
        fit = fit.rename_axis("cell_type").reset_index()
        fit.insert(0, "contrast", f"{test}_vs_{reference}")
        parts.append(fit.sort_values("pvalue", kind="stable"))
    return pd.concat(parts, ignore_index=True)[TEST_COLUMNS] if parts else pd.DataFrame(columns=TEST_COLUMNS)


def plot_by_condition(means: pd.DataFrame, conditions: list[str]) -> Figure:
    """Plot the per-sample mean CytoTRACE score by condition per cell type (one dot per sample).

    Parameters
    ----------
    means
        The table of :func:`sample_means`.
    conditions
        The conditions, in plotting order.

    Returns
    -------
    Figure
        Box plots with the samples' dots, one colour per condition.
    """
    from .plotting import pyplot

    plt = pyplot()
    types = sorted(means["cell_type"].unique())
    fig, ax = plt.subplots(figsize=(1.5 + 0.6 * len(types) * max(len(conditions), 1) / 2, 4))
    width = 0.8 / max(len(conditions), 1)
    colours = plt.get_cmap("tab10")
    rng = np.random.default_rng(0)
    for j, condition in enumerate(conditions):
        for i, cell_type in enumerate(types):
            values = means.loc[
                (means["cell_type"] == cell_type) & (means["condition"] == condition), "mean_score"
            ].to_numpy()
            x = i - 0.4 + width * (j + 0.5)
            if len(values):
                ax.boxplot(values, positions=[x], widths=width * 0.8, showfliers=False, manage_ticks=False)
                ax.scatter(
                    x + rng.uniform(-width / 5, width / 5, len(values)),
                    values,
                    s=12,
                    color=colours(j % 10),
                    label=condition if i == 0 else None,
                    zorder=3,
                )
    ax.set_xticks(range(len(types)))
    ax.set_xticklabels(types, rotation=90, fontsize=7)
    ax.set_ylabel("CytoTRACE (mean per sample; 1 = least differentiated)")
    ax.legend(fontsize=7, frameon=False)
    ax.set_title("Stemness (CytoTRACE) per sample and cell type", fontsize=9)
    fig.tight_layout()
    return fig
