"""propeller-style differential abundance of cell-type proportions (Phipson et al. 2022, speckle)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..stats import bh_fdr
from .contrasts import contrast_name, is_paired
from .limma import contrast_design, linear_model_test


def transform_proportions(counts: pd.DataFrame, transform: str) -> pd.DataFrame:
    """Transform cell counts to proportions on a variance-stabilised scale (speckle ``getTransformedProps``).

    Parameters
    ----------
    counts
        Samples x cell types cell counts.
    transform
        ``logit`` of (counts + 0.5) proportions, or ``asin`` (``asin(sqrt(p))``).

    Returns
    -------
    pandas.DataFrame
        Transformed proportions, shaped like ``counts``.
    """
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


def propeller(
    counts: pd.DataFrame,
    samples: pd.DataFrame,
    test: str,
    reference: str,
    *,
    transform: str = "logit",
    moderated: bool = True,
    paired: bool | None = None,
    robust: bool = True,
) -> pd.DataFrame:
    """Test the differential abundance of every cell type for one contrast (propeller; Phipson et al. 2022).

    Moderation as speckle's ``eBayes(robust = TRUE)`` unless ``robust`` is False.

    Parameters
    ----------
    counts
        Samples x cell types cell counts.
    samples
        ``condition`` and ``patient`` per sample (index).
    test, reference
        The contrasted conditions.
    transform
        ``logit`` (default, speckle's) or ``asin``.
    moderated
        Empirical-Bayes moderated t-tests (default); else ordinary t-tests.
    paired
        Block on patient; ``None``: when :func:`tmeflow.composition.is_paired`.
    robust
        Robust prior (default, as speckle).

    Returns
    -------
    pandas.DataFrame
        One row per cell type: ``cell_type``, ``contrast``, ``test``, ``reference``, sample counts, mean proportions
        and their ratio, ``logfc`` (transformed scale), ``t``, ``df``, ``pvalue``, BH ``fdr``, ``transform``,
        ``moderated``, ``design``; by p-value.
    """
    if paired is None:
        paired = is_paired(samples, test, reference)
    samples, design, contrast = contrast_design(samples.loc[counts.index], test, reference, paired=paired)
    counts = counts.loc[samples.index]
    counts = counts.loc[:, counts.sum(axis=0) > 0] if (counts.sum(axis=0) > 0).any() else counts
    fit = linear_model_test(
        transform_proportions(counts, transform), design, coef=contrast, moderated=moderated, robust=robust
    )
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
