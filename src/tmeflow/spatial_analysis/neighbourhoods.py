"""Neighbourhood enrichment, co-localisation with malignant cells and the interface test (Moran spectral nulls)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..log import get_logger
from ..spatial_qc import spot_spacing
from ..stats import bh_fdr

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Neighbourhoods and co-localisation
# ----------------------------------------------------------------------------------------------
def neighbourhood(adata: AnnData, key: str, *, n_perms: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compute neighbourhood enrichment and co-occurrence of a spot grouping (squidpy).

    :func:`squidpy.gr.nhood_enrichment` (permutation z-scores) and :func:`squidpy.gr.co_occurrence` on the
    first-ring spatial graph.

    Parameters
    ----------
    adata
        The section (``obsm['spatial']``); modified in place (see Adds).
    key
        The ``obs`` column grouping the spots (``region`` or ``dominant_type``).
    n_perms
        Permutations of the enrichment test (``spatial_n_perms``).
    seed
        Random seed of the permutations.

    Returns
    -------
    tuple[pandas.DataFrame, pandas.DataFrame]
        Cluster x cluster z-scores, and the co-occurrence long table (``cluster``, ``conditional_on``,
        ``distance_spots``, ``co_occurrence_ratio``); both empty when ``key`` has fewer than two groups.

    Adds
    ----
    ``obs[key]``
        Made categorical, unused categories removed.
    ``uns['<key>_nhood_enrichment']``, ``uns['<key>_co_occurrence']``
        squidpy's results (``write_outputs`` removes them before writing).
    """
    import squidpy as sq

    adata.obs[key] = pd.Categorical(adata.obs[key].astype(str))
    adata.obs[key] = adata.obs[key].cat.remove_unused_categories()
    categories = list(adata.obs[key].cat.categories)
    if len(categories) < 2:
        return pd.DataFrame(), pd.DataFrame()
    sq.gr.nhood_enrichment(adata, cluster_key=key, n_perms=n_perms, seed=seed, n_jobs=1, show_progress_bar=False)
    zscore = pd.DataFrame(adata.uns[f"{key}_nhood_enrichment"]["zscore"], index=categories, columns=categories)
    spacing = spot_spacing(adata.obsm["spatial"])
    interval = np.linspace(spacing * 0.5, spacing * 10, 11)
    sq.gr.co_occurrence(adata, cluster_key=key, interval=interval)
    occurrence = adata.uns[f"{key}_co_occurrence"]["occ"]
    rows = []
    for i, a in enumerate(categories):
        for j, b in enumerate(categories):
            for k in range(occurrence.shape[2]):
                rows.append((a, b, interval[k + 1] / spacing, float(occurrence[i, j, k])))
    co = pd.DataFrame(rows, columns=["cluster", "conditional_on", "distance_spots", "co_occurrence_ratio"])
    return zscore, co


def section_eigenvectors(graph: sp.csr_matrix) -> np.ndarray | None:
    """Compute the Moran eigenvectors of the section's spatial graph for the spatially constrained nulls.

    Parameters
    ----------
    graph
        Spots x spots first-ring adjacency (:func:`tmeflow.spatial_qc.spatial_graph`).

    Returns
    -------
    numpy.ndarray or None
        Spots x eigenvectors (:func:`tmeflow.stats.moran_eigenvectors`); None, with a warning, above
        :data:`tmeflow.stats.MSR_MAX_SPOTS` spots.
    """
    from ..stats import MSR_MAX_SPOTS, moran_eigenvectors

    if graph.shape[0] > MSR_MAX_SPOTS:
        logger.warning(
            "%d spots: above %d, no spatially constrained null (co-localisation and interface p-values NaN)",
            graph.shape[0],
            MSR_MAX_SPOTS,
        )
        return None
    return moran_eigenvectors(graph)


