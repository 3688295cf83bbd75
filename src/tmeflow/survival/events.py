"""Event coding, Kaplan-Meier and the log-rank test, as R's ``survival`` package computes them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

_EVENT_WORDS = {
    1: (
        "dead",
        "deceased",
        "died",
        "death",
        "event",
        "yes",
        "true",
        "progressed",
        "progression",
        "recurred",
        "recurrence",
        "relapse",
        "relapsed",
        "metastasis",
    ),
    0: (
        "alive",
        "living",
        "censored",
        "censor",
        "no",
        "false",
        "diseasefree",
        "disease-free",
        "tumor free",
        "tumour free",
        "progressionfree",
        "progression-free",
        "none",
    ),
}


def parse_event(values: pd.Series) -> pd.Series:
    """Event indicator as float 1/0/NaN.

    Accepts 0/1 numbers, booleans, cBioPortal strings (``1:DECEASED``, ``0:LIVING``: the leading digit
    counts) and words (dead/deceased/event/yes/progressed/recurred... = 1; alive/living/censored/no = 0,
    case-insensitive). Anything else becomes NaN (the caller decides whether that is an error).

    Parameters
    ----------
    values
        One clinical event column, any dtype.

    Returns
    -------
    pandas.Series
        Same index; 1.0 (event), 0.0 (censored) or NaN (unreadable).
    """
    if pd.api.types.is_bool_dtype(values):
        return values.astype(float)
    if pd.api.types.is_numeric_dtype(values):
        out = values.astype(float)
        return out.where(out.isin([0.0, 1.0]))

    def one(value: Any) -> float:
        """One clinical value -> 1/0/NaN."""
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return np.nan
        text = str(value).strip().lower()
        if text[:1] in {"0", "1"} and (len(text) == 1 or text[1] in ":. _-"):
            return float(text[0])
        for code, words in _EVENT_WORDS.items():
            if text in words:
                return float(code)
        return np.nan

    return values.map(one).astype(float)


def kaplan_meier(time: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """Kaplan-Meier product-limit estimate (Kaplan & Meier 1958), as R ``survfit``.

    One row per distinct observed time: ``n_risk`` (time >= t), ``n_event``, ``n_censor`` and
    ``survival`` = prod over t_i <= t of (1 - d_i / n_i), with Greenwood's standard error ``std_err``
    of the survival.

    Parameters
    ----------
    time
        Follow-up time per subject (any unit).
    event
        1 for an event, 0 for censored, per subject.

    Returns
    -------
    pandas.DataFrame
        Columns ``time, n_risk, n_event, n_censor, survival, std_err``, sorted by time.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    times, index, n_total = np.unique(time, return_inverse=True, return_counts=True)
    n_risk = (len(time) - np.r_[0, np.cumsum(n_total)[:-1]]).astype(float)
    n_event = np.bincount(index.ravel(), weights=event, minlength=len(times))
    surv = np.cumprod(1.0 - n_event / n_risk)
    with np.errstate(divide="ignore", invalid="ignore"):
        green = np.cumsum(np.where(n_risk > n_event, n_event / (n_risk * (n_risk - n_event)), np.inf))
    return pd.DataFrame(
        {
            "time": times,
            "n_risk": n_risk.astype(int),
            "n_event": n_event.astype(int),
            "n_censor": (n_total - n_event).astype(int),
            "survival": surv,
            "std_err": surv * np.sqrt(green),
        }
    )


def median_survival(time: np.ndarray, event: np.ndarray) -> float:
    """Return the median survival time: the first time at which the Kaplan-Meier survival is <= 0.5.

    Parameters
    ----------
    time
        Follow-up time per subject.
    event
        1 for an event, 0 for censored, per subject.

    Returns
    -------
    float
        The median survival time, NaN when the survival never falls to 0.5.
    """
    table = kaplan_meier(time, event)
    below = table.loc[table["survival"] <= 0.5, "time"]
    return float(below.iloc[0]) if len(below) else float("nan")


@dataclass
class LogRankResult:
    """Result of :func:`logrank_test`: chi-square on ``df`` degrees of freedom and per-group O/E."""

    chisq: float
    df: int
    p: float
    table: pd.DataFrame = field(repr=False)  # index group; columns n, observed, expected, o_minus_e


def logrank_test(time: np.ndarray, event: np.ndarray, group: np.ndarray) -> LogRankResult:
    """k-sample log-rank test (Mantel 1966; Peto & Peto 1972), identical to R ``survdiff(rho = 0)``.

    At each distinct event time t with n_t at risk and d_t events, group g expects
    ``d_t n_gt / n_t`` events; the covariance of O - E is
    ``V_gh = sum_t d_t (n_t - d_t) / (n_t - 1) * n_gt / n_t * (1[g = h] - n_ht / n_t)``.
    The statistic is ``(O - E)' V^- (O - E)`` with a generalised inverse, on k - 1 df.

    Parameters
    ----------
    time
        Follow-up time per subject.
    event
        1 for an event, 0 for censored, per subject.
    group
        Group label per subject (two or more groups).

    Returns
    -------
    LogRankResult
        Chi-square statistic, degrees of freedom (groups - 1), p-value and the per-group observed and
        expected events.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    group = np.asarray(group)
    levels = pd.unique(pd.Series(group)).tolist()
    try:
        levels = sorted(levels)
    except TypeError:
        pass
    event_times = np.unique(time[event > 0])
    at_risk = np.array([[((time >= t) & (group == g)).sum() for g in levels] for t in event_times], dtype=float)
    deaths = np.array(
        [[((time == t) & (event > 0) & (group == g)).sum() for g in levels] for t in event_times], dtype=float
    )
    n_t = at_risk.sum(axis=1, keepdims=True)
    d_t = deaths.sum(axis=1, keepdims=True)
    expected = (d_t * at_risk / n_t).sum(axis=0)
    observed = deaths.sum(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        factor = np.where(n_t > 1, d_t * (n_t - d_t) / (n_t - 1), 0.0) / n_t  # (T, 1)
    share = at_risk / n_t
    weighted = factor * at_risk  # (T, k)
    variance = np.diag(weighted.sum(axis=0)) - weighted.T @ share
    diff = observed - expected
    chisq = float(diff @ np.linalg.pinv(variance) @ diff) if len(levels) > 1 else 0.0
    df = len(levels) - 1
    p = float(stats.chi2.sf(chisq, df)) if df > 0 else float("nan")
    table = pd.DataFrame(
        {
            "n": [int((group == g).sum()) for g in levels],
            "observed": observed,
            "expected": expected,
            "o_minus_e": diff,
        },
        index=pd.Index(levels, name="group"),
    )
    return LogRankResult(chisq=chisq, df=df, p=p, table=table)
