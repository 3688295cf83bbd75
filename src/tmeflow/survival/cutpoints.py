"""Cut-points of a continuous variable for survival.

Maximally selected log-rank statistics (survminer's ``surv_cutpoint``, Hothorn & Lausen 2003) and the
median split.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import stats

from .events import logrank_test


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
