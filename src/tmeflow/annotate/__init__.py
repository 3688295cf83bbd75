"""Cluster markers and automated major cell-type annotation.

Method (sc-best-practices.org "Annotation"; Heumos et al. 2023 Nat Rev Genet):

1. **Cluster markers**: Wilcoxon rank-sum tests of each cluster (``annotation_cluster_key``, default
   the ``leiden`` clusters of ``tmeflow integrate``) against all other cells on the log-normalised
   ``X`` (:func:`scanpy.tl.rank_genes_groups`, Benjamini-Hochberg), on at most 1,000 cells per
   cluster (seeded) so large cohorts stay fast; the top ``n_marker_genes`` per cluster are written
   with log2 fold changes and detection rates, and the top 3 per cluster are drawn as a dotplot.
2. **Major cell types from canonical markers**: the bundled tables
   ``resources/markers/major_<species>.tsv`` (T, NK, B, plasma, monocyte/macrophage, DC,
   neutrophil, mast, epithelial, fibroblast, endothelial, smooth muscle/pericyte, hepatocyte,
   cholangiocyte, erythroid, with sources in ``SOURCE.md``) or a user ``markers`` table. Every cell
   is scored for every type by a univariate linear model (decoupler ``ulm``; Badia-i-Mompel et al.
   2022, Bioinform Adv): the t-value of the slope of the cell's expression over all genes regressed
   on marker membership. The scores are averaged per cluster; the cluster gets the best type, with
   ``annotation_confidence`` = the margin between the best and the second-best cluster mean. A
   cluster whose best score is below ``annotation_min_score`` or whose margin is below
   ``annotation_min_margin`` is ``Unknown``. The ``proliferating`` genes are not a type: a cell with
   a proliferation ULM score above 3 is flagged in ``obs['proliferating']``.
3. **CellTypist** (optional; Domínguez Conde et al. 2022, Science): with a user-supplied model
   file (never downloaded), logistic-regression labels with majority voting over the clusters are
   added as ``obs['celltypist_label']`` / ``celltypist_majority`` / ``celltypist_conf``, next to the
   marker-based call (which stays ``cell_type``).
4. **Overrides**: a table ``cluster -> cell_type`` (optional ``compartment``) replaces the calls of
   the clusters it names.

Writes ``obs['cell_type']``, ``obs['compartment']`` (T/NK, B/plasma, myeloid, neutrophil, mast,
epithelial, fibroblast, endothelial, perivascular, hepatocyte, erythroid, unknown),
``obs['annotation_confidence']``; outputs ``annotated.h5ad``, ``annotation_markers.tsv``,
``annotation_clusters_mqc.tsv``, ``annotation_scores.tsv``, ``annotation_dotplot_mqc.png``,
``annotation_umap_mqc.png``.

Memory: the atlas' matrices stay on disk. The scores are computed in row blocks of ``X``, the markers and
the dot plot on their subsample, and ``annotated.h5ad`` is a copy of the input file with the new ``obs``
(:func:`tmeflow.io.h5ad_on_disk`, :func:`tmeflow.io.write_h5ad_copy`): the stage holds the cell table,
not the cells x genes matrices.
"""

from __future__ import annotations

from .calls import call_clusters, read_overrides, run_celltypist, score_column, ulm_scores
from .markers import (
    FLAG_TYPES,
    MAX_CELLS_PER_CLUSTER_FOR_MARKERS,
    MIN_GENES_PER_TYPE,
    PROLIFERATING_SCORE,
    UNKNOWN,
    bundled_markers,
    find_markers,
    marker_cells,
    marker_network,
    read_marker_table,
)
from .stage import (
    LABEL_METRICS_MAX_CELLS,
    AnnotationSettings,
    annotate,
    cli,
    label_conservation,
    plot_dotplot,
    run_annotate,
    write_outputs,
)

__all__ = [
    "FLAG_TYPES",
    "LABEL_METRICS_MAX_CELLS",
    "MAX_CELLS_PER_CLUSTER_FOR_MARKERS",
    "MIN_GENES_PER_TYPE",
    "PROLIFERATING_SCORE",
    "UNKNOWN",
    "AnnotationSettings",
    "annotate",
    "bundled_markers",
    "call_clusters",
    "cli",
    "find_markers",
    "label_conservation",
    "marker_cells",
    "marker_network",
    "plot_dotplot",
    "read_marker_table",
    "read_overrides",
    "run_annotate",
    "run_celltypist",
    "score_column",
    "ulm_scores",
    "write_outputs",
]
