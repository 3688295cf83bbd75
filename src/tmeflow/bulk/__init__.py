"""Bulk cohort validation (``tmeflow bulk``): signature scores, cut-points, Kaplan-Meier, Cox,
logistic regression, ESTIMATE immune context and deconvolution with the single-cell reference.

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
(treatment response: Wilcoxon, ROC AUC with DeLong CI), :mod:`.regulators` (immunomodulator correlations), :mod:`.molecular` (MSI, CNV and methylation tables: score-MSI
and CNV/methylation-expression correlations, CNV frequencies, radar plots), :mod:`.normals` (tumour vs normal per cancer type, normals from the
same table or a separate normal cohort), :mod:`.drugs` (cell-line drug sensitivity: Spearman per drug, oncoPredict-style ridge
prediction), :mod:`.run` (``read_cohort``, ``run_bulk``, ``cli``); every name is importable from ``tmeflow.bulk``.
"""

from __future__ import annotations

from ..estimate import estimate_scores  # noqa: F401  (tmeflow.bulk.estimate_scores, as before the split)
from .reading import (  # noqa: F401
    MIN_MATCHED_SAMPLES,
    _read_delimited,
    read_clinical,
    read_expression,
    read_probe_annotation,
    detect_id_type,
    collapse_duplicates,
    map_identifiers,
    transform_values,
)
from .deconvolution import (  # noqa: F401
    reference_species,
    reference_profiles,
    marker_genes,
    deconvolve_nnls,
    spearman_pair,
    spearman_table,
)
from .endpoints import (  # noqa: F401
    detect_endpoints,
    survival_frame,
    covariate_matrix,
    node_status,
    analyse_survival,
)
from .plots import (  # noqa: F401
    plot_km,
    forest_plot,
    correlation_heatmap,
    _survival_plots,
)
from .pancancer import (  # noqa: F401
    cancer_types,
    type_table,
    survival_per_type,
    correlation_per_type,
    focus_features,
    plot_pancancer_forest,
    plot_pancancer_heatmap,
    value_correlations,
    plot_value_correlation,
    plot_radar,
    run_pancancer,
    write_pancancer,
)
from .mutations import (  # noqa: F401
    NON_SYNONYMOUS,
    read_maf,
    match_barcodes,
    tumour_mutational_burden,
    tmb_correlations,
    plot_tmb_correlation,
)
from .response import (  # noqa: F401
    response_status,
    delong_auc,
    response_table,
    plot_response_roc,
)
from .regulators import (  # noqa: F401
    immunomodulator_genes,
    regulator_correlations,
    plot_regulator_heatmap,
)
from .normals import (  # noqa: F401
    sample_states,
    read_normal_cohort,
    in_table_normals,
    signature_genes,
    tumour_normal_table,
    run_tumour_normal,
    plot_tumour_normal_heatmap,
    plot_tumour_normal_scores,
    write_tumour_normal,
)
from .molecular import (  # noqa: F401
    read_msi,
    read_gene_table,
    cnv_frequency,
    gene_correlations,
    run_molecular,
    plot_cnv_frequency,
    plot_gene_correlations,
    write_molecular,
)
from .drugs import (  # noqa: F401
    read_drug_response,
    read_drug_inputs,
    cell_line_features,
    spearman_columns,
    drug_correlations,
    plot_drug_bubbles,
    predict_drug_response,
    run_drugs,
    write_drugs,
)
from .run import (  # noqa: F401
    _gene_sets,
    read_cohort,
    run_bulk,
    cli,
)
