"""Count-matrix format detection: which reader a file or folder needs, and its companion files."""

from __future__ import annotations

import gzip
import os
import re
from pathlib import Path

import h5py

from ..errors import TmeflowInputError

FORMATS = ("10x_h5", "10x_mtx", "h5ad", "dense", "spaceranger")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_DENSE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab", ".matrix")
_NOT_TABLES = (
    ".json",
    ".yaml",
    ".yml",
    ".md",
    ".html",
    ".rds",
    ".rda",
    ".rdata",
    ".loom",
    ".xlsx",
    ".xls",
    ".pdf",
    ".png",
    ".jpg",
    ".jpeg",
    ".tif",
    ".tiff",
    ".zip",
    ".tar",
    ".bam",
    ".fastq",
    ".fq",
    ".mtx",
)
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*$")
_CELL_LIKE = re.compile(r"[ACGTN]{8,}|^\d+$|^(cell|barcode|spot|bc)", re.IGNORECASE)
_NUCLEOTIDES = re.compile(r"[ACGTN]{8,}")
_GENE_CORNERS = {
    "gene",
    "genes",
    "symbol",
    "gene_symbol",
    "gene_symbols",
    "genesymbol",
    "gene_name",
    "gene_names",
    "genename",
    "gene_id",
    "gene_ids",
    "geneid",
    "feature",
    "features",
    "feature_name",
    "ensembl",
    "ensembl_id",
    "id",
    "name",
    "hugo_symbol",
}
_CELL_CORNERS = {
    "cell",
    "cells",
    "cell_index",
    "cellindex",
    "cell_id",
    "cellid",
    "cell_name",
    "barcode",
    "barcodes",
    "cell_barcode",
    "cellbarcode",
    "spot",
    "spots",
    "spot_id",
    "obs",
    "obs_names",
}
_SYMBOL_COLUMNS = (
    "gene_symbols",
    "gene_symbol",
    "symbol",
    "symbols",
    "gene_name",
    "gene_names",
    "feature_name",
    "feature_names",
    "name",
    "genes",
)
# ---------------------------------------------------------------------------------------------
# Format detection
# ---------------------------------------------------------------------------------------------


def detect_format(path: str | os.PathLike) -> str:
    """Name the format of a count-data path.

    Parameters
    ----------
    path
        File or folder.

    Returns
    -------
    One of ``"10x_h5"``, ``"10x_mtx"``, ``"h5ad"``, ``"dense"``, ``"spaceranger"``.

    Raises
    ------
    TmeflowInputError
        The path does not exist or is none of the supported formats.
    """
    return _resolve(Path(path), sample=None)[0]


