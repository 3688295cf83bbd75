"""Bulk clinical endpoints: survival and node columns, covariates, and the per-feature survival analysis."""

from __future__ import annotations

import re
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..log import get_logger, progress
from ..stats import bh_fdr
from ..survival import cox_regression, logrank_test, maxstat_cutpoint, median_cutpoint, parse_event

if TYPE_CHECKING:
    from .settings import BulkSettings

logger = get_logger(__package__)


# --------------------------------------------------------------------------------------------------
# Clinical columns


def detect_endpoints(clinical: pd.DataFrame, explicit: str = "", restrict: str = "") -> dict[str, tuple[str, str]]:
    """Find the survival endpoints of a clinical table by the naming rules of the module docstring.

    Parameters
    ----------
    clinical
        The clinical table.
    explicit
        ``survival_columns``: ``NAME:time_column:event_column,...`` (overrides detection).
    restrict
        ``survival_endpoints``: comma-separated names kept (empty = all).

    Returns
    -------
    dict
        Endpoint name -> (time column, event column).
    """
    columns = list(clinical.columns)
    lowered = {c.lower(): c for c in columns}
    endpoints: dict[str, tuple[str, str]] = {}
    if explicit.strip():
        for item in explicit.split(","):
            parts = [p.strip() for p in item.split(":")]
            if len(parts) != 3 or not all(parts):
                raise TmeflowInputError(f"survival_columns entry {item!r} must be NAME:time_column:event_column")
            for col in parts[1:]:
                if col not in clinical.columns:
                    raise TmeflowInputError(f"survival column {col} not in the clinical table", column=col)
            endpoints[parts[0].upper()] = (parts[1], parts[2])
    else:
        for low, col in lowered.items():
            candidates = []
            m = re.fullmatch(r"(.+?)[_.](time|days|months|years)", low)
            if m:
                base = m.group(1)
                candidates = [f"{base}_event", f"{base}_status", f"{base}.event", f"{base}.status"]
                if m.group(2) == "time" and low == f"{base}.time":
                    candidates.append(base)
            m2 = re.fullmatch(r"t\.(.+)", low)
            if m2:
                base = m2.group(1)
                candidates = [f"e.{base}"]
            for cand in candidates:
                if cand in lowered and lowered[cand] != col:
                    endpoints.setdefault(base.upper(), (col, lowered[cand]))
                    break
    if restrict.strip():
        wanted = [w.strip().upper() for w in restrict.split(",") if w.strip()]
        missing = [w for w in wanted if w not in endpoints]
        if missing:
            raise TmeflowInputError(
                f"survival endpoint(s) {', '.join(missing)} not found in the clinical table "
                f"(detected: {', '.join(endpoints) or 'none'}); name columns <X>_time/<X>_event or set survival_columns"
            )
        endpoints = {w: endpoints[w] for w in wanted}
    return endpoints


def survival_frame(clinical: pd.DataFrame, name: str, columns: tuple[str, str], source: Path) -> pd.DataFrame:
    """Validate the ``time``/``event`` columns of one endpoint.

    Parameters
    ----------
    clinical
        The clinical table, indexed by sample.
    name
        The endpoint's name, for messages.
    columns
        (time column, event column); events are coded by :func:`tmeflow.survival.parse_event`.
    source
        The clinical table's path, for messages.

    Returns
    -------
    DataFrame
        ``time`` and ``event`` (0/1) per sample; rows with a missing time or event dropped.
    """
    time_col, event_col = columns
    time = pd.to_numeric(clinical[time_col], errors="coerce")
    if (time.isna() & clinical[time_col].notna()).any():
        raise TmeflowInputError(f"endpoint {name}: non-numeric survival times", file=source, column=time_col)
    if (time < 0).any():
        bad = time.index[time < 0][0]
        raise TmeflowInputError(
            f"endpoint {name}: negative survival time", file=source, column=time_col, sample=str(bad)
        )
    event = parse_event(clinical[event_col])
    unreadable = event.isna() & clinical[event_col].notna()
    if unreadable.any():
        value = clinical[event_col][unreadable].iloc[0]
        raise TmeflowInputError(
            f"endpoint {name}: event value '{value}' is not 0/1, true/false, dead/alive or 1:DECEASED-style",
            file=source,
            column=event_col,
        )
    frame = pd.DataFrame({"time": time, "event": event}).dropna()
    if frame["event"].sum() == 0:
        raise TmeflowInputError(
            f"endpoint {name} has no events among {len(frame)} samples", file=source, column=event_col
        )
    return frame


def covariate_matrix(clinical: pd.DataFrame, covariates: str, source: Path) -> pd.DataFrame:
    """Build the numeric covariates of the multivariate models.

    Parameters
    ----------
    clinical
        The clinical table.
    covariates
        ``cox_covariates``: comma-separated clinical columns.
    source
        The clinical table's path, for messages.

    Returns
    -------
    DataFrame
        Samples x covariates; text columns become 0/1 dummies (first level = reference).
    """
    names = [c.strip() for c in covariates.split(",") if c.strip()]
    parts = []
    for name in names:
        if name not in clinical.columns:
            raise TmeflowInputError(f"covariate {name} is not a clinical column", file=source, column=name)
        column = clinical[name]
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().sum() == column.notna().sum():
            parts.append(numeric.rename(name))
        else:
            dummies = pd.get_dummies(column.astype("string"), prefix=name, drop_first=True, dtype=float)
            dummies[column.isna().to_numpy()] = np.nan
            parts.append(dummies)
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=clinical.index)


