"""``tmeflow run``: the embedded single-machine runner.

Runs the same stages as the Nextflow pipeline, in dependency order, in one process, and writes the
same output layout (stage X under ``<outdir>/X/``, the report under ``<outdir>/multiqc/``, as
``conf/modules.config`` publishes them; ``Stage.folder``). It is
a convenience for small cohorts and laptops; Nextflow is how tmeflow scales out.
"""

from __future__ import annotations

import argparse
import csv
import time
from collections.abc import Callable
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__, io, numba_cache
from .errors import TmeflowInputError
from .log import get_logger
from .params import defaults, read_params_file, validate
from .report import run_report
from .resume import TaskRunner, remove_stale_temporaries, signals_interrupt
from .samplesheet import SampleRow, read_samplesheet
from .stages import get_stage
from .validate import validate_inputs

logger = get_logger(__name__)

# Packages whose versions the report lists (as the Nextflow modules' versions.yml do).
REPORTED_PACKAGES = (
    "tmeflow",
    "scanpy",
    "anndata",
    "numpy",
    "pandas",
    "scipy",
    "scikit-learn",
    "harmonypy",
    "scvi-tools",
    "infercnvpy",
    "decoupler",
    "pydeseq2",
    "cellrank",
    "liana",
    "squidpy",
    "cell2location",
    "lifelines",
    "multiqc",
)
# The same file name as the Nextflow workflow's collated versions, which MultiQC lists.
VERSIONS_FILE = "tmeflow_software_mqc_versions.yml"


class _Pipeline:
    """Run stages and record what ran.

    Runs stages (kill-safe, reused with ``--resume``: :mod:`tmeflow.resume`) and records what ran,
    for ``pipeline_info/run_summary.json``.
    """

    def __init__(self, outdir: Path, params: dict[str, Any], *, resume: bool = False) -> None:
        self.outdir = outdir
        self.params = params
        self.stages_run: list[str] = []
        self.timings: dict[str, float] = {}
        self.tasks = TaskRunner(outdir, params, resume=resume)

    def stage_dir(self, stage: str) -> Path:
        return self.outdir / get_stage(stage).folder

    def record(self, stage: str, started: float) -> None:
        if stage not in self.stages_run:
            self.stages_run.append(stage)
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started

    def run(self, stage: str, function: Callable[..., Any], *inputs: Any, per: str | None = None, **kwargs: Any) -> Any:
        """Run one stage as a task and record it.

        Call one stage's ``run_<stage>(*inputs, <outdir>, params, **kwargs)`` (for sample ``per`` of
        per-sample stages) as a task, and record it.
        """
        task = f"{stage}.{per}" if per else stage
        logger.info("stage %s", task)
        started = time.perf_counter()
        result = self.tasks.run(task, stage, function, inputs, kwargs, self.stage_dir(stage))
        self.record(stage, started)
        return result


def _run_sc_qc(pipeline: _Pipeline, rows: list[SampleRow]) -> list[Path]:
    """QC of each single-cell sample, as the SC_QC subworkflow."""
    from .qc import run_qc

    results = [pipeline.run("qc", run_qc, row.data, row.meta(), per=row.sample) for row in rows]
    h5ads = [result.h5ad for result in results if result.h5ad is not None]
    if not h5ads:
        raise TmeflowInputError("no single-cell sample passed QC; relax the QC filters")
    return h5ads


def _run_atlas(pipeline: _Pipeline, qc_h5ads: list[Path]) -> Path:
    """Integrate -> annotate -> cnv -> subcluster, as the COHORT_ATLAS subworkflow."""
    from .annotate import run_annotate
    from .cnv import run_cnv
    from .integrate import run_integrate
    from .subcluster import run_subcluster

    integrated = pipeline.run("integrate", run_integrate, sorted(qc_h5ads))
    annotated = pipeline.run("annotate", run_annotate, integrated)
    cnv_outputs = pipeline.run("cnv", run_cnv, annotated)
    return pipeline.run("subcluster", run_subcluster, cnv_outputs["h5ad"])


