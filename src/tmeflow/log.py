"""Logging for stages: one logger per stage, timestamps, timed steps."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

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
    """Send tmeflow's log records to stderr, tagged with the running stage."""
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


@contextmanager
def timed(logger: logging.Logger, what: str) -> Iterator[None]:
    """Log ``what`` when it starts and how long it took when it ends."""
    logger.info("%s ...", what)
    start = time.perf_counter()
    yield
    logger.info("%s done in %.1f s", what, time.perf_counter() - start)
