"""CNV figures: per-patient heatmaps, the score violin and the arm summary."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..plotting import pyplot
from .clusters import _arm_key
from .positions import HEATMAP_MAX_CELLS


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------
def plot_heatmap(adata, patient: str, path: Path, seed: int) -> Path:
    """CNV heatmap of one patient: cells (reference, other, malignant; by CNV cluster) x windows."""
    plt = pyplot()
    obs = adata.obs
    cells = np.flatnonzero((obs["patient"].astype(str) == patient).to_numpy())
    rng = np.random.default_rng(seed)
    if len(cells) > HEATMAP_MAX_CELLS:
        cells = np.sort(rng.choice(cells, HEATMAP_MAX_CELLS, replace=False))
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
    ax.set_xticks([(s + e) / 2 for s, e in zip(starts, ends)], [c.removeprefix("chr") for c in chr_pos], fontsize=7)
    ax.set_yticks([])
    ax.set_title(f"inferred CNV, patient {patient} ({len(cells)} cells shown)")
    fig.colorbar(image, ax=ax, fraction=0.02, label="CNV signal")
    return io.save_figure(fig, path)


VIOLIN_MAX_CELLS = 20000


def plot_violin(adata, path: Path, seed: int = 0) -> Path:
    """CNV score by cell type and by CNV cluster (at most ``VIOLIN_MAX_CELLS`` cells, seeded sample)."""
    plt = pyplot()
    obs = adata.obs
    if len(obs) > VIOLIN_MAX_CELLS:
        obs = obs.iloc[np.sort(np.random.default_rng(seed).choice(len(obs), VIOLIN_MAX_CELLS, replace=False))]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.45 * obs["cnv_cluster"].nunique()), 7))
    for ax, key in zip(axes, ("cell_type", "cnv_cluster")):
        labels = [str(c) for c in obs[key].astype("category").cat.categories if (obs[key] == c).any()]
        data = [obs.loc[obs[key] == c, "cnv_score"].to_numpy() for c in labels]
        ax.violinplot(data, showmedians=True)
        ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("CNV score")
        ax.set_title(f"CNV score by {key.replace('_', ' ')}")
        if key == "cnv_cluster":
            malignant = obs.groupby("cnv_cluster", observed=True)["malignant"].mean()
            for i, c in enumerate(labels, start=1):
                if malignant.get(c, 0) > 0.5:
                    ax.get_xticklabels()[i - 1].set_color("#cc3311")
    fig.tight_layout()
    return io.save_figure(fig, path)


def arms_heatmap(arms: pd.DataFrame, threshold: float) -> dict:
    """Patients x arms mean CNV of malignant cells as MultiQC custom content (a native heatmap; an HTML
    note when no patient has malignant cells).
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
