"""Statistics shared by several stages."""

from __future__ import annotations

import numpy as np
import pandas as pd


def bh_fdr(pvalues) -> np.ndarray:
    """Benjamini-Hochberg (1995) adjusted p-values, as R's ``p.adjust(method = "BH")``; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out


def moderated_by_pattern(y, design_for) -> pd.DataFrame:
    """Limma-style moderated t-tests of every column of ``y`` (samples x features, NaN = no value),
    samples being the units of replication.

    Features are grouped by which samples have values; each group gets one fit
    (:func:`tmeflow.composition.linear_model_test`, empirical-Bayes variance moderation as limma
    ``eBayes``, Smyth 2004) with the design ``design_for(sample_index)`` returns as
    ``(design, coef, label)`` (``None`` skips the group, e.g. too few samples). Returns, per tested
    feature (index as ``y.columns``): ``estimate``, ``t``, ``df``, ``pvalue``, ``n_samples`` and
    ``design`` (the label).
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
        fit = linear_model_test(y.loc[keep, cols], design, coef=coef, moderated=True)
        blocks.append(pd.DataFrame({"estimate": fit["logfc"].to_numpy(), "t": fit["t"].to_numpy(), "df": fit["df"].to_numpy(),
                                    "pvalue": fit["pvalue"].to_numpy(), "n_samples": len(keep), "design": label}, index=cols))
    if not blocks:
        return pd.DataFrame(columns=columns, index=y.columns[:0])
    return pd.concat(blocks)[columns]


def condition_contrast(y, samples, test: str, reference: str, *, min_samples: int = 2) -> pd.DataFrame:
    """Sample-level test of ``test`` vs ``reference`` for every column of ``y`` (samples x features, NaN
    allowed) with :func:`moderated_by_pattern`: design ``~ condition`` or, when every patient has both
    conditions (:func:`tmeflow.composition.is_paired`), ``~ condition + patient``. ``samples`` has
    ``condition`` and ``patient`` per sample. A feature needs ``min_samples`` samples with values in each
    condition. Adds ``n_samples_test`` / ``n_samples_reference``; ``estimate`` is the condition effect."""
    from .composition import condition_design, is_paired

    def design_for(keep):
        kept = samples.loc[keep]
        n_test, n_ref = int((kept["condition"] == test).sum()), int((kept["condition"] == reference).sum())
        if n_test < min_samples or n_ref < min_samples:
            return None
        paired = is_paired(kept, test, reference)
        return condition_design(kept, test, paired=paired), 1, "~ condition + patient" if paired else "~ condition"

    y = y.loc[[s for s in y.index if samples.at[s, "condition"] in (test, reference)]]
    out = moderated_by_pattern(y, design_for)
    valid = y.notna()
    conditions = samples.loc[y.index, "condition"].to_numpy()
    out["n_samples_test"] = valid[conditions == test].sum().reindex(out.index).to_numpy().astype(int)
    out["n_samples_reference"] = valid[conditions == reference].sum().reindex(out.index).to_numpy().astype(int)
    return out
