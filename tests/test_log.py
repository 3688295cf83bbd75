"""tmeflow.log.progress: the shared progress lines of long loops (counts, elapsed, ETA)."""

from __future__ import annotations

import logging

from tmeflow.log import format_duration, progress, progress_line


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage())


def _logger(name: str) -> tuple[logging.Logger, _Records]:
    logger = logging.getLogger(f"test_progress.{name}")
    logger.handlers.clear()
    records = _Records()
    logger.addHandler(records)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    return logger, records


def _clock(times):
    """A fake clock returning ``times`` in turn (start, then after each item): no real timing involved."""
    values = iter(times)
    return lambda: next(values)


def test_progress_logs_count_elapsed_and_eta_after_each_item():
    logger, records = _logger("each")
    items = ["B", "T", "myeloid", "fibroblast"]
    seen = list(progress(items, what="DE group", logger=logger, every_s=0, clock=_clock([0, 10, 20, 30, 40])))
    assert seen == items
    assert records.lines == [
        "DE group 1/4 (25%), elapsed 10s, ETA 30s",
        "DE group 2/4 (50%), elapsed 20s, ETA 20s",
        "DE group 3/4 (75%), elapsed 30s, ETA 10s",
        "DE group 4/4 (100%), elapsed 40s, ETA 0s",
    ]


def test_progress_throttles_to_every_s_and_always_logs_the_last_item():
    logger, records = _logger("throttle")
    # 10 items of 20 s each: a line when >= 60 s passed since the last one, and after the last item
    list(progress(range(10), 10, "permutation batch", logger, every_s=60, clock=_clock(range(0, 220, 20))))
    assert records.lines == [
        "permutation batch 3/10 (30%), elapsed 1m00s, ETA 2m20s",
        "permutation batch 6/10 (60%), elapsed 2m00s, ETA 1m20s",
        "permutation batch 9/10 (90%), elapsed 3m00s, ETA 20s",
        "permutation batch 10/10 (100%), elapsed 3m20s, ETA 0s",
    ]


def test_progress_without_a_total_counts_only_and_an_unfinished_loop_stops_logging():
    logger, records = _logger("open")
    list(progress((x for x in "abc"), what="sample", logger=logger, every_s=0, clock=_clock([0, 5, 7, 9])))
    assert records.lines == ["sample 1, elapsed 5s", "sample 2, elapsed 7s", "sample 3, elapsed 9s"]
    logger, records = _logger("break")
    for i in progress(range(5), what="fate", logger=logger, every_s=0, clock=_clock(range(0, 100, 10))):
        if i == 1:
            break
    assert records.lines == ["fate 1/5 (20%), elapsed 10s, ETA 40s"]


def test_format_duration():
    assert [format_duration(s) for s in (0, 59.6, 61, 3599, 3600, 7620)] == [
        "0s",
        "1m00s",
        "1m01s",
        "59m59s",
        "1h00m",
        "2h07m",
    ]


def test_progress_line_is_the_shared_format():
    assert (
        progress_line("cell2location spatial model: epoch", 500, 30000, 125)
        == "cell2location spatial model: epoch 500/30000 (1%), elapsed 2m05s, ETA 2h02m"
    )
    assert progress_line("group", 0, 3, 0) == "group 0/3 (0%), elapsed 0s, ETA unknown"


def _bar_output(env_value: str | None) -> str:
    """Stderr of a fresh process that sets up tmeflow's logging, then loops under a tqdm bar (as infercnvpy does)."""
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "TQDM_DISABLE"}
    if env_value is not None:
        env["TQDM_DISABLE"] = env_value
    code = (
        "from tmeflow.log import setup_logging\n"
        "setup_logging('cnv')\n"
        "from tqdm.auto import tqdm\n"
        "for _ in tqdm(range(3)): pass\n"
    )
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    return done.stderr


def test_setup_logging_turns_library_progress_bars_off_unless_the_user_asks_for_them():
    assert "3/3" not in _bar_output(None)
    assert "3/3" in _bar_output("")  # tqdm reads any non-empty value, "0" too, as true


def test_setup_logging_ignores_numbas_cannot_cache_warnings_only():
    import warnings

    from numba.core.errors import NumbaWarning

    from tmeflow.log import setup_logging

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        setup_logging("subcluster")
        warnings.warn(
            NumbaWarning('Cannot cache compiled function "nn_descent" as it uses dynamic globals'), stacklevel=1
        )
        warnings.warn(NumbaWarning("Compilation is falling back to object mode"), stacklevel=1)
    assert [str(w.message) for w in caught] == ["Compilation is falling back to object mode"]
