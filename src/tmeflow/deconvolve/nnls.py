"""Signature regression by non-negative least squares (the ``nnls`` method) and the informative genes it uses."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import TmeflowInputError
from ..io import group_sums
from ..log import get_logger
from .inputs import LABEL_KEY, MARKER_MIN_DETECTION, TARGET_SUM, DeconvolutionSettings

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# NNLS
# ----------------------------------------------------------------------------------------------
def type_means(ref: AnnData) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Average the reference per type: raw counts, normalised expression and detection.

    Parameters
    ----------
    ref
        The prepared reference (raw counts in ``X``; ``obs['cell_type']``).

    Returns
    -------
    tuple[pandas.DataFrame, pandas.DataFrame, pandas.DataFrame]
        Genes x types: mean raw counts per cell, mean normalised (per 10,000) expression, fraction of cells
        detecting the gene.
    """
    counts = sp.csr_matrix(ref.X)
    size = np.asarray(counts.sum(axis=1)).ravel()
    normalised = sp.diags(TARGET_SUM / np.maximum(size, 1.0)) @ counts
    detected = counts.copy()
    detected.data = (detected.data > 0).astype(np.float32)
    types = list(ref.obs[LABEL_KEY].cat.categories)
    codes = ref.obs[LABEL_KEY].cat.codes.to_numpy()
    n = np.bincount(codes, minlength=len(types))[:, None]
    frames = []
    for matrix in (counts, normalised, detected):
        mean = group_sums(matrix, codes, len(types)) / n
        frames.append(pd.DataFrame(mean.T, index=ref.var_names, columns=types))
    return frames[0], frames[1], frames[2]


def type_markers(norm_means: pd.DataFrame, detection: pd.DataFrame, cell_type: str, n_markers: int) -> list[str]:
    """Choose a type's markers: the largest log2 fold change over the other types' mean among detected genes.

    Parameters
    ----------
    norm_means
        Genes x types mean normalised expression (:func:`type_means`).
    detection
        Genes x types detection rates (:func:`type_means`).
    cell_type
        The type.
    n_markers
        How many genes (``nnls_n_markers``).

    Returns
    -------
    list[str]
        Up to ``n_markers`` genes detected in >= 10% of the type's cells, largest fold change first.
    """
    others = norm_means.drop(columns=cell_type).mean(axis=1) if norm_means.shape[1] > 1 else norm_means[cell_type] * 0
    lfc = np.log2(norm_means[cell_type] + 0.1) - np.log2(others + 0.1)
    lfc = lfc[(detection[cell_type] >= MARKER_MIN_DETECTION) & (lfc > 0)]
    return list(lfc.sort_values(ascending=False).index[:n_markers])


def informative_genes(norm_means: pd.DataFrame, detection: pd.DataFrame, n_markers: int) -> list[str]:
    """Take the union over types of each type's markers (:func:`type_markers`).

    Parameters
    ----------
    norm_means, detection
        Genes x types (:func:`type_means`).
    n_markers
        Markers per type.

    Returns
    -------
    list[str]
        The genes, in reference order.
    """
    genes: dict[str, None] = {}
    for cell_type in norm_means.columns:
        genes.update(dict.fromkeys(type_markers(norm_means, detection, cell_type, n_markers)))
    return list(genes)


def nnls_deconvolve(
    spots: AnnData, ref: AnnData, settings: DeconvolutionSettings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Estimate cell abundances by non-negative least squares on type signatures (Lawson-Hanson NNLS).

    Parameters
    ----------
    spots, ref
        The prepared section and reference (:func:`tmeflow.deconvolve.prepare_inputs`: shared genes, raw counts
        in ``X``, reference ``obs['cell_type']``).
    settings
        The stage settings (``DeconvolutionSettings.from_params(params)`` or ``.defaults()``);
        ``nnls_n_markers`` is used.

    Returns
    -------
    tuple[pandas.DataFrame, dict]
        Abundances (spots x types; cell numbers up to one capture factor), and a summary (``method``,
        ``n_genes``, ``genes``, ``median_relative_residual``).
    """
    from scipy.optimize import nnls

    raw_means, norm_means, detection = type_means(ref)
    genes = informative_genes(norm_means, detection, settings.nnls_n_markers)
    if len(genes) < raw_means.shape[1]:
        raise TmeflowInputError(
            f"only {len(genes)} informative genes for {raw_means.shape[1]} cell types; "
            "the reference and the section share too few marker genes"
        )
    signatures = raw_means.loc[genes].to_numpy(dtype=float)
    weights = 1.0 / np.sqrt(signatures.mean(axis=1) + 1e-3)
    design = signatures * weights[:, None]
    y = np.asarray(spots[:, genes].X.todense(), dtype=float) * weights[None, :]
    coefficients = np.zeros((spots.n_obs, signatures.shape[1]))
    residuals = np.zeros(spots.n_obs)
    for i in range(spots.n_obs):
        coefficients[i], residuals[i] = nnls(design, y[i])
    abundance = pd.DataFrame(coefficients, index=spots.obs_names, columns=raw_means.columns)
    info = {
        "method": "nnls",
        "n_genes": len(genes),
        "genes": genes,
        "median_relative_residual": float(np.median(residuals / np.maximum(np.linalg.norm(y, axis=1), 1e-9))),
    }
    return abundance, info
