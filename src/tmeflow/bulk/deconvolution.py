"""Bulk deconvolution: single-cell reference profiles, marker genes, NNLS fractions and Spearman tables."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..genes import species_of
from ..io import group_sums, row_blocks
from ..log import get_logger
from ..signatures import ortholog_map
from ..stats import bh_fdr

if TYPE_CHECKING:
    from anndata import AnnData

logger = get_logger(__package__)


reference_species = species_of  # the species of a reference atlas: the one detector every stage asks
# --------------------------------------------------------------------------------------------------
# Reference: marker signatures and deconvolution


def reference_profiles(adata: AnnData, bulk_species: str, ref_species: str, source: Path) -> pd.DataFrame:
    """Average a single-cell reference into mean counts-per-million per ``cell_type`` (genes x cell types).

    Raw counts come from ``layers['counts']`` (else ``X``), read in row blocks, so an atlas opened with
    :func:`tmeflow.io.h5ad_on_disk` stays on disk (two passes: the cells' totals, then the per-type sums of CPM).
    Gene symbols are translated to the bulk species with the bundled one-to-one orthologs when the species differ.

    Parameters
    ----------
    adata
        The annotated single-cell reference (``obs['cell_type']``), in memory or on disk.
    bulk_species
        Species of the bulk cohort's genes.
    ref_species
        Species of the reference (:func:`reference_species`).
    source
        The reference's path, for messages.

    Returns
    -------
    DataFrame
        Genes x cell types, mean CPM.
    """
    if "cell_type" not in adata.obs:
        raise TmeflowInputError("reference has no obs column 'cell_type'", file=source, column="cell_type")
    counts = adata.layers["counts"] if "counts" in adata.layers else adata.X
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    types = sorted(pd.unique(labels))
    if len(types) < 2:
        raise TmeflowInputError("reference needs at least two cell types", file=source, column="cell_type")
    codes = pd.Categorical(labels, categories=types).codes
    totals = np.concatenate([np.asarray(block.sum(axis=1), dtype=float).ravel() for _, block in row_blocks(counts)])
    totals[totals == 0] = 1.0
    cpm_sums = group_sums(counts, codes, len(types), weights=1e6 / totals)
    profiles = (cpm_sums / np.bincount(codes, minlength=len(types))[:, None]).T
    frame = pd.DataFrame(profiles, index=adata.var_names.astype(str), columns=types)
    if ref_species != bulk_species:
        mapping = ortholog_map(ref_species, bulk_species)
        frame = frame.loc[frame.index.isin(list(mapping))]
        frame.index = [mapping[g] for g in frame.index]
        logger.info(
            "reference genes mapped %s -> %s with one-to-one orthologs: %d genes", ref_species, bulk_species, len(frame)
        )
    frame = frame.groupby(level=0).sum() if frame.index.duplicated().any() else frame
    return frame


def marker_genes(profiles: pd.DataFrame, n_markers: int, universe: pd.Index | None = None) -> dict[str, list[str]]:
    """Pick the top ``n_markers`` genes per cell type by specificity ``log2((mean_t + 1) / (max_other + 1)) > 0``.

    A simple, deterministic marker rule on the mean-CPM profiles (each type against the highest other type, so
    markers separate every pair).

    Parameters
    ----------
    profiles
        Genes x cell types, mean CPM (:func:`reference_profiles`).
    n_markers
        Markers per cell type (``reference_markers``).
    universe
        Genes the markers are taken from (the bulk matrix's); None = all genes of ``profiles``.

    Returns
    -------
    dict
        Cell type -> its markers, most specific first.
    """
    frame = profiles if universe is None else profiles.loc[profiles.index.isin(universe)]
    values = np.log2(frame.to_numpy() + 1.0)
    markers = {}
    for j, cell_type in enumerate(frame.columns):
        others = np.delete(values, j, axis=1).max(axis=1)
        specificity = pd.Series(values[:, j] - others, index=frame.index)
        top = specificity[specificity > 0].sort_values(ascending=False, kind="stable").head(n_markers)
        markers[cell_type] = list(top.index)
    return markers


def deconvolve_nnls(
    linear: pd.DataFrame, profiles: pd.DataFrame, markers: dict[str, list[str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Estimate cell-type fractions of bulk samples by non-negative least squares on a signature matrix.

    Signature-matrix deconvolution (Abbas et al. 2009, PLoS One 4:e6098; the CIBERSORT idea of a marker-gene
    signature matrix, Newman et al. 2015, Nat Methods 12:453, with NNLS instead of nu-SVR): the signature matrix is
    the mean CPM per cell type over the union of marker genes present in the bulk matrix; each sample's
    linear-scale expression ``b`` is fitted as ``b ~ S f`` with ``f >= 0`` (``scipy.optimize.nnls``) and ``f`` is
    normalised to sum 1.

    Parameters
    ----------
    linear
        Linear-scale bulk expression, genes x samples.
    profiles
        Genes x cell types, mean CPM.
    markers
        Cell type -> marker genes.

    Returns
    -------
    tuple of (DataFrame, DataFrame)
        Fractions (samples x cell types, rows summing to 1) and the fit table (residual norm and Pearson r of
        fitted and observed expression per sample).
    """
    from scipy.optimize import nnls

    genes = [g for g in dict.fromkeys(g for m in markers.values() for g in m) if g in linear.index]
    if len(genes) < profiles.shape[1]:
        raise TmeflowInputError(
            f"only {len(genes)} reference marker genes are in the bulk matrix; cannot deconvolve "
            f"{profiles.shape[1]} cell types (check species and identifiers)"
        )
    signature = profiles.loc[genes].to_numpy()
    bulk = linear.loc[genes].to_numpy()
    fractions = np.zeros((bulk.shape[1], signature.shape[1]))
    fit = []
    for j in range(bulk.shape[1]):
        coef, residual = nnls(signature, bulk[:, j])
        total = coef.sum()
        fractions[j] = coef / total if total > 0 else np.nan
        predicted = signature @ coef
        r = np.corrcoef(predicted, bulk[:, j])[0, 1] if predicted.std() > 0 and bulk[:, j].std() > 0 else np.nan
        fit.append({"sample": linear.columns[j], "residual_norm": residual, "pearson_r": r, "n_genes": len(genes)})
    frame = pd.DataFrame(fractions, index=linear.columns, columns=profiles.columns)
    frame.index.name = "sample"
    return frame, pd.DataFrame(fit)


# --------------------------------------------------------------------------------------------------
# ESTIMATE


def spearman_pair(x: pd.Series, y: pd.Series) -> tuple[float, float, int]:
    """Compute the Spearman rho and p of ``x`` and ``y`` over the samples where both are known.

    Parameters
    ----------
    x, y
        Values per sample (aligned on the index; NaN = unknown).

    Returns
    -------
    tuple of (float, float, int)
        rho, two-sided p and the number of complete samples; rho and p are NaN below 3 samples or when either
        side is constant.
    """
    from scipy.stats import spearmanr

    ok = x.notna() & y.notna()
    if ok.sum() < 3 or x[ok].nunique() < 2 or y[ok].nunique() < 2:
        return np.nan, np.nan, int(ok.sum())
    rho, p = spearmanr(x[ok], y[ok])
    return rho, p, int(ok.sum())


def spearman_table(features: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """Correlate every feature with every target (Spearman), with BH FDR over all pairs.

    Parameters
    ----------
    features
        Samples x features.
    targets
        Samples x targets.

    Returns
    -------
    DataFrame
        One row per feature and target: ``feature``, ``target``, ``rho``, ``p``, ``n`` and ``fdr``.
    """
    rows = []
    for feature in features.columns:
        for target in targets.columns:
            rho, p, n = spearman_pair(features[feature], targets[target])
            rows.append({"feature": feature, "target": target, "rho": rho, "p": p, "n": n})
    table = pd.DataFrame(rows)
    table["fdr"] = bh_fdr(table["p"])
    return table
