"""Statistics shared by several stages."""

from __future__ import annotations

import numpy as np
import pandas as pd


def bh_fdr(pvalues) -> np.ndarray:
    """Adjust p-values by Benjamini-Hochberg (1995), as R's ``p.adjust(method = "BH")``.

    Parameters
    ----------
    pvalues
        P-values (any array-like); NaN ones are left out of the adjustment and stay NaN.

    Returns
    -------
    numpy.ndarray
        Adjusted p-values (FDR), same shape as ``pvalues``.
    """
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def moderated_by_pattern(y, design_for, *, moderated: bool = True) -> pd.DataFrame:
    """Run limma-style moderated t-tests of every column of ``y``, samples being the units of replication.

    Features are grouped by which samples have values; each group gets one fit
    (:func:`tmeflow.composition.linear_model_test`, empirical-Bayes variance moderation as limma
    ``eBayes``, Smyth 2004) with the design that ``design_for(sample_index)`` returns.

    Parameters
    ----------
    y
        Samples x features (NaN = no value).
    design_for
        Called with the samples of a group; returns ``(design matrix, coefficient index, design label)``, or None
        to skip the group (e.g. too few samples).
    moderated
        Empirical-Bayes moderation (default); False gives ordinary t-tests (features that are not exchangeable, e.g.
        fate probabilities that sum to one, must not share a variance prior).

    Returns
    -------
    pandas.DataFrame
        Per tested feature (index as ``y.columns``): ``estimate, t, df, pvalue, n_samples, design``.
    """
    from .composition import linear_model_test

    columns = ["estimate", "t", "df", "pvalue", "n_samples", "design"]
    valid = y.notna().to_numpy()
    keys = np.array(["".join("1" if v else "0" for v in col) for col in valid.T])
    blocks = []
    for key in dict.fromkeys(keys):
        cols = y.columns[keys == key]
        keep = y.index[np.array([c == "1" for c in key], dtype=bool)]
        spec = design_for(keep) if len(keep) else None
        if spec is None:
            continue
        design, coef, label = spec
        fit = linear_model_test(y.loc[keep, cols], design, coef=coef, moderated=moderated)
        blocks.append(
            pd.DataFrame(
                {
                    "estimate": fit["logfc"].to_numpy(),
                    "t": fit["t"].to_numpy(),
                    "df": fit["df"].to_numpy(),
                    "pvalue": fit["pvalue"].to_numpy(),
                    "n_samples": len(keep),
                    "design": label,
                },
                index=cols,
            )
        )
    if not blocks:
        return pd.DataFrame(columns=columns, index=y.columns[:0])
    return pd.concat(blocks)[columns]


def condition_contrast(
    y, samples, test: str, reference: str, *, min_samples: int = 2, moderated: bool = True
) -> pd.DataFrame:
    """Test ``test`` against ``reference`` at sample level for every column of ``y``.

    Uses :func:`moderated_by_pattern` with the design ``~ condition`` or, when every patient has both conditions
    (:func:`tmeflow.composition.is_paired`), ``~ condition + patient``.

    Parameters
    ----------
    y
        Samples x features (NaN allowed).
    samples
        Per sample (index as ``y.index``): ``condition`` and ``patient``.
    test
        The tested condition.
    reference
        The reference condition; samples of other conditions are dropped.
    min_samples
        Samples with values a feature needs in each condition (default 2: a variance on each side).
    moderated
        Empirical-Bayes moderation (see :func:`moderated_by_pattern`).

    Returns
    -------
    pandas.DataFrame
        :func:`moderated_by_pattern`'s table (``estimate`` is the condition effect) with ``n_samples_test`` and
        ``n_samples_reference``.
    """
    from .composition import condition_design, is_paired

    def design_for(keep):
        kept = samples.loc[keep]
        n_test, n_ref = int((kept["condition"] == test).sum()), int((kept["condition"] == reference).sum())
        if n_test < min_samples or n_ref < min_samples:
            return None
        paired = is_paired(kept, test, reference)
        return condition_design(kept, test, paired=paired), 1, "~ condition + patient" if paired else "~ condition"

    y = y.loc[[s for s in y.index if samples.at[s, "condition"] in (test, reference)]]
    out = moderated_by_pattern(y, design_for, moderated=moderated)
    valid = y.notna()
    conditions = samples.loc[y.index, "condition"].to_numpy()
    out["n_samples_test"] = valid[conditions == test].sum().reindex(out.index).to_numpy().astype(int)
    out["n_samples_reference"] = valid[conditions == reference].sum().reindex(out.index).to_numpy().astype(int)
    return out


