"""The registry of tmeflow's subcommands.

Each pipeline stage is one Python module (the science), one ``tmeflow <stage>`` subcommand (declared
here, so that building the CLI imports nothing heavy) and one Nextflow process in
``modules/local/<stage>/main.nf``. Stage parameters come from ``nextflow_schema.json`` groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .params import load_schema, parse_bool


@dataclass(frozen=True)
class Option:
    """One stage-specific command-line option (inputs, sample metadata)."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def option(*flags: str, **kwargs: Any) -> Option:
    """Declare one command-line option of a stage (``argparse.add_argument``'s arguments)."""
    return Option(flags, kwargs)


@dataclass(frozen=True)
class Stage:
    """A subcommand: ``entry`` is ``module:function`` called with ``(args, params)``."""

    name: str
    summary: str
    entry: str
    options: tuple[Option, ...] = ()
    param_groups: tuple[str, ...] = ()
    pipeline: bool = True  # has a Nextflow module and runs in `tmeflow run`
    overrides_only: bool = False  # parameter options default to None: only what is given overrides
    results_folder: str = ""  # folder under the results, as conf/modules.config publishes it; default: name

    @property
    def folder(self) -> str:
        """Return the stage's output folder name."""
        return self.results_folder or self.name


OUTDIR = option("--outdir", required=True, help="Folder for this stage's outputs (created if missing).")

SAMPLE_META = (
    option("--sample", required=True, help="Sample name (samplesheet column 'sample')."),
    option("--patient", required=True, help="Patient the sample comes from."),
    option("--condition", required=True, help="Condition, e.g. normal, primary, metastasis."),
    option("--tissue", default="unknown", help="Tissue of origin."),
    option("--species", required=True, choices=["human", "mouse"], help="Species of the gene symbols."),
    option("--batch", default="batch1", help="Batch, platform or run."),
)

# Schema groups that steer only Nextflow, or are the run's own options.
_NOT_STAGE_GROUPS = ("input_output_options", "generic_options")

