"""Integration metrics per embedding and the before/after UMAP figure."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from anndata import AnnData

from ..errors import TmeflowInputError
from ..plotting import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def label_key(adata: AnnData, metrics_label_key: str | None) -> str | None:
    """Choose the obs column used as cell labels by the conservation metrics.

    Parameters
    ----------
    adata
        The integrated cells.
    metrics_label_key
        The user's choice (``metrics_label_key``); empty or None: ``cell_type`` when present.

    Returns
    -------
    str or None
        The column, or None when there is none.

    Raises
    ------
    TmeflowInputError
        ``metrics_label_key`` is not an obs column.
    """
    key = metrics_label_key or ""
    if key:
        if key not in adata.obs:
            raise TmeflowInputError(f"metrics_label_key '{key}' is not an obs column", column=key)
        return key
    return "cell_type" if "cell_type" in adata.obs else None


def metrics_table(
    adata: AnnData, embeddings: dict[str, np.ndarray], labels_key: str | None, *, max_cells: int, seed: int
) -> pd.DataFrame:
    """Compute the scIB metrics (:func:`tmeflow.metrics.integration_metrics`) of each embedding and batch key.

    Parameters
    ----------
    adata
        Cells with ``obs['sample']`` and/or ``obs['batch']`` (keys with fewer than 2 levels are skipped).
    embeddings
        ``{name: cells x dimensions}``, e.g. uncorrected PCs and the corrected embedding.
    labels_key
        Obs column of the cell labels (:func:`label_key`); None: no label metrics.
    max_cells
        Cells scored per metric (seeded subsample above it).
    seed
        Seed of the subsample.

    Returns
    -------
    pandas.DataFrame
        One row per embedding and batch key: ``Embedding, embedding, batch_key, label_key`` and the metrics.
    """
    from ..metrics import integration_metrics

    labels = None if labels_key is None else adata.obs[labels_key].astype(str).to_numpy()
    rows = []
    for key in ("sample", "batch"):
        if key not in adata.obs or adata.obs[key].nunique() < 2:
            continue
        for name, emb in embeddings.items():
            values = integration_metrics(emb, adata.obs[key].to_numpy(), labels, max_cells=max_cells, seed=seed)
            rows.append(
                {
                    "Embedding": f"{name} ({key})",
                    "embedding": name,
                    "batch_key": key,
                    "label_key": labels_key or "",
                    **values,
                }
            )
    return pd.DataFrame(rows)


def plot_umaps(adata: AnnData, basis: str, keys: list[str], title: str) -> Figure:
    """Draw one UMAP panel per obs key (categorical colours, legend when it fits).

    Cells are drawn in a fixed random order (seed 0) so that no category is painted on top of all
    the others; rows of ``obsm[basis]`` that are NaN (cells left out of a subsampled embedding) are
    not drawn.

    Parameters
    ----------
    adata
        Cells with the embedding in ``obsm[basis]`` and every key of ``keys`` in ``obs``.
    basis
        ``obsm`` key of a 2-D embedding (``X_umap``, ``X_umap_uncorrected``).
    keys
        ``obs`` columns, one panel each, coloured as categories (``tab10``, ``tab20`` above 10).
    title
        Figure title.

    Returns
    -------
    Figure
        One row of ``len(keys)`` panels; a legend beside each panel with at most 25 categories.
    """
    plt = pyplot()

    coords = np.asarray(adata.obsm[basis])
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4.0), squeeze=False)
    shown = np.flatnonzero(np.isfinite(coords).all(axis=1))  # a subsampled embedding has NaN rows
    order = np.random.default_rng(0).permutation(shown)  # no category painted on top of all others
    size = max(0.5, min(8.0, 30000 / max(len(shown), 1)))
    for ax, key in zip(axes[0], keys, strict=True):
        values = adata.obs[key].astype(str).to_numpy()
        categories = sorted(pd.unique(values))
        cmap = plt.get_cmap("tab20" if len(categories) > 10 else "tab10")
        colour = {c: cmap(i % cmap.N) for i, c in enumerate(categories)}
        ax.scatter(
            coords[order, 0],
            coords[order, 1],
            c=[colour[v] for v in values[order]],
            s=size,
            linewidths=0,
            rasterized=True,
        )
        ax.set(title=key, xticks=[], yticks=[], xlabel="UMAP1", ylabel="UMAP2")
        if len(categories) <= 25:
            handles = [plt.Line2D([], [], marker="o", ls="", color=colour[c], label=c) for c in categories]
            ax.legend(handles=handles, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig
