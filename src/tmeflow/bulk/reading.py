"""Bulk cohort input: the expression, clinical and probe tables, identifier mapping and value transforms."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..genes import ENSEMBL_ID
from ..log import get_logger
from ..signatures import ensembl_to_symbol, load_orthologs

logger = get_logger(__package__)


MIN_MATCHED_SAMPLES = 10


# --------------------------------------------------------------------------------------------------
# Reading


def _read_delimited(path: Path, what: str) -> pd.DataFrame:
    """Read a CSV/TSV (optionally .gz) with the first column as index (string identifiers)."""
    if not path.is_file():
        raise TmeflowInputError(f"{what} file not found", file=path)
    name = path.name.lower().removesuffix(".gz")
    sep = "," if name.endswith(".csv") else "\t" if name.endswith((".tsv", ".txt", ".tab")) else None
    try:
        frame = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c", index_col=0)
    except Exception as exc:  # parser errors, empty files
        raise TmeflowInputError(f"cannot read {what} table ({str(exc).splitlines()[0]})", file=path) from exc
    if frame.empty:
        raise TmeflowInputError(f"{what} table is empty", file=path)
    frame.index = frame.index.map(lambda v: str(v).strip())
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_clinical(path: str | Path) -> pd.DataFrame:
    """Read a clinical table indexed by sample: column ``sample``/``sample_id`` if present, else the first column.

    Parameters
    ----------
    path
        The clinical table (CSV/TSV, optionally gzipped).

    Returns
    -------
    DataFrame
        One row per sample (identifiers as text); duplicated samples are an input error.
    """
    path = Path(path)
    frame = _read_delimited(path, "clinical")
    lowered = {c.lower(): c for c in frame.columns}
    for key in ("sample", "sample_id"):
        if key in lowered:
            frame = frame.reset_index(drop=frame.index.name is None).set_index(lowered[key])
            frame.index = frame.index.map(str)
            break
    frame.index.name = "sample"
    if frame.index.duplicated().any():
        dup = frame.index[frame.index.duplicated()][0]
        raise TmeflowInputError(f"clinical sample {dup} appears more than once", file=path, sample=dup)
    return frame


def clinical_column(clinical: pd.DataFrame, named: str, default: str, parameter: str, source: Path) -> str | None:
    """Find the clinical column an optional analysis reads.

    Parameters
    ----------
    clinical
        The clinical table.
    named
        The ``parameter``'s value: when set, that column must exist.
    default
        Column looked for (any case) when ``named`` is empty.
    parameter
        Name of the parameter, for messages.
    source
        The clinical table's path, for messages.

    Returns
    -------
    str or None
        The column's name, or None when ``named`` is empty and no column is called ``default``.
    """
    if named:
        if named not in clinical.columns:
            raise TmeflowInputError(f"{parameter} is not a clinical column", file=source, column=named)
        return named
    return {c.lower(): c for c in clinical.columns}.get(default)


def read_expression(path: str | Path, samples: pd.Index, what: str = "clinical samples") -> pd.DataFrame:
    """Read an expression matrix as genes x samples, restricted to the samples also in the clinical table.

    The orientation is chosen by which axis matches the clinical identifiers. Fewer than ``MIN_MATCHED_SAMPLES``
    matching samples, or non-numeric values, raise :class:`TmeflowInputError` that says how many match.

    Parameters
    ----------
    path
        The expression table (CSV/TSV, optionally gzipped; first column the gene identifier).
    samples
        The samples of the clinical table.
    what
        Name of the samples in messages.

    Returns
    -------
    DataFrame
        Genes x matched samples (float, NaN kept).
    """
    path = Path(path)
    frame = _read_delimited(path, "expression")
    in_columns = frame.columns.isin(samples).sum()
    in_rows = frame.index.isin(samples).sum()
    if in_rows > in_columns:
        logger.info("expression rows match the clinical samples: matrix read as samples x genes and transposed")
        frame = frame.T
    matched = frame.columns[frame.columns.isin(samples)]
    n_matched = len(matched)
    if n_matched < MIN_MATCHED_SAMPLES:
        raise TmeflowInputError(
            f"only {n_matched} of {len(samples)} {what} match expression columns "
            f"({frame.shape[1]} expression samples, e.g. {', '.join(map(str, frame.columns[:3]))}; "
            f"{what.split()[0]} e.g. {', '.join(map(str, samples[:3]))}); at least {MIN_MATCHED_SAMPLES} are needed",
            file=path,
        )
    if n_matched < len(samples) or n_matched < frame.shape[1]:
        logger.warning(
            "%d samples in both tables; %d %s-only and %d expression-only samples ignored",
            n_matched,
            len(samples) - n_matched,
            what.split()[0],
            frame.shape[1] - n_matched,
        )
    frame = frame[matched]
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & frame.notna()
    if bad.to_numpy().any():
        column = bad.any(axis=0).idxmax()
        raise TmeflowInputError("expression matrix has non-numeric values", file=path, sample=str(column))
    numeric.columns.name = "sample"
    return numeric.astype(float)


def read_probe_annotation(path: str | Path) -> pd.Series:
    """Read a probe -> gene symbol table (column rules in the module docstring).

    Parameters
    ----------
    path
        The ``probe_annotation`` table.

    Returns
    -------
    Series
        Gene symbol by probe identifier (probes without a symbol dropped).
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("probe annotation file not found", file=path)
    name = path.name.lower().removesuffix(".gz")
    frame = pd.read_csv(path, sep="," if name.endswith(".csv") else "\t", dtype=str)
    lowered = {c.lower(): c for c in frame.columns}
    probe_col = next((lowered[k] for k in ("probe", "probe_id", "probeid", "id") if k in lowered), frame.columns[0])
    symbol_col = next(
        (
            lowered[k]
            for k in ("symbol", "gene_symbol", "hugo.gene.symbol", "ncbi.gene.symbol", "gene.symbol", "gene")
            if k in lowered
        ),
        next((c for c in frame.columns if "symbol" in c.lower() and "alternative" not in c.lower()), None),
    )
    if symbol_col is None:
        raise TmeflowInputError("probe annotation needs a gene symbol column (e.g. 'symbol')", file=path)
    mapping = frame[[probe_col, symbol_col]].dropna()
    mapping = mapping[mapping[symbol_col].str.strip() != ""]
    return pd.Series(mapping[symbol_col].str.strip().to_numpy(), index=mapping[probe_col].str.strip().to_numpy())