STAGES: tuple[Stage, ...] = (
    Stage(
        name="qc",
        summary="Per-sample QC: read counts, QC metrics, cell filters, doublet removal.",
        entry="tmeflow.qc:cli",
        options=(
            option("--input", required=True, help="Counts: Cell Ranger .h5 or mtx folder, .h5ad, dense .csv/.tsv."),
            *SAMPLE_META,
            OUTDIR,
        ),
        param_groups=("qc_options", "analysis_options"),
    ),
    Stage(
        name="bulk",
        summary="Bulk cohort validation: ssGSEA/ESTIMATE scores, cut-points, KM, Cox, logistic, deconvolution.",
        entry="tmeflow.bulk:cli",
        options=(
            option("--expression", required=True, help="Expression matrix, genes x samples (CSV/TSV, .gz ok)."),
            option("--clinical", required=True, help="Clinical table, one row per sample (CSV/TSV)."),
            option("--reference", default=None, help="Single-cell reference .h5ad (raw counts, obs 'cell_type')."),
            option("--signatures", nargs="*", default=[], help="User gene-set GMT file(s) to score."),
            option(
                "--sample",
                required=True,
                help="Cohort name (samplesheet column 'sample'): its output files start with it.",
            ),
            OUTDIR,
        ),
        param_groups=("bulk_options", "analysis_options"),
    ),
    Stage(
        name="composition",
        summary="Cell-type proportions per sample and propeller-style differential abundance between conditions.",
        entry="tmeflow.composition:cli",
        options=(
            option(
                "--input",
                required=True,
                help="Atlas .h5ad (obs: sample, condition, cell_type; optional patient, cell_type_fine).",
            ),
            OUTDIR,
        ),
        param_groups=("comparison_options", "composition_options", "analysis_options"),
    ),
    Stage(
        name="de",
        summary="Differential expression per cell type between conditions: pseudobulk PyDESeq2 or Wilcoxon.",
        entry="tmeflow.de:cli",
        options=(
            option(
                "--input",
                required=True,
                help="Atlas .h5ad (raw counts in layers['counts'], log-normalised X, obs cell_type).",
            ),
            OUTDIR,
        ),
        param_groups=("comparison_options", "de_options", "analysis_options"),
    ),
    Stage(
        name="pathways",
        summary="GSEA, over-representation, ssGSEA, module scores, PROGENy activities and CytoTRACE stemness per "
        "cell type and condition.",
        entry="tmeflow.pathways:cli",
        options=(
            option(
                "--input",
                required=True,
                help="Atlas .h5ad (raw counts in layers['counts'], log-normalised X, obs cell_type).",
            ),
            option("--de", nargs="*", default=[], help="DE tables written by 'tmeflow de' (de_<contrast>.tsv)."),
            option("--signatures", nargs="*", default=[], help="User gene-set GMT file(s) to score."),
            OUTDIR,
        ),
        param_groups=("comparison_options", "pathways_options", "analysis_options"),
    ),
    Stage(
        name="integrate",
        summary="Cohort integration: concatenate QC'd samples, HVGs, sparse PCA, Harmony/scVI, Leiden, UMAP, scIB "
        "metrics.",
        entry="tmeflow.integrate:cli",
        options=(
            option("--input", required=True, nargs="+", help="Per-sample QC outputs (<sample>.qc.h5ad), one or more."),
            OUTDIR,
        ),
        param_groups=("integration_options", "analysis_options"),
    ),
    Stage(
        name="annotate",
        summary="Cluster markers and major cell-type annotation (canonical markers, optional CellTypist, overrides).",
        entry="tmeflow.annotate:cli",
        options=(
            option("--input", required=True, help="Integrated .h5ad (tmeflow integrate)."),
            OUTDIR,
        ),
        param_groups=("annotation_options", "analysis_options"),
    ),
    Stage(
        name="subcluster",
        summary="Re-cluster each compartment (T/NK, myeloid, fibroblast...) and annotate fine subtypes.",
        entry="tmeflow.subcluster:cli",
        options=(
            option("--input", required=True, help="Annotated .h5ad (tmeflow annotate)."),
            OUTDIR,
        ),
        param_groups=("subcluster_options", "analysis_options"),
    ),
    Stage(
        name="cnv",
        summary="Malignant cells: CNV inference (infercnvpy) against immune reference cells, CNV score, malignant "
        "calls.",
        entry="tmeflow.cnv:cli",
        options=(
            option(
                "--input",
                required=True,
                help="Annotated .h5ad (obs cell_type, compartment, patient; log-normalised X).",
            ),
            option(
                "--species", default=None, help="Species for the bundled gene-position table (default: obs 'species')."
            ),
            option("--n_jobs", type=int, default=1, help="Processes for the CNV inference (default: 1)."),
            OUTDIR,
        ),
        param_groups=("cnv_options", "analysis_options"),
    ),
    Stage(
        name="spatial_qc",
        summary="Per-section spatial QC: in-tissue spots, spot filters, normalisation, clusters, spatially variable "
        "genes.",
        entry="tmeflow.spatial_qc:cli",
        options=(
            option("--input", required=True, help="Space Ranger(-like) outs/ folder of one section."),
            *SAMPLE_META,
            OUTDIR,
        ),
        param_groups=("spatial_qc_options", "analysis_options"),
    ),
    Stage(
        name="deconvolve",
        summary="Deconvolve spots into reference cell types (cell2location on GPU/CPU, or fast NNLS).",
        entry="tmeflow.deconvolve:cli",
        options=(
            option("--input", required=True, help="Section from spatial_qc (<sample>.spatial.h5ad)."),
            option(
                "--reference", required=True, help="Single-cell reference .h5ad with raw counts and obs 'cell_type'."
            ),
            option(
                "--sample", default=None, help="Section name for output files (default: obs 'sample' of the input)."
            ),
            OUTDIR,
        ),
        param_groups=("deconvolution_options", "analysis_options"),
    ),
    Stage(
        name="spatial_analysis",
        summary="Regions, neighbourhood enrichment, co-localisation, spatial ligand-receptor, trajectory, distance "
        "tests, TLS.",
        entry="tmeflow.spatial_analysis:cli",
        options=(
            option("--input", required=True, help="Deconvolved section (<sample>.deconvolved.h5ad)."),
            option(
                "--region_annotation",
                default=None,
                help="Pathologist regions: CSV/TSV barcode,region (tumour/stroma/interface).",
            ),
            OUTDIR,
        ),
        param_groups=("spatial_analysis_options", "analysis_options"),
    ),
    Stage(
        name="trajectory",
        summary="Trajectories: diffusion pseudotime from a chosen root, CellRank fates, fate genes and their "
        "Hallmark enrichment.",
        entry="tmeflow.trajectory:cli",
        options=(
            option(
                "--input",
                required=True,
                help="Atlas .h5ad (log-normalised X, raw counts in layers['counts'], obs cell_type, condition).",
            ),
            OUTDIR,
        ),
        param_groups=("trajectory_options", "analysis_options"),
    ),
    Stage(
        name="communication",
        summary="Cell-cell communication: LIANA per condition and sample, sample-level differential interactions and "
        "pathways, signalling roles, proportion tests.",
        entry="tmeflow.communication:cli",
        options=(
            option("--input", required=True, help="Atlas .h5ad (log-normalised X, obs sample, condition, cell_type)."),
            OUTDIR,
        ),
        param_groups=("comparison_options", "communication_options", "analysis_options"),
    ),
    Stage(
        name="atlas",
        summary="The explorable atlas: every stage's per-cell annotations in one CELLxGENE-ready h5ad, one h5ad per "
        "spatial section; "
        "the sections' spatial statistics combined across patients.",
        entry="tmeflow.atlas:cli",
        options=(
            option(
                "--input",
                required=True,
                help="Subclustered atlas .h5ad (tmeflow subcluster): cells, counts, embeddings.",
            ),
            option(
                "--pathways", default=None, help="pathways.h5ad (tmeflow pathways): per-cell module scores to merge."
            ),
            option(
                "--trajectory",
                default=None,
                help="trajectory.h5ad (tmeflow trajectory): pseudotime and fate probabilities to merge.",
            ),
            option(
                "--sections",
                nargs="*",
                default=[],
                help="Spatial sections (<sample>.spatial_analysis.h5ad), one atlas each.",
            ),
            OUTDIR,
        ),
    ),
    Stage(
        name="report",
        summary="The MultiQC report: every stage's tables and figures, in analysis order, with software versions and "
        "parameters.",
        entry="tmeflow.report:cli",
        options=(
            option(
                "--input_dir",
                required=True,
                help="Results of a `tmeflow run` or a Nextflow run (or a task folder of staged files).",
            ),
            OUTDIR,
        ),
        param_groups=("report_options",),
        results_folder="multiqc",
    ),
    Stage(
        name="run",
        summary="Run the whole pipeline on one machine (no Nextflow needed), same stages and outputs.",
        entry="tmeflow.runner:cli",
        options=(
            option("--input", help="Samplesheet CSV (or 'input' in --params-file)."),
            option("--outdir", help="Results folder (or 'outdir' in --params-file)."),
            option("--params-file", help="YAML/JSON file of pipeline parameters, as for 'nextflow run -params-file'."),
            option(
                "--signatures",
                help="User gene sets (GMT; several files comma-separated) scored by the pathways and bulk stages.",
            ),
            option(
                "--resume",
                action="store_true",
                help="Reuse the stages a previous run into the same --outdir completed "
                "with the same inputs, parameters and tmeflow version (as 'nextflow run -resume'); rerun the rest.",
            ),
        ),
        param_groups=tuple(group for group in load_schema()["$defs"] if group not in _NOT_STAGE_GROUPS),
        pipeline=False,
        overrides_only=True,
    ),
    Stage(
        name="simulate",
        summary="Simulate a cohort (scRNA-seq, Visium, bulk with survival) with planted ground truth.",
        entry="tmeflow.simulate:cli",
        options=(
            OUTDIR,
            option("--n_cells", type=int, default=3000, help="Total cells over all scRNA samples (default: 3000)."),
            option(
                "--n_patients",
                type=int,
                default=3,
                help="Patients; one scRNA sample per patient and condition (default: 3).",
            ),
            option(
                "--conditions",
                default="normal,primary,metastasis",
                help="Comma-separated conditions (default: normal,primary,metastasis).",
            ),
            option(
                "--species",
                default="human",
                choices=["human", "mouse"],
                help="Species of the gene symbols (default: human).",
            ),
            option(
                "--seed", type=int, default=0, help="Random seed; the same seed gives identical outputs (default: 0)."
            ),
            option(
                "--n_genes", type=int, default=4000, help="Genes simulated, programme genes included (default: 4000)."
            ),
            option("--n_batches", type=int, default=2, help="Batches the scRNA samples are spread over (default: 2)."),
            option(
                "--batch_effect", type=float, default=0.3, help="SD of the gene-wise log batch factors (default: 0.3)."
            ),
            option("--n_sections", type=int, default=1, help="Visium-like spatial sections (default: 1)."),
            option("--n_spots", type=int, default=1000, help="Spots per spatial section (default: 1000)."),
            option(
                "--grid",
                default="hex",
                choices=["hex", "square"],
                help="Spot grid: Visium hexagonal or square (default: hex).",
            ),
            option("--n_bulk", type=int, default=200, help="Bulk samples with survival; 0 for none (default: 200)."),
            option(
                "--bulk_species",
                default=None,
                choices=["human", "mouse"],
                help="Species of the bulk cohort's genes (default: --species). A human bulk cohort of a mouse model "
                "(cross-species validation) carries the one-to-one human orthologs of the model's genes.",
            ),
            option(
                "--bulk_beta",
                type=float,
                default=0.6931471805599453,
                help="Log hazard ratio per SD of the bulk signature score (default: log 2).",
            ),
            option(
                "--bulk_cancer_types",
                type=int,
                default=0,
                help="Cancer types of a pan-cancer bulk cohort (clinical column cancer_type, samples dealt "
                "round-robin); 0 for one cohort (default: 0).",
            ),
            option(
                "--bulk_planted_types",
                type=int,
                default=1,
                help="With --bulk_cancer_types: the first this many types carry the score-survival effect "
                "(--bulk_beta), the others none (default: 1).",
            ),
            option(
                "--bulk_normals",
                type=int,
                default=0,
                help="Normal samples per cancer type (or for the one cohort) in the bulk expression table (clinical "
                "column sample_type), "
                "with a planted tumour-normal difference in the first 6 signature genes (default: 0).",
            ),
            option(
                "--n_bulk_validation",
                type=int,
                default=0,
                help="Samples of a second bulk cohort with survival (its own samplesheet row 'bulk_validation', "
                "drawn as the first with the same --bulk_beta, a validation set); 0 for none (default: 0).",
            ),
            option(
                "--n_immunotherapy",
                type=int,
                default=0,
                help="Samples of an immunotherapy bulk cohort (its own samplesheet row 'immunotherapy': expression, "
                "response CR/PR/SD/PD, OS and PFS); 0 for none (default: 0).",
            ),
            option(
                "--immunotherapy_log_or",
                type=float,
                default=1.0,
                help="Log odds ratio of response per SD of the signature score in the immunotherapy cohort; OS/PFS "
                "hazards fall as exp(-0.6 x it x z); 0 for a null cohort (default: 1).",
            ),
            option(
                "--n_cell_lines",
                type=int,
                default=0,
                help="Drug-screened cell lines (drugs/cell_line_expression.tsv, drugs/drug_response.tsv, GDSC-like); "
                "0 for none (default: 0).",
            ),
            option("--n_drugs", type=int, default=20, help="With --n_cell_lines: drugs screened (default: 20)."),
            option(
                "--planted_drugs",
                type=int,
                default=3,
                help="With --n_cell_lines: the first this many drugs have an IC50 that falls with the signature "
                "score, the others none (default: 3).",
            ),
            option("--doublet_rate", type=float, default=0.0, help="Fraction of heterotypic doublets (default: 0)."),
            option("--low_quality_rate", type=float, default=0.0, help="Fraction of low-quality cells (default: 0)."),
            option(
                "--sc_format",
                default="h5ad",
                choices=["h5ad", "mtx", "h5"],
                help="scRNA output: h5ad, 10x mtx folder or 10x h5 (default: h5ad).",
            ),
            option(
                "--spatial_platform_sd",
                type=float,
                default=0.7,
                help="SD of the gene-wise log factors of the spatial assay vs single-cell (platform effects; "
                "default: 0.7).",
            ),
            option(
                "--heldout_sections",
                type=parse_bool,
                default=False,
                help="Spatial sections from patients absent from the scRNA samples, with their own tumour programme "
                "(default: false).",
            ),
            option(
                "--spot_umi_per_cell",
                type=float,
                default=800.0,
                help="Mean UMIs per cell in a spot; lower it for low-depth sections (default: 800).",
            ),
        ),
        param_groups=(),
        pipeline=False,
    ),
)


def get_stage(name: str) -> Stage:
    """Return the registered stage ``name``."""
    return next(stage for stage in STAGES if stage.name == name)


def pipeline_stage_names() -> list[str]:
    """Stages that form the pipeline (each has a Nextflow module)."""
    return [stage.name for stage in STAGES if stage.pipeline]
