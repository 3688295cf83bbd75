"""Scaling benchmark of ``tmeflow cnv`` on a simulated cohort (default 100,000 cells).

Usage::

    python benchmarks/cnv_scaling.py --n_cells 100000 --n_patients 8 --workdir bench_work/cnv [--n_jobs 2]

Simulates the cohort with ``tmeflow simulate`` (not timed; reused when ``workdir/sim`` exists),
log-normalises it, then times the CNV stage's steps: gene placement, infercnvpy inference, CNV
clustering and malignant calls, arm summary, and writing every output (h5ad, tables, plots).
Prints a table of seconds per step, the peak RSS and the malignant-call F1 against the truth.
Target: under 3 minutes for 100,000 cells on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n_cells", type=int, default=100_000)
    parser.add_argument("--n_patients", type=int, default=8)
    parser.add_argument("--workdir", default="bench_work/cnv")
    parser.add_argument("--n_jobs", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import anndata as ad
    import numpy as np
    import scanpy as sc

    from tmeflow import cnv
    from tmeflow.cli import main as tmeflow_main
    from tmeflow.log import setup_logging
    from tmeflow.params import group_properties

    workdir = Path(args.workdir)
    sim = workdir / "sim"
    if not (sim / "truth.json").is_file():
        code = tmeflow_main(
            [
                "simulate",
                "--outdir",
                str(sim),
                "--n_cells",
                str(args.n_cells),
                "--n_patients",
                str(args.n_patients),
                "--seed",
                str(args.seed),
                "--n_bulk",
                "0",
                "--n_spots",
                "50",
            ]
        )
        if code:
            return code
    setup_logging("cnv")
    timings: dict[str, float] = {}

    def step(name, func):
        start = time.perf_counter()
        result = func()
        timings[name] = time.perf_counter() - start
        print(f"{name}: {timings[name]:.1f} s", file=sys.stderr, flush=True)
        return result

    def load():
        adata = ad.concat(
            [ad.read_h5ad(p) for p in sorted((sim / "sc").glob("*.h5ad"))], index_unique="-", merge="same"
        )
        adata.obs["cell_type"] = adata.obs["true_cell_type"].astype(str).replace({"malignant": "epithelial"})
        adata.obs["compartment"] = adata.obs["true_compartment"].astype(str)
        adata.layers["counts"] = adata.X.copy()
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        return adata

    adata = step("load + log-normalise (not part of the stage)", load)
    params = {name: spec["default"] for name, spec in group_properties("cnv_options").items()}
    params.update(seed=args.seed, cnv_window=51, cnv_step=5)  # the simulator has ~100 genes per arm
    total_start = time.perf_counter()
    settings = cnv.CnvSettings.from_params(params)
    step("place genes", lambda: cnv.prepare(adata, settings))
    result = step(
        "inference + clustering + calls + arm summary", lambda: cnv.call_malignant(adata, settings, n_jobs=args.n_jobs)
    )
    step("write outputs", lambda: cnv.write_outputs(adata, result, workdir / "cnv", params))
    total = time.perf_counter() - total_start

    truth = adata.obs["true_malignant"].astype(bool).to_numpy()
    called = adata.obs["malignant"].to_numpy(dtype=bool)
    f1 = 2 * np.sum(truth & called) / (truth.sum() + called.sum())
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        json.dumps(
            {
                "n_cells": int(adata.n_obs),
                "n_genes": int(adata.n_vars),
                "n_jobs": args.n_jobs,
                "stage_seconds": round(total, 1),
                "steps": {k: round(v, 1) for k, v in timings.items()},
                "peak_rss_gb": round(peak_gb, 2),
                "malignant_f1": round(float(f1), 3),
            },
            indent=2,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
