"""`tmeflow run` killed at three moments and resumed gives the results of an uninterrupted run.

A tiny simulated cohort (4 single-cell samples, one small section; no bulk cohort, whose survival
tests need more samples than a cheap test affords) with few permutations keeps the cost to about two
pipeline runs of a few hundred cells.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from tmeflow.cli import main

REPO = Path(__file__).resolve().parents[1]
PARAMS = {
    "doublet_method": "none",
    "deconvolution_method": "nnls",
    "gsea_permutations": 20,
    "communication_n_perms": 20,
    "cutpoint_permutations": 20,
    "spatial_n_perms": 20,
    "n_top_genes": 500,
    "subcluster_n_top_genes": 300,
    "trajectory_n_top_genes": 300,
}
# Kill when this completion record appears: during integrate, during pathways, during deconvolve.
KILL_AFTER = ("qc.P2_primary", "de", "spatial_qc.P1_primary_visium1")


@pytest.fixture(scope="module")
def small_cohort(tmp_path_factory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("resume")
    assert (
        main(
            [
                "simulate",
                "--outdir",
                str(root / "sim"),
                "--n_cells",
                "600",
                "--n_patients",
                "2",
                "--conditions",
                "normal,primary",
                "--n_genes",
                "1500",
                "--n_sections",
                "1",
                "--n_spots",
                "150",
                "--n_bulk",
                "0",
                "--seed",
                "11",
            ]
        )
        == 0
    )
    params = root / "params.json"
    params.write_text(json.dumps({**PARAMS, "input": str(root / "sim" / "samplesheet.csv")}))
    return root, params


def _command(params: Path, outdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tmeflow.cli", "run", "--params-file", str(params), "--outdir", str(outdir), *extra]


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), env.get("PYTHONPATH", "")])
    return env


def _run_until(params: Path, outdir: Path, record: str, *extra: str) -> str:
    """Start `tmeflow run`, SIGTERM it once ``record`` is written; return its stderr's last line."""
    log = outdir.parent / f"{outdir.name}.{record}.log"  # a file, not a pipe: a full pipe would stall the run
    with open(log, "w") as handle:
        process = subprocess.Popen(_command(params, outdir, *extra), env=_env(), stderr=handle)
        target = outdir / "pipeline_info" / "tasks" / f"{record}.json"
        deadline = time.monotonic() + 900
        while not target.exists() and process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() is None, f"the run ended before {record} was recorded: {log.read_text()[-3000:]}"
        time.sleep(0.5)  # into the next stage
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=300)
    err = log.read_text()
    assert process.returncode == 143, err[-3000:]
    return err.strip().splitlines()[-1]


def _leftovers(outdir: Path) -> list[Path]:
    return [p for p in outdir.rglob(".*") if p.name != ".." and (".tmp" in p.name or p.name == ".tmeflow_tmp")]


def _outputs(outdir: Path) -> set[str]:
    skip = ("pipeline_info", "multiqc")
    return {
        str(p.relative_to(outdir)) for p in outdir.rglob("*") if p.is_file() and p.parts[len(outdir.parts)] not in skip
    }


def _same(reference: Path, resumed: Path, name: str) -> None:
    a, b = reference / name, resumed / name
    if name.endswith(".h5ad"):
        x, y = ad.read_h5ad(a), ad.read_h5ad(b)
        pd.testing.assert_frame_equal(x.obs, y.obs)
        assert list(x.var_names) == list(y.var_names)
        dense = [m.toarray() if hasattr(m, "toarray") else np.asarray(m) for m in (x.X, y.X)]
        np.testing.assert_allclose(dense[0], dense[1], rtol=1e-6, atol=1e-8)
    elif name.endswith((".tsv", ".tsv.gz", ".csv")):
        x = pd.read_csv(a, sep="\t" if ".tsv" in name else ",", comment="#")
        y = pd.read_csv(b, sep="\t" if ".tsv" in name else ",", comment="#")
        pd.testing.assert_frame_equal(x, y, rtol=1e-6)


