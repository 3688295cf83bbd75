"""Pan-cancer analysis of a bulk cohort: every survival and correlation analysis repeated per cancer type.

A bulk cohort whose clinical table has a cancer-type column (``cancer_type``, or the column named by
``cancer_type_column``) is analysed as today over all samples, and then once per cancer type with at
least ``pancancer_min_samples`` samples (smaller types are skipped with a log line):

* survival: for every endpoint present (e.g. OS, DSS, DFI, PFI, the TCGA Pan-Cancer Clinical Data
  Resource endpoints, Liu et al. 2018, Cell 173:400), :func:`tmeflow.bulk.endpoints.analyse_survival`
  on the type's samples -- the same cut-point, log-rank and Cox models as the single-cohort analysis,
  so a cohort of one cancer type gives the same numbers -- with the univariate Cox hazard ratio per SD
  as the effect size. Covariates constant within a type are left out of that type's multivariate model.
  ``pancancer_fdr`` (of the primary p) and ``pancancer_hr_fdr`` (of the Cox HR-per-SD p) are
  Benjamini-Hochberg adjusted across the types x endpoints of each feature (the pan-cancer question
  "in which types, for which endpoints, is this score prognostic?"); ``fdr`` stays the within-type,
  within-endpoint FDR across features.
* correlations: Spearman rho of every feature with the immune context (ESTIMATE scores, and reference
  cell-type fractions when deconvolved) per type, BH across types x targets of each feature.

Figures: a forest plot per endpoint (HR per SD with 95% CI of each focus feature, one row per type)
and a heatmap of the correlations (types x focus features, one panel per target). Focus features are
the user's signatures and genes, and the bundled necroptosis sets (Hallmark sets, ESTIMATE scores and
fractions are in the tables, not the figures).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..io import multiqc_header, save_figure, write_table
from ..log import get_logger
from ..plotting import pyplot
from ..stats import bh_fdr
from ..text import slug
from .deconvolution import spearman_table
from .endpoints import analyse_survival, survival_mqc_headers
from .reading import clinical_column

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .settings import BulkSettings

logger = get_logger(__package__)

DEFAULT_COLUMN = "cancer_type"
FOCUS_KINDS = ("user_signature", "gene", "necroptosis")


# --------------------------------------------------------------------------------------------------
# Input


def cancer_types(clinical: pd.DataFrame, column: str, source: Path) -> pd.Series | None:
    """Read each sample's cancer type, or None when the cohort has no cancer-type column.

    Samples with no type are left out of the per-type analyses (logged); a column with no value is an error.

    Parameters
    ----------
    clinical
        The clinical table, indexed by sample.
    column
        ``cancer_type_column``; empty = the column ``cancer_type`` (any case) if present; named: it must exist.
    source
        The clinical table's path, for messages.

    Returns
    -------
    Series or None
        Cancer type per sample (NaN: none given).
    """
    name = clinical_column(clinical, column, DEFAULT_COLUMN, "cancer_type_column", source)
    if name is None:
        return None
    values = clinical[name].map(lambda v: str(v).strip() if pd.notna(v) else "").replace("", np.nan)
    if values.notna().sum() == 0:
        raise TmeflowInputError("cancer-type column has no values", file=source, column=name)
    if values.isna().any():
        logger.info(
            "pan-cancer: %d sample(s) without a %s value left out of the per-type analyses (e.g. %s)",
            int(values.isna().sum()),
            name,
            values.index[values.isna()][0],
        )
    return values.rename("cancer_type")


def type_table(types: pd.Series, min_samples: int) -> pd.DataFrame:
    """Count the samples per type and mark the types analysed (types below ``min_samples`` are skipped, logged).

    Parameters
    ----------
    types
        Cancer type per sample.
    min_samples
        Smallest type analysed (``pancancer_min_samples``).

    Returns
    -------
    DataFrame
        One row per type: ``cancer_type``, ``n``, ``analysed`` and the ``reason`` a type is skipped.
    """
    counts = types.value_counts().sort_index()
    table = pd.DataFrame({"cancer_type": counts.index, "n": counts.to_numpy()})
    table["analysed"] = table["n"] >= min_samples
    table["reason"] = np.where(table["analysed"], "", f"fewer than pancancer_min_samples={min_samples} samples")
    for _, row in table[~table["analysed"]].iterrows():
        logger.info(
            "pan-cancer: cancer type %s skipped: %d samples < pancancer_min_samples=%d",
            row["cancer_type"],
            row["n"],
            min_samples,
        )
    return table


# --------------------------------------------------------------------------------------------------
# Analyses


def survival_per_type(
    features: pd.DataFrame,
    survs: dict[str, pd.DataFrame],
    types: pd.Series,
    analysed: list[str],
    covariates: pd.DataFrame,
    settings: BulkSettings,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Run :func:`analyse_survival` per cancer type and endpoint, with the pan-cancer FDRs (module docstring).

    A type x endpoint with fewer than ``pancancer_min_samples`` samples or no event is skipped (logged), as is a
    type where no feature can be split; covariates constant within a type are left out of its multivariate Cox.

    Parameters
    ----------
    features
        Samples x features.
    survs
        Per endpoint, the survival frame (``time``, ``event``) indexed by sample.
    types
        Cancer type per sample.
    analysed
        The types analysed (:func:`type_table`).
    covariates
        Samples x covariates of the multivariate models.
    settings
        The cut-point, PH and ``pancancer_min_samples`` settings.

    Returns
    -------
    tuple of (DataFrame, DataFrame)
        The survival and Cox tables, each with a ``cancer_type`` first column; the survival table adds
        ``pancancer_hr_fdr`` and ``pancancer_fdr`` (BH across types x endpoints of each feature).
    """
    min_samples = settings.pancancer_min_samples
    tables, coxes = [], []
    for cancer_type in analysed:
        members = types.index[types == cancer_type]
        for endpoint, surv in survs.items():
            s = surv.loc[surv.index.intersection(members)]
            if len(s) < min_samples or s["event"].sum() == 0:
                logger.info(
                    "pan-cancer: %s %s skipped: %d samples with this endpoint, %d events",
                    cancer_type,
                    endpoint,
                    len(s),
                    int(s["event"].sum()),
                )
                continue
            cov = covariates.loc[s.index]
            constant = [c for c in cov.columns if cov[c].nunique(dropna=True) < 2]
            if constant:
                logger.info(
                    "pan-cancer: %s %s: covariate(s) %s constant within the type, left out of its multivariate Cox",
                    cancer_type,
                    endpoint,
                    ", ".join(constant),
                )
                cov = cov.drop(columns=constant)
            try:
                table, cox, _ = analyse_survival(features.loc[s.index], s, endpoint, cov, settings)
            except TmeflowInputError as exc:  # no feature splittable in a small type: skip the type, not the cohort
                logger.info("pan-cancer: %s %s skipped: %s", cancer_type, endpoint, exc)
                continue
            table.insert(0, "cancer_type", cancer_type)
            cox.insert(0, "cancer_type", cancer_type)
            tables.append(table)
            coxes.append(cox)
    if not tables:
        return pd.DataFrame(), pd.DataFrame()
    table = pd.concat(tables, ignore_index=True)
    table["pancancer_fdr"] = np.nan
    table["pancancer_hr_fdr"] = np.nan
    for _, index in table.groupby("feature", sort=False).groups.items():
        table.loc[index, "pancancer_fdr"] = bh_fdr(table.loc[index, "p"])
        table.loc[index, "pancancer_hr_fdr"] = bh_fdr(table.loc[index, "hr_per_sd_p"])
    return table, pd.concat(coxes, ignore_index=True)


