"""Issue 21: one home for the helpers several stages share (lists, BH, slugs, species, the plot backend)."""

from __future__ import annotations

import ast
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import tmeflow
from tmeflow.stats import bh_fdr
from tmeflow.text import slug, split_list

SRC = Path(tmeflow.__file__).parent


# de.py and qc.py are rewritten on another branch at the same time (issue 21 brief); they move to
# tmeflow.plotting.pyplot when that branch merges, and leave this set then.
def _sources():
    return sorted(SRC.rglob("*.py"))


def test_split_list_and_slug_by_hand():
    assert split_list(None) == [] and split_list("") == [] and split_list(" , ,") == []
    assert split_list(" T cells, B ,,NK ") == ["T cells", "B", "NK"]
    assert slug("os: death-rate.1") == "os_death-rate.1"  # bulk file names keep . _ -
    assert slug("CD8 T / exhausted.v2", keep="", lower=True) == "cd8_t_exhausted_v2"  # report ids
    assert slug("__fate A__", keep="_") == "fate_A" and slug("a__b c", keep="_") == "a__b_c"  # trajectory fates
    assert slug("///") == ""


def test_bh_matches_r_p_adjust_and_keeps_nan():
    """By hand as R ``p.adjust(c(0.01, 0.04, 0.03, 0.005, 1), "BH")``: p * 5 / rank, then the running
    minimum from the largest p down; NaN/inf are not tests.
    """
    got = bh_fdr([0.01, 0.04, 0.03, np.nan, 0.005, 1.0, np.inf])
    np.testing.assert_allclose(got, [0.025, 0.05, 0.05, np.nan, 0.025, 1.0, np.nan])
    assert bh_fdr([]).shape == (0,) and np.isnan(bh_fdr([np.nan])).all()


def test_reference_species_is_the_one_species_detector():
    import anndata as ad

    from tmeflow.bulk import reference_species
    from tmeflow.genes import species_of

    assert reference_species is species_of
    mixed = ad.AnnData(
        np.zeros((3, 2)),
        obs=pd.DataFrame({"species": ["mouse", "mouse", "human"]}, index=list("abc")),
        var=pd.DataFrame(index=["CD3E", "EPCAM"]),
    )
    assert reference_species(mixed) == "mouse"  # the samplesheet's majority, not the symbols' case


@pytest.mark.parametrize("name", ["split_list", "_split", "_bh", "_slug", "reference_species", "_pyplot", "_plt"])
def test_no_second_copy_of_a_shared_helper(name):
    """Each shared helper is defined once (``readers``' ``_split`` splits a CSV line: another job)."""
    defined = [
        p.relative_to(SRC).as_posix()
        for p in _sources()
        for node in ast.walk(ast.parse(p.read_text()))
        if isinstance(node, ast.FunctionDef)
        and node.name == name
        and not p.relative_to(SRC).as_posix().startswith("readers")
    ]
    assert defined == (["text.py"] if name == "split_list" else []), defined


def test_matplotlib_backend_is_chosen_in_one_place():
    users = [p.relative_to(SRC).as_posix() for p in _sources() if "matplotlib.use(" in p.read_text()]
    assert users == ["plotting.py"], users
    from tmeflow.plotting import pyplot

    assert pyplot().get_backend().lower() == "agg"
