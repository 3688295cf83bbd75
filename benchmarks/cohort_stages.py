#!/usr/bin/env python
"""The cohort stages after integration on a large atlas: time and peak memory of each (issue 23, item 3).

Issue 23 asks for every cohort stage (annotate, cnv, subcluster, composition, de, pathways, trajectory,
communication, atlas; here also bulk, which reads the atlas as its reference) to be measured at a million cells.
Making a million integrated cells takes ~2 h here (``million_cells.py``), so this script builds large inputs from a
smaller run by **tiling**: an h5ad is repeated ``--tiles`` times, in row blocks (one copy in memory): cell names get
``-t<k>``; each copy's log-normalised values and dense embeddings get 1% Gaussian jitter (no two cells identical,
so kNN graphs and ranks behave as on distinct cells); raw counts, sparse embeddings and cell graphs
(block-diagonal) are repeated; samples, patients, conditions and clusters are the source's. A 50k-cell atlas of 60
samples x 20 is 1M cells in the same 60 samples, with the same genes and non-zeros per cell.

Each stage runs as ``tmeflow run`` chains them (annotate -> cnv -> subcluster -> composition, de, pathways,
trajectory, communication -> atlas -> bulk, on the test cohort's bulk samples), defaults, in a child process with
``--threads`` BLAS / numba threads, its address space limited to ``--max_memory_gb`` (a stage that needs more
fails with a MemoryError instead of waking the VM's OOM killer) and its time to ``--timeout`` seconds (exit
status 124). Per stage: exit status, wall and CPU seconds, peak RSS (``wait4``).

- **Chain** (``--atlas`` only): the integrated atlas is tiled; every later input is the previous stage's output.
- **Per stage** (``--base``: the workdir of a finished chain run at the source size, e.g. with ``--tiles 1``):
  each stage's inputs are tiled from the base run's files, so a stage is measured at the large size without
  the stages before it running there (at 1M cells CNV inference alone takes hours on this VM).

h5ad files no later stage reads are deleted (``--keep`` keeps them): a tiled 1M-cell atlas is ~17 GB. Results go
to ``<workdir>/cohort_stages.json`` and a Markdown table is printed. Usage::

    python benchmarks/million_cells.py --workdir bench_work/m50k --n_cells 50000       # a 50k-cell atlas
    python benchmarks/cohort_stages.py --atlas bench_work/m50k/run/integrate/integrated.h5ad --tiles 1 \
        --workdir bench_work/cs50k --keep                                               # chain at 50k
    python benchmarks/cohort_stages.py --atlas bench_work/m50k/run/integrate/integrated.h5ad --tiles 20 \
        --base bench_work/cs50k --workdir bench_work/cs1m --stages annotate,de,pathways   # per stage at 1M
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import time
from pathlib import Path

from core_path import ROOT, THREADS, run_child

STAGES = (
    "annotate", "cnv", "subcluster", "composition", "de", "pathways", "trajectory", "communication", "atlas", "bulk"
)  # fmt: skip
BULK_COHORT = ROOT / "assets" / "test" / "cohort" / "bulk"  # its 60 samples, the atlas as the reference
JITTER = 0.01
DE_OTHER_TABLES = ("de_skipped.tsv", "de_summary_mqc.tsv")  # de's tables that are not a contrast's results


def tile(source: Path, target: Path, tiles: int, seed: int, graphs: Path | None = None) -> None:
    """Write ``tiles`` jittered copies of the h5ad ``source`` as one h5ad at ``target``, one copy in memory.

    ``X`` (log-normalised) and dense embeddings are jittered; raw counts, sparse embeddings (``X_cnv``) and the
    cell-cell graphs (block-diagonal; from ``graphs`` when the source has none) are repeated; ``var`` and
    ``uns`` are the source's. Matrices are LZF-compressed (fast to write; a gzip source, e.g. ``subclustered.h5ad``,
    makes the atlas stage recompress what a real run would copy).
    """
    import anndata as ad
    import h5py
    import numpy as np
    import pandas as pd
    import scipy.sparse as sp
    from anndata.io import read_elem

    from tmeflow import io

    rng = np.random.default_rng(seed)
    with h5py.File(source, "r") as handle:
        x = sp.csr_matrix(read_elem(handle["X"]))
        layers = {key: read_elem(handle["layers"][key]) for key in handle.get("layers", {})}
        obs, var, uns = read_elem(handle["obs"]), read_elem(handle["var"]), read_elem(handle["uns"])
        obsm = {key: read_elem(handle["obsm"][key]) for key in handle.get("obsm", {})}
        obsp = {key: read_elem(handle["obsp"][key]) for key in handle.get("obsp", {})}
    if not obsp and graphs is not None:  # a chain run's inputs made by an earlier version of this script
        with h5py.File(graphs, "r") as handle:
            obsp = {key: read_elem(handle["obsp"][key]) for key in handle.get("obsp", {})}
        obsp = {key: value for key, value in obsp.items() if value.shape == (len(obs), len(obs))}

    def jittered_x(copy: int):
        block = x.copy()
        if copy:
            block.data *= (1 + JITTER * rng.standard_normal(block.nnz)).astype(block.data.dtype)
        return block

    def tiled(value, copy_jitter: bool):
        if sp.issparse(value):
            return sp.vstack([value] * tiles, format="csr")
        value = np.asarray(value)
        copies = [value] + [
            (value + JITTER * np.nanstd(value, axis=0) * rng.standard_normal(value.shape)).astype(value.dtype)
            if copy_jitter and value.dtype.kind == "f"
            else value
            for _ in range(tiles - 1)
        ]
        return np.concatenate(copies)

    with io.atomic_path(target) as tmp, h5py.File(tmp, "w") as handle:
        io.write_csr_blocks(handle, "X", (jittered_x(copy) for copy in range(tiles)))
        ad.io.write_elem(handle, "layers", {})
        for key, value in layers.items():
            io.write_csr_blocks(handle, f"layers/{key}", (sp.csr_matrix(value) for _ in range(tiles)))
        cells = pd.concat([obs.set_axis(obs.index + f"-t{copy}") for copy in range(tiles)])
        embeddings = {
            key: tiled(value, copy_jitter=True) for key, value in obsm.items() if not isinstance(value, pd.DataFrame)
        }
        graphs = {key: sp.block_diag([value] * tiles, format="csr") for key, value in obsp.items()}
        io.write_h5ad_elements(handle, obs=cells, var=var, obsm=embeddings, obsp=graphs, uns=uns)


def commands(work: Path) -> dict[str, tuple[list[str], list[Path]]]:
    """Each stage's ``tmeflow`` arguments and the input files it needs (read when the stage is about to run)."""
    out = work / "stages"
    integrated = work / "integrated.h5ad"
    annotated, cnv = out / "annotate" / "annotated.h5ad", out / "cnv" / "cnv.h5ad"
    atlas = out / "subcluster" / "subclustered.h5ad"
    pathways, trajectory = out / "pathways" / "pathways.h5ad", out / "trajectory" / "trajectory.h5ad"
    de_tables = sorted(str(path) for path in (out / "de").glob("de_*.tsv") if path.name not in DE_OTHER_TABLES)
    inputs = {"annotate": [integrated], "cnv": [annotated], "subcluster": [cnv], "atlas": [atlas, pathways, trajectory]}
    extra = {"pathways": ["--de", *de_tables], "atlas": ["--pathways", str(pathways), "--trajectory", str(trajectory)]}
    result = {}
    for stage in STAGES:
        needed = inputs.get(stage, [atlas])
        source = ["--input", str(needed[0])]
        if stage == "bulk":
            cohort = [BULK_COHORT / "expression.tsv.gz", BULK_COHORT / "clinical.tsv"]
            source = ["--expression", str(cohort[0]), "--clinical", str(cohort[1]), "--reference", str(needed[0])]
            source += ["--sample", "bulk"]
        result[stage] = ([stage, *source, *extra.get(stage, []), "--outdir", str(out / stage)], needed)
    return result