def correlation_per_type(
    features: pd.DataFrame, targets: pd.DataFrame, types: pd.Series, analysed: list[str]
) -> pd.DataFrame:
    """Correlate every feature with every target per cancer type (Spearman).

    Parameters
    ----------
    features
        Samples x features (the sources).
    targets
        Samples x targets (ESTIMATE scores, cell-type fractions, immunomodulator genes ...).
    types
        Cancer type per sample.
    analysed
        The types analysed.

    Returns
    -------
    DataFrame
        One row per type, feature and target: ``rho``, ``p``, ``n``, ``fdr`` (within the type, as
        :func:`spearman_table`) and ``pancancer_fdr`` (BH across types x targets of each feature).
    """
    tables = []
    for cancer_type in analysed:
        members = types.index[types == cancer_type].intersection(features.index)
        table = spearman_table(features.loc[members], targets.loc[members])
        table.insert(0, "cancer_type", cancer_type)
        tables.append(table)
    table = pd.concat(tables, ignore_index=True)
    table["pancancer_fdr"] = np.nan
    for _, index in table.groupby("feature", sort=False).groups.items():
        table.loc[index, "pancancer_fdr"] = bh_fdr(table.loc[index, "p"])
    return table


def focus_features(kinds: dict[str, str]) -> list[str]:
    """List the features drawn in the pan-cancer figures: user signatures, genes and necroptosis sets, else all.

    Parameters
    ----------
    kinds
        Kind of each feature.

    Returns
    -------
    list of str
        The focus features, in ``kinds`` order.
    """
    focus = [f for f, k in kinds.items() if k in FOCUS_KINDS]
    return focus or list(kinds)


