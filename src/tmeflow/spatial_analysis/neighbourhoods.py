"""Neighbourhood enrichment, co-localisation with malignant cells and the interface test (Moran spectral randomisation)."""

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
    """Neighbourhood-enrichment z-scores (cluster x cluster) and co-occurrence (long table)."""
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
    """Moran eigenvectors of the section's spatial graph for the spatially constrained nulls, or None
    (with a warning) above :data:`tmeflow.stats.MSR_MAX_SPOTS` spots."""
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
    """Per cell type: correlation with the malignant proportion in the same spot and in the neighbours.

    The p-value of ``r_lagged_malignant`` comes from Moran spectral randomisation of the cell type's
    proportion (:func:`tmeflow.stats.msr_linear_test`): the null keeps its spatial autocorrelation.
    Permuting spots i.i.d. (done before) ignores it, and two smooth but unrelated patterns then
    look co-localised far more often than the nominal level. ``vectors``: Moran eigenvectors of
    ``graph`` (computed when None)."""
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
    """Interface enrichment of local ligand-receptor scores (spots x interactions): the difference of
    the mean score in interface spots and elsewhere, tested one-sided against Moran spectral
    randomisation of each score (:func:`tmeflow.stats.msr_linear_test`). Kernel-smoothed local
    scores are strongly autocorrelated, so a Mann-Whitney test over spots (done before) treats
    thousands of dependent spots as independent; the constrained null keeps that autocorrelation.
    BH FDR over interactions; ``interface_enriched`` at FDR < ``fdr`` with a positive difference."""
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
