"""Issue 21: ruff (lint and format, pydocstyle numpy, 120 columns) and mypy pass on the repository.

The configuration is in pyproject.toml. The README's test command runs these, so CI runs them; they are
fast (~10 s together) and belong to the fast tier.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PYTHON_TREES = ["src", "tests", "benchmarks", "dev"]


def _tool(name: str) -> str:
    """The tool installed beside the test interpreter (the test lock pins it), else the one on PATH."""
    beside = Path(sys.executable).with_name(name)
    found = str(beside) if beside.exists() else shutil.which(name)
    if found is None:
        pytest.fail(f"{name} is not installed: install the test extras (requirements-test.lock)")
    return found


def _run(*command: str) -> subprocess.CompletedProcess:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=600)


def test_ruff_check_passes():
    result = _run(_tool("ruff"), "check", "--no-cache", *PYTHON_TREES)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_ruff_format_leaves_every_file_unchanged():
    result = _run(_tool("ruff"), "format", "--check", "--no-cache", *PYTHON_TREES)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]


def test_mypy_passes_on_the_package():
    result = _run(_tool("mypy"), "--no-incremental", "--cache-dir", "/dev/null", "--config-file", "pyproject.toml")
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
