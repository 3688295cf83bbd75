"""Kill-safe stages and ``tmeflow run --resume``.

Each stage call of ``tmeflow run`` (a *task*: one stage, or one stage for one sample, as a Nextflow
task) writes into a private temporary folder ``<outdir>/.tmeflow_tmp/<task>/``. When it returns,
its files are moved into the stage's results folder and a completion record
``<outdir>/pipeline_info/tasks/<task>.json`` is written last. The record holds a key (the SHA-256 of
the stage name, the task's input files' paths, sizes and modification times, the stage's parameters
and the tmeflow version), the outputs' sizes and modification times, and the task's return value.

With ``--resume`` a task whose record matches (same key, every output still present and unchanged)
is reused without running; anything else reruns, and since a rerun task's outputs get new
modification times, every task downstream of it reruns too (as Nextflow's ``-resume``).

SIGTERM and SIGINT raise :class:`~tmeflow.errors.Interrupted`, which unwinds through every
``finally`` (``tmeflow.io.atomic_path`` removes its temporary file, the task removes its folder);
the CLI prints one line and exits 143 / 130. A new run removes stale temporaries a hard kill
(SIGKILL, power loss) left behind.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import os
import pickle
import re
import shutil
import signal
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from . import __version__, io
from .errors import Interrupted
from .log import get_logger
from .params import group_properties
from .stages import get_stage

logger = get_logger(__name__)

TMP_FOLDER = ".tmeflow_tmp"
RECORDS = Path("pipeline_info") / "tasks"
# io.atomic_path's temporary names: .<stem>.<random>.tmp<suffix>
_STALE_FILE = re.compile(r"^\..+\.tmp(\.[^/]*)?$")


# The signal received, kept: a library that swallows the handler's exception (a ``__del__``, a C
# callback, an ``except BaseException``) does not swallow the interruption, which
# :func:`raise_if_interrupted` raises again at the next task boundary.
_received_signal: int | None = None


def _raise_interrupted(signum: int, frame: Any) -> None:
    global _received_signal
    _received_signal = signum
    raise Interrupted(signum)


def raise_if_interrupted() -> None:
    """Raise :class:`Interrupted` if a signal arrived whose exception did not unwind the run."""
    if _received_signal is not None:
        raise Interrupted(_received_signal)


@contextmanager
def signals_interrupt() -> Iterator[None]:
    """Turn SIGTERM and SIGINT into :class:`Interrupted` for the duration of the block."""
    global _received_signal
    _received_signal = None
    previous = {signum: signal.signal(signum, _raise_interrupted) for signum in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield
        raise_if_interrupted()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        _received_signal = None  # this block's interruption is raised: later task runs must not see it again


def remove_stale_temporaries(outdir: Path) -> int:
    """Remove what a killed run left: the task folders and ``tmeflow.io`` temporary files."""
    removed = 0
    if (outdir / TMP_FOLDER).exists():
        shutil.rmtree(outdir / TMP_FOLDER, ignore_errors=True)
        removed += 1
    if outdir.is_dir():
        for path in outdir.rglob(".*.tmp*"):
            if path.is_file() and _STALE_FILE.match(path.name):
                path.unlink(missing_ok=True)
                removed += 1
    if removed:
        logger.info("removed %d stale temporary file(s)/folder(s) of an interrupted run in %s", removed, outdir)
    return removed


def _file_state(path: Path) -> list[Any]:
    stat = path.stat()
    return [stat.st_size, stat.st_mtime_ns]


def _is_path(value: Any) -> bool:
    """Tell whether ``value`` is an existing Path, or a string naming an existing absolute path.

    A sample name that happens to name a folder is not a path.
    """
    if isinstance(value, Path):
        return value.exists()
    return isinstance(value, str) and len(value) < 4096 and os.path.isabs(value) and os.path.exists(value)


def _inputs_state(value: Any) -> Any:
    """Paths in a task's arguments with the size and mtime of every file (folders walked)."""
    if _is_path(value):
        path = Path(value)
        if path.is_dir():
            return {str(p.relative_to(path)): _file_state(p) for p in sorted(path.rglob("*")) if p.is_file()}
        return _file_state(path)
    if isinstance(value, dict):
        return {str(k): _inputs_state(v) for k, v in sorted(value.items(), key=lambda item: str(item[0]))}
    if isinstance(value, (list, tuple)):
        return [_inputs_state(v) for v in value]
    return value if isinstance(value, (int, float, bool, type(None))) else str(value)


