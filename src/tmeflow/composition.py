"""Cell-type composition and differential abundance between conditions (``tmeflow composition``).

Input: the atlas h5ad (``obs``: ``sample``, ``condition``, ``cell_type``, optionally ``patient`` and
``cell_type_fine``). Only ``obs`` is read.

Proportions
    Per sample and cell type (major ``cell_type`` and, when present, ``cell_type_fine``): cell counts,
    proportions of the sample's cells.

Differential abundance: a propeller-style test (Phipson et al. 2022, *Bioinformatics* 38:4720,
speckle ``propeller``), with the sample as the unit of replication:

1. Proportions per sample are transformed (``da_transform``): ``logit`` (default; speckle adds a
   pseudo-count of 0.5 to every count before taking proportions, ``log(p / (1 - p))``) or ``asin``
   (``asin(sqrt(p))`` of the raw proportions).
2. One linear model per cell type, fitted to the samples of every condition, as limma/speckle do
   (``~ 0 + condition``; the residual variance borrows the other conditions' samples) or, when *paired*
   (every patient has samples in both contrasted conditions and there are at least two patients),
   ``~ 0 + condition + patient``. When that design is not of full rank (a condition's samples all
   belong to patients seen only in that condition), the model is fitted to the two contrasted
   conditions alone.
3. The contrast ``test - reference`` is tested with a t-test. With ``da_moderated`` (default) the residual
   variances are shrunk towards a common prior by limma's empirical Bayes (Smyth 2004, *Stat Appl
   Genet Mol Biol* 3:3; ``squeezeVar``), robustly as speckle's ``eBayes(robust = TRUE)``
   (``fitFDistRobustly``, Phipson et al. 2016, *Ann Appl Stat* 10:946: :func:`fit_f_dist_robust`; a
   cell type with an outlying variance gets a smaller prior df and is shrunk less; below 10 cell types
   limma's robust fit is the non-robust one), giving moderated t-statistics with
   ``df_residual + df_prior`` degrees of freedom (capped at the pooled residual df, as limma does).
   Without ``da_moderated`` ordinary t-tests are used.
4. Benjamini-Hochberg FDR over the cell types of a contrast (per annotation level).

Cluster-free differential abundance (``da_nhood``, default on): the same test on overlapping kNN
neighbourhoods of the integrated embedding, Milo-style (Dann et al. 2022), for a state that expands
inside a cell type; see :mod:`tmeflow.neighbourhood_da`.

Contrasts (``contrast``): ``"test,reference"`` (e.g. ``metastasis,primary``), several separated by
``;``, or ``all`` (every pair of conditions, in the order of the ``condition`` categories). Default
(empty): the two non-normal conditions with most samples (ties: category order), with ``primary`` as the
reference when it is one of them, otherwise the second of the two; when there is only one non-normal
condition it is tested against ``normal``. The same rule is used by ``tmeflow de`` and ``pathways``.

Outputs (``<level>`` is ``major`` or ``fine``, ``<contrast>`` is ``<test>_vs_<reference>``):
``composition_<level>_counts.tsv``, ``composition_<level>_proportions.tsv`` (long),
``da_<level>_<contrast>.tsv``, ``composition_<level>_stacked.png``,
``composition_<level>_boxplot.png``, ``composition_mqc.tsv`` (MultiQC bar graph of major proportions).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .errors import TmeflowInputError
from .io import multiqc_header, read_h5ad, save_figure, write_json, write_multiqc_table, write_table
from .log import get_logger, timed
from .plotting import pyplot
from .settings import StageSettings
from .stats import bh_fdr

logger = get_logger(__name__)

NORMAL = "normal"
PREFERRED_REFERENCE = "primary"
LEVELS = {"major": "cell_type", "fine": "cell_type_fine"}
MIN_SAMPLES_DA = 2  # per condition: with fewer, no residual variance can be estimated without pairing


# --------------------------------------------------------------------------------------------------
# Inputs shared by composition, de and pathways


def read_obs(path: str | Path) -> pd.DataFrame:
    """``obs`` of an h5ad file, without loading the matrix."""

    adata = read_h5ad(path, "atlas h5ad", backed="r")
    obs = adata.obs.copy()
    adata.file.close()
    return obs


def check_obs(obs: pd.DataFrame, required: tuple[str, ...], *, file: str | Path | None = None) -> None:
    """Fail with one line when ``obs`` lacks a required column or a sample has several conditions."""
    for column in required:
        if column not in obs.columns:
            raise TmeflowInputError(f"atlas obs has no column '{column}'", file=file, column=column)
        if obs[column].isna().any():
            raise TmeflowInputError(f"atlas obs column '{column}' has missing values", file=file, column=column)
    per_sample = obs.groupby(obs["sample"].astype(str), observed=True)["condition"].nunique()
    mixed = per_sample[per_sample > 1]
    if len(mixed):
        raise TmeflowInputError(
            f"sample {mixed.index[0]} has cells of several conditions; each sample must have one condition",
            file=file, column="condition",
        )
    if "patient" in obs.columns:
        patients = obs.groupby(obs["sample"].astype(str), observed=True)["patient"].nunique()
        if (patients > 1).any():
            raise TmeflowInputError(
                f"sample {patients[patients > 1].index[0]} has cells of several patients", file=file, column="patient"
            )


def sample_table(obs: pd.DataFrame) -> pd.DataFrame:
    """One row per sample: ``sample``, ``condition``, ``patient`` (the sample itself when absent)."""
    frame = pd.DataFrame({"sample": obs["sample"].astype(str), "condition": obs["condition"].astype(str)})
    frame["patient"] = obs["patient"].astype(str).to_numpy() if "patient" in obs.columns else frame["sample"]
    return frame.drop_duplicates("sample").set_index("sample").sort_index()


def condition_order(obs: pd.DataFrame) -> list[str]:
    """Conditions in category order (or order of first appearance)."""
    column = obs["condition"]
    present = set(column.astype(str))
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories if str(c) in present]
    return list(dict.fromkeys(column.astype(str)))


def resolve_contrasts(obs: pd.DataFrame, contrast: str | None, *, file: str | Path | None = None) -> list[tuple[str, str]]:
    """The ``(test, reference)`` pairs to compare (see the module docstring for the default rule)."""
    conditions = condition_order(obs)
    if len(conditions) < 2:
        raise TmeflowInputError(
            f"only one condition ({conditions[0] if conditions else 'none'}) in obs 'condition'; "
            "comparing conditions needs at least two", file=file, column="condition",
        )
    text = (contrast or "").strip()
    if text.lower() == "all":
        return [(test, ref) for ref, test in combinations(conditions, 2)]
    if text:
        pairs = []
        for part in text.split(";"):
            names = [name.strip() for name in part.split(",")]
            if len(names) != 2 or not all(names) or names[0] == names[1]:
                raise TmeflowInputError(f"contrast '{part}' must be 'test,reference' with two different conditions")
            for name in names:
                if name not in conditions:
                    raise TmeflowInputError(
                        f"contrast names condition '{name}', which is not in the data (conditions: {', '.join(conditions)})",
                        file=file, column="condition",
                    )
            pairs.append((names[0], names[1]))
        return pairs
    n_samples = obs.groupby(obs["condition"].astype(str), observed=True)["sample"].nunique()
    tumour = [c for c in conditions if c != NORMAL]
    if len(tumour) >= 2:
        ranked = sorted(tumour, key=lambda c: (-int(n_samples.get(c, 0)), conditions.index(c)))[:2]
        reference = PREFERRED_REFERENCE if PREFERRED_REFERENCE in ranked else ranked[1]
        test = next(c for c in ranked if c != reference)
        return [(test, reference)]
    reference = NORMAL if NORMAL in conditions else conditions[0]
    test = next(c for c in conditions if c != reference)
    return [(test, reference)]


def contrast_name(test: str, reference: str) -> str:
    return f"{test}_vs_{reference}"


def is_paired(samples: pd.DataFrame, test: str, reference: str) -> bool:
    """Every patient has samples in both conditions, and there are at least two patients."""
    sub = samples[samples["condition"].isin([test, reference])]
    per_patient = sub.groupby("patient")["condition"].nunique()
    return len(per_patient) >= 2 and bool((per_patient == 2).all()) and not (sub["patient"] == sub.index).all()


def check_samples_per_condition(samples: pd.DataFrame, pairs: list[tuple[str, str]], minimum: int, what: str,
                                *, file: str | Path | None = None) -> None:
    """Fail when a contrasted condition has fewer than ``minimum`` samples."""
    counts = samples["condition"].value_counts()
    for pair in pairs:
        for condition in pair:
            n = int(counts.get(condition, 0))
            if n < minimum:
                raise TmeflowInputError(
                    f"condition '{condition}' has {n} sample(s); {what} needs at least {minimum} samples per condition",
                    file=file, column="condition",
                )


# --------------------------------------------------------------------------------------------------
# Statistics


def cell_counts(obs: pd.DataFrame, key: str) -> pd.DataFrame:
    """Samples x cell types table of cell counts (all categories, zeros included)."""
    table = pd.crosstab(obs["sample"].astype(str), obs[key].astype(str))
    table.columns.name = None
    table.index.name = "sample"
    return table.sort_index()


def transform_proportions(counts: pd.DataFrame, transform: str) -> pd.DataFrame:
    """speckle ``getTransformedProps``: ``logit`` of (counts + 0.5) proportions, or ``asin(sqrt(p))``."""
    values = counts.to_numpy(dtype=float)
    if transform == "logit":
        pseudo = values + 0.5
        props = pseudo / pseudo.sum(axis=1, keepdims=True)
        out = np.log(props / (1.0 - props))
    elif transform == "asin":
        out = np.arcsin(np.sqrt(values / values.sum(axis=1, keepdims=True)))
    else:
        raise TmeflowInputError(f"unknown proportion transform '{transform}' (logit or asin)")
    return pd.DataFrame(out, index=counts.index, columns=counts.columns)


def trigamma_inverse(x: np.ndarray) -> np.ndarray:
    """Inverse of the trigamma function (limma ``trigammaInverse``, Newton's method)."""
    from scipy.special import polygamma

    x = np.atleast_1d(np.asarray(x, dtype=float))
    y = np.where(x > 1e7, 1.0 / np.sqrt(np.maximum(x, 1e-300)), np.where(x < 1e-6, 1.0 / np.maximum(x, 1e-300), 0.5 + 1.0 / x))
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
    """limma ``fitFDist`` (non-robust, no covariate): prior ``(s0^2, d0)`` of residual variances."""
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
    """The F(df1, df2) distribution; F(df1, inf) is chi-square(df1) / df1."""
    from scipy import stats

    return stats.chi2(df1, scale=1.0 / df1) if np.isinf(df2) else stats.f(df1, df2)


def _winsorized_moments(df1: float, df2: float, tail: tuple[float, float]) -> tuple[float, float]:
    """Mean and variance of log(F) Winsorized at the ``tail`` probabilities, by 128-point Gauss-Legendre
    quadrature on x / (1 + x) (limma ``fitFDistRobustly``'s ``winsorizedMoments``)."""
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


def fit_f_dist_robust(s2: np.ndarray, df1: float, tail: tuple[float, float] = WINSOR_TAIL_P) -> tuple[float, np.ndarray]:
    """limma ``fitFDistRobustly`` (no covariate; Phipson, Lee, Majewski, Alexander & Smyth 2016, *Ann
    Appl Stat* 10:946): prior scale ``s0^2`` and per-feature prior df of residual variances, robust
    to outlier variances. The moments of Winsorized log-variances are matched to those of a
    Winsorized scaled F-distribution (df2 searched between the non-robust estimate and infinity);
    a variance that is an outlier (upper tail probability below its empirical rank probability) gets
    a smaller prior df (shrunk less towards ``s0^2``), monotone in its tail probability. With fewer
    than 10 features (both tail proportions below 1/n) the non-robust fit is returned, as limma does."""
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


def linear_model_test(y: pd.DataFrame, design: np.ndarray, coef: int | np.ndarray, *, moderated: bool = True,
                      robust: bool = False) -> pd.DataFrame:
    """Per-column OLS of ``y`` (samples x features) on ``design``; t-test of coefficient ``coef`` or,
    when ``coef`` is a vector, of the contrast ``coef @ beta`` (limma ``contrasts.fit``).

    With ``moderated`` the residual variances are squeezed as in limma ``eBayes``; with ``robust`` as in
    ``eBayes(robust = TRUE)`` (:func:`fit_f_dist_robust`: per-feature prior df, outlier variances
    shrunk less). ``df_prior`` is then per feature.
    Returns ``logfc`` (the coefficient or contrast), ``se``, ``t``, ``df``, ``pvalue``, ``s2``,
    ``s2_post``, ``df_prior``.
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
    df_prior = 0.0
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
        {"logfc": estimate, "se": se, "t": t, "df": df_total, "pvalue": pvalue, "s2": s2, "s2_post": s2_post,
         "df_prior": df_prior},
        index=y.columns,
    )



def condition_design(samples: pd.DataFrame, test: str, *, paired: bool) -> np.ndarray:
    """Design matrix of one contrast over ``samples`` (rows): intercept, condition == ``test`` (the
    tested coefficient, column 1) and, when ``paired``, one indicator per patient but the first."""
    columns = [np.ones(len(samples)), (samples["condition"] == test).to_numpy(dtype=float)]
    if paired:
        patients = sorted(samples["patient"].unique())
        columns += [(samples["patient"] == patient).to_numpy(dtype=float) for patient in patients[1:]]
    return np.column_stack(columns)

def contrast_design(samples: pd.DataFrame, test: str, reference: str, *, paired: bool
                    ) -> tuple[pd.DataFrame, np.ndarray, np.ndarray | int]:
    """The samples fitted, the design and the contrast of ``test - reference``: ``~ 0 + condition``
    (``+ patient`` but the first when ``paired``) over every sample; when that design is not of full
    rank, :func:`condition_design` over the two contrasted conditions (contrast: its coefficient 1)."""
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


def propeller(counts: pd.DataFrame, samples: pd.DataFrame, test: str, reference: str, *,
              transform: str = "logit", moderated: bool = True, paired: bool | None = None,
              robust: bool = True) -> pd.DataFrame:
    """propeller-style differential abundance of every cell type (columns of ``counts``) for one contrast
    (moderation as speckle's ``eBayes(robust = TRUE)`` unless ``robust`` is False).

    ``samples`` has ``condition`` and ``patient`` per sample (index). Returns one row per cell type
    with mean proportions, their ratio, the transformed-scale difference (``logfc``), ``t``,
    ``pvalue`` and BH ``fdr``.
    """
    if paired is None:
        paired = is_paired(samples, test, reference)
    samples, design, contrast = contrast_design(samples.loc[counts.index], test, reference, paired=paired)
    counts = counts.loc[samples.index]
    counts = counts.loc[:, counts.sum(axis=0) > 0] if (counts.sum(axis=0) > 0).any() else counts
    fit = linear_model_test(transform_proportions(counts, transform), design, coef=contrast, moderated=moderated,
                            robust=robust)
    sub = samples[samples["condition"].isin([test, reference])]
    counts = counts.loc[sub.index]
    props = counts.div(counts.sum(axis=1), axis=0)
    is_test = (sub["condition"] == test).to_numpy()
    mean_test = props[is_test].mean(axis=0)
    mean_ref = props[~is_test].mean(axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = mean_test / mean_ref
    result = pd.DataFrame(
        {
            "cell_type": counts.columns,
            "contrast": contrast_name(test, reference),
            "test": test,
            "reference": reference,
            "n_samples_test": int(is_test.sum()),
            "n_samples_reference": int((~is_test).sum()),
            "mean_prop_test": mean_test.to_numpy(),
            "mean_prop_reference": mean_ref.to_numpy(),
            "prop_ratio": ratio.to_numpy(),
            "logfc": fit["logfc"].to_numpy(),
            "t": fit["t"].to_numpy(),
            "df": fit["df"].to_numpy(),
            "pvalue": fit["pvalue"].to_numpy(),
        }
    )
    result["fdr"] = bh_fdr(result["pvalue"])
    result["transform"] = transform
    result["moderated"] = moderated
    groups = "all conditions" if samples["condition"].nunique() > 2 else "two conditions"
    result["design"] = f"~ 0 + condition{' + patient' if paired else ''} ({groups})"
    return result.sort_values(["pvalue", "cell_type"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Plots


def plot_stacked(props: pd.DataFrame, samples: pd.DataFrame, conditions: list[str], title: str):
    plt = pyplot()

    order = sorted(props.index, key=lambda s: (conditions.index(samples.loc[s, "condition"]), s))
    data = props.loc[order]
    cmap = plt.get_cmap("tab20")
    fig, ax = plt.subplots(figsize=(max(4.0, 0.45 * len(order) + 2.5), 4.2))
    bottom = np.zeros(len(order))
    for i, cell_type in enumerate(data.columns):
        ax.bar(range(len(order)), data[cell_type], bottom=bottom, color=cmap(i % 20), label=cell_type, width=0.85)
        bottom += data[cell_type].to_numpy()
    ax.set_xticks(range(len(order)))
    ax.set_xticklabels([f"{s}\n({samples.loc[s, 'condition']})" for s in order], rotation=90, fontsize=7)
    ax.set_ylabel("proportion of cells")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(bbox_to_anchor=(1.01, 1), loc="upper left", fontsize=7, frameon=False)
    return fig


def plot_boxes(props: pd.DataFrame, samples: pd.DataFrame, conditions: list[str], da: pd.DataFrame | None, title: str):
    plt = pyplot()

    types = list(props.columns)
    ncol = min(5, len(types))
    nrow = int(np.ceil(len(types) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(2.4 * ncol, 2.3 * nrow), squeeze=False)
    fdr = {} if da is None else dict(zip(da["cell_type"], da["fdr"]))
    rng = np.random.default_rng(0)  # jitter only
    for ax, cell_type in zip(axes.ravel(), types):
        groups = [props.loc[samples.index[samples["condition"] == c].intersection(props.index), cell_type].to_numpy() for c in conditions]
        ax.boxplot(groups, showfliers=False)
        for i, values in enumerate(groups):
            ax.scatter(np.full(len(values), i + 1) + rng.uniform(-0.12, 0.12, len(values)), values, s=8, color="k", zorder=3)
        ax.set_xticks(range(1, len(conditions) + 1))
        ax.set_xticklabels(conditions, rotation=45, fontsize=7)
        label = f"{cell_type}" + (f"\nFDR {fdr[cell_type]:.2g}" if cell_type in fdr else "")
        ax.set_title(label, fontsize=8)
        ax.tick_params(axis="y", labelsize=7)
    for ax in axes.ravel()[len(types):]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Stage


DA_TABLE_COLUMNS = ["level", "contrast", "cell_type", "mean_prop_test", "mean_prop_reference", "prop_ratio", "pvalue", "fdr"]


def write_da_table(da_tables: list[pd.DataFrame], path: Path) -> Path:
    """Every level's and contrast's propeller results as one sortable MultiQC table, lowest FDR first."""
    table = pd.concat(da_tables, ignore_index=True) if da_tables else pd.DataFrame(columns=DA_TABLE_COLUMNS)
    table = table[DA_TABLE_COLUMNS].sort_values(["fdr", "pvalue"], kind="stable")
    table.insert(0, "test", table["level"] + ": " + table["contrast"] + ": " + table["cell_type"].astype(str))
    return write_multiqc_table(table, path, "tmeflow_composition_da", "Differential abundance",
                               "propeller tests of cell-type proportions (samples as replicates), every level and contrast, lowest FDR first.")


@dataclass(frozen=True)
class CompositionSettings(StageSettings):
    """The ``comparison_options`` and ``composition_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("comparison_options", "composition_options")

    contrast: str | None
    da_transform: str
    da_moderated: bool
    da_fdr: float
    da_nhood: bool
    da_nhood_prop: float
    seed: int


def run_composition(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Read the atlas obs, check it, compute proportions and DA for every contrast; write outputs."""
    outdir = Path(outdir)
    settings = CompositionSettings.from_params(params)
    obs = read_obs(input_path)
    check_obs(obs, ("sample", "condition", "cell_type"), file=input_path)
    samples = sample_table(obs)
    pairs = resolve_contrasts(obs, settings.contrast, file=input_path)
    for test, reference in pairs:
        if not is_paired(samples, test, reference):
            check_samples_per_condition(samples, [(test, reference)], MIN_SAMPLES_DA,
                                        "the differential-abundance test (unpaired)", file=input_path)
        else:
            check_samples_per_condition(samples, [(test, reference)], MIN_SAMPLES_DA,
                                        "the differential-abundance test (paired)", file=input_path)
    conditions = condition_order(obs)
    transform, moderated, fdr_cut = settings.da_transform, settings.da_moderated, settings.da_fdr
    levels = {level: key for level, key in LEVELS.items() if key in obs.columns and obs[key].notna().all()}
    if LEVELS["fine"] in obs.columns and "fine" not in levels:
        logger.warning("obs '%s' has missing values; fine-level composition skipped", LEVELS["fine"])
    summary: dict[str, Any] = {"contrasts": [contrast_name(*p) for p in pairs], "levels": list(levels), "significant": {}}
    da_tables: list[pd.DataFrame] = []
    for level, key in levels.items():
        with timed(logger, f"composition ({level}: {key})"):
            counts = cell_counts(obs, key)
            props = counts.div(counts.sum(axis=1), axis=0)
            table = counts.copy()
            table.insert(0, "condition", samples.loc[table.index, "condition"])
            table.insert(1, "patient", samples.loc[table.index, "patient"])
            write_table(table, outdir / f"composition_{level}_counts.tsv", index=True)
            long = counts.stack().rename("n_cells").reset_index().rename(columns={"level_1": "cell_type"})
            long.columns = ["sample", "cell_type", "n_cells"]
            long["n_total"] = long["sample"].map(counts.sum(axis=1))
            long["proportion"] = long["n_cells"] / long["n_total"]
            long["condition"] = long["sample"].map(samples["condition"])
            long["patient"] = long["sample"].map(samples["patient"])
            write_table(long[["sample", "patient", "condition", "cell_type", "n_cells", "n_total", "proportion"]],
                        outdir / f"composition_{level}_proportions.tsv")
            first_da = None
            for test, reference in pairs:
                da = propeller(counts, samples, test, reference, transform=transform, moderated=moderated)
                da["significant"] = da["fdr"] < fdr_cut
                name = contrast_name(test, reference)
                write_table(da, outdir / f"da_{level}_{name}.tsv")
                da_tables.append(da.assign(level=level))
                called = da.loc[da["significant"], "cell_type"].tolist()
                summary["significant"][f"{level}:{name}"] = called
                logger.info("%s %s: %d of %d cell types differ (FDR < %g; %s, %s)%s", level, name, len(called), len(da),
                            fdr_cut, da["design"].iat[0], "moderated" if moderated else "ordinary t",
                            f": {', '.join(called)}" if called else "")
                first_da = da if first_da is None else first_da
            save_figure(plot_stacked(props, samples, conditions, f"Cell-type composition ({key})"),
                        outdir / f"composition_{level}_stacked.png")
            save_figure(plot_boxes(props, samples, conditions, first_da, f"Proportions per sample ({key}); FDR: {summary['contrasts'][0]}"),
                        outdir / f"composition_{level}_boxplot.png")
            if level == "major":
                header = multiqc_header("tmeflow_composition", "Cell-type composition",
                                        "Proportion of each major cell type per sample.", "bargraph",
                                        pconfig={"id": "tmeflow_composition_plot", "title": "Cell-type composition", "cpswitch_c_active": False})
                write_table(counts, outdir / "composition_mqc.tsv", index=True, header_lines=header)
    write_da_table(da_tables, outdir / "composition_da_mqc.tsv")
    if settings.da_nhood:
        summary["significant_neighbourhoods"] = _neighbourhood_da(input_path, obs, samples, pairs, outdir, settings)
    write_json(summary, outdir / "composition_summary.json")
    return summary


def _neighbourhood_da(input_path: str | Path, obs: pd.DataFrame, samples: pd.DataFrame, pairs: list[tuple[str, str]],
                      outdir: Path, settings: CompositionSettings) -> dict[str, int]:
    """Milo-style neighbourhood DA (:mod:`tmeflow.neighbourhood_da`); tables and beeswarms per contrast."""
    from .neighbourhood_da import EMBEDDINGS, neighbourhood_da, plot_beeswarm

    adata = read_h5ad(input_path, "atlas h5ad", backed="r")
    if not any(key in adata.obsm for key in EMBEDDINGS):
        adata.file.close()
        logger.warning("atlas has no integrated embedding (%s, written by tmeflow integrate); neighbourhood DA skipped",
                       ", ".join(EMBEDDINGS))
        return {}
    try:
        with timed(logger, "neighbourhood DA (Milo-style)"):
            import anndata as ad

            embedding = ad.AnnData(obs=obs[["sample", "cell_type"]], obsm={k: adata.obsm[k] for k in EMBEDDINGS if k in adata.obsm})
            tables = neighbourhood_da(embedding, samples, pairs, prop=settings.da_nhood_prop, fdr=settings.da_fdr,
                                      moderated=settings.da_moderated, seed=settings.seed)
    except TmeflowInputError as error:
        raise TmeflowInputError(error.message, file=input_path, column=error.column) from error
    finally:
        adata.file.close()
    for name, table in tables.items():
        write_table(table, outdir / f"da_nhood_{name}.tsv")
        save_figure(plot_beeswarm(table, settings.da_fdr,
                                  f"Neighbourhood DA {name} (spatial FDR < {settings.da_fdr:g} coloured)"),
                    outdir / f"da_nhood_{name}.png")
    return {name: int((table["spatial_fdr"] < settings.da_fdr).sum()) for name, table in tables.items()}


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow composition``."""
    run_composition(args.input, args.outdir, params)