def _run_compare_conditions(pipeline: _Pipeline, atlas: Path, signatures: list[Path]) -> None:
    """composition, de -> pathways, as the COMPARE_CONDITIONS subworkflow."""
    from .composition import run_composition
    from .de import run_de
    from .pathways import run_pathways

    pipeline.run("composition", run_composition, atlas)
    summary = pipeline.run("de", run_de, atlas)
    de_tables = [str(pipeline.stage_dir("de") / f"de_{contrast}.tsv") for contrast in summary["contrasts"]]
    pipeline.run("pathways", run_pathways, atlas, de_tables, [str(p) for p in signatures])


def _run_trajectory_and_communication(pipeline: _Pipeline, atlas: Path) -> None:
    """Trajectory and communication, as the TRAJECTORY and COMMUNICATION subworkflows."""
    from .communication import run_communication
    from .trajectory import run_trajectory

    pipeline.run("trajectory", run_trajectory, atlas)
    pipeline.run("communication", run_communication, atlas)


def _run_spatial(pipeline: _Pipeline, rows: list[SampleRow], atlas: Path) -> list[Path]:
    """Run the spatial stages of every section.

    Per section: spatial_qc -> deconvolve -> spatial_analysis, as the SPATIAL subworkflow; returns the
    analysed sections (``<sample>.spatial_analysis.h5ad``).
    """
    from .deconvolve import run_deconvolve
    from .spatial_analysis import run_spatial_analysis
    from .spatial_qc import run_spatial_qc

    for row in rows:
        section = pipeline.run("spatial_qc", run_spatial_qc, row.data, row.meta(), per=row.sample)
        deconvolved = pipeline.run("deconvolve", run_deconvolve, section, atlas, per=row.sample, sample=row.sample)
        pipeline.run(
            "spatial_analysis",
            run_spatial_analysis,
            deconvolved,
            per=row.sample,
            region_annotation=row.region_annotation,
        )
    return [pipeline.stage_dir("spatial_analysis") / f"{row.sample}.spatial_analysis.h5ad" for row in rows]


def _run_explorable_atlas(pipeline: _Pipeline, atlas: Path, sections: list[Path]) -> None:
    """Every stage's per-cell annotations in one h5ad, and one per section, as the ATLAS module."""
    from .atlas import run_atlas

    pipeline.run(
        "atlas",
        run_atlas,
        atlas,
        pathways=pipeline.stage_dir("pathways") / "pathways.h5ad",
        trajectory=pipeline.stage_dir("trajectory") / "trajectory.h5ad",
        sections=sections,
    )


def _run_bulk(pipeline: _Pipeline, rows: list[SampleRow], atlas: Path, signatures: list[Path]) -> None:
    """One bulk cohort per bulk row, as the BULK_VALIDATION subworkflow; files named after the row."""
    from .bulk import run_bulk

    for row in rows:
        pipeline.run(
            "bulk",
            run_bulk,
            row.data,
            row.clinical,
            per=row.sample,
            reference=atlas,
            signatures=[str(p) for p in signatures],
            sample=row.sample,
            species=row.species,
        )


def _write_samplesheet(rows: list[SampleRow], path: Path) -> None:
    columns = list(SampleRow.__dataclass_fields__)
    with io.atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: getattr(row, column) or "" for column in columns})


def software_versions() -> dict[str, dict[str, str]]:
    """``{"tmeflow run": {package: version}}``: MultiQC's software-versions layout (group -> tool)."""
    return {
        "tmeflow run": {
            name: (__version__ if name == "tmeflow" else metadata.version(name)) for name in REPORTED_PACKAGES
        }
    }


