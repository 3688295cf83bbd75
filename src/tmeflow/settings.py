"""Typed, frozen per-stage settings built once from the pipeline parameters.

A stage's ``run_<stage>`` turns the parameter dictionary (the schema's values, ``tmeflow.params``)
into its settings object once, ``DeconvolutionSettings.from_params(params)``; the science functions
below it take that object or explicit keyword arguments, never the dictionary, so the settings a
function uses are visible in its signature and a misspelt name fails when the object is built. Field
names are the parameter names, and each class names the schema groups its fields come from, so a test
can check that the two stay equal. Defaults live only in the schema: ``Settings.defaults()`` reads them.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace
from typing import Any, ClassVar, Self

from .params import defaults
from .text import split_list


def comma_list(name: str) -> property:
    """Make a read-only list property of a comma-separated settings field.

    A read-only property: the settings field ``name`` (a comma-separated string) as a list, parsed in this one
    place instead of at every use.
    """
    return property(lambda settings: split_list(getattr(settings, name)), doc=f"``{name}`` as a list.")


@dataclass(frozen=True)
class StageSettings:
    """Base of the per-stage settings; subclasses add one field per parameter they read."""

    SCHEMA_GROUPS: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> Self:
        """Build the settings named by this class's fields, taken from ``params``."""
        names = [field.name for field in fields(cls)]
        missing = [name for name in names if name not in params]
        if missing:
            raise KeyError(f"{cls.__name__}: parameters missing: {', '.join(missing)}")
        return cls(**{name: params[name] for name in names})

    @classmethod
    def defaults(cls) -> Self:
        """Build the settings at the schema's defaults (for notebooks and tests)."""
        return cls.from_params(defaults())

    def replace(self, **changes: Any) -> Self:
        """Return a copy with ``changes`` applied."""
        return replace(self, **changes)
