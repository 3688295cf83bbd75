"""Numpydoc on the public science functions (issue 21).

Every public function of every tmeflow module (the infrastructure modules below aside; stage entries ``run_<stage>``,
``cli``, ``write_outputs`` and the ``write_*`` writers aside) documents every parameter in a ``Parameters`` section
and what it returns in ``Returns`` (unless it returns None), types ``adata`` as ``AnnData``, and, when it changes an
AnnData in place and returns nothing, lists what it writes in an ``Adds`` section (``check_*`` validators, which only
raise, are exempt from that last rule).
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import re

import pytest

import tmeflow

# Modules that are plumbing rather than science: the command line, file and log helpers, the parameter schema, the
# stage registry and runner, input validation, the report builders. Their functions keep short docstrings.
INFRASTRUCTURE = {
    "tmeflow.cli",
    "tmeflow.errors",
    "tmeflow.io",
    "tmeflow.log",
    "tmeflow.multiqc_launch",
    "tmeflow.numba_cache",
    "tmeflow.params",
    "tmeflow.plotting",
    "tmeflow.report",
    "tmeflow.report_samples",
    "tmeflow.report_sections",
    "tmeflow.resume",
    "tmeflow.runner",
    "tmeflow.samplesheet",
    "tmeflow.settings",
    "tmeflow.stages",
    "tmeflow.text",
    "tmeflow.validate",
}
MODULES = tuple(
    sorted(
        module.name
        for module in pkgutil.walk_packages(tmeflow.__path__, "tmeflow.")
        if module.name not in INFRASTRUCTURE
    )
)
STAGE_ENTRIES = {"cli", "write_outputs"}


def public_functions(module_name: str):
    module = importlib.import_module(module_name)
    for name, function in vars(module).items():
        if (
            inspect.isfunction(function)
            and function.__module__ == module_name
            and not name.startswith("_")
            and not name.startswith("run_")
            and not name.startswith("write_")
            and name not in STAGE_ENTRIES
        ):
            yield name, function


def section(doc: str, title: str) -> str | None:
    """The body of a numpydoc section (up to the next underlined title), or None."""
    match = re.search(rf"^{title}\n-{{{len(title)}}}\n(.*?)(?=^\w[\w ]*\n-+\n|\Z)", doc, flags=re.M | re.S)
    return match.group(1) if match else None


def documented_parameters(doc: str) -> set[str]:
    """Names in a ``Parameters`` section: ``x``, ``x : int``, ``x, y : float``, ``*args``, ``**kwargs``."""
    names = set()
    for line in (section(doc, "Parameters") or "").splitlines():
        if match := re.fullmatch(r"((?:\*{0,2}\w+)(?:, \*{0,2}\w+)*)(?: :.*)?", line):
            names.update(name.lstrip("*") for name in match.group(1).split(", "))
    return names


@pytest.mark.parametrize("module_name", MODULES)
def test_public_science_functions_have_numpydoc(module_name):
    problems = []
    for name, function in public_functions(module_name):
        doc = inspect.cleandoc(function.__doc__ or "")
        signature = inspect.signature(function)
        parameters = [p for p in signature.parameters if p not in ("self", "cls")]
        documented = documented_parameters(doc)
        if missing := [p for p in parameters if p not in documented]:
            problems.append(f"{name}: parameters not documented: {missing}")
        returns_none = signature.return_annotation in (None, "None")
        if not returns_none and section(doc, "Returns") is None:
            problems.append(f"{name}: no Returns section")
        if "adata" in signature.parameters:
            if signature.parameters["adata"].annotation not in ("AnnData", "AnnData | None"):
                problems.append(f"{name}: adata not typed AnnData")
            if returns_none and not name.startswith("check_") and section(doc, "Adds") is None:
                problems.append(f"{name}: changes adata in place without an Adds section")
    assert not problems, "\n".join(problems)


def test_the_section_parser_reads_numpydoc():
    doc = "Do it.\n\nParameters\n----------\nx\n    The x.\ny : int\n    The y.\n\nReturns\n-------\nint\n    Sum.\n"
    assert documented_parameters(doc) == {"x", "y"}
    assert section(doc, "Returns").startswith("int")
    grouped = "Do it.\n\nParameters\n----------\ntest, reference : str\n    Levels.\n**kwargs\n    Passed on.\n"
    assert documented_parameters(grouped) == {"test", "reference", "kwargs"}
    assert section(doc, "Adds") is None


def test_the_walk_covers_every_science_module():
    assert "tmeflow.atlas" in MODULES
    assert "tmeflow.simulate.cohort" in MODULES
    assert "tmeflow.cnv.reference" in MODULES
    assert not INFRASTRUCTURE & set(MODULES)
    assert len(MODULES) > 40
