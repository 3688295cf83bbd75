#!/usr/bin/env python
"""The core path side by side: a hand-written scanpy script vs ``tmeflow qc`` per sample + ``tmeflow integrate``.

Issue 23, item 2: on the same simulated cohort, with the same steps and defaults, tmeflow should take
at most 1.2x the time of the script. Both run as child processes of this one, one after the other,
with single-threaded BLAS / numba (``--threads``), and each is timed (wall, CPU = user + system of
the children, peak RSS of the largest child):

- **scanpy**: ``python core_path.py scanpy SIM OUT``: per sample QC metrics (mito / ribo / hb), the
  fixed filters (min_genes 200, min_counts 500, % mito <= 25, % hb <= 1), Scrublet
  (``sc.pp.scrublet``, expected rate 0.06, 30 PCs, its default kNN), removal of doublets; then
  concatenation, normalise (CP10k) + log1p, batch-aware seurat_v3 HVGs (3,000, on counts), scaling
  (max 10) + PCA (50 components, dense), Harmony on 30 PCs, neighbours (15), Leiden (igraph,
  resolution 1, 2 iterations), UMAP; writes one h5ad.
- **tmeflow**: ``tmeflow qc`` once per sample (a new process each, as Nextflow runs them, with one
  shared numba cache folder under the work folder, as ``nextflow.config`` sets), then
  ``tmeflow integrate`` on the QC'd samples, defaults otherwise. tmeflow's extra outputs are counted
  separately: the seconds its own log reports for the QC figures and tables, the uncorrected UMAP,
  the integration metrics and the outputs (``done in X s`` lines), so "core" = total - extras.

The ratio printed is tmeflow's total (and core) wall and CPU time over the script's. Usage::

    python benchmarks/core_path.py --workdir bench_work/core --n_cells 20000          # quick ratio
    python benchmarks/core_path.py --workdir /scratch/core --n_cells 100000           # issue's size
    python benchmarks/core_path.py --workdir bench_work/core --n_cells 20000 --reuse  # same simulated data

The simulated cohort (``tmeflow simulate``, 12 samples = 4 patients x 3 conditions, 15,000 genes,
6% planted doublets, 5% low-quality cells, single-cell only) is made once and reused with
``--reuse``; it is not timed. At 100k cells a sample has ~8,300 cells, where Scrublet's kNN (among
3x as many points) is PyNNDescent's in scanpy; to develop at 20k cells with samples of that size use
``--n_patients 1`` (3 samples of ~6,700 cells).
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
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREADS = ("OMP_NUM_THREADS", "NUMBA_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
META = ("sample", "patient", "condition", "tissue", "species", "batch")
# tmeflow log lines ("<what> done in X s") that are outputs the scanpy script does not make.
EXTRA_STEPS = re.compile(r"(QC figures|uncorrected|integration metrics|writ|figure|plot)", re.IGNORECASE)
DONE = re.compile(r"INFO (?P<what>.*) done in (?P<seconds>[0-9.]+) s")


# --------------------------------------------------------------------------------------------------
# The hand-written scanpy script (run in a child process: python core_path.py scanpy SIM OUT)


def scanpy_script(sim: Path, out: Path, seed: int = 0) -> dict[str, float]:
    """The core path as a scanpy user writes it; returns seconds per step."""
    import anndata as ad
    import harmonypy
    import numpy as np
    import pandas as pd
    import scanpy as sc

    steps: dict[str, float] = {}

    def lap(name: str, start: float) -> float:
        now = time.perf_counter()
        steps[name] = steps.get(name, 0.0) + now - start
        return now

    sheet = pd.read_csv(sim / "samplesheet.csv")
    sheet = sheet[sheet["modality"] == "sc"]
    kept = []
    for row in sheet.itertuples():
        start = time.perf_counter()
        adata = sc.read_h5ad(sim / row.data)
        adata.obs_names = [f"{row.sample}_{name}" for name in adata.obs_names]
        for column in META:
            adata.obs[column] = str(getattr(row, column))
        adata.var["mito"] = adata.var_names.str.startswith("MT-")
        adata.var["ribo"] = adata.var_names.str.contains(r"^RP[SL]\d")
        adata.var["hb"] = adata.var_names.str.contains(r"^HB(?:A1|A2|B|D|E1|G1|G2|M|Q1|Z)$")
        sc.pp.calculate_qc_metrics(adata, qc_vars=["mito", "ribo", "hb"], percent_top=None, log1p=True, inplace=True)
        obs = adata.obs
        passing = (
            (obs["n_genes_by_counts"] >= 200)
            & (obs["total_counts"] >= 500)
            & (obs["pct_counts_mito"] <= 25)
            & (obs["pct_counts_hb"] <= 1)
        ).to_numpy()
        adata = adata[passing].copy()
        start = lap("qc_filters", start)
        sc.pp.scrublet(adata, expected_doublet_rate=0.06, n_prin_comps=30, random_state=seed, verbose=False)
        adata = adata[~adata.obs["predicted_doublet"].to_numpy(dtype=bool)].copy()
        lap("scrublet", start)
        kept.append(adata)
    start = time.perf_counter()
    adata = ad.concat(kept, merge="same")
    adata.obs_names_make_unique()
    start = lap("concat", start)
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    start = lap("normalise", start)
    sc.pp.highly_variable_genes(adata, flavor="seurat_v3", n_top_genes=3000, layer="counts", batch_key="batch")
    start = lap("hvg", start)
    hvg = adata[:, adata.var["highly_variable"]].copy()
    sc.pp.scale(hvg, max_value=10)
    sc.pp.pca(hvg, n_comps=50, random_state=seed)
    adata.obsm["X_pca"] = hvg.obsm["X_pca"]
    del hvg
    start = lap("pca", start)
    result = harmonypy.run_harmony(
        adata.obsm["X_pca"][:, :30].astype(np.float64),
        adata.obs[["batch"]],
        ["batch"],
        random_state=seed,
        verbose=False,
    )
    corrected = result.Z_corr
    corrected = corrected.cpu().numpy() if hasattr(corrected, "cpu") else np.asarray(corrected)
    adata.obsm["X_pca_harmony"] = (corrected if corrected.shape[0] == adata.n_obs else corrected.T).astype(np.float32)
    start = lap("harmony", start)
    sc.pp.neighbors(adata, n_neighbors=15, use_rep="X_pca_harmony", random_state=seed)
    start = lap("neighbours", start)
    sc.tl.leiden(adata, resolution=1.0, flavor="igraph", n_iterations=2, directed=False, random_state=seed)
    start = lap("leiden", start)
    sc.tl.umap(adata, random_state=seed)
    start = lap("umap", start)
    adata.write_h5ad(out / "scanpy_core.h5ad", compression="lzf")
    lap("write", start)
    return steps


# --------------------------------------------------------------------------------------------------
# The driver


def run_child(command: list[str], env: dict[str, str], log: Path, *, check: bool = True, **popen) -> dict[str, float]:
    """Run one child; its exit status, wall and CPU seconds and peak RSS (its own, from ``wait4``).

    With ``check`` a failed child raises :class:`subprocess.CalledProcessError`; ``popen`` goes to ``Popen``.
    """
    start = time.perf_counter()
    with open(log, "a") as handle:
        process = subprocess.Popen(command, env=env, cwd=ROOT, stdout=handle, stderr=subprocess.STDOUT, **popen)
        _, status, usage = os.wait4(process.pid, 0)
        process.returncode = os.waitstatus_to_exitcode(status)
    if check and process.returncode:
        raise subprocess.CalledProcessError(process.returncode, command)
    return {
        "returncode": process.returncode,
        "wall": time.perf_counter() - start,
        "cpu": usage.ru_utime + usage.ru_stime,
        "peak_rss_gb": usage.ru_maxrss / 1024**2,
    }


def _extras(log: Path) -> dict[str, float]:
    """Seconds of tmeflow's extra outputs, from its ``... done in X s`` log lines."""
    seconds: dict[str, float] = {}
    for line in log.read_text().splitlines():
        match = DONE.search(line)
        if match and EXTRA_STEPS.search(match["what"]):
            what = re.sub(r"[0-9,]+ cells|\(.*?\)|[A-Za-z0-9_]+\.(png|h5ad|tsv)", "", match["what"]).strip()
            seconds[what] = seconds.get(what, 0.0) + float(match["seconds"])
    return seconds


