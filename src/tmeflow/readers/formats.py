"""Readers for single-cell and spatial count data, one AnnData per sample.

:func:`read_counts` turns any supported single-cell file into an AnnData with raw counts in ``X``
(``scipy.sparse.csr_matrix``, float32), barcodes as ``obs_names`` and unique gene symbols as
``var_names``. :func:`read_spatial` does the same for a Space Ranger ``outs/`` folder and adds the
spot positions, scale factors and tissue images in the layout scanpy and squidpy expect.
:func:`detect_format` says which reader a path needs.

Supported inputs (:func:`detect_format` names):

``10x_h5``
    Cell Ranger feature-barcode HDF5 (v3+, only ``Gene Expression`` features are kept) or the
    Cell Ranger 2 layout (one group per genome).
``10x_mtx``
    A folder with ``matrix.mtx[.gz]``, ``barcodes.tsv[.gz]`` and ``features.tsv[.gz]`` (v3) or
    ``genes.tsv[.gz]`` (v2), file names optionally sharing a prefix (GEO style); a folder containing
    ``filtered_feature_bc_matrix/`` (or ``outs/filtered_feature_bc_matrix/``); or the
    ``matrix.mtx[.gz]`` file itself.
``h5ad``
    AnnData; counts from ``layers['counts']``, else ``raw.X``, else ``X``.
``dense``
    A delimited text table (tab, comma or whitespace; optionally gzipped), genes x cells or
    cells x genes, with optional leading ``#`` comment lines (BD Rhapsody exports).
``spaceranger``
    A Space Ranger ``outs/`` folder (a ``spatial/`` folder beside ``filtered_feature_bc_matrix.h5``
    or ``filtered_feature_bc_matrix/``), or a folder containing ``outs/``.

Orientation of dense tables
---------------------------
The header is the first line that does not start with ``#``. If the data rows have one field
more than the header, the header has no corner cell (R ``write.table`` style) and every header
field is a column label; otherwise the first header field is the corner cell. Which axis holds the
genes is then decided by, in order:

1. the corner cell, when it names an axis (``gene``, ``symbol``, ``gene_id``... -> genes in rows;
   ``cell``, ``barcode``, ``Cell_Index``... -> cells in rows);
2. the fraction of labels on each axis found in the bundled gene list
   (``resources/gene_positions/genes_*_xclone.tsv``, symbols and Ensembl ids, human and mouse),
   when that list ships with the package and one axis has at least 50% known genes and 30 points
   more than the other;
3. a label-shape score (gene-like: Ensembl id, or a symbol of letters/digits/``-``/``.`` without
   ``_``, up to 20 characters; cell-like: a stretch of 8+ nucleotides, a bare number, or a
   ``cell``/``barcode``/``spot`` prefix): the axis whose score is higher by 0.3 or more holds
   the genes;
4. otherwise genes in rows (the usual convention of GEO, inferCNV and Seurat exports), with a
   warning.

Validation
----------
Every reader checks the matrix: no cells or no genes, NaN or infinite values, negative values or
an all-zero matrix raise :class:`~tmeflow.errors.TmeflowInputError`. Non-integer values are logged
as a warning with their fraction, or raise with ``strict_counts=True``.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import os
import shutil
import tempfile
import re
import time
import warnings
from functools import cache
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from .errors import TmeflowInputError
from .genes import ENSEMBL_ID, mostly_ensembl
from .log import get_logger

logger = get_logger(__name__)

FORMATS = ("10x_h5", "10x_mtx", "h5ad", "dense", "spaceranger")

_HDF5_MAGIC = b"\x89HDF\r\n\x1a\n"
_GZIP_MAGIC = b"\x1f\x8b"
_DENSE_SUFFIXES = (".csv", ".tsv", ".txt", ".tab", ".matrix")
_NOT_TABLES = (".json", ".yaml", ".yml", ".md", ".html", ".rds", ".rda", ".rdata", ".loom", ".xlsx", ".xls", ".pdf",
               ".png", ".jpg", ".jpeg", ".tif", ".tiff", ".zip", ".tar", ".bam", ".fastq", ".fq", ".mtx")
_SYMBOL = re.compile(r"^[A-Za-z][A-Za-z0-9]*(?:[-.][A-Za-z0-9]+)*$")
_CELL_LIKE = re.compile(r"[ACGTN]{8,}|^\d+$|^(cell|barcode|spot|bc)", re.IGNORECASE)
_NUCLEOTIDES = re.compile(r"[ACGTN]{8,}")
_GENE_CORNERS = {"gene", "genes", "symbol", "gene_symbol", "gene_symbols", "genesymbol", "gene_name",
                 "gene_names", "genename", "gene_id", "gene_ids", "geneid", "feature", "features",
                 "feature_name", "ensembl", "ensembl_id", "id", "name", "hugo_symbol"}
_CELL_CORNERS = {"cell", "cells", "cell_index", "cellindex", "cell_id", "cellid", "cell_name", "barcode",
                 "barcodes", "cell_barcode", "cellbarcode", "spot", "spots", "spot_id", "obs", "obs_names"}
_SYMBOL_COLUMNS = ("gene_symbols", "gene_symbol", "symbol", "symbols", "gene_name", "gene_names",
                   "feature_name", "feature_names", "name", "genes")
_DENSE_CHUNK_VALUES = 5_000_000


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
        raise TmeflowInputError("file has an HDF5 name but is not an HDF5 file (corrupt or truncated?)",
                                file=path, sample=sample)
    text = head
    if head.startswith(_GZIP_MAGIC):
        try:
            with gzip.open(path, "rb") as handle:
                text = handle.read(4096)
        except (OSError, EOFError) as error:
            raise TmeflowInputError(f"cannot decompress gzip file: {error}", file=path, sample=sample) from error
    if text.startswith(b"%%MatrixMarket"):
        if _mtx_files(path.parent, path) is None:
            raise TmeflowInputError("Matrix Market file without barcodes.tsv and features.tsv/genes.tsv beside it",
                                    file=path, sample=sample)
        return "10x_mtx", path
    stem = name.removesuffix(".gz")
    if _looks_like_text_table(text) and (
        stem.endswith(_DENSE_SUFFIXES) or (not stem.endswith(_NOT_TABLES) and (b"\t" in text or b"," in text))
    ):
        return "dense", path
    raise TmeflowInputError(
        "unknown count-data format (expected a 10x .h5, a 10x mtx folder, .h5ad, a delimited text table "
        "or a Space Ranger outs/ folder)", file=path, sample=sample)


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
        raise TmeflowInputError(f"cannot open HDF5 file (corrupt or truncated?): {error}",
                                file=path, sample=sample) from error
    raise TmeflowInputError("HDF5 file is neither a Cell Ranger matrix nor an AnnData (.h5ad)",
                            file=path, sample=sample)


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
        "filtered_feature_bc_matrix/ or filtered_feature_bc_matrix.h5)", file=path, sample=sample)


def _missing_mtx_companion(folder: Path, sample: str | None) -> None:
    """A folder with a matrix.mtx but no barcodes or features file: name the missing file."""
    matrices = sorted(p for p in folder.glob("*matrix.mtx*") if p.name.endswith(("matrix.mtx", "matrix.mtx.gz")))
    if not matrices:
        return
    name = matrices[0].name.removesuffix(".gz")
    prefix = name[: -len("matrix.mtx")]
    suffix = ".gz" if matrices[0].name.endswith(".gz") else ""
    for kind, names in (("barcodes", ("barcodes.tsv", "barcodes.txt", "barcodes.csv")),
                        ("features", ("features.tsv", "genes.tsv", "features.txt", "genes.txt"))):
        if _find(folder, prefix, names) is None:
            raise TmeflowInputError(f"{prefix}{names[0]}{suffix} (or {prefix}{names[1]}) is missing beside "
                                    f"{matrices[0].name}", file=folder, sample=sample)


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


# ---------------------------------------------------------------------------------------------
# Public readers
# ---------------------------------------------------------------------------------------------


def read_counts(path: str | os.PathLike, *, sample: str, strict_counts: bool = False) -> ad.AnnData:
    """Read one sample's single-cell raw counts, whatever the file format.

    Parameters
    ----------
    path
        A 10x ``.h5``, a 10x mtx folder (or its ``matrix.mtx[.gz]``), an ``.h5ad``, a delimited text
        table, or a Space Ranger ``outs/`` folder (counts only; see :func:`read_spatial`).
    sample
        Sample name, used in messages.
    strict_counts
        Raise instead of warning when the matrix holds non-integer values.

    Returns
    -------
    AnnData with raw counts in ``X`` (CSR, float32), barcodes as ``obs_names`` (unchanged), unique
    gene symbols as ``var_names`` and ``var['gene_ids']`` when the file has gene ids that differ from
    the symbols. An ``.h5ad`` keeps its ``obs`` columns (for example ``true_*`` truth columns).

    Raises
    ------
    TmeflowInputError
        Missing, unreadable or unknown file; empty, all-zero, negative or NaN matrix; non-integer
        values with ``strict_counts``.
    """
    path = Path(path)
    start = time.perf_counter()
    fmt, target = _resolve(path, sample)
    if fmt == "spaceranger":
        fmt, target = ("10x_h5" if _spaceranger_counts(target).is_file() else "10x_mtx"), _spaceranger_counts(target)
    reader = {"10x_h5": _read_10x_h5, "10x_mtx": _read_10x_mtx, "h5ad": _read_h5ad, "dense": _read_dense}[fmt]
    adata = reader(target, sample)
    adata = _finalise(adata, target, sample, strict_counts)
    logger.info("sample %s: read %d cells x %d genes from %s (%s) in %.1f s",
                sample, adata.n_obs, adata.n_vars, path, fmt, time.perf_counter() - start)
    return adata


def read_spatial(path: str | os.PathLike, *, sample: str, strict_counts: bool = False) -> ad.AnnData:
    """Read a Space Ranger (or Space Ranger-like) ``outs/`` folder.

    Parameters
    ----------
    path
        The ``outs/`` folder (``filtered_feature_bc_matrix.h5`` or ``filtered_feature_bc_matrix/``
        beside ``spatial/``), or a folder containing ``outs/``.
    sample
        Sample name: the key of ``uns['spatial']`` and used in messages.
    strict_counts
        Raise instead of warning when the matrix holds non-integer values.

    Returns
    -------
    AnnData as from :func:`read_counts` plus ``obs`` columns ``in_tissue`` (int), ``array_row``,
    ``array_col``; ``obsm['spatial']`` full-resolution pixel coordinates (x = column, y = row);
    ``uns['spatial'][sample]`` with ``images`` (``lowres``/``hires`` when present, uint8 arrays),
    ``scalefactors`` and ``metadata``. Spots outside the tissue are kept. Any grid works (hexagonal
    Visium or square), nothing assumes a lattice.

    Raises
    ------
    TmeflowInputError
        No counts or positions file; matrix barcodes missing from the positions file; no spot in
        tissue; malformed positions or scale factors; the checks of :func:`read_counts`.
    """
    path = Path(path)
    start = time.perf_counter()
    if not path.exists():
        raise TmeflowInputError("spatial data not found", file=path, sample=sample)
    if not path.is_dir():
        raise TmeflowInputError("spatial data must be a Space Ranger outs/ folder", file=path, sample=sample)
    outs = next((o for o in (path, path / "outs") if _spaceranger_counts(o) is not None), None)
    if outs is None:
        raise TmeflowInputError("no filtered_feature_bc_matrix.h5 or filtered_feature_bc_matrix/ in the spatial folder",
                                file=path, sample=sample)
    spatial_dir = outs / "spatial"
    if not spatial_dir.is_dir():
        raise TmeflowInputError("no spatial/ folder beside the count matrix", file=outs, sample=sample)
    adata = read_counts(_spaceranger_counts(outs), sample=sample, strict_counts=strict_counts)

    positions_file, positions = _read_positions(spatial_dir, sample)
    missing = adata.obs_names.difference(positions.index, sort=False)
    if len(missing):
        raise TmeflowInputError(
            f"{len(missing)} of {adata.n_obs} matrix barcodes are missing from the positions file "
            f"(e.g. {missing[0]})", file=positions_file, sample=sample)
    dropped = len(positions) - adata.n_obs
    positions = positions.loc[adata.obs_names]
    if int(positions["in_tissue"].sum()) == 0:
        raise TmeflowInputError(f"none of the {adata.n_obs} spots is in tissue (in_tissue is 0 everywhere)",
                                file=positions_file, sample=sample)
    for column in ("in_tissue", "array_row", "array_col"):
        adata.obs[column] = positions[column].to_numpy()
    adata.obsm["spatial"] = positions[["pxl_col_in_fullres", "pxl_row_in_fullres"]].to_numpy(dtype=np.float64)

    scalefactors = _read_scalefactors(spatial_dir, sample)
    images = {}
    for key in ("lowres", "hires"):
        image_file = spatial_dir / f"tissue_{key}_image.png"
        if image_file.is_file():
            images[key] = _read_image(image_file, sample)
    if not images:
        logger.warning("sample %s: no tissue_lowres_image.png or tissue_hires_image.png in %s", sample, spatial_dir)
    adata.uns["spatial"] = {sample: {"images": images, "scalefactors": scalefactors, "metadata": {}}}
    logger.info("sample %s: %d spots (%d in tissue, %d positions without counts dropped), images %s, read in %.1f s",
                sample, adata.n_obs, int(adata.obs["in_tissue"].sum()), dropped,
                ", ".join(f"{k} {v.shape}" for k, v in images.items()) or "none", time.perf_counter() - start)
    return adata


# ---------------------------------------------------------------------------------------------
# Format readers: each returns an AnnData (X any sparse/dense matrix); _finalise checks it
# ---------------------------------------------------------------------------------------------


def _decode(values) -> np.ndarray:
    return np.array([v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values], dtype=object)


def _read_10x_h5(path: Path, sample: str) -> ad.AnnData:
    try:
        with h5py.File(path, "r") as handle:
            if "matrix" in handle:
                return _read_10x_h5_v3(handle["matrix"], path, sample)
            return _read_10x_h5_v2(handle, path, sample)
    except TmeflowInputError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise TmeflowInputError(f"cannot read Cell Ranger h5 (corrupt or not the Cell Ranger layout): {error}",
                                file=path, sample=sample) from error


def _csc_cells(group: h5py.Group) -> sp.csr_matrix:
    """The genes x cells CSC matrix of a Cell Ranger group, as cells x genes CSR."""
    n_genes, n_cells = (int(x) for x in group["shape"][:])
    matrix = sp.csc_matrix((group["data"][:], group["indices"][:], group["indptr"][:]), shape=(n_genes, n_cells))
    return matrix.T.tocsr()


def _read_10x_h5_v3(group: h5py.Group, path: Path, sample: str) -> ad.AnnData:
    features = group["features"]
    ids = _decode(features["id"][:])
    names = _decode(features["name"][:]) if "name" in features else ids
    types = _decode(features["feature_type"][:]) if "feature_type" in features else np.full(len(ids), "Gene Expression")
    matrix = _csc_cells(group)
    keep = types == "Gene Expression"
    if not keep.any():
        raise TmeflowInputError(f"no 'Gene Expression' features (feature types: {', '.join(sorted(set(types)))})",
                                file=path, sample=sample)
    if not keep.all():
        logger.info("sample %s: kept %d Gene Expression features, dropped %d others (%s)", sample, int(keep.sum()),
                    int((~keep).sum()), ", ".join(sorted(set(types[~keep]))))
        matrix, ids, names = matrix[:, np.flatnonzero(keep)], ids[keep], names[keep]
    return _anndata(matrix, _decode(group["barcodes"][:]), names, ids, path, sample)


def _read_10x_h5_v2(handle: h5py.File, path: Path, sample: str) -> ad.AnnData:
    genomes = sorted(handle.keys())
    if not genomes:
        raise TmeflowInputError("empty HDF5 file", file=path, sample=sample)
    barcodes = _decode(handle[genomes[0]]["barcodes"][:])
    matrices, ids, names = [], [], []
    for genome in genomes:
        group = handle[genome]
        if not np.array_equal(_decode(group["barcodes"][:]), barcodes):
            raise TmeflowInputError(f"genomes {genomes[0]} and {genome} have different barcodes in a Cell Ranger 2 h5",
                                    file=path, sample=sample)
        matrices.append(_csc_cells(group))
        ids.append(_decode(group["genes"][:]))
        names.append(_decode(group["gene_names"][:]) if "gene_names" in group else ids[-1])
    matrix = matrices[0] if len(matrices) == 1 else sp.hstack(matrices, format="csr")
    return _anndata(matrix, barcodes, np.concatenate(names), np.concatenate(ids), path, sample)


def _open_text(path: Path):
    with open(path, "rb") as probe:
        gz = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rt", encoding="utf-8", newline="") if gz else open(path, encoding="utf-8", newline="")


def _read_lines_table(path: Path, sample: str) -> list[list[str]]:
    try:
        with _open_text(path) as handle:
            return [line.rstrip("\r\n").split("\t") for line in handle if line.strip()]
    except (OSError, EOFError, UnicodeDecodeError) as error:
        raise TmeflowInputError(f"cannot read file: {error}", file=path, sample=sample) from error


def _mmread(path: Path, mmread):
    """Read a Matrix Market file, gzipped or not, whatever its name says.

    scipy's reader parses in C++ threads that read a Python stream; a gzip stream that fails part-way
    (truncated, or not gzip at all) then aborts the process or prints "Exception ignored" noise. A
    gzipped file is therefore decompressed here first (a corrupt one fails cleanly in Python) into a
    temporary file that the reader opens natively.
    """
    with open(path, "rb") as probe:
        gz = probe.read(2) == _GZIP_MAGIC
    if not gz:
        return mmread(os.fspath(path)) if not path.name.endswith(".gz") else _mmread_plain(path, mmread)
    with tempfile.TemporaryDirectory(prefix="tmeflow-mtx-") as folder:
        plain = Path(folder) / "matrix.mtx"
        with gzip.open(path, "rb") as source, open(plain, "wb") as target:
            shutil.copyfileobj(source, target, length=16 * 1024 * 1024)
        return mmread(os.fspath(plain))


def _mmread_plain(path: Path, mmread):
    """A file named ``.gz`` that is not gzip: read it as plain Matrix Market (scipy goes by the name)."""
    with tempfile.TemporaryDirectory(prefix="tmeflow-mtx-") as folder:
        plain = Path(folder) / "matrix.mtx"
        os.symlink(path.resolve(), plain)
        return mmread(os.fspath(plain))


def _read_10x_mtx(path: Path, sample: str) -> ad.AnnData:
    files = _mtx_files(path.parent, path) if path.is_file() else _mtx_files(path)
    if files is None:
        raise TmeflowInputError("mtx folder lacks matrix.mtx, barcodes.tsv or features.tsv/genes.tsv",
                                file=path, sample=sample)
    matrix_file, barcodes_file, features_file = files
    from scipy.io import mmread

    try:
        matrix = _mmread(matrix_file, mmread)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, IndexError) as error:
        raise TmeflowInputError(f"cannot read Matrix Market file (corrupt or truncated?): {error}",
                                file=matrix_file, sample=sample) from error
    matrix = sp.csr_matrix(matrix.T) if sp.issparse(matrix) else sp.csr_matrix(np.asarray(matrix).T)
    barcodes = np.array([row[0] for row in _read_lines_table(barcodes_file, sample)], dtype=object)
    features = _read_lines_table(features_file, sample)
    if len(barcodes) != matrix.shape[0]:
        raise TmeflowInputError(f"barcodes file has {len(barcodes)} lines but the matrix has {matrix.shape[0]} columns",
                                file=barcodes_file, sample=sample)
    if len(features) != matrix.shape[1]:
        raise TmeflowInputError(f"features file has {len(features)} lines but the matrix has {matrix.shape[1]} rows",
                                file=features_file, sample=sample)
    ids = np.array([row[0] for row in features], dtype=object)
    names = np.array([row[1] if len(row) > 1 else row[0] for row in features], dtype=object)
    types = np.array([row[2] if len(row) > 2 else "Gene Expression" for row in features], dtype=object)
    keep = types == "Gene Expression"
    if not keep.any():
        raise TmeflowInputError("no 'Gene Expression' features", file=features_file, sample=sample)
    if not keep.all():
        logger.info("sample %s: kept %d Gene Expression features, dropped %d others (%s)", sample, int(keep.sum()),
                    int((~keep).sum()), ", ".join(sorted(set(types[~keep]))))
        matrix, ids, names = matrix[:, np.flatnonzero(keep)], ids[keep], names[keep]
    return _anndata(matrix, barcodes, names, ids, features_file, sample)


def _anndata(matrix, barcodes, names, ids, path: Path, sample: str) -> ad.AnnData:
    """AnnData from a cells x genes matrix; symbols as names, ``gene_ids`` when they carry information."""
    names = np.asarray(names, dtype=object)
    ids = np.asarray(ids, dtype=object)
    var = pd.DataFrame(index=pd.Index(names.astype(str), name=None))
    if not np.array_equal(ids, names):
        var["gene_ids"] = ids.astype(str)
    elif mostly_ensembl(names):
        logger.warning("sample %s: genes have Ensembl ids only, no symbols; keeping ids as gene names (%s)",
                       sample, path)
    var.index = _unique_names(var.index, sample)
    obs = pd.DataFrame(index=pd.Index(np.asarray(barcodes).astype(str), name=None))
    return ad.AnnData(X=matrix, obs=obs, var=var)


def _unique_names(names: pd.Index, sample: str) -> pd.Index:
    """``names`` made unique the way ``AnnData.var_names_make_unique`` does (``-1``, ``-2`` suffixes)."""
    duplicated = int(names.duplicated().sum())
    if not duplicated:
        return names
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        unique = ad.utils.make_index_unique(pd.Index(names))
    logger.info("sample %s: made %d duplicated gene names unique (suffix -1, -2, ...)", sample, duplicated)
    return unique


def _read_h5ad(path: Path, sample: str) -> ad.AnnData:
    try:
        with warnings.catch_warnings():  # duplicated names are made unique below
            warnings.filterwarnings("ignore", message=".*names are not unique", category=UserWarning)
            source = ad.read_h5ad(path)
    except Exception as error:  # anndata raises many types for broken files
        raise TmeflowInputError(f"cannot read .h5ad (corrupt or not an AnnData): {type(error).__name__}: {error}",
                                file=path, sample=sample) from error
    var = source.var.copy()
    if "counts" in source.layers:
        matrix, origin = source.layers["counts"], "layers['counts']"
    elif source.raw is not None:
        matrix, origin, var = source.raw.X, ".raw.X", source.raw.var.copy()
    else:
        matrix, origin = source.X, "X"
        if matrix is not None and _looks_log_normalised(matrix):
            raise TmeflowInputError("X looks log-normalised (non-integer, small values) and there is no "
                                    "layers['counts'] or .raw with raw counts", file=path, sample=sample)
    if matrix is None:
        raise TmeflowInputError("the AnnData has no X, layers['counts'] or .raw", file=path, sample=sample)
    logger.info("sample %s: counts from %s of %s", sample, origin, path)
    var = _symbols_as_names(var, sample, path)
    var.index = _unique_names(var.index, sample)
    obs = source.obs.copy()
    obs.index = obs.index.astype(str)
    adata = ad.AnnData(X=matrix, obs=obs, var=var)
    for key, value in source.obsm.items():
        adata.obsm[key] = value
    if "spatial" in source.uns:
        adata.uns["spatial"] = source.uns["spatial"]
    return adata


def _looks_log_normalised(matrix) -> bool:
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel()
    values = values[:1_000_000]
    values = values[np.isfinite(values) & (values != 0)]
    if not len(values):
        return False
    return bool(np.any(values != np.round(values)) and values.max() < 50)


def _symbols_as_names(var: pd.DataFrame, sample: str, path: Path) -> pd.DataFrame:
    """Use a symbol column as ``var_names`` when the names are Ensembl ids."""
    var = var.copy()
    names = var.index.astype(str)
    if not mostly_ensembl(names):
        var.index = names
        return var
    for column in _SYMBOL_COLUMNS:
        if column in var.columns:
            symbols = var[column].astype(str)
            if mostly_ensembl(symbols):
                continue
            empty = symbols.isin(["", "nan", "None"]).to_numpy()
            symbols = np.where(empty, names, symbols.to_numpy())
            if "gene_ids" not in var.columns:
                var["gene_ids"] = np.asarray(names)
            var.index = pd.Index(symbols.astype(str))
            logger.info("sample %s: var_names were Ensembl ids; using symbols from var['%s']", sample, column)
            return var
    logger.warning("sample %s: genes have Ensembl ids only, no symbols; keeping ids as gene names (%s)", sample, path)
    var.index = names
    return var


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
        raise TmeflowInputError(f"header has {len(header)} fields but the first data row has {n_fields}",
                                file=path, sample=sample)
    if not column_labels:
        raise TmeflowInputError("text table has no data columns (empty matrix)", file=path, sample=sample)

    blocks, row_labels = [], []
    chunksize = max(1, _DENSE_CHUNK_VALUES // len(column_labels))
    names = list(range(len(column_labels) + 1))
    dtype = {0: str, **{i: np.float64 for i in names[1:]}}
    try:
        reader = pd.read_csv(path, sep=sep, header=None, names=names, skiprows=n_comments + 1, dtype=dtype,
                             index_col=0, chunksize=chunksize, compression=_compression(path),
                             skip_blank_lines=True, quotechar='"', engine="c")
        with reader:
            for chunk in reader:
                values = chunk.to_numpy(dtype=np.float64)
                if np.isnan(values).any():
                    row = chunk.index[np.flatnonzero(np.isnan(values).any(axis=1))[0]]
                    raise TmeflowInputError(f"missing or NaN values in the table (first in row {row})",
                                            file=path, sample=sample)
                blocks.append(sp.csr_matrix(values))
                row_labels.extend(chunk.index.astype(str))
    except TmeflowInputError:
        raise
    except (ValueError, pd.errors.ParserError, OSError, EOFError, UnicodeDecodeError) as error:
        message = " ".join(str(error).split())[:300]
        raise TmeflowInputError(f"cannot parse text table (non-numeric values or ragged rows?): {message}",
                                file=path, sample=sample) from error
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
    gene = sum(bool(ENSEMBL_ID.match(x) or (len(x) <= 20 and _SYMBOL.match(x) and not _CELL_LIKE.search(x)))
               for x in sample_labels)
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
    logger.warning("sample %s: cannot tell whether genes are rows or columns of %s; assuming genes in rows",
                   sample, path)
    return True


# ---------------------------------------------------------------------------------------------
# Checks shared by all formats
# ---------------------------------------------------------------------------------------------


def _finalise(adata: ad.AnnData, path: Path, sample: str, strict_counts: bool) -> ad.AnnData:
    """Check the counts and bring ``X`` to CSR float32 with unique gene names."""
    if adata.n_obs == 0 or adata.n_vars == 0:
        raise TmeflowInputError(f"empty matrix ({adata.n_obs} cells x {adata.n_vars} genes)", file=path, sample=sample)
    matrix = adata.X
    matrix = sp.csr_matrix(matrix) if not sp.issparse(matrix) else matrix.tocsr()
    data = np.asarray(matrix.data, dtype=np.float64)
    if not np.isfinite(data).all():
        raise TmeflowInputError(f"{int((~np.isfinite(data)).sum())} NaN or infinite values in the count matrix",
                                file=path, sample=sample)
    if (data < 0).any():
        raise TmeflowInputError(f"{int((data < 0).sum())} negative values in the count matrix (expected raw counts)",
                                file=path, sample=sample)
    nonzero = data[data != 0]
    if not len(nonzero):
        raise TmeflowInputError("the count matrix is all zero", file=path, sample=sample)
    non_integer = float(np.mean(nonzero != np.round(nonzero)))
    if non_integer > 0:
        message = f"{non_integer:.1%} of the non-zero values are not integers (expected raw counts)"
        if strict_counts:
            raise TmeflowInputError(message, file=path, sample=sample)
        logger.warning("sample %s: %s in %s", sample, message, path)
    matrix = sp.csr_matrix((data.astype(np.float32), matrix.indices, matrix.indptr), shape=matrix.shape)
    matrix.eliminate_zeros()
    matrix.sort_indices()
    adata.X = matrix
    if adata.var_names.has_duplicates:
        adata.var_names = _unique_names(adata.var_names, sample)
    if adata.obs_names.has_duplicates:  # cell names must be unique for every later stage
        duplicated = adata.obs_names[adata.obs_names.duplicated()]
        raise TmeflowInputError(f"{len(duplicated)} duplicated barcodes (first: {duplicated[0]}); "
                                "each cell needs a unique barcode", file=path, sample=sample)
    return adata


# ---------------------------------------------------------------------------------------------
# Spatial pieces
# ---------------------------------------------------------------------------------------------

_POSITION_COLUMNS = ["barcode", "in_tissue", "array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres"]


def _read_positions(spatial_dir: Path, sample: str) -> tuple[Path, pd.DataFrame]:
    """Spot positions indexed by barcode (v2 ``tissue_positions.csv`` with header or v1 without)."""
    for name in ("tissue_positions.csv", "tissue_positions_list.csv"):
        path = spatial_dir / name
        if path.is_file():
            break
    else:
        raise TmeflowInputError("no tissue_positions.csv or tissue_positions_list.csv in spatial/",
                                file=spatial_dir, sample=sample)
    try:
        with open(path, encoding="utf-8") as handle:
            first = handle.readline().split(",")
        has_header = len(first) > 1 and not first[1].strip().lstrip("-").isdigit()
        table = pd.read_csv(path, header=0 if has_header else None, dtype={0: str})
    except (OSError, ValueError, UnicodeDecodeError, pd.errors.ParserError) as error:
        raise TmeflowInputError(f"cannot read positions file: {error}", file=path, sample=sample) from error
    if table.shape[1] != 6:
        raise TmeflowInputError(
            f"positions file has {table.shape[1]} columns, expected 6 ({', '.join(_POSITION_COLUMNS)})",
            file=path, sample=sample)
    table.columns = _POSITION_COLUMNS
    table["barcode"] = table["barcode"].astype(str)
    if table["barcode"].duplicated().any():
        raise TmeflowInputError(f"duplicated barcode {table['barcode'][table['barcode'].duplicated()].iloc[0]} in "
                                "the positions file", file=path, sample=sample)
    try:
        for column in _POSITION_COLUMNS[1:4]:
            table[column] = pd.to_numeric(table[column], errors="raise").astype(np.int64)
        for column in _POSITION_COLUMNS[4:]:
            table[column] = pd.to_numeric(table[column], errors="raise").astype(np.float64)
    except (ValueError, TypeError) as error:
        raise TmeflowInputError(f"non-numeric or missing position values: {error}", file=path, sample=sample) from error
    return path, table.set_index("barcode")


def _read_scalefactors(spatial_dir: Path, sample: str) -> dict:
    path = spatial_dir / "scalefactors_json.json"
    if not path.is_file():
        logger.warning("sample %s: no scalefactors_json.json in %s; scale factors left empty", sample, spatial_dir)
        return {}
    try:
        scalefactors = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise TmeflowInputError(f"cannot parse scale factors JSON: {error}", file=path, sample=sample) from error
    if not isinstance(scalefactors, dict):
        raise TmeflowInputError("scale factors JSON is not an object", file=path, sample=sample)
    return scalefactors


def _read_image(path: Path, sample: str) -> np.ndarray:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            if image.mode not in ("RGB", "RGBA"):
                image = image.convert("RGB")
            return np.asarray(image)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise TmeflowInputError(f"cannot read tissue image: {error}", file=path, sample=sample) from error