def value_correlations(
    features: pd.DataFrame,
    kinds: dict[str, str],
    values: pd.Series,
    types: pd.Series | None,
    min_samples: int,
    label: str,
) -> pd.DataFrame:
    """Correlate every score with one per-sample value (TMB, MSI score) per cancer type (Spearman).

    ESTIMATE scores and fractions are not tested; types need at least ``min_samples`` samples with a value; the
    whole cohort is one type ``all`` without a cancer-type column.

    Parameters
    ----------
    features
        Samples x features.
    kinds
        Kind of each feature.
    values
        The value per sample.
    types
        Cancer type per sample (None: one type ``all``).
    min_samples
        Smallest type analysed (``pancancer_min_samples``).
    label
        Name of the value, written in the ``target`` column.

    Returns
    -------
    DataFrame
        One row per type and feature: ``kind``, ``target``, ``rho``, ``p``, ``n``, ``fdr`` (BH within the type
        across features) and ``pancancer_fdr`` (BH across types of each feature).
    """
    values = values.dropna()
    columns = [c for c in features.columns if kinds[c] not in ("estimate", "fraction")]
    groups = (types if types is not None else pd.Series("all", index=features.index)).reindex(values.index).dropna()
    sizes = groups.value_counts()
    analysed = sorted(sizes.index[sizes >= min_samples])
    for skipped in sorted(sizes.index[sizes < min_samples]):
        logger.info(
            "%s correlation: %s skipped: %d samples with a %s < pancancer_min_samples=%d",
            label,
            skipped,
            sizes[skipped],
            label,
            min_samples,
        )
    if not analysed:
        return pd.DataFrame()
    table = correlation_per_type(
        features.loc[groups.index, columns], values.loc[groups.index].to_frame(label), groups, analysed
    )
    table.insert(2, "kind", table["feature"].map(kinds))
    return table


def lead_first(focus: list[str], kinds: dict[str, str]) -> list[str]:
    """Order ``focus`` by kind: user signatures, then necroptosis sets, then genes (stable within a kind).

    The first is the lead feature of the one-signature figures (drug bubbles, immunotherapy KM).

    Parameters
    ----------
    focus
        The focus features.
    kinds
        Kind of each feature.

    Returns
    -------
    list of str
        ``focus`` reordered.
    """
    order = {"user_signature": 0, "necroptosis": 1, "gene": 2}
    return sorted(focus, key=lambda f: order.get(kinds.get(f, ""), 3))


# --------------------------------------------------------------------------------------------------
# Figures


