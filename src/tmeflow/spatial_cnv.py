"""Copy-number inference on spots: a tumour map of a section that does not come from deconvolution.

Malignant cells carry clonal copy-number changes; a spot dominated by them shows the same
chromosome-wide shifts of expression as a malignant cell (inferCNV on spatial data: Erickson et al.
2022, *Nature* 608:360; infercnvpy on spots). The map is an independent check of where the
deconvolution puts malignant cells, and of regions a pathologist did not draw.

Method
    1. Genes placed on the genome with the bundled position table of the section's species
       (:func:`tmeflow.cnv.bundled_positions`); genes detected in fewer than ``cnv_min_gene_fraction``
       of the spots left out; fewer than :data:`tmeflow.cnv.MIN_POSITIONED_GENES` placed genes skips
       the map with a warning.
    2. **Reference spots**: those whose deconvolved malignant proportion is at most the
       ``spot_cnv_reference_quantile`` quantile of the section (stroma- and immune-rich spots), at
       least :data:`MIN_REFERENCE_SPOTS`. They are split at random (seeded) in two halves: one half's
       mean log-normalised profile is the reference expression, the other half is the null. A
       reference that also served as the null would be shrunk towards zero and make every other
       spot look altered (the reason tmeflow's cell-level calls are being recalibrated, issue 15).
    3. :func:`infercnvpy.tl.infercnv` on the section's ``X`` (log1p CP10k, from ``tmeflow spatial_qc``) against
       that reference, with the ``cnv`` stage's defaults (window, step, log-fold-change clip, excluded
       chromosomes: the schema defaults of ``cnv_window``, ``cnv_step``, ``cnv_lfc_clip``, ``cnv_exclude_chromosomes``).
    4. **Spot CNV score**: mean absolute CNV signal of the spot, averaged with its first-ring
       neighbours (a spot holds few cells; neighbours of a tumour nest share its clones).
    5. **CNV tumour spots**: score above the 95th percentile of the held-out reference half.
    6. **Agreement** with the deconvolution: Spearman correlation of the score with the malignant
       proportion, and the fraction of spots where the CNV call and the region (``tumour`` vs not)
       agree.

Outputs (by :mod:`tmeflow.spatial_analysis`): ``obs['cnv_score_spot']``, ``obs['cnv_tumour']``,
``obs['cnv_reference_spot']``; ``<sample>.spot_cnv.tsv`` (the agreement summary) and the
``spot_cnv`` panels of ``<sample>.spot_cnv.png`` (tissue image, CNV score, CNV tumour call,
deconvolved malignant proportion).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .log import get_logger
from .spatial_qc import smooth

if TYPE_CHECKING:
    from anndata import AnnData

logger = get_logger(__name__)

MIN_REFERENCE_SPOTS = 20
NULL_QUANTILE = 0.95


def _placed_genes(adata, species: str, min_fraction: float):
    """Copy the section's spots with genome positions in ``var``, or return None.

    ``X`` is log1p CP10k, as ``tmeflow spatial_qc`` writes it.
    """
    import anndata as ad

    from .cnv import MIN_POSITIONED_GENES, annotate_positions, bundled_positions

    work = ad.AnnData(
        X=sp.csr_matrix(adata.X, dtype=np.float32),
        obs=pd.DataFrame(index=adata.obs_names),
        var=pd.DataFrame(index=adata.var_names),
    )
    annotate_positions(work, bundled_positions(species))
    detected = np.asarray((work.X > 0).mean(axis=0)).ravel() >= min_fraction
    keep = work.var["chromosome"].notna().to_numpy() & detected
    if keep.sum() < MIN_POSITIONED_GENES:
        logger.warning(
            "spot CNV skipped: %d detected genes with a genome position (need %d)",
            int(keep.sum()),
            MIN_POSITIONED_GENES,
        )
        return None
    return work[:, keep].copy()


def spot_cnv(
    adata: AnnData, malignant: np.ndarray, graph: sp.csr_matrix, *, reference_quantile: float, seed: int, species: str
) -> pd.DataFrame | None:
    """Map copy-number on the spots themselves (infercnvpy), independently of the deconvolution.

    Reference spots are those at or below the ``reference_quantile`` of the malignant proportion; half of
    them are the reference, the other half the null that sets the tumour threshold (see the module docstring).

    Parameters
    ----------
    adata
        The section (raw counts in ``layers['counts']``); not modified.
    malignant
        Malignant proportion per spot (deconvolution).
    graph
        Spots x spots first-ring adjacency (scores are smoothed over it).
    reference_quantile
        ``spot_cnv_reference_quantile``; 0 turns the map off.
    seed
        Seed of the reference / null split.
    species
        ``human`` or ``mouse`` (gene positions).

    Returns
    -------
    pandas.DataFrame or None
        One row per spot: ``cnv_score_spot``, ``cnv_tumour``, ``cnv_reference_spot``; None when the section
        cannot be mapped (map off, too few reference spots or positioned genes).
    """
    import infercnvpy as cnv

    from .cnv import CnvSettings

    if reference_quantile <= 0:
        return None
    cnv_defaults = CnvSettings.defaults()
    reference = malignant <= np.quantile(malignant, reference_quantile)
    if reference.sum() < MIN_REFERENCE_SPOTS:
        logger.warning("spot CNV skipped: %d reference spots (need %d)", int(reference.sum()), MIN_REFERENCE_SPOTS)
        return None
    work = _placed_genes(adata, species, cnv_defaults.cnv_min_gene_fraction)
    if work is None:
        return None
    rng = np.random.default_rng(seed)
    builds = np.zeros(adata.n_obs, dtype=bool)
    reference_index = np.flatnonzero(reference)
    builds[rng.choice(reference_index, size=len(reference_index) // 2, replace=False)] = True
    null = reference & ~builds
    profile = np.asarray(work.X[builds].mean(axis=0))
    _, matrix, _ = cnv.tl.infercnv(
        work,
        reference=profile,
        window_size=cnv_defaults.cnv_window,
        step=cnv_defaults.cnv_step,
        exclude_chromosomes=cnv_defaults.excluded_chromosomes,
        lfc_clip=cnv_defaults.cnv_lfc_clip,
        inplace=False,
        n_jobs=1,
    )
    score = smooth(np.asarray(abs(matrix).mean(axis=1)).ravel(), graph)
    threshold = float(np.quantile(score[null], NULL_QUANTILE))
    logger.info(
        "spot CNV: %d genes, %d reference spots (%d build the reference, %d are the null); %d of %d spots "
        "CNV-high (score > %.4f)",
        work.n_vars,
        int(reference.sum()),
        int(builds.sum()),
        int(null.sum()),
        int((score > threshold).sum()),
        adata.n_obs,
        threshold,
    )
    return pd.DataFrame(
        {"cnv_score_spot": score, "cnv_tumour": score > threshold, "cnv_reference_spot": reference},
        index=adata.obs_names,
    )


def agreement(
    calls: pd.DataFrame, malignant: np.ndarray, regions: np.ndarray, sample: str, region_source: str
) -> pd.DataFrame:
    """Summarise how the CNV map agrees with the deconvolution's malignant proportion and the regions.

    Parameters
    ----------
    calls
        :func:`spot_cnv`'s table.
    malignant
        Malignant proportion per spot.
    regions
        Region per spot.
    sample
        The sample name.
    region_source
        ``derived`` or ``annotation``.

    Returns
    -------
    pandas.DataFrame
        One row: ``sample``, ``n_spots``, ``n_cnv_tumour``, ``spearman_cnv_vs_malignant_prop``,
        ``agreement_with_regions`` (fraction of spots where the CNV call equals the tumour region),
        ``region_source``.
    """
    from scipy.stats import spearmanr

    tumour_region = regions == "tumour"
    return pd.DataFrame(
        [
            {
                "sample": sample,
                "n_spots": len(calls),
                "n_cnv_tumour": int(calls["cnv_tumour"].sum()),
                "spearman_cnv_vs_malignant_prop": float(spearmanr(calls["cnv_score_spot"], malignant)[0]),
                "agreement_with_regions": float(np.mean(calls["cnv_tumour"].to_numpy() == tumour_region)),
                "region_source": region_source,
            }
        ]
    )
