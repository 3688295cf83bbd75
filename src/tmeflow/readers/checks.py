"""Checks every format's AnnData passes before it leaves :mod:`tmeflow.readers`."""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import numpy as np
import scipy.sparse as sp

from ..errors import TmeflowInputError
from ..log import get_logger
from .formats import _unique_names

logger = get_logger(__package__)


# ---------------------------------------------------------------------------------------------
# Checks shared by all formats
# ---------------------------------------------------------------------------------------------


def _finalise(adata: ad.AnnData, path: Path, sample: str, strict_counts: bool) -> ad.AnnData:
    """Check the counts and bring ``X`` to CSR float32 with unique gene names."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise TmeflowInputError(f"empty matrix ({adata.n_obs} cells x {adata.n_vars} genes)", file=path, sample=sample)
    matrix = adata.X
    matrix = sp.csr_matrix(matrix) if not sp.issparse(matrix) else matrix.tocsr()
    data = np.asarray(matrix.data, dtype=np.float64)
    if not np.isfinite(data).all():
        raise TmeflowInputError(
            f"{int((~np.isfinite(data)).sum())} NaN or infinite values in the count matrix", file=path, sample=sample
        )
    if (data < 0).any():
        raise TmeflowInputError(
            f"{int((data < 0).sum())} negative values in the count matrix (expected raw counts)",
            file=path,
            sample=sample,
        )
    nonzero = data[data != 0]
    if not len(nonzero):
        raise TmeflowInputError("the count matrix is all zero", file=path, sample=sample)
    non_integer = float(np.mean(nonzero != np.round(nonzero)))
    if non_integer > 0:
        message = f"{non_integer:.1%} of the non-zero values are not integers (expected raw counts)"
        if strict_counts:
            raise TmeflowInputError(message, file=path, sample=sample)
        logger.warning("sample %s: %s in %s", sample, message, path)
    matrix = sp.csr_matrix((data.astype(np.float32), matrix.indices, matrix.indptr), shape=matrix.shape)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    adata.X = matrix
    if adata.var_names.has_duplicates:
        adata.var_names = _unique_names(adata.var_names, sample)
    if adata.obs_names.has_duplicates:  # cell names must be unique for every later stage
        duplicated = adata.obs_names[adata.obs_names.duplicated()]
        raise TmeflowInputError(
            f"{len(duplicated)} duplicated barcodes (first: {duplicated[0]}); each cell needs a unique barcode",
            file=path,
            sample=sample,
        )
    return adata
