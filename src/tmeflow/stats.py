"""Statistics shared by several stages."""

from __future__ import annotations

import numpy as np


def bh_fdr(pvalues) -> np.ndarray:
    """Benjamini-Hochberg (1995) adjusted p-values, as R's ``p.adjust(method = "BH")``; NaN stays NaN."""
    p = np.asarray(pvalues, dtype=float)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        from statsmodels.stats.multitest import multipletests

        out[ok] = multipletests(p[ok], method="fdr_bh")[1]
    return out
