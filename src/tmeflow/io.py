"""Atomic output writing shared by every stage.

Every file a stage writes goes to a temporary name in the same folder and is renamed into place
only once complete, so a failed or killed run never leaves a file that looks finished.
"""

from __future__ import annotations

import gzip
import json
import math
import os
import tempfile
from collections.abc import Collection, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from . import __version__
from .errors import TmeflowInputError

if TYPE_CHECKING:
    from matplotlib.figure import Figure

_UMASK = os.umask(0o022)
os.umask(_UMASK)


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; rename it to ``path`` when the block succeeds.

    The temporary file keeps the final suffix (writers such as matplotlib and anndata choose
    their format from it) and is removed if the block raises.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.stem}.", suffix=f".tmp{path.suffix}", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; give outputs the usual permissions
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


@contextmanager
def _h5ad_input(path: str | os.PathLike, what: str) -> Iterator[Path]:
    """Yield ``path`` as a Path; a missing file, or one the block cannot read, is a one-line input error."""
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError(f"{what} not found", file=path)
    try:
        yield path
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise TmeflowInputError(f"cannot read {what} as h5ad ({str(error).splitlines()[0]})", file=path) from error


def read_h5ad(path: str | os.PathLike, what: str = "input h5ad", *, backed: str | None = None):
    """Read a stage's input AnnData; a missing or unreadable file is a :class:`TmeflowInputError`."""
    import anndata as ad

    with _h5ad_input(path, what) as path:
        return ad.read_h5ad(path, backed=backed)


def read_h5ad_parts(path: str | os.PathLike, what: str = "input h5ad", *, obsm_keys: tuple[str, ...] = ()):
    """Read only an h5ad's ``obs``, ``var`` and the named ``obsm`` entries; the matrices stay on disk.

    ``anndata.read_h5ad(..., backed="r")`` keeps ``X`` on disk but still loads every layer, graph and
    embedding (~16 GB for a million-cell atlas with raw counts); this reads the parts a cell-table step
    needs with h5py.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    what
        What the file is (e.g. ``"atlas h5ad"``), named in the error when it is missing or unreadable.
    obsm_keys
        ``obsm`` entries to read; those absent from the file are left out.

    Returns
    -------
    AnnData
        No ``X``; ``obs`` and ``var`` as anndata reads them, ``obsm`` with the named entries present.
    """
    import anndata as ad
    import h5py
    from anndata.io import read_elem

    with _h5ad_input(path, what) as path, h5py.File(path, "r") as handle:
        obsm = handle.get("obsm", {})
        return ad.AnnData(
            obs=read_elem(handle["obs"]),
            var=read_elem(handle["var"]),
            obsm={key: read_elem(obsm[key]) for key in obsm_keys if key in obsm},
        )


@contextmanager
def h5ad_on_disk(path: str | os.PathLike, what: str, *, obsp_keys: tuple[str, ...] = ()) -> Iterator[Any]:
    """Open an h5ad with its matrices left on disk: an AnnData for the block of a ``with`` statement.

    ``X`` and the ``layers`` stored as CSR are the file's backed datasets (:func:`anndata.io.sparse_dataset`; rows
    are read when indexed, e.g. by :func:`row_blocks` or ``adata[rows]``; other storage is read); ``obs``,
    ``var``, ``obsm``, ``uns`` and the named ``obsp`` graphs are read. A stage that works on every cell in row blocks
    then holds its results, not the atlas (a million-cell atlas' log-normalised ``X`` and raw counts are ~16 GB
    each).

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    what
        What the file is, named in the error when it is missing or unreadable.
    obsp_keys
        Cell-cell graphs to read (those absent from the file are left out).

    Returns
    -------
    Iterator
        The AnnData, usable until the block ends (the file is closed then).
    """
    import anndata as ad
    import h5py
    from anndata.io import read_elem

    with ExitStack() as open_file:
        with _h5ad_input(path, what) as path:  # errors of the caller's block are not reading errors
            handle = open_file.enter_context(h5py.File(path, "r"))

            def on_disk(element):
                csr = element.attrs.get("encoding-type", "") == "csr_matrix"
                return ad.io.sparse_dataset(element) if csr else read_elem(element)

            obsm, layers, obsp = (handle.get(key, {}) for key in ("obsm", "layers", "obsp"))
            adata = ad.AnnData(
                X=on_disk(handle["X"]) if "X" in handle else None,
                layers={key: on_disk(layers[key]) for key in layers},
                obs=read_elem(handle["obs"]),
                var=read_elem(handle["var"]),
                obsm={key: read_elem(obsm[key]) for key in obsm},
                obsp={key: read_elem(obsp[key]) for key in obsp_keys if key in obsp},
                uns=read_elem(handle["uns"]) if "uns" in handle else {},
            )
        yield adata


