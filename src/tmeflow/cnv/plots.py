"""CNV figures: per-patient heatmaps, the score violin and the arm summary."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..plotting import pyplot
from .clusters import _arm_key
from .positions import HEATMAP_MAX_CELLS

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure


def plot_heatmap(adata: AnnData, patient: str, *, seed: int = 0, max_cells: int = HEATMAP_MAX_CELLS) -> Figure:
    """Draw the CNV heatmap of one patient: cells (reference, other, malignant; by CNV cluster) x windows.

    Parameters
    ----------
    adata
        Cells after :func:`tmeflow.cnv.call_malignant`: ``obs`` ``patient``, ``malignant``, ``cnv_reference``,
        ``cnv_cluster`` (categorical), ``obsm['X_cnv']`` (cells x windows, sparse) and ``uns['cnv']['chr_pos']``
        (first window of each chromosome, infercnvpy's layout).
    patient
        The patient whose cells are drawn.
    seed
        Seed of the subsample drawn when the patient has more than ``max_cells`` cells.
    max_cells
        Most cells drawn (default ``HEATMAP_MAX_CELLS``: more rows than pixels add nothing).

    Returns
    -------
    Figure
        Status strip (reference blue, other grey, malignant red) and the CNV matrix (colour scale +/- the 99th
        percentile of the absolute signal), chromosomes separated by lines; the caller saves it.
    """
    plt = pyplot()
    obs = adata.obs
    cells = np.flatnonzero((obs["patient"].astype(str) == patient).to_numpy())
    rng = np.random.default_rng(seed)
    if len(cells) > max_cells:
        cells = np.sort(rng.choice(cells, max_cells, replace=False))
    status = np.where(obs["malignant"].to_numpy()[cells], 2, np.where(obs["cnv_reference"].to_numpy()[cells], 0, 1))
    cluster = obs["cnv_cluster"].cat.codes.to_numpy()[cells]
    order = np.lexsort((cluster, status))
    cells, status = cells[order], status[order]
    matrix = adata.obsm["X_cnv"][cells].toarray()
    vmax = max(float(np.quantile(np.abs(matrix), 0.99)), 1e-3)
    fig, (ax_lab, ax) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1, 40], "wspace": 0.01})
    ax_lab.imshow(
        status[:, None],
        aspect="auto",
        cmap=plt.matplotlib.colors.ListedColormap(["#4477aa", "#bbbbbb", "#cc3311"]),
        vmin=0,
        vmax=2,
        interpolation="nearest",
    )
    ax_lab.set_xticks([])
    ax_lab.set_yticks([])
    ax_lab.set_ylabel("cells: reference (blue), other (grey), malignant (red)")
    image = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    chr_pos = adata.uns["cnv"]["chr_pos"]
    starts = list(chr_pos.values())
    for start in starts[1:]:
        ax.axvline(start - 0.5, color="black", linewidth=0.5)
    ends = starts[1:] + [matrix.shape[1]]
    ax.set_xticks(
        [(s + e) / 2 for s, e in zip(starts, ends, strict=True)], [c.removeprefix("chr") for c in chr_pos], fontsize=7
    )
    ax.set_yticks([])
    ax.set_title(f"inferred CNV, patient {patient} ({len(cells)} cells shown)")
    fig.colorbar(image, ax=ax, fraction=0.02, label="CNV signal")
    return fig


VIOLIN_MAX_CELLS = 20000
VIOLIN_MAX_GROUPS = 60  # violins per row at most (the largest groups): a million cells fall into thousands of clusters


def plot_violin(adata: AnnData, *, seed: int = 0, max_cells: int = VIOLIN_MAX_CELLS) -> Figure:
    """Draw the CNV score by cell type and by CNV cluster.

    Parameters
    ----------
    adata
        Cells after :func:`tmeflow.cnv.call_malignant` (``obs`` ``cell_type``, ``cnv_cluster``, ``cnv_score``,
        ``malignant``).
    seed
        Seed of the subsample drawn when there are more than ``max_cells`` cells.
    max_cells
        Most cells drawn (default ``VIOLIN_MAX_CELLS``).

    Returns
    -------
    Figure
        Two rows of violins (by cell type, by CNV cluster; clusters with a malignant majority labelled red; at most
        ``VIOLIN_MAX_GROUPS`` per row, the largest); the caller saves it.
    """
    plt = pyplot()
    obs = adata.obs
    if len(obs) > max_cells:
        obs = obs.iloc[np.sort(np.random.default_rng(seed).choice(len(obs), max_cells, replace=False))]
    n_shown = min(obs["cnv_cluster"].nunique(), VIOLIN_MAX_GROUPS)
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.45 * n_shown), 7))
    malignant = obs.groupby("cnv_cluster", observed=True)["malignant"].mean()
    for ax, key in zip(axes, ("cell_type", "cnv_cluster"), strict=True):
        scores = obs["cnv_score"].groupby(obs[key].astype("category"), observed=True)  # category order
        sizes = scores.size()
        labels = [str(c) for c in sizes.index[sizes.index.isin(sizes.nlargest(VIOLIN_MAX_GROUPS).index)]]
        ax.violinplot([scores.get_group(c).to_numpy() for c in labels], showmedians=True)
        ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("CNV score")
        shown = f" (the {len(labels)} largest of {len(sizes)})" if len(labels) < len(sizes) else ""
        ax.set_title(f"CNV score by {key.replace('_', ' ')}{shown}")
        if key == "cnv_cluster":
            for tick, c in zip(ax.get_xticklabels(), labels, strict=True):
                if malignant.get(c, 0) > 0.5:
                    tick.set_color("#cc3311")
    fig.tight_layout()
    return fig


def arms_heatmap(arms: pd.DataFrame, threshold: float) -> dict:
    """Describe the patients x arms mean CNV of malignant cells as MultiQC custom content.

    Parameters
    ----------
    arms
        :func:`tmeflow.cnv.arm_summary` table (``patient``, ``cnv_cluster``, ``chr_arm``, ``mean_cnv`` ...).
    threshold
        ``cnv_arm_threshold``: the |mean| above which an arm is called gained or lost (quoted in the description).

    Returns
    -------
    dict
        MultiQC custom-content config: a native heatmap of the patients' ``cnv_cluster == 'all'`` rows, or an
        HTML note when no patient has malignant cells.
    """
    table = arms[arms["cnv_cluster"] == "all"].pivot(index="patient", columns="chr_arm", values="mean_cnv")
    header = {
        "id": "tmeflow_cnv_arms",
        "section_name": "Arm-level CNV per patient",
        "description": "Mean CNV of each patient's malignant cells per chromosome arm (red: gain, blue: loss; "
        f"|mean| > {threshold:g} is called an event in cnv_arms.tsv).",
    }
    if table.empty:
        return {**header, "plot_type": "html", "data": "<p>No malignant cells called.</p>"}
    table = table[sorted(table.columns, key=_arm_key)]
    vmax = max(float(np.nanmax(np.abs(table.to_numpy()))), 1e-3)
    data = [[None if np.isnan(v) else round(float(v), 4) for v in row] for row in table.to_numpy()]
    return {
        **header,
        "plot_type": "heatmap",
        "xcats": [str(c) for c in table.columns],
        "ycats": [str(p) for p in table.index],
        "data": data,
        "pconfig": {
            "id": "tmeflow_cnv_arms_heatmap",
            "title": "Arm-level CNV of malignant cells per patient",
            "xlab": "chromosome arm",
            "ylab": "patient",
            "min": -vmax,
            "max": vmax,
            "reverse_colors": True,
        },
    }
