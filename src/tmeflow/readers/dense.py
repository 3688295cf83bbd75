"""Dense text count tables (CSV/TSV/whitespace, optionally gzipped): orientation and chunked reading."""

from __future__ import annotations

import csv
import io
from functools import cache
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import TmeflowInputError
from ..genes import ENSEMBL_ID
from ..log import get_logger
from .detection import _CELL_CORNERS, _CELL_LIKE, _GENE_CORNERS, _GZIP_MAGIC, _SYMBOL
from .formats import _anndata, _open_text

logger = get_logger(__package__)


_DENSE_CHUNK_VALUES = 5_000_000
# ---------------------------------------------------------------------------------------------
# Dense text tables
# ---------------------------------------------------------------------------------------------


def _split(line: str, sep: str) -> list[str]:
    if sep == r"\s+":
        return [field.strip('"') for field in line.split()]
    return next(csv.reader([line], delimiter=sep))


def _read_dense(path: Path, sample: str) -> ad.AnnData:
    try:
        with _open_text(path) as handle:
            n_comments, header_line, first_line = 0, None, None
            for line in handle:
                if header_line is None:
                    if line.startswith("#") or not line.strip():
                        n_comments += 1
                        continue
                    header_line = line.rstrip("\r\n")
                elif line.strip():
                    first_line = line.rstrip("\r\n")
                    break
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise TmeflowInputError(f"cannot read text table: {error}", file=path, sample=sample) from error
    if header_line is None or first_line is None:
        raise TmeflowInputError("text table has no header or no data rows (empty matrix)", file=path, sample=sample)
    sep = "\t" if "\t" in header_line else "," if "," in header_line else r"\s+"
    header = [field.strip() for field in _split(header_line, sep)]
    n_fields = len(_split(first_line, sep))
    if n_fields == len(header) + 1:
        corner, column_labels = None, header
    elif n_fields == len(header):
        corner, column_labels = header[0], header[1:]
    else:
        raise TmeflowInputError(
            f"header has {len(header)} fields but the first data row has {n_fields}", file=path, sample=sample
        )
    if not column_labels:
        raise TmeflowInputError("text table has no data columns (empty matrix)", file=path, sample=sample)

    blocks, row_labels = [], []
    chunksize = max(1, _DENSE_CHUNK_VALUES // len(column_labels))
    names = list(range(len(column_labels) + 1))
    dtype = {0: str, **{i: np.float64 for i in names[1:]}}
    try:
        reader = pd.read_csv(
            path,
            sep=sep,
            header=None,
            names=names,
            skiprows=n_comments + 1,
            dtype=dtype,
            index_col=0,
            chunksize=chunksize,
            compression=_compression(path),
            skip_blank_lines=True,
            quotechar='"',
            engine="c",
        )
        with reader:
            for chunk in reader:
                values = chunk.to_numpy(dtype=np.float64)
                if np.isnan(values).any():
                    row = chunk.index[np.flatnonzero(np.isnan(values).any(axis=1))[0]]
                    raise TmeflowInputError(
                        f"missing or NaN values in the table (first in row {row})", file=path, sample=sample
                    )
                blocks.append(sp.csr_matrix(values))
                row_labels.extend(chunk.index.astype(str))
    except TmeflowInputError:
        raise
    except (ValueError, pd.errors.ParserError, OSError, EOFError, UnicodeDecodeError) as error:
        message = " ".join(str(error).split())[:300]
        raise TmeflowInputError(
            f"cannot parse text table (non-numeric values or ragged rows?): {message}", file=path, sample=sample
        ) from error
    if not blocks:
        raise TmeflowInputError("text table has no data rows (empty matrix)", file=path, sample=sample)
    matrix = sp.vstack(blocks, format="csr") if len(blocks) > 1 else blocks[0]
    genes_in_rows = _genes_in_rows(corner, row_labels, column_labels, path, sample)
    if genes_in_rows:
        return _anndata(matrix.T.tocsr(), column_labels, row_labels, row_labels, path, sample)
    return _anndata(matrix, row_labels, column_labels, column_labels, path, sample)


def _compression(path: Path) -> str | None:
    with open(path, "rb") as probe:
        return "gzip" if probe.read(2) == _GZIP_MAGIC else None


@cache
def _known_genes() -> frozenset[str] | None:
    """Symbols and Ensembl ids of the bundled gene-position tables, or None when they are not bundled."""
    from importlib import resources

    genes: set[str] = set()
    try:
        folder = resources.files("tmeflow").joinpath("resources", "gene_positions")
        if not folder.is_dir():
            return None
        for entry in folder.iterdir():
            if entry.name.endswith(".tsv"):
                table = pd.read_csv(io.StringIO(entry.read_text(encoding="utf-8")), sep="\t", usecols=[0, 1], dtype=str)
                for column in table.columns:
                    genes.update(table[column].dropna().str.upper())
    except (OSError, ValueError):
        return None
    return frozenset(genes) or None


def _gene_score(labels: list[str]) -> float:
    sample_labels = labels[:: max(1, len(labels) // 2000)]
    gene = sum(
        bool(ENSEMBL_ID.match(x) or (len(x) <= 20 and _SYMBOL.match(x) and not _CELL_LIKE.search(x)))
        for x in sample_labels
    )
    cell = sum(bool(_CELL_LIKE.search(x)) for x in sample_labels)
    return (gene - cell) / max(1, len(sample_labels))


def _known_fraction(labels: list[str], known: frozenset[str]) -> float:
    sample_labels = labels[:: max(1, len(labels) // 2000)]
    return sum(x.upper() in known for x in sample_labels) / max(1, len(sample_labels))


def _genes_in_rows(corner: str | None, rows: list[str], columns: list[str], path: Path, sample: str) -> bool:
    """Whether the genes of a dense table are its rows (see the module docstring for the rule)."""
    key = (corner or "").strip().strip('"').lower().replace(" ", "_").replace(".", "_")
    if key in _GENE_CORNERS:
        return True
    if key in _CELL_CORNERS:
        return False
    known = _known_genes()
    if known is not None:
        in_rows, in_columns = _known_fraction(rows, known), _known_fraction(columns, known)
        if max(in_rows, in_columns) >= 0.5 and abs(in_rows - in_columns) >= 0.3:
            return in_rows > in_columns
    row_score, column_score = _gene_score(rows), _gene_score(columns)
    if abs(row_score - column_score) >= 0.3:
        return row_score > column_score
    logger.warning(
        "sample %s: cannot tell whether genes are rows or columns of %s; assuming genes in rows", sample, path
    )
    return True