def node_status(column: pd.Series, source: Path) -> pd.Series:
    """Code lymph-node status as 0 (N0) / 1 (N+): numbers > 0, ``N1``-``N3`` (any prefix such as pN), yes/positive.

    Parameters
    ----------
    column
        The ``node_column`` values per sample.
    source
        The clinical table's path, for messages.

    Returns
    -------
    Series
        0 / 1 / NaN per sample; an unreadable value is an input error.
    """

    def one(value: Any) -> float:
        """One clinical value -> 0/1/NaN."""
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return np.nan
        text = str(value).strip().lower()
        try:
            return float(float(text) > 0)
        except ValueError:
            pass
        m = re.match(r"^[pcy]?n([0-3])", text)
        if m:
            return float(int(m.group(1)) > 0)
        if text in {"yes", "positive", "pos", "n+", "true"}:
            return 1.0
        if text in {"no", "negative", "neg", "n-", "false"}:
            return 0.0
        return np.nan

    status = column.map(one).astype(float)
    if status.nunique() < 2:
        raise TmeflowInputError(
            "node column must have both node-negative (0/N0) and node-positive (>0/N1-N3) samples",
            file=source,
            column=str(column.name),
        )
    return status


# --------------------------------------------------------------------------------------------------
# Survival per feature


def analyse_survival(
    features: pd.DataFrame,
    surv: pd.DataFrame,
    endpoint: str,
    covariates: pd.DataFrame,
    settings: BulkSettings,
    required: tuple[str, ...] = (),
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.Series]]:
    """Cut-point, log-rank and Cox models of every feature for one endpoint.

    A feature whose values cannot be split (constant or heavily tied, e.g. the fraction of a cell type
    the deconvolution never finds) is left out with a warning; when it is one of ``required`` (the
    genes a user named) or no feature can be split, that is an input error.

    Per feature: high/low groups by ``cutpoint_method`` (maxstat with a permutation- or Lau92-corrected
    p, or median; every split is checked before any model is fitted),
    log-rank (R ``survdiff``) of high vs low, univariate Cox of the standardised feature (HR per SD)
    and of high vs low, and, when covariates are given, multivariate Cox of high vs low + covariates,
    each with a Schoenfeld proportional-hazards check.

    Which numbers to use: ``p`` (and its BH ``fdr``) is the primary p-value, the corrected cut-point p
    for maxstat (Hothorn & Lausen 2003; the cut-point was chosen to minimise the log-rank p, so the
    plain ``logrank_p`` at that split is anti-conservative) and the log-rank p for the pre-specified
    median split. Effect sizes are the HRs per SD of the continuous score (``hr_per_sd``), which do
    not depend on a chosen split; the high/low HRs of the Cox table (``*_group`` models) and the
    log-rank p of a maxstat split are descriptive of the optimised split (``split`` says which).

    Parameters
    ----------
    features
        Samples x features.
    surv
        The endpoint's survival frame (``time``, ``event``) indexed by sample.
    endpoint
        The endpoint's name.
    covariates
        Samples x covariates of the multivariate model (no columns: no multivariate model).
    settings
        ``cutpoint_method``, ``cutpoint_min_prop``, ``cutpoint_permutations``, ``seed`` and ``ph_alpha``.
    required
        Features that must be splittable (the genes a user named).

    Returns
    -------
    tuple of (DataFrame, DataFrame, dict)
        The survival table (one row per feature: split, ``p``, ``fdr``, ``hr_per_sd`` and its CI and p,
        ``logrank_p``, ``ph_fail`` ...), the Cox table (one row per feature, model and term) and, per feature,
        the high/low group of each sample.
    """
    rows, cox_rows, groups, cuts, unsplittable = [], [], {}, {}, []
    samples = surv.index.intersection(features.index)
    surv = surv.loc[samples]
    n_perm = settings.cutpoint_permutations if settings.cutpoint_method == "maxstat" else 0
    # all cut-points first: a degenerate split fails before any model is fitted
    what = f"endpoint {endpoint}: cut-points ({n_perm} permutations each), feature"
    for feature in progress(features.columns, len(features.columns), what, logger):
        x = features.loc[samples, feature].dropna()
        s = surv.loc[x.index]
        if settings.cutpoint_method == "maxstat":
            cut = maxstat_cutpoint(
                x.to_numpy(),
                s["time"].to_numpy(),
                s["event"].to_numpy(),
                settings.cutpoint_min_prop,
                n_perm=settings.cutpoint_permutations,
                seed=settings.seed,
            )
        else:
            cut = median_cutpoint(x.to_numpy(), s["time"].to_numpy(), s["event"].to_numpy())
        high = (x > cut.cutpoint).astype(float)
        if not np.isfinite(cut.cutpoint) or high.sum() == 0 or high.sum() == len(high):
            message = (
                f"feature {feature}, endpoint {endpoint}: all {len(x)} samples fall in one cut-point group "
                "(constant or heavily tied values)"
            )
            if feature in required:
                raise TmeflowInputError(f"{message}; remove it or change cutpoint_method/cutpoint_min_prop")
            unsplittable.append(feature)
            continue
        cuts[feature] = cut
        groups[feature] = high.map({1.0: "high", 0.0: "low"})
    if unsplittable:
        if not cuts:
            raise TmeflowInputError(
                f"endpoint {endpoint}: no feature can be split into high and low groups "
                f"({', '.join(unsplittable)}: constant or heavily tied values)"
            )
        logger.warning(
            "endpoint %s: %d feature(s) left out, their values cannot be split (constant or heavily tied): %s",
            endpoint,
            len(unsplittable),
            ", ".join(unsplittable),
        )
    for feature in cuts:
        x = features.loc[samples, feature].dropna()
        s = surv.loc[x.index]
        cut = cuts[feature]
        high = (groups[feature] == "high").astype(float)
        lr = logrank_test(s["time"], s["event"], groups[feature])
        row = {
            "feature": feature,
            "endpoint": endpoint,
            "n": len(x),
            "events": int(s["event"].sum()),
            "cutpoint_method": cut.method,
            "cutpoint": cut.cutpoint,
            "cut_statistic": cut.statistic,
            "cut_p_corrected": cut.p_value if cut.method == "maxstat" else np.nan,
            "cut_p_method": cut.p_method,
            "cut_p_lau92": cut.p_lau92,
            "split": "optimised (maxstat)" if cut.method == "maxstat" else "median",
            "n_high": int(high.sum()),
            "n_low": int(len(high) - high.sum()),
            "logrank_chisq": lr.chisq,
            "logrank_p": lr.p,
            "observed_high": lr.table.loc["high", "observed"],
            "expected_high": lr.table.loc["high", "expected"],
            "observed_low": lr.table.loc["low", "observed"],
            "expected_low": lr.table.loc["low", "expected"],
        }
        data = s.copy()
        sd = x.std()
        data["score_per_sd"] = (x - x.mean()) / sd if sd > 0 else np.nan
        data["high"] = high
        models = [("univariate_continuous", ["score_per_sd"]), ("univariate_group", ["high"])]
        if covariates.shape[1]:
            data = data.join(covariates)
            models.append(("multivariate_group", ["high", *covariates.columns]))
        for model, terms in models:
            res = cox_regression(
                data, "time", "event", terms, ph_alpha=settings.ph_alpha, label=f"{feature} {endpoint} {model}"
            )
            for term, trow in res.table.iterrows():
                cox_rows.append(
                    {
                        "feature": feature,
                        "endpoint": endpoint,
                        "model": model,
                        "term": term,
                        "split": row["split"] if model.endswith("_group") else "continuous",
                        **trow.to_dict(),
                        "concordance": res.concordance,
                        "lr_statistic": res.lr_statistic,
                        "lr_df": res.lr_df,
                        "lr_p": res.lr_p,
                        "n": res.n,
                        "events": res.events,
                        "converged": res.converged,
                    }
                )
            if model == "univariate_continuous":
                row.update(
                    {
                        "hr_per_sd": res.table.loc["score_per_sd", "hr"],
                        "hr_per_sd_lower": res.table.loc["score_per_sd", "hr_lower"],
                        "hr_per_sd_upper": res.table.loc["score_per_sd", "hr_upper"],
                        "hr_per_sd_p": res.table.loc["score_per_sd", "p"],
                        "ph_fail": bool(res.table["ph_fail"].any()),
                    }
                )
        rows.append(row)
    table = pd.DataFrame(rows)
    primary = table["cut_p_corrected"].where(table["cutpoint_method"] == "maxstat", table["logrank_p"])
    table.insert(2, "p", primary)
    table.insert(3, "fdr", bh_fdr(primary))
    table["logrank_fdr"] = bh_fdr(table["logrank_p"])
    table["cut_fdr"] = bh_fdr(table["cut_p_corrected"])
    return table, pd.DataFrame(cox_rows), groups


def survival_mqc_headers(columns: Iterable[str], p_values: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Return the MultiQC column headers of a survival table: p-values red to green, HR with 2 decimals.

    MultiQC shows only the columns named in the headers, so every column gets a dict (empty: its defaults).

    Parameters
    ----------
    columns
        The table's columns after the ``id`` column.
    p_values
        The columns that hold p-values or FDRs (0-1, ``RdYlGn`` scale, 2 significant digits).

    Returns
    -------
    dict
        Column -> MultiQC header settings.
    """
    p_values = set(p_values)
    return {
        column: {"format": "{:.2g}", "scale": "RdYlGn", "min": 0, "max": 1}
        if column in p_values
        else {"format": "{:.2f}"}
        if column == "hr_per_sd"
        else {}
        for column in columns
    }