def read_h5ad_rows(path: str | os.PathLike, what: str, rows) -> Any:
    """Read the cells at ``rows`` of an h5ad: their ``X``, layers, ``obs`` and ``obsm`` rows, with ``var`` and ``uns``.

    CSR matrices are read row by row from disk (:func:`anndata.io.sparse_dataset`), so a subset of a
    million-cell atlas costs the subset's memory, not the atlas's; cell-cell graphs (``obsp``) are left out.

    Parameters
    ----------
    path
        The ``.h5ad`` file.
    what
        What the file is, named in the error when it is missing or unreadable.
    rows
        Increasing integer positions of the cells to read.

    Returns
    -------
    AnnData
        The cells at ``rows``, in that order; categorical ``obs`` columns keep only the categories present (as
        anndata's subsetting does).
    """
    import anndata as ad
    import h5py
    from anndata.io import read_elem

    def rows_of(element):
        if element.attrs.get("encoding-type", "") == "csr_matrix":
            return ad.io.sparse_dataset(element)[rows]
        value = read_elem(element)
        return value.iloc[rows] if hasattr(value, "iloc") else value[rows]

    with _h5ad_input(path, what) as path, h5py.File(path, "r") as handle:
        group = {key: handle.get(key, {}) for key in ("layers", "obsm")}
        return ad.AnnData(
            X=rows_of(handle["X"]) if "X" in handle else None,
            obs=rows_of(handle["obs"]).apply(  # as anndata's subsetting: categories of the subset only
                lambda column: column.cat.remove_unused_categories() if column.dtype == "category" else column
            ),
            var=read_elem(handle["var"]),
            layers={key: rows_of(group["layers"][key]) for key in group["layers"]},
            obsm={key: rows_of(group["obsm"][key]) for key in group["obsm"]},
            uns=read_elem(handle["uns"]) if "uns" in handle else {},
        )


#: rows of a cells x genes matrix read into memory at a time by :func:`row_blocks` (~2,000 non-zeros per cell: ~40 M)
ROW_BLOCK_CELLS = 20_000


def row_blocks(matrix, size: int | None = None) -> Iterator[tuple[int, Any]]:
    """Yield the rows of a matrix in blocks, each read into memory.

    Parameters
    ----------
    matrix
        Cells x genes: an array, a scipy sparse matrix or an h5ad's backed CSR dataset
        (:func:`anndata.io.sparse_dataset`, read from disk block by block).
    size
        Rows per block (default ``ROW_BLOCK_CELLS``).

    Returns
    -------
    Iterator
        ``(first row, block)`` pairs; ``block`` is the matrix's rows in memory (CSR for a sparse or backed matrix).
    """
    size = size or ROW_BLOCK_CELLS
    for start in range(0, matrix.shape[0], size):
        yield start, matrix[start : start + size]


def read_rows(matrix, rows, columns=None) -> Any:
    """Read some rows (and columns) of a matrix, ``ROW_BLOCK_CELLS`` rows at a time.

    Reading the rows of an h5ad's backed matrix and then choosing columns would hold all of those rows' genes
    at once; this keeps one block of them.

    Parameters
    ----------
    matrix
        Cells x genes: an array, a scipy sparse matrix or an h5ad's backed CSR dataset.
    rows
        Increasing integer positions of the rows.
    columns
        Integer positions of the columns to keep (``None``: all).

    Returns
    -------
    numpy.ndarray or scipy.sparse.csr_matrix
        The rows x columns (CSR when ``matrix`` is sparse or backed).
    """
    import numpy as np
    import scipy.sparse as sp

    rows = np.asarray(rows, dtype=np.int64)
    keep = slice(None) if columns is None else np.asarray(columns)
    starts = range(0, len(rows), ROW_BLOCK_CELLS) if len(rows) else [0]
    blocks = [matrix[rows[start : start + ROW_BLOCK_CELLS]][:, keep] for start in starts]
    return sp.vstack(blocks, format="csr") if sp.issparse(blocks[0]) else np.vstack(blocks)