def plot_pancancer_forest(table: pd.DataFrame, endpoint: str, features: list[str]) -> Figure:
    """Plot the univariate Cox HR per SD (95% CI) per cancer type, one panel per feature.

    Parameters
    ----------
    table
        The pan-cancer survival table (:func:`survival_per_type`).
    endpoint
        The endpoint shown.
    features
        The features shown, one panel each (up to three per row).

    Returns
    -------
    Figure
        Log-scale HR axes; filled markers: pan-cancer FDR (of the HR p) < 0.05.
    """
    plt = pyplot()
    import matplotlib.ticker

    sub = table[(table["endpoint"] == endpoint) & table["feature"].isin(features)].dropna(subset=["hr_per_sd"])
    shown = [f for f in features if f in set(sub["feature"])]
    types = sorted(sub["cancer_type"].unique(), reverse=True)
    ncol = min(3, max(1, len(shown)))
    nrow = int(np.ceil(max(1, len(shown)) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(4.2 * ncol, (0.3 * len(types) + 1.4) * nrow), squeeze=False)
    y_of = {t: i for i, t in enumerate(types)}
    for ax, feature in zip(axes.ravel(), shown, strict=False):
        data = sub[sub["feature"] == feature]
        y = data["cancer_type"].map(y_of).to_numpy()
        significant = (data["pancancer_hr_fdr"] < 0.05).to_numpy()
        hr = data["hr_per_sd"].to_numpy(dtype=float)
        xerr = np.vstack(
            [hr - data["hr_per_sd_lower"].to_numpy(dtype=float), data["hr_per_sd_upper"].to_numpy(dtype=float) - hr]
        )
        ax.errorbar(hr, y, xerr=xerr, fmt="none", ecolor="grey", capsize=2)
        ax.scatter(hr, y, s=18, c=np.where(significant, "black", "white"), edgecolors="black", zorder=3)
        ax.axvline(1, color="red", lw=0.8, ls="--")
        ax.set_xscale("log")
        low, high = ax.get_xlim()
        ax.xaxis.set_major_locator(
            matplotlib.ticker.FixedLocator([t for t in (0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 10) if low <= t <= high])
        )
        ax.xaxis.set_major_formatter(matplotlib.ticker.FormatStrFormatter("%g"))
        ax.xaxis.set_minor_formatter(matplotlib.ticker.NullFormatter())
        ax.tick_params(axis="x", labelsize=7)
        ax.set_yticks(range(len(types)))
        ax.set_yticklabels(types, fontsize=7)
        ax.set_ylim(-0.7, len(types) - 0.3)
        ax.set_title(feature, fontsize=8)
        ax.set_xlabel(f"HR per SD ({endpoint}, univariate Cox)", fontsize=7)
    for ax in axes.ravel()[len(shown) :]:
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_rho_panels(
    panels: list[tuple[str, pd.DataFrame]],
    rows: tuple[str, list],
    columns: tuple[str, list],
    *,
    figsize: tuple[float, float],
    fontsizes: tuple[float, float, float],
    shrink: float,
) -> Figure:
    """Plot heatmaps of Spearman rho side by side, one per ``(title, part)`` of ``panels``.

    Parameters
    ----------
    panels
        (title, long table with ``rho`` and ``pancancer_fdr``) per panel.
    rows, columns
        (column of the part, order) of the heatmap rows and columns.
    figsize
        Figure size in inches.
    fontsizes
        Font sizes of the row labels, the titles and the stars.
    shrink
        Shrink factor of the shared colour bar.

    Returns
    -------
    Figure
        Row labels on the first panel only, * where the pan-cancer FDR < 0.05, one shared colour bar.
    """
    plt = pyplot()
    (row_key, row_order), (column_key, column_order) = rows, columns
    fig, axes = plt.subplots(1, len(panels), figsize=figsize, squeeze=False)
    image = None
    for ax, (title, part) in zip(axes[0], panels, strict=True):
        rho, fdr = (
            part.pivot(index=row_key, columns=column_key, values=value).reindex(index=row_order, columns=column_order)
            for value in ("rho", "pancancer_fdr")
        )
        image = ax.imshow(rho.to_numpy(dtype=float), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
        ax.set_xticks(range(len(column_order)))
        ax.set_xticklabels(column_order, rotation=90, fontsize=6)
        ax.set_yticks(range(len(row_order)))
        ax.set_yticklabels(row_order if ax is axes[0][0] else [], fontsize=fontsizes[0])
        ax.set_title(title, fontsize=fontsizes[1])
        for i, j in zip(*np.nonzero(fdr.to_numpy(dtype=float) < 0.05), strict=True):
            ax.text(j, i, "*", ha="center", va="center", fontsize=fontsizes[2])
    if image is not None:
        fig.colorbar(image, ax=list(axes[0]), label="Spearman rho", shrink=shrink)
    return fig


def plot_pancancer_heatmap(table: pd.DataFrame, features: list[str]) -> Figure:
    """Plot Spearman rho as heatmaps, cancer types x features, one panel per target; * pan-cancer FDR < 0.05.

    Parameters
    ----------
    table
        The table of :func:`correlation_per_type`.
    features
        The features shown.

    Returns
    -------
    Figure
        One panel per target (ESTIMATE score or fraction).
    """
    sub = table[table["feature"].isin(features)]
    targets = list(dict.fromkeys(sub["target"]))
    shown = [f for f in features if f in set(sub["feature"])]
    types = sorted(sub["cancer_type"].unique())
    width = 0.35 * len(shown) + 1.2
    return plot_rho_panels(
        [(target, sub[sub["target"] == target]) for target in targets],
        ("cancer_type", types),
        ("feature", shown),
        figsize=(width * len(targets) + 2.5, 0.3 * len(types) + 3),
        fontsizes=(7, 8, 8),
        shrink=0.8,
    )


def plot_value_correlation(table: pd.DataFrame, features: list[str], label: str) -> Figure:
    """Plot the Spearman rho of each focus score with ``label`` (TMB, MSI) per cancer type as bars.

    Parameters
    ----------
    table
        The table of :func:`value_correlations`.
    features
        The focus scores shown.
    label
        Name of the value, for the axis label.

    Returns
    -------
    Figure
        Grouped bars, cancer types on the x axis; * marks pan-cancer FDR < 0.05.
    """
    plt = pyplot()
    sub = table[table["feature"].isin(features)]
    shown = [f for f in features if f in set(sub["feature"])]
    types = sorted(sub["cancer_type"].unique())
    fig, ax = plt.subplots(figsize=(max(4.0, 0.5 * len(types) * max(1, len(shown)) + 2), 3.6))
    width = 0.8 / max(1, len(shown))
    for j, feature in enumerate(shown):
        part = sub[sub["feature"] == feature].set_index("cancer_type").reindex(types)
        x = np.arange(len(types)) + j * width
        ax.bar(x, part["rho"].to_numpy(dtype=float), width=width, label=feature)
        for xi, rho, fdr in zip(x, part["rho"], part["pancancer_fdr"], strict=True):
            if fdr < 0.05:
                ax.text(xi, rho + (0.02 if rho >= 0 else -0.08), "*", ha="center", fontsize=9)
    ax.axhline(0, color="black", lw=0.6)
    ax.set_xticks(np.arange(len(types)) + 0.4 - width / 2)
    ax.set_xticklabels(types, rotation=45, ha="right", fontsize=7)
    ax.set_ylabel(f"Spearman rho with {label}")
    ax.set_ylim(-1, 1)
    ax.legend(fontsize=6, frameon=False)
    fig.tight_layout()
    return fig


def plot_radar(tables: dict[str, pd.DataFrame], features: list[str]) -> Figure:
    """Plot radar charts of each focus score's rho with the values of ``tables`` (e.g. TMB and MSI) per cancer type.

    One spoke per cancer type, one chart per focus score (up to 4), as pan-cancer signature papers draw them.

    Parameters
    ----------
    tables
        Value name -> table of :func:`value_correlations`.
    features
        The focus scores.

    Returns
    -------
    Figure
        One polar panel per score; filled markers: pan-cancer FDR < 0.05.
    """
    plt = pyplot()
    shown = [f for f in features if any(f in set(t["feature"]) for t in tables.values())][:4]
    types = sorted(set().union(*(set(t["cancer_type"]) for t in tables.values())))
    angles = np.linspace(0, 2 * np.pi, len(types), endpoint=False)
    fig, axes = plt.subplots(
        1,
        max(1, len(shown)),
        figsize=(3.6 * max(1, len(shown)), 3.8),
        subplot_kw={"projection": "polar"},
        squeeze=False,
    )
    for ax, feature in zip(axes[0], shown, strict=False):
        for (label, table), colour in zip(tables.items(), ("#b2182b", "#2166ac", "#1b7837"), strict=False):
            part = table[table["feature"] == feature].set_index("cancer_type").reindex(types)
            rho = part["rho"].to_numpy(dtype=float)
            ax.plot(np.append(angles, angles[0]), np.append(rho, rho[0]), color=colour, lw=1.2, label=label)
            significant = (part["pancancer_fdr"] < 0.05).to_numpy()
            ax.scatter(angles, rho, s=14, color=np.where(significant, colour, "white"), edgecolors=colour, zorder=3)
        ax.set_xticks(angles)
        ax.set_xticklabels(types, fontsize=6)
        ax.set_ylim(-1, 1)
        ax.set_yticks([-0.5, 0, 0.5])
        ax.tick_params(axis="y", labelsize=6)
        ax.set_title(feature, fontsize=8)
        ax.legend(fontsize=6, frameon=False, loc="lower right", bbox_to_anchor=(1.25, -0.1))
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Stage step


def run_pancancer(
    features: pd.DataFrame,
    kinds: dict[str, str],
    survs: dict[str, pd.DataFrame],
    types: pd.Series,
    covariates: pd.DataFrame,
    settings: BulkSettings,
) -> dict[str, Any]:
    """Run every per-cancer-type analysis of a cohort (module docstring).

    Parameters
    ----------
    features
        Samples x features.
    kinds
        Kind of each feature.
    survs
        Per endpoint, the survival frame indexed by sample.
    types
        Cancer type per sample.
    covariates
        Samples x covariates of the multivariate models.
    settings
        ``pancancer_min_samples`` and the survival settings.

    Returns
    -------
    dict
        ``types`` (:func:`type_table`), ``survival`` and ``cox`` (:func:`survival_per_type`), ``correlations``
        (immune context: ESTIMATE scores and fractions, when present) and ``focus`` (:func:`focus_features`).
    """
    min_samples = settings.pancancer_min_samples
    types = types.loc[types.index.intersection(features.index)].dropna()
    table = type_table(types, min_samples)
    analysed = list(table.loc[table["analysed"], "cancer_type"])
    logger.info("pan-cancer: %d cancer type(s), %d analysed (>= %d samples)", len(table), len(analysed), min_samples)
    survival, cox = (
        survival_per_type(features, survs, types, analysed, covariates, settings)
        if analysed
        else (pd.DataFrame(), pd.DataFrame())
    )
    if len(survival):
        survival.insert(2, "kind", survival["feature"].map(kinds))
    target_columns = [c for c in features.columns if kinds[c] in ("estimate", "fraction")]
    source_columns = [c for c in features.columns if kinds[c] not in ("estimate", "fraction")]
    correlations = pd.DataFrame()
    if analysed and target_columns:
        targets = features[target_columns].rename(columns=lambda c: c.split(":", 1)[1])
        correlations = correlation_per_type(features[source_columns], targets, types, analysed)
        correlations.insert(2, "kind", correlations["feature"].map(kinds))
    return {
        "types": table,
        "survival": survival,
        "cox": cox,
        "correlations": correlations,
        "focus": focus_features({f: k for f, k in kinds.items() if f in source_columns}),
    }


def write_pancancer(result: dict[str, Any], outdir: Path, prefix: str, sample: str, cohort_id: str) -> list[Path]:
    """Write the tables, figures and report table of :func:`run_pancancer` (file names in docs/output.md)."""
    written = [write_table(result["types"], outdir / f"{prefix}bulk_pancancer_types.tsv")]
    survival, focus = result["survival"], result["focus"]
    if len(survival):
        written.append(write_table(survival, outdir / f"{prefix}bulk_pancancer_survival.tsv"))
        written.append(write_table(result["cox"], outdir / f"{prefix}bulk_pancancer_cox.tsv"))
        for endpoint in dict.fromkeys(survival["endpoint"]):
            fig = plot_pancancer_forest(survival, endpoint, focus)
            written.append(save_figure(fig, outdir / f"{prefix}bulk_pancancer_forest_{slug(endpoint)}.png"))
        columns = [
            "cancer_type",
            "feature",
            "endpoint",
            "n",
            "events",
            "hr_per_sd",
            "hr_per_sd_p",
            "pancancer_hr_fdr",
            "logrank_p",
            "p",
            "pancancer_fdr",
        ]
        mqc = survival.loc[survival["feature"].isin(focus), columns].copy()
        mqc.insert(0, "id", mqc["feature"] + " | " + mqc["cancer_type"] + " | " + mqc["endpoint"])
        mqc = mqc.drop(columns=["feature", "cancer_type", "endpoint"]).sort_values(
            ["pancancer_hr_fdr", "hr_per_sd_p"], kind="stable"
        )
        p_values = ("hr_per_sd_p", "pancancer_hr_fdr", "logrank_p", "p", "pancancer_fdr")
        headers = survival_mqc_headers(mqc.columns[1:], p_values)
        written.append(
            write_table(
                mqc,
                outdir / f"{prefix}bulk_pancancer_mqc.tsv",
                header_lines=multiqc_header(
                    f"tmeflow_bulk_pancancer_{cohort_id}",
                    f"Bulk cohort {sample}: survival per cancer type",
                    "Per feature, cancer type and endpoint: HR per SD (univariate Cox) and its p, BH across types x "
                    "endpoints of the feature (pancancer_hr_fdr); log-rank p at the cut-point, primary cut-point p and "
                    "its pan-cancer FDR.",
                    "table",
                    headers=headers,
                    pconfig={"id": f"tmeflow_bulk_pancancer_{cohort_id}_table", "sort_rows": False},
                ),
            )
        )
    if len(result["correlations"]):
        written.append(write_table(result["correlations"], outdir / f"{prefix}bulk_pancancer_correlation.tsv"))
        fig = plot_pancancer_heatmap(result["correlations"], focus)
        written.append(save_figure(fig, outdir / f"{prefix}bulk_pancancer_correlation.png"))
    return written
