"""``tmeflow atlas``: the explorable atlas, one h5ad per modality holding every stage's final annotations.

The cohort atlas (``atlas.h5ad``) is the subclustered atlas (QC metrics, integration, cell types,
malignant calls and CNV scores, fine types, subclusters) with the per-cell columns of the later stages
merged in by cell barcode: module scores, PROGENy activities and CytoTRACE stemness (``pathways``),
pseudotime and fate probabilities (``trajectory``; missing for cells outside the analysed compartment).
Counts stay sparse: only ``obs`` tables are read from the other stages' files.

It follows the CELLxGENE schema's conventions where they apply to an atlas without ontology terms
(CZ CELLxGENE Discover schema 5.x, https://github.com/chanzuckerberg/single-cell-curation/blob/main/schema/5.2.0/schema.md):
unique ``var`` names; ``obs`` columns named without ``/`` (HDF5's separator), numeric, boolean or
categorical of strings (no object columns); ``X`` log-normalised with raw counts in ``layers['counts']``;
embeddings in ``obsm['X_<name>']`` (``n x 2`` floats, NaN for cells outside an embedding, never infinite); ``uns``
small (``title``,
``default_embedding``, colours, provenance). It opens in CELLxGENE (``cellxgene launch atlas.h5ad``) and
in scanpy.

Each spatial section gets ``<sample>.atlas.h5ad``: spots with deconvolved proportions (``obsm`` and
``prop_*`` columns), regions, spot CNV scores, coordinates in ``obsm['spatial']`` and the tissue image in
``uns['spatial']`` (squidpy's / scanpy's Visium layout: ``sq.pl.spatial_scatter(adata, color="region")``),
plus ``obsm['X_spatial']`` (y flipped) so CELLxGENE shows the tissue layout too.

The sections' spatial statistics are combined here, where every section fans in, with patients as the
units (:mod:`tmeflow.spatial_cohort`): ``spatial_cohort.tsv``, ``spatial_cohort_patients.tsv``, a report
table and one dot plot per analysis.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import io
from .errors import TmeflowInputError
from .log import get_logger, timed
from .spatial_cohort import run_spatial_cohort

if TYPE_CHECKING:
    from anndata import AnnData

logger = get_logger(__name__)

ATLAS_FILE = "atlas.h5ad"
SECTION_SUFFIX = ".atlas.h5ad"
SPATIAL_INPUT_SUFFIX = ".spatial_analysis.h5ad"
# uns entries kept in the cohort atlas (besides `<obs column>_colors`); the others (neighbour-graph and PCA
# parameters, HVG and CNV bookkeeping) belong to the stage files.
CELL_UNS_KEPT = ("tmeflow", "log1p")
# uns entries kept in a section atlas: the image and squidpy's spatial graph description
SECTION_UNS_KEPT = ("tmeflow", "log1p", "spatial", "spatial_neighbors", "spatial_analysis", "deconvolution")
SECTION_OBSP_KEPT = ("spatial_connectivities", "spatial_distances")


def _bool_with_missing(values: pd.Series) -> pd.Series:
    """Encode a boolean column that gained missing values (cells a stage did not analyse) as categorical strings.

    The categories are 'False' and 'True'; missing values stay missing.
    """
    return values.map({True: "True", False: "False"}).astype(pd.CategoricalDtype(["False", "True"]))


def merge_obs(obs: pd.DataFrame, extra: pd.DataFrame, source: str, path: str | Path) -> list[str]:
    """Add ``extra``'s columns that ``obs`` lacks, aligned by cell barcode (``obs_names``).

    Cells of ``obs`` missing from ``extra`` (cells a stage did not analyse) get missing values; boolean columns that
    gain missing values become categorical ``'False'``/``'True'`` strings.

    Parameters
    ----------
    obs
        The atlas ``obs`` table, changed in place.
    extra
        Another stage's ``obs`` table (index: cell barcodes, a subset of ``obs``'s).
    source
        The stage ``extra`` comes from, named in the error.
    path
        The file ``extra`` was read from, named in the error.

    Returns
    -------
    list of str
        The names of the columns added to ``obs``, in ``extra``'s order.
    """
    unknown = extra.index.difference(obs.index)
    if len(unknown):
        raise TmeflowInputError(
            f"{len(unknown)} cells of {source} are not in the atlas (e.g. {unknown[0]!r}); pass the outputs of one run",
            file=path,
        )
    added = [column for column in extra.columns if column not in obs.columns]
    for column in added:
        values = extra[column]
        aligned = values.reindex(obs.index)
        if len(extra) < len(obs) and values.dtype == bool:
            aligned = _bool_with_missing(aligned)
        obs[column] = aligned
    return added


def clean_obs(frame: pd.DataFrame) -> pd.DataFrame:
    """Make obs columns CELLxGENE-style annotations.

    CELLxGENE-style annotations: strings as categoricals of strings (unused categories dropped),
    integers with missing values as floats, 64-bit floats as 32-bit (CELLxGENE converts them, with a
    warning per column); booleans and integers unchanged.

    Parameters
    ----------
    frame
        An ``obs`` or ``var`` table; not changed.

    Returns
    -------
    pandas.DataFrame
        A copy with the converted columns, a string index and column names without ``/`` (see :func:`h5_key`).
    """
    frame = frame.copy()
    for column in frame.columns:
        values = frame[column]
        if isinstance(values.dtype, pd.CategoricalDtype):
            categories = values.cat.categories
            if not all(isinstance(c, str) for c in categories):
                values = values.cat.rename_categories([str(c) for c in categories])
            frame[column] = values.cat.remove_unused_categories()
        elif values.dtype == object or pd.api.types.is_string_dtype(values.dtype):
            frame[column] = values.where(values.isna(), values.astype(str)).astype("category")
        elif pd.api.types.is_extension_array_dtype(values.dtype):  # nullable ints / booleans
            frame[column] = (
                values.astype("float32") if values.isna().any() else values.to_numpy(values.dtype.numpy_dtype)
            )
        elif values.dtype == np.float64:
            frame[column] = values.astype(np.float32)
    frame.index = frame.index.astype(str)
    frame.columns = [h5_key(column) for column in frame.columns]
    return frame


def h5_key(name: Any) -> str:
    """Return a column name HDF5 stores as one key ('/' separates groups; anndata will refuse it).

    Parameters
    ----------
    name
        A column name (any type; converted with ``str``).

    Returns
    -------
    str
        The name with every ``/`` replaced by ``_``.
    """
    return str(name).replace("/", "_")


def _kept_colours(uns: dict[str, Any], obs: pd.DataFrame) -> dict[str, Any]:
    """``<column>_colors`` entries whose column is still categorical with as many categories."""
    kept = {}
    for key, value in uns.items():
        column = key.removesuffix("_colors")
        if (
            key.endswith("_colors")
            and column in obs
            and isinstance(obs[column].dtype, pd.CategoricalDtype)
            and len(value) == len(obs[column].cat.categories)
        ):
            kept[key] = value
    return kept


def build_atlas(
    subclustered: str | Path, extras: dict[str, str | Path], title: str = "tmeflow atlas"
) -> tuple[AnnData, dict[str, str]]:
    """Build the cohort atlas from the subclustered cells and the other stages' obs columns.

    The cohort atlas is ``subclustered`` (all cells, counts, embeddings) with the new obs columns of ``extras``,
    cleaned to the CELLxGENE conventions of the module docstring: UMAP embeddings only (first two dimensions,
    float32, non-finite rows set to NaN), no ``obsp``/``varm``, a small ``uns``.

    Parameters
    ----------
    subclustered
        The ``subcluster`` stage's h5ad: every cell, raw counts in ``layers['counts']``, log-normalised ``X``
        (``uns['log1p']``) and ``obsm['X_umap']``.
    extras
        ``{stage name: h5ad path}`` of the later stages whose new ``obs`` columns are merged in by barcode.
    title
        ``uns['title']``, the name CELLxGENE shows.

    Returns
    -------
    adata : AnnData
        The cohort atlas' cell and gene tables, embeddings and ``uns``; its matrices (``X``, ``layers``) stay in
        ``subclustered``, from which :func:`run_atlas` copies them.
    sources : dict of str to str
        ``{obs column: stage it comes from}`` (``"subcluster"`` for the subclustered atlas's own columns).
    """
    with io.h5ad_on_disk(subclustered, "subclustered atlas") as cells:  # the matrices are copied by run_atlas
        if "counts" not in cells.layers:
            raise TmeflowInputError("the atlas has no raw counts (layers['counts'])", file=subclustered)
        if "log1p" not in cells.uns:
            raise TmeflowInputError("the atlas X is not log-normalised (uns['log1p'] missing)", file=subclustered)
        adata = type(cells)(obs=cells.obs, var=cells.var, obsm=dict(cells.obsm), uns=cells.uns)
    sources = dict.fromkeys(map(h5_key, adata.obs.columns), "subcluster")
    obs = adata.obs.copy()
    for stage, path in extras.items():
        for column in merge_obs(obs, io.read_h5ad_parts(path, f"{stage} h5ad").obs, stage, path):
            sources[h5_key(column)] = stage
    adata.obs = clean_obs(obs)
    adata.var = clean_obs(adata.var)
    adata.var_names_make_unique()
    embeddings = {
        key: np.asarray(value, dtype=np.float32)[:, :2]
        for key, value in adata.obsm.items()
        if key.startswith("X_umap") and isinstance(value, np.ndarray) and value.ndim == 2 and value.shape[1] >= 2
    }
    if "X_umap" not in embeddings:
        raise TmeflowInputError("the atlas has no UMAP (obsm['X_umap'])", file=subclustered)
    for value in embeddings.values():
        value[~np.isfinite(value).all(axis=1)] = np.nan
    adata.obsm = embeddings
    uns = {key: adata.uns[key] for key in CELL_UNS_KEPT if key in adata.uns}
    uns.update(_kept_colours(adata.uns, adata.obs))
    uns.update(title=title, default_embedding="X_umap")
    adata.uns = uns
    return adata, sources


def section_name(path: str | Path) -> str:
    """Return the section name of a ``<sample>.<stage>.h5ad`` path.

    Parameters
    ----------
    path
        A ``<sample>.spatial_analysis.h5ad`` (or any ``<name>.h5ad``) path.

    Returns
    -------
    str
        The file name without ``.spatial_analysis.h5ad`` (or ``.h5ad``).
    """
    return Path(path).name.removesuffix(SPATIAL_INPUT_SUFFIX).removesuffix(".h5ad")


def build_section(path: str | Path) -> AnnData:
    """Build one spatial section's atlas from its ``spatial_analysis`` h5ad (see the module docstring).

    Parameters
    ----------
    path
        The section's ``<sample>.spatial_analysis.h5ad``, with ``obsm['spatial']`` and ``uns['spatial']``.

    Returns
    -------
    AnnData
        The section atlas: cleaned ``obs``/``var``, ``obsm['X_spatial']`` (coordinates with y flipped), the spatial
        neighbour graphs in ``obsp`` and the image, graph and stage provenance in ``uns``.
    """
    adata = io.read_h5ad(path, "spatial section")
    for needed, where in (("spatial", adata.obsm), ("spatial", adata.uns)):
        if needed not in where:
            raise TmeflowInputError(
                f"the section has no {needed!r} ({'obsm' if where is adata.obsm else 'uns'}); "
                "pass a <sample>.spatial_analysis.h5ad",
                file=path,
            )
    adata.obs = clean_obs(adata.obs)
    adata.var = clean_obs(adata.var)
    adata.var_names_make_unique()
    for value in adata.obsm.values():
        if isinstance(value, pd.DataFrame):
            value.columns = [h5_key(column) for column in value.columns]
    coordinates = np.asarray(adata.obsm["spatial"], dtype=np.float32)
    adata.obsm["X_spatial"] = coordinates * np.array([1, -1], dtype=np.float32)  # image rows grow downwards
    adata.obsp = {key: adata.obsp[key] for key in SECTION_OBSP_KEPT if key in adata.obsp}
    uns = {key: adata.uns[key] for key in SECTION_UNS_KEPT if key in adata.uns}
    uns.update(_kept_colours(adata.uns, adata.obs))
    uns.update(title=f"tmeflow section {section_name(path)}", default_embedding="X_spatial")
    adata.uns = uns
    return adata


def run_atlas(
    subclustered: str | Path,
    outdir: str | Path,
    params: dict[str, Any],
    *,
    pathways: str | Path | None = None,
    trajectory: str | Path | None = None,
    sections: list[str | Path] | None = None,
) -> dict[str, Any]:
    """Write the cohort atlas and its per-section and cohort-level companions.

    Write ``atlas.h5ad``, ``atlas_columns.tsv``, one ``<sample>.atlas.h5ad`` per section, the spatial statistics
    across sections and patients (``spatial_cohort*``) and ``atlas_summary.json``.
    """
    outdir = Path(outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    extras = {stage: path for stage, path in (("pathways", pathways), ("trajectory", trajectory)) if path}
    with timed(logger, "building the cohort atlas"):
        adata, sources = build_atlas(subclustered, extras)
        adata.uns["tmeflow"] = {**adata.uns.get("tmeflow", {}), "atlas": io.provenance("atlas", params)}
        elements = {"obs": adata.obs, "var": adata.var, "obsm": dict(adata.obsm), "uns": adata.uns}
        io.write_h5ad_copy(subclustered, outdir / ATLAS_FILE, final=True, **elements, obsp={}, varm={})
    columns = pd.DataFrame(
        {
            "column": list(adata.obs.columns),
            "stage": [sources.get(c, "subcluster") for c in adata.obs.columns],
            "dtype": [str(adata.obs[c].dtype) for c in adata.obs.columns],
            "missing_fraction": [round(float(adata.obs[c].isna().mean()), 4) for c in adata.obs.columns],
        }
    )
    io.write_table(columns, outdir / "atlas_columns.tsv")
    written = []
    for path in sorted(sections or [], key=str):
        with timed(logger, f"section atlas {section_name(path)}"):
            section = build_section(path)
            section.uns["tmeflow"] = {**section.uns.get("tmeflow", {}), "atlas": io.provenance("atlas", params)}
            written.append(io.write_h5ad(section, outdir / f"{section_name(path)}{SECTION_SUFFIX}", final=True).name)
    cohort = run_spatial_cohort(sections, outdir, seed=int(params.get("seed", 0))) if sections else None
    summary = {
        "n_cells": int(adata.n_obs),
        "n_genes": int(adata.n_vars),
        "stages": sorted(set(sources.values())),
        "embeddings": sorted(adata.obsm),
        "sections": written,
        "spatial_cohort": cohort,
        "open_with": f"cellxgene launch {ATLAS_FILE}",
    }
    io.write_json(summary, outdir / "atlas_summary.json")
    logger.info(
        "atlas: %d cells, %d obs columns, embeddings %s; %d section(s)",
        adata.n_obs,
        adata.obs.shape[1],
        ", ".join(sorted(adata.obsm)),
        len(written),
    )
    return summary


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow atlas``."""
    run_atlas(
        args.input, args.outdir, params, pathways=args.pathways, trajectory=args.trajectory, sections=args.sections
    )
