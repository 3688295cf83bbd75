"""``tmeflow simulate``: a synthetic cancer cohort with planted ground truth.

Every later test and benchmark runs on this cohort, so everything that is planted is written down in
``truth.json`` (and per cell / spot / bulk sample in truth tables).

Generative model
----------------
Genes
    Real symbols from the bundled gene-position table of the species (``--n_genes`` of them, default
    4,000): every marker / programme gene below, the Hallmark hypoxia genes, ribosomal RPL/RPS genes,
    haemoglobin genes, plus an equal share of random genes per chromosome arm (capped by what the arm
    has), so that arm-level copy-number changes span many genes. The 13 mitochondrial genes (not in
    the table) are added on chromosome ``MT``. Mouse uses the bundled one-to-one orthologs of the
    human markers (with a few well-known mouse names where no one-to-one ortholog exists).
    ``--n_genes`` must leave room for the programme genes, 20 genes per arm and five autosomal arms of
    40 genes for the planted CNVs (1,322 for human, 975 for mouse); a smaller value is a one-line error.
Expression profiles
    A baseline profile is drawn once (gamma, shape 0.3: heavy-tailed). Each cell type multiplies it by
    a log-normal type-specific factor; its marker genes sit at the 95-99.9th percentile of the
    baseline in that type and at the 10-40th elsewhere; malignant cells start from the epithelial
    profile. Mitochondrial genes hold 5% and ribosomal genes 15% of every profile.
Cells
    ``mean = library size x profile(cell type) x batch factor x planted effects``; counts are
    negative-binomial (gamma-Poisson) with gene-wise dispersion 0.2-0.5. Library sizes are
    log-normal around 2,500 UMI with a per-sample shift; batches multiply genes by log-normal
    factors (``--batch_effect`` is their log-scale SD).
Planted effects (all recorded in ``truth.json``)
    * CNV: each patient has 3-5 autosomal arm-level events (gain x1.5 / loss x0.5 on every gene of
      the arm), in that patient's malignant cells only.
    * Trajectory (malignant cells): ``true_pseudotime`` ~ U(0, 1); an early programme decreases with
      pseudotime; after the branch point (0.3) cells follow fate A or B, each raising its own genes.
      Fate A makes 75% of branched metastasis cells and 25% elsewhere.
    * Ligand-receptor: MDK x4 in malignant cells and NCL x4 in fibroblasts of metastasis samples.
    * Differential abundance: neutrophils x3 in metastasis.
    * Neutrophil states (mouse only, the liver-metastasis study's shape): each neutrophil has a
      ``true_maturation`` ~ U(0, 1); immature genes (Camp, Ltf, Lcn2, Ngp... plus 40 random genes)
      fall and mature genes (Sell, Mme plus 40) rise 8-fold along it; from maturation 0.6 a cell turns
      PROK2-high (Prok2, Mmp25 plus 40; mature genes off) with probability 0.9 in metastasis and 0.3 elsewhere.
      ``true_state`` names the state (immature below 0.4, mature, PROK2-high); drawn from streams of
      their own, so nothing else changes.
    * Differential expression: ~30 genes in myeloid cells, metastasis vs other tumour samples,
      log2FC +1 / -1; Hallmark hypoxia genes x1.5 in metastasis malignant cells.
    * QC: ``--low_quality_rate`` cells with 200-400 UMI and 30-60% mitochondrial reads;
      ``--doublet_rate`` heterotypic doublets (two cells' means summed and thinned to 75-100%).
Spatial
    A Visium-like hexagonal (or square) grid; one or two tumour blobs, an interface ring 1-2 spots
    wide, stroma elsewhere. A spot mixes 5-15 cells drawn from region-specific proportions; in
    interface spots MDK (malignant cells) and NCL (fibroblasts) are raised further. Each section is
    a Space Ranger-like ``outs/`` folder (``filtered_feature_bc_matrix/`` and ``.h5``,
    ``spatial/tissue_positions.csv``, ``scalefactors_json.json``, rendered tissue images).
Bulk
    TPM from per-sample random mixtures of the cell-type profiles; the fate-A genes form a signature
    whose z-scored score (mean log2(TPM+1) over the signature, z across samples) sets an exponential
    hazard ``exp(beta * z)``; exponential censoring (~35%). With ``--bulk_cancer_types K`` the cohort is
    pan-cancer: a ``cancer_type`` column (``TYPE1``..``TYPEK``, dealt round-robin) and the score-survival effect
    only in the first ``--bulk_planted_types`` types (hazard ``exp(0 * z)`` in the others), and a MAF
    (``bulk/mutations.maf``) whose non-synonymous counts rise with z in the planted types only (score-TMB
    correlation), an MSI table (``bulk/msi.tsv``, rising with z in the planted types) and GISTIC-style thresholded
    copy number of the signature genes (``bulk/cnv_thresholded.tsv``; the 7th gene's expression follows its copy
    number, the others are independent). ``--bulk_normals N`` adds N normal samples per type (``NORMAL0001``...,
    clinical column ``sample_type``, no survival) drawn from the same mixture model with the first 6 fate-A genes
    shifted by log2 fold change +-1 (tumour / normal; listed in truth.json), every other gene null.
Validation cohort (``--n_bulk_validation N``, default none)
    A second bulk row (``bulk_validation``) drawn like the first, with the same survival model.
Immunotherapy cohort (``--n_immunotherapy N``, default none)
    A second bulk row (``immunotherapy``): N samples drawn like the bulk cohort, a clinical table with best
    response (CR/PR/SD/PD; P(CR/PR) = logistic(-0.5 + ``--immunotherapy_log_or`` x z)) and OS/PFS whose
    hazards fall as exp(-0.6 x log_or x z) (PFS <= OS).
Drug screen (``--n_cell_lines N``, default none)
    N cell lines drawn like bulk samples (``drugs/cell_line_expression.tsv``, log2(TPM+1)) and a long
    GDSC-like table (``drugs/drug_response.tsv``: ``CELL_LINE_NAME``, ``DRUG_NAME``, ``LN_IC50``) of
    ``--n_drugs`` drugs: ln IC50 = 2 + N(0, 1) - 0.8 z for the first ``--planted_drugs`` (z: the line's
    signature score), without the z term for the others.

All randomness comes from one ``numpy`` Generator seeded with ``--seed`` (split with ``spawn`` into model /
single-cell / spatial / bulk / drug-screen / immunotherapy / validation-cohort streams). Cells are generated one
sample at a time, in blocks of at most ``BLOCK_ELEMENTS`` dense means, turned into CSR at once and appended to the
sample's h5ad, so memory does not grow with the number of cells.

Truth lives in ``truth.json`` (cohort-level), ``truth_cells.tsv.gz`` and the ``true_*`` obs columns
(per cell), ``spatial/<section>/truth_spots.tsv`` (per spot) and ``bulk/true_proportions.tsv``.

Package layout: :mod:`.settings` (constants, ``SimConfig``), :mod:`.genes`, :mod:`.model`,
:mod:`.singlecell` (samples and 10x/h5ad writers), :mod:`.spatial`, :mod:`.cohort` (bulk), :mod:`.run`
(``run_simulate``, ``cli``); every name is importable from ``tmeflow.simulate``.
"""