def colocalisation(
    proportions: pd.DataFrame,
    malignant: np.ndarray,
    graph: sp.csr_matrix,
    malignant_types: list[str],
    vectors: np.ndarray | None = None,
) -> pd.DataFrame:
    """Correlate each cell type's proportion with the malignant proportion in the same spot and in the neighbours.

    The p-value of ``r_lagged_malignant`` comes from Moran spectral randomisation of the cell type's
    proportion (Wagner & Dray 2015; :func:`tmeflow.stats.msr_linear_test`): the null keeps its spatial
    autocorrelation. Permuting spots i.i.d. (done before) ignores it, and two smooth but unrelated patterns
    then look co-localised far more often than the nominal level.

    Parameters
    ----------
    proportions
        Spots x types deconvolution proportions.
    malignant
        Malignant proportion per spot (:func:`malignant_proportion`).
    graph
        Spots x spots first-ring adjacency; the lag is the mean over the spot's neighbours, the spot excluded.
    malignant_types
        The malignant types (left out of the table).
    vectors
        Moran eigenvectors of ``graph``; None: computed here.

    Returns
    -------
    pandas.DataFrame
        ``cell_type``, ``r_same_spot``, ``r_lagged_malignant`` (Pearson), ``z_msr``, ``pval_msr`` and ``fdr``
        (BH over cell types), largest ``r_lagged_malignant`` first; NaN for a constant proportion.
    """
    from ..stats import msr_linear_test

    if vectors is None:
        vectors = section_eigenvectors(graph)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    lagged = (graph @ malignant) / np.maximum(degree, 1)
    z_lag = (lagged - lagged.mean()) / (lagged.std() or 1.0)
    n = len(z_lag)
    rows = []
    for cell_type in proportions.columns:
        if cell_type in malignant_types:
            continue
        x = proportions[cell_type].to_numpy(dtype=float)
        if x.std() == 0:
            rows.append((cell_type, np.nan, np.nan, np.nan, np.nan))
            continue
        r_spot = float(np.corrcoef(x, malignant)[0, 1]) if malignant.std() > 0 else np.nan
        if vectors is None:
            r_lag, z, p = float(np.mean((x - x.mean()) / x.std() * z_lag)), np.nan, np.nan
        else:
            r_lag, z, p = msr_linear_test(x, z_lag / (n * x.std()), vectors)
        rows.append((cell_type, r_spot, r_lag, z, p))
    table = pd.DataFrame(rows, columns=["cell_type", "r_same_spot", "r_lagged_malignant", "z_msr", "pval_msr"])
    table["fdr"] = bh_fdr(table["pval_msr"].to_numpy())
    return table.sort_values("r_lagged_malignant", ascending=False).reset_index(drop=True)


def interface_test(
    scores: np.ndarray, names: list[str], regions: np.ndarray, vectors: np.ndarray | None, fdr: float
) -> pd.DataFrame:
    """Test the interface enrichment of local ligand-receptor scores against Moran spectral randomisation.

    The difference of the mean score in interface spots and elsewhere, one-sided, against Moran spectral
    randomisation of each score (:func:`tmeflow.stats.msr_linear_test`). Kernel-smoothed local scores are
    strongly autocorrelated, so a Mann-Whitney test over spots (done before) treats thousands of dependent
    spots as independent; the constrained null keeps that autocorrelation.

    Parameters
    ----------
    scores
        Spots x interactions local scores.
    names
        The interactions (columns of ``scores``).
    regions
        Region per spot.
    vectors
        Moran eigenvectors of the section's graph (:func:`section_eigenvectors`); None: no constrained null
        (p-values NaN) for sections above :data:`tmeflow.stats.MSR_MAX_SPOTS` spots.
    fdr
        ``interface_enriched`` at FDR < ``fdr`` with a positive difference.

    Returns
    -------
    pandas.DataFrame
        ``interaction``, ``ligand``, ``receptor``, ``mean_interface``, ``mean_elsewhere``, ``z_msr``, ``pval``,
        ``difference``, ``fdr`` (BH over interactions) and ``interface_enriched``, smallest FDR first.
    """
    from ..stats import msr_linear_test

    interface = regions == "interface"
    weights = np.where(interface, 1.0 / max(interface.sum(), 1), -1.0 / max((~interface).sum(), 1))
    rows = []
    for k, name in enumerate(names):
        inside, outside = scores[interface, k], scores[~interface, k]
        z = p = np.nan
        if interface.sum() >= 3 and (~interface).sum() >= 3 and np.ptp(scores[:, k]) > 0 and vectors is not None:
            _, z, p = msr_linear_test(scores[:, k], weights, vectors, alternative="greater")
        rows.append((name, float(inside.mean()) if len(inside) else np.nan, float(outside.mean()), z, p))
    table = pd.DataFrame(rows, columns=["interaction", "mean_interface", "mean_elsewhere", "z_msr", "pval"])
    parts = table["interaction"].str.split("^", n=1, expand=True, regex=False)
    table.insert(1, "ligand", parts[0])
    table.insert(2, "receptor", parts[1] if parts.shape[1] > 1 else "")
    table["difference"] = table["mean_interface"] - table["mean_elsewhere"]
    table["fdr"] = bh_fdr(table["pval"].to_numpy())
    table["interface_enriched"] = (table["fdr"] < fdr) & (table["difference"] > 0)
    return table.sort_values(["fdr", "difference"], ascending=[True, False]).reset_index(drop=True)
