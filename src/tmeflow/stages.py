"""The registry of tmeflow's subcommands.

Each pipeline stage is one Python module (the science), one ``tmeflow <stage>`` subcommand (declared
here, so that building the CLI imports nothing heavy) and one Nextflow process in
``modules/local/<stage>/main.nf``. Stage parameters come from ``nextflow_schema.json`` groups.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .params import load_schema


@dataclass(frozen=True)
class Option:
    """One stage-specific command-line option (inputs, sample metadata)."""

    flags: tuple[str, ...]
    kwargs: dict[str, Any] = field(default_factory=dict)


def option(*flags: str, **kwargs: Any) -> Option:
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
        name="run",
        summary="Run the whole pipeline on one machine (no Nextflow needed), same stages and outputs.",
        entry="tmeflow.runner:cli",
        options=(
            option("--input", help="Samplesheet CSV (or 'input' in --params-file)."),
            option("--outdir", help="Results folder (or 'outdir' in --params-file)."),
            option("--params-file", help="YAML/JSON file of pipeline parameters, as for 'nextflow run -params-file'."),
        ),
        param_groups=tuple(group for group in load_schema()["$defs"] if group not in _NOT_STAGE_GROUPS),
        pipeline=False,
        overrides_only=True,
    ),
)


def get_stage(name: str) -> Stage:
    return next(stage for stage in STAGES if stage.name == name)


def pipeline_stage_names() -> list[str]:
    """Stages that form the pipeline (each has a Nextflow module)."""
    return [stage.name for stage in STAGES if stage.pipeline]
