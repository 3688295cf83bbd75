"""Univariate Cox proportional-hazards model with Efron ties, in numpy.

A port of lifelines 0.30 ``CoxPHFitter`` (Newton-Raphson on the standardised covariate, Efron 1977
ties) and ``proportional_hazard_test(time_transform="km")`` (Grambsch & Therneau 1994) for one
covariate, which agrees with lifelines to rounding at ~1/25-1/100 of its cost (no DataFrame, no
Python loop over subjects). The bulk stage fits two such models per feature and endpoint;
:func:`tmeflow.survival.cox_regression` uses it for every model of one term.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import special, stats

_Z_975 = float(stats.norm.ppf(0.975))  # lifelines' inv_normal_cdf(1 - alpha / 2), alpha = 0.05


class CoxFitError(ValueError):
    """The univariate Newton-Raphson stopped where lifelines raises ``ConvergenceError``."""


@dataclass(frozen=True)
class _EfronData:
    """Sorted univariate survival data and the beta-independent indices of Efron's tie correction."""

    x: np.ndarray  # covariate, sorted by (time, event) as lifelines sorts
    time: np.ndarray
    event: np.ndarray  # bool
    starts: np.ndarray  # first index of every distinct time
    event_group: np.ndarray  # distinct-time index of every event
    event_frac: np.ndarray  # l / d of every event: its rank l among the d tied events of its time

    @classmethod
    def build(cls, x: np.ndarray, time: np.ndarray, event: np.ndarray) -> _EfronData:
        """Sort by (time, event) and index the tied events."""
        order = np.lexsort((event, time))
        x, time, event = x[order], time[order], event[order]
        new = np.r_[True, time[1:] != time[:-1]]
        group = np.cumsum(new) - 1
        events = np.flatnonzero(event)
        event_group = group[events]
        tied = np.bincount(event_group, minlength=int(new.sum()))[event_group]
        rank = np.arange(len(events)) - np.searchsorted(event_group, event_group, side="left")
        return cls(x, time, event, np.flatnonzero(new), event_group, rank / tied)

    def tie_corrected(self, x: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Efron's ``S_k - (l/d) D_k`` (k = 0, 1, 2) for every event: risk-set minus tied-event sums."""
        phi = np.exp(x * beta)
        out = []
        for k in range(3):
            term = phi * x**k
            risk = np.cumsum(term[::-1])[::-1][self.starts]
            ties = np.bincount(
                self.event_group, weights=term[self.event], minlength=len(self.starts)
            )  # tied-event sums per distinct time
            out.append(risk[self.event_group] - self.event_frac * ties[self.event_group])
        return out[0], out[1], out[2]

    def derivatives(self, x: np.ndarray, beta: float) -> tuple[float, float, float]:
        """Hessian, gradient and log partial likelihood with Efron ties (lifelines ``_get_efron_values``)."""
        s0, s1, s2 = self.tie_corrected(x, beta)
        mean = s1 / s0
        gradient = float(x[self.event].sum() - mean.sum())
        loglik = float(x[self.event].sum() * beta - np.log(s0).sum())
        hessian = float((mean**2 - s2 / s0).sum())
        return hessian, gradient, loglik


def _newton_efron(data: _EfronData, x: np.ndarray) -> tuple[float, float, float, float]:
    """Damped Newton-Raphson of lifelines ``CoxPHFitter`` for one standardised covariate.

    A line-by-line port of lifelines 0.30 ``_newton_raphson_for_efron_model`` and its ``StepSizer``
    (start at beta = 0 with step 0.95; stop when |delta| < 1e-7, the relative change of the log
    likelihood < 1e-9, the Newton decrement < 1e-7, after 500 steps or when the step falls to 1e-5),
    so that the estimate, including where the likelihood has no finite maximum (separation), is the one
    lifelines reports. Returns (beta, hessian, log likelihood, null log likelihood) at the last point
    evaluated; raises :class:`CoxFitError` where lifelines raises (no information, NaN).
    """
    beta, delta, step, previous, null = 0.0, 0.0, 0.95, 0.0, float("nan")
    temper, norms = False, []
    for iteration in range(1, 501):
        beta += step * delta
        hessian, gradient, loglik = data.derivatives(x, beta)
        if iteration == 1:
            null = loglik
        if not -hessian > 0 or not np.isfinite(gradient):  # Cholesky of -H fails / delta is NaN
            raise CoxFitError("Newton-Raphson halted: no information (singular or NaN Hessian)")
        delta = gradient / -hessian
        size = abs(delta)
        if (
            size < 1e-7
            or (previous != 0 and abs(loglik - previous) / -previous < 1e-9)
            or gradient * delta / 2 < 1e-7
            or iteration >= 500
            or step <= 1e-5
            or (abs(loglik) < 1e-4 and size > 1.0)
        ):
            return beta, hessian, loglik, null
        previous = loglik
        norms.append(size)  # lifelines StepSizer.update
        if temper:
            step = min(step * 1.3, 0.95)
        if size >= 15.0:
            step, temper = step * 0.1, True
        elif size > 5.0:
            step, temper = step * 0.25, True
        if len(norms) >= 3:
            step = min(step * 1.3, 1.0) if bool(np.all(np.diff(np.asarray(norms[-3:])) < 0)) else step * 0.98
    raise AssertionError("unreachable: the loop returns at iteration 500")


def _concordance(time: np.ndarray, event: np.ndarray, risk: np.ndarray) -> float:
    """Harrell's C of a risk score, counted as lifelines ``concordance_index`` counts it.

    A pair is comparable when the earlier subject had the event (a subject censored at the time of
    another's event counts as later; tied event times are not comparable); concordant when the earlier
    subject has the higher risk, ties in risk count one half. Chunked O(n^2) counting.
    """
    correct = tied = pairs = 0.0
    for start in range(0, len(time), 2048):
        rows = slice(start, start + 2048)
        t_i, e_i, r_i = time[rows, None], event[rows, None], risk[rows, None]
        comparable = e_i & ((t_i < time) | ((t_i == time) & ~event))
        pairs += comparable.sum()
        correct += (comparable & (r_i > risk)).sum()
        tied += (comparable & (r_i == risk)).sum()
    return float((correct + tied / 2) / pairs) if pairs else float("nan")


def cox_univariate(x: np.ndarray, time: np.ndarray, event: np.ndarray, ph_check: bool) -> dict[str, float]:
    """Fit a univariate Cox model with Efron ties and test its proportional hazards, in numpy.

    Reproduces lifelines ``CoxPHFitter().fit`` (on the covariate standardised by its mean and sample SD,
    rescaled after) and ``proportional_hazard_test(time_transform="km")`` to rounding: the Wald SE is
    ``1 / (sd sqrt(-H))``, the likelihood-ratio statistic ``2 (l(beta) - l(0))`` (Efron 1977 partial
    likelihood), Harrell's C from the fitted risk, and the Grambsch-Therneau (1994) statistic
    ``T = D se^2 (sum_k g_k s_k)^2 / sum_k g_k^2`` over the D events with Schoenfeld residuals ``s_k``
    (Efron-weighted risk-set mean) and ``g_k`` = 1 - Kaplan-Meier at the event time, centred.

    Parameters
    ----------
    x
        Covariate of each subject (complete cases, any unit; the HR is per unit of ``x``).
    time
        Follow-up time of each subject (any unit).
    event
        True where the subject had the event, False where censored.
    ph_check
        Compute the proportional-hazards p-value (else ``ph_p`` is NaN).

    Returns
    -------
    dict
        ``coef``, ``hr``, ``hr_lower``, ``hr_upper`` (Wald 95%), ``se``, ``z``, ``p`` (Wald), ``ph_p``,
        ``concordance``, ``lr_statistic`` and ``lr_p`` (1 df).

    Raises
    ------
    CoxFitError
        Where lifelines' fit raises (non-finite values, fewer than 2 subjects, no events, SD = 0) and also
        for a covariate whose SD is rounding noise (constant 0.1: lifelines reports SE ~1e23 and PH p = 0).
    """
    if len(x) < 2 or not (np.isfinite(x).all() and np.isfinite(time).all()):
        raise CoxFitError("non-finite values or fewer than 2 samples")
    mean, sd = float(np.mean(x)), float(np.std(x, ddof=1))
    if not sd > 1e-12 * max(1.0, abs(mean)):  # lifelines: NaN for sd = 0, a rounding-noise fit (SE ~1e23) above
        raise CoxFitError("the covariate has no variance")
    data = _EfronData.build(x, time, event)
    with np.errstate(all="ignore"):
        scaled = (data.x - mean) / sd
        beta, hessian, loglik, null = _newton_efron(data, scaled)
    coef = beta / sd
    se = float(np.sqrt(-1.0 / hessian / sd**2))
    z = coef / se
    lr = 2 * loglik - 2 * null
    out = {
        "coef": coef,
        "hr": float(np.exp(coef)),
        "hr_lower": float(np.exp(coef - _Z_975 * se)),
        "hr_upper": float(np.exp(coef + _Z_975 * se)),
        "se": se,
        "z": z,
        "p": float(special.chdtrc(1, z**2)),
        "ph_p": float("nan"),
        "concordance": _concordance(data.time, data.event, np.exp((data.x - mean) * coef)),
        "lr_statistic": lr,
        "lr_p": float(special.chdtrc(1, np.maximum(lr, 0.0))),  # lifelines: p = 1 for a negative statistic
    }
    if ph_check:
        with np.errstate(all="ignore"):
            s0, s1, _ = data.tie_corrected(data.x, coef)
            per_time = np.bincount(data.event_group, weights=s1 / s0, minlength=len(data.starts))
            n_tied = np.bincount(data.event_group, minlength=len(data.starts))
            residual = data.x[data.event] - (per_time / np.maximum(n_tied, 1))[data.event_group]
            deaths = int(data.event.sum())
            times, index, n_total = np.unique(data.time, return_inverse=True, return_counts=True)
            n_risk = len(data.time) - np.r_[0, np.cumsum(n_total)[:-1]]
            survival = np.cumprod(1.0 - np.bincount(index.ravel(), weights=data.event, minlength=len(times)) / n_risk)
            g = 1 - survival[index.ravel()[data.event]]  # 1 - Kaplan-Meier at each event time
            g = g - g.mean()
            scaled_residual = deaths * residual * se**2
            statistic = (g * scaled_residual).sum() ** 2 / (deaths * se**2 * (g**2).sum())
            out["ph_p"] = float(special.chdtrc(1, statistic))
    return out
