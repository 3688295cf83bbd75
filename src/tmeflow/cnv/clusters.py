"""CNV clusters within each patient, window arms and the arm summary."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .positions import N_PCS, SCORE_NEIGHBOURS
from .reference import neighbour_transformer

if TYPE_CHECKING:
    from anndata import AnnData


def window_arms(var: pd.DataFrame, window: int, step: int, chr_pos: dict[str, int], n_windows: int) -> np.ndarray:
    """Assign every CNV window the chromosome arm of its central gene, as infercnvpy lays windows out.

    Parameters
    ----------
    var
        Gene table with ``cnv_gene`` (used for CNV), ``chromosome``, ``start`` and ``chr_arm``.
    window, step
        ``cnv_window`` genes per window and ``cnv_step`` genes between window starts.
    chr_pos
        First window of each chromosome (``uns['cnv']['chr_pos']``).
    n_windows
        Number of windows (columns of ``obsm['X_cnv']``).

    Returns
    -------
    numpy.ndarray
        Object array of ``n_windows`` arm names (e.g. ``'7p'``; ``None`` where no window maps).
    """
    placed = var[var["cnv_gene"].to_numpy(dtype=bool)]
    arms: np.ndarray = np.empty(n_windows, dtype=object)
    for chrom, first in chr_pos.items():
        genes = placed[placed["chromosome"] == chrom].sort_values("start")
        n = len(genes)
        if n > window:
            centres: np.ndarray = np.arange(0, n - window + 1)[::step] + window // 2
        else:
            centres = np.array([n // 2], dtype=np.int64)
        arms[first : first + len(centres)] = genes["chr_arm"].to_numpy()[centres]
    return arms


def smooth_over_neighbours(values: np.ndarray, distances, include: np.ndarray | None = None) -> np.ndarray:
    """Average each cell's value with its CNV neighbours' values.

    Parameters
    ----------
    values
        One value per cell.
    distances
        Cells x cells CNV-neighbour distances (an edge where > 0).
    include
        Boolean per cell: only these neighbours count (the baseline half of the reference, scored against the
        other half, is not comparable); ``None``: all.

    Returns
    -------
    numpy.ndarray
        Mean of the cell and its included neighbours, one per cell.
    """
    edges = (distances > 0).astype(np.float64)
    if include is not None:
        edges = sp.csr_matrix(edges) @ sp.diags(np.asarray(include, dtype=np.float64))
    graph = sp.csr_matrix(edges + sp.identity(distances.shape[0], format="csr"))
    return np.asarray(graph @ values).ravel() / np.asarray(graph.sum(axis=1)).ravel()


EXACT_NEIGHBOURS_MAX_CELLS = 30000


def _cluster_key(label: str) -> tuple:
    patient, _, number = str(label).rpartition(":")
    return (patient, int(number)) if number.isdigit() else (str(label), -1)


def cluster_cnv(adata: AnnData, *, resolution: float, seed: int) -> sp.csr_matrix:
    """Cluster the cells by CNV profile within each patient: CNV-PCA, neighbours and Leiden.

    Malignant clones are patient-specific, so clustering per patient loses nothing and keeps the
    neighbour search quadratic in the patient's cells only (exact scikit-learn neighbours up to
    ``EXACT_NEIGHBOURS_MAX_CELLS`` cells, no numba compilation; pynndescent above).

    Parameters
    ----------
    adata
        Cells with ``obsm['X_cnv']`` (:func:`tmeflow.cnv.infer_cnv`) and ``obs['patient']``.
    resolution
        ``cnv_leiden_resolution`` of :func:`infercnvpy.tl.leiden`.
    seed
        Seed of the PCA and Leiden.

    Returns
    -------
    scipy.sparse.csr_matrix
        CNV-neighbour distances of all cells (cells x cells, block-diagonal by patient).

    Adds
    ----
    ``obs['cnv_cluster']``
        Categorical ``<patient>:<n>`` (numeric order within patient).
    ``obsm['X_cnv_pca']``
        CNV principal components (``N_PCS`` columns; zero-padded for small patients).
    ``obsp['cnv_neighbors_distances']``
        The returned distances.
    """
    import anndata as ad
    import infercnvpy as cnv

    patients = adata.obs["patient"].astype(str).to_numpy()
    labels = np.empty(adata.n_obs, dtype=object)
    pcs = np.zeros((adata.n_obs, N_PCS), dtype=np.float32)
    rows, cols, values = [], [], []
    for patient in pd.unique(patients):
        cells = np.flatnonzero(patients == patient)
        if len(cells) < 3:
            labels[cells] = f"{patient}:0"
            continue
        sub = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names[cells]))
        sub.obsm["X_cnv"] = adata.obsm["X_cnv"][cells]
        n_comps = int(min(N_PCS, len(cells) - 1, sub.obsm["X_cnv"].shape[1] - 1))
        cnv.tl.pca(sub, n_comps=n_comps, random_state=seed)
        transformer = "sklearn" if len(cells) <= EXACT_NEIGHBOURS_MAX_CELLS else neighbour_transformer()
        # UMAP connectivities: the Gaussian kernel divides by zero where cells share one CNV profile
        # (flat, denoised normal cells), which left every cell a cluster of its own
        cnv.pp.neighbors(
            sub,
            n_neighbors=min(SCORE_NEIGHBOURS, len(cells) - 1),
            random_state=seed,
            method="umap",
            transformer=transformer,
        )
        cnv.tl.leiden(sub, resolution=resolution, random_state=seed, flavor="igraph", n_iterations=2, directed=False)
        labels[cells] = [f"{patient}:{k}" for k in sub.obs["cnv_leiden"].astype(str)]
        pcs[cells, :n_comps] = sub.obsm["X_cnv_pca"]
        dist = sp.coo_matrix(sub.obsp["cnv_neighbors_distances"])
        rows.append(cells[dist.row])
        cols.append(cells[dist.col])
        values.append(dist.data)
    adata.obs["cnv_cluster"] = pd.Categorical(labels, categories=sorted(pd.unique(labels), key=_cluster_key))
    adata.obsm["X_cnv_pca"] = pcs
    if rows:
        distances = sp.csr_matrix(
            (np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(adata.n_obs, adata.n_obs)
        )
    else:
        distances = sp.csr_matrix((adata.n_obs, adata.n_obs))
    adata.obsp["cnv_neighbors_distances"] = distances
    return distances


def arm_summary(adata: AnnData, arms: np.ndarray, threshold: float) -> pd.DataFrame:
    """Average the CNV signal per chromosome arm over the malignant cells of each patient and CNV cluster.

    Parameters
    ----------
    adata
        Cells after the malignant call (``obsm['X_cnv']``, ``obs`` ``malignant``, ``patient``, ``cnv_cluster``).
    arms
        Arm of every window (:func:`window_arms`).
    threshold
        ``cnv_arm_threshold``: mean above it is a ``gain``, below minus it a ``loss``, else ``neutral``.

    Returns
    -------
    pandas.DataFrame
        One row per patient x cluster (``cnv_cluster`` ``all`` for the patient) x arm: ``patient``,
        ``cnv_cluster``, ``n_cells``, ``chr_arm``, ``n_windows``, ``mean_cnv``, ``median_cnv``, ``call``.
    """
    X = adata.obsm["X_cnv"]
    malignant = adata.obs["malignant"].to_numpy(dtype=bool)
    arm_names = [a for a in pd.unique(arms) if a is not None]
    arm_order = sorted(arm_names, key=_arm_key)
    indicator = sp.csr_matrix(
        (np.ones(len(arms)), (np.arange(len(arms)), [arm_order.index(a) for a in arms])),
        shape=(len(arms), len(arm_order)),
    )
    n_windows = np.asarray(indicator.sum(axis=0)).ravel()
    rows = []
    patients = adata.obs["patient"].astype(str).to_numpy()
    clusters = adata.obs["cnv_cluster"].astype(str).to_numpy()
    # positions of each patient's malignant cells and of each of its clusters' (thousands at a million cells):
    # one grouping each, not one comparison of every cell per cluster
    malignant_cells = np.flatnonzero(malignant)
    of_patient = pd.Series(malignant_cells).groupby(patients[malignant_cells]).indices
    groups = []
    for patient in pd.unique(patients):
        if patient in of_patient:
            cells = malignant_cells[of_patient[patient]]
            groups.append((patient, "all", cells))
            of_cluster = pd.Series(cells).groupby(clusters[cells]).indices
            for cluster in sorted(of_cluster, key=_cluster_key):
                groups.append((patient, cluster, cells[of_cluster[cluster]]))
    arm_index = np.array([arm_order.index(a) for a in arms])
    for patient, cluster, cells in groups:
        mean_window = np.asarray(X[cells].mean(axis=0)).ravel()
        per_arm = (mean_window @ indicator) / n_windows
        median_arm = [float(np.median(mean_window[arm_index == i])) for i in range(len(arm_order))]
        for arm, value, median, n_win in zip(arm_order, per_arm, median_arm, n_windows, strict=True):
            call = "gain" if value > threshold else "loss" if value < -threshold else "neutral"
            rows.append(
                {
                    "patient": patient,
                    "cnv_cluster": cluster,
                    "n_cells": len(cells),
                    "chr_arm": arm,
                    "n_windows": int(n_win),
                    "mean_cnv": float(value),
                    "median_cnv": median,
                    "call": call,
                }
            )
    return pd.DataFrame(
        rows, columns=["patient", "cnv_cluster", "n_cells", "chr_arm", "n_windows", "mean_cnv", "median_cnv", "call"]
    )


def _arm_key(arm: str) -> tuple:
    match = re.match(r"^(\d+)(.*)$", str(arm))
    return (0, int(match.group(1)), match.group(2)) if match else (1, 0, str(arm))