def stage_params(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """Return the parameters a stage reads, with the user files' sizes and times.

    The parameters a stage reads: those of its schema groups; a user file (markers, gene positions,
    probe annotation ...) with its size and mtime, so that editing it reruns the stage.
    """
    specs = {name: spec for group in get_stage(stage).param_groups for name, spec in group_properties(group).items()}
    values = {}
    for name in sorted(specs):
        value = params.get(name)
        if specs[name].get("format") == "file-path" and value:
            path = Path(value).resolve()
            value = [value, _file_state(path) if path.is_file() else None]
        values[name] = value
    return values


def task_key(stage: str, args: tuple, kwargs: dict[str, Any], params: dict[str, Any]) -> str:
    """Return the hash that identifies a stage task: its stage, inputs, arguments and parameters."""
    payload = {
        "stage": stage,
        "version": __version__,
        "params": stage_params(stage, params),
        "args": [_inputs_state(arg) for arg in args],
        "kwargs": _inputs_state(kwargs),
    }
    text = json.dumps(payload, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()


def _remap(value: Any, old: Path, new: Path) -> Any:
    """``value`` with every path under ``old`` moved under ``new`` (a task's return value)."""
    if isinstance(value, Path):
        return new / value.relative_to(old) if value.is_relative_to(old) else value
    if isinstance(value, str) and value.startswith(str(old) + os.sep):
        return str(new / Path(value).relative_to(old))
    if isinstance(value, dict):
        return {k: _remap(v, old, new) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_remap(v, old, new) for v in value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(
            value, **{f.name: _remap(getattr(value, f.name), old, new) for f in dataclasses.fields(value)}
        )
    return value


class TaskRunner:
    """Runs the tasks of one ``tmeflow run``, reusing completed ones with ``resume``."""

    def __init__(self, outdir: Path, params: dict[str, Any], *, resume: bool) -> None:
        self.outdir = outdir
        self.params = params
        self.resume = resume
        self.reused: list[str] = []
        self.ran: list[str] = []

    def _record_path(self, task: str) -> Path:
        return self.outdir / RECORDS / f"{task}.json"

    def _reusable(self, task: str, key: str, final_dir: Path) -> tuple[bool, Any]:
        record_path = self._record_path(task)
        if not self.resume or not record_path.is_file():
            return False, None
        try:
            record = json.loads(record_path.read_text())
            if record["key"] != key:
                return False, None
            for name, state in record["outputs"].items():
                path = final_dir / name
                if not path.is_file() or _file_state(path) != state:
                    return False, None
            return True, pickle.loads(base64.b64decode(record["result"]))
        except (OSError, ValueError, KeyError, pickle.UnpicklingError, AttributeError, EOFError):
            return False, None

    def run(
        self, task: str, stage: str, function: Callable[..., Any], args: tuple, kwargs: dict[str, Any], final_dir: Path
    ) -> Any:
        """Run a stage unless a matching completion record exists.

        Call ``function(*args, <tmp folder>, self.params, **kwargs)`` unless a matching record exists;
        move its outputs into ``final_dir`` and write the completion record last.
        """
        raise_if_interrupted()
        key = task_key(stage, args, kwargs, self.params)
        reusable, result = self._reusable(task, key, final_dir)
        if reusable:
            logger.info("stage %s: reused (completed by an earlier run with the same inputs and parameters)", task)
            self.reused.append(task)
            return result
        self._record_path(task).unlink(missing_ok=True)
        tmp = self.outdir / TMP_FOLDER / task
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        try:
            result = function(*args, tmp, self.params, **kwargs)
            final_dir.mkdir(parents=True, exist_ok=True)
            outputs = {}
            for path in sorted(p for p in tmp.rglob("*") if p.is_file()):
                target = final_dir / path.relative_to(tmp)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
                outputs[str(path.relative_to(tmp))] = _file_state(target)
            result = _remap(result, tmp, final_dir)
            record = {
                "task": task,
                "stage": stage,
                "key": key,
                "tmeflow_version": __version__,
                "outputs": outputs,
                "result": base64.b64encode(pickle.dumps(result)).decode(),
            }
            io.write_json(record, self._record_path(task))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            try:
                tmp.parent.rmdir()
            except OSError:  # not empty (another task's folder) or already gone
                pass
        self.ran.append(task)
        raise_if_interrupted()  # the task is complete and recorded; the run stops before the next one
        return result
