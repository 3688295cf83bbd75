"""Plotting and docstring contracts of the bulk stage (issue 21).

Only the writing code saves figures, under the same file names (hand-built cohorts of 10 samples; no simulation);
the signature rule for every ``plot_*`` and the private axes helpers are checked for the whole package in
tests/test_plot_contract.py. Every public science function of the bulk package and the modules it calls documents
each parameter (and no other) under a numpydoc ``Parameters`` section and what it returns under ``Returns``;
writers (``write_*``) and the CLI entry are exempt.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import numpy as np
import pandas as pd
import pytest

from tmeflow.bulk import plot_forest, plot_km, plot_km_grid, write_survival_plots
from tmeflow.plotting import pyplot

# Modules owned by the bulk stage's contract: the bulk package and the science modules it calls.
MODULES = ("tmeflow.bulk", "tmeflow.estimate", "tmeflow.signatures", "tmeflow.stemness")


def _functions():
    """(qualified name, function) of every function defined in the contract's modules."""
    modules = []
    for name in MODULES:
        module = importlib.import_module(name)
        modules.append(module)
        for info in pkgutil.walk_packages(getattr(module, "__path__", []), f"{name}."):
            modules.append(importlib.import_module(info.name))
    return [
        (f"{module.__name__}.{name}", function)
        for module in modules
        for name, function in inspect.getmembers(module, inspect.isfunction)
        if function.__module__ == module.__name__
    ]


def test_only_writers_save():
    savers = {
        name.rsplit(".", 1)[1]
        for name, function in _functions()
        if "save_figure(" in inspect.getsource(function) or ".savefig(" in inspect.getsource(function)
    }
    assert savers and all(name.startswith("write_") or name == "run_bulk" for name in savers), savers


def _two_groups():
    """10 samples: the 4 low ones die at t = 1..4 (KM falls to 0), the 6 high ones are censored at t = 5..10."""
    samples = [f"S{i}" for i in range(10)]
    surv = pd.DataFrame(
        {"time": np.arange(1.0, 11.0), "event": [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]}, index=pd.Index(samples)
    )
    groups = pd.Series(["low"] * 4 + ["high"] * 6, index=pd.Index(samples))
    return surv, groups


def test_plot_km_draws_the_hand_computed_curves_and_does_not_save(tmp_path):
    surv, groups = _two_groups()
    fig = plot_km(surv, groups, title="SIG (OS)", p_text="median split: log-rank p=0.01; HR/SD=2.00")
    plt = pyplot()
    assert plt.fignum_exists(fig.number) and list(tmp_path.iterdir()) == []  # returned open, nothing written
    ax = fig.axes[0]
    assert ax.get_title() == "SIG (OS)"
    curves = {line.get_label(): line.get_ydata() for line in ax.get_lines() if not line.get_label().startswith("_")}
    assert set(curves) == {"low (n=4)", "high (n=6)"}
    # KM of the low group: 1, 3/4, 2/4, 1/4, 0 at the four deaths; the censored high group stays at 1
    assert np.allclose(sorted(set(np.round(curves["low (n=4)"], 6)), reverse=True), [1, 0.75, 0.5, 0.25, 0])
    assert np.allclose(curves["high (n=6)"], 1.0)
    plt.close(fig)


def _survival_table():
    """One endpoint, two features: a user signature (p 0.2, KM plot because user-named) and a Hallmark set
    (p 0.01, in the grid only).
    """
    common = {"endpoint": "OS", "cutpoint_method": "median", "logrank_p": 0.1, "hr_per_sd_p": 0.1}
    return pd.DataFrame(
        [
            {**common, "feature": "SIG", "kind": "user_signature", "p": 0.2, "hr_per_sd": 1.5},
            {**common, "feature": "HALLMARK_X", "kind": "hallmark", "p": 0.01, "hr_per_sd": 0.5},
        ]
    ).assign(hr_per_sd_lower=lambda t: t["hr_per_sd"] / 2, hr_per_sd_upper=lambda t: t["hr_per_sd"] * 2)


def test_grid_and_forest_figures_hold_the_features():
    surv, groups = _two_groups()
    table = _survival_table()
    grid = plot_km_grid(table, surv, {"SIG": groups, "HALLMARK_X": groups}, "OS")
    assert [ax.get_title() for ax in grid.axes if ax.get_title()] == ["SIG (OS)", "HALLMARK_X (OS)"]
    forest = plot_forest(table, "OS")
    assert [label.get_text() for label in forest.axes[0].get_yticklabels()] == ["HALLMARK_X", "SIG"]  # by HR
    pyplot().close("all")


def test_write_survival_plots_saves_the_same_file_names_and_closes(tmp_path):
    surv, groups = _two_groups()
    plt = pyplot()
    before = set(plt.get_fignums())
    written = write_survival_plots(
        _survival_table(), {"OS": surv}, {"OS": {"SIG": groups, "HALLMARK_X": groups}}, tmp_path, "C."
    )
    assert [p.name for p in written] == ["C.bulk_km_OS_SIG.png", "C.bulk_km_OS_mqc.png", "C.bulk_forest_OS.png"]
    assert all(p.stat().st_size > 1000 for p in written)
    assert set(plt.get_fignums()) == before


# --------------------------------------------------------------------------------------------------
# numpydoc

EXEMPT = {"cli"}


def _documented(doc: str) -> list[str]:
    """Names listed under the docstring's ``Parameters`` section (``x, y`` lines name two)."""
    match = re.search(r"\nParameters\n-+\n(.*?)(?:\n\n[A-Z][A-Za-z ]+\n-+\n|\Z)", doc, flags=re.S)
    if not match:
        return []
    return [name for line in match.group(1).splitlines() if line and not line[0].isspace() for name in line.split(", ")]


def _public():
    return [
        (name, function)
        for name, function in _functions()
        if not name.rsplit(".", 1)[1].startswith(("_", "write_")) and name.rsplit(".", 1)[1] not in EXEMPT
    ]


def test_enough_public_functions_are_walked():
    assert len(_public()) >= 80


@pytest.mark.parametrize("name, function", _public(), ids=lambda value: value if isinstance(value, str) else "")
def test_public_function_has_numpydoc_parameters_and_returns(name, function):
    doc = inspect.getdoc(function) or ""
    parameters = list(inspect.signature(function).parameters)
    if parameters:
        assert _documented(doc) == parameters, name
    assert "\nReturns\n-------\n" in doc, name