def group_sums(matrix, codes, n_groups: int, rows=None, weights=None) -> Any:
    """Sum the (weighted) rows of a matrix per group, ``ROW_BLOCK_CELLS`` rows at a time (pseudobulk, group means).

    Parameters
    ----------
    matrix
        Cells x features: an array, a scipy sparse matrix or an h5ad's backed CSR dataset.
    codes
        The group (``0 .. n_groups - 1``; negative: none) of every row of ``rows``, or of every row of
        ``matrix`` when ``rows`` is None.
    n_groups
        Number of groups.
    rows
        Increasing integer positions of the rows to sum (``None``: all rows, read as contiguous blocks).
    weights
        A factor per row, aligned like ``codes`` (e.g. ``1e6 / total counts`` for the sum of CPM); ``None``: 1.

    Returns
    -------
    numpy.ndarray
        Groups x features sums (float64).
    """
    import numpy as np
    import scipy.sparse as sp

    codes = np.asarray(codes)
    n_rows = matrix.shape[0] if rows is None else len(rows)
    summed = np.zeros((n_groups, matrix.shape[1]))
    for start in range(0, n_rows, ROW_BLOCK_CELLS):
        stop = min(start + ROW_BLOCK_CELLS, n_rows)
        block = matrix[start:stop] if rows is None else matrix[np.asarray(rows[start:stop])]
        in_group = np.flatnonzero(codes[start:stop] >= 0)
        factors = np.ones(len(in_group)) if weights is None else np.asarray(weights[start:stop])[in_group]
        indicator = sp.csr_matrix((factors, (codes[start:stop][in_group], in_group)), shape=(n_groups, stop - start))
        product = indicator @ block
        summed += product.toarray() if sp.issparse(product) else np.asarray(product)
    return summed


# h5ad compression: LZF for the files the next stage reads (several times faster to write than gzip,
# ~1.5x larger; read by h5py / anndata without plugins), gzip for the files a user keeps and may open
# outside Python (gzip is HDF5's built-in filter; R's hdf5r / rhdf5 read it without rhdf5filters).
INTERMEDIATE_H5AD_COMPRESSION = "lzf"
FINAL_H5AD_COMPRESSION = "gzip"


def write_h5ad(adata, path: str | os.PathLike, *, final: bool = False) -> Path:
    """Write an AnnData atomically.

    Write an AnnData atomically: LZF-compressed when another stage reads it next, gzip when ``final``
    (the cohort atlas and the per-section result users keep).
    """
    with atomic_path(path) as tmp:
        adata.write_h5ad(tmp, compression=FINAL_H5AD_COMPRESSION if final else INTERMEDIATE_H5AD_COMPRESSION)
    return Path(path)


def write_csr_blocks(handle, key: str, blocks, *, compression: str = INTERMEDIATE_H5AD_COMPRESSION) -> int:
    """Write CSR row blocks as one sparse matrix at ``handle[key]`` of an open h5ad, one block in memory.

    Parameters
    ----------
    handle
        An :class:`h5py.File` (or group) open for writing.
    key
        Where the matrix goes (``X``, ``layers/counts``).
    blocks
        Iterable of :class:`scipy.sparse.csr_matrix` with the same number of columns, in row order.
    compression
        h5py compression of the datasets.

    Returns
    -------
    int
        Rows written.
    """
    import anndata as ad

    matrix, rows = None, 0
    for block in blocks:
        if matrix is None:
            ad.io.write_elem(handle, key, block, dataset_kwargs={"compression": compression})
            matrix = ad.io.sparse_dataset(handle[key])
        else:
            matrix.append(block)
        rows += block.shape[0]
    return rows


def write_h5ad_elements(handle, **elements) -> None:
    """Write the AnnData elements (``obs``, ``var``, ``obsm``, ``uns`` ...) of an h5ad whose matrices are streamed.

    Elements already in the file are replaced; the AnnData groups not given and not present are written empty, and
    the file is marked as an AnnData, so :func:`anndata.read_h5ad` reads it.
    """
    import anndata as ad

    for key, value in elements.items():
        if key in handle:
            del handle[key]
        if key in ("obs", "var"):  # as AnnData.write_h5ad: string columns (with missing values) as categoricals
            table = ad.AnnData(obs=value.copy())
            table.strings_to_categoricals()
            value = table.obs
        ad.io.write_elem(handle, key, value)
    for key in ("obsm", "varm", "obsp", "varp", "layers", "uns"):
        if key not in handle:
            ad.io.write_elem(handle, key, {})
    handle.attrs["encoding-type"], handle.attrs["encoding-version"] = "anndata", "0.1.0"


def write_h5ad_copy(source: str | os.PathLike, path: str | os.PathLike, *, final: bool = False, **elements) -> Path:
    """Write a copy of the h5ad ``source`` with some AnnData elements replaced, atomically; no matrix is held whole.

    The given elements (``obs``, ``uns`` ...) are rewritten in the copy, so a stage that adds cell annotations to a
    million-cell atlas never holds its matrices. The copy is the file itself (same compression) for a file the
    next stage reads; with ``final`` (a file users keep) every dataset compressed otherwise is rewritten
    gzip-compressed (as :func:`write_h5ad`), ``COPY_ELEMENTS`` values at a time, and the elements given are not
    copied at all (an empty ``obsp`` drops the source's graphs).

    Parameters
    ----------
    source
        The h5ad to copy.
    path
        The output h5ad.
    final
        Recompress with ``FINAL_H5AD_COMPRESSION`` instead of keeping the source's compression.
    **elements
        The elements to write (:func:`write_h5ad_elements`).

    Returns
    -------
    Path
        ``path``.
    """
    import shutil

    import h5py

    with atomic_path(path) as tmp:
        if final:
            with h5py.File(source, "r") as original, h5py.File(tmp, "w") as handle:
                _copy_recompressed(original, handle, skip=set(elements))
        else:
            shutil.copyfile(source, tmp)
        with h5py.File(tmp, "r+") as handle:
            write_h5ad_elements(handle, **elements)
    return Path(path)


