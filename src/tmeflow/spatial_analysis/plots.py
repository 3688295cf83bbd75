"""Figures of ``tmeflow spatial_analysis`` besides the on-tissue maps (:func:`tmeflow.spatial_qc.plot_on_tissue`).

Each ``plot_*`` function takes the data and returns a figure; :func:`tmeflow.spatial_analysis.run.write_outputs`
saves it (``tmeflow.io.save_figure``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..plotting import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_nhood_enrichment(frames: dict[str, pd.DataFrame], *, title: str) -> Figure:
    """Draw neighbourhood-enrichment z-scores as one heatmap per grouping.

    Parameters
    ----------
    frames
        Panel name -> square z-score table (cluster x cluster) from :func:`squidpy.gr.nhood_enrichment`
        (:func:`tmeflow.spatial_analysis.neighbourhood`); empty tables get no panel.
    title
        Figure title.

    Returns
    -------
    Figure
        One panel per non-empty table, a diverging colour scale symmetric about 0 per panel.
    """
    plt = pyplot()

    frames = {k: v for k, v in frames.items() if not v.empty}
    fig, axes = plt.subplots(1, max(1, len(frames)), figsize=(5.2 * max(1, len(frames)), 4.4), squeeze=False)
    for ax, (name, frame) in zip(axes.ravel(), frames.items(), strict=False):
        limit = float(np.nanmax(np.abs(frame.to_numpy()))) or 1.0
        image = ax.imshow(frame.to_numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks(range(frame.shape[1]), frame.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(frame.shape[0]), frame.index, fontsize=7)
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04, label="z-score")
    fig.suptitle(title)
    return fig


def plot_trajectory(binned: pd.DataFrame, *, title: str) -> Figure:
    """Draw signature scores and cell-type proportions along the tumour-to-stroma axis.

    Parameters
    ----------
    binned
        The binned trajectory table of :func:`tmeflow.spatial_analysis.trajectory`: ``signed_distance_mid``
        (bin centre, spot spacings, < 0 inside tumour), ``score_<signature>`` and ``prop_<cell type>`` columns.
    title
        Figure title.

    Returns
    -------
    Figure
        Two panels: the scores as z-scores across bins, the mean proportions; a dashed line at the boundary.
    """
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = binned["signed_distance_mid"]
    for column in [c for c in binned.columns if c.startswith("score_")]:
        v = binned[column]
        axes[0].plot(x, (v - v.mean()) / (v.std() or 1.0), marker="o", label=column.removeprefix("score_"))
    for column in [c for c in binned.columns if c.startswith("prop_")]:
        axes[1].plot(x, binned[column], marker=".", label=column.removeprefix("prop_"))
    for ax, label in zip(axes, ("signature score (z across bins)", "cell-type proportion"), strict=True):
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set(xlabel="signed distance to tumour boundary (spots; < 0 inside tumour)", ylabel=label)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    return fig
