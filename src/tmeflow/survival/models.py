"""Regression models of outcomes: Cox proportional hazards (with its PH check) and logistic regression."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from ..coxph import cox_univariate
from ..log import get_logger

logger = get_logger(__name__)


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
