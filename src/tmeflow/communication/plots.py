"""Figures of ``tmeflow communication``.

Pair heatmaps, differential dot plot, pathway circle plots, differential pathway heatmap and signalling-role heatmap
(CellChat's ``netVisual_circle``, ``netVisual_heatmap`` and ``netAnalysis_signalingRole_heatmap``, Jin et al. 2021).
Each ``plot_*`` takes the data and returns the figure; :mod:`tmeflow.communication.run` saves it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..plotting import pyplot

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def plot_pair_heatmaps(
    counts: pd.DataFrame, value: str, conditions: list[str], pairs: list[tuple[str, str]], title: str
) -> Figure:
    """Draw a source x target heatmap per condition and of each contrast's difference.

    Parameters
    ----------
    counts
        Per condition and source -> target values (:func:`tmeflow.communication.count_strength`).
    value
        The column drawn: ``n_interactions`` or ``strength``.
    conditions
        The conditions with a panel (one colour scale across them).
    pairs
        (test, reference) pairs; each gets a difference panel (test - reference, diverging scale).
    title
        Figure title.

    Returns
    -------
    Figure
        One row of panels.
    """
    plt = pyplot()
    types = sorted(set(counts["source"]) | set(counts["target"]))
    mats = {
        c: counts[counts["condition"] == c]
        .pivot_table(index="source", columns="target", values=value, aggfunc="sum")
        .reindex(index=types, columns=types)
        .fillna(0.0)
        for c in conditions
    }
    panels = [(c, mats[c], "Reds") for c in conditions]
    panels += [(f"{t} - {r}", mats[t] - mats[r], "RdBu_r") for t, r in pairs if t in mats and r in mats]
    fig, axes = plt.subplots(
        1,
        len(panels),
        figsize=(0.35 * len(types) * len(panels) + 2.5 * len(panels), 0.35 * len(types) + 2.2),
        squeeze=False,
    )
    for ax, (label, mat, cmap) in zip(axes.ravel(), panels, strict=True):
        values = mat.to_numpy()
        if cmap == "RdBu_r":
            bound = max(np.abs(values).max(), 1e-9)
            im = ax.imshow(values, cmap=cmap, vmin=-bound, vmax=bound)
        else:  # one scale for every condition, so that panels compare
            im = ax.imshow(
                values, cmap=cmap, vmin=0, vmax=max(max(float(m.to_numpy().max()) for m in mats.values()), 1e-9)
            )
        ax.set_xticks(range(len(types)))
        ax.set_xticklabels(types, rotation=90, fontsize=7)
        ax.set_yticks(range(len(types)))
        ax.set_yticklabels(types, fontsize=7)
        ax.set_xlabel("target", fontsize=8)
        ax.set_ylabel("source", fontsize=8)
        ax.set_title(label, fontsize=9)
        fig.colorbar(im, ax=ax, shrink=0.6)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def plot_diff_dots(table: pd.DataFrame, top_n: int, title: str) -> Figure:
    """Draw the top differential interactions as a dot plot (CellChat's ``netVisual_bubble``).

    Parameters
    ----------
    table
        Differential interactions (:func:`tmeflow.communication.differential_interactions`), smallest
        p-value first.
    top_n
        How many interactions with a p-value are drawn (``communication_top_n``).
    title
        Figure title.

    Returns
    -------
    Figure
        Source -> target pairs (x) by interaction (y); colour: log2 fold change, size: -log10 p.
    """
    plt = pyplot()
    top = table.dropna(subset=["pvalue"]).head(top_n)
    pairs = list(dict.fromkeys(top["source"] + " -> " + top["target"]))
    lrs = list(dict.fromkeys(top["interaction"]))
    fig, ax = plt.subplots(figsize=(1.0 + 0.45 * len(pairs) + 2.5, 1.0 + 0.3 * len(lrs)))
    x = [pairs.index(p) for p in top["source"] + " -> " + top["target"]]
    y = [lrs.index(i) for i in top["interaction"]]
    size = 20 + 40 * np.clip(-np.log10(np.clip(top["pvalue"].to_numpy(), 1e-300, 1)), 0, 10)
    bound = max(float(top["logfc"].abs().max()), 1e-9) if len(top) else 1.0
    dots = ax.scatter(
        x, y, s=size, c=top["logfc"], cmap="RdBu_r", vmin=-bound, vmax=bound, edgecolors="k", linewidths=0.4
    )
    ax.set_xticks(range(len(pairs)))
    ax.set_xticklabels(pairs, rotation=90, fontsize=7)
    ax.set_yticks(range(len(lrs)))
    ax.set_yticklabels(lrs, fontsize=7)
    ax.set_xlim(-0.7, len(pairs) - 0.3)
    ax.set_ylim(-0.7, len(lrs) - 0.3)
    fig.colorbar(dots, ax=ax, shrink=0.6, label="log2 fold change (sample-level score)")
    ax.set_title(f"{title}\n(size: -log10 p)", fontsize=9)
    fig.tight_layout()
    return fig


def plot_pathway_circles(strength: pd.DataFrame, pathway: str, conditions: list[str]) -> Figure:
    """Draw one pathway's circle plot per condition (CellChat's ``netVisual_circle``).

    Cell types sit on a circle; an arrow source -> target has a width proportional to the pathway
    strength (one scale across conditions); self-signalling is drawn as a ring around the node.

    Parameters
    ----------
    strength
        Per condition, pathway and source -> target strength (:func:`tmeflow.communication.pathway_table`).
    pathway
        The pathway drawn.
    conditions
        One panel per condition, in this order.

    Returns
    -------
    Figure
        One panel per condition.
    """
    from matplotlib.patches import FancyArrowPatch

    plt = pyplot()
    table = strength[strength["pathway"] == pathway]
    types = sorted(set(strength["source"]) | set(strength["target"]))
    angle = {t: 2 * np.pi * i / max(len(types), 1) for i, t in enumerate(types)}
    pos = {t: (np.cos(a), np.sin(a)) for t, a in angle.items()}
    colours = {t: plt.get_cmap("tab20")(i % 20) for i, t in enumerate(types)}
    top = max(float(table["strength"].max()) if len(table) else 0.0, 1e-9)
    fig, axes = plt.subplots(1, len(conditions), figsize=(4.2 * len(conditions), 4.6), squeeze=False)
    for ax, condition in zip(axes.ravel(), conditions, strict=False):
        block = table[table["condition"] == condition]
        sent = block.groupby("source", observed=True)["strength"].sum()
        for _, row in block.iterrows():
            width = 0.5 + 6.0 * row["strength"] / top
            if row["source"] == row["target"]:
                x, y = pos[row["source"]]
                ax.add_patch(
                    plt.Circle((1.12 * x, 1.12 * y), 0.1, fill=False, lw=width, color=colours[row["source"]], alpha=0.7)
                )
                continue
            ax.add_patch(
                FancyArrowPatch(
                    pos[row["source"]],
                    pos[row["target"]],
                    connectionstyle="arc3,rad=0.2",
                    arrowstyle="-|>",
                    mutation_scale=8 + width * 2,
                    lw=width,
                    color=colours[row["source"]],
                    alpha=0.7,
                    shrinkA=12,
                    shrinkB=12,
                )
            )
        for t in types:
            size = 60 + 500 * float(sent.get(t, 0.0)) / max(float(sent.max()) if len(sent) else 0.0, 1e-9)
            ax.scatter(*pos[t], s=size, color=colours[t], edgecolors="k", zorder=3)
            x, y = pos[t]
            ax.text(1.3 * x, 1.3 * y, t, ha="center", va="center", fontsize=7)
        ax.set_xlim(-1.7, 1.7)
        ax.set_ylim(-1.7, 1.7)
        ax.set_aspect("equal")
        ax.axis("off")
        ax.set_title(f"{pathway}: {condition}\n(total strength {block['strength'].sum():.3g})", fontsize=9)
    fig.tight_layout()
    return fig


def plot_pathway_diff_heatmap(table: pd.DataFrame, top_n: int, title: str) -> Figure:
    """Draw the pair-level log2 fold changes of the top differential pathways.

    Parameters
    ----------
    table
        The pathway-level tests of one contrast (:func:`tmeflow.communication.pathway_tests`, both levels).
    top_n
        How many pathways (rows), smallest pathway-level p-value first.
    title
        Figure title.

    Returns
    -------
    Figure
        Pathways (rows) x source -> target pairs (columns), diverging colour; ``*`` marks ``significant``.
    """
    plt = pyplot()
    overall = table[table["level"] == "pathway"].dropna(subset=["pvalue"]).head(top_n)
    pairs = table[(table["level"] == "pair") & table["pathway"].isin(overall["pathway"])].copy()
    pairs["pair"] = pairs["source"] + " -> " + pairs["target"]
    mat = pairs.pivot_table(index="pathway", columns="pair", values="logfc", aggfunc="first").reindex(
        overall["pathway"]
    )
    sig = pairs.pivot_table(index="pathway", columns="pair", values="significant", aggfunc="first").reindex_like(mat)
    values = mat.to_numpy(dtype=float)
    fig, ax = plt.subplots(figsize=(2.5 + 0.28 * max(mat.shape[1], 1), 1.5 + 0.3 * max(mat.shape[0], 1)))
    bound = max(float(np.nanmax(np.abs(values))) if np.isfinite(values).any() else 0.0, 1e-9)
    im = ax.imshow(np.ma.masked_invalid(values), cmap="RdBu_r", vmin=-bound, vmax=bound, aspect="auto")
    for i, j in zip(*np.nonzero(sig.astype(float).fillna(0.0).to_numpy() > 0), strict=True):
        ax.text(j, i, "*", ha="center", va="center", fontsize=8)
    ax.set_xticks(range(mat.shape[1]))
    ax.set_xticklabels(mat.columns, rotation=90, fontsize=6)
    ax.set_yticks(range(mat.shape[0]))
    ax.set_yticklabels(
        [f"{p} (FDR {f:.2g})" for p, f in zip(overall["pathway"], overall["fdr"], strict=True)], fontsize=7
    )
    fig.colorbar(im, ax=ax, shrink=0.6, label="log2 fold change (sample-level strength)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def plot_roles_heatmap(roles: pd.DataFrame, pathways: list[str], conditions: list[str]) -> Figure:
    """Draw the scaled signalling roles of the chosen pathways (CellChat's ``netAnalysis_signalingRole_heatmap``).

    Parameters
    ----------
    roles
        Roles per condition, pathway and cell type (:func:`tmeflow.communication.signalling_roles`).
    pathways
        The pathways (rows), e.g. the plotted ones and ``all``.
    conditions
        One row of panels per condition.

    Returns
    -------
    Figure
        Per condition, a panel per role (sender, receiver, mediator, influencer; scaled to the maximum 1)
        with the pathways as rows and the cell types as columns.
    """
    plt = pyplot()
    names = ("sender", "receiver", "mediator", "influencer")
    types = sorted(set(roles["cell_type"]))
    fig, axes = plt.subplots(
        len(conditions),
        4,
        figsize=(4 * (1 + 0.22 * len(types)), 0.6 + (1.2 + 0.3 * len(pathways)) * len(conditions)),
        squeeze=False,
    )
    for r, condition in enumerate(conditions):
        block = roles[(roles["condition"] == condition) & roles["pathway"].isin(pathways)]
        for c, name in enumerate(names):
            ax = axes[r, c]
            mat = block.pivot_table(index="pathway", columns="cell_type", values=f"{name}_scaled", aggfunc="first")
            mat = mat.reindex(index=pathways, columns=types)
            ax.imshow(np.ma.masked_invalid(mat.to_numpy(dtype=float)), cmap="Greens", vmin=0, vmax=1, aspect="auto")
            ax.set_xticks(range(len(types)))
            ax.set_xticklabels(types, rotation=90, fontsize=6)
            ax.set_yticks(range(len(pathways)))
            ax.set_yticklabels(pathways if c == 0 else [], fontsize=7)
            ax.set_title(f"{name}, {condition}", fontsize=8)
    fig.tight_layout()
    return fig
