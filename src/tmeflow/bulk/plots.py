"""Bulk figures: Kaplan-Meier panels, forest plots and the correlation heatmap.

Every figure comes from a ``plot_*`` function that takes the data and returns the figure; only
:func:`write_survival_plots` (called by the stage's writing code) saves them, with :func:`tmeflow.io.save_figure`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..estimate import ESTIMATE_COLUMNS
from ..io import save_figure
from ..plotting import pyplot
from ..text import slug

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

# --------------------------------------------------------------------------------------------------
# Plots


def _draw_km(ax: Axes, surv: pd.DataFrame, groups: pd.Series, title: str, p_text: str) -> None:
    """Draw Kaplan-Meier curves of the high/low groups with numbers at risk (lifelines ``add_at_risk_counts``)."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    fitters = []
    for label, colour in (("low", "#1f77b4"), ("high", "#d62728")):
        mask = groups == label
        kmf = KaplanMeierFitter(label=f"{label} (n={int(mask.sum())})")
        kmf.fit(surv.loc[mask.index[mask], "time"], surv.loc[mask.index[mask], "event"])
        kmf.plot_survival_function(ax=ax, ci_show=False, show_censors=True, color=colour)
        fitters.append(kmf)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("time")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.05)
    ax.text(0.02, 0.04, p_text, transform=ax.transAxes, fontsize=8)
    add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])


