"""Time and memory of the CPU default deconvolution (``poisson``) on a Visium-sized section.

A simulated cohort of ``--n_cells`` scRNA cells (the reference, planted labels) and one section of
``--n_spots`` spots over ``--n_genes`` genes; reports seconds per step and the peak RSS.

    python benchmarks/deconvolution_speed.py [--n_cells 20000] [--n_spots 4000] [--n_genes 15000]
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from tmeflow import deconvolve as dc
from tmeflow.cli import main as tmeflow
from tmeflow.readers import read_spatial


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--n_cells", type=int, default=20000)
    parser.add_argument("--n_spots", type=int, default=4000)
    parser.add_argument("--n_genes", type=int, default=15000)
    parser.add_argument("--method", default="poisson")
    parser.add_argument("--outdir", default="bench_work/deconv_speed")
    args = parser.parse_args()
    cohort = Path(args.outdir)
    if not (cohort / "samplesheet.csv").exists():
        assert (
            tmeflow(
                [
                    "simulate",
                    "--outdir",
                    str(cohort),
                    "--n_cells",
                    str(args.n_cells),
                    "--n_patients",
                    "3",
                    "--n_genes",
                    str(args.n_genes),
                    "--n_sections",
                    "1",
                    "--n_spots",
                    str(args.n_spots),
                    "--n_bulk",
                    "0",
                    "--heldout_sections",
                    "true",
                ]
            )
            == 0
        )
    started = time.perf_counter()
    parts = [ad.read_h5ad(p) for p in sorted((cohort / "sc").glob("*.h5ad"))]
    reference = ad.concat(parts, index_unique="-")
    reference.obs["cell_type"] = reference.obs["true_cell_type"].astype(str)
    section_dir = next((cohort / "spatial").iterdir())
    section = read_spatial(section_dir / "outs", sample=section_dir.name)
    loaded = time.perf_counter()
    settings = dc.DeconvolutionSettings.defaults().replace(deconvolution_method=args.method)
    _, proportions, info = dc.deconvolve(section, reference, settings)
    done = time.perf_counter()
    truth = pd.read_csv(section_dir / "truth_spots.tsv", sep="\t", index_col=0).loc[proportions.index]
    r = {
        t: float(np.corrcoef(proportions[t], truth[f"true_prop_{t}"])[0, 1])
        for t in proportions
        if truth[f"true_prop_{t}"].mean() >= 0.05
    }
    peak_gb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2
    print(
        f"{args.method}: {section.n_obs} spots x {reference.n_obs} reference cells x {reference.n_vars} genes: "
        f"load {loaded - started:.1f} s, deconvolution + marker baseline {done - loaded:.1f} s, "
        f"peak RSS {peak_gb:.2f} GB; "
        f"{info['n_genes']} genes; min Pearson r vs planted (types >= 5%) {min(r.values()):.3f}"
    )


if __name__ == "__main__":
    main()
