"""Time ``tmeflow simulate`` at increasing cell numbers: wall time and peak RSS of the child process.

Usage::

    python benchmarks/simulate_scaling.py                      # 10k and 100k cells
    python benchmarks/simulate_scaling.py --cells 10000 --keep # keep the outputs (default: deleted)

Each size runs ``tmeflow simulate`` as a child process (spatial and bulk at their defaults) and reports
``resource.getrusage(RUSAGE_CHILDREN).ru_maxrss`` measured around that one child, so the number is
the peak resident memory of the simulator alone. Results are printed as a TSV table.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def tmeflow_executable() -> list[str]:
    candidate = Path(sys.executable).with_name("tmeflow")
    return [str(candidate)] if candidate.exists() else [sys.executable, "-m", "tmeflow.cli"]


def run_once(n_cells: int, outdir: Path, extra: list[str]) -> dict[str, float]:
    command = [*tmeflow_executable(), "simulate", "--outdir", str(outdir), "--n_cells", str(n_cells), *extra]
    # Peak RSS of a finished child: run each size in its own fresh child of a fresh python, so
    # RUSAGE_CHILDREN's maximum belongs to this size only.
    probe = (
        "import resource, subprocess, sys, time\n"
        "start = time.perf_counter()\n"
        "rc = subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode\n"
        "wall = time.perf_counter() - start\n"
        "print(rc, wall, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)\n"
    )
    result = subprocess.run([sys.executable, "-c", probe, *command], capture_output=True, text=True, check=True)
    rc, wall, maxrss_kib = result.stdout.split()
    if int(rc) != 0:
        raise SystemExit(f"tmeflow simulate failed for {n_cells} cells: {' '.join(command)}")
    size = sum(f.stat().st_size for f in outdir.rglob("*") if f.is_file())
    return {"wall_s": float(wall), "peak_rss_mib": int(maxrss_kib) / 1024, "output_mib": size / 2**20}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--workdir", type=Path, default=None, help="Where outputs go (default: a temporary folder).")
    parser.add_argument("--keep", action="store_true", help="Keep the simulated cohorts.")
    args, extra = parser.parse_known_args(argv)
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="tmeflow_simulate_bench_"))
    print("n_cells\twall_s\tpeak_rss_mib\toutput_mib\tcells_per_s")
    for n_cells in args.cells:
        outdir = workdir / f"cells_{n_cells}"
        shutil.rmtree(outdir, ignore_errors=True)
        stats = run_once(n_cells, outdir, extra)
        print(
            f"{n_cells}\t{stats['wall_s']:.1f}\t{stats['peak_rss_mib']:.0f}\t{stats['output_mib']:.0f}\t"
            f"{n_cells / stats['wall_s']:.0f}",
            flush=True,
        )
        if not args.keep:
            shutil.rmtree(outdir, ignore_errors=True)
    if not args.keep and args.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
