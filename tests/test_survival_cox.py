"""The numpy univariate Cox model (Efron ties) against lifelines ``CoxPHFitter``, which it replaces for one term."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tmeflow.survival import cox_regression, kaplan_meier

COLUMNS = ["coef", "hr", "hr_lower", "hr_upper", "se", "z", "p", "ph_p"]


def _simulated(n: int, seed: int, *, binary: bool = False, ties: int = 0, censor: float = 0.3) -> pd.DataFrame:
    """Exponential times with log-hazard 0.5 x; ``ties`` > 0 rounds times up to that many distinct values."""
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 2, n).astype(float) if binary else rng.normal(2.0, 3.0, n)
    time = rng.exponential(np.exp(-0.5 * (x - x.mean()) / max(x.std(), 1e-9)))
    if ties:
        time = np.ceil(time / time.max() * ties)
    return pd.DataFrame({"time": time, "event": (rng.random(n) > censor).astype(float), "x": x})


def _numbers(result) -> np.ndarray:
    row = result.table.iloc[0][COLUMNS].to_numpy(dtype=float)
    return np.r_[row, result.concordance, result.lr_statistic, result.lr_p, result.lr_df, result.n, result.events]


def _assert_same_as_lifelines(data: pd.DataFrame) -> None:
    ours = cox_regression(data, "time", "event", ["x"])
    reference = cox_regression(data, "time", "event", ["x"], method="lifelines")
    a, b = _numbers(ours), _numbers(reference)
    assert np.array_equal(np.isnan(a), np.isnan(b)), (a, b)
    finite = ~np.isnan(b)
    np.testing.assert_allclose(a[finite], b[finite], rtol=1e-6, atol=1e-12)
    assert ours.converged == reference.converged and ours.ph_ok == reference.ph_ok
    assert ours.table["ph_fail"].tolist() == reference.table["ph_fail"].tolist()


@pytest.mark.parametrize(
    ("n", "seed", "binary", "ties"),
    [
        (40, 0, False, 0),  # the bulk test cohort's size, continuous score per SD
        (40, 1, True, 0),  # high vs low group
        (60, 2, False, 4),  # heavy ties: 4 distinct times, up to ~20 tied events each
        (60, 3, True, 3),  # heavy ties and a binary covariate
        (8, 4, False, 0),  # small sample
        (6, 5, True, 2),  # tiny sample, ties
        (300, 6, False, 25),  # larger cohort with ties
    ],
)
def test_univariate_cox_matches_lifelines(n, seed, binary, ties):
    """Coefficient, HR and CI, Wald SE/z/p, Schoenfeld (km) PH p, concordance and LR test to 1e-6 relative."""
    _assert_same_as_lifelines(_simulated(n, seed, binary=binary, ties=ties))


def test_univariate_cox_matches_lifelines_under_separation():
    """No event in the high group: the likelihood has no maximum and lifelines stops on its relative change
    of the log likelihood; the port stops at the same iterate (a large negative coefficient)."""
    data = _simulated(30, 7, binary=True)
    data.loc[data["x"] == 1, "event"] = 0.0
    reference = cox_regression(data, "time", "event", ["x"], method="lifelines")
    assert reference.table.loc["x", "coef"] < -5
    _assert_same_as_lifelines(data)


@pytest.mark.parametrize("case", ["constant", "no_events", "one_row", "missing"])
def test_univariate_cox_degenerate_inputs_as_lifelines(case):
    """A feature without variance, no events or one row give NaN and converged=False, as the lifelines fit
    raises there; missing values are dropped as complete cases."""
    data = _simulated(20, 8)
    if case == "constant":
        data["x"] = 1.0
    elif case == "no_events":
        data["event"] = 0.0
    elif case == "one_row":
        data = data.iloc[:1]
    else:
        data.loc[data.index[:5], "x"] = np.nan
    ours = cox_regression(data, "time", "event", ["x"])
    _assert_same_as_lifelines(data)
    if case == "missing":
        assert ours.converged and ours.n == 15
    else:
        assert not ours.converged and ours.table[COLUMNS].isna().all(axis=None)


def test_planted_hazard_ratio_and_several_terms_still_lifelines():
    """A planted HR of e^0.7 per unit is recovered; a model of two terms goes through lifelines (same numbers
    with either method)."""
    rng = np.random.default_rng(9)
    x, z = rng.normal(size=400), rng.normal(size=400)
    data = pd.DataFrame({"time": rng.exponential(np.exp(-0.7 * x)), "event": 1.0, "x": x, "z": z})
    single = cox_regression(data, "time", "event", ["x"])
    assert single.table.loc["x", "coef"] == pytest.approx(0.7, abs=0.12)
    assert single.table.loc["x", "hr_lower"] < np.exp(0.7) < single.table.loc["x", "hr_upper"]
    both = cox_regression(data, "time", "event", ["x", "z"])
    same = cox_regression(data, "time", "event", ["x", "z"], method="lifelines")
    pd.testing.assert_frame_equal(both.table, same.table)
    with pytest.raises(ValueError, match="method"):
        cox_regression(data, "time", "event", ["x"], method="R")


def test_kaplan_meier_ties_and_censoring_by_hand():
    """Times 1, 1, 2, 2+, 3 (+ censored): S = 3/5 at 1, 3/5 * 2/3 at 2, 0 at 3; at risk 5, 3, 1."""
    table = kaplan_meier(np.array([2, 1, 3, 2, 1.0]), np.array([1, 1, 1, 0, 1.0]))
    assert table["time"].tolist() == [1, 2, 3]
    assert table["n_risk"].tolist() == [5, 3, 1]
    assert table["n_event"].tolist() == [2, 1, 1] and table["n_censor"].tolist() == [0, 1, 0]
    np.testing.assert_allclose(table["survival"], [0.6, 0.4, 0.0])


def test_constant_with_rounding_noise_variance_is_nan_not_lifelines_noise():
    """Constant 0.1: its mean is not exactly 0.1, so lifelines standardises rounding noise and reports a fit
    with SE ~1e23 and a PH p of 0 (a spurious violation); the port reports no fit instead."""
    data = _simulated(20, 10)
    data["x"] = 0.1
    reference = cox_regression(data, "time", "event", ["x"], method="lifelines")
    assert reference.table.loc["x", "se"] > 1e20
    ours = cox_regression(data, "time", "event", ["x"])
    assert not ours.converged and ours.table[COLUMNS].isna().all(axis=None) and ours.ph_ok


def test_negative_likelihood_ratio_statistic_has_p_one_as_lifelines():
    """A rare group (15%) with few events: lifelines' damped Newton stops (relative change of the log
    likelihood < 1e-9) at a coefficient whose likelihood is below the null one, so the LR statistic is
    negative and lifelines reports p = 1; the port stops at the same point and reports the same p
    (a plain chi-square survival function would give NaN; one such row is in the test cohort's bulk_validation)."""
    rng = np.random.default_rng(1082)
    x = (rng.random(30) < 0.15).astype(float)
    time = np.ceil(rng.exponential(60, 30))
    data = pd.DataFrame({"time": time, "event": (rng.random(30) < 0.6).astype(float), "x": x})
    ours = cox_regression(data, "time", "event", ["x"])
    assert ours.lr_statistic < 0 and ours.lr_p == 1.0
    _assert_same_as_lifelines(data)