def plot_km(surv: pd.DataFrame, groups: pd.Series, *, title: str, p_text: str) -> Figure:
    """Plot Kaplan-Meier curves of one feature's high/low groups (Kaplan & Meier 1958).

    Parameters
    ----------
    surv
        Survival frame indexed by sample: ``time`` and ``event`` (1 = event, 0 = censored).
    groups
        ``"high"``/``"low"`` per sample (the samples of ``surv``).
    title
        Panel title (feature and endpoint).
    p_text
        Text in the lower left corner: the split and its primary p (:func:`split_label`).

    Returns
    -------
    Figure
        One 5 x 4.5 inch panel with the numbers at risk below it.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4.5))
    _draw_km(ax, surv, groups, title, p_text)
    return fig


def plot_km_grid(rows: pd.DataFrame, surv: pd.DataFrame, groups: dict[str, pd.Series], endpoint: str) -> Figure:
    """Plot Kaplan-Meier panels of up to four features for one endpoint (the MultiQC KM grid).

    Parameters
    ----------
    rows
        Survival-table rows of the features to show, in panel order (columns ``feature``, ``cutpoint_method``,
        ``p``, ``logrank_p``, ``hr_per_sd``).
    surv
        Survival frame of the endpoint (``time``, ``event``) indexed by sample.
    groups
        Per feature, the high/low group of each sample.
    endpoint
        Endpoint name, for the panel titles.

    Returns
    -------
    Figure
        Two panels per row (one when a single feature is shown), unused axes hidden.
    """
    plt = pyplot()
    ncol = min(2, len(rows))
    nrow = int(np.ceil(len(rows) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 5 * nrow), squeeze=False)
    for ax, (_, row) in zip(axes.ravel(), rows.iterrows(), strict=False):
        g = groups[row["feature"]]
        _draw_km(ax, surv.loc[g.index], g, f"{row['feature']} ({endpoint})", split_label(row))
    for ax in axes.ravel()[len(rows) :]:
        ax.axis("off")
    fig.subplots_adjust(hspace=0.7, wspace=0.3)
    return fig


def split_label(row: pd.Series) -> str:
    """Describe a survival-table row's split: its primary p, the continuous HR per SD and the split used.

    Parameters
    ----------
    row
        One row of the survival table (``cutpoint_method``, ``p``, ``logrank_p``, ``hr_per_sd``).

    Returns
    -------
    str
        E.g. ``"optimised (maxstat) split: corrected p=0.01 (naive log-rank p=0.001); HR/SD=1.50"``.
    """
    if row["cutpoint_method"] == "maxstat":
        return (
            f"optimised (maxstat) split: corrected p={row['p']:.2g} (naive log-rank p={row['logrank_p']:.2g}); "
            f"HR/SD={row['hr_per_sd']:.2f}"
        )
    return f"median split: log-rank p={row['p']:.2g}; HR/SD={row['hr_per_sd']:.2f}"


def plot_forest(table: pd.DataFrame, endpoint: str) -> Figure:
    """Plot the univariate Cox hazard ratios per SD (95% CI) of every feature for one endpoint.

    Parameters
    ----------
    table
        Survival-table rows of the endpoint: ``feature``, ``hr_per_sd``, ``hr_per_sd_lower``, ``hr_per_sd_upper``
        (rows without an HR are left out).
    endpoint
        Endpoint name, for the axis label.

    Returns
    -------
    Figure
        Features sorted by HR on a log axis, a dashed line at HR = 1.
    """
    plt = pyplot()

    data = table.dropna(subset=["hr_per_sd"]).sort_values("hr_per_sd")
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(data) + 1.2))
    y = np.arange(len(data))
    ax.errorbar(
        data["hr_per_sd"],
        y,
        xerr=[data["hr_per_sd"] - data["hr_per_sd_lower"], data["hr_per_sd_upper"] - data["hr_per_sd"]],
        fmt="o",
        color="black",
        ecolor="grey",
        capsize=2,
        markersize=3,
    )
    ax.axvline(1, color="red", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels(data["feature"], fontsize=7)
    ax.set_xlabel(f"hazard ratio per SD ({endpoint}, univariate Cox, 95% CI)")
    return fig


def plot_correlation_heatmap(table: pd.DataFrame) -> Figure:
    """Plot the Spearman rho of every feature with the ESTIMATE scores as a heatmap; * marks FDR < 0.05.

    Parameters
    ----------
    table
        Long table of :func:`tmeflow.bulk.spearman_table`: ``feature``, ``target``, ``rho``, ``fdr``.

    Returns
    -------
    Figure
        Features x targets (ESTIMATE columns first), rho on a -1..1 diverging scale with a colour bar.
    """
    plt = pyplot()

    rho = table.pivot(index="feature", columns="target", values="rho")
    rho = rho[[c for c in ESTIMATE_COLUMNS if c in rho.columns] + [c for c in rho.columns if c not in ESTIMATE_COLUMNS]]
    fdr = table.pivot(index="feature", columns="target", values="fdr").reindex_like(rho)
    fig, ax = plt.subplots(figsize=(1.2 * rho.shape[1] + 3, 0.25 * rho.shape[0] + 1.5))
    image = ax.imshow(rho.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(rho.shape[1]))
    ax.set_xticklabels(rho.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(rho.shape[0]))
    ax.set_yticklabels(rho.index, fontsize=7)
    for i in range(rho.shape[0]):
        for j in range(rho.shape[1]):
            if fdr.iat[i, j] < 0.05:
                ax.text(j, i, "*", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="Spearman rho")
    return fig


def write_survival_plots(
    table: pd.DataFrame,
    survs: dict[str, pd.DataFrame],
    groups: dict[str, dict[str, pd.Series]],
    outdir: Path,
    prefix: str,
) -> list[Path]:
    """Save the survival figures of every endpoint and return their paths.

    Per endpoint: a KM plot (:func:`plot_km`) for every single gene, user signature and non-Hallmark
    feature with primary p < 0.05 (corrected cut-point p; log-rank p for median splits), a MultiQC KM grid
    (:func:`plot_km_grid`, up to 4 features: non-Hallmark ones by primary p, then Hallmark ones) and a
    forest plot of all features (:func:`plot_forest`, continuous HR per SD).

    Parameters
    ----------
    table
        The survival table (one row per feature and endpoint, with ``kind``, ``p`` and ``hr_per_sd_p``).
    survs
        Per endpoint, the survival frame (``time``, ``event``) indexed by sample.
    groups
        Per endpoint and feature, the high/low group of each sample.
    outdir, prefix
        Folder and file-name prefix (``<sample>.``) of the figures.

    Returns
    -------
    list of Path
        The files written: ``bulk_km_<endpoint>_<feature>.png``, ``bulk_km_<endpoint>_mqc.png`` and
        ``bulk_forest_<endpoint>.png``.
    """
    written = []
    for endpoint, surv in survs.items():
        sub = table[table["endpoint"] == endpoint]
        focus = sub[sub["kind"] != "hallmark"]
        single = focus[focus["kind"].isin(["gene", "user_signature"]) | (focus["p"] < 0.05)]
        for _, row in single.iterrows():
            g = groups[endpoint][row["feature"]]
            fig = plot_km(surv.loc[g.index], g, title=f"{row['feature']} ({endpoint})", p_text=split_label(row))
            written.append(save_figure(fig, outdir / f"{prefix}bulk_km_{slug(endpoint)}_{slug(row['feature'])}.png"))
        rest = sub[sub["kind"] == "hallmark"]
        best = pd.concat(
            [
                focus.sort_values(["p", "hr_per_sd_p"], na_position="last"),
                rest.sort_values(["p", "hr_per_sd_p"], na_position="last"),
            ]
        ).head(4)
        if len(best):
            fig = plot_km_grid(best, surv, groups[endpoint], endpoint)
            written.append(save_figure(fig, outdir / f"{prefix}bulk_km_{slug(endpoint)}_mqc.png"))
        written.append(save_figure(plot_forest(sub, endpoint), outdir / f"{prefix}bulk_forest_{slug(endpoint)}.png"))
    return written
