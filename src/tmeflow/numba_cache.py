"""Numba machine code of UMAP and PyNNDescent cached on disk, so that a process loads it instead of compiling.

``import pynndescent`` (imported by UMAP, hence by scanpy's neighbours, UMAP and Scrublet) compiles
~140 typed distance kernels eagerly, ~11 s of CPU on the development VM, and UMAP compiles its layout
optimiser on first use; neither library asks numba to cache them (``cache=True``), so every process
pays again: each Nextflow task, each ``tmeflow <stage>``, each ``tmeflow run``.

:func:`enable` installs an import hook: while ``pynndescent`` and ``umap`` are imported, their
``numba.njit`` / ``numba.jit`` decorators default to ``cache=True`` (an explicit ``cache=`` is kept;
a function numba cannot cache is compiled as before). Compiled code then goes to ``NUMBA_CACHE_DIR``
and later processes load it; numba keys each entry by the function's source file and timestamp, the
signature and the CPU, so an upgraded library or another machine compiles afresh. The code run is
the same; only where it comes from changes.

It is active only when a cache folder is known: ``NUMBA_CACHE_DIR`` set by the user or Nextflow
(``nextflow.config`` points it at one folder under the work directory shared by the run's tasks), or
the folder ``tmeflow run`` chooses (:func:`default_cache_dir`).
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

HOOKED_PACKAGES = ("pynndescent", "umap")


def default_cache_dir(outdir: str | os.PathLike) -> Path:
    """Choose the numba cache folder of ``tmeflow run``.

    Where ``tmeflow run`` caches numba code when ``NUMBA_CACHE_DIR`` is unset: the user's cache
    folder (``$XDG_CACHE_HOME`` or ``~/.cache``)/tmeflow/numba when writable, so that every later run
    reuses it, else ``<outdir>/.tmeflow_cache/numba``.
    """
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "tmeflow" / "numba"
    try:
        base.mkdir(parents=True, exist_ok=True)
        if os.access(base, os.W_OK):
            return base
    except OSError:
        pass
    return Path(outdir) / ".tmeflow_cache" / "numba"


def _cached_by_default(decorator: Callable[..., Any]) -> Callable[..., Any]:
    """Make a numba decorator cache by default.

    ``decorator`` (numba.njit / numba.jit) with ``cache=True`` unless given; if numba cannot cache a
    function (no writable cache folder, dynamic globals), it is compiled uncached as before.
    """

    def patched(*args: Any, **kwargs: Any) -> Any:
        if "cache" in kwargs:
            return decorator(*args, **kwargs)
        try:
            made = decorator(*args, cache=True, **kwargs)
        except RuntimeError:  # numba.njit(function) form: no cache locator for it
            return decorator(*args, **kwargs)
        if callable(made) and not hasattr(made, "py_func"):  # decorator form: applied to the function next

            def apply(function: Any) -> Any:
                try:
                    return made(function)
                except RuntimeError:
                    return decorator(*args, **kwargs)(function)

            return apply
        return made

    return patched


@contextmanager
def cache_by_default() -> Iterator[None]:
    """Within the block, ``numba.njit`` and ``numba.jit`` cache compiled code unless told otherwise."""
    import numba

    original = numba.njit, numba.jit
    numba.njit, numba.jit = _cached_by_default(original[0]), _cached_by_default(original[1])
    try:
        yield
    finally:
        numba.njit, numba.jit = original


class _Loader(importlib.abc.Loader):
    """The package's own loader, executing the module with :func:`cache_by_default`."""

    def __init__(self, inner: importlib.abc.Loader) -> None:
        self.inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> Any:
        return self.inner.create_module(spec)

    def exec_module(self, module: Any) -> None:
        with cache_by_default():
            self.inner.exec_module(module)

    def __getattr__(self, name: str) -> Any:  # resource readers, get_data, ...
        return getattr(self.inner, name)


class _Finder(importlib.abc.MetaPathFinder):
    """Find the hooked packages and wrap their loaders.

    Finds the hooked packages with the other finders and wraps their loader (submodules are
    imported while the package executes, so they are covered too).
    """

    def find_spec(self, name: str, path: Any, target: Any = None) -> importlib.machinery.ModuleSpec | None:
        if name not in HOOKED_PACKAGES:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None and spec.loader is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


def enable(cache_dir: str | os.PathLike | None = None) -> Path | None:
    """Cache UMAP / PyNNDescent numba code.

    Cache UMAP / PyNNDescent numba code in ``cache_dir`` (sets ``NUMBA_CACHE_DIR`` when it is unset)
    or in ``NUMBA_CACHE_DIR``; returns the folder, or None (nothing changed) when neither is given.

    Call it before UMAP or PyNNDescent is imported: packages already imported keep their code.
    """
    if not os.environ.get("NUMBA_CACHE_DIR"):
        if cache_dir is None:
            return None
        os.environ["NUMBA_CACHE_DIR"] = str(cache_dir)
        if "numba" in sys.modules:  # numba reads the variable when imported
            sys.modules["numba"].config.CACHE_DIR = str(cache_dir)
    folder = Path(os.environ["NUMBA_CACHE_DIR"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError:  # not writable: numba compiles as it would without the hook
        return None
    if not os.access(folder, os.W_OK):
        return None
    if not any(isinstance(finder, _Finder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _Finder())
    return folder