def msr_rank_correlation(
    x: np.ndarray, y: np.ndarray, vectors: np.ndarray | None, mask: np.ndarray | None = None
) -> tuple[float, float, float]:
    """Test a Spearman correlation over spots against Moran spectral randomisation.

    A Spearman p-value over spots treats autocorrelated spots as independent (a smooth score and a
    distance axis look correlated far more often than the nominal level); randomising ``y``'s ranks
    on the section's Moran eigenvectors keeps its spatial autocorrelation (:func:`msr_linear_test`). The statistic is
    the sum over ``mask`` of ``x``'s centred ranks times ``y``'s section-wide ranks.

    Parameters
    ----------
    x
        Value per spot (e.g. a distance axis).
    y
        Value per spot (e.g. a score); its ranks are randomised over the whole section.
    vectors
        Moran eigenvectors of the section (:func:`moran_eigenvectors`); None above :data:`MSR_MAX_SPOTS` spots.
    mask
        Spots the correlation is computed over (all when None).

    Returns
    -------
    tuple of float
        ``(rho, z, p)``; all NaN with fewer than 3 spots or a constant side, ``z`` and ``p`` NaN without ``vectors``.
    """
    from scipy.stats import rankdata, spearmanr

    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    mask = (
        np.isfinite(x) & np.isfinite(y)
        if mask is None
        else np.asarray(mask, dtype=bool) & np.isfinite(x) & np.isfinite(y)
    )
    if mask.sum() < 3 or np.ptp(x[mask]) == 0 or np.ptp(y[mask]) == 0:
        return np.nan, np.nan, np.nan
    rho = float(spearmanr(x[mask], y[mask])[0])
    if vectors is None:
        return rho, np.nan, np.nan
    finite = np.isfinite(y)
    ranks = np.full(len(y), np.nan)
    ranks[finite] = rankdata(y[finite])
    ranks[~finite] = np.nanmean(ranks)
    centred_x = rankdata(x[mask]) - (mask.sum() + 1) / 2
    weights = np.zeros(len(y))
    weights[mask] = centred_x / np.sqrt(np.sum(centred_x**2))
    _, z, p = msr_linear_test(ranks, weights, vectors)
    return rho, z, p


#: Moran spectral randomisation needs a dense eigendecomposition: sections above this many spots get no p-value.
MSR_MAX_SPOTS = 6000


def moran_eigenvectors(graph) -> np.ndarray:
    """Compute Moran eigenvector maps (Dray, Legendre & Peres-Neto 2006).

    Eigenvectors of the doubly-centred symmetric spatial weight matrix ``(I - 11'/n) W (I - 11'/n)``, ``W`` =
    ``graph`` symmetrised and binarised. Dense: O(n^3) time, n^2 memory.

    Parameters
    ----------
    graph
        Spots x spots spatial neighbour graph (sparse or dense).

    Returns
    -------
    numpy.ndarray
        Spots x spots, one eigenvector per column (ascending eigenvalue).
    """
    import scipy.sparse as sp

    w = sp.csr_matrix(graph, dtype=float)
    w = ((w + w.T) > 0).astype(float).toarray()
    w -= w.mean(axis=0, keepdims=True)
    w -= w.mean(axis=1, keepdims=True)
    _, vectors = np.linalg.eigh(w)
    return vectors