def limit_memory(gigabytes: float):
    """A ``preexec_fn`` capping the child's address space."""
    limit = int(gigabytes * 1024**3)
    return lambda: resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


def prepare_inputs(stage: str, work: Path, args: argparse.Namespace) -> None:
    """Tile the stage's missing inputs from ``--base`` (the same paths in a finished run at the source size)."""
    _, inputs = commands(work)[stage]
    sources = {work / "integrated.h5ad": Path(args.atlas)}
    if args.base:
        base = Path(args.base).resolve()
        sources.update({path: base / path.relative_to(work) for path in inputs})
        if stage == "pathways" and not list((work / "stages" / "de").glob("de_*.tsv")):
            (work / "stages" / "de").mkdir(parents=True, exist_ok=True)
            for table in (base / "stages" / "de").glob("de_*.tsv"):  # every table: the contrasts' are chosen later
                shutil.copyfile(table, work / "stages" / "de" / table.name)
    for path in inputs:
        if not path.exists() and path in sources and sources[path].exists():
            start = time.perf_counter()
            path.parent.mkdir(parents=True, exist_ok=True)
            tile(sources[path], path, args.tiles, args.seed, graphs=Path(args.atlas))
            print(f"tiled {sources[path]} x {args.tiles} in {time.perf_counter() - start:.0f} s", flush=True)