def _resolve(path: Path, sample: str | None) -> tuple[str, Path]:
    """Format and the path its reader should open (a folder may point at a file or subfolder)."""
    if not path.exists():
        raise TmeflowInputError("count data not found", file=path, sample=sample)
    if path.is_dir():
        return _resolve_dir(path, sample)
    head = _head_bytes(path, sample)
    name = path.name.lower()
    if head.startswith(_HDF5_MAGIC):
        return _hdf5_kind(path, sample), path
    if name.endswith((".h5", ".h5ad", ".hdf5")):
        raise TmeflowInputError(
            "file has an HDF5 name but is not an HDF5 file (corrupt or truncated?)", file=path, sample=sample
        )
    text = head
    if head.startswith(_GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as handle:
                text = handle.read(4096)
        except (OSError, EOFError) as error:
            raise TmeflowInputError(f"cannot decompress gzip file: {error}", file=path, sample=sample) from error
    if text.startswith(b"%%MatrixMarket"):
        if _mtx_files(path.parent, path) is None:
            raise TmeflowInputError(
                "Matrix Market file without barcodes.tsv and features.tsv/genes.tsv beside it", file=path, sample=sample
            )
        return "10x_mtx", path
    stem = name.removesuffix(".gz")
    if _looks_like_text_table(text) and (
        stem.endswith(_DENSE_SUFFIXES) or (not stem.endswith(_NOT_TABLES) and (b"\t" in text or b"," in text))
    ):
        return "dense", path
    raise TmeflowInputError(
        "unknown count-data format (expected a 10x .h5, a 10x mtx folder, .h5ad, a delimited text table "
        "or a Space Ranger outs/ folder)",
        file=path,
        sample=sample,
    )


def _head_bytes(path: Path, sample: str | None, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as handle:
            return handle.read(n)
    except OSError as error:
        raise TmeflowInputError(f"cannot read file: {error.strerror or error}", file=path, sample=sample) from error


def _looks_like_text_table(text: bytes) -> bool:
    if not text or b"\x00" in text:
        return False
    try:
        text.decode("utf-8")
    except UnicodeDecodeError as error:  # a multi-byte character cut at the end of the sample is fine
        if error.start < len(text) - 4:
            return False
    return b"\n" in text or len(text) < 4096


def _hdf5_kind(path: Path, sample: str | None) -> str:
    try:
        with h5py.File(path, "r") as handle:
            keys = set(handle.keys())
            if "matrix" in keys:
                return "10x_h5"
            if "X" in keys and "obs" in keys:
                return "h5ad"
            if keys and all(isinstance(handle[k], h5py.Group) and "barcodes" in handle[k] for k in keys):
                return "10x_h5"
    except OSError as error:
        raise TmeflowInputError(
            f"cannot open HDF5 file (corrupt or truncated?): {error}", file=path, sample=sample
        ) from error
    raise TmeflowInputError(
        "HDF5 file is neither a Cell Ranger matrix nor an AnnData (.h5ad)", file=path, sample=sample
    )


def _resolve_dir(path: Path, sample: str | None) -> tuple[str, Path]:
    for outs in (path, path / "outs"):
        if _spaceranger_counts(outs) is not None and (outs / "spatial").is_dir():
            return "spaceranger", outs
    if _mtx_files(path) is not None:
        return "10x_mtx", path
    for sub in (path / "filtered_feature_bc_matrix", path / "outs" / "filtered_feature_bc_matrix"):
        if sub.is_dir() and _mtx_files(sub) is not None:
            return "10x_mtx", sub
    for h5 in (path / "filtered_feature_bc_matrix.h5", path / "outs" / "filtered_feature_bc_matrix.h5"):
        if h5.is_file():
            return "10x_h5", h5
    for folder in (path, path / "filtered_feature_bc_matrix", path / "outs" / "filtered_feature_bc_matrix"):
        _missing_mtx_companion(folder, sample)
    raise TmeflowInputError(
        "folder holds no count data (expected matrix.mtx[.gz] with barcodes.tsv and features.tsv/genes.tsv, "
        "filtered_feature_bc_matrix/ or filtered_feature_bc_matrix.h5)",
        file=path,
        sample=sample,
    )


def _missing_mtx_companion(folder: Path, sample: str | None) -> None:
    """Fail for a folder with a matrix.mtx but no barcodes or features file, naming the missing file."""
    matrices = sorted(p for p in folder.glob("*matrix.mtx*") if p.name.endswith(("matrix.mtx", "matrix.mtx.gz")))
    if not matrices:
        return
    name = matrices[0].name.removesuffix(".gz")
    prefix = name[: -len("matrix.mtx")]
    suffix = ".gz" if matrices[0].name.endswith(".gz") else ""
    for _kind, names in (
        ("barcodes", ("barcodes.tsv", "barcodes.txt", "barcodes.csv")),
        ("features", ("features.tsv", "genes.tsv", "features.txt", "genes.txt")),
    ):
        if _find(folder, prefix, names) is None:
            raise TmeflowInputError(
                f"{prefix}{names[0]}{suffix} (or {prefix}{names[1]}) is missing beside {matrices[0].name}",
                file=folder,
                sample=sample,
            )


def _spaceranger_counts(outs: Path) -> Path | None:
    h5 = outs / "filtered_feature_bc_matrix.h5"
    if h5.is_file():
        return h5
    mtx = outs / "filtered_feature_bc_matrix"
    if mtx.is_dir() and _mtx_files(mtx) is not None:
        return mtx
    return None


def _find(folder: Path, prefix: str, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for suffix in ("", ".gz"):
            candidate = folder / f"{prefix}{name}{suffix}"
            if candidate.is_file():
                return candidate
    return None


def _mtx_files(folder: Path, matrix: Path | None = None) -> tuple[Path, Path, Path] | None:
    """``(matrix, barcodes, features)`` of a 10x mtx folder (file names may share a prefix)."""
    if matrix is None:
        candidates = sorted(p for p in folder.glob("*matrix.mtx*") if p.name.endswith(("matrix.mtx", "matrix.mtx.gz")))
        if not candidates:
            return None
        matrix = candidates[0]
    name = matrix.name.removesuffix(".gz")
    prefix = name[: -len("matrix.mtx")] if name.endswith("matrix.mtx") else ""
    barcodes = _find(folder, prefix, ("barcodes.tsv", "barcodes.txt", "barcodes.csv"))
    features = _find(folder, prefix, ("features.tsv", "genes.tsv", "features.txt", "genes.txt"))
    if barcodes is None or features is None:
        return None
    return matrix, barcodes, features