# --------------------------------------------------------------------------------------------------
# Identifiers and values


def detect_id_type(ids: pd.Index, id_type: str, has_annotation: bool) -> str:
    """Resolve ``bulk_id_type``: ``auto`` -> ``probe`` (annotation given), ``ensembl`` (most IDs ENS...G) or ``symbol``.

    Parameters
    ----------
    ids
        The matrix's row identifiers.
    id_type
        ``bulk_id_type`` (``auto``, ``symbol``, ``ensembl`` or ``probe``).
    has_annotation
        Whether a probe annotation is given.

    Returns
    -------
    str
        ``symbol``, ``ensembl`` or ``probe``.
    """
    if id_type != "auto":
        return id_type
    if has_annotation:
        return "probe"
    looks_ensembl = np.mean([bool(ENSEMBL_ID.match(str(i))) for i in ids])
    return "ensembl" if looks_ensembl >= 0.5 else "symbol"


def collapse_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep, for every duplicated gene symbol, the row with the highest mean expression (WGCNA MaxMean).

    Parameters
    ----------
    frame
        Genes x samples, possibly with repeated symbols.

    Returns
    -------
    DataFrame
        One row per symbol, in first-seen order.
    """
    if not frame.index.duplicated().any():
        return frame
    means = frame.mean(axis=1, skipna=True).to_numpy()
    order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")
    ordered = frame.iloc[order]
    kept = ordered[~ordered.index.duplicated(keep="first")]
    logger.info("%d duplicated gene rows collapsed (kept the row with the highest mean)", len(frame) - len(kept))
    return kept


def map_identifiers(
    frame: pd.DataFrame, id_type: str, species: str, probe_map: pd.Series | None, source: Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Map row identifiers to gene symbols of ``species``; return the collapsed matrix and a summary.

    Raises :class:`TmeflowInputError` when no (or almost no) identifier is a known gene of ``species``.

    Parameters
    ----------
    frame
        Genes x samples with the table's identifiers.
    id_type
        ``symbol``, ``ensembl`` or ``probe`` (:func:`detect_id_type`).
    species
        ``human`` or ``mouse``.
    probe_map
        Probe -> symbol (:func:`read_probe_annotation`) for ``probe`` identifiers.
    source
        The table's path, for messages.

    Returns
    -------
    tuple of (DataFrame, dict)
        Symbols x samples (duplicates collapsed by :func:`collapse_duplicates`) and the identifier summary
        written to ``bulk_summary.json``.
    """
    n_rows = len(frame)
    if id_type == "probe":
        if probe_map is None:
            raise TmeflowInputError("bulk_id_type probe needs --probe_annotation", file=source)
        probe_map = probe_map[~probe_map.index.duplicated()]
        known = frame.index.isin(probe_map.index)
        if not known.any():
            raise TmeflowInputError(
                f"none of the {n_rows} expression row identifiers is a probe of the annotation table "
                f"(e.g. {', '.join(frame.index[:3])})",
                file=source,
            )
        frame = frame.loc[known]
        frame.index = probe_map.reindex(frame.index).to_numpy()
    elif id_type == "ensembl":
        mapping = ensembl_to_symbol(frame.index)
        known = frame.index.isin(list(mapping))
        if not known.any():
            raise TmeflowInputError(
                f"none of the {n_rows} Ensembl identifiers maps to a gene symbol (e.g. {', '.join(frame.index[:3])})",
                file=source,
            )
        frame = frame.loc[known]
        frame.index = [mapping[i] for i in frame.index]
    n_mapped = len(frame)
    orthologs = load_orthologs()
    human = set(orthologs["human_symbol"])
    mouse = set(orthologs["mouse_symbol"])
    ids = set(map(str, frame.index))
    hits = {"human": len(ids & human), "mouse": len(ids & mouse)}
    other = "mouse" if species == "human" else "human"
    if hits[species] < max(1, 0.05 * len(ids)):
        hint = f"; they look like {other} genes, set bulk_species {other}" if hits[other] > hits[species] else ""
        raise TmeflowInputError(
            f"only {hits[species]} of {len(ids)} gene identifiers are known {species} gene symbols "
            f"(e.g. {', '.join(list(frame.index[:3]))}){hint}; set bulk_id_type or give --probe_annotation",
            file=source,
        )
    frame = collapse_duplicates(frame)
    frame.index.name = "gene"
    summary = {
        "id_type": id_type,
        "rows_in": n_rows,
        "rows_mapped": n_mapped,
        "genes": len(frame),
        "known_symbols": hits[species],
    }
    logger.info("identifiers (%s): %d rows -> %d mapped -> %d genes", id_type, n_rows, n_mapped, len(frame))
    return frame, summary


