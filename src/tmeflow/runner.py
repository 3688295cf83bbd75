"""``tmeflow run``: the embedded single-machine runner.

Runs the same stages as the Nextflow pipeline, in dependency order, in one process, and writes the
same output layout (stage X under ``<outdir>/X/``, as ``conf/modules.config`` publishes them). It is
a convenience for small cohorts and laptops; Nextflow is how tmeflow scales out.
"""

from __future__ import annotations

import argparse
import csv
import time
from importlib import metadata
from pathlib import Path
from typing import Any

from . import __version__, io
from .errors import TmeflowInputError
from .log import get_logger
from .params import defaults, read_params_file, validate
from .samplesheet import SampleRow, read_samplesheet

logger = get_logger(__name__)

# Packages whose versions the report lists (as the Nextflow modules' versions.yml do).
REPORTED_PACKAGES = ("tmeflow", "scanpy", "anndata", "numpy", "pandas", "scipy", "scikit-learn")


class _Pipeline:
    """Runs stages and records what ran, for ``pipeline_info/run_summary.json``."""

    def __init__(self, outdir: Path, params: dict[str, Any]) -> None:
        self.outdir = outdir
        self.params = params
        self.stages_run: list[str] = []
        self.timings: dict[str, float] = {}

    def stage_dir(self, stage: str) -> Path:
        return self.outdir / stage

    def record(self, stage: str, started: float) -> None:
        if stage not in self.stages_run:
            self.stages_run.append(stage)
        self.timings[stage] = self.timings.get(stage, 0.0) + time.perf_counter() - started


def _run_sc_qc(pipeline: _Pipeline, rows: list[SampleRow]) -> list[Path]:
    from .qc import run_qc

    h5ads = []
    for row in rows:
        started = time.perf_counter()
        result = run_qc(row.data, row.meta(), pipeline.stage_dir("qc"), pipeline.params)
        pipeline.record("qc", started)
        if result.h5ad is not None:
            h5ads.append(result.h5ad)
    return h5ads


def _write_samplesheet(rows: list[SampleRow], path: Path) -> None:
    columns = list(SampleRow.__dataclass_fields__)
    with io.atomic_path(path) as tmp, open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=columns)
        writer.writeheader()
        for row in rows:
            writer.writerow({column: getattr(row, column) or "" for column in columns})


def software_versions() -> dict[str, str]:
    return {name: (__version__ if name == "tmeflow" else metadata.version(name)) for name in REPORTED_PACKAGES}


def run_pipeline(samplesheet: str | Path, outdir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Run every stage on the samplesheet's cohort; return the run summary."""
    outdir = Path(outdir)
    rows = read_samplesheet(samplesheet)
    sc_rows = [row for row in rows if row.modality == "sc"]
    if not sc_rows:
        raise TmeflowInputError("the samplesheet has no single-cell (modality sc) samples", file=samplesheet, column="modality")
    info = outdir / "pipeline_info"
    _write_samplesheet(rows, info / "samplesheet.valid.csv")
    io.write_json(params, info / "params.json")
    pipeline = _Pipeline(outdir, params)
    started = time.perf_counter()
    qc_h5ads = _run_sc_qc(pipeline, sc_rows)
    logger.info("QC kept %d of %d single-cell samples", len(qc_h5ads), len(sc_rows))
    summary = {
        "tmeflow_version": __version__,
        "stages": pipeline.stages_run,
        "stage_seconds": {stage: round(seconds, 1) for stage, seconds in pipeline.timings.items()},
        "total_seconds": round(time.perf_counter() - started, 1),
        "samples": [row.sample for row in rows],
    }
    io.write_yaml(software_versions(), info / "software_versions.yml")
    io.write_json(summary, info / "run_summary.json")
    logger.info("finished: %s in %.0f s; results in %s", ", ".join(pipeline.stages_run), summary["total_seconds"], outdir)
    return summary


def resolve_params(args: argparse.Namespace) -> dict[str, Any]:
    """Schema defaults, overridden by ``--params-file``, overridden by options given on the command line."""
    params = defaults()
    if args.params_file:
        params.update(read_params_file(args.params_file))
    given = {name: value for name, value in vars(args).items() if name in params and value is not None}
    params.update(given)
    validate(params, source="tmeflow run")
    for required in ("input", "outdir"):
        if not params.get(required):
            raise TmeflowInputError(f"--{required} is required (on the command line or as '{required}' in --params-file)")
    return params


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    params = resolve_params(args)
    run_pipeline(params["input"], params["outdir"], params)
