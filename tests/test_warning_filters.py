"""Issue 21: the test suite's warning filters are targeted, so upstream deprecations are not hidden wholesale.

Every ``ignore`` filter in pyproject.toml names a message (and the category it silences); a blanket ignore of a
category (``ignore::DeprecationWarning``) would hide the stack's new deprecations and our own.
"""

from __future__ import annotations

import builtins
import tomllib
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def filters() -> list[str]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    return config["tool"]["pytest"]["ini_options"].get("filterwarnings", [])


def test_no_blanket_ignore_of_a_category():
    for entry in filters():
        action, message, category, *_ = (entry.split(":") + ["", "", ""])[:4]
        if action == "ignore":
            assert message, f"{entry!r} ignores a whole category; name the message"
            assert category, f"{entry!r}: say which category it silences"


@pytest.mark.parametrize(
    "message, category, module, ignored",
    [
        (
            "numpy.core.overrides is deprecated and has been renamed",
            DeprecationWarning,
            "cellrank._utils._lineage",
            True,
        ),
        ("numpy.core.overrides is deprecated and has been renamed", DeprecationWarning, "tmeflow.trajectory", False),
        ("`isinstance(treespec, LeafSpec)` is deprecated, use ...", FutureWarning, "lightning.pytorch", True),
        ("DataFrameGroupBy.apply operated on the grouping columns", FutureWarning, "tmeflow.composition", False),
        ("some new deprecation", DeprecationWarning, "scanpy", False),
    ],
)
def test_filters_silence_only_what_they_name(message, category, module, ignored):
    """The filters, installed as pytest installs them, silence the named upstream warnings and nothing else."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.resetwarnings()
        warnings.simplefilter("always")
        for entry in filters():  # as pytest installs them: each inserted in front, the last one winning
            action, text, category_name, module_pattern = (entry.split(":", 3) + ["", "", ""])[:4]
            warnings.filterwarnings(
                action, message=text, category=getattr(builtins, category_name or "Warning"), module=module_pattern
            )
        warnings.warn_explicit(message, category, filename=f"{module}.py", lineno=1, module=module)
    assert (not caught) is ignored, [str(w.message) for w in caught]
