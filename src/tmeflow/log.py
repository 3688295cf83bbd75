"""Logging for stages: one logger per stage, timestamps, timed steps, progress of long loops."""

from __future__ import annotations

import logging
import os
import sys
import time
import warnings
from collections.abc import Callable, Iterable, Iterator, Sized
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

_FORMAT = "%(asctime)s [tmeflow %(stage)s] %(levelname)s %(message)s"


class _StageFilter(logging.Filter):
    def __init__(self, stage: str) -> None:
        super().__init__()
        self.stage = stage

    def filter(self, record: logging.LogRecord) -> bool:
        record.stage = getattr(record, "stage", self.stage)
        return True


class _CurrentStderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record is emitted (it may be replaced, e.g. by pytest)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def setup_logging(stage: str, level: int = logging.INFO) -> None:
    """Send tmeflow's log records to stderr, tagged with the running stage; turn library progress bars off.

    tmeflow logs its own progress lines (:func:`progress`, :func:`timed`); tqdm bars of libraries that offer
    no switch (infercnvpy draws one per chunk of cells) would fill task logs with carriage-return lines.
    ``TQDM_DISABLE`` is read when tqdm is imported, so it is set here, before any stage imports a library;
    a user's own value is kept (``TQDM_DISABLE=`` empty shows the bars: tqdm reads any non-empty value as true).
    numba's "Cannot cache compiled function" warnings are ignored: pynndescent's kNN (scanpy's neighbours on more
    than 4,096 cells) repeats three of them, with their source lines, in every neighbour search of a cohort-sized
    stage; they say only that those functions are compiled again in each process, which the log cannot change.
    """
    os.environ.setdefault("TQDM_DISABLE", "1")
    warnings.filterwarnings("ignore", message="Cannot cache compiled function")
    logger = logging.getLogger("tmeflow")
    logger.handlers.clear()
    handler = _CurrentStderrHandler(sys.stderr)
    handler.setFormatter(logging.Formatter(_FORMAT, datefmt="%H:%M:%S"))
    handler.addFilter(_StageFilter(stage))
    logger.addHandler(handler)
    logger.setLevel(level)
    logger.propagate = False


def get_logger(name: str) -> logging.Logger:
    """Logger below the package logger (``tmeflow.<name>``)."""
    return logging.getLogger(f"tmeflow.{name.removeprefix('tmeflow.')}")


def peak_rss_gb() -> float:
    """Return the largest resident memory of this process so far, in GB (``getrusage``)."""
    import resource

    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 1024**3 if sys.platform == "darwin" else peak / 1024**2  # bytes on macOS, KiB on Linux


@contextmanager
def timed(logger: logging.Logger, what: str) -> Iterator[None]:
    """Log ``what`` when it starts, and how long it took and the process's peak memory so far when it ends."""
    logger.info("%s ...", what)
    start = time.perf_counter()
    yield
    logger.info("%s done in %.1f s (peak RSS %.2f GB)", what, time.perf_counter() - start, peak_rss_gb())


def format_duration(seconds: float) -> str:
    """``42s``, ``3m05s``, ``2h07m``: durations in progress lines."""
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


def progress_line(what: str, done: int, total: int | None, elapsed: float) -> str:
    """Format a progress line.

    ``<what> i/n (p%), elapsed E, ETA R`` (``<what> i, elapsed E`` without a total): the one format of
    progress lines (:func:`progress`; cell2location's epoch logger).
    """
    if not total:
        return f"{what} {done}, elapsed {format_duration(elapsed)}"
    eta = elapsed / done * (total - done) if done else float("nan")
    eta_text = format_duration(eta) if done else "unknown"
    return f"{what} {done}/{total} ({100 * done // total}%), elapsed {format_duration(elapsed)}, ETA {eta_text}"


def progress(
    items: Iterable[T],
    total: int | None = None,
    what: str = "items",
    logger: logging.Logger | None = None,
    every_s: float = 30.0,
    clock: Callable[[], float] = time.monotonic,
) -> Iterator[T]:
    """Yield ``items`` and log progress.

    Yield ``items``, logging ``<what> i/n (p%), elapsed E, ETA R`` after an item is done, at most once every
    ``every_s`` seconds (``0``: after every item) and always after the last one. ``n`` is ``total`` or
    ``len(items)``; without either, the lines give the count and elapsed time only. The ETA assumes the
    remaining items take as long as the mean of the done ones.
    """
    logger = logger or get_logger("progress")
    if total is None and isinstance(items, Sized):
        total = len(items)
    start = last = clock()
    done = 0
    for item in items:
        yield item
        done += 1
        now = clock()
        if now - last >= every_s or done == total:
            last = now
            logger.info("%s", progress_line(what, done, total, now - start))
