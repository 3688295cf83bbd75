"""Small text helpers shared by every stage: comma-separated lists, file-name slugs and natural order."""

from __future__ import annotations

import re


def split_list(value: str | None) -> list[str]:
    """Comma-separated parameter -> list of stripped, non-empty items (``None`` or ``""`` -> ``[]``)."""
    return [item.strip() for item in (value or "").split(",") if item.strip()]


def slug(text: str, *, keep: str = "._-", lower: bool = False) -> str:
    """Return a file-name-safe version of ``text``.

    File-name-safe version of ``text``: every run of characters other than ASCII letters, digits and
    ``keep`` becomes one ``_``; leading/trailing ``_`` are dropped; lower-cased with ``lower``.
    """
    out = re.sub(f"[^A-Za-z0-9{re.escape(keep)}]+", "_", str(text)).strip("_")
    return out.lower() if lower else out


def natural_key(text: str) -> tuple:
    """Return a natural-order sort key.

    Sort key of "natural" order: runs of digits compare as numbers, the rest case-insensitively, so
    ``P2_primary`` comes before ``P10_primary`` (plain sorting puts ``P10``..``P19`` before ``P1_``, as
    ``_`` sorts after digits); the text itself breaks ties.
    """
    parts = re.split(r"(\d+)", str(text))
    return tuple((0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in parts if part), str(text)