def msr_linear_test(
    values: np.ndarray, weights: np.ndarray, vectors: np.ndarray, alternative: str = "two-sided"
) -> tuple[float, float, float]:
    """Test a linear statistic ``T = weights . (values - mean)`` against Moran spectral randomisation of ``values``.

    Wagner & Dray 2015, Methods Ecol Evol 6:1169; adespatial ``msr``, "singleton" method: the centred vector is
    expanded on the Moran eigenvectors and the signs of its coefficients are flipped at random, which keeps its mean,
    variance and Moran's I, i.e. its spatial autocorrelation, unlike an i.i.d. permutation of spots. For a linear
    statistic the randomisation null is known exactly: with coefficients ``a = V'(x - mean)`` and ``b = V' weights``,
    ``T* = sum_k s_k a_k b_k`` (random signs ``s``) has mean 0 and variance ``sum_k (a_k b_k)^2``.

    Parameters
    ----------
    values
        Value per spot.
    weights
        Weight per spot.
    vectors
        Moran eigenvectors (:func:`moran_eigenvectors`).
    alternative
        ``two-sided`` (default) or ``greater``.

    Returns
    -------
    tuple of float
        ``(T, z, p)``; ``p`` from the normal approximation of ``z`` (as squidpy's z-scores; it resolves p-values far
        below 1 / n_randomisations); ``z`` and ``p`` NaN when the null has no variance.
    """
    from scipy.stats import norm

    x = np.asarray(values, dtype=float)
    a = vectors.T @ (x - x.mean())
    b = vectors.T @ np.asarray(weights, dtype=float)
    statistic = float(np.dot(weights, x - x.mean()))
    sd = float(np.sqrt(np.sum((a * b) ** 2)))
    if sd == 0 or not np.isfinite(statistic):
        return statistic, np.nan, np.nan
    z = statistic / sd
    p = norm.sf(z) if alternative == "greater" else 2 * norm.sf(abs(z))
    return statistic, float(z), float(p)


def conformal_quantile(null_values, level: float) -> float:
    """Return the split-conformal upper threshold of null values (Vovk, Gammerman & Shafer 2005; Lei et al. 2018).

    The ``ceil((n + 1) * level)``-th smallest of ``n`` null values (the largest when ``n`` is too small), so that a
    new value exchangeable with the null exceeds it with probability at most ``1 - level`` (Lei et al. 2018, *JASA*
    113:1094).

    Parameters
    ----------
    null_values
        Values under the null (NaN ignored).
    level
        Coverage, e.g. 0.95.

    Returns
    -------
    float
        The threshold; NaN when there is no null value.
    """
    values = np.sort(np.asarray(null_values, dtype=float))
    values = values[~np.isnan(values)]
    if not len(values):
        return float("nan")
    rank = min(int(np.ceil((len(values) + 1) * level)), len(values))
    return float(values[max(rank, 1) - 1])


def cap_cells_per_group(labels: np.ndarray, max_cells: int, seed: int) -> np.ndarray:
    """Keep at most ``max_cells`` cells of every group (a seeded random draw within each larger group).

    Parameters
    ----------
    labels
        Group (cell type) per cell.
    max_cells
        Cells kept per group at most (e.g. ``communication_max_cells``); 0 keeps every cell.
    seed
        Random seed of the draw.

    Returns
    -------
    numpy.ndarray
        Sorted positions of the kept cells.
    """
    if max_cells <= 0:
        return np.arange(len(labels))
    rng = np.random.default_rng(seed)
    kept = [
        positions if len(positions) <= max_cells else rng.choice(positions, size=max_cells, replace=False)
        for _, positions in sorted(pd.Series(labels).groupby(np.asarray(labels)).indices.items())
    ]
    return np.sort(np.concatenate(kept)) if kept else np.arange(0)
