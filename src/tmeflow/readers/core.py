"""The public readers: :func:`read_counts` (single-cell) and :func:`read_spatial` (Visium sections)."""

from __future__ import annotations

import os
import time
from pathlib import Path

import anndata as ad
import numpy as np

from ..errors import TmeflowInputError
from ..log import get_logger
from .checks import _finalise
from .dense import _read_dense
from .detection import _resolve, _spaceranger_counts
from .formats import _read_10x_h5, _read_10x_mtx, _read_h5ad
from .spatial import _read_image, _read_positions, _read_scalefactors

logger = get_logger(__package__)


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
        counts = _spaceranger_counts(target)
        if counts is None:  # _resolve names a Space Ranger folder only when its counts exist
            raise TmeflowInputError(
                "no filtered_feature_bc_matrix in the Space Ranger folder", file=target, sample=sample
            )
        fmt, target = ("10x_h5" if counts.is_file() else "10x_mtx"), counts
    reader = {"10x_h5": _read_10x_h5, "10x_mtx": _read_10x_mtx, "h5ad": _read_h5ad, "dense": _read_dense}[fmt]
    adata = reader(target, sample)
    adata = _finalise(adata, target, sample, strict_counts)
    logger.info(
        "sample %s: read %d cells x %d genes from %s (%s) in %.1f s",
        sample,
        adata.n_obs,
        adata.n_vars,
        path,
        fmt,
        time.perf_counter() - start,
    )
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
    found = next(((o, c) for o in (path, path / "outs") if (c := _spaceranger_counts(o)) is not None), None)
    if found is None:
        raise TmeflowInputError(
            "no filtered_feature_bc_matrix.h5 or filtered_feature_bc_matrix/ in the spatial folder",
            file=path,
            sample=sample,
        )
    outs, counts = found
    spatial_dir = outs / "spatial"
    if not spatial_dir.is_dir():
        raise TmeflowInputError("no spatial/ folder beside the count matrix", file=outs, sample=sample)
    adata = read_counts(counts, sample=sample, strict_counts=strict_counts)

    positions_file, positions = _read_positions(spatial_dir, sample)
    missing = adata.obs_names.difference(positions.index, sort=False)
    if len(missing):
        raise TmeflowInputError(
            f"{len(missing)} of {adata.n_obs} matrix barcodes are missing from the positions file (e.g. {missing[0]})",
            file=positions_file,
            sample=sample,
        )
    dropped = len(positions) - adata.n_obs
    positions = positions.loc[adata.obs_names]
    if int(positions["in_tissue"].sum()) == 0:
        raise TmeflowInputError(
            f"none of the {adata.n_obs} spots is in tissue (in_tissue is 0 everywhere)",
            file=positions_file,
            sample=sample,
        )
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
    logger.info(
        "sample %s: %d spots (%d in tissue, %d positions without counts dropped), images %s, read in %.1f s",
        sample,
        adata.n_obs,
        int(adata.obs["in_tissue"].sum()),
        dropped,
        ", ".join(f"{k} {v.shape}" for k, v in images.items()) or "none",
        time.perf_counter() - start,
    )
    return adata
