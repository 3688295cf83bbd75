"""Readers of the binary and sparse formats: 10x HDF5 (v2/v3), 10x Matrix Market folders and h5ad."""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import warnings
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import TmeflowInputError
from ..genes import mostly_ensembl
from ..log import get_logger
from .detection import _GZIP_MAGIC, _SYMBOL_COLUMNS, _mtx_files

logger = get_logger(__package__)


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
        raise TmeflowInputError(
            f"cannot read Cell Ranger h5 (corrupt or not the Cell Ranger layout): {error}", file=path, sample=sample
        ) from error


def _csc_cells(group: h5py.Group) -> sp.csr_matrix:
    """Read the genes x cells CSC matrix of a Cell Ranger group, as cells x genes CSR."""
    n_genes, n_cells = (int(x) for x in group["shape"][:])
    matrix = sp.csc_matrix((group["data"][:], group["indices"][:], group["indptr"][:]), shape=(n_genes, n_cells))
    return matrix.T.tocsr()


def _read_10x_h5_v3(group: h5py.Group, path: Path, sample: str) -> ad.AnnData:
    features = group["features"]
    ids = _decode(features["id"][:])
    names = _decode(features["name"][:]) if "name" in features else ids
    types = _decode(features["feature_type"][:]) if "feature_type" in features else np.full(len(ids), "Gene Expression")
    matrix = _csc_cells(group)
    matrix, ids, names = _gene_expression_only(matrix, ids, names, types, path, sample)
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
            raise TmeflowInputError(
                f"genomes {genomes[0]} and {genome} have different barcodes in a Cell Ranger 2 h5",
                file=path,
                sample=sample,
            )
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
    """Read a file named ``.gz`` that is not gzip as plain Matrix Market (scipy goes by the name)."""
    with tempfile.TemporaryDirectory(prefix="tmeflow-mtx-") as folder:
        plain = Path(folder) / "matrix.mtx"
        os.symlink(path.resolve(), plain)
        return mmread(os.fspath(plain))


def _read_10x_mtx(path: Path, sample: str) -> ad.AnnData:
    files = _mtx_files(path.parent, path) if path.is_file() else _mtx_files(path)
    if files is None:
        raise TmeflowInputError(
            "mtx folder lacks matrix.mtx, barcodes.tsv or features.tsv/genes.tsv", file=path, sample=sample
        )
    matrix_file, barcodes_file, features_file = files
    from scipy.io import mmread

    try:
        matrix = _mmread(matrix_file, mmread)
    except (OSError, EOFError, ValueError, UnicodeDecodeError, IndexError) as error:
        raise TmeflowInputError(
            f"cannot read Matrix Market file (corrupt or truncated?): {error}", file=matrix_file, sample=sample
        ) from error
    matrix = sp.csr_matrix(matrix.T) if sp.issparse(matrix) else sp.csr_matrix(np.asarray(matrix).T)
    barcodes = np.array([row[0] for row in _read_lines_table(barcodes_file, sample)], dtype=object)
    features = _read_lines_table(features_file, sample)
    if len(barcodes) != matrix.shape[0]:
        raise TmeflowInputError(
            f"barcodes file has {len(barcodes)} lines but the matrix has {matrix.shape[0]} columns",
            file=barcodes_file,
            sample=sample,
        )
    if len(features) != matrix.shape[1]:
        raise TmeflowInputError(
            f"features file has {len(features)} lines but the matrix has {matrix.shape[1]} rows",
            file=features_file,
            sample=sample,
        )
    ids = np.array([row[0] for row in features], dtype=object)
    names = np.array([row[1] if len(row) > 1 else row[0] for row in features], dtype=object)
    types = np.array([row[2] if len(row) > 2 else "Gene Expression" for row in features], dtype=object)
    matrix, ids, names = _gene_expression_only(matrix, ids, names, types, features_file, sample)
    return _anndata(matrix, barcodes, names, ids, features_file, sample)


def _gene_expression_only(matrix, ids, names, types, path: Path, sample: str):
    """Keep the 'Gene Expression' features of a Cell Ranger matrix (antibody capture, CRISPR guides... dropped)."""
    keep = types == "Gene Expression"
    if not keep.any():
        raise TmeflowInputError(
            f"no 'Gene Expression' features (feature types: {', '.join(sorted(set(types)))})", file=path, sample=sample
        )
    if not keep.all():
        logger.info(
            "sample %s: kept %d Gene Expression features, dropped %d others (%s)",
            sample,
            int(keep.sum()),
            int((~keep).sum()),
            ", ".join(sorted(set(types[~keep]))),
        )
        matrix, ids, names = matrix[:, np.flatnonzero(keep)], ids[keep], names[keep]
    return matrix, ids, names


def _anndata(matrix, barcodes, names, ids, path: Path, sample: str) -> ad.AnnData:
    """AnnData from a cells x genes matrix; symbols as names, ``gene_ids`` when they carry information."""
    names = np.asarray(names, dtype=object)
    ids = np.asarray(ids, dtype=object)
    var = pd.DataFrame(index=pd.Index(names.astype(str), name=None))
    if not np.array_equal(ids, names):
        var["gene_ids"] = ids.astype(str)
    elif mostly_ensembl(names):
        logger.warning(
            "sample %s: genes have Ensembl ids only, no symbols; keeping ids as gene names (%s)", sample, path
        )
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
        raise TmeflowInputError(
            f"cannot read .h5ad (corrupt or not an AnnData): {type(error).__name__}: {error}", file=path, sample=sample
        ) from error
    var = source.var.copy()
    if "counts" in source.layers:
        matrix, origin = source.layers["counts"], "layers['counts']"
    elif source.raw is not None:
        matrix, origin, var = source.raw.X, ".raw.X", source.raw.var.copy()
    else:
        matrix, origin = source.X, "X"
        if matrix is not None and _looks_log_normalised(matrix):
            raise TmeflowInputError(
                "X looks log-normalised (non-integer, small values) and there is no "
                "layers['counts'] or .raw with raw counts",
                file=path,
                sample=sample,
            )
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
