"""limma-style linear models with empirical-Bayes variance moderation (Smyth 2004; Phipson et al. 2016)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError


def trigamma_inverse(x: np.ndarray) -> np.ndarray:
    """Invert the trigamma function (limma ``trigammaInverse``, Newton's method).

    Parameters
    ----------
    x
        Positive values.

    Returns
    -------
    numpy.ndarray
        ``y`` with ``trigamma(y) = x``.
    """
    from scipy.special import polygamma

    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.where(
        x > 1e7, 1.0 / np.sqrt(np.maximum(x, 1e-300)), np.where(x < 1e-6, 1.0 / np.maximum(x, 1e-300), 0.5 + 1.0 / x)
    )
    middle = (x >= 1e-6) & (x <= 1e7)
    ym = y[middle]
    xm = x[middle]
    for _ in range(50):
        tri = polygamma(1, ym)
        dif = tri * (1.0 - tri / xm) / polygamma(2, ym)
        ym = ym + dif
        if np.max(-dif / ym, initial=0.0) < 1e-8:
            break
    y[middle] = ym
    return y


def fit_f_dist(s2: np.ndarray, df1: float) -> tuple[float, float]:
    """Fit the scaled F prior of residual variances (limma ``fitFDist``, non-robust, no covariate; Smyth 2004).

    Parameters
    ----------
    s2
        Residual variances, one per feature (non-finite ones ignored).
    df1
        Residual degrees of freedom.

    Returns
    -------
    tuple of float
        ``(s0^2, d0)``: prior variance and prior degrees of freedom (``inf`` when the variances agree).
    """
    from scipy.special import digamma, polygamma

    s2 = np.asarray(s2, dtype=float)
    ok = np.isfinite(s2)
    s2 = np.maximum(s2[ok], 0.0)
    if len(s2) < 2:
        return float(np.nanmean(s2)) if len(s2) else np.nan, 0.0
    median = np.median(s2)
    if median == 0:
        median = 1.0
    s2 = np.maximum(s2, 1e-5 * median)  # limma keeps near-zero variances away from log(0)
    z = np.log(s2)
    e = z - digamma(df1 / 2.0) + np.log(df1 / 2.0)
    emean = e.mean()
    evar = np.sum((e - emean) ** 2) / (len(e) - 1) - polygamma(1, df1 / 2.0)
    if evar > 0:
        df2 = float(2.0 * trigamma_inverse(np.array([evar]))[0])
        s20 = float(np.exp(emean + digamma(df2 / 2.0) - np.log(df2 / 2.0)))
    else:
        df2 = np.inf
        s20 = float(np.exp(emean))
    return s20, df2


WINSOR_TAIL_P = (0.05, 0.1)  # limma fitFDistRobustly's default winsor.tail.p (lower, upper)


def _f_distribution(df1: float, df2: float):
    """Return the F(df1, df2) distribution; F(df1, inf) is chi-square(df1) / df1."""
    from scipy import stats

    return stats.chi2(df1, scale=1.0 / df1) if np.isinf(df2) else stats.f(df1, df2)


def _winsorized_moments(df1: float, df2: float, tail: tuple[float, float]) -> tuple[float, float]:
    """Compute the mean and variance of log(F) Winsorized at the ``tail`` probabilities.

    By 128-point Gauss-Legendre quadrature on x / (1 + x) (limma ``fitFDistRobustly``'s ``winsorizedMoments``).
    """
    nodes, weights = np.polynomial.legendre.leggauss(128)
    nodes, weights = (nodes + 1.0) / 2.0, weights / 2.0  # statmod gauss.quad.prob(128, "uniform")
    dist = _f_distribution(df1, df2)
    fq = dist.ppf([tail[0], 1.0 - tail[1]])
    zq = np.log(fq)
    q = fq / (1.0 + fq)
    u = q[0] + (q[1] - q[0]) * nodes
    fu = u / (1.0 - u)
    zu = np.log(fu)
    density = dist.pdf(fu) / (1.0 - u) ** 2
    width = q[1] - q[0]
    mean = width * np.sum(weights * density * zu) + np.sum(zq * np.asarray(tail))
    var = width * np.sum(weights * density * (zu - mean) ** 2) + np.sum((zq - mean) ** 2 * np.asarray(tail))
    return float(mean), float(var)


def fit_f_dist_robust(
    s2: np.ndarray, df1: float, tail: tuple[float, float] = WINSOR_TAIL_P
) -> tuple[float, np.ndarray]:
    """Fit the scaled F prior robustly to outlier variances (limma ``fitFDistRobustly``, no covariate).

    Phipson, Lee, Majewski, Alexander & Smyth 2016, *Ann Appl Stat* 10:946: prior scale ``s0^2`` and per-feature prior
    df of residual variances, robust to outlier variances. The moments of Winsorized log-variances are matched to those
    of a Winsorized scaled F-distribution (df2 searched between the non-robust estimate and infinity); a variance that
    is an outlier (upper tail probability below its empirical rank probability) gets a smaller prior df (shrunk less
    towards ``s0^2``), monotone in its tail probability. With fewer than 10 features (both tail proportions below 1/n)
    the non-robust fit is returned, as limma does.

    Parameters
    ----------
    s2
        Residual variances, one per feature.
    df1
        Residual degrees of freedom.
    tail
        Lower and upper Winsorization tail proportions (limma's ``winsor.tail.p`` default).

    Returns
    -------
    tuple
        ``(s0^2, df_prior)``: prior variance and per-feature prior degrees of freedom.
    """
    from scipy.optimize import brentq
    from scipy.stats import rankdata, trim_mean

    s2 = np.asarray(s2, dtype=float)
    n = len(s2)
    ok = np.isfinite(s2)
    if not ok.all():  # limma: fit the finite values; the others get the global df2
        scale, shrunk_ok = fit_f_dist_robust(s2[ok], df1, tail)
        shrunk = np.full(n, np.nan)
        shrunk[ok] = shrunk_ok
        shrunk[~ok] = np.max(shrunk_ok) if len(shrunk_ok) else np.nan
        return scale, shrunk
    if n < 2:
        return np.nan, np.full(n, np.nan)
    if n == 2:
        scale, df2 = fit_f_dist(s2, df1)
        return scale, np.full(n, df2)
    median = np.median(s2)
    if median <= 0:
        return fit_f_dist(s2, df1)[0], np.full(n, fit_f_dist(s2, df1)[1])
    x = np.maximum(s2, median * 1e-12)
    scale_nr, df2_nr = fit_f_dist(x, df1)
    if all(p < 1.0 / n for p in tail):
        return scale_nr, np.full(n, df2_nr)
    z = np.log(x)
    ztrend = float(trim_mean(z, tail[1]))
    zresid = z - ztrend
    lower, upper = np.quantile(zresid, [tail[0], 1.0 - tail[1]])
    zwins = np.clip(zresid, lower, upper)
    zwmean = float(zwins.mean())
    zwvar = float(np.mean((zwins - zwmean) ** 2) * n / (n - 1))
    mean_inf, var_inf = _winsorized_moments(df1, np.inf, tail)
    value_inf = np.log(zwvar / var_inf)
    if value_inf <= 0:  # no more spread than chi-square: df2 infinite
        from scipy.stats import chi2

        corrected = ztrend + zwmean - mean_inf
        fstat = np.exp(z - corrected)
        tail_p = chi2.sf(fstat * df1, df1)
        empirical = (n - rankdata(fstat) + 0.5) / n
        not_outlier = np.minimum(tail_p / empirical, 1.0)
        shrunk = np.full(n, np.inf)
        outlier = not_outlier < 1
        if outlier.any():
            shrunk[outlier] = not_outlier[outlier] * n * df1
            order = np.argsort(tail_p, kind="stable")
            shrunk[order] = np.maximum.accumulate(shrunk[order])
        return float(np.exp(corrected)), shrunk
    if np.isinf(df2_nr):
        return scale_nr, np.full(n, df2_nr)

    def objective(link: float) -> float:
        if link >= 1.0:
            return value_inf
        return float(np.log(zwvar / _winsorized_moments(df1, link / (1.0 - link), tail)[1]))

    low = df2_nr / (1.0 + df2_nr)
    value_low = objective(low)
    if value_low >= 0:
        df2 = df2_nr
    else:
        root = brentq(objective, low, 1.0, xtol=1e-8)
        df2 = root / (1.0 - root)
    corrected = ztrend + zwmean - _winsorized_moments(df1, df2, tail)[0]
    fstat = np.exp(z - corrected)
    dist = _f_distribution(df1, df2)
    log_tail = dist.logsf(fstat)
    log_empirical = np.log(n - rankdata(fstat) + 0.5) - np.log(n)
    log_not_outlier = np.minimum(log_tail - log_empirical, 0.0)
    if not (log_not_outlier < 0).any():
        return float(np.exp(corrected)), np.full(n, df2)
    not_outlier = np.exp(log_not_outlier)
    outlier_p = -np.expm1(log_not_outlier)
    min_log_tail = float(np.min(log_tail))
    if min_log_tail == -np.inf:
        shrunk = not_outlier * df2
    else:  # prior df of the most extreme variance: makes it the median of its distribution
        df2_outlier = np.log(0.5) / min_log_tail * df2
        df2_outlier = np.log(0.5) / float(_f_distribution(df1, df2_outlier).logsf(np.max(fstat))) * df2_outlier
        shrunk = not_outlier * df2 + outlier_p * df2_outlier
    order = np.argsort(log_tail, kind="stable")
    ordered = shrunk[order]
    running = np.cumsum(ordered) / np.arange(1, n + 1)
    first_min = int(np.argmin(running))
    ordered[: first_min + 1] = running[first_min]
    shrunk[order] = np.maximum.accumulate(ordered)
    return float(np.exp(corrected)), shrunk


def linear_model_test(
    y: pd.DataFrame, design: np.ndarray, coef: int | np.ndarray, *, moderated: bool = True, robust: bool = False
) -> pd.DataFrame:
    """Fit a per-column linear model and test one coefficient or contrast, limma-style (Smyth 2004).

    Per-column OLS of ``y`` (samples x features) on ``design``; t-test of coefficient ``coef`` or, when ``coef``
    is a vector, of the contrast ``coef @ beta`` (limma ``contrasts.fit``).

    With ``moderated`` the residual variances are squeezed as in limma ``eBayes``; with ``robust`` as in
    ``eBayes(robust = TRUE)`` (:func:`fit_f_dist_robust`: per-feature prior df, outlier variances
    shrunk less). ``df_prior`` is then per feature.

    Parameters
    ----------
    y
        Samples x features response (e.g. transformed proportions).
    design
        Samples x coefficients design matrix of full rank.
    coef
        Index of the tested coefficient, or a contrast vector over the coefficients.
    moderated
        Squeeze the residual variances (empirical Bayes); else ordinary t-tests.
    robust
        Robust prior (:func:`fit_f_dist_robust`).

    Returns
    -------
    pandas.DataFrame
        One row per feature (index: ``y``'s columns): ``logfc`` (the coefficient or contrast), ``se``, ``t``,
        ``df``, ``pvalue``, ``s2``, ``s2_post``, ``df_prior``.
    """
    from scipy.stats import t as t_dist

    values = y.to_numpy(dtype=float)
    n, p = design.shape
    rank = np.linalg.matrix_rank(design)
    if rank < p:
        raise TmeflowInputError("the design matrix is not of full rank (condition confounded with patient?)")
    df_res = n - p
    contrast = np.eye(p)[coef] if np.ndim(coef) == 0 else np.asarray(coef, dtype=float)
    xtx_inv = np.linalg.inv(design.T @ design)
    beta = xtx_inv @ design.T @ values
    resid = values - design @ beta
    estimate = contrast @ beta
    stdev_unscaled = np.sqrt(contrast @ xtx_inv @ contrast)
    if df_res > 0:
        s2 = np.sum(resid**2, axis=0) / df_res
    else:
        s2 = np.full(values.shape[1], np.nan)
    df_prior: float | np.ndarray = 0.0
    s2_post = s2
    df_total = np.full(values.shape[1], float(df_res))
    if moderated and df_res > 0:
        if robust:
            s20, df_prior = fit_f_dist_robust(s2, df_res)
        else:
            s20, df_prior = fit_f_dist(s2, df_res)
        prior = np.nan_to_num(np.broadcast_to(np.asarray(df_prior, dtype=float), s2.shape), nan=0.0, posinf=np.inf)
        with np.errstate(invalid="ignore"):
            s2_post = np.where(np.isinf(prior), s20, (prior * s20 + df_res * s2) / (prior + df_res))
        s2_post = np.where(prior > 0, s2_post, s2)
        df_total = np.minimum(df_res + prior, df_res * values.shape[1])
    se = stdev_unscaled * np.sqrt(s2_post)
    with np.errstate(divide="ignore", invalid="ignore"):
        t = estimate / se
    pvalue = np.where(np.isfinite(t), 2.0 * t_dist.sf(np.abs(t), df_total), np.nan)
    pvalue = np.where((se == 0) & (estimate == 0), 1.0, pvalue)
    return pd.DataFrame(
        {
            "logfc": estimate,
            "se": se,
            "t": t,
            "df": df_total,
            "pvalue": pvalue,
            "s2": s2,
            "s2_post": s2_post,
            "df_prior": df_prior,
        },
        index=y.columns,
    )


def condition_design(samples: pd.DataFrame, test: str, *, paired: bool) -> np.ndarray:
    """Build the design matrix of one two-condition contrast.

    Parameters
    ----------
    samples
        Samples of the two conditions (``condition``, ``patient``).
    test
        The tested condition.
    paired
        Add one indicator per patient but the first.

    Returns
    -------
    numpy.ndarray
        Samples x coefficients: intercept, condition == ``test`` (the tested coefficient, column 1), patients.
    """
    columns = [np.ones(len(samples)), (samples["condition"] == test).to_numpy(dtype=float)]
    if paired:
        patients = sorted(samples["patient"].unique())
        columns += [(samples["patient"] == patient).to_numpy(dtype=float) for patient in patients[1:]]
    return np.column_stack(columns)


def contrast_design(
    samples: pd.DataFrame, test: str, reference: str, *, paired: bool
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | int]:
    """Build the design and contrast of ``test - reference`` over every sample.

    ``~ 0 + condition`` (``+ patient`` but the first when ``paired``) over every sample; when that design is not
    of full rank, :func:`condition_design` over the two contrasted conditions (contrast: its coefficient 1).

    Parameters
    ----------
    samples
        :func:`tmeflow.composition.sample_table`.
    test, reference
        The contrasted conditions.
    paired
        Block on patient.

    Returns
    -------
    tuple
        ``(samples fitted, design, contrast)``; the contrast is a vector, or the coefficient index 1.
    """
    conditions = sorted(samples["condition"].unique())
    columns = [(samples["condition"] == condition).to_numpy(dtype=float) for condition in conditions]
    if paired:
        patients = sorted(samples["patient"].unique())
        columns += [(samples["patient"] == patient).to_numpy(dtype=float) for patient in patients[1:]]
    design = np.column_stack(columns)
    if np.linalg.matrix_rank(design) == design.shape[1] and design.shape[0] > design.shape[1]:
        contrast = np.zeros(design.shape[1])
        contrast[conditions.index(test)], contrast[conditions.index(reference)] = 1.0, -1.0
        return samples, design, contrast
    kept = samples[samples["condition"].isin([test, reference])]
    return kept, condition_design(kept, test, paired=paired), 1