def drop_unneeded(work: Path, later: list[str]) -> None:
    """Delete the h5ad inputs and outputs no later stage reads (the tiled atlases are ~17 GB at 1M cells)."""
    needed = {path for stage in later for path in commands(work)[stage][1]}
    for path in (work / "stages").glob("*/*.h5ad"):
        if path not in needed:
            path.unlink()
    if work / "integrated.h5ad" not in needed:
        (work / "integrated.h5ad").unlink(missing_ok=True)


def run_stages(work: Path, stages: list[str], env: dict[str, str], args: argparse.Namespace) -> dict[str, dict]:
    (work / "logs").mkdir(parents=True, exist_ok=True)
    results: dict[str, dict] = {}
    for position, stage in enumerate(stages):
        prepare_inputs(stage, work, args)
        arguments, inputs = commands(work)[stage]
        missing = [str(path) for path in inputs if not path.exists()]
        if missing:
            results[stage] = {"returncode": None, "not_run": f"input missing: {', '.join(missing)}"}
            print(f"{stage}: not run ({results[stage]['not_run']})", flush=True)
            continue
        log = work / "logs" / f"{stage}.log"
        log.unlink(missing_ok=True)
        command = ["timeout", str(args.timeout), sys.executable, "-m", "tmeflow.cli", *arguments]
        results[stage] = run_child(command, env, log, check=False, preexec_fn=limit_memory(args.max_memory_gb))
        lines = log.read_text().splitlines()
        results[stage]["last_log_line"] = lines[-1][:300] if lines else ""
        print(f"{stage}: {json.dumps(results[stage])}", flush=True)
        if not args.keep:
            drop_unneeded(work, stages[position + 1 :])
    return results


def markdown(result: dict) -> str:
    lines = ["| stage | exit | wall (s) | CPU (s) | peak RSS (GB) |", "|---|---:|---:|---:|---:|"]
    for stage, row in result["stages"].items():
        if row.get("returncode") is None:
            lines.append(f"| {stage} | not run | | | |")
        else:
            lines.append(f"| {stage} | {row['returncode']} | {row['wall']:.0f} | {row['cpu']:.0f} | "
                         f"{row['peak_rss_gb']:.2f} |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--atlas", required=True, help="integrated.h5ad of tmeflow integrate (the source)")
    parser.add_argument("--tiles", type=int, default=20, help="copies of the source (20 x 50k cells = 1M)")
    parser.add_argument("--workdir", default="bench_work/cohort_stages")
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated, in pipeline order")
    parser.add_argument("--threads", type=int, default=1, help="BLAS / numba threads per process")
    parser.add_argument("--max_memory_gb", type=float, default=22.0, help="address-space limit of each stage")
    parser.add_argument("--timeout", type=int, default=3600, help="seconds a stage may run (exit 124 past it)")
    parser.add_argument("--base", help="a finished run's workdir: each stage's missing inputs are tiled from it")
    parser.add_argument(
        "--keep", action="store_true", help="keep every h5ad (default: delete those no later stage reads)"
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    work = Path(args.workdir).resolve()
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ, **{name: str(args.threads) for name in THREADS})
    env["NUMBA_CACHE_DIR"] = str(work / ".numba_cache")
    result: dict[str, object] = {"source": str(args.atlas), "base": args.base, "tiles": args.tiles,
                                 "load_at_start": os.getloadavg()[0]}  # fmt: skip
    stages = [stage for stage in STAGES if stage in args.stages.split(",")]
    result["stages"] = run_stages(work, stages, env, args)
    result["load_at_end"] = os.getloadavg()[0]
    (work / "cohort_stages.json").write_text(json.dumps(result, indent=2))
    print(markdown(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
