"""Deconvolution of spatial spots into the single-cell reference's cell types.

Methods (``deconvolution_method``); ``auto`` (the default) is cell2location when a CUDA GPU is
visible (the ``process_gpu`` path) and ``poisson`` otherwise, with one log line saying which and why:

``poisson`` (the CPU default; RCTD-style, Cable et al. 2022, Nat Biotechnol 40:517)
    Spot counts on the informative genes (as for ``nnls``) are Poisson with rate
    ``sum_k a_k m_gk exp(gamma_g)``: ``m_gk`` the type's mean raw counts per cell in the reference,
    ``gamma_g`` a per-gene platform effect between the single-cell assay and the section (a random
    effect, ``N(0, 1)``, estimated once on the summed section as RCTD does), ``a_k`` the spot's cell
    abundances, fitted by maximum likelihood (multiplicative updates; seconds to a minute per section).
    Chosen by measurement (``benchmarks/deconvolution_real.py``, ``benchmarks/deconvolution_simulated.py``):
    on the real MSTI breast section with the CID4465 reference its proportions agree better with each
    type's reference-marker score than NNLS's (mean Spearman 0.54 vs 0.45 over 9 types), and on
    simulated sections with platform effects, a held-out patient and low depth it is closer to the
    planted proportions than NNLS in every scenario.

``cell2location`` (Kleshchevnikov et al. 2022, Nat Biotechnol 40:661)
    1. Reference signatures: :class:`cell2location.models.RegressionModel` (negative-binomial
       regression of the reference counts on ``cell_type``, with the reference ``sample`` as batch
       when it has several) on genes detected in enough reference cells (the tutorial's
       ``filter_genes`` criteria: >= 5 cells, and >= 3% of cells or mean non-zero count >= 1.12),
       ``c2l_ref_epochs`` epochs; posterior means of the per-type expression.
    2. Spatial model :class:`cell2location.models.Cell2location` on the section's counts with
       ``N_cells_per_location = c2l_n_cells_per_spot`` and ``detection_alpha = c2l_detection_alpha``,
       ``c2l_epochs`` epochs (full-data batches), ``c2l_posterior_samples`` posterior samples.
       Abundances are the posterior means of cells per spot and type (``q05`` kept beside them).
    Runs on the GPU when :func:`torch.cuda.is_available`, else on the CPU with a logged warning.

``nnls`` (fast, non-Bayesian; Lawson-Hanson non-negative least squares, as in SPOTlight/MuSiC-style
signature regression)
    1. Signatures: mean raw counts per reference cell type (so that a type's larger or smaller
       libraries are part of its signature and coefficients are cell numbers up to one global
       capture factor) over ``nnls_n_markers`` informative genes per type: genes detected in >= 10% of
       the type's cells with the largest log2 fold change of the type's mean normalised expression
       over the mean of the other types.
    2. Each spot's counts on those genes are regressed on the signatures with non-negative
       coefficients (rows weighted by 1/sqrt(mean signature), a Poisson-like variance stabilisation).
       Abundances are the coefficients, proportions the abundances normalised to sum 1.

Every method writes ``obsm['deconvolution_abundance']`` / ``obsm['deconvolution_proportions']`` (spots x
types DataFrames), ``obs['prop_<type>']``, ``obs['dominant_type']``, tables, and plots on the tissue (proportions,
and abundances, which keep the spot's cellularity: on the MSTI section the epithelial abundance follows the
H&E's stained epithelium better than the proportion or the marker score, ``benchmarks/deconvolution_real.py``); with
a ``cell_type_fine`` column in the reference also ``obsm['deconvolution_proportions_fine']`` (subtypes).

A marker-score baseline guards every section: each reference type's score (scanpy ``score_genes`` of its
``MARKER_BASELINE_GENES`` informative genes on the log-normalised spots) is written beside the proportions,
with Spearman's rho between a type's proportion and its score; a type whose rho falls below
``deconv_min_agreement`` gets a warning in the log and in the report's agreement table.

The reference atlas stays on disk: its labels and, per ``cell_type`` (and ``cell_type_fine``) label, the raw
counts of at most ``deconv_max_cells_per_type`` cells (a seeded subsample of a larger type; 0: all) are read
(:func:`read_reference`), so every section's process needs the subsample's memory, not the atlas's.

Input checks (one-line :class:`TmeflowInputError`, exit 2): no ``cell_type`` column in the
reference; a reference without counts (no ``layers['counts']`` and a non-integer ``X``); fewer
genes shared by section and reference than ``deconv_min_shared_genes``; fewer than two cell types
with at least ``deconv_min_cells_per_type`` cells.

Modules: :mod:`.inputs` (checks, settings), :mod:`.nnls`, :mod:`.poisson`, :mod:`.cell2location` (the methods),
:mod:`.baseline` (marker scores), :mod:`.run` (the stage and its outputs); every name is re-exported here.
"""

from .baseline import marker_agreement, marker_scores
from .cell2location import (
    c2l_gene_filter,
    cell2location_deconvolve,
    choose_accelerator,
    cuda_available,
    epoch_logger,
    resolve_method,
)
from .inputs import (
    FINE_LABEL_KEY,
    LABEL_KEY,
    MARKER_BASELINE_GENES,
    MARKER_MIN_DETECTION,
    TARGET_SUM,
    DeconvolutionSettings,
    prepare_inputs,
    read_reference,
    reference_counts,
    section_counts,
)
from .nnls import informative_genes, nnls_deconvolve, type_markers, type_means
from .poisson import MAX_ITERATIONS, PLATFORM_SD, TOLERANCE, platform_effects, poisson_deconvolve, poisson_weights
from .run import METHODS, cli, deconvolve, deconvolve_level, proportions_from, run_deconvolve, write_outputs

__all__ = [
    "DeconvolutionSettings",
    "FINE_LABEL_KEY",
    "LABEL_KEY",
    "MARKER_BASELINE_GENES",
    "MARKER_MIN_DETECTION",
    "MAX_ITERATIONS",
    "METHODS",
    "PLATFORM_SD",
    "TARGET_SUM",
    "TOLERANCE",
    "c2l_gene_filter",
    "cell2location_deconvolve",
    "choose_accelerator",
    "cli",
    "cuda_available",
    "deconvolve",
    "deconvolve_level",
    "epoch_logger",
    "informative_genes",
    "marker_agreement",
    "marker_scores",
    "nnls_deconvolve",
    "platform_effects",
    "poisson_deconvolve",
    "poisson_weights",
    "read_reference",
    "prepare_inputs",
    "proportions_",
    "reference_counts",
    "resolve_method",
    "run_deconvolve",
    "section_counts",
    "type_markers",
    "type_means",
    "write_outputs",
]
