"""The one place tmeflow picks its matplotlib backend.

Stages draw figures in batch jobs without a display, so every plot asks :func:`pyplot` for
``matplotlib.pyplot`` with the non-interactive ``Agg`` backend selected (once per process) instead of
selecting it itself. matplotlib is imported lazily: a stage that draws nothing never loads it.
"""

from __future__ import annotations

from functools import cache


@cache
def pyplot():
    """``matplotlib.pyplot`` with the ``Agg`` backend (selected on the first call)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt
