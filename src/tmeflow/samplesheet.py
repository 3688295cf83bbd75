"""Samplesheet reading and validation against ``assets/schema_input.json`` (nf-schema dialect).

The same schema validates the samplesheet in Nextflow (nf-schema ``samplesheetToList``). Relative
paths in ``data``, ``clinical`` and ``region_annotation`` are resolved against the samplesheet's
folder, by both runners.
"""

from __future__ import annotations

import csv
import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

import jsonschema

from .errors import TmeflowInputError

PATH_COLUMNS = ("data", "clinical", "region_annotation")


@dataclass(frozen=True)
class SampleRow:
    """One validated samplesheet row; paths are absolute."""

    sample: str
    patient: str
    condition: str
    tissue: str
    species: str
    batch: str
    modality: str
    data: Path
    clinical: Path | None = None
    region_annotation: Path | None = None

    def meta(self) -> dict[str, str]:
        """Sample metadata as stored in ``obs`` (and as Nextflow's ``meta`` map)."""
        return {
            "sample": self.sample,
            "patient": self.patient,
            "condition": self.condition,
            "tissue": self.tissue,
            "species": self.species,
            "batch": self.batch,
        }


@cache
def load_input_schema() -> dict[str, Any]:
    """Load the samplesheet schema (``assets/schema_input.json``, shipped as package data)."""
    text = resources.files("tmeflow").joinpath("resources", "schema_input.json").read_text()
    return json.loads(text)


def _row_error(error: jsonschema.ValidationError, schema: dict[str, Any]) -> tuple[str | None, str]:
    """Column and message of a schema violation, using the schema's errorMessage where it has one."""
    properties = schema["items"]["properties"]
    if error.validator == "required":
        missing = error.message.split("'")[1]
        return missing, f"required column '{missing}' is empty or missing"
    column = next((str(part) for part in error.path if isinstance(part, str)), None)
    if column in properties and "errorMessage" in properties[column]:
        return column, properties[column]["errorMessage"]
    return column, error.message


_INTEGER = re.compile(r"-?(?:0|[1-9][0-9]*)")
_DECIMAL = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def infer_type(text: str) -> Any:
    """Type a CSV cell as nf-schema reads it.

    A CSV cell as nf-schema's ``samplesheetToList`` reads it (org.json ``stringToValue``):
    ``true``/``false`` -> bool, a whole number without leading zeros -> int, a decimal -> float,
    anything else (``007``, ``P1``, ``+5``) the text itself. The schema is checked against these
    types, so that both runners accept the same samplesheets; the row keeps the text.
    """
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    if text == "-0":
        return -0.0
    if _INTEGER.fullmatch(text):
        return int(text)
    if _DECIMAL.fullmatch(text):
        return float(text)
    return text


def _resolve(value: str, base: Path, *, path: Path, row: int, column: str) -> Path:
    resolved = Path(value).expanduser()
    resolved = resolved if resolved.is_absolute() else (base / resolved)
    if not resolved.exists():
        raise TmeflowInputError(f"{column} path does not exist: {value}", file=path, row=row, column=column)
    return resolved.resolve()


def read_samplesheet(path: str | Path) -> list[SampleRow]:
    """Read and validate a samplesheet; raise a :class:`TmeflowInputError` naming row and column."""
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("samplesheet not found", file=path)
    with open(path, newline="", encoding="utf-8-sig") as handle:
        reader = csv.DictReader(handle)
        if reader.fieldnames is None:
            raise TmeflowInputError("samplesheet is empty", file=path)
        records = [
            {
                key.strip(): (value or "").strip()
                for key, value in record.items()
                if key is not None and (value or "").strip()
            }
            for record in reader
        ]
    if not records:
        raise TmeflowInputError("samplesheet has a header but no samples", file=path)
    schema = load_input_schema()
    validator = jsonschema.Draft202012Validator(schema["items"])
    rows = []
    seen: set[str] = set()
    for number, record in enumerate(records, start=2):  # row 1 is the header
        typed = {key: (value if key in PATH_COLUMNS else infer_type(value)) for key, value in record.items()}
        error = next(iter(sorted(validator.iter_errors(typed), key=lambda e: list(map(str, e.path)))), None)
        if error is not None:
            column, message = _row_error(error, schema)
            raise TmeflowInputError(message, file=path, row=number, column=column)
        if record["sample"] in seen:
            raise TmeflowInputError(
                f"sample name '{record['sample']}' appears twice", file=path, row=number, column="sample"
            )
        seen.add(record["sample"])
        paths = {
            column: _resolve(record[column], path.parent, path=path, row=number, column=column)
            for column in PATH_COLUMNS
            if column in record
        }
        fields = {key: value for key, value in record.items() if key in SampleRow.__dataclass_fields__}
        rows.append(SampleRow(**cast(dict[str, Any], {**fields, **paths})))  # text columns and resolved paths
    return rows
