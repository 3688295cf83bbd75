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
    """A small simulated cohort (samplesheet.csv, truth.json, sc/, spatial/, bulk/, and the bulk rows
    bulk_validation/ and immunotherapy/, as the bundled test cohort) shared by tests.
    """
    from tmeflow.cli import main

    outdir = tmp_path_factory.mktemp("cohort")
    code = main(
        [
            "simulate",
            "--outdir",
            str(outdir),
            "--n_cells",
            "1800",
            "--n_patients",
            "2",
            "--n_genes",
            "3000",
            "--n_sections",
            "1",
            "--n_spots",
            "400",
            "--n_bulk",
            "60",
            "--seed",
            "7",
            "--n_bulk_validation",
            "30",
            "--n_immunotherapy",
            "40",
        ]
    )
    assert code == 0
    return outdir


@pytest.fixture(scope="session")
def pipeline_results(simulated_cohort, tmp_path_factory) -> Path:
    """Outdir of one `tmeflow run` over the simulated cohort (stage X's files under <outdir>/X/)."""
    from tmeflow.cli import main

    outdir = tmp_path_factory.mktemp("results")
    code = main(
        [
            "run",
            "--params-file",
            str(REPO / "assets" / "test" / "params.yaml"),
            "--input",
            str(simulated_cohort / "samplesheet.csv"),
            "--outdir",
            str(outdir),
        ]
    )
    assert code == 0
    return outdir


@pytest.fixture
def small_bulk_args(tmp_path) -> list[str]:
    """``tmeflow bulk`` arguments of a tiny valid cohort (30 ESTIMATE immune genes x 12 samples, an age
    column), writing to ``tmp_path/out``: tests add the one bad option they check.
    """
    import numpy as np
    import pandas as pd

    from tmeflow.signatures import read_bundled_gmt

    genes = read_bundled_gmt("estimate")["ImmuneSignature"][:30]
    expression = pd.DataFrame(
        np.random.default_rng(0).uniform(1, 50, (30, 12)), index=genes, columns=[f"S{i}" for i in range(12)]
    )
    expression.index.name = "gene"
    expression.to_csv(tmp_path / "expr.csv")
    pd.DataFrame({"sample": expression.columns, "age": 50}).to_csv(tmp_path / "clin.csv", index=False)
    return [
        "bulk",
        "--expression",
        str(tmp_path / "expr.csv"),
        "--clinical",
        str(tmp_path / "clin.csv"),
        "--sample",
        "C",
        "--outdir",
        str(tmp_path / "out"),
    ]
