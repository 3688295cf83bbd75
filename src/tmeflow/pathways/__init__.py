"""Pathways and signature scores (``tmeflow pathways``).

Inputs: the atlas h5ad (raw counts in ``layers['counts']``, log1p CP10k in ``X``, ``obs`` ``sample``,
``condition``, ``cell_type``), the DE tables of ``tmeflow de`` (``--de``, optional), user GMT files
(``--signatures``, optional). Gene sets are human symbols; for a mouse atlas (``obs['species']`` or
``mt-`` genes) they are mapped with the bundled one-to-one orthologs
(:func:`tmeflow.signatures.map_gene_sets`; Hallmark uses its bundled mouse file).

Gene sets
    *Pathway collections* (GSEA, over-representation): bundled MSigDB Hallmark (50 sets) and the
    regulated-cell-death sets (``resources/cell_death``). *Signatures* (ssGSEA, module scores): the
    bundled TME signatures ``resources/signatures/tme_signatures.gmt`` (necroptosis, EMT, DAMPs,
    naive / cytotoxic / exhausted T, M1 / M2, pro- / anti-inflammatory, 12-chemokine TLS, ESTIMATE
    immune / stromal; see its SOURCE.md) plus every set of the user's GMT files. A user GMT none of
    whose sets has a gene in the atlas is an input error (exit 2).

Per DE table, contrast and cell type
    * GSEA preranked (Subramanian et al. 2005, PNAS 102:15545) with ``gseapy.prerank`` on the DE
      ``stat`` column (Wald statistic for pseudobulk, Wilcoxon z for wilcoxon), ``gsea_permutations``
      gene-set permutations seeded with ``seed``, sets of ``gsea_min_size``-``gsea_max_size`` genes;
      offline (gene sets passed as a dict). ``rank`` orders sets by nominal p-value, then by
      decreasing |NES|.
    * Over-representation: hypergeometric test (one-sided, ``scipy.stats.hypergeom``) of the up genes
      (``padj < ora_fdr``, ``log2fc > ora_lfc``) and of the down genes, universe = genes tested in
      that table, BH FDR over sets per list.

Per sample
    * ssGSEA (GSVA's ``method="ssgsea"`` definition, :func:`tmeflow.signatures.ssgsea`, normalised
      over the scored matrix) of the signatures on pseudobulk profiles, log2(CPM + 1) of raw counts
      summed per sample (all cells) and per sample x cell type (groups of at least
      ``MIN_PSEUDOBULK_CELLS`` cells); columns ``ssgsea_<SET>``.

Per cell
    * Module scores: :func:`scanpy.tl.score_genes` (Seurat ``AddModuleScore``; Tirosh et al. 2016,
      Science 352:189) on ``X`` with ``score_ctrl_size`` control genes from 25 expression bins, seeded;
      ``obs['score_<SET>']``.
    * Stemness: original CytoTRACE (Gulati et al. 2020, Science 367:405; :mod:`tmeflow.stemness`):
      the gene counts signature (the 200 genes most correlated with the number of detected genes)
      smoothed on the kNN graph and ranked to (0, 1] (``obs['score_cytotrace']``, 1 = least
      differentiated; ``n_genes_detected``, ``gene_counts_signature`` beside it). Compared between
      conditions with samples as units: per sample and cell type (>= ``MIN_PSEUDOBULK_CELLS`` cells)
      the mean score, a moderated test per cell type and contrast (``contrast``; paired by patient
      when possible), BH FDR (``stemness_samples.tsv``, ``stemness_tests.tsv``,
      ``stemness_by_condition.png``). CytoTRACE 2 is not used (non-commercial licence; see
      :mod:`tmeflow.stemness`).
    * PROGENy pathway activities (Schubert et al. 2018, Nat Commun 9:20) with decoupler
      (Badia-i-Mompel et al. 2022) ``ulm`` or ``mlm`` (``progeny_method``) and the bundled weights
      (``progeny_top`` 100 or 500 genes per pathway, ``resources/progeny``);
      ``obs['progeny_<Pathway>']``.

Set names become column names after replacing characters other than letters, digits and ``_`` by
``_``; the same names are used in ``obs`` and in every table.

Outputs: ``gsea_<contrast>.tsv``, ``ora_<contrast>.tsv``, ``gsea_<contrast>_bubble.png``,
``gsea_<contrast>_enrichment.png`` (running score of the top set per cell type), ``ssgsea_samples.tsv``,
``ssgsea_cell_types.tsv``, ``ssgsea_by_condition_heatmap.png``, ``ssgsea_cell_types_heatmap.png``,
``cell_scores.tsv.gz`` (per cell: sample, condition, cell_type, ``score_*``, ``progeny_*``),
``scores_by_cell_type.tsv`` (means per cell type x condition), ``module_scores_bubble.png``,
``pathways.h5ad`` (the atlas's cells with the scores in ``obs``, ``obsm`` and ``uns``; zero genes wide),
``stemness_samples.tsv``, ``stemness_tests.tsv``,
``stemness_by_condition.png``.

Package layout: :mod:`.gene_sets` (collections, signatures, column names), :mod:`.enrichment` (DE tables, GSEA,
over-representation), :mod:`.scores` (pseudobulk, module scores, PROGENy), :mod:`.plots`, :mod:`.run`
(``run_pathways``, ``cli``); every name is importable from ``tmeflow.pathways``.
"""

from __future__ import annotations

from .enrichment import gsea_prerank, over_representation, read_de_tables
from .gene_sets import (
    CELL_DEATH,
    GSEA_COLUMNS,
    HALLMARK,
    MIN_PSEUDOBULK_CELLS,
    MIN_SIGNATURE_GENES,
    ORA_COLUMNS,
    PROGENY,
    STEMNESS,
    TME_SIGNATURES,
    column_name,
    pathway_collection,
    signature_sets,
)
from .plots import plot_bubbles, plot_enrichment, plot_heatmap
from .run import GSEA_TABLE_COLUMNS, TOP_SETS_IN_REPORT, PathwaysSettings, cli, run_pathways, write_gsea_table
from .scores import log_cpm, module_scores, progeny_activities, pseudobulk_profiles

__all__ = [
    "CELL_DEATH",
    "GSEA_COLUMNS",
    "GSEA_TABLE_COLUMNS",
    "HALLMARK",
    "MIN_PSEUDOBULK_CELLS",
    "MIN_SIGNATURE_GENES",
    "ORA_COLUMNS",
    "PROGENY",
    "STEMNESS",
    "TME_SIGNATURES",
    "TOP_SETS_IN_REPORT",
    "PathwaysSettings",
    "cli",
    "column_name",
    "gsea_prerank",
    "log_cpm",
    "module_scores",
    "over_representation",
    "pathway_collection",
    "plot_bubbles",
    "plot_enrichment",
    "plot_heatmap",
    "progeny_activities",
    "pseudobulk_profiles",
    "read_de_tables",
    "run_pathways",
    "signature_sets",
    "write_gsea_table",
]
