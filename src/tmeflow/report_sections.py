"""The report's sections: one per analysis step, in analysis order, with the files each one shows.

:mod:`tmeflow.report` recognises every file of a results folder by its name against these globs (a
figure's glob maps to its caption) and builds one MultiQC section per entry, in this order.
"""

from __future__ import annotations

from dataclasses import dataclass

from . import report_samples


@dataclass(frozen=True)
class Section:
    """Describe one analysis step of the report.

    One analysis step of the report: files whose names match ``files`` (glob -> caption), and the
    per-cell tables (``data`` globs) it draws MultiQC plots from (:mod:`tmeflow.report_samples`).
    """

    id: str
    name: str
    description: str
    files: tuple[tuple[str, str], ...]
    data: tuple[str, ...] = ()


SECTIONS: tuple[Section, ...] = (
    Section(
        "tmeflow_step_qc",
        "Cell QC",
        "Per-sample quality control and doublet removal (tmeflow qc).",
        (
            ("*.qc_stats_mqc.tsv", ""),
            (
                "*.qc_violin.png",
                "Detected genes, total counts, % mitochondrial and % haemoglobin per cell, before and after "
                "filtering; fixed thresholds dashed",
            ),
            (
                "*.qc_scatter.png",
                "Total counts against detected genes per cell, coloured by the filter each removed cell failed",
            ),
        ),
        data=(f"*{report_samples.QC_CELLS_SUFFIX}",),
    ),
    Section(
        "tmeflow_step_integration",
        "Integration",
        "Batch correction and its scIB metrics (tmeflow integrate).",
        (
            ("integration_metrics_mqc.tsv", ""),
            (
                "integration_umap_*_mqc.png",
                "UMAP of the cohort before and after batch correction, coloured by sample, batch and Leiden cluster",
            ),
        ),
    ),
    Section(
        "tmeflow_step_annotation",
        "Cell types",
        "Marker-based cell-type calls per cluster (tmeflow annotate).",
        (
            ("annotation_clusters_mqc.tsv", ""),
            ("annotation_integration_metrics_mqc.tsv", ""),
            ("annotation_umap_mqc.png", "UMAP coloured by cell type, compartment and cluster"),
            (
                "annotation_dotplot_mqc.png",
                "Top marker genes per cluster: fraction of cells expressing and mean expression",
            ),
        ),
    ),
    Section(
        "tmeflow_step_subcluster",
        "Cell subtypes",
        "Compartments re-clustered into fine subtypes (tmeflow subcluster).",
        (
            ("subcluster_calls_mqc.tsv", ""),
            ("subcluster_umap_*.png", "Compartment UMAP coloured by subtype"),
        ),
    ),
    Section(
        "tmeflow_step_composition",
        "Composition and differential abundance",
        "Cell-type proportions per sample and propeller-style tests between conditions (tmeflow composition).",
        (
            ("composition_mqc.tsv", ""),
            ("composition_da_mqc.tsv", ""),
            ("composition_*_stacked.png", "Cell-type proportions per sample"),
            ("composition_*_boxplot.png", "Proportions per condition, one point per sample"),
            ("da_nhood_*.png", "Neighbourhood (Milo-style) differential abundance per majority cell type"),
        ),
    ),
    Section(
        "tmeflow_step_cnv",
        "Copy-number and malignant cells",
        "inferCNV-style copy-number profiles against an immune reference (tmeflow cnv).",
        (
            ("cnv_summary_mqc.tsv", ""),
            ("cnv_arms_mqc.yaml", ""),
            ("cnv_*_mqc.png", "CNV score by cell type and CNV cluster (malignant clusters in red)"),
            ("cnv_heatmap_*.png", "Smoothed expression-inferred copy number per cell along the genome"),
        ),
        data=(report_samples.CNV_CELLS_FILE,),
    ),
    Section(
        "tmeflow_step_de",
        "Differential expression",
        "Pseudobulk differential expression per cell type (tmeflow de).",
        (
            ("de_summary_mqc.tsv", ""),
            ("de_*_volcano.png", "Volcano plot: log2 fold change against adjusted p"),
        ),
    ),
    Section(
        "tmeflow_step_pathways",
        "Pathways and signatures",
        "GSEA, ssGSEA, module scores, PROGENy and CytoTRACE stemness (tmeflow pathways).",
        (
            ("pathways_gsea_mqc.tsv", ""),
            (
                "gsea_*.png",
                "Pre-ranked GSEA of the differential-expression statistics per cell type: top sets and running "
                "enrichment scores",
            ),
            ("ssgsea_*_heatmap.png", "ssGSEA scores of pseudobulk profiles, by condition and by cell type"),
            (
                "module_scores_bubble.png",
                "Signature module scores per cell type and condition: mean (z across groups) and fraction of cells "
                "above 0",
            ),
            (
                "stemness_by_condition.png",
                "Stemness (CytoTRACE): per-sample mean score per cell type and condition (1 = least differentiated)",
            ),
        ),
    ),
    Section(
        "tmeflow_step_trajectory",
        "Trajectories",
        "Diffusion pseudotime and CellRank fates (tmeflow trajectory).",
        (
            ("trajectory_mqc.tsv", ""),
            (
                "trajectory_*.png",
                "Diffusion pseudotime and fate probabilities on the embedding, gene trends along each fate, the "
                "root-to-fate "
                "heatmap of branch-dependent genes (sample-level tradeSeq-style tests, k-means clusters) and "
                "necroptosis / DAMPs "
                "trends per fate",
            ),
        ),
    ),
    Section(
        "tmeflow_step_communication",
        "Cell-cell communication",
        "LIANA consensus interactions, signalling pathways and roles, and their differences between conditions "
        "(tmeflow communication).",
        (
            ("communication_mqc.tsv", ""),
            ("communication_pathways_mqc.tsv", ""),
            (
                "communication_*.png",
                "Interactions between cell types (count and strength), differential interactions and signalling "
                "pathways between conditions (circle plots), signalling roles (sender, receiver, mediator, influencer)",
            ),
        ),
    ),
    Section(
        "tmeflow_step_spatial_qc",
        "Spatial QC",
        "Spot QC and clustering per section (tmeflow spatial_qc).",
        (
            ("*.spatial_qc_stats_mqc.tsv", ""),
            ("*.spatial_qc.png", "Spot QC metrics and clusters over the tissue"),
            ("*.spatial_svg.png", "Top spatially variable genes (Moran's I) over the tissue"),
        ),
        data=(f"*{report_samples.SPATIAL_SPOTS_SUFFIX}",),
    ),
    Section(
        "tmeflow_step_deconvolution",
        "Spatial deconvolution",
        "Cell-type abundance per spot with the atlas as reference (tmeflow deconvolve).",
        (
            ("*.deconvolution_mqc.tsv", ""),
            ("*.deconvolution_agreement_mqc.tsv", ""),
            ("*.deconvolution_proportions.png", "Cell-type proportions per spot"),
            ("*.deconvolution_abundance.png", "Estimated cells per spot of each type (follows cellularity)"),
            ("*.deconvolution_dominant.png", "Dominant cell type per spot"),
        ),
    ),
    Section(
        "tmeflow_step_spatial_analysis",
        "Spatial niches",
        "Regions, co-localisation, neighbourhood enrichment and ligand-receptor pairs at the tumour interface "
        "(tmeflow spatial_analysis).",
        (
            ("*.regions_mqc.tsv", ""),
            ("*.colocalisation_mqc.tsv", ""),
            ("*.trajectory_mqc.png", "Cell-type proportions along the tumour-to-stroma axis"),
            ("*.regions.png", "Tissue regions"),
            ("*.spot_cnv.png", "Spot-level CNV map next to the deconvolved malignant proportion"),
            ("*.nhood_enrichment.png", "Neighbourhood enrichment between cell types"),
            ("*.lr_interface.png", "Ligand-receptor pairs at the tumour-stroma interface"),
        ),
    ),
    Section(
        "tmeflow_step_spatial_cohort",
        "Spatial statistics across patients",
        "Each section's co-localisation, interface ligand-receptor, trajectory and distance z-scores (spatially "
        "constrained nulls), averaged per patient and tested across patients (tmeflow atlas; no p-value with one "
        "patient).",
        (
            ("spatial_cohort_mqc.tsv", ""),
            (
                "spatial_cohort_*.png",
                "One dot per patient (mean section z-score), bar = cohort mean; FDR of the one-sample t-test "
                "across patients, * cohort-wide",
            ),
        ),
    ),
    Section(
        "tmeflow_step_bulk",
        "Bulk cohort and survival",
        "Signature scores, immune context, cut-points, Kaplan-Meier and Cox models (tmeflow bulk).",
        (
            ("*.bulk_survival_mqc.tsv", ""),
            ("*.bulk_estimate_mqc.tsv", ""),
            ("*.bulk_km_*.png", "Kaplan-Meier curves of high and low groups at the cut-point, with the log-rank test"),
            ("*.bulk_forest_*.png", "Cox model hazard ratios with 95% confidence intervals"),
            (
                "*.bulk_estimate_correlation.png",
                "Spearman correlation of each signature score with the ESTIMATE scores; * marks FDR < 0.05",
            ),
        ),
    ),
    Section(
        "tmeflow_step_pancancer",
        "Pan-cancer",
        "Survival, immune-context and TMB correlations per cancer type, BH across types x endpoints, tumour vs normal "
        "expression, MSI, copy number and methylation (tmeflow bulk, cohorts with a cancer_type column, a MAF, "
        "normals or "
        "molecular tables); treatment response; drug sensitivity of cell lines (drug_expression, drug_response).",
        (
            ("*.bulk_pancancer_mqc.tsv", ""),
            (
                "*.bulk_pancancer_forest_*.png",
                "Hazard ratio per SD (univariate Cox, 95% CI) per cancer type; filled: pan-cancer FDR < 0.05",
            ),
            (
                "*.bulk_pancancer_correlation.png",
                "Spearman correlation of each score with the immune context per cancer type; * marks pan-cancer FDR "
                "< 0.05",
            ),
            (
                "*.bulk_immunomodulators.png",
                "Spearman correlation of each signature with the immunomodulator genes (Thorsson et al. 2018) per "
                "cancer type; * marks pan-cancer FDR < 0.05",
            ),
            (
                "*.bulk_response_roc.png",
                "ROC curves of the scores for treatment response (responders CR/PR vs SD/PD), AUC with DeLong 95% CI",
            ),
            (
                "*.bulk_immunotherapy_km.png",
                "Kaplan-Meier curves of the lead signature per endpoint (e.g. OS, PFS) of a cohort with a response "
                "column, split at the optimised (maxstat) cut-point: corrected cut-point p, naive log-rank p for "
                "reference",
            ),
            (
                "*.bulk_tmb_correlation.png",
                "Spearman correlation of each score with tumour mutational burden (from the MAF) per cancer type; * "
                "marks pan-cancer FDR < 0.05",
            ),
            (
                "*.bulk_msi_correlation.png",
                "Spearman correlation of each score with the MSI score per cancer type; * marks pan-cancer FDR < 0.05",
            ),
            (
                "*.bulk_tmb_msi_radar.png",
                "Spearman correlation of each score with TMB and MSI, one spoke per cancer type; filled: pan-cancer "
                "FDR < 0.05",
            ),
            (
                "*.bulk_cnv_frequency.png",
                "Copy-number gain (>= 1) and loss (<= -1) frequency of each signature gene per cancer type (GISTIC "
                "thresholds)",
            ),
            (
                "*.bulk_molecular_correlation.png",
                "Spearman correlation of each signature gene's copy number and methylation (beta) with its "
                "expression per cancer type; * marks pan-cancer FDR < 0.05",
            ),
            (
                "*.bulk_tumour_normal_heatmap.png",
                "Log2 fold change tumour / normal of each signature gene per cancer type (Wilcoxon rank-sum; * FDR < "
                "0.05, ** < 0.01, *** < 0.001)",
            ),
            (
                "*.bulk_tumour_normal_scores.png",
                "Signature scores of tumours (red) and normals (blue) per cancer type (Wilcoxon rank-sum; stars: BH "
                "FDR)",
            ),
            ("*.bulk_drug_mqc.tsv", ""),
            (
                "*.bulk_drug_bubble.png",
                "Drugs whose cell-line IC50/AUC correlates with the signature (scored on the cell lines as on the "
                "tumours): x = Spearman rho, size = -log10 FDR (BH across drugs); filled: FDR < 0.05",
            ),
        ),
    ),
)
