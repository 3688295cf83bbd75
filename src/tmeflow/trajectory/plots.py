"""Trajectory plots: embedding panels and fate-gene trends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..plotting import pyplot

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure


def plot_embedding(adata: AnnData, fate_names: list[str], labels: dict[str, dict[str, Any]]) -> Figure:
    """Draw pseudotime, each fate's probability and the condition on diffusion components 1 and 2.

    Parameters
    ----------
    adata
        Cells after the trajectory stage: ``obsm['X_diffmap']`` (at least 3 components;
        component 0 is the constant one and is skipped), ``obs['pseudotime']``,
        ``obs['fate_probability_<fate>']`` for each fate, ``obs['condition']`` and ``uns['iroot']``.
    fate_names
        Terminal states, one panel each, in this order.
    labels
        Per fate, its description; ``labels[fate]['label']`` (e.g. the majority cell type) is shown in the
        panel title.

    Returns
    -------
    Figure
        One row of ``len(fate_names) + 2`` panels (pseudotime, each fate, condition); the root cell is
        marked with a red star in every panel.
    """
    plt = pyplot()
    xy = adata.obsm["X_diffmap"][:, 1:3]
    panels = [("pseudotime", adata.obs["pseudotime"].to_numpy(dtype=float), "viridis")]
    panels += [
        (f"{f} ({labels[f]['label']})", adata.obs[f"fate_probability_{f}"].to_numpy(dtype=float), "magma_r")
        for f in fate_names
    ]
    ncol = len(panels) + 1
    fig, axes = plt.subplots(1, ncol, figsize=(3.3 * ncol, 3.2), squeeze=False)
    for ax, (title, values, cmap) in zip(axes.ravel(), panels, strict=False):  # one more axis: the condition panel
        dots = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=4, cmap=cmap, linewidths=0)
        fig.colorbar(dots, ax=ax, shrink=0.7)
        ax.set_title(title, fontsize=8)
    ax = axes.ravel()[-1]
    conditions = adata.obs["condition"].astype(str)
    cmap = plt.get_cmap("tab10")
    for i, condition in enumerate(sorted(conditions.unique())):
        sel = (conditions == condition).to_numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=cmap(i % 10), label=condition, linewidths=0)
    ax.legend(fontsize=6, markerscale=2, frameon=False)
    ax.set_title("condition", fontsize=8)
    root = int(adata.uns["iroot"])
    for ax in axes.ravel():
        ax.scatter(xy[root, 0], xy[root, 1], marker="*", s=120, color="red", edgecolors="k")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_trends(
    adata: AnnData, genes_table: pd.DataFrame, fate_names: list[str], n_genes: int = 12, n_bins: int = 30
) -> Figure:
    """Draw one heatmap per fate: top fate genes (rows) x pseudotime bins of the cells most likely in that fate.

    Each bin shows the fate-probability-weighted mean of the gene's expression, z-scored per gene over all
    cells (colour range -1.5 to 1.5).

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``, ``obs['pseudotime']``, ``obs['fate']`` and
        ``obs['fate_probability_<fate>']``.
    genes_table
        Fate genes with ``fate`` and ``gene`` columns, best first within a fate.
    fate_names
        Terminal states, one panel each.
    n_genes
        Top genes per fate (default 12: a readable heatmap for 2-4 fates).
    n_bins
        Equal-width pseudotime bins (default 30).

    Returns
    -------
    Figure
        One panel per fate over the union of the fates' top genes; empty panels when there are none.
    """
    plt = pyplot()
    top = {f: genes_table[(genes_table["fate"] == f)].head(n_genes)["gene"].tolist() for f in fate_names}
    genes = list(dict.fromkeys(g for f in fate_names for g in top[f]))
    fig, axes = plt.subplots(
        1, len(fate_names), figsize=(3.0 * len(fate_names) + 1.5, 0.22 * max(len(genes), 4) + 1.5), squeeze=False
    )
    if not genes:
        return fig
    X = adata[:, genes].X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-9)
    t = adata.obs["pseudotime"].to_numpy(dtype=float)
    best = adata.obs["fate"].astype(str).to_numpy()
    edges = np.linspace(np.nanmin(t), np.nanmax(t), n_bins + 1)
    for ax, fate in zip(axes.ravel(), fate_names, strict=True):
        w = adata.obs[f"fate_probability_{fate}"].to_numpy(dtype=float)
        mat = np.full((len(genes), n_bins), np.nan)
        idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
        for b in range(n_bins):
            sel = (idx == b) & np.isfinite(t)
            if sel.any() and w[sel].sum() > 0:
                mat[:, b] = (X[sel] * w[sel, None]).sum(axis=0) / w[sel].sum()
        im = ax.imshow(mat, aspect="auto", cmap="RdBu_r", vmin=-1.5, vmax=1.5, interpolation="nearest")
        ax.set_yticks(range(len(genes)))
        ax.set_yticklabels(genes, fontsize=6)
        ax.set_xlabel("pseudotime (bins; cells weighted by fate probability)", fontsize=7)
        ax.set_title(f"{fate} ({int((best == fate).sum())} cells)", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="z-score")
    return fig


def plot_branch_heatmap(result: dict[str, Any], max_genes: int = 200) -> Figure:
    """Draw the root-to-fate heatmap of branch-dependent genes (as the gastric study's branched heatmap).

    Branch genes x pseudotime grid, one panel per fate, rows ordered by cluster and then by where the gene
    peaks; cohort-level smooths z-scored per gene over all panels.

    Parameters
    ----------
    result
        What :func:`tmeflow.trajectory.branch.branch_analysis` returns: ``fate_names``, ``clusters``
        (cluster per branch gene), ``genes`` (table with ``gene`` and ``pvalue_branch``), ``tested_genes``
        and ``pooled`` (lineages x grid x tested genes smooths).
    max_genes
        At most this many genes, the smallest branch p-values (default 200: rows stay visible).

    Returns
    -------
    Figure
        One panel per fate; a panel saying so when no gene is branch-dependent.
    """
    plt = pyplot()
    fates = result["fate_names"]
    clusters = result["clusters"]
    table = result["genes"].set_index("gene")
    genes = list(clusters.index)
    if len(genes) > max_genes:
        genes = list(table.loc[genes, "pvalue_branch"].nsmallest(max_genes).index)
    pos = pd.Index(result["tested_genes"]).get_indexer(genes)
    fig, axes = plt.subplots(
        1, len(fates), figsize=(2.8 * len(fates) + 2.0, 0.12 * max(len(genes), 20) + 1.8), squeeze=False
    )
    if not genes:
        axes[0, 0].text(0.5, 0.5, "no branch-dependent genes at this FDR", ha="center", va="center", fontsize=8)
        return fig
    curves = result["pooled"][:, :, pos]  # L x grid x genes
    flat = np.concatenate(list(curves), axis=0)
    z = (curves - flat.mean(axis=0)) / np.maximum(flat.std(axis=0), 1e-9)
    peak = np.argmax(np.concatenate(list(z), axis=0), axis=0)
    order = np.lexsort((peak, clusters.loc[genes].to_numpy()))
    labels = clusters.loc[genes].to_numpy()[order]
    for ax, (lineage, fate) in zip(axes.ravel(), enumerate(fates), strict=True):
        im = ax.imshow(z[lineage][:, order].T, aspect="auto", cmap="RdBu_r", vmin=-2, vmax=2, interpolation="nearest")
        ax.set_title(f"root -> {fate}", fontsize=8)
        ax.set_xticks([0, z.shape[1] - 1], ["root", "fate"], fontsize=7)
        for boundary in np.flatnonzero(np.diff(labels)) + 0.5:
            ax.axhline(boundary, color="k", lw=0.6)
        if len(genes) <= 60:
            ax.set_yticks(range(len(genes)), [genes[i] for i in order], fontsize=5)
        else:
            ax.set_yticks([])
    starts = np.r_[0, np.flatnonzero(np.diff(labels)) + 1]
    axes[0, 0].set_ylabel(
        "branch genes by cluster (" + ", ".join(f"{labels[s]}" for s in starts) + " top to bottom)", fontsize=7
    )
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="z-score of the smooth")
    return fig


def plot_set_trends(trends: pd.DataFrame) -> Figure:
    """Draw pseudotime trends of named gene sets (e.g. necroptosis, DAMPs): one panel per set, one line per fate.

    Parameters
    ----------
    trends
        One row per gene set, fate and grid point: ``gene_set``, ``fate``, ``pseudotime_scaled``, ``score``
        (mean z-score of the set's genes) and ``pvalue_branch`` (the set's branch test, shown in the title).

    Returns
    -------
    Figure
        One panel per gene set (a single empty panel when ``trends`` is empty).
    """
    plt = pyplot()
    names = list(dict.fromkeys(trends["gene_set"])) if len(trends) else []
    fig, axes = plt.subplots(1, max(len(names), 1), figsize=(3.6 * max(len(names), 1), 3.0), squeeze=False)
    for ax, name in zip(axes.ravel(), names, strict=False):  # one empty axis when there is no set
        block = trends[trends["gene_set"] == name]
        for fate, rows in block.groupby("fate", sort=False):
            ax.plot(rows["pseudotime_scaled"], rows["score"], label=fate)
        p = block["pvalue_branch"].iloc[0]
        ax.set_title(f"{name}\nbranch p = {p:.2g}" if np.isfinite(p) else name, fontsize=7)
        ax.set_xlabel("pseudotime (scaled)", fontsize=7)
        ax.set_ylabel("mean z-score of the set's genes", fontsize=7)
        ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig
