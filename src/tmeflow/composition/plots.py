"""Composition figures: stacked proportions per sample and per-cell-type boxplots."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..plotting import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_stacked(props: pd.DataFrame, samples: pd.DataFrame, conditions: list[str], title: str) -> Figure:
    """Draw the cell-type proportions of every sample as stacked bars.

    Parameters
    ----------
    props
        Samples x cell types proportions (rows sum to 1).
    samples
        :func:`tmeflow.composition.sample_table` (``condition`` per sample).
    conditions
        Condition order; samples are grouped by it, then sorted by name.
    title
        Figure title.

    Returns
    -------
    Figure
        One bar per sample (tick label ``sample (condition)``), legend outside the axes; the caller saves it.
    """
    plt = pyplot()

    order = sorted(props.index, key=lambda s: (conditions.index(samples.loc[s, "condition"]), s))
    data = props.loc[order]
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(order) + 2.5), 4.2))
    bottom = np.zeros(len(order))
    for i, cell_type in enumerate(data.columns):
        ax.bar(range(len(order)), data[cell_type], bottom=bottom, color=cmap(i % 20), label=cell_type, width=0.85)
        bottom += data[cell_type].to_numpy()
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([f"{s}\n({samples.loc[s, 'condition']})" for s in order], rotation=90, fontsize=7)
    ax.set_ylabel("proportion of cells")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=7, frameon=False)
    return fig


def plot_boxes(
    props: pd.DataFrame, samples: pd.DataFrame, conditions: list[str], da: pd.DataFrame | None, title: str
) -> Figure:
    """Draw the proportions of each cell type per condition as boxplots with the samples as points.

    Parameters
    ----------
    props
        Samples x cell types proportions.
    samples
        :func:`tmeflow.composition.sample_table` (``condition`` per sample).
    conditions
        Conditions in box order.
    da
        :func:`tmeflow.composition.propeller` result whose ``fdr`` is written under each panel title, or ``None``.
    title
        Figure title.

    Returns
    -------
    Figure
        One panel per cell type, 5 a row (jitter seeded); the caller saves it.
    """
    plt = pyplot()

    types = list(props.columns)
    ncol = min(5, len(types))
    nrow = int(np.ceil(len(types) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.3 * nrow), squeeze=False)
    fdr = {} if da is None else dict(zip(da["cell_type"], da["fdr"], strict=True))
    rng = np.random.default_rng(0)  # jitter only
    for ax, cell_type in zip(axes.ravel(), types, strict=False):
        groups = [
            props.loc[samples.index[samples["condition"] == c].intersection(props.index), cell_type].to_numpy()
            for c in conditions
        ]
        ax.boxplot(groups, showfliers=False)
        for i, values in enumerate(groups):
            ax.scatter(
                np.full(len(values), i + 1) + rng.uniform(-0.12, 0.12, len(values)), values, s=8, color="k", zorder=3
            )
        ax.set_xticks(range(1, len(conditions) + 1))
        ax.set_xticklabels(conditions, rotation=45, fontsize=7)
        label = f"{cell_type}" + (f"\nFDR {fdr[cell_type]:.2g}" if cell_type in fdr else "")
        ax.set_title(label, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.ravel()[len(types) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig
