"""Per-section spatial analysis of a deconvolved section (``tmeflow spatial_analysis``).

Regions, neighbourhoods, co-localisation, spatial ligand-receptor co-expression, a tumour-to-stroma trajectory,
distance tests and TLS.

Methods
-------
Regions
    From a pathologist's annotation (``--region_annotation``: CSV/TSV with a barcode and a region
    column; ``tumor``/``tumour`` spellings unified) when given; otherwise derived from the
    deconvolution: the malignant proportion of a spot is the summed proportion of the reference
    types listed in ``malignant_cell_types``, averaged with its first-ring neighbours when
    ``region_smoothing`` (deconvolution noise otherwise fragments the tumour); **tumour** = that
    proportion >= ``tumour_threshold``; **interface** = non-tumour spots within ``interface_rings`` rings of a
    tumour spot (a ring = the first neighbour shell, 1.5 spot spacings); **stroma** = the rest.
Neighbourhoods
    Spatial graph of the first neighbour shell (:func:`tmeflow.spatial_qc.spatial_graph`);
    :func:`squidpy.gr.nhood_enrichment` (permutation z-scores, ``spatial_n_perms``) and
    :func:`squidpy.gr.co_occurrence` of the regions and of the dominant cell types.
Co-localisation with malignant cells
    For each cell type, Pearson correlation of its proportion with the *spatially lagged* malignant
    proportion (mean over the spot's neighbours, the spot excluded; a bivariate Moran-type
    statistic), with a spatially constrained p-value: Moran spectral randomisation of the cell
    type's proportion (Wagner & Dray 2015), which keeps its spatial autocorrelation (an i.i.d.
    permutation of spots does not, and rejects far above the nominal level for smooth patterns),
    exact null variance and normal p (:func:`tmeflow.stats.msr_linear_test`); BH FDR.
Spatial ligand-receptor co-expression
    :func:`liana.mt.bivariate` local scores (``lr_local_metric``, default ``product``: the spatially
    weighted product of the standardised ligand and receptor expression, which grows with the
    amount of both; cosine and correlation metrics are scale-free and miss a co-ordinated rise) over
    liana's bundled ``consensus`` resource and a Gaussian spatial kernel (bandwidth 1.5 spot spacings,
    the spot itself included; :func:`liana.ut.spatial_neighbors`), on log-normalised expression with
    ligand and receptor each detected in >= ``lr_min_prop`` of spots. Interface enrichment: mean
    local score in interface spots minus elsewhere, one-sided, against Moran spectral randomisation of
    the (autocorrelated, kernel-smoothed) score (:func:`interface_test`), BH FDR over interactions;
    interface-enriched at FDR < ``lr_fdr`` with a positive difference. Each section is one
    observation of its patient: these p-values are about this section, not a population; the
    section's z-scores are stored (``uns['spatial_statistics']``) and combined across sections with
    patients as the units by :mod:`tmeflow.spatial_cohort` (in ``tmeflow atlas``).
Trajectory from tumour to stroma
    Axis = signed distance to the tumour boundary in spot spacings (negative inside tumour: distance
    to the nearest non-tumour spot; positive outside: distance to the nearest tumour spot). Signature
    scores per spot (:func:`scanpy.tl.score_genes`): EMT (Hallmark EPITHELIAL_MESENCHYMAL_TRANSITION),
    necroptosis (GO:0070266 necroptotic process, bundled cell_death sets), immune and stromal
    (ESTIMATE) and the 12-chemokine TLS score; means per ``trajectory_n_bins`` equal-width bins of the
    axis, and Spearman correlation of each score and each cell-type proportion with the axis; its
    p-value comes from Moran spectral randomisation of the feature's ranks
    (:func:`tmeflow.stats.msr_rank_correlation`), not from Spearman's test over spots, which treats
    autocorrelated spots as independent; BH FDR.
Distance association
    For the genes in ``distance_genes``: Spearman correlation of log-normalised expression with the
    distance to the nearest malignant-rich (tumour) spot over non-tumour spots, p-value from Moran
    spectral randomisation of the gene over the section, BH FDR.
Spot-level CNV map
    Copy-number inference on the spots themselves (:mod:`tmeflow.spatial_cnv`: infercnvpy against half
    of the stroma-rich spots, the other half the null): a tumour map that does not come from the
    deconvolution, with its agreement with the malignant proportion and the regions.
Tertiary lymphoid structures
    12-chemokine TLS score (CCL2, CCL3, CCL4, CCL5, CCL8, CCL18, CCL19, CCL21, CXCL9, CXCL10, CXCL11,
    CXCL13; Coppola et al. 2011; Cabrita et al. 2020) per spot. Absolute thresholds, the same in every
    section: a TLS spot has a chemokine score >= ``tls_min_score`` (score_genes units: log-normalised
    expression above expression-matched control genes) and a lymphoid (``lymphoid_cell_types``: B/T)
    proportion >= ``tls_min_lymphoid``; neighbouring TLS spots form one TLS (connected components of
    the spatial graph) when there are at least ``tls_min_spots`` of them. A section without lymphoid
    aggregates therefore reports none (per-section quantiles, used before, called a TLS in almost
    every section). The defaults (0.3, 0.3, 3 spots) are tmeflow's conventions, not values from a
    publication; histology remains the reference for TLS.

Modules: :mod:`.common` (constants, settings), :mod:`.regions`, :mod:`.neighbourhoods` (enrichment,
co-localisation, the interface test), :mod:`.ligand_receptor`, :mod:`.scores` (signatures, trajectory,
distance, TLS), :mod:`.plots` and :mod:`.run` (the stage); every name is re-exported here.
"""

from .common import (
    MIN_SIGNATURE_GENES,
    REGION_SYNONYMS,
    REGIONS,
    SIGNATURES,
    TLS_CHEMOKINES,
    TLS_COLUMNS,
    SpatialAnalysisSettings,
)
from .ligand_receptor import spatial_lr
from .neighbourhoods import colocalisation, interface_test, neighbourhood, section_eigenvectors
from .plots import plot_nhood_enrichment, plot_trajectory
from .regions import derive_regions, malignant_proportion, read_region_annotation, rings_graph, signed_distance
from .run import analyse_section, cli, run_spatial_analysis, write_outputs
from .scores import detect_tls, distance_association, score_signatures, signature_sets, species_genes, trajectory

__all__ = [
    "MIN_SIGNATURE_GENES",
    "REGIONS",
    "REGION_SYNONYMS",
    "SIGNATURES",
    "SpatialAnalysisSettings",
    "TLS_CHEMOKINES",
    "TLS_COLUMNS",
    "analyse_section",
    "cli",
    "colocalisation",
    "derive_regions",
    "detect_tls",
    "distance_association",
    "interface_test",
    "malignant_proportion",
    "neighbourhood",
    "plot_nhood_enrichment",
    "plot_trajectory",
    "read_region_annotation",
    "rings_graph",
    "run_spatial_analysis",
    "score_signatures",
    "section_eigenvectors",
    "signature_sets",
    "signed_distance",
    "spatial_lr",
    "species_genes",
    "trajectory",
    "write_outputs",
]