@pytest.mark.slow
def test_killed_three_times_and_resumed_equals_an_uninterrupted_run(small_cohort, tmp_path):
    root, params = small_cohort
    started = time.perf_counter()
    reference = tmp_path / "reference"
    done = subprocess.run(_command(params, reference), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    full_seconds = time.perf_counter() - started

    resumed = tmp_path / "resumed"
    records = resumed / "pipeline_info" / "tasks"
    for number, record in enumerate(KILL_AFTER):
        last = _run_until(params, resumed, record, *(["--resume"] if number else []))
        assert "interrupted by SIGTERM" in last and "--resume" in last
        assert not _leftovers(resumed), _leftovers(resumed)
        assert (records / f"{record}.json").exists()
    finished = {p.stem: p.stat().st_mtime_ns for p in records.glob("*.json")}

    started = time.perf_counter()
    done = subprocess.run(_command(params, resumed, "--resume"), env=_env(), capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-3000:]
    resume_seconds = time.perf_counter() - started
    summary = json.loads((resumed / "pipeline_info" / "run_summary.json").read_text())
    print(
        f"uninterrupted run {full_seconds:.0f} s; last resume {resume_seconds:.0f} s; reused {summary['tasks_reused']}"
    )

    # the tasks finished before the last kill were reused, not recomputed (their records are untouched)
    assert set(finished) - {"report"} <= set(summary["tasks_reused"])
    assert {"integrate", "de", "qc.P1_normal", "spatial_qc.P1_primary_visium1"} <= set(summary["tasks_reused"])
    # and every task not finished by then ran now: which ones depends on how far the last run got in its 0.5 s
    # (deconvolve of 150 spots can finish in that time), but the cohort steps after it cannot
    every_task = set(summary["tasks_run"]) | set(summary["tasks_reused"])
    assert every_task - (set(finished) - {"report"}) <= set(summary["tasks_run"])
    assert {"atlas", "report"} <= set(summary["tasks_run"])
    for stem, mtime in finished.items():
        if stem != "report":
            assert (records / f"{stem}.json").stat().st_mtime_ns == mtime, stem

    # the same files, with the same contents, as the uninterrupted run
    assert _outputs(resumed) == _outputs(reference)
    for name in sorted(_outputs(reference)):
        _same(reference, resumed, name)
    assert (resumed / "multiqc").is_dir() and not _leftovers(resumed)


@pytest.mark.slow
def test_a_rerun_removes_the_stale_temporaries_of_a_hard_kill(small_cohort, tmp_path):
    """SIGKILL leaves temporaries no handler could remove; the next run removes them first."""
    from tmeflow.resume import remove_stale_temporaries

    outdir = tmp_path / "results"
    (outdir / "qc").mkdir(parents=True)
    stale = [
        outdir / "qc" / ".P1_primary.qc.x1y2z3.tmp.h5ad",
        outdir / ".tmeflow_tmp" / "integrate" / "integrated.h5ad",
    ]
    stale[1].parent.mkdir(parents=True)
    for path in stale:
        path.write_bytes(b"partial")
    kept = outdir / "qc" / "P1_primary.qc.h5ad"
    kept.write_bytes(b"finished")
    assert remove_stale_temporaries(outdir) == 2
    assert not any(path.exists() for path in stale) and kept.exists() and not (outdir / ".tmeflow_tmp").exists()


def test_task_key_follows_inputs_stage_parameters_user_files_and_version(tmp_path, monkeypatch):
    """What decides reuse: the stage's own parameters (not another stage's), its input files' size and
    mtime, the content stamp of user files it reads, and the tmeflow version.
    """
    import os as _os

    import tmeflow.resume as resume
    from tmeflow.params import defaults

    data = tmp_path / "atlas.h5ad"
    data.write_bytes(b"atlas")
    markers = tmp_path / "markers.tsv"
    markers.write_text("gene\tcell_type\n")
    params = {**defaults(), "markers": str(markers)}
    key = resume.task_key("annotate", (data,), {}, params)
    assert resume.task_key("annotate", (data,), {}, {**params, "communication_n_perms": 7}) == key
    assert resume.task_key("annotate", (data,), {}, {**params, "n_marker_genes": 7}) != key
    assert resume.task_key("annotate", (str(data),), {}, params) == resume.task_key("annotate", (data,), {}, params)
    stamp = data.stat().st_mtime_ns
    _os.utime(data, ns=(stamp + 10**9, stamp + 10**9))
    assert resume.task_key("annotate", (data,), {}, params) != key
    _os.utime(data, ns=(stamp, stamp))
    assert resume.task_key("annotate", (data,), {}, params) == key
    markers.write_text("gene\tcell_type\nCD3E\tT\n")
    assert resume.task_key("annotate", (data,), {}, params) != key
    markers_key = resume.task_key("annotate", (data,), {}, params)
    monkeypatch.setattr(resume, "__version__", "999")
    assert resume.task_key("annotate", (data,), {}, params) != markers_key


def test_a_changed_output_or_record_means_the_task_runs_again(tmp_path):
    """A record is trusted only while the outputs it lists are unchanged."""
    from tmeflow.params import defaults
    from tmeflow.resume import TaskRunner

    calls = []

    def stage(value, outdir, params):
        calls.append(value)
        (Path(outdir) / "out.tsv").write_text(f"{value}\n")
        return {"table": Path(outdir) / "out.tsv"}

    outdir = tmp_path / "results"
    runner = TaskRunner(outdir, defaults(), resume=True)
    first = runner.run("composition", "composition", stage, (1,), {}, outdir / "composition")
    assert first["table"] == outdir / "composition" / "out.tsv" and first["table"].read_text() == "1\n"
    again = TaskRunner(outdir, defaults(), resume=True)
    assert again.run("composition", "composition", stage, (1,), {}, outdir / "composition") == first
    assert calls == [1] and again.reused == ["composition"]
    first["table"].write_text("edited by hand\n")
    third = TaskRunner(outdir, defaults(), resume=True)
    third.run("composition", "composition", stage, (1,), {}, outdir / "composition")
    assert calls == [1, 1] and third.ran == ["composition"] and not (outdir / ".tmeflow_tmp").exists()
    fresh = TaskRunner(outdir, defaults(), resume=False)
    fresh.run("composition", "composition", stage, (1,), {}, outdir / "composition")
    assert calls == [1, 1, 1]


def test_a_signal_whose_exception_a_library_swallows_still_stops_the_run(tmp_path):
    """A SIGTERM whose Interrupted a library swallows (a ``__del__``, a C callback) stops the run at the
    next task boundary, with the interrupted task complete and recorded.
    """
    from tmeflow.errors import Interrupted
    from tmeflow.params import defaults
    from tmeflow.resume import TaskRunner, signals_interrupt

    calls = []

    def swallowing_stage(value, outdir, params):
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(1)  # the handler runs here
        except BaseException:  # noqa: BLE001 - what some libraries do
            pass
        calls.append(value)
        (Path(outdir) / "out.tsv").write_text(f"{value}\n")
        return {}

    outdir = tmp_path / "results"
    handler_before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as raised, signals_interrupt():
        runner = TaskRunner(outdir, defaults(), resume=True)
        runner.run("composition", "composition", swallowing_stage, (1,), {}, outdir / "composition")
        runner.run("de", "de", swallowing_stage, (2,), {}, outdir / "de")
    assert raised.value.exit_code == 143 and calls == [1]
    assert (outdir / "pipeline_info" / "tasks" / "composition.json").is_file() and (
        outdir / "composition" / "out.tsv"
    ).is_file()
    assert signal.getsignal(signal.SIGTERM) == handler_before
    # the interruption ends with its block: a task run later in this process is not interrupted again
    from tmeflow.resume import raise_if_interrupted

    raise_if_interrupted()
