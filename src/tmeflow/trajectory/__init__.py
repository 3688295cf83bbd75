"""Trajectories: pseudotime, fates and fate genes (``tmeflow trajectory``).

Input: the atlas h5ad (log1p CP10k in ``X``, raw counts in ``layers['counts']`` when present;
``obs`` ``cell_type``, ``condition``, optionally ``compartment``, ``malignant``, ``sample``).

Subset (``trajectory_subset``)
    Comma-separated names, each matched (case-insensitive) to ``obs['compartment']``, else to
    ``cell_type`` / ``cell_type_fine``. ``epithelial`` without a compartment column takes every cell
    type named ``*epithelial*``, ``malignant``, ``tumour``/``tumor``/``cancer*`` and cells with
    ``obs['malignant']`` true. Empty: all cells. An unknown name is an input error.
Cap (``trajectory_max_cells``, default 10,000; 0: none)
    GPCCA needs a real Schur decomposition of the transition matrix; without PETSc/SLEPc pyGPCCA
    computes it densely ('brandts'): O(n^2) memory, O(n^3) time (25 s at 4,000 cells, minutes at
    10,000, hours beyond). A larger subset is subsampled (seeded) per (sample, cell type) group in
    proportion to its size, at least 10 cells or all of a group (:func:`.inputs.subsample_cells`); the
    other cells get no pseudotime or fate.
Embedding
    Highly variable genes of the subset (``trajectory_n_top_genes``; Seurat v3 on raw counts, else
    Seurat on ``X``), PCA (``trajectory_n_pcs``), kNN graph (``trajectory_n_neighbors``), diffusion
    map (its first two components are the plotted embedding), Leiden clusters (``trajectory_resolution``; obs
    ``trajectory_cluster``).
Root (first that is set)
    ``trajectory_root_genes``: the cell with the highest score, the mean z-score of the root genes,
    averaged over each cell's kNN neighbourhood (absent genes are ignored with a warning; no gene
    present or none expressed in the subset is an input error). ``trajectory_root_type`` /
    ``trajectory_root_cluster``: among the cells of that type / cluster, the cell at the extreme of
    the diffusion component (of the first five) that best separates them from the rest of the subset
    (largest standardised mean difference), on their side. A type or cluster absent from the subset
    is an input error. None given: the extreme cell of the first diffusion component (warning).
Pseudotime
    scanpy diffusion pseudotime (Haghverdi et al. 2016) on ``trajectory_n_dcs`` diffusion components,
    obs ``pseudotime`` (cells unreachable from
    the root get NaN and are left out of the fate analysis).
Fates (CellRank 2, Weiler et al. 2024)
    Kernel ``w x PseudotimeKernel + (1 - w) x ConnectivityKernel`` (``trajectory_kernel_weight``,
    soft thresholding), GPCCA with ``trajectory_n_states`` macrostates (``seed`` fixed; when GPCCA
    cannot split at this number, e.g. a complex-conjugate Schur pair, the stage tries n + 1, then n - 1
    ... 2, and fails with an input error naming what it tried), terminal states by CellRank's
    stability criterion (or the ``trajectory_n_terminal`` highest-mass macrostates), absorption
    (fate) probabilities. Each fate is named after its label (below; e.g. ``metastasis_branch``,
    the macrostate appended when labels repeat): obs ``fate_probability_<fate>``, ``fate`` (most
    likely fate), ``terminal_state``.
Condition enrichment of a fate (samples as units)
    Per sample (>= 10 subset cells) the mean fate probability of its cells; for each fate and
    condition, the condition's samples against all other samples by a t-test on the per-sample means
    (paired by patient when every patient has samples on both sides), BH FDR over all
    fate x condition tests (:func:`condition_enrichment`). A fate's ``label`` is ``<condition>
    branch`` for the condition with the largest positive difference at FDR < 0.05 (e.g. "metastasis
    branch"), else ``shared``. Cells are not replicates: a cell-level test (used before) labels
    branches after conditions almost automatically. Without ``obs['sample']`` each condition is one
    sample and no fate can be labelled.
Genes along each fate
    Weighted Spearman correlation of each gene (log-normalised, expressed in >= 5% of the subset) with pseudotime,
    weights = the fate's probability; p-values from the t approximation with the Kish effective sample size, BH FDR
    per fate. What this ranking can claim: genes that change along the inferred pseudotime of a fate, in these
    cells. It is exploratory, not a test of a biological hypothesis: cells are not independent replicates (samples
    are), and pseudotime and fates were computed from the same genes' expression (double dipping), so p-values and
    FDRs are too small and serve to rank genes; validate in held-out samples or with sample-level designs. *Fate
    genes*: FDR < ``trajectory_fdr``, rho > 0 and rho at least 0.1 above the gene's rho in every other fate.
    Hallmark over-representation of the fate genes: hypergeometric test against the tested genes (bundled Hallmark
    GMT; mouse: the ortholog-mapped one), BH FDR per fate.

Branch-dependent genes (:mod:`tmeflow.trajectory.branch`; tradeSeq, Van den Berge et al. 2020)
    Per HVG (expressed in >= 5% of the subset), lineage smooths of log-normalised expression on
    pseudotime (natural cubic splines, ``trajectory_branch_knots`` knots at pseudotime quantiles, cells
    weighted by their fate probabilities), fitted per sample; association (start vs end of each
    lineage) and between-lineage (end-point and mean difference) summaries tested across samples with
    moderated t-tests (cells are not replicates), BH FDR. Branch genes (FDR < ``trajectory_fdr``) are
    clustered by k-means on their smooths (``trajectory_branch_clusters``) and each cluster is tested
    for over-representation in the Hallmark, regulated-cell-death and DAMPs sets; the root-to-fate
    heatmap shows them per fate (Monocle BEAM heatmap of the gastric study, Qiu et al. 2017), and the
    sets named in ``trajectory_trend_sets`` (default necroptosis and DAMPs) get pseudotime trends per fate.

Outputs: ``trajectory.h5ad`` (the subset), ``trajectory_cells.tsv``, ``trajectory_fates.tsv``,
``trajectory_fate_genes.tsv``, ``trajectory_fate_enrichment.tsv``, ``trajectory_embedding.png``,
``trajectory_trends.png``, ``trajectory_branch_genes.tsv``, ``trajectory_branch_clusters.tsv``,
``trajectory_branch_enrichment.tsv``, ``trajectory_set_trends.tsv``, ``trajectory_branch_heatmap.png``,
``trajectory_set_trends.png``, ``trajectory_summary.json``, ``trajectory_mqc.tsv``.
"""

from __future__ import annotations

from .branch import branch_analysis, branch_tests, cluster_genes, fit_smooths, spline_basis
from .fates import (
    FATE_FDR,
    MIN_CELLS_PER_SAMPLE,
    condition_enrichment,
    embed,
    fates,
    label_fates,
    pseudotime,
    regress_out_keys,
)
from .genes import CHUNK, MIN_EXPRESSED, SPECIFICITY, fate_genes, hallmark_enrichment, weighted_spearman
from .inputs import EPITHELIAL_PATTERN, choose_root, root_gene_score, root_in_group, subset_mask
from .plots import plot_branch_heatmap, plot_embedding, plot_set_trends, plot_trends
from .stage import cli, run_trajectory
