"""Pathways figures: score heatmaps, bubble grids and GSEA enrichment curves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..plotting import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_heatmap(frame: pd.DataFrame, title: str, *, center: bool = True) -> Figure:
    """Draw a rows x columns heatmap of scores, rows z-scored across columns when ``center``.

    Parameters
    ----------
    frame
        Scores (e.g. ssGSEA signatures x conditions); index and columns label the axes.
    title
        Figure title.
    center
        Z-score each row across the columns (default; the signatures' scales differ); with a single column the
        raw scores are drawn.

    Returns
    -------
    Figure
        Diverging heatmap symmetric about 0, with a colour bar; the caller saves it.
    """
    plt = pyplot()
    data = frame.astype(float)
    if center and data.shape[1] > 1:
        sd = data.std(axis=1).replace(0, 1)
        data = data.sub(data.mean(axis=1), axis=0).div(sd, axis=0)
    fig, ax = plt.subplots(figsize=(max(3.5, 0.45 * data.shape[1] + 3), max(2.5, 0.28 * data.shape[0] + 1.2)))
    limit = np.nanmax(np.abs(data.to_numpy())) if data.size else 1.0
    image = ax.imshow(data.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(range(data.shape[1]))
    ax.set_xticklabels(data.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(data.shape[0]))
    ax.set_yticklabels(data.index, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.6, label="row z-score" if center else "score")
    ax.set_title(title, fontsize=9)
    return fig


def plot_bubbles(
    frame: pd.DataFrame, x: str, y: str, colour: str, size: str, title: str, colour_label: str, size_label: str
) -> Figure:
    """Draw a bubble grid: one point per row of ``frame``, placed by two label columns.

    Parameters
    ----------
    frame
        Long table, one row per point.
    x, y
        Columns whose labels (in order of first appearance) make the x and y axes.
    colour
        Numeric column mapped to a diverging colour scale symmetric about 0 (e.g. NES).
    size
        Non-negative numeric column mapped to the point area (largest point 120 pt^2; e.g. -log10 FDR).
    title
        Figure title.
    colour_label, size_label
        Legends of the colour bar and of the size encoding (in the title).

    Returns
    -------
    Figure
        The bubble grid; the caller saves it.
    """
    plt = pyplot()
    xs = list(dict.fromkeys(frame[x]))
    ys = list(dict.fromkeys(frame[y]))
    fig, ax = plt.subplots(figsize=(max(3.5, 0.5 * len(xs) + 3.5), max(2.5, 0.3 * len(ys) + 1.2)))
    sizes = frame[size].astype(float).to_numpy()
    scale = 120.0 / max(1e-9, np.nanmax(sizes)) if len(sizes) else 1.0
    values = frame[colour].astype(float)
    limit = float(np.nanmax(np.abs(values))) if len(values) else 1.0
    points = ax.scatter(
        [xs.index(v) for v in frame[x]],
        [ys.index(v) for v in frame[y]],
        s=np.nan_to_num(sizes) * scale + 2,
        c=values,
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        edgecolors="k",
        linewidths=0.3,
    )
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels(xs, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ys)))
    ax.set_yticklabels(ys, fontsize=7)
    fig.colorbar(points, ax=ax, shrink=0.6, label=colour_label)
    ax.set_title(f"{title}\n(size: {size_label})", fontsize=9)
    return fig


def plot_enrichment(curves: list[tuple[str, str, float, np.ndarray, np.ndarray]], title: str) -> Figure:
    """Draw the GSEA running enrichment score and the hits of one gene set per panel.

    Parameters
    ----------
    curves
        One ``(cell type, term, NES, running enrichment score per rank, hit ranks)`` per panel (Subramanian et
        al. 2005).
    title
        Figure title.

    Returns
    -------
    Figure
        One panel per curve (an empty one when ``curves`` is empty); the caller saves it.
    """
    plt = pyplot()
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.0), squeeze=False)
    for ax, (group, term, nes, res, hits) in zip(axes.ravel(), curves, strict=False):
        ax.plot(np.arange(len(res)), res, color="#2b8cbe", lw=1.2)
        ax.axhline(0, color="k", lw=0.5)
        low = float(np.min(res)) if len(res) else 0.0
        ax.vlines(hits, low - 0.08, low - 0.02, color="k", lw=0.4)
        ax.set_title(f"{group}: {term}\nNES {nes:.2f}", fontsize=7)
        ax.set_xlabel("gene rank", fontsize=7)
        ax.set_ylabel("running enrichment score", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