def transform_values(
    frame: pd.DataFrame, values: str, max_missing: float, source: Path
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(log_expression, linear_expression)`` from the declared ``bulk_values``.

    tpm -> log2(TPM + 1); counts -> CPM then log2(CPM + 1); log -> as given (linear = 2^x - 1). Genes with more
    than ``max_missing`` missing values are dropped, the rest are mean-imputed.

    Parameters
    ----------
    frame
        Genes x samples as read.
    values
        ``tpm``, ``counts`` or ``log`` (``bulk_values``).
    max_missing
        Largest fraction of missing values a gene may have (``bulk_max_missing``).
    source
        The table's path, for messages.

    Returns
    -------
    tuple of (DataFrame, DataFrame)
        Log2 and linear-scale expression, genes x samples.
    """
    missing = frame.isna().mean(axis=1)
    if (missing > max_missing).any():
        logger.warning(
            "%d gene(s) with > %.0f%% missing values dropped", int((missing > max_missing).sum()), 100 * max_missing
        )
        frame = frame.loc[missing <= max_missing]
    if frame.isna().to_numpy().any():
        frame = frame.T.fillna(frame.mean(axis=1)).T
    if values in {"tpm", "counts"}:
        if (frame.to_numpy() < 0).any():
            raise TmeflowInputError(
                f"expression has negative values but bulk_values is {values}; use bulk_values log for log-scale data",
                file=source,
            )
        linear = frame
        if values == "counts":
            totals = frame.sum(axis=0)
            if (totals <= 0).any():
                raise TmeflowInputError("a sample has zero total counts", file=source, sample=str(totals.idxmin()))
            linear = frame / totals * 1e6
        log = np.log2(linear + 1.0)
    else:
        if frame.to_numpy().max() > 100:
            logger.warning(
                "bulk_values is log but values reach %.0f; are they really log-scale?", frame.to_numpy().max()
            )
        log = frame
        linear = np.power(2.0, frame) - 1.0
    return log, linear
