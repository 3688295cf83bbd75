#!/usr/bin/env python
"""Scrublet with exact vs approximate kNN: CPU time and doublet-call agreement per sample (issue 23).

Usage::

    python benchmarks/scrublet_knn.py bench_work/core20k/sim     # a `tmeflow simulate` folder

For every single-cell sample of the simulated cohort: tmeflow's QC metrics and fixed filters, then
:func:`scanpy.pp.scrublet` (expected rate 0.06, 30 PCs, seed 0) twice on the same cells, once with
the exact brute-force kNN tmeflow now uses (``use_approx_neighbors=False``) and once with scanpy's
default (PyNNDescent above ~2,700 cells), with the numba cache of ``tmeflow.numba_cache`` enabled
(as in a ``tmeflow qc`` task). Prints one JSON line per sample: cells, CPU seconds of each, cells
called by each and by both, the fraction of cells called the same, the Spearman correlation of the
scores and, against the simulator's planted doublets (``obs['true_qc']``), each call's recall and
precision.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    sim = Path(argv[0])
    from tmeflow import numba_cache

    numba_cache.enable(numba_cache.default_cache_dir(sim))
    import anndata as ad
    import pandas as pd
    import scanpy as sc

    from tmeflow.qc import QcSettings, compute_qc_metrics, filter_reasons

    settings = QcSettings.defaults()
    sheet = pd.read_csv(sim / "samplesheet.csv")
    for row in sheet[sheet["modality"] == "sc"].itertuples():
        adata = ad.read_h5ad(sim / row.data)
        compute_qc_metrics(adata, row.species)
        adata = adata[(filter_reasons(adata.obs, settings) == "").to_numpy()].copy()
        runs = {}
        for name, flag in (("exact", False), ("approx", None)):
            scored = adata.copy()
            started = time.process_time()
            sc.pp.scrublet(
                scored,
                expected_doublet_rate=0.06,
                n_prin_comps=30,
                random_state=0,
                verbose=False,
                use_approx_neighbors=flag,
            )
            runs[name] = (
                time.process_time() - started,
                scored.obs["doublet_score"].to_numpy(),
                scored.obs["predicted_doublet"].to_numpy(dtype=bool),
            )
        exact, approx = runs["exact"][2], runs["approx"][2]
        line = {
            "sample": row.sample,
            "cells": int(adata.n_obs),
            "cpu_exact_s": round(runs["exact"][0], 1),
            "cpu_approx_s": round(runs["approx"][0], 1),
            "called_exact": int(exact.sum()),
            "called_approx": int(approx.sum()),
            "called_both": int((exact & approx).sum()),
            "same_call": round(float((exact == approx).mean()), 5),
            "score_spearman": round(
                float(pd.Series(runs["exact"][1]).corr(pd.Series(runs["approx"][1]), method="spearman")), 5
            ),
        }
        if "true_qc" in adata.obs:
            planted = adata.obs["true_qc"].astype(str).to_numpy() == "doublet"
            for name, called in (("exact", exact), ("approx", approx)):
                line[f"recall_{name}"] = round(float(called[planted].mean()), 3) if planted.any() else None
                line[f"precision_{name}"] = round(float(planted[called].mean()), 3) if called.any() else None
        print(json.dumps(line), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
