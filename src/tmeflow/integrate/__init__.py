"""Integrate the cohort: from the QC'd samples to a batch-corrected, clustered atlas.

Cohort integration: concatenate the QC'd samples, normalise, select genes, PCA, batch correction,
neighbours, Leiden clusters, UMAP, and integration-quality metrics before and after correction.

Method (sc-best-practices.org, Heumos et al. 2023 Nat Rev Genet: "Normalization", "Feature
selection", "Dimensionality reduction", "Data integration", "Clustering"):

1. **Concatenation** (fan-in of ``<sample>.qc.h5ad``): the gene sets are checked first from the
   files' metadata alone; samples sharing fewer than ``min_shared_genes`` genes fail with one line
   naming them. Each sample's raw counts (``layers['counts']``) on the shared genes are then appended
   to the output h5ad, one sample in memory at a time.
2. **Normalisation**: counts per 10,000 and ``log1p`` (row-wise, so computed in row blocks of
   ``BLOCK_CELLS`` cells); the output keeps the counts in ``layers['counts']`` and the log-normalised
   matrix in ``X``, written block by block at the end.
3. **Highly variable genes**: ``seurat_v3`` on the counts (Stuart et al. 2019), batch-aware
   (``batch_key``), ``n_top_genes`` (default 3,000); scanpy's method, computed in two passes over
   row blocks (:func:`seurat_v3`).
4. **PCA** (``pca_comps`` = 50 components; ``n_pcs`` = 30 used downstream) on the HVGs of the
   log-normalised matrix, **without densifying it**: the gene-wise centring (and, with
   ``regress_mito``, the least-squares removal of % mitochondrial counts per gene) and the scaling to
   unit variance are applied implicitly inside a randomised SVD (Halko et al. 2011; 7 power
   iterations, seeded), so memory stays at the sparse matrix plus cells x 60 dense blocks. This
   equals PCA of the centred, regressed and scaled matrix, except that values are not clipped at 10
   as ``sc.pp.scale(max_value=10)`` would (the dense route costs ~8 bytes x cells x genes).
5. **Batch correction** ``batch_correction``:

   * ``harmony`` (default): Harmony (Korsunsky et al. 2019, Nat Methods) by
     :func:`harmonypy.run_harmony` on the first ``n_pcs`` PCs with ``batch_key`` (``batch``,
     ``sample``, ``patient``...) -> ``obsm['X_pca_harmony']``;
   * ``scvi``: scVI (Lopez et al. 2018, Nat Methods; scvi-tools) on the HVG counts with the batch
     as covariate, ``scvi_n_latent`` dimensions, ``scvi_max_epochs`` epochs, on the GPU when
     :func:`torch.cuda.is_available` (else on the CPU, with a warning) -> ``obsm['X_scVI']``;
   * ``none``: the PCs are used as they are.

   A cohort with a single batch (e.g. one sample) is not corrected (warning).
6. **Graph, clusters, embedding**: kNN graph (``n_neighbors`` 15) on the corrected embedding,
   Leiden (Traag et al. 2019, Sci Rep; ``leiden_resolution``, igraph, seeded) -> ``obs['leiden']``,
   UMAP -> ``obsm['X_umap']``. The uncorrected PCs get their own graph and UMAP
   (``obsm['X_umap_uncorrected']``) for the before/after figures, on at most ``metrics_max_cells``
   cells (a seeded subsample; NaN for the other cells), since it only feeds the figure.
7. **Metrics** (:mod:`tmeflow.metrics`, scIB definitions, Luecken et al. 2022): kBET acceptance,
   iLISI, batch ASW and graph connectivity by ``sample`` and by ``batch``, plus cLISI and label ASW
   when labels exist (``metrics_label_key``, else ``cell_type`` when present), on the uncorrected and
   the corrected embedding -> ``integration_metrics_mqc.tsv``.

**Memory**: the cohort's counts (8 bytes per non-zero: ~16 GB for 1M cells with 2,000 genes
detected each) are never held in memory: they are read from the output file in row blocks of
``BLOCK_CELLS`` cells, twice for the HVGs and once for the HVGs' log-normalised matrix; every later
step works on the HVGs only (~1/3 of the non-zeros) and the log-normalised matrix of all genes is
written block by block (``benchmarks/million_cells.py``).

Outputs: ``integrated.h5ad``, ``integration_metrics_mqc.tsv``, ``integration_clusters.tsv`` (cells
per cluster and sample), ``integration_umap_uncorrected_mqc.png``, ``integration_umap_corrected_mqc.png``.
"""

from __future__ import annotations

from .correction import correct, harmony, scvi_latent
from .graph import graph_and_umap, leiden, uncorrected_umap
from .inputs import check_inputs, concatenate, inspect_inputs, shared_genes
from .preprocess import hvg_table, lognormalise, normalise, pca, row_blocks, select_hvgs, seurat_v3, sparse_pca
from .quality import label_key, metrics_table, plot_umaps
from .settings import BLOCK_CELLS, METRIC_COLUMNS, PLOT_KEYS, REPRESENTATION, TARGET_SUM, IntegrationSettings
from .stage import (
    Integration,
    cli,
    integrate,
    run_integrate,
    write_integrated,
    write_outputs,
)
