"""Check every input of a ``tmeflow run`` before its first stage.

Each samplesheet row is opened with the reader its stage uses, so that the checks are the stages'
own (one definition of each check): single-cell counts with :func:`tmeflow.readers.read_counts`
plus QC's species and gene-name checks, spatial sections with :func:`tmeflow.readers.read_spatial`
(in-tissue spots, positions, scale factors) and their region annotation, bulk cohorts with
:func:`tmeflow.bulk.read_cohort` (sample matching, identifiers, survival endpoints and event coding,
covariates). Every problem of every row is collected and reported at once, one line each, before
anything is written, so that a mistake in the last row costs seconds rather than hours of stages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import TmeflowInputError, TmeflowInputErrors
from .log import get_logger
from .params import all_properties
from .samplesheet import SampleRow

logger = get_logger(__name__)


def _check_sc(row: SampleRow, params: dict[str, Any]) -> None:
    from .qc import check_species, ensembl_to_symbols
    from .readers import read_counts

    adata = read_counts(row.data, sample=row.sample, strict_counts=params["strict_counts"])
    try:
        ensembl_to_symbols(adata, row.species, sample=row.sample)
        check_species(adata.var_names, row.species, sample=row.sample)
    except TmeflowInputError as error:
        raise TmeflowInputError(error.message, file=row.data, sample=row.sample, column=error.column) from error


def _check_spatial(row: SampleRow, params: dict[str, Any]) -> None:
    from .readers import read_spatial
    from .spatial_analysis import read_region_annotation

    adata = read_spatial(row.data, sample=row.sample, strict_counts=params["strict_counts"])
    if row.region_annotation is not None:
        read_region_annotation(row.region_annotation, adata)


def _check_bulk(row: SampleRow, params: dict[str, Any]) -> None:
    from .bulk import BulkSettings, read_cohort

    if row.clinical is None:
        raise TmeflowInputError("a bulk row needs a clinical table", sample=row.sample, column="clinical")
    settings = BulkSettings.from_params({**params, "bulk_species": row.species or params["bulk_species"]})
    read_cohort(Path(row.data), Path(row.clinical), settings)


CHECKS: dict[str, Callable[[SampleRow, dict[str, Any]], None]] = {
    "sc": _check_sc,
    "spatial": _check_spatial,
    "bulk": _check_bulk,
}


def _with_sample(error: TmeflowInputError, row: SampleRow) -> TmeflowInputError:
    """Return the error, naming the samplesheet row's sample (bulk readers name files and bulk samples only)."""
    if error.sample == row.sample:
        return error
    if error.sample is None:
        return TmeflowInputError(
            error.message, file=error.file or row.data, sample=row.sample, column=error.column, row=error.row
        )
    return TmeflowInputError(
        f"{row.modality} {row.sample}: {error.message}",
        file=error.file or row.data,
        sample=error.sample,
        column=error.column,
        row=error.row,
    )


def user_file_errors(params: dict[str, Any]) -> list[TmeflowInputError]:
    """Missing user files named by parameters (``signatures`` and every schema ``exists`` file path)."""
    errors = []
    for path in (params.get("signatures") or "").split(","):
        if path.strip() and not Path(path.strip()).is_file():
            errors.append(TmeflowInputError(f"signatures file not found: {path.strip()}"))
    for name, spec in all_properties().items():
        if name != "input" and spec.get("format") == "file-path" and spec.get("exists") and params.get(name):
            if not Path(params[name]).is_file():
                errors.append(TmeflowInputError(f"{name} file not found: {params[name]}"))
    return errors


def validate_inputs(rows: list[SampleRow], params: dict[str, Any]) -> None:
    """Open every input of every row; raise :class:`TmeflowInputErrors` listing every problem."""
    started = time.perf_counter()
    errors = user_file_errors(params)
    for row in rows:
        try:
            CHECKS[row.modality](row, params)
        except TmeflowInputError as error:
            errors.append(_with_sample(error, row))
    if errors:
        raise TmeflowInputErrors(errors)
    logger.info("checked the inputs of %d samplesheet rows in %.1f s", len(rows), time.perf_counter() - started)
