"""Shared pytest fixtures."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` beside the checkout; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not present (it exists for developers and CI, not on a fresh clone)")
    return SHARED_DATA


@pytest.fixture(scope="session")
def simulated_cohort(tmp_path_factory) -> Path:
    """A small simulated cohort (samplesheet.csv, truth.json, sc/, spatial/, bulk/) shared by tests."""
    from tmeflow.cli import main

    outdir = tmp_path_factory.mktemp("cohort")
    code = main([
        "simulate", "--outdir", str(outdir), "--n_cells", "1800", "--n_patients", "2", "--n_genes", "3000",
        "--n_sections", "1", "--n_spots", "400", "--n_bulk", "60", "--seed", "7",
    ])
    assert code == 0
    return outdir


@pytest.fixture(scope="session")
def pipeline_results(simulated_cohort, tmp_path_factory) -> Path:
    """Outdir of one `tmeflow run` over the simulated cohort (stage X's files under <outdir>/X/)."""
    from tmeflow.cli import main

    outdir = tmp_path_factory.mktemp("results")
    code = main([
        "run", "--params-file", str(REPO / "assets" / "test" / "params.yaml"),
        "--input", str(simulated_cohort / "samplesheet.csv"), "--outdir", str(outdir),
    ])
    assert code == 0
    return outdir
