"""Wall time of ``tmeflow run`` on the bundled test cohort, per stage and in total.

Usage::

    python benchmarks/test_cohort_speed.py [--outdir bench_work/test_cohort]
    python benchmarks/test_cohort_speed.py --compare OLD/pipeline_info/run_summary.json

Runs ``tmeflow run --params-file assets/test/params.yaml`` (6 scRNA samples, 1,800 cells, one section
of 400 spots, 60 bulk samples; every stage) as a child process with single-threaded BLAS / numba,
then prints the seconds of every stage from ``pipeline_info/run_summary.json`` (imports included in
the first stage that needs them, as a user sees it), the run total, the child's wall and CPU time
(CPU time depends less on other jobs than wall time) and peak RSS. With ``--compare`` a second
column shows another run's summary (e.g. one made before a change).
Target (issue 23): under 90 s on the 2-core development VM. Not a timed test: seconds depend on the
machine and on what else runs on it (say the load average when recording numbers).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREADS = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def table(summary: dict, before: dict | None) -> str:
    stages = list(summary["stage_seconds"])
    if before:
        stages += [s for s in before["stage_seconds"] if s not in stages]
    lines = [
        "| stage | before (s) | after (s) |" if before else "| stage | seconds |",
        "|---|---:|---:|" if before else "|---|---:|",
    ]
    for stage in stages:
        now = summary["stage_seconds"].get(stage, float("nan"))
        if before:
            lines.append(f"| {stage} | {before['stage_seconds'].get(stage, float('nan')):.1f} | {now:.1f} |")
        else:
            lines.append(f"| {stage} | {now:.1f} |")
    if before:
        lines.append(f"| **total** | {before['total_seconds']:.1f} | {summary['total_seconds']:.1f} |")
    else:
        lines.append(f"| **total** | {summary['total_seconds']:.1f} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outdir", default="bench_work/test_cohort")
    parser.add_argument("--compare", help="run_summary.json of another run, shown as 'before'")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / OpenMP / numba threads of the run")
    args = parser.parse_args(argv)

    outdir = Path(args.outdir).resolve()
    shutil.rmtree(outdir, ignore_errors=True)
    env = dict(os.environ, **{name: str(args.threads) for name in THREADS})
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT / "src"), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    command = [
        sys.executable,
        "-m",
        "tmeflow.cli",
        "run",
        "--params-file",
        str(ROOT / "assets/test/params.yaml"),
        "--outdir",
        str(outdir),
    ]
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run(command, cwd=ROOT, env=env, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    peak_mib, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
    summary = json.loads((outdir / "pipeline_info" / "run_summary.json").read_text())
    before = json.loads(Path(args.compare).read_text()) if args.compare else None
    print(table(summary, before))
    print(
        f"\nwall {wall:.1f} s (process start and imports included), CPU {cpu:.1f} s (the run and MultiQC's "
        f"subprocess), peak RSS {peak_mib:.0f} MiB, load average {load:.2f} at start and "
        f"{os.getloadavg()[0]:.2f} at the end, {args.threads} thread(s)"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
