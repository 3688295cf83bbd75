"""Survival and outcome statistics.

Kaplan-Meier, log-rank, maximally selected rank statistics, Cox proportional hazards with a
proportional-hazards check, logistic regression. Plain numpy implementations where the numbers must
match R's ``survival`` package exactly (Kaplan-Meier, ``survdiff`` log-rank with observed/expected) or
must be fast (the log-rank statistic over every candidate cut-point, univariate Cox models in
:mod:`tmeflow.coxph`); lifelines for Cox models of several terms (Efron ties, as R's ``coxph``) and
statsmodels for logistic regression.
"""

from .cutpoints import (
    CutpointResult,
    logrank_scores,
    maxstat_cutpoint,
    maxstat_permutation_p,
    maxstat_statistics,
    median_cutpoint,
    p_lausen92,
)
from .events import LogRankResult, kaplan_meier, logrank_test, median_survival, parse_event
from .models import CoxResult, LogisticResult, cox_regression, logistic_regression

__all__ = [
    "CoxResult",
    "CutpointResult",
    "LogRankResult",
    "LogisticResult",
    "cox_regression",
    "kaplan_meier",
    "logistic_regression",
    "logrank_scores",
    "logrank_test",
    "maxstat_cutpoint",
    "maxstat_permutation_p",
    "maxstat_statistics",
    "median_cutpoint",
    "median_survival",
    "p_lausen92",
    "parse_event",
]
