"""Treatment response of a bulk cohort (e.g. an immunotherapy cohort): score by response, ROC AUC with CI.

The response column (``response``, or the column named by ``response_column``) holds RECIST best
response or a binary label: CR/PR (complete/partial response), ``responder``, ``R``, ``yes``, ``1`` are
responders; SD/PD (stable/progressive disease), ``non-responder``, ``NR``, ``no``, ``0`` are not (as in
immunotherapy cohorts such as IMvigor210, Mariathasan et al. 2018, Nature 554:544). Empty, ``NA`` and
``NE`` (not evaluable) are left out (logged); any other value is an input error.

Per feature: the two-sided Wilcoxon rank-sum (Mann-Whitney) test of responders vs non-responders, the
ROC AUC (the probability that a responder scores higher than a non-responder, ties counting 1/2) and its
95% CI from DeLong's variance (DeLong, DeLong & Clarke-Pearson 1988, Biometrics 44:837; pROC's default),
clipped to [0, 1] (at perfect separation DeLong's variance is 0 and the CI collapses to the AUC); BH FDR
across features.

Immunotherapy cohorts (a response column and survival endpoints such as OS and PFS): besides the ROC,
one figure of Kaplan-Meier curves of the lead signature per endpoint, split at the maxstat optimal
cut-point (:func:`tmeflow.bulk.endpoints.analyse_survival`, the same split as ``<sample>.bulk_survival.tsv``),
each panel labelled as an optimised split with its corrected cut-point p (Hothorn & Lausen 2003, or
permutations) next to the naive log-rank p.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..log import get_logger
from ..plotting import pyplot
from ..stats import bh_fdr
from .plots import _draw_km, split_label
from .reading import clinical_column

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__package__)

DEFAULT_COLUMN = "response"
RESPONDER = {"cr", "pr", "complete response", "partial response", "responder", "response", "r", "yes", "1", "true"}
NON_RESPONDER = {
    "sd",
    "pd",
    "stable disease",
    "progressive disease",
    "non-responder",
    "nonresponder",
    "non-response",
    "nr",
    "no",
    "0",
    "false",
}
MISSING = {"", "na", "nan", "ne", "not evaluable", "unknown"}
MIN_PER_GROUP = 3


def response_status(clinical: pd.DataFrame, column: str, source: Path) -> pd.Series | None:
    """Code each sample's treatment response: 1 (responder) / 0 (non-responder) / NaN (module docstring).

    Parameters
    ----------
    clinical
        The clinical table, indexed by sample.
    column
        ``response_column``; empty = the column ``response`` if present.
    source
        The clinical table's path, for messages.

    Returns
    -------
    Series or None
        The coded response per sample, or None when the cohort has no response column.
    """
    name = clinical_column(clinical, column, DEFAULT_COLUMN, "response_column", source)
    if name is None:
        return None

    def one(value) -> float:
        """One clinical value -> 1/0/NaN; anything else is an error."""
        text = "" if pd.isna(value) else str(value).strip().lower()
        if text.endswith(".0"):
            text = text[:-2]
        if text in RESPONDER:
            return 1.0
        if text in NON_RESPONDER:
            return 0.0
        if text in MISSING:
            return np.nan
        raise TmeflowInputError(
            f"response value '{value}' is not CR/PR/SD/PD, responder/non-responder, R/NR, yes/no or 1/0",
            file=source,
            column=name,
        )

    status = clinical[name].map(one).astype(float).rename("response")
    if status.isna().any():
        logger.info("response: %d sample(s) without an evaluable %s value left out", int(status.isna().sum()), name)
    counts = status.value_counts()
    if counts.get(1.0, 0) < MIN_PER_GROUP or counts.get(0.0, 0) < MIN_PER_GROUP:
        raise TmeflowInputError(
            f"response needs at least {MIN_PER_GROUP} responders and {MIN_PER_GROUP} non-responders "
            f"(found {int(counts.get(1.0, 0))} and {int(counts.get(0.0, 0))})",
            file=source,
            column=name,
        )
    return status


def delong_auc(responders: np.ndarray, others: np.ndarray) -> tuple[float, float]:
    """Compute the ROC AUC of a score separating ``responders`` from ``others`` and its DeLong standard error.

    DeLong, DeLong & Clarke-Pearson 1988 (Biometrics 44:837), structural components.

    Parameters
    ----------
    responders
        Scores of the responders.
    others
        Scores of the non-responders.

    Returns
    -------
    tuple of (float, float)
        AUC (ties count 1/2) and its standard error.
    """
    x, y = np.asarray(responders, float)[:, None], np.asarray(others, float)[None, :]
    psi = (x > y) + 0.5 * (x == y)
    v10, v01 = psi.mean(axis=1), psi.mean(axis=0)
    variance = v10.var(ddof=1) / len(v10) + v01.var(ddof=1) / len(v01)
    return float(v10.mean()), float(np.sqrt(variance))


def response_table(features: pd.DataFrame, kinds: dict[str, str], status: pd.Series) -> pd.DataFrame:
    """Test every feature for treatment response: Wilcoxon rank-sum and ROC AUC with DeLong 95% CI.

    Parameters
    ----------
    features
        Samples x features.
    kinds
        Kind of each feature.
    status
        1 / 0 / NaN per sample (:func:`response_status`).

    Returns
    -------
    DataFrame
        One row per feature: n, medians by group, ``wilcoxon_p``, ``auc``, ``auc_lower``, ``auc_upper`` and
        ``fdr`` (BH across features).
    """
    from scipy.stats import mannwhitneyu

    status = status.dropna()
    rows = []
    for feature in features.columns:
        x = features.loc[status.index, feature]
        ok = x.notna()
        resp, other = x[ok & (status == 1)].to_numpy(), x[ok & (status == 0)].to_numpy()
        auc, se = delong_auc(resp, other)
        p = mannwhitneyu(resp, other, alternative="two-sided").pvalue
        rows.append(
            {
                "feature": feature,
                "kind": kinds[feature],
                "n_responders": len(resp),
                "n_non_responders": len(other),
                "median_responders": np.median(resp),
                "median_non_responders": np.median(other),
                "wilcoxon_p": p,
                "auc": auc,
                "auc_lower": max(0.0, auc - 1.959964 * se),
                "auc_upper": min(1.0, auc + 1.959964 * se),
                "auc_se": se,
            }
        )
    table = pd.DataFrame(rows)
    table["fdr"] = bh_fdr(table["wilcoxon_p"])
    return table


def plot_response_roc(features: pd.DataFrame, status: pd.Series, table: pd.DataFrame, focus: list[str]) -> Figure:
    """Plot the ROC curves of the focus features (higher score = responder), AUC with 95% CI in the legend.

    Parameters
    ----------
    features
        Samples x features.
    status
        1 / 0 / NaN per sample.
    table
        The table of :func:`response_table`.
    focus
        The features drawn.

    Returns
    -------
    Figure
        One curve per focus feature and the chance diagonal.
    """
    plt = pyplot()
    status = status.dropna()
    fig, ax = plt.subplots(figsize=(5, 5))
    rows = table.set_index("feature")
    for feature in [f for f in focus if f in rows.index]:
        x = features.loc[status.index, feature]
        ok = x.notna()
        order = np.argsort(-x[ok].to_numpy(), kind="stable")
        y = status[ok].to_numpy()[order]
        tpr = np.concatenate([[0], np.cumsum(y) / y.sum()])
        fpr = np.concatenate([[0], np.cumsum(1 - y) / (1 - y).sum()])
        r = rows.loc[feature]
        ax.plot(fpr, tpr, lw=1.2, label=f"{feature}: AUC {r['auc']:.2f} ({r['auc_lower']:.2f}-{r['auc_upper']:.2f})")
    ax.plot([0, 1], [0, 1], color="grey", lw=0.8, ls="--")
    ax.set_xlabel("1 - specificity (non-responders above the threshold)")
    ax.set_ylabel("sensitivity (responders above the threshold)")
    ax.legend(fontsize=6, loc="lower right", frameon=False)
    fig.tight_layout()
    return fig


def plot_immunotherapy_km(
    survival: pd.DataFrame, survs: dict[str, pd.DataFrame], groups: dict[str, dict[str, pd.Series]], feature: str
) -> Figure:
    """Plot Kaplan-Meier curves of ``feature``'s high/low groups at its cut-point, one panel per endpoint (up to 4).

    Parameters
    ----------
    survival
        The survival table (split, corrected p and HR per feature and endpoint).
    survs
        Per endpoint, the survival frame indexed by sample.
    groups
        Per endpoint and feature, the high/low group of each sample.
    feature
        The lead feature.

    Returns
    -------
    Figure
        Each panel titled with the endpoint and labelled with the split and its corrected p (module docstring).
    """
    plt = pyplot()
    rows = (
        survival[(survival["feature"] == feature) & survival["endpoint"].isin(list(survs))]
        .drop_duplicates("endpoint")
        .head(4)
    )
    fig, axes = plt.subplots(1, max(1, len(rows)), figsize=(5.6 * max(1, len(rows)), 5), squeeze=False)
    for ax, (_, row) in zip(axes[0], rows.iterrows(), strict=False):
        g = groups[row["endpoint"]][feature]
        label = split_label(row).replace(" (naive", "\n(naive").replace("; HR/SD", "\nHR/SD")
        _draw_km(ax, survs[row["endpoint"]].loc[g.index], g, f"{feature} ({row['endpoint']}, immunotherapy)", label)
    fig.subplots_adjust(bottom=0.25, wspace=0.3)
    return fig
