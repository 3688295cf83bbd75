"""Bulk figures: Kaplan-Meier panels, forest plots and the correlation heatmap."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..estimate import ESTIMATE_COLUMNS
from ..io import save_figure
from ..plotting import pyplot
from ..text import slug

# --------------------------------------------------------------------------------------------------
# Plots


def plot_km(ax, surv: pd.DataFrame, groups: pd.Series, title: str, p_text: str) -> None:
    """Kaplan-Meier curves of the high/low groups with numbers at risk (lifelines ``add_at_risk_counts``)."""
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


def split_label(row) -> str:
    """Primary p of a survival-table row (corrected cut-point p of an optimised split), continuous HR and the split used."""
    if row["cutpoint_method"] == "maxstat":
        return (
            f"optimised (maxstat) split: corrected p={row['p']:.2g} (naive log-rank p={row['logrank_p']:.2g}); "
            f"HR/SD={row['hr_per_sd']:.2f}"
        )
    return f"median split: log-rank p={row['p']:.2g}; HR/SD={row['hr_per_sd']:.2f}"


def forest_plot(table: pd.DataFrame, endpoint: str):
    """Forest plot of univariate hazard ratios per SD (95% CI) of every feature for one endpoint."""
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


def correlation_heatmap(table: pd.DataFrame):
    """Heatmap of Spearman rho (features x ESTIMATE scores); * marks FDR < 0.05."""
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


def _survival_plots(
    table: pd.DataFrame, survs: dict, groups: dict, kinds: dict, outdir: Path, prefix: str
) -> list[Path]:
    """Per endpoint: a KM plot for every single gene, user signature and non-Hallmark feature with primary
    p < 0.05 (corrected cut-point p; log-rank p for median splits), a MultiQC KM grid (up to 4 features:
    non-Hallmark ones by primary p, then Hallmark ones) and a forest plot of all features (continuous HR
    per SD). Each KM panel names its split (optimised or median) and shows the primary p.
    """
    plt = pyplot()

    written = []
    for endpoint, surv in survs.items():
        sub = table[table["endpoint"] == endpoint]
        focus = sub[sub["kind"] != "hallmark"]

        single = focus[focus["kind"].isin(["gene", "user_signature"]) | (focus["p"] < 0.05)]
        for _, row in single.iterrows():
            fig, ax = plt.subplots(figsize=(5, 4.5))
            g = groups[endpoint][row["feature"]]
            plot_km(ax, surv.loc[g.index], g, f"{row['feature']} ({endpoint})", split_label(row))
            written.append(save_figure(fig, outdir / f"{prefix}bulk_km_{slug(endpoint)}_{slug(row['feature'])}.png"))
        rest = sub[sub["kind"] == "hallmark"]
        best = pd.concat(
            [
                focus.sort_values(["p", "hr_per_sd_p"], na_position="last"),
                rest.sort_values(["p", "hr_per_sd_p"], na_position="last"),
            ]
        ).head(4)
        if len(best):
            ncol = min(2, len(best))
            nrow = int(np.ceil(len(best) / ncol))
            fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 5 * nrow), squeeze=False)
            for ax, (_, row) in zip(axes.ravel(), best.iterrows()):
                g = groups[endpoint][row["feature"]]
                plot_km(ax, surv.loc[g.index], g, f"{row['feature']} ({endpoint})", split_label(row))
            for ax in axes.ravel()[len(best) :]:
                ax.axis("off")
            fig.subplots_adjust(hspace=0.7, wspace=0.3)
            written.append(save_figure(fig, outdir / f"{prefix}bulk_km_{slug(endpoint)}_mqc.png"))
        written.append(save_figure(forest_plot(sub, endpoint), outdir / f"{prefix}bulk_forest_{slug(endpoint)}.png"))
    return written
