"""Bulk cohort validation (``tmeflow bulk``): signature scores, survival, immune context and deconvolution.

Signature scores, cut-points, Kaplan-Meier, Cox, logistic regression, ESTIMATE immune context and deconvolution
with the single-cell reference.

Inputs
    * expression matrix: genes x samples (a samples x genes matrix is transposed when its *rows*, not
      its columns, match the clinical sample identifiers), CSV/TSV (optionally gzipped), first column
      the gene identifier. Values are declared by ``bulk_values``: ``tpm`` or ``counts`` (counts are
      first scaled to counts per million) become ``log2(x + 1)``; ``log`` values are used as given
      (linear scale for deconvolution: ``2^x - 1``).
    * clinical table: one row per sample; the sample identifier is the column ``sample`` or
      ``sample_id`` if present, otherwise the first column.

Identifiers (``bulk_id_type``; ``auto`` = ``probe`` when ``--probe_annotation`` is given, ``ensembl``
when most identifiers look like ``ENS...G`` IDs, else ``symbol``): probes are mapped with the
annotation table (probe column: ``probe``/``probe_id``/``id`` or the first column; symbol column:
``symbol``/``gene_symbol``/``hugo.gene.symbol``/``ncbi.gene.symbol``/``gene`` or the first column whose
name contains "symbol"); Ensembl IDs are mapped with the bundled one-to-one ortholog table (version
suffixes ignored). Several rows for the same symbol are collapsed by keeping the row with the highest
mean expression (WGCNA ``collapseRows`` "MaxMean"). Genes with more than ``bulk_max_missing`` missing
values are dropped; remaining missing values get the gene's mean.

Survival endpoints are detected from column names (case-insensitive; ``X`` is the endpoint name, e.g.
OS, PFS, DSS, DFI, DMFS, RFS): ``X_time`` + ``X_event`` (or ``X_status``), ``X_months``/``X_days`` +
``X_status`` (cBioPortal), ``t.x`` + ``e.x`` (genefu/NKI) and ``X.time`` + ``X`` (TCGA-CDR), or given
explicitly with ``survival_columns`` (``NAME:time_column:event_column,...``). ``survival_endpoints``
restricts the analysis to some names.

Package layout: :mod:`.reading` (tables, identifiers, values), :mod:`.deconvolution` (reference,
markers, NNLS, Spearman), :mod:`.endpoints` (clinical columns, survival per feature), :mod:`.plots`,
:mod:`.pancancer` (per-cancer-type survival and correlations, when the clinical table has a cancer-type
column), :mod:`.mutations` (MAF, TCGA barcode matching, TMB and its correlation with the scores), :mod:`.response`
(treatment response: Wilcoxon, ROC AUC with DeLong CI), :mod:`.regulators` (immunomodulator correlations),
:mod:`.molecular` (MSI, CNV and methylation tables: score-MSI and CNV/methylation-expression correlations, CNV
frequencies, radar plots), :mod:`.normals` (tumour vs normal per cancer type, normals from the same table or a
separate normal cohort), :mod:`.drugs` (cell-line drug sensitivity: Spearman per drug, oncoPredict-style ridge
prediction), :mod:`.settings` (``BulkSettings``, the stage's typed settings), :mod:`.run` (``read_cohort``,
``run_bulk``, ``cli``); every name is importable from ``tmeflow.bulk``.
"""

from __future__ import annotations

from ..estimate import estimate_scores  # noqa: F401  (tmeflow.bulk.estimate_scores, as before the split)
from .deconvolution import (  # noqa: F401
    deconvolve_nnls,
    marker_genes,
    reference_profiles,
    reference_species,
    spearman_pair,
    spearman_table,
)
from .drugs import (  # noqa: F401
    cell_line_features,
    drug_correlations,
    plot_drug_bubbles,
    predict_drug_response,
    read_drug_inputs,
    read_drug_response,
    run_drugs,
    spearman_columns,
    write_drugs,
)
from .endpoints import (  # noqa: F401
    analyse_survival,
    covariate_matrix,
    detect_endpoints,
    node_status,
    survival_frame,
)
from .molecular import (  # noqa: F401
    cnv_frequency,
    gene_correlations,
    plot_cnv_frequency,
    plot_gene_correlations,
    read_gene_table,
    read_msi,
    run_molecular,
    write_molecular,
)
from .mutations import (  # noqa: F401
    NON_SYNONYMOUS,
    match_barcodes,
    plot_tmb_correlation,
    read_maf,
    tmb_correlations,
    tumour_mutational_burden,
)
from .normals import (  # noqa: F401
    in_table_normals,
    plot_tumour_normal_heatmap,
    plot_tumour_normal_scores,
    read_normal_cohort,
    run_tumour_normal,
    sample_states,
    signature_genes,
    tumour_normal_table,
    write_tumour_normal,
)
from .pancancer import (  # noqa: F401
    cancer_types,
    correlation_per_type,
    focus_features,
    plot_pancancer_forest,
    plot_pancancer_heatmap,
    plot_radar,
    plot_value_correlation,
    run_pancancer,
    survival_per_type,
    type_table,
    value_correlations,
    write_pancancer,
)
from .plots import (  # noqa: F401
    plot_correlation_heatmap,
    plot_forest,
    plot_km,
    plot_km_grid,
    split_label,
    write_survival_plots,
)
from .reading import (  # noqa: F401
    MIN_MATCHED_SAMPLES,
    _read_delimited,
    collapse_duplicates,
    detect_id_type,
    map_identifiers,
    read_clinical,
    read_expression,
    read_probe_annotation,
    transform_values,
)
from .regulators import (  # noqa: F401
    immunomodulator_genes,
    plot_regulator_heatmap,
    regulator_correlations,
)
from .response import (  # noqa: F401
    delong_auc,
    plot_response_roc,
    response_status,
    response_table,
)
from .run import (  # noqa: F401
    _gene_sets,
    cli,
    read_cohort,
    run_bulk,
)
from .settings import BulkSettings  # noqa: F401
