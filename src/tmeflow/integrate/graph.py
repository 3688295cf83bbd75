"""Neighbour graph, UMAP and Leiden clusters."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from .settings import IntegrationSettings


def graph_and_umap(
    adata: AnnData, rep: str, *, n_neighbors: int, n_pcs: int, seed: int, key: str | None = None
) -> None:
    """Build the ``n_neighbors`` kNN graph on ``rep`` and its UMAP (McInnes et al. 2018), seeded.

    Parameters
    ----------
    adata
        Cells with ``obsm[rep]``.
    rep
        Embedding of the graph (its first ``n_pcs`` columns for ``X_pca``).
    n_neighbors
        Neighbours per cell.
    n_pcs
        PCs used when ``rep`` is ``X_pca``.
    seed
        Random state of the graph and the UMAP.
    key
        Name of a secondary graph (None: the default one).

    Adds
    ----
    ``obsp['connectivities']``, ``obsp['distances']``, ``uns['neighbors']``
        The graph (``obsp['<key>_connectivities']`` ... and ``uns[key]`` with ``key``).
    ``obsm['X_umap']``
        The UMAP (``obsm['X_umap_<key>']`` with ``key``).
    """
    import scanpy as sc

    use_pcs = min(n_pcs, adata.obsm[rep].shape[1]) if rep == "X_pca" else None
    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep=rep, n_pcs=use_pcs, random_state=seed, key_added=key)
    if key is None:
        sc.tl.umap(adata, random_state=seed)
    else:
        sc.tl.umap(adata, random_state=seed, neighbors_key=key)
        adata.obsm[f"X_umap_{key}"] = adata.obsm.pop("X_umap")


def uncorrected_umap(adata: AnnData, settings: IntegrationSettings) -> None:
    """Compute the UMAP of the uncorrected PCs for the before/after figure.

    Computed on at most ``metrics_max_cells`` cells (seeded subsample; the other rows are NaN): it only feeds the
    figure, and a full second graph + UMAP would double the cost on large cohorts.

    Parameters
    ----------
    adata
        Cells with ``obsm['X_pca']``.
    settings
        ``metrics_max_cells``, ``n_neighbors``, ``n_pcs`` and ``seed``.

    Adds
    ----
    ``obsm['X_umap_uncorrected']``
        Cells x 2, NaN outside the subsample.
    """
    import anndata as ad

    from ..metrics import subsample

    idx = subsample(adata.n_obs, settings.metrics_max_cells, settings.seed)
    view = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names[idx]))
    view.obsm["X_pca"] = np.asarray(adata.obsm["X_pca"][idx])
    graph_and_umap(view, "X_pca", n_neighbors=settings.n_neighbors, n_pcs=settings.n_pcs, seed=settings.seed)
    coords = np.full((adata.n_obs, 2), np.nan, dtype=np.float32)
    coords[idx] = view.obsm["X_umap"]
    adata.obsm["X_umap_uncorrected"] = coords


def leiden(
    adata: AnnData, resolution: float, seed: int, *, key_added: str = "leiden", neighbors_key: str | None = None
) -> None:
    """Cluster the kNN graph with Leiden (Traag et al. 2019, Sci Rep; igraph implementation, 2 iterations, seeded).

    Parameters
    ----------
    adata
        Cells with a neighbour graph.
    resolution
        Leiden resolution (``leiden_resolution``).
    seed
        Random state.
    key_added
        Obs column of the clusters.
    neighbors_key
        The graph to cluster (None: the default one).

    Adds
    ----
    ``obs[key_added]``
        Cluster labels (categorical strings ``0``, ``1`` ...).
    ``uns[key_added]``
        Scanpy's record of the parameters.
    """
    import scanpy as sc

    sc.tl.leiden(adata, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed,
                 key_added=key_added, neighbors_key=neighbors_key)  # fmt: skip
