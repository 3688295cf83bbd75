"""Deconvolution against planted truth on simulated sections that carry what real tissue has.

For each scenario (spatial platform-effect SD, held-out patient, UMI per cell in a spot) a cohort is
simulated, the scRNA samples (planted labels) form the reference, and each method deconvolves the
section; the table gives Pearson's r against the planted proportions for every type with mean
planted proportion >= 5%, and the run time.

    python benchmarks/deconvolution_simulated.py [--methods nnls,poisson] [--n_spots 1000]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd

from tmeflow import deconvolve as dc
from tmeflow.cli import main as tmeflow
from tmeflow.readers import read_spatial

SCENARIOS = {  # name: (platform SD, held-out patient, UMI per cell)
    "no platform effect": (0.0, False, 800.0),
    "platform SD 0.7": (0.7, False, 800.0),
    "platform SD 0.7 + held-out patient": (0.7, True, 800.0),
    "platform SD 0.7 + held-out patient + low depth": (0.7, True, 100.0),
}


def simulate(outdir: Path, platform_sd: float, heldout: bool, umi: float, n_spots: int, seed: int) -> Path:
    if not (outdir / "samplesheet.csv").exists():
        assert (
            tmeflow(
                [
                    "simulate",
                    "--outdir",
                    str(outdir),
                    "--n_cells",
                    "2400",
                    "--n_patients",
                    "2",
                    "--n_genes",
                    "3000",
                    "--n_sections",
                    "1",
                    "--n_spots",
                    str(n_spots),
                    "--n_bulk",
                    "0",
                    "--seed",
                    str(seed),
                    "--spatial_platform_sd",
                    str(platform_sd),
                    "--heldout_sections",
                    str(heldout).lower(),
                    "--spot_umi_per_cell",
                    str(umi),
                ]
            )
            == 0
        )
    return outdir


def reference(cohort: Path) -> ad.AnnData:
    parts = [ad.read_h5ad(p) for p in sorted((cohort / "sc").glob("*.h5ad"))]
    ref = ad.concat(parts, index_unique="-")
    ref.obs["cell_type"] = ref.obs["true_cell_type"].astype(str)
    ref.layers["counts"] = ref.X.copy()
    return ref


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="nnls,poisson")
    parser.add_argument("--n_spots", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--outdir", default="bench_work/deconv_sim")
    args = parser.parse_args()
    rows = []
    for k, (name, (sd, heldout, umi)) in enumerate(SCENARIOS.items()):
        cohort = simulate(Path(args.outdir) / f"scenario{k}", sd, heldout, umi, args.n_spots, args.seed)
        section_dir = next((cohort / "spatial").iterdir())
        section = read_spatial(section_dir / "outs", sample=section_dir.name)
        truth = pd.read_csv(section_dir / "truth_spots.tsv", sep="\t", index_col=0).loc[section.obs_names]
        ref = reference(cohort)
        for method in args.methods.split(","):
            started = time.perf_counter()
            settings = dc.DeconvolutionSettings.defaults().replace(deconvolution_method=method)
            _, proportions, _ = dc.deconvolve(section.copy(), ref, settings)
            seconds = time.perf_counter() - started
            for cell_type in proportions.columns:
                planted = truth[f"true_prop_{cell_type}"]
                if planted.mean() >= 0.05:
                    r = float(np.corrcoef(proportions[cell_type], planted)[0, 1])
                    rows.append(
                        {
                            "scenario": name,
                            "method": method,
                            "cell_type": cell_type,
                            "pearson_r": round(r, 3),
                            "seconds": round(seconds, 1),
                        }
                    )
    table = pd.DataFrame(rows)
    Path(args.outdir).mkdir(parents=True, exist_ok=True)
    table.to_csv(Path(args.outdir) / "pearson_vs_planted.tsv", sep="\t", index=False)
    summary = table.groupby(["scenario", "method"], sort=False).agg(
        min_r=("pearson_r", "min"), mean_r=("pearson_r", "mean"), seconds=("seconds", "first")
    )
    print(summary.round(3).to_string())
    print(
        table.pivot_table(index=["scenario", "cell_type"], columns="method", values="pearson_r", sort=False).to_string()
    )


if __name__ == "__main__":
    main()
