"""UMAP / PyNNDescent numba code is cached on disk and loaded by later processes (tmeflow.numba_cache)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

# A stand-in for pynndescent: a package whose numba kernel is compiled eagerly at import, without cache=True.
FAKE_PACKAGE = """
import numba

@numba.njit("f8(f8)")
def square(x):
    return x * x

@numba.njit("f8(f8)", cache=False)
def never_cached(x):
    return x + 1.0
"""

PROBE = """
import sys
from tmeflow import numba_cache
numba_cache.HOOKED_PACKAGES = numba_cache.HOOKED_PACKAGES + ("fakepkg",)
print("folder", numba_cache.enable(sys.argv[1] if len(sys.argv) > 1 else None))
import fakepkg
print("square", fakepkg.square(3.0), "hits", sum(fakepkg.square.stats.cache_hits.values()),
      "never_cached_hits", sum(fakepkg.never_cached.stats.cache_hits.values()))
"""


def _probe(tmp_path: Path, *args: str, env_extra: dict[str, str] | None = None) -> str:
    (tmp_path / "pkgs" / "fakepkg").mkdir(parents=True, exist_ok=True)
    (tmp_path / "pkgs" / "fakepkg" / "__init__.py").write_text(FAKE_PACKAGE)
    env = {k: v for k, v in os.environ.items() if k != "NUMBA_CACHE_DIR"}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO / "src"), str(tmp_path / "pkgs")])
    env.update(env_extra or {})
    result = subprocess.run([sys.executable, "-c", PROBE, *args], env=env, capture_output=True, text=True, check=True)
    return result.stdout


@pytest.mark.slow
def test_second_process_loads_the_compiled_kernel_from_the_cache(tmp_path):
    cache = tmp_path / "cache"
    first = _probe(tmp_path, str(cache))
    assert "square 9.0 hits 0" in first  # compiled, and written to the cache
    assert any(cache.glob("**/*.nbi"))
    second = _probe(tmp_path, str(cache))
    assert "square 9.0 hits 1" in second  # loaded, not compiled
    assert "never_cached_hits 0" in second  # an explicit cache=False is kept


@pytest.mark.slow
def test_nothing_changes_without_a_cache_folder(tmp_path):
    out = _probe(tmp_path)
    assert "folder None" in out and "hits 0" in out
    assert not any((tmp_path / "pkgs").glob("**/*.nbi"))  # nothing written beside the package either
    # NUMBA_CACHE_DIR set by the user (or Nextflow) is used as is
    cache = tmp_path / "user_cache"
    _probe(tmp_path, env_extra={"NUMBA_CACHE_DIR": str(cache)})
    assert f"folder {cache}" in _probe(tmp_path, env_extra={"NUMBA_CACHE_DIR": str(cache)})
    assert "hits 1" in _probe(tmp_path, env_extra={"NUMBA_CACHE_DIR": str(cache)})


def test_umap_and_pynndescent_are_hooked_and_nextflow_shares_one_cache_per_run():
    from tmeflow.numba_cache import HOOKED_PACKAGES

    assert {"umap", "pynndescent"} <= set(HOOKED_PACKAGES)
    config = (REPO / "nextflow.config").read_text()
    value = re.search(r"^\s*NUMBA_CACHE_DIR\s*=\s*'([^']+)'", config, re.M).group(1)
    # task folders are <workDir>/xx/yyyy: the cache is <workDir>/.numba_cache, the same for every task
    assert value == "${NXF_TASK_WORKDIR:-$PWD}/../../.numba_cache"


def test_tmeflow_run_chooses_a_cache_folder(tmp_path, monkeypatch):
    from tmeflow.numba_cache import default_cache_dir

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir(tmp_path / "out") == tmp_path / "xdg" / "tmeflow" / "numba"
    monkeypatch.setenv("XDG_CACHE_HOME", "/proc/not-writable")
    assert default_cache_dir(tmp_path / "out") == tmp_path / "out" / ".tmeflow_cache" / "numba"
