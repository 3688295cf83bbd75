"""Univariate Cox models: the numpy port (:mod:`tmeflow.coxph`) against lifelines ``CoxPHFitter``.

Usage::

    python benchmarks/cox_univariate.py [--samples 40] [--models 60]

Fits ``--models`` univariate Cox models (half a continuous score, half a high/low group; Efron ties,
PH test with the km transform) on simulated cohorts of ``--samples`` subjects, as the bulk stage does
per feature and endpoint, with :func:`tmeflow.survival.cox_regression` by both methods, and prints the
seconds per model (process CPU time, less sensitive to other jobs than wall time) and the largest
relative difference over every reported number (coef, HR and CI, SE, z, p, PH p, concordance, LR).
"""

from __future__ import annotations

import argparse
import logging
import time

import numpy as np
import pandas as pd

from tmeflow.survival import cox_regression

COLUMNS = ["coef", "hr", "hr_lower", "hr_upper", "se", "z", "p", "ph_p"]


def cohorts(samples: int, models: int) -> list[pd.DataFrame]:
    """Simulated cohorts (seeded): exponential times with a log-hazard of 0.4 x, 30% censored, times in months."""
    out = []
    for seed in range(models):
        rng = np.random.default_rng(seed)
        x = rng.normal(size=samples) if seed % 2 == 0 else (rng.random(samples) > 0.5).astype(float)
        time_ = np.ceil(rng.exponential(60 * np.exp(-0.4 * x)))
        out.append(pd.DataFrame({"time": time_, "event": (rng.random(samples) > 0.3).astype(float), "x": x}))
    return out


def numbers(result) -> np.ndarray:
    """Every number of a CoxResult that the bulk tables report."""
    return np.r_[result.table.iloc[0][COLUMNS].to_numpy(float), result.concordance, result.lr_statistic, result.lr_p]


def main(argv: list[str] | None = None) -> int:
    """Time both methods and print the agreement."""
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=40)
    parser.add_argument("--models", type=int, default=60)
    args = parser.parse_args(argv)
    logging.disable(logging.WARNING)
    data = cohorts(args.samples, args.models)
    cox_regression(data[0], "time", "event", ["x"], method="lifelines")  # imports outside the timing
    results, seconds = {}, {}
    for method in ("auto", "lifelines"):
        started = time.process_time()
        results[method] = [numbers(cox_regression(d, "time", "event", ["x"], method=method)) for d in data]
        seconds[method] = (time.process_time() - started) / len(data)
    a, b = np.array(results["auto"]), np.array(results["lifelines"])
    same_nan = np.array_equal(np.isnan(a), np.isnan(b))
    finite = ~np.isnan(b)
    rel = np.abs(a[finite] - b[finite]) / np.maximum(np.abs(b[finite]), 1e-300)
    rel[a[finite] == b[finite]] = 0
    print(
        f"{args.models} models of {args.samples} subjects: numpy {1e3 * seconds['auto']:.1f} ms CPU per model, "
        f"lifelines {1e3 * seconds['lifelines']:.1f} ms ({seconds['lifelines'] / seconds['auto']:.0f}x); "
        f"max relative difference {rel.max():.1e}, same NaNs: {same_nan}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