from __future__ import annotations

from .cohort import (  # noqa: F401
    _bulk_expression,
    _survival,
    cancer_type_labels,
    cnv_gene,
    drug_names,
    immunotherapy_clinical,
    normal_de_genes,
    planted_types,
    sample_beta,
    signature_score,
    simulate_bulk,
    simulate_cell_lines,
    simulate_cnv,
    simulate_immunotherapy,
    simulate_maf,
    simulate_msi,
    simulate_normals,
    simulate_validation_cohort,
    write_cell_lines,
)
from .genes import (  # noqa: F401
    Genes,
    _allocate_per_arm,
    _cnv_arms,
    _marker_table_genes,
    _read_gmt_set,
    _resource_table,
    _species_symbol,
    build_genes,
)
from .model import (  # noqa: F401
    Model,
    _base_profiles,
    _cnv_factor,
    _draw_cnv_events,
    _draw_patient,
    _draw_programmes,
    _make_low_quality,
    _pick_programme_genes,
    _quantile_values,
    _scale_columns,
    _trajectory_factor,
    build_model,
    cell_means,
    draw_counts,
)
from .run import (  # noqa: F401
    SAMPLESHEET_COLUMNS,
    _samplesheet,
    _truth,
    cli,
    config_from_args,
    run_simulate,
)
from .settings import (  # noqa: F401
    BASELINE_SHAPE,
    BLOCK_ELEMENTS,
    BRANCH_POINT,
    BULK_CENSORING_RATIO,
    BULK_MEDIAN_SURVIVAL_DAYS,
    BULK_NOISE_SD,
    BULK_PLATFORM_SD,
    BULK_SIGNATURE_LOG2FC,
    CELL_TYPES,
    CNV_EVENTS_RANGE,
    CNV_GAIN,
    CNV_LOSS,
    COMPARTMENT,
    COMPOSITION,
    COMPOSITION_CONCENTRATION,
    DA_CELL_TYPE,
    DA_FOLD,
    DE_CELL_TYPE,
    DE_LOG2FC,
    DE_N_GENES,
    DISPERSION_RANGE,
    DOUBLET_THINNING,
    FATE_A_PROB,
    HAEMOGLOBIN,
    HB_WEIGHT,
    HELDOUT_STREAM,
    HUMAN_MITO,
    INTERFACE_LR_FOLD,
    LIBRARY_FACTOR,
    LIBRARY_MEDIAN,
    LIBRARY_SD,
    LOW_QUALITY_MITO,
    LOW_QUALITY_UMI,
    LR_FOLD,
    LR_LIGAND,
    LR_RECEPTOR,
    LR_SOURCE,
    LR_TARGET,
    MALIGNANT,
    MALIGNANT_NOISE_SD,
    MARKER_OFF_QUANTILES,
    MARKER_QUANTILES,
    MARKERS,
    METASTASIS,
    MIN_CNV_ARM_GENES,
    MITO_FRACTION,
    MOUSE_MITO,
    MOUSE_NAMES,
    NORMAL,
    PATHWAY,
    PATHWAY_FOLD,
    PATIENT_NOISE_SD,
    PLATFORM_STREAM,
    PROGRAMME_QUANTILES,
    PX_PER_UM,
    REGION_COLOUR,
    REGION_COMPOSITION,
    REGIONS,
    RIBO_FRACTION,
    RIBO_PATTERN,
    SAMPLE_SHIFT_SD,
    SC_FORMATS,
    SCALEFACTORS,
    SPOT_CELLS,
    SPOT_SPACING_UM,
    TISSUE,
    TRAJECTORY_LOG2FC,
    TRAJECTORY_N_GENES,
    TRUTH_CELL_COLUMNS,
    TYPE_NOISE_SD,
    SimConfig,
    _tumour_conditions,
)
from .singlecell import (  # noqa: F401
    SampleCounts,
    _barcodes,
    _composition,
    _draw_cells,
    _draw_qc,
    _genome,
    _mtx_chunks,
    _partner_cells,
    _sample_block,
    _write_gz_lines,
    _write_sc_sample,
    plan_samples,
    simulate_sample,
    write_10x_h5,
    write_10x_mtx,
    write_h5ad_streamed,
)
from .spatial import (  # noqa: F401
    _lowres_image,
    _regions,
    _sections,
    _spot_cells,
    _spot_means,
    _write_image,
    add_heldout_patients,
    simulate_section,
    spatial_platform,
    spot_grid,
)
