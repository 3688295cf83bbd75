#!/usr/bin/env python
"""A million cells through ``tmeflow qc`` and ``tmeflow integrate``: time and peak memory per step.

Issue 23, item 3: 1M cells x 20,000 genes through QC + integrate in < 24 GB peak and < 2 h on the 2-core
development VM. Steps:

1. ``tmeflow simulate`` (not part of the budget; reused with ``--reuse``): ``--n_patients`` x 3 conditions
   samples, 20,000 genes (~2,000 detected per cell), the simulator's default doublet and low-quality rates,
   single-cell only.
2. ``tmeflow qc`` once per sample, ``--jobs`` processes at a time (as Nextflow runs them on a machine with that
   many cores), one shared numba cache folder; per process: wall, CPU and peak RSS (``wait4``).
3. ``tmeflow integrate`` on every QC'd sample (defaults: Harmony on ``batch``), one process; its log's
   ``<step> done in X s (peak RSS Y GB)`` lines give the seconds of each step and the process's peak memory so
   far.

BLAS / numba threads are limited to ``--threads`` per process. Results go to ``<workdir>/million_cells.json``
and a Markdown table is printed. Usage::

    python benchmarks/million_cells.py --workdir /scratch/m1                       # simulate, then run
    python benchmarks/million_cells.py --workdir /scratch/m1 --reuse               # same simulated data
    python benchmarks/million_cells.py --workdir bench_work/m50k --n_cells 50000   # a quick check

Disk: ~6 GB of simulated h5ad (gzip), ~2x that of QC'd samples (LZF) and the integrated h5ad, per million cells.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core_path import META, ROOT, THREADS, run_child  # the same child runner and sample columns

STEP = re.compile(r"INFO (?P<what>.*) done in (?P<seconds>[0-9.]+) s \(peak RSS (?P<rss>[0-9.]+) GB\)")


def steps_of(log: Path) -> list[dict[str, object]]:
    """The ``done in`` lines of a tmeflow log: step, seconds, the process's peak RSS so far."""
    return [
        {"step": m["what"], "seconds": float(m["seconds"]), "peak_rss_gb": float(m["rss"])}
        for m in map(STEP.search, log.read_text().splitlines())
        if m
    ]


def simulate(sim: Path, args: argparse.Namespace, env: dict[str, str]) -> None:
    shutil.rmtree(sim, ignore_errors=True)
    command = [sys.executable, "-m", "tmeflow.cli", "simulate", "--outdir", str(sim)]
    command += ["--n_cells", str(args.n_cells), "--n_patients", str(args.n_patients), "--n_genes", str(args.n_genes)]
    command += ["--n_sections", "0", "--n_bulk", "0", "--n_bulk_validation", "0", "--n_immunotherapy", "0"]
    command += ["--n_cell_lines", "0"]
    subprocess.run(command, env=env, cwd=ROOT, check=True)


def run_qc(sim: Path, out: Path, env: dict[str, str], jobs: int) -> dict[str, object]:
    import pandas as pd

    sheet = pd.read_csv(sim / "samplesheet.csv")
    sheet = sheet[sheet["modality"] == "sc"]
    (out / "logs").mkdir(parents=True, exist_ok=True)

    def one(row) -> dict[str, float]:
        meta = [f"--{key}={getattr(row, key)}" for key in META]
        command = [sys.executable, "-m", "tmeflow.cli", "qc", "--input", str(sim / row.data), *meta]
        return run_child([*command, "--outdir", str(out / "qc")], env, out / "logs" / f"qc_{row.sample}.log")

    start = time.perf_counter()
    with ThreadPoolExecutor(jobs) as pool:
        samples = list(pool.map(one, sheet.itertuples()))
    return {
        "samples": len(samples),
        "wall": time.perf_counter() - start,
        "cpu": sum(s["cpu"] for s in samples),
        "peak_rss_gb": max(s["peak_rss_gb"] for s in samples),
        "slowest_sample": max(s["wall"] for s in samples),
    }


def run_integrate(out: Path, env: dict[str, str]) -> dict[str, object]:
    inputs = sorted(str(path) for path in (out / "qc").glob("*.qc.h5ad"))
    log = out / "logs" / "integrate.log"
    log.unlink(missing_ok=True)  # run_child appends; the steps are read from this run's lines only
    command = [sys.executable, "-m", "tmeflow.cli", "integrate", "--input", *inputs, "--outdir", str(out / "integrate")]
    result = run_child(command, env, log)
    return {**result, "steps": steps_of(log)}


def markdown(result: dict) -> str:
    qc, integrate = result["qc"], result["integrate"]
    lines = ["| step | wall (s) | peak RSS (GB) |", "|---|---:|---:|"]
    lines.append(f"| `tmeflow qc` x {qc['samples']} ({result['jobs']} at a time) | {qc['wall']:.0f} | "
                 f"{qc['peak_rss_gb']:.2f} (largest process) |")  # fmt: skip
    for step in integrate["steps"]:
        lines.append(f"| integrate: {step['step']} | {step['seconds']:.0f} | {step['peak_rss_gb']:.2f} (so far) |")
    lines.append(f"| `tmeflow integrate` (process) | {integrate['wall']:.0f} | {integrate['peak_rss_gb']:.2f} |")
    total = qc["wall"] + integrate["wall"]
    lines.append(
        f"| **QC + integrate** | **{total:.0f}** | **{max(qc['peak_rss_gb'], integrate['peak_rss_gb']):.2f}** |"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="bench_work/million_cells")
    parser.add_argument("--n_cells", type=int, default=1_000_000)
    parser.add_argument("--n_patients", type=int, default=20, help="samples = patients x 3 conditions (20 -> 60)")
    parser.add_argument("--n_genes", type=int, default=20_000)
    parser.add_argument("--jobs", type=int, default=2, help="QC processes at a time")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / numba threads per process")
    parser.add_argument("--reuse", action="store_true", help="reuse the simulated cohort in --workdir if present")
    parser.add_argument("--skip_qc", action="store_true", help="reuse the QC'd samples of an earlier run")
    args = parser.parse_args(argv)
    work = Path(args.workdir).resolve()
    sim, out = work / "sim", work / "run"
    env = dict(os.environ, **{name: str(args.threads) for name in THREADS})
    env["NUMBA_CACHE_DIR"] = str(work / ".numba_cache")  # one cache for every task, as nextflow.config
    if not (args.reuse and (sim / "samplesheet.csv").exists()):
        simulate(sim, args, env)
    result: dict[str, object] = {"n_cells": args.n_cells, "n_genes": args.n_genes, "jobs": args.jobs,
                                 "threads": args.threads, "load_at_start": os.getloadavg()[0]}  # fmt: skip
    previous = work / "million_cells.json"
    if args.skip_qc and previous.exists():
        result["qc"] = json.loads(previous.read_text())["qc"]
    else:
        shutil.rmtree(out, ignore_errors=True)
        result["qc"] = run_qc(sim, out, env, args.jobs)
        previous.write_text(json.dumps(result, indent=2))
    shutil.rmtree(out / "integrate", ignore_errors=True)
    result["integrate"] = run_integrate(out, env)
    result["load_at_end"] = os.getloadavg()[0]
    previous.write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
