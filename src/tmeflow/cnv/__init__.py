"""Malignant cells: copy-number inference from expression, CNV score and malignant calls.

Method
------
1. **Gene order.** Genes are placed on the genome with the bundled position tables
   (``resources/gene_positions``: GRCh38 for human, mm10 for mouse, from XClone 0.4.0) or a user
   table (``--gene_positions``: gene, chromosome, start, end, optional arm; header optional).
   Chromosome arms come from the table's ``chr_arm``/``arm`` column, else from the bundled table of
   the species by gene symbol (arm membership does not change between genome builds), else from the
   nearest gene with a known arm on the same chromosome. ``cnv_exclude_chromosomes`` (default X, Y)
   are left out, and so are genes detected (count > 0) in fewer than ``cnv_min_gene_fraction`` of
   the cells (their log fold changes are mostly sampling noise; inferCNV filters on mean counts for
   the same reason). Fewer than ``MIN_POSITIONED_GENES`` (1,000) positioned genes, before or after
   that filter, is an input error.
2. **Reference.** Cells whose ``cell_type`` is one of ``cnv_reference_types`` (default T, NK, B;
   case-insensitive) are the normal reference, together with the candidate-like cells (step 6) of samples whose
   ``condition`` is in ``cnv_normal_conditions`` (default ``normal``): normal epithelium is the best reference for
   epithelial cells, because expression differences between cell types (clustered marker genes, cell-type-wide
   programmes) otherwise look like CNVs. A patient with at least ``cnv_min_reference_cells`` reference cells is inferred
   against its own reference cells; the other patients together against the reference cells of the whole cohort. The
   choice is logged and written to ``cnv_reference.tsv``. When the group holds at least ``cnv_min_reference_cells``
   normal-tissue reference cells, they alone define the reference expression (mixing very different cell types in
   infercnvpy's "bounded" difference flattens real CNVs); otherwise the reference cell types do. The reference
   expression is the mean log-normalised profile of each reference cell type with at least
   ``MIN_CELLS_PER_REFERENCE_TYPE`` (5) cells (infercnvpy's "bounded" difference between several references; the pooled
   mean when no type has 5 cells).
3. **CNV inference** with :func:`infercnvpy.tl.infercnv` on log1p(CP10k) in ``X``: log fold change
   against the reference, clipped at +/- ``cnv_lfc_clip`` (default 1.0; infercnvpy's own default is 3),
   pyramid-weighted running mean of ``cnv_window`` genes every ``cnv_step`` genes per chromosome,
   per-cell median centring. **Calibration** (:func:`infer_cnv`): the reference cells of each group
   are split at random (seeded, within cell types) into a half that builds the baseline and a
   held-out half that is scored against it exactly like the candidates and is the null of step 6;
   the baseline half is scored against the held-out half (no cell is compared with a mean it belongs
   to). With an obs ``sample`` column, each sample's shared offset, estimated from its cells of the
   reference cell types (T, NK, B) and shrunk James-Stein-wise (:func:`sample_offsets`), is
   subtracted: a batch effect between the normal and the tumour samples otherwise reads as a CNV of
   every tumour-sample cell. Values within 1.5 SD of the held-out cells' values are set to 0
   (inferCNV's ``sd_amplifier``; infercnvpy took the SD of each chunk of cells, so a cell's profile
   depended on its chunk).
4. **CNV score** per cell: mean absolute CNV signal over all windows (infercnvpy's ``cnv_score``,
   computed per cell instead of per cluster), averaged over the cell and its CNV neighbours
   (``obs['cnv_score']``; the unsmoothed value is ``cnv_score_cell``). **CNV correlation**
   (``obs['cnv_correlation']``, :func:`neighbourhood_correlation`): Pearson correlation of the mean
   CNV profile of the cell and its CNV neighbours with the patient's candidate mean minus the
   held-out mean, both without that neighbourhood (in a tumour, mostly the clonal CNVs of its
   malignant cells). On 10x data the correlation separates malignant from normal epithelial cells
   far better than the score.
5. **CNV clusters** (``obs['cnv_cluster']``, ``<patient>:<n>``), within each patient (malignant
   clones are patient-specific; this also keeps the neighbour search small):
   :func:`infercnvpy.tl.pca` (``N_PCS`` 30), :func:`infercnvpy.pp.neighbors` (15 neighbours,
   Gaussian-kernel connectivities: the UMAP kernel's numba code compiles for ~40 s in every new
   process; exact scikit-learn neighbours up to 30,000 cells per patient) and
   :func:`infercnvpy.tl.leiden` (``cnv_leiden_resolution``).
6. **Malignant calls.** Candidates are cells whose ``compartment`` is in
   ``cnv_candidate_compartments`` (default epithelial) or whose ``cell_type`` is in ``cnv_candidate_types``; reference
   cells are never candidates. A cell is *CNV-high* (:func:`cnv_high`) when its CNV correlation is above the conformal
   ``cnv_score_quantile`` (0.95) quantile of the held-out reference cells' correlations and its CNV score above their
   median. Normal-only simulated cohorts (malignant cells removed, 40 seeds) give 2.7% CNV-high and 0.7% malignant
   normal epithelial cells (before: 9.0% and 6.6%; CHANGELOG). Calibration needs normal cells of the candidates' type in
   the reference (``cnv_normal_conditions``): against immune cells only, the candidates' own expression programme
   (epithelial genes) reads as a CNV of every candidate. Without such cells, that programme is taken to be what the
   candidates of at least 3 patients share: per candidate cell type, the window-wise median across patients of each
   patient's mean CNV row is subtracted from the candidates' rows (:func:`tmeflow.cnv.infer.candidate_programme`;
   carcinoma CNVs are patient-specific, so a change present in fewer than half of the patients survives, while one
   recurrent in most patients is weakened). Simulated normal-only cohorts (3 patients, 10 seeds) with the immune-only
   reference: 4.3% of normal epithelial cells CNV-high and 0.3% malignant (46% and 46% without the consensus); simulated
   tumour cohorts (4 seeds): malignant F1 0.89 (0.90), recall 0.82 (0.93), normal epithelium called malignant 3.7%
   (23%). A normal-tissue reference remains better (F1 >= 0.9 in tests/test_cnv.py). A CNV cluster is malignant when at
   least ``cnv_cluster_min_fraction`` (0.5) of its candidate cells are CNV-high and at most
   ``cnv_cluster_max_reference`` (0.25) of its cells are reference cells. ``obs['malignant']`` is True for the candidate
   cells of malignant clusters, and for the CNV-high candidate cells of clusters that fail only the reference rule
   (small tumours whose few cells share a cluster with reference cells). ``cell_type`` of candidate cells becomes
   ``"Malignant"`` when malignant and ``"Epithelial (normal)"`` when not malignant and epithelial-like (cell type or
   compartment containing "epithel"); the previous label is kept in ``obs['cell_type_pre_cnv']``.
7. **Arm summary** (``cnv_arms.tsv``): mean CNV signal per chromosome arm (windows assigned to the
   arm of their central gene) over the malignant cells of each patient (``cnv_cluster`` = ``all``)
   and of each patient x CNV cluster; ``gain`` when the mean is above ``cnv_arm_threshold``,
   ``loss`` when below minus it, else ``neutral``.

Known trap: ``infercnvpy.pp.neighbors`` (scanpy's neighbours) fails with
``'csr_array' object has no attribute 'getnnz'`` when pynndescent >= 0.7 is used (from 8,192 cells
on). tmeflow pins ``pynndescent==0.5.13`` / ``scipy==1.16.3``; if a known-bad version is installed
anyway, :func:`neighbour_transformer` switches to scikit-learn's exact neighbours with a warning.

Package layout: :mod:`.positions`, :mod:`.reference` (reference/candidate cells, dependency trap),
:mod:`.infer` (calibrated inference), :mod:`.clusters` (CNV clusters, window arms, arm
summary), :mod:`.call` (scores, CNV-high cells, the malignant call), :mod:`.plots`, :mod:`.run` (``run_cnv``,
``cli``); every name is importable from ``tmeflow.cnv``.
"""

