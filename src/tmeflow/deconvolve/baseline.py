"""The marker-score baseline: each type's reference-marker score and its agreement with the proportions."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..log import get_logger
from .inputs import MARKER_BASELINE_GENES, TARGET_SUM
from .nnls import type_markers, type_means

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Marker-score baseline
# ----------------------------------------------------------------------------------------------
def marker_scores(spots: AnnData, ref: AnnData, n_markers: int = MARKER_BASELINE_GENES) -> pd.DataFrame:
    """Score every reference type's markers on the spots (the baseline the proportions are checked against).

    Per spot and reference type: scanpy ``score_genes`` of the type's ``n_markers`` informative genes
    (largest log2 fold change over the other types, detected in >= 10% of its cells) on the
    log-normalised (log1p CP10k) spot counts.

    Parameters
    ----------
    spots, ref
        The prepared section and reference (:func:`tmeflow.deconvolve.prepare_inputs`: shared genes, raw counts
        in ``X``, reference ``obs['cell_type']``). Neither is modified.
    n_markers
        Marker genes per type (``MARKER_BASELINE_GENES``, 50: enough genes for a stable score).

    Returns
    -------
    pandas.DataFrame
        Spots x types; all NaN for a type with no specific gene.
    """
    import anndata as ad
    import scanpy as sc

    _, norm_means, detection = type_means(ref)
    normalised = ad.AnnData(
        sp.csr_matrix(spots.X, dtype=np.float32),
        obs=pd.DataFrame(index=spots.obs_names),
        var=pd.DataFrame(index=spots.var_names),
    )
    sc.pp.normalize_total(normalised, target_sum=TARGET_SUM)
    sc.pp.log1p(normalised)
    scores = {}
    for cell_type in norm_means.columns:
        genes = type_markers(norm_means, detection, cell_type, n_markers)
        if not genes:  # no gene is specific to the type: no baseline (its agreement is reported as missing)
            scores[cell_type] = np.full(normalised.n_obs, np.nan)
            continue
        sc.tl.score_genes(
            normalised, genes, score_name="_score", random_state=0, ctrl_size=min(50, normalised.n_vars // 4)
        )
        scores[cell_type] = normalised.obs["_score"].to_numpy()
    return pd.DataFrame(scores, index=spots.obs_names)


def marker_agreement(proportions: pd.DataFrame, scores: pd.DataFrame, minimum: float) -> pd.DataFrame:
    """Compare each type's proportion with its marker score over the spots (Spearman's rho).

    Parameters
    ----------
    proportions
        Spots x types deconvolution proportions.
    scores
        Spots x types marker scores (:func:`marker_scores`).
    minimum
        ``deconv_min_agreement``: a type whose rho is below it gets a logged warning.

    Returns
    -------
    pandas.DataFrame
        Index ``cell_type``; ``mean_proportion``, ``spearman_vs_marker_score`` (NaN when either side is
        constant) and ``agrees`` (rho >= ``minimum``; False when NaN).
    """
    from scipy.stats import spearmanr

    rows = []
    for cell_type in proportions.columns:
        constant = proportions[cell_type].nunique() < 2 or scores[cell_type].nunique(dropna=True) < 2
        rho = np.nan if constant else float(spearmanr(proportions[cell_type], scores[cell_type]).statistic)
        rows.append(
            {
                "cell_type": cell_type,
                "mean_proportion": float(proportions[cell_type].mean()),
                "spearman_vs_marker_score": rho,
                "agrees": bool(rho >= minimum) if not constant else False,
            }
        )
    table = pd.DataFrame(rows).set_index("cell_type")
    disagree = table.index[~table["agrees"]]
    if len(disagree):
        logger.warning(
            "deconvolution disagrees with the marker score (Spearman < %.2f) for: %s; check these types' "
            "proportions against their markers",
            minimum,
            ", ".join(f"{t} ({table.loc[t, 'spearman_vs_marker_score']:.2f})" for t in disagree),
        )
    return table
