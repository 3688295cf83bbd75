"""Hand-built tiny inputs (5-20 cells, spots or samples) for the fast unit tier.

Every fast test builds its input here or in the test itself, small enough that the expected answer is
computed by hand and written in the test with its arithmetic. Nothing here simulates, reads
``../shared/data`` or runs a stage end to end (see docs/developing.md, "Test tiers").
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd


def names(prefix: str, n: int) -> list[str]:
    """``[prefix0, prefix1, ...]``: cell, spot, gene or sample names."""
    return [f"{prefix}{i}" for i in range(n)]


def frame(columns: dict[str, list[Any]], *, prefix: str = "c") -> pd.DataFrame:
    """A table of one row per cell (index ``c0, c1, ...``) from columns of equal length."""
    n = len(next(iter(columns.values())))
    return pd.DataFrame(columns, index=names(prefix, n))


def params(**overrides) -> dict[str, Any]:
    """The schema's defaults with ``overrides`` (for the functions that still take ``params``)."""
    from tmeflow.params import defaults

    out = defaults()
    unknown = set(overrides) - set(out)
    assert not unknown, f"not schema parameters: {sorted(unknown)}"
    out.update(overrides)
    return out


def adata(counts, obs: dict[str, list[Any]] | None = None, genes: list[str] | None = None):
    """AnnData of integer ``counts`` (cells x genes) in ``X`` and ``layers['counts']``."""
    import anndata as ad

    counts = np.asarray(counts, dtype=np.float32)
    obs_frame = frame(obs) if obs else pd.DataFrame(index=names("c", counts.shape[0]))
    var = pd.DataFrame(index=genes or names("g", counts.shape[1]))
    out = ad.AnnData(X=counts.copy(), obs=obs_frame, var=var)
    out.layers["counts"] = counts.copy()
    return out


def line(n: int, spacing: float = 100.0) -> np.ndarray:
    """Coordinates of ``n`` spots on a horizontal line, ``spacing`` apart (x = 0, spacing, ...)."""
    return np.column_stack([np.arange(n) * spacing, np.zeros(n)])


def chain_graph(n: int):
    """Adjacency of ``n`` spots in a chain 0 - 1 - ... - (n-1) (no self loops), as a CSR matrix."""
    import scipy.sparse as sp

    rows = np.r_[np.arange(n - 1), np.arange(1, n)]
    cols = np.r_[np.arange(1, n), np.arange(n - 1)]
    return sp.csr_matrix((np.ones(len(rows)), (rows, cols)), shape=(n, n))
