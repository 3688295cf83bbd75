#!/usr/bin/env python
"""Time and peak memory of ``tmeflow integrate`` on a large simulated cohort.

Default: 200,000 cells in 12 samples (4 patients x 3 conditions, 2 batches). Steps:

1. ``tmeflow simulate`` (single-cell only) into ``<workdir>/sim``;
2. QC of every sample without doublet detection (``tmeflow qc`` per sample, in this process);
3. ``tmeflow integrate`` in a child process, timed, with its peak RSS read from
   ``getrusage(RUSAGE_CHILDREN)`` (Linux reports kilobytes).

Results go to ``<workdir>/integrate_scaling.json`` and stdout. Usage::

    python benchmarks/integrate_scaling.py --workdir /scratch/bench            # 200k cells
    python benchmarks/integrate_scaling.py --workdir bench_work/integrate --n_cells 20000    # quick check
    python benchmarks/integrate_scaling.py --workdir bench_work/integrate --batch_correction scvi --scvi_max_epochs 50

Needs ~25 GB of disk-free space and, by the design of the integrate stage (sparse PCA, counts +
log-normalised sparse matrices, on-disk concatenation), a few GB of memory at 200k cells.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workdir", required=True)
    parser.add_argument("--n_cells", type=int, default=200_000)
    parser.add_argument("--n_patients", type=int, default=4, help="samples = patients x 3 conditions (default 4 -> 12)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch_correction", default="harmony", choices=["harmony", "scvi", "none"])
    parser.add_argument("--scvi_max_epochs", type=int, default=50)
    parser.add_argument("--metrics_max_cells", type=int, default=20000)
    parser.add_argument(
        "--reuse", action="store_true", help="reuse the simulated and QC'd cohort in --workdir if present"
    )
    args = parser.parse_args(argv)

    import pandas as pd

    from tmeflow.log import setup_logging
    from tmeflow.params import defaults
    from tmeflow.qc import run_qc
    from tmeflow.simulate import SimConfig, run_simulate

    setup_logging("benchmark")
    work = Path(args.workdir)
    sim, qc_dir, out = work / "sim", work / "qc", work / "integrate"
    timings: dict[str, float] = {}
    if not (args.reuse and (sim / "samplesheet.csv").exists()):
        start = time.perf_counter()
        config = SimConfig(
            outdir=sim,
            n_cells=args.n_cells,
            n_patients=args.n_patients,
            seed=args.seed,
            batch_effect=0.4,
            n_sections=0,
            n_bulk=0,
        )
        run_simulate(config)
        timings["simulate_s"] = time.perf_counter() - start
    sheet = pd.read_csv(sim / "samplesheet.csv")
    sheet = sheet[sheet["modality"] == "sc"]
    qc_paths = [qc_dir / f"{s}.qc.h5ad" for s in sheet["sample"]]
    if not (args.reuse and all(p.exists() for p in qc_paths)):
        params = defaults()
        params["doublet_method"] = "none"
        start = time.perf_counter()
        for row in sheet.itertuples():
            meta = {k: getattr(row, k) for k in ("sample", "patient", "condition", "tissue", "species", "batch")}
            run_qc(sim / row.data, meta, qc_dir, params)
        timings["qc_s"] = time.perf_counter() - start
    command = [sys.executable, "-m", "tmeflow.cli", "integrate", "--input", *map(str, qc_paths), "--outdir", str(out),
               "--batch_correction", args.batch_correction, "--scvi_max_epochs", str(args.scvi_max_epochs),
               "--metrics_max_cells", str(args.metrics_max_cells), "--seed", str(args.seed)]  # fmt: skip
    start = time.perf_counter()
    completed = subprocess.run(command, check=False)
    timings["integrate_s"] = time.perf_counter() - start
    peak_gb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024**2
    result = {
        "n_cells": args.n_cells,
        "n_samples": len(qc_paths),
        "batch_correction": args.batch_correction,
        "exit_code": completed.returncode,
        "integrate_peak_rss_gb": round(peak_gb, 2),
        **{k: round(v, 1) for k, v in timings.items()},
    }
    (work / "integrate_scaling.json").write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return completed.returncode


if __name__ == "__main__":
    sys.exit(main())