from __future__ import annotations

from ..errors import TmeflowInputError  # noqa: F401  (tmeflow.cnv.TmeflowInputError, as before the split)
from .call import (  # noqa: F401
    CnvResult,
    _relabel,
    _summary,
    call_malignant,
    cnv_high,
    neighbourhood_correlation,
)
from .clusters import (  # noqa: F401
    EXACT_NEIGHBOURS_MAX_CELLS,
    _arm_key,
    _cluster_key,
    arm_summary,
    cluster_cnv,
    smooth_over_neighbours,
    window_arms,
)
from .infer import (  # noqa: F401
    MIN_NULL_CELLS,
    NOISE_SD_AMPLIFIER,
    ReferenceNull,
    candidate_programme,
    chunk_cells,
    infer_cnv,
    sample_offsets,
    split_reference,
)
from .plots import (  # noqa: F401
    VIOLIN_MAX_CELLS,
    arms_heatmap,
    plot_heatmap,
    plot_violin,
)
from .positions import (  # noqa: F401
    _CHROM_COLUMNS,
    _GENE_COLUMNS,
    BUNDLED_POSITIONS,
    HEATMAP_MAX_CELLS,
    MALIGNANT_LABEL,
    MIN_CELLS_PER_REFERENCE_TYPE,
    MIN_POSITIONED_GENES,
    N_PCS,
    NORMAL_EPITHELIAL_LABEL,
    REQUIRED_OBS,
    SCORE_NEIGHBOURS,
    _arms_from_bundled,
    _chrom,
    annotate_positions,
    bundled_positions,
    read_gene_positions,
)
from .reference import (  # noqa: F401
    _candidate_like,
    _in_list,
    _version_tuple,
    candidate_mask,
    dependency_problem,
    neighbour_transformer,
    normal_tissue_mask,
    reference_mask,
    reference_plan,
    reference_profiles,
)
from .run import (  # noqa: F401
    check_inputs,
    cli,
    prepare,
    run_cnv,
    write_outputs,
)
from .settings import CnvSettings, excluded_chromosomes  # noqa: F401