def run_tmeflow(sim: Path, out: Path, env: dict[str, str]) -> dict[str, object]:
    import pandas as pd

    sheet = pd.read_csv(sim / "samplesheet.csv")
    sheet = sheet[sheet["modality"] == "sc"]
    qc_dir, log = out / "qc", out / "tmeflow.log"
    env = dict(env, NUMBA_CACHE_DIR=str(out / ".numba_cache"))  # one cache for every task, as nextflow.config
    qc = {"wall": 0.0, "cpu": 0.0, "peak_rss_gb": 0.0}
    for row in sheet.itertuples():
        meta = [f"--{key}={getattr(row, key)}" for key in META]
        step = run_child(
            [sys.executable, "-m", "tmeflow.cli", "qc", "--input", str(sim / row.data), *meta, "--outdir", str(qc_dir)],
            env,
            log,
        )
        qc = {
            "wall": qc["wall"] + step["wall"],
            "cpu": qc["cpu"] + step["cpu"],
            "peak_rss_gb": max(qc["peak_rss_gb"], step["peak_rss_gb"]),
        }
    inputs = sorted(str(path) for path in qc_dir.glob("*.qc.h5ad"))
    integrate = run_child(
        [sys.executable, "-m", "tmeflow.cli", "integrate", "--input", *inputs, "--outdir", str(out / "integrate")],
        env,
        log,
    )
    return {"qc": qc, "integrate": integrate, "extras_s": _extras(log)}


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "scanpy":
        steps = scanpy_script(Path(sys.argv[2]), Path(sys.argv[3]))
        print(json.dumps({"steps": steps}))
        return 0
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", default="bench_work/core_path")
    parser.add_argument("--n_cells", type=int, default=100_000)
    parser.add_argument("--n_patients", type=int, default=4, help="samples = patients x 3 conditions (4 -> 12)")
    parser.add_argument("--n_genes", type=int, default=15_000)
    parser.add_argument("--doublet_rate", type=float, default=0.06, help="planted doublets (simulate)")
    parser.add_argument("--low_quality_rate", type=float, default=0.05, help="planted low-quality cells (simulate)")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--reuse", action="store_true", help="reuse the simulated cohort in --workdir if present")
    parser.add_argument("--only", choices=["scanpy", "tmeflow"], help="run one side only")
    parser.add_argument(
        "--src", default=str(ROOT / "src"), help="tmeflow sources to time (e.g. an older commit's, exported)"
    )
    args = parser.parse_args(argv)

    work = Path(args.workdir).resolve()
    sim = work / "sim"
    env = dict(os.environ, **{name: str(args.threads) for name in THREADS})
    env["PYTHONPATH"] = os.pathsep.join([str(Path(args.src).resolve()), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    if not (args.reuse and (sim / "samplesheet.csv").exists()):
        shutil.rmtree(sim, ignore_errors=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "tmeflow.cli",
                "simulate",
                "--outdir",
                str(sim),
                "--n_cells",
                str(args.n_cells),
                "--n_patients",
                str(args.n_patients),
                "--n_genes",
                str(args.n_genes),
                "--n_sections",
                "0",
                "--n_bulk",
                "0",
                "--batch_effect",
                "0.4",
                "--doublet_rate",
                str(args.doublet_rate),
                "--low_quality_rate",
                str(args.low_quality_rate),
            ],
            env=env,
            cwd=ROOT,
            check=True,
        )
    result: dict[str, object] = {
        "n_cells": args.n_cells,
        "n_genes": args.n_genes,
        "threads": args.threads,
        "load_at_start": os.getloadavg()[0],
    }
    if args.only != "tmeflow":
        out = work / "scanpy"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        step = run_child(
            [sys.executable, str(Path(__file__).resolve()), "scanpy", str(sim), str(out)], env, out / "scanpy.log"
        )
        lines = [line for line in (out / "scanpy.log").read_text().splitlines() if line.startswith('{"steps"')]
        result["scanpy"] = {**step, "steps": json.loads(lines[-1])["steps"] if lines else {}}
    if args.only != "scanpy":
        out = work / "tmeflow"
        shutil.rmtree(out, ignore_errors=True)
        out.mkdir(parents=True)
        result["tmeflow"] = run_tmeflow(sim, out, env)
    result["load_at_end"] = os.getloadavg()[0]
    if "scanpy" in result and "tmeflow" in result:
        s, t = result["scanpy"], result["tmeflow"]
        wall = t["qc"]["wall"] + t["integrate"]["wall"]
        cpu = t["qc"]["cpu"] + t["integrate"]["cpu"]
        extras = sum(t["extras_s"].values())
        result["ratio_wall"] = wall / s["wall"]
        result["ratio_cpu"] = cpu / s["cpu"]
        result["ratio_core_wall"] = (wall - extras) / s["wall"]
        scrublet_qc = s["steps"].get("qc_filters", 0.0) + s["steps"].get("scrublet", 0.0)
        result["ratio_qc_wall"] = t["qc"]["wall"] / scrublet_qc if scrublet_qc else float("nan")
    (work / "core_path.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
