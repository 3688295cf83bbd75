"""The two test tiers: ``pytest -m "not slow"`` (the fast unit tier) selects tests of every pipeline stage,
and tests that need a simulated cohort, a pipeline run or ``../shared/data`` are marked ``slow``.

Read from the test files' syntax (no collection, no import), so this check is itself fast.
"""

from __future__ import annotations

import ast
import tomllib
from pathlib import Path

import pytest

from tmeflow.stages import pipeline_stage_names

TESTS = Path(__file__).resolve().parent
# Fixtures that simulate a cohort, run the pipeline or read ../shared/data (tests/conftest.py)
HEAVY_FIXTURES = {"simulated_cohort", "pipeline_results", "shared_data"}


def _is_slow_mark(node: ast.expr) -> bool:
    """``pytest.mark.slow`` (or a list of marks holding it)."""
    if isinstance(node, (ast.List, ast.Tuple)):
        return any(_is_slow_mark(element) for element in node.elts)
    return ast.unparse(node) in ("pytest.mark.slow", "mark.slow")


def tiers(path: Path) -> dict[str, bool]:
    """Test function name -> marked slow (by a decorator or the module's ``pytestmark``)."""
    tree = ast.parse(path.read_text())
    module_slow = any(
        isinstance(node, ast.Assign)
        and any(getattr(t, "id", "") == "pytestmark" for t in node.targets)
        and _is_slow_mark(node.value)
        for node in tree.body
    )
    return {
        node.name: module_slow or any(_is_slow_mark(d) for d in node.decorator_list)
        for node in tree.body
        if isinstance(node, ast.FunctionDef) and node.name.startswith("test_")
    }


def test_slow_marker_is_registered():
    config = tomllib.loads((TESTS.parent / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
    assert any(marker.startswith("slow:") for marker in config["markers"])


@pytest.mark.parametrize("stage", pipeline_stage_names())
def test_fast_tier_covers_every_stage(stage):
    path = TESTS / f"test_{stage}.py"
    assert path.is_file(), f"no tests/{path.name} for stage {stage}"
    fast = [name for name, slow in tiers(path).items() if not slow]
    assert fast, (
        f"tests/{path.name}: every test is marked slow; add a hand-computed test on a tiny input (tests/tiny.py)"
    )


def test_tests_of_heavy_fixtures_are_slow():
    unmarked = []
    for path in sorted(TESTS.glob("test_*.py")):
        tree = ast.parse(path.read_text())
        marked = tiers(path)
        for node in tree.body:
            if isinstance(node, ast.FunctionDef) and node.name in marked and not marked[node.name]:
                if HEAVY_FIXTURES & {arg.arg for arg in node.args.args}:
                    unmarked.append(f"{path.name}::{node.name}")
    assert unmarked == [], "mark these @pytest.mark.slow (they simulate, run the pipeline or read ../shared/data)"


def test_tier_reader_sees_decorators_and_module_marks(tmp_path):
    path = tmp_path / "test_x.py"
    path.write_text(
        "import pytest\n\n@pytest.mark.slow\ndef test_a(): pass\n\n"
        "@pytest.mark.parametrize('x', [1])\ndef test_b(x): pass\n"
    )
    assert tiers(path) == {"test_a": True, "test_b": False}
    path.write_text("import pytest\npytestmark = [pytest.mark.shared_data, pytest.mark.slow]\n\ndef test_c(): pass\n")
    assert tiers(path) == {"test_c": True}
