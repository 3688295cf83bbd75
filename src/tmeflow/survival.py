"""Survival and outcome statistics.

Kaplan-Meier, log-rank, maximally selected rank statistics, Cox proportional hazards with a
proportional-hazards check, logistic regression. Plain numpy implementations where the numbers must
match R's ``survival`` package exactly (Kaplan-Meier, ``survdiff`` log-rank with observed/expected) or
must be fast (the log-rank statistic over every candidate cut-point, univariate Cox models in
:mod:`tmeflow.coxph`); lifelines for Cox models of several terms (Efron ties, as R's ``coxph``) and
statsmodels for logistic regression.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from .coxph import cox_univariate
from .log import get_logger

logger = get_logger(__name__)

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


# --------------------------------------------------------------------------------------------------
# Kaplan-Meier and log-rank


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


# --------------------------------------------------------------------------------------------------
# Maximally selected rank statistics


def logrank_scores(time: np.ndarray, event: np.ndarray) -> np.ndarray:
    """Log-rank scores of Hothorn & Lausen (2003) as ``exactRankTests::cscores.Surv`` computes them.

    ``a_i = event_i - sum_{j : rank_j <= R_i} event_(j) / (N - rank_(j) + 1)`` where observations are
    sorted by time and ``R_i`` = number of observations with time <= time_i (ties: max rank).

    Parameters
    ----------
    time
        Follow-up time per subject.
    event
        1 for an event, 0 for censored, per subject.

    Returns
    -------
    numpy.ndarray
        One score per subject, in the input order.
    """
    time = np.asarray(time, dtype=float)
    event = np.asarray(event, dtype=float)
    n = len(time)
    order = np.argsort(time, kind="stable")
    rank_max = stats.rankdata(time, method="max").astype(int)
    fact = event / (n - rank_max + 1)
    cumulative = np.cumsum(fact[order])
    return event - cumulative[rank_max - 1]


def p_lausen92(statistic: float, min_prop: float = 0.1, max_prop: float = 0.9) -> float:
    """Lausen & Schumacher (1992) approximation of the p-value of a maximally selected statistic.

    ``p = 4 phi(b) / b + phi(b) (b - 1/b) log(max_prop (1 - min_prop) / ((1 - max_prop) min_prop))``,
    bounded to [0, 1] (``maxstat::pLausen92``, Hothorn & Lausen 2003). It corrects for having chosen
    the best of all cut-points between the ``min_prop`` and ``max_prop`` quantiles; it is an upper
    bound and so slightly conservative.

    Parameters
    ----------
    statistic
        The maximally selected standardised statistic.
    min_prop, max_prop
        The quantile range of ``x`` the cut-points were searched in.

    Returns
    -------
    float
        The approximate p-value in [0, 1]; 1 for a non-positive or non-finite statistic.
    """
    b = float(statistic)
    if not np.isfinite(b) or b <= 0:
        return 1.0
    density = stats.norm.pdf(b)
    p = 4 * density / b + density * (b - 1 / b) * np.log((max_prop * (1 - min_prop)) / ((1 - max_prop) * min_prop))
    return float(min(max(p, 0.0), 1.0))


@dataclass
class CutpointResult:
    """Result of :func:`maxstat_cutpoint` / :func:`median_cutpoint`."""

    cutpoint: float
    statistic: float
    p_value: float  # corrected for the cut-point search (permutation or Lau92); raw log-rank p for the median split
    method: str
    n_low: int
    n_high: int
    p_lau92: float = float("nan")
    p_method: str = ""
    cuts: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))
    stats: np.ndarray = field(repr=False, default_factory=lambda: np.empty(0))


def _admissible(xs: np.ndarray, min_prop: float, max_prop: float) -> np.ndarray:
    """Lower-group sizes ``m`` of the admissible cut-points of sorted ``xs`` (one per distinct value)."""
    n = len(xs)
    first = np.r_[True, xs[1:] != xs[:-1]]
    m = np.flatnonzero(first)  # observations strictly below each distinct value
    return m[(m >= np.floor(n * min_prop)) & (m <= np.floor(n * max_prop)) & (m >= 1) & (m <= n - 1)]


def maxstat_statistics(x: np.ndarray, scores: np.ndarray, min_prop: float = 0.1, max_prop: float | None = None):
    """Standardised two-sample linear rank statistics for every admissible cut-point (vectorised).

    Observations sorted by ``x``; for ``m`` = number of observations with ``x <= cut`` (one ``m`` per
    distinct value, ``floor(N min_prop) <= m <= floor(N max_prop)``, ``1 <= m <= N - 1``) the statistic
    is ``|S_m - E_m| / sqrt(V_m)`` with ``S_m`` the sum of the scores of the lower group and the
    permutation moments ``E_m = m/N sum a``, ``V_m = m (N - m) / (N^2 (N - 1)) (N sum a^2 - (sum a)^2)``
    (Hothorn & Lausen 2003, ``maxstat::cmaxstat``).

    Parameters
    ----------
    x
        The continuous variable to cut, per subject.
    scores
        Rank scores per subject (e.g. :func:`logrank_scores`).
    min_prop, max_prop
        Smallest and largest fraction of subjects in the lower group; ``max_prop`` defaults to
        ``1 - min_prop``.

    Returns
    -------
    tuple of numpy.ndarray
        ``(cuts, statistics)``: each admissible cut-point (the largest ``x`` of its lower group) and its
        standardised statistic; both empty when no cut-point is admissible.
    """
    max_prop = 1 - min_prop if max_prop is None else max_prop
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    xs, ys = x[order], np.asarray(scores, dtype=float)[order]
    n = len(xs)
    m = _admissible(xs, min_prop, max_prop)
    if len(m) == 0:
        return np.empty(0), np.empty(0)
    total = ys.sum()
    expected = m / n * total
    variance = m * (n - m) / (n**2 * (n - 1)) * (n * (ys**2).sum() - total**2)
    cumulative = np.cumsum(ys)[m - 1]
    with np.errstate(divide="ignore", invalid="ignore"):
        statistic = np.abs((cumulative - expected) / np.sqrt(variance))
    return xs[m - 1], np.nan_to_num(statistic, nan=0.0)


def maxstat_permutation_p(
    x: np.ndarray, scores: np.ndarray, observed: float, min_prop: float = 0.1, n_perm: int = 1000, seed: int = 0
) -> float:
    """Permutation p-value of the maximally selected statistic (Hothorn & Lausen 2003, conditional test).

    The scores are permuted ``n_perm`` times over the samples (numpy generator seeded with ``seed``);
    for each permutation the maximum standardised statistic over the same admissible cut-points is
    computed in one vectorised pass (the permutation moments E, V do not change), and
    ``p = (1 + #{max_perm >= observed}) / (n_perm + 1)``.

    Parameters
    ----------
    x
        The continuous variable that was cut, per subject.
    scores
        Rank scores per subject (e.g. :func:`logrank_scores`).
    observed
        The maximally selected statistic of the data.
    min_prop
        Smallest fraction of subjects in either group.
    n_perm
        Number of permutations.
    seed
        Seed of the permutation generator.

    Returns
    -------
    float
        The permutation p-value; NaN when no cut-point is admissible or the scores do not vary.
    """
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    xs = x[order]
    n = len(xs)
    m = _admissible(xs, min_prop, 1 - min_prop)
    scores = np.asarray(scores, dtype=float)
    total = scores.sum()
    variance = m * (n - m) / (n**2 * (n - 1)) * (n * (scores**2).sum() - total**2)
    if len(m) == 0 or np.all(variance <= 0):
        return float("nan")
    rng = np.random.default_rng(seed)
    permuted = rng.permuted(np.broadcast_to(scores, (n_perm, n)), axis=1)
    cumulative = np.cumsum(permuted, axis=1)[:, m - 1]
    maxima = (np.abs(cumulative - m / n * total) / np.sqrt(variance)).max(axis=1)
    return float((1 + np.sum(maxima >= observed - 1e-10)) / (n_perm + 1))


def maxstat_cutpoint(
    x: np.ndarray, time: np.ndarray, event: np.ndarray, min_prop: float = 0.1, *, n_perm: int = 1000, seed: int = 0
) -> CutpointResult:
    """Optimal cut-point by maximally selected log-rank statistics, as survminer ``surv_cutpoint``.

    survminer calls ``maxstat.test(Surv(time, event) ~ x, smethod = "LogRank", minprop = min_prop,
    maxprop = 1 - min_prop)``: the cut-point is the ``x`` value maximising the standardised log-rank
    statistic (:func:`maxstat_statistics` on :func:`logrank_scores`); ``high`` = ``x > cutpoint``.
    The p-value is corrected for the search: by default a seeded permutation p-value over ``n_perm``
    permutations (:func:`maxstat_permutation_p`); with ``n_perm = 0`` the Lausen & Schumacher (1992)
    approximation (``maxstat`` ``pmethod = "Lau92"``, :func:`p_lausen92`; Hothorn & Lausen 2003,
    Comput Stat Data Anal 43:121), which is always reported as ``p_lau92`` and is conservative.

    Parameters
    ----------
    x
        The continuous variable to cut (e.g. a signature score), per subject.
    time
        Follow-up time per subject.
    event
        1 for an event, 0 for censored, per subject.
    min_prop
        Smallest fraction of subjects in either group (survminer's default 0.1).
    n_perm
        Permutations for the corrected p-value; 0 uses the Lausen & Schumacher approximation.
    seed
        Seed of the permutations.

    Returns
    -------
    CutpointResult
        The cut-point, its statistic, the corrected p-value and the group sizes (NaN fields when no
        cut-point is admissible).
    """
    x = np.asarray(x, dtype=float)
    scores = logrank_scores(time, event)
    cuts, statistics = maxstat_statistics(x, scores, min_prop)
    if len(cuts) == 0:
        return CutpointResult(float("nan"), float("nan"), float("nan"), "maxstat", len(x), 0)
    best = int(np.argmax(statistics))  # first maximum, as maxstat
    cut = float(cuts[best])
    statistic = float(statistics[best])
    p_lau = p_lausen92(statistic, min_prop, 1 - min_prop)
    if n_perm > 0:
        p_value, p_method = (
            maxstat_permutation_p(x, scores, statistic, min_prop, n_perm, seed),
            f"permutation({n_perm})",
        )
    else:
        p_value, p_method = p_lau, "Lau92"
    return CutpointResult(
        cutpoint=cut,
        statistic=statistic,
        p_value=p_value,
        method="maxstat",
        n_low=int((x <= cut).sum()),
        n_high=int((x > cut).sum()),
        p_lau92=p_lau,
        p_method=p_method,
        cuts=cuts,
        stats=statistics,
    )


def median_cutpoint(x: np.ndarray, time: np.ndarray, event: np.ndarray) -> CutpointResult:
    """Split at the median: ``high`` = ``x > median(x)``; the p-value is the plain log-rank p (no search).

    Parameters
    ----------
    x
        The continuous variable to split, per subject.
    time
        Follow-up time per subject.
    event
        1 for an event, 0 for censored, per subject.

    Returns
    -------
    CutpointResult
        The median, the log-rank chi-square and p, and the group sizes (NaN when one group is empty).
    """
    x = np.asarray(x, dtype=float)
    cut = float(np.median(x))
    high = x > cut
    if high.all() or (~high).all():
        return CutpointResult(cut, float("nan"), float("nan"), "median", int((~high).sum()), int(high.sum()))
    result = logrank_test(time, event, np.where(high, "high", "low"))
    return CutpointResult(cut, float(np.sqrt(result.chisq)), result.p, "median", int((~high).sum()), int(high.sum()))


# --------------------------------------------------------------------------------------------------
# Cox proportional hazards


@dataclass
class CoxResult:
    """Result of :func:`cox_regression`."""

    table: pd.DataFrame  # index term; coef, hr, hr_lower, hr_upper, se, z, p, ph_p, ph_fail
    concordance: float
    lr_statistic: float
    lr_df: int
    lr_p: float
    n: int
    events: int
    ph_ok: bool
    converged: bool = True


def _cox_lifelines(frame: pd.DataFrame, duration: str, event: str, ph_check: bool) -> dict[str, Any]:
    """Cox model of every non-outcome column of ``frame`` with lifelines ``CoxPHFitter`` (raises on failure)."""
    from lifelines import CoxPHFitter
    from lifelines.statistics import proportional_hazard_test

    fitter = CoxPHFitter()
    fitter.fit(frame, duration_col=duration, event_col=event)
    summary = fitter.summary
    lr = fitter.log_likelihood_ratio_test()
    table = pd.DataFrame(
        {
            "coef": summary["coef"],
            "hr": summary["exp(coef)"],
            "hr_lower": summary["exp(coef) lower 95%"],
            "hr_upper": summary["exp(coef) upper 95%"],
            "se": summary["se(coef)"],
            "z": summary["z"],
            "p": summary["p"],
        }
    )
    table["ph_p"] = np.nan
    if ph_check:
        try:
            ph = proportional_hazard_test(fitter, frame, time_transform="km")
            table["ph_p"] = ph.summary["p"].reindex(table.index).to_numpy()
        except Exception as exc:  # degenerate residuals
            logger.warning("proportional-hazards test failed for %s ~ %s: %s", duration, " + ".join(table.index), exc)
    return {
        "table": table,
        "concordance": float(fitter.concordance_index_),
        "lr_statistic": float(lr.test_statistic),
        "lr_df": int(lr.degrees_freedom),
        "lr_p": float(lr.p_value),
    }


def cox_regression(
    data: pd.DataFrame,
    duration: str,
    event: str,
    terms: list[str],
    *,
    ph_check: bool = True,
    ph_alpha: float = 0.05,
    label: str = "",
    method: str = "auto",
) -> CoxResult:
    """Cox proportional-hazards regression (Cox 1972) on complete cases, as lifelines ``CoxPHFitter``.

    Ties are handled with Efron's method, as R's ``coxph`` default; no penalty. Reports per term the
    coefficient, hazard ratio with Wald 95% CI and p, plus Harrell's concordance, the likelihood-ratio
    test of the model, n and events. Proportional hazards are checked with the Grambsch & Therneau
    (1994, Biometrika 81:515) test of scaled Schoenfeld residuals against Kaplan-Meier-transformed
    time (lifelines ``proportional_hazard_test(time_transform="km")``, like R ``cox.zph``'s default
    transform); ``ph_fail`` flags terms with p < ``ph_alpha`` and a warning is logged.

    Parameters
    ----------
    data
        One row per subject; rows with a missing value in ``duration``, ``event`` or a term are dropped.
    duration, event
        Columns of the follow-up time and of the event indicator (non-zero = event).
    terms
        Covariate columns of the model.
    ph_check
        Run the proportional-hazards test (``ph_p``); otherwise ``ph_p`` is NaN.
    ph_alpha
        Level below which ``ph_fail`` flags a term (default 0.05).
    label
        Shown in the warnings (e.g. the feature and endpoint).
    method
        ``"auto"`` (default): a model of one term is fitted by :func:`tmeflow.coxph.cox_univariate`, a numpy port of
        lifelines' Newton-Raphson and PH test that agrees with it to rounding (~1e-9 relative on the
        tests' data) at ~1/100 of its cost, a model of several terms by lifelines; ``"lifelines"``:
        always lifelines (the reference).

    Returns
    -------
    CoxResult
        ``table`` indexed by term with columns coef, hr, hr_lower, hr_upper, se, z, p, ph_p, ph_fail;
        concordance, likelihood-ratio statistic / df / p, n, events, ``ph_ok`` and ``converged``
        (False, with NaN numbers, when the fit raised, e.g. no events or a constant term).
    """
    if method not in {"auto", "lifelines"}:
        raise ValueError(f"cox_regression: method must be 'auto' or 'lifelines', not {method!r}")
    values = data[[duration, event, *terms]].to_numpy(dtype=float)
    values = values[~np.isnan(values).any(axis=1)]  # complete cases
    n, events = len(values), int(values[:, 1].sum())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            if len(terms) == 1 and method == "auto":
                fit: dict[str, Any] = cox_univariate(values[:, 2], values[:, 0], values[:, 1] != 0, ph_check)
                fit["table"] = pd.DataFrame(
                    {key: [fit.pop(key)] for key in ["coef", "hr", "hr_lower", "hr_upper", "se", "z", "p", "ph_p"]},
                    index=pd.Index(terms),
                )
                fit["lr_df"] = 1
            else:
                frame = pd.DataFrame(values, columns=[duration, event, *terms])
                fit = _cox_lifelines(frame, duration, event, ph_check)
        except Exception as exc:  # convergence failure (e.g. separation): report NaN, never crash the stage
            logger.warning(
                "Cox model %s ~ %s did not converge: %s", duration, " + ".join(terms), str(exc).splitlines()[0]
            )
            nan_table = pd.DataFrame(
                np.nan,
                index=pd.Index(terms, name="term"),
                columns=["coef", "hr", "hr_lower", "hr_upper", "se", "z", "p", "ph_p"],
            )
            nan_table["ph_fail"] = False
            return CoxResult(nan_table, np.nan, np.nan, len(terms), np.nan, n, events, True, False)
    table = fit["table"]
    table.index.name = "term"
    table["ph_fail"] = table["ph_p"] < ph_alpha
    ph_ok = not bool(table["ph_fail"].any())
    if not ph_ok:
        logger.warning(
            "proportional-hazards assumption violated (Schoenfeld p < %g) for %s in %s%s ~ %s",
            ph_alpha,
            ", ".join(table.index[table["ph_fail"]]),
            f"{label}: " if label else "",
            duration,
            " + ".join(terms),
        )
    return CoxResult(
        table=table,
        concordance=fit["concordance"],
        lr_statistic=fit["lr_statistic"],
        lr_df=fit["lr_df"],
        lr_p=fit["lr_p"],
        n=n,
        events=events,
        ph_ok=ph_ok,
    )


# --------------------------------------------------------------------------------------------------
# Logistic regression and multiple testing


@dataclass
class LogisticResult:
    """Result of :func:`logistic_regression`."""

    table: pd.DataFrame  # index term; coef, odds_ratio, or_lower, or_upper, se, p
    n: int
    n_positive: int
    converged: bool


def logistic_regression(data: pd.DataFrame, outcome: str, terms: list[str]) -> LogisticResult:
    """Logistic regression (maximum likelihood, statsmodels ``Logit``) of a 0/1 ``outcome`` on ``terms``.

    Complete cases only; reports per term the log-odds coefficient, odds ratio ``exp(coef)`` with Wald
    95% CI and p. Perfect separation or non-convergence gives NaN rows (logged), not an exception.

    Parameters
    ----------
    data
        One row per subject with the outcome and term columns.
    outcome
        The 0/1 outcome column (e.g. immunotherapy response).
    terms
        The explanatory columns, entered together.

    Returns
    -------
    LogisticResult
        Per-term table (``coef, odds_ratio, or_lower, or_upper, se, p``), the complete-case size, the number
        of positives and whether the fit converged.
    """
    import statsmodels.api as sm

    frame = data[[outcome, *terms]].dropna().astype(float)
    nan_table = pd.DataFrame(
        np.nan, index=pd.Index(terms, name="term"), columns=["coef", "odds_ratio", "or_lower", "or_upper", "se", "p"]
    )
    n_pos = int(frame[outcome].sum())
    if n_pos == 0 or n_pos == len(frame):
        return LogisticResult(nan_table, len(frame), n_pos, False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            model = sm.Logit(frame[outcome], sm.add_constant(frame[terms], has_constant="add")).fit(disp=0, maxiter=100)
        except Exception as exc:
            logger.warning("logistic model %s ~ %s failed: %s", outcome, " + ".join(terms), str(exc).splitlines()[0])
            return LogisticResult(nan_table, len(frame), n_pos, False)
    ci = model.conf_int()
    table = pd.DataFrame(
        {
            "coef": model.params[terms],
            "odds_ratio": np.exp(model.params[terms]),
            "or_lower": np.exp(ci.loc[terms, 0]),
            "or_upper": np.exp(ci.loc[terms, 1]),
            "se": model.bse[terms],
            "p": model.pvalues[terms],
        }
    )
    table.index.name = "term"
    return LogisticResult(table, len(frame), n_pos, bool(model.mle_retvals.get("converged", True)))