#: values of a dataset read into memory at a time by :func:`write_h5ad_copy` when it recompresses (256 MB of float32)
COPY_ELEMENTS = 64 * 1024**2


def _copy_recompressed(source, target, *, skip: Collection[str] = ()) -> None:
    """Copy an HDF5 group's attributes and members, compressed datasets rewritten with the final compression."""
    import h5py

    target.attrs.update(source.attrs)
    for name, item in source.items():
        if name in skip:
            continue
        if isinstance(item, h5py.Group):
            _copy_recompressed(item, target.create_group(name))
        elif item.compression in (None, FINAL_H5AD_COMPRESSION) or item.ndim == 0:
            source.copy(item, target, name=name)  # HDF5 copies the stored chunks as they are
        else:
            copy = target.create_dataset(
                name, shape=item.shape, dtype=item.dtype, chunks=item.chunks, compression=FINAL_H5AD_COMPRESSION
            )
            copy.attrs.update(item.attrs)
            step = max(1, COPY_ELEMENTS // max(1, math.prod(item.shape[1:])))
            for start in range(0, item.shape[0], step):
                copy[start : start + step] = item[start : start + step]


def write_table(frame, path: str | os.PathLike, *, index: bool = False, header_lines: str = "") -> Path:
    """Write a DataFrame as TSV atomically.

    Write a DataFrame as TSV atomically (gzipped for ``.gz`` names); ``header_lines`` (e.g. MultiQC
    ``#`` headers) go first.
    """
    opener = gzip.open if str(path).endswith(".gz") else open
    with atomic_path(path) as tmp:
        with opener(tmp, "wt", encoding="utf-8") as handle:
            handle.write(header_lines)
            frame.to_csv(handle, sep="\t", index=index, float_format="%.6g")
    return Path(path)


def write_text(text: str, path: str | os.PathLike) -> Path:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_json(data: Any, path: str | os.PathLike) -> Path:
    """Write ``data`` as indented JSON atomically."""
    return write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", path)


def write_yaml(data: Any, path: str | os.PathLike) -> Path:
    """Write ``data`` as YAML atomically."""
    return write_text(yaml.safe_dump(data, sort_keys=False), path)


def save_figure(fig: Figure, path: str | os.PathLike, *, dpi: int = 120) -> Path:
    """Save a matplotlib figure atomically and close it.

    The one place a stage's figure is written: ``plot_*`` functions return the figure, the stage's writing
    code passes it here (PNG at ``dpi``, tight bounding box).
    """
    from .plotting import pyplot

    plt = pyplot()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def provenance(stage: str, params: dict[str, Any]) -> dict[str, Any]:
    """Return what ``uns['tmeflow'][stage]`` records: version and the parameters used."""
    return {"version": __version__, "params": {k: v for k, v in params.items() if v is not None}}


def multiqc_header(section_id: str, section_name: str, description: str, plot_type: str, **extra: Any) -> str:
    """``#``-prefixed YAML header that turns a TSV into MultiQC custom content."""
    config = {"id": section_id, "section_name": section_name, "description": description, "plot_type": plot_type}
    config.update(extra)
    return "".join(f"# {line}\n" for line in yaml.safe_dump(config, sort_keys=False).splitlines())


P_VALUE_COLUMNS = frozenset({"pvalue", "fdr", "pval", "p", "padj"})


def write_multiqc_table(frame, path: str | Path, section_id: str, section_name: str, description: str) -> Path:
    """Write a sortable MultiQC table.

    A sortable MultiQC table of ``frame`` (first column: the row names, unique), every other column shown:
    p-values and FDRs coloured on [0, 1] with 2 significant digits, other numbers with 3.
    """
    from pandas.api.types import is_float_dtype

    headers = {
        column: ({"format": "{:.2g}", "scale": "RdYlGn", "min": 0, "max": 1} if column in P_VALUE_COLUMNS
                 else {"format": "{:.3g}"} if is_float_dtype(frame[column]) else {})
        for column in frame.columns[1:]
    }  # fmt: skip
    header = multiqc_header(
        section_id,
        section_name,
        description,
        "table",
        headers=headers,
        pconfig={"id": f"{section_id}_table", "sort_rows": False},
    )
    return write_table(frame, path, header_lines=header)