def run_pipeline(
    samplesheet: str | Path, outdir: str | Path, params: dict[str, Any], *, resume: bool = False
) -> dict[str, Any]:
    """Run every stage on the samplesheet's cohort; return the run summary.

    Every input of every row is checked first (:mod:`tmeflow.validate`); nothing is written when one
    fails. Stages are kill-safe and, with ``resume``, reused when complete (:mod:`tmeflow.resume`).
    """
    outdir = Path(outdir)
    rows = read_samplesheet(samplesheet)
    sc_rows = [row for row in rows if row.modality == "sc"]
    if not sc_rows:
        raise TmeflowInputError(
            "the samplesheet has no single-cell (modality sc) samples", file=samplesheet, column="modality"
        )
    with signals_interrupt():
        validate_inputs(rows, params)
        # after the checks (nothing is written when one fails), before the first stage imports UMAP
        folder = numba_cache.enable(numba_cache.default_cache_dir(outdir))
        logger.info("numba code of UMAP / PyNNDescent cached in %s (NUMBA_CACHE_DIR)", folder)
        signatures = [
            Path(path.strip()).resolve() for path in (params.get("signatures") or "").split(",") if path.strip()
        ]
        remove_stale_temporaries(outdir)
        info = outdir / "pipeline_info"
        _write_samplesheet(rows, info / "samplesheet.valid.csv")
        io.write_json(params, info / "params.json")
        pipeline = _Pipeline(outdir, params, resume=resume)
        started = time.perf_counter()
        qc_h5ads = _run_sc_qc(pipeline, sc_rows)
        logger.info("QC kept %d of %d single-cell samples", len(qc_h5ads), len(sc_rows))
        atlas = _run_atlas(pipeline, qc_h5ads)
        _run_compare_conditions(pipeline, atlas, signatures)
        _run_trajectory_and_communication(pipeline, atlas)
        sections = _run_spatial(pipeline, [row for row in rows if row.modality == "spatial"], atlas)
        _run_explorable_atlas(pipeline, atlas, sections)
        _run_bulk(pipeline, [row for row in rows if row.modality == "bulk"], atlas, signatures)
        io.write_yaml(software_versions(), info / VERSIONS_FILE)
        io.write_json(_summary(pipeline, rows, started), info / "run_summary.json")
        pipeline.run("report", run_report, outdir)
        summary = _summary(pipeline, rows, started)
        io.write_json(summary, info / "run_summary.json")
    if pipeline.tasks.reused:
        logger.info("resumed: reused %d task(s): %s", len(pipeline.tasks.reused), ", ".join(pipeline.tasks.reused))
    logger.info(
        "finished: %s in %.0f s; results in %s", ", ".join(pipeline.stages_run), summary["total_seconds"], outdir
    )
    return summary


def _summary(pipeline: _Pipeline, rows: list[SampleRow], started: float) -> dict[str, Any]:
    return {
        "tmeflow_version": __version__,
        "stages": pipeline.stages_run,
        "stage_seconds": {stage: round(seconds, 1) for stage, seconds in pipeline.timings.items()},
        "total_seconds": round(time.perf_counter() - started, 1),
        "tasks_reused": pipeline.tasks.reused,
        "tasks_run": pipeline.tasks.ran,
        "samples": [row.sample for row in rows],
    }


def resolve_params(args: argparse.Namespace) -> dict[str, Any]:
    """Resolve the parameters of ``tmeflow run``.

    Schema defaults, overridden by ``--params-file``, overridden by options given on the command line.
    """
    params = defaults()
    if args.params_file:
        params.update(read_params_file(args.params_file))
    given = {
        name: value for name, value in vars(args).items() if name in params and value is not None
    }  # --signatures too
    params.update(given)
    validate(params, source="tmeflow run")
    for required in ("input", "outdir"):
        if not params.get(required):
            raise TmeflowInputError(
                f"--{required} is required (on the command line or as '{required}' in --params-file)"
            )
    return params


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Run ``tmeflow run``."""
    params = resolve_params(args)
    run_pipeline(params["input"], params["outdir"], params, resume=bool(getattr(args, "resume", False)))
