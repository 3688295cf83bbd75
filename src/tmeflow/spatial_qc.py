"""Per-section spatial QC: spot filters, normalisation, clustering and spatially variable genes.

Method (squidpy / scanpy spatial tutorials; Palla et al. 2022, *Squidpy*, Nat Methods):

1. Read a Space Ranger-like ``outs/`` folder (:func:`tmeflow.readers.read_spatial`) and keep the spots
   in tissue.
2. Per-spot metrics with :func:`scanpy.pp.calculate_qc_metrics` (total counts, detected genes, %
   mitochondrial); spots with fewer than ``spatial_min_counts`` UMIs or ``spatial_min_genes`` genes,
   or more than ``spatial_max_pct_mito`` % mitochondrial counts are removed. Genes detected in no
   kept spot are dropped. A section left with fewer than ``spatial_min_spots`` spots fails.
3. ``X`` = log1p(counts per 10,000) (raw counts in ``layers['counts']``), highly variable genes
   (Seurat flavour, ``spatial_n_hvg``), PCA (``spatial_n_pcs``), exact kNN graph in PCA space
   (Gaussian connectivities) and Leiden clusters (``spatial_leiden_resolution``).
4. Spatial neighbours from the spot coordinates with :func:`squidpy.gr.spatial_neighbors`
   (``coord_type='generic'``, radius 1.5x the spot spacing: 6 neighbours on a Visium hexagonal grid,
   8 on a square grid, so nothing assumes a lattice), then Moran's I of every highly variable gene
   (:func:`squidpy.gr.spatial_autocorr`, analytical p-values, Benjamini-Hochberg FDR); the top
   ``spatial_n_svg`` genes by I are tabulated and the top four drawn on the tissue.

The helpers :func:`spot_spacing`, :func:`spatial_graph` and :func:`plot_on_tissue` are shared with
the ``deconvolve`` and ``spatial_analysis`` stages.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from . import io
from .errors import TmeflowInputError
from .genes import gene_class_mask
from .log import get_logger, timed
from .plotting import pyplot
from .settings import StageSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__name__)

TARGET_SUM = 1e4
META_COLUMNS = ("sample", "patient", "condition", "tissue", "species", "batch")
NEIGHBOUR_RADIUS = 1.5  # spot spacings: first ring on hexagonal and square grids


# ----------------------------------------------------------------------------------------------
# Shared spatial helpers
# ----------------------------------------------------------------------------------------------
def spot_spacing(coords: np.ndarray) -> float:
    """Estimate the spot spacing: the median distance from each spot to its nearest neighbour.

    Parameters
    ----------
    coords
        Spots x 2 coordinates.

    Returns
    -------
    float
        The spacing, in the units of ``coords``.
    """
    from scipy.spatial import cKDTree

    if len(coords) < 2:
        return 1.0
    distances, _ = cKDTree(coords).query(coords, k=2)
    spacing = float(np.median(distances[:, 1]))
    return spacing if spacing > 0 else 1.0


def spatial_graph(adata: AnnData, *, rings: int = 1) -> sp.csr_matrix:
    """Connect the spots within ``rings`` x 1.5 spot spacings (squidpy, generic coordinates).

    :func:`squidpy.gr.spatial_neighbors` with a radius of 1.5 spot spacings for the first ring (6 neighbours
    on a Visium hexagonal grid, 8 on a square grid), one spacing more per further ring; no lattice assumed.

    Parameters
    ----------
    adata
        The section (``obsm['spatial']``); modified in place (see Adds).
    rings
        Neighbour rings (1: the first shell).

    Returns
    -------
    scipy.sparse.csr_matrix
        Binary spots x spots adjacency, no self loops.

    Adds
    ----
    ``obsp['spatial_connectivities']``, ``obsp['spatial_distances']``
        The binary adjacency and squidpy's distances.
    ``uns['tmeflow_spatial']['spot_spacing']``
        The spot spacing (coordinate units).
    """
    import squidpy as sq

    spacing = spot_spacing(adata.obsm["spatial"])
    radius = (rings - 1 + NEIGHBOUR_RADIUS) * spacing if rings >= 1 else NEIGHBOUR_RADIUS * spacing
    sq.gr.spatial_neighbors(adata, coord_type="generic", radius=float(radius), spatial_key="spatial")
    graph = sp.csr_matrix(adata.obsp["spatial_connectivities"])
    graph.setdiag(0)
    graph.eliminate_zeros()
    graph.data[:] = 1.0
    adata.obsp["spatial_connectivities"] = graph
    adata.uns.setdefault("tmeflow_spatial", {})["spot_spacing"] = spacing
    return graph


def smooth(values: np.ndarray, graph: sp.csr_matrix) -> np.ndarray:
    """Average each spot's value with its first-ring neighbours.

    Parameters
    ----------
    values
        One value per spot.
    graph
        Spots x spots adjacency (:func:`spatial_graph`).

    Returns
    -------
    numpy.ndarray
        The mean over the spot and its neighbours.
    """
    degree = np.asarray(graph.sum(axis=1)).ravel()
    return (graph @ values + values) / (degree + 1.0)


def _image_and_scale(adata, sample: str | None):
    spatial = adata.uns.get("spatial", {})
    key = sample if sample in spatial else next(iter(spatial), None)
    if key is None:
        return None, 1.0
    images = spatial[key].get("images", {})
    scalefactors = spatial[key].get("scalefactors", {})
    for name in ("hires", "lowres"):
        if name in images and f"tissue_{name}_scalef" in scalefactors:
            return np.asarray(images[name]), float(scalefactors[f"tissue_{name}_scalef"])
    return None, 1.0


STAINED_SATURATION = 0.45
STAINED_MAX_VALUE = 0.9


def stained_fraction(adata: AnnData, sample: str | None = None) -> np.ndarray:
    """Measure, per spot, the fraction of tissue-image pixels under the spot that are strongly stained.

    A pixel is strongly stained when its HSV saturation exceeds ``STAINED_SATURATION`` and its value is
    below ``STAINED_MAX_VALUE``: in H&E, densely cellular epithelium (tumour nests, ducts) is saturated
    pink-purple, while collagenous stroma is pale and lumens and background are white. It is an image-only
    proxy of epithelium, independent of the expression data, used to check expression maps against the
    histology (``benchmarks/deconvolution_real.py``); thresholds depend on the staining, so it is a check,
    not a call.

    Parameters
    ----------
    adata
        The section (``obsm['spatial']``, image in ``uns['spatial'][sample]``); not modified.
    sample
        The key of ``uns['spatial']``; None: the first.

    Returns
    -------
    numpy.ndarray
        Fraction per spot in [0, 1]; NaN for every spot when the section carries no image.
    """
    from matplotlib.colors import rgb_to_hsv

    image, scale = _image_and_scale(adata, sample)
    if image is None:
        return np.full(adata.n_obs, np.nan)
    rgb = np.asarray(image, dtype=float)[..., :3]
    hsv = rgb_to_hsv(rgb / 255.0 if rgb.max() > 1.0 else rgb)
    stained = (hsv[..., 1] > STAINED_SATURATION) & (hsv[..., 2] < STAINED_MAX_VALUE)
    xy = np.round(np.asarray(adata.obsm["spatial"], dtype=float) * scale).astype(int)
    radius = max(1, int(round(spot_spacing(xy) / 2)))
    height, width = stained.shape
    return np.array(
        [
            stained[
                max(0, y - radius) : min(height, y + radius + 1), max(0, x - radius) : min(width, x + radius + 1)
            ].mean()
            for x, y in xy
        ]
    )


def _marker_size(xy: np.ndarray, spacing: float, image) -> float:
    """Scatter marker area (points^2) that makes a spot about one spot spacing wide in a 4-inch panel."""
    extent = max(np.ptp(xy[:, 0]), np.ptp(xy[:, 1])) + 2 * spacing
    if image is not None:
        extent = max(image.shape[0], image.shape[1])
    diameter_points = 0.75 * spacing / max(extent, 1e-9) * 250.0
    return float(max(0.5, diameter_points**2))


COLOUR_MAX_PERCENTILE = 99  # colour scales end at the 99th percentile (cell2location's vmax='p99'), so a few
# extreme spots do not darken the whole map


def plot_on_tissue(
    adata: AnnData,
    values: dict[str, Any],
    *,
    sample: str | None = None,
    ncols: int = 4,
    title: str | None = None,
    cmap: str = "viridis",
    spot_size: float | None = None,
) -> Figure:
    """Draw spots coloured by each entry of ``values`` over the tissue image, one panel per entry.

    Parameters
    ----------
    adata
        The section (``obsm['spatial']``; image in ``uns['spatial'][sample]``, hires else lowres); not modified.
    values
        Panel title -> numeric array or categorical Series per spot (None: the tissue image alone). Numeric
        colour scales end at the 99th percentile (``COLOUR_MAX_PERCENTILE``), so a few extreme spots do not
        darken the map.
    sample
        The key of ``uns['spatial']``; None: the first.
    ncols
        Panels per row.
    title
        Figure title.
    cmap
        Colour map of numeric panels.
    spot_size
        Marker area (points^2); None: about one spot spacing wide.

    Returns
    -------
    Figure
        The panels; without an image, the y axis is inverted (image orientation).
    """
    plt = pyplot()

    image, scale = _image_and_scale(adata, sample)
    xy = np.asarray(adata.obsm["spatial"], dtype=float) * scale
    spacing = spot_spacing(xy)
    n = max(1, len(values))
    ncols = min(ncols, n)
    nrows = int(np.ceil(n / ncols))
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.2 * ncols, 4.0 * nrows), squeeze=False)
    for ax in axes.ravel()[n:]:
        ax.axis("off")
    for ax, (name, value) in zip(axes.ravel(), values.items(), strict=False):
        if image is not None:
            ax.imshow(image)
        size = spot_size if spot_size is not None else _marker_size(xy, spacing, image)
        series = (
            None
            if value is None
            else (pd.Series(np.asarray(value), index=adata.obs_names) if not isinstance(value, pd.Series) else value)
        )
        if series is None:  # the tissue image alone, spots' extent kept
            ax.scatter(xy[:, 0], xy[:, 1], s=size, facecolors="none", edgecolors="none")
        elif isinstance(series.dtype, pd.CategoricalDtype) or series.dtype == object or series.dtype == bool:
            categories = pd.Categorical(series.astype(str))
            palette = plt.get_cmap("tab20" if len(categories.categories) > 10 else "tab10")
            for i, category in enumerate(categories.categories):
                mask = np.asarray(categories == category)
                ax.scatter(
                    xy[mask, 0],
                    xy[mask, 1],
                    s=size,
                    color=palette(i % palette.N),
                    label=category,
                    linewidths=0,
                    alpha=0.85,
                )
            ax.legend(fontsize=6, markerscale=1.5, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
        else:
            numbers = series.to_numpy(dtype=float)
            top = np.nanpercentile(numbers, COLOUR_MAX_PERCENTILE) if np.isfinite(numbers).any() else None
            points = ax.scatter(
                xy[:, 0],
                xy[:, 1],
                c=numbers,
                s=size,
                cmap=cmap,
                linewidths=0,
                alpha=0.85,
                vmax=top if top is not None and top > np.nanmin(numbers) else None,
            )
            fig.colorbar(points, ax=ax, fraction=0.04, extend="max")
        if image is None:
            ax.invert_yaxis()
        ax.set_aspect("equal")
        ax.set_title(str(name), fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    if title:
        fig.suptitle(title)
    return fig


# ----------------------------------------------------------------------------------------------
# QC
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SpatialQcSettings(StageSettings):
    """The ``spatial_qc_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("spatial_qc_options",)

    spatial_min_counts: int
    spatial_min_genes: int
    spatial_max_pct_mito: float
    spatial_min_spots: int
    spatial_n_hvg: int
    spatial_n_pcs: int
    spatial_leiden_resolution: float
    spatial_n_svg: int
    seed: int


def spot_filter_reasons(obs: pd.DataFrame, *, min_counts: int, min_genes: int, max_pct_mito: float) -> pd.Series:
    """Name the first filter each spot fails, after its parameter ('' when it passes).

    Parameters
    ----------
    obs
        Per-spot metrics: ``in_tissue``, ``total_counts``, ``n_genes_by_counts``, ``pct_counts_mito``.
    min_counts
        Fewest UMIs (``spatial_min_counts``).
    min_genes
        Fewest detected genes (``spatial_min_genes``).
    max_pct_mito
        Most mitochondrial percentage (``spatial_max_pct_mito``).

    Returns
    -------
    pandas.Series
        ``qc_fail_reason`` per spot: ``not_in_tissue``, ``spatial_min_counts``, ``spatial_min_genes``,
        ``spatial_max_pct_mito`` or ''.
    """
    failed = {
        "not_in_tissue": obs["in_tissue"].to_numpy() == 0,
        "spatial_min_counts": obs["total_counts"].to_numpy() < min_counts,
        "spatial_min_genes": obs["n_genes_by_counts"].to_numpy() < min_genes,
        "spatial_max_pct_mito": obs["pct_counts_mito"].to_numpy() > max_pct_mito,
    }
    reasons: np.ndarray = np.full(len(obs), "", dtype=object)
    for name, mask in reversed(failed.items()):
        reasons[mask] = name
    return pd.Series(reasons, index=obs.index, name="qc_fail_reason")


def spatially_variable_genes(adata: AnnData, genes: list[str], *, seed: int) -> pd.DataFrame:
    """Compute Moran's I of ``genes`` over the spatial graph (squidpy, analytical p-values, BH FDR).

    Parameters
    ----------
    adata
        The section (log-normalised ``X``, ``obsp['spatial_connectivities']``); not modified.
    genes
        The genes tested (the highly variable genes).
    seed
        squidpy's seed.

    Returns
    -------
    pandas.DataFrame
        Index ``gene``; ``I``, ``pval``, ``fdr``, largest I first.
    """
    import squidpy as sq

    result = sq.gr.spatial_autocorr(adata, mode="moran", genes=genes, n_perms=None, n_jobs=1, seed=seed, copy=True)
    table = result.rename(columns={"pval_norm": "pval", "pval_norm_fdr_bh": "fdr"})
    table = table[["I", "pval", "fdr"]].sort_values("I", ascending=False)
    table.index.name = "gene"
    return table


def process_section(adata: AnnData, meta: dict[str, str], settings: SpatialQcSettings):
    """Filter, normalise and cluster one section and find its spatially variable genes.

    Parameters
    ----------
    adata
        The section read by :func:`tmeflow.readers.read_spatial` (raw counts in ``X``); modified in place
        (metadata and QC columns, see Adds).
    meta
        The samplesheet values of ``META_COLUMNS`` (``sample``, ``patient``, ``condition``, ``tissue``,
        ``species``, ``batch``).
    settings
        The ``spatial_qc_options`` (``SpatialQcSettings.from_params(params)``) and the seed.

    Returns
    -------
    tuple[AnnData, pandas.DataFrame, pandas.DataFrame]
        The kept spots (log1p CP10k ``X``, counts in ``layers['counts']``, PCA, kNN graph, ``obs['leiden']``,
        the spatial graph, ``var['moranI']`` and ``var['moranI_fdr']``), the per-spot metric table with
        ``qc_fail_reason``, and the Moran's I table of the highly variable genes.

    Adds
    ----
    ``obs[<meta column>]``, ``obs['barcode']``
        The samplesheet values and the spot barcode.
    ``var['mito']``, ``var['ribo']``
        Gene classes of the species.
    ``obs['total_counts']``, ``obs['n_genes_by_counts']``, ``obs['pct_counts_mito']``, ...
        scanpy's QC metrics.
    ``obs['qc_fail_reason']``
        :func:`spot_filter_reasons`.

    Raises
    ------
    TmeflowInputError
        Fewer than ``spatial_min_spots`` spots pass the filters (naming the sample).
    """
    import scanpy as sc

    sample = meta["sample"]
    for column in META_COLUMNS:
        adata.obs[column] = meta[column]
    adata.obs["barcode"] = adata.obs_names.astype(str)
    for gene_class in ("mito", "ribo"):
        adata.var[gene_class] = gene_class_mask(adata.var_names, meta["species"], gene_class)
    sc.pp.calculate_qc_metrics(adata, qc_vars=["mito", "ribo"], percent_top=None, log1p=False, inplace=True)
    reasons = spot_filter_reasons(
        adata.obs,
        min_counts=settings.spatial_min_counts,
        min_genes=settings.spatial_min_genes,
        max_pct_mito=settings.spatial_max_pct_mito,
    )
    adata.obs["qc_fail_reason"] = reasons
    spots = adata.obs.copy()
    kept = adata[(reasons == "").to_numpy()].copy()
    n_tissue = int((adata.obs["in_tissue"] == 1).sum())
    if kept.n_obs < settings.spatial_min_spots:
        lost = reasons[reasons != ""].value_counts()
        raise TmeflowInputError(
            f"only {kept.n_obs} of {n_tissue} in-tissue spots pass the spot filters (spatial_min_spots "
            f"{settings.spatial_min_spots}; removed: {', '.join(f'{v} {k}' for k, v in lost.items()) or 'none'})",
            sample=sample,
        )
    detected = np.asarray((kept.X > 0).sum(axis=0)).ravel() > 0
    kept = kept[:, detected].copy()
    kept.layers["counts"] = kept.X.copy()
    sc.pp.normalize_total(kept, target_sum=TARGET_SUM)
    sc.pp.log1p(kept)
    n_hvg = int(min(settings.spatial_n_hvg, kept.n_vars))
    sc.pp.highly_variable_genes(kept, n_top_genes=n_hvg, flavor="seurat")
    n_pcs = int(max(2, min(settings.spatial_n_pcs, kept.n_obs - 1, int(kept.var["highly_variable"].sum()) - 1)))
    sc.pp.pca(kept, n_comps=n_pcs, mask_var="highly_variable", random_state=settings.seed)
    # Gaussian kernel on an exact sklearn kNN: same graph quality here, without UMAP's numba compilation
    sc.pp.neighbors(
        kept,
        n_neighbors=min(15, kept.n_obs - 1),
        n_pcs=n_pcs,
        method="gauss",
        transformer="sklearn",
        random_state=settings.seed,
    )
    sc.tl.leiden(
        kept,
        resolution=settings.spatial_leiden_resolution,
        random_state=settings.seed,
        flavor="igraph",
        n_iterations=2,
        directed=False,
        key_added="leiden",
    )
    spatial_graph(kept)
    hvgs = kept.var_names[kept.var["highly_variable"].to_numpy()].tolist()
    with timed(logger, f"{sample}: Moran's I of {len(hvgs)} highly variable genes"):
        svg = spatially_variable_genes(kept, hvgs, seed=settings.seed)
    kept.var["moranI"] = svg["I"].reindex(kept.var_names).to_numpy()
    kept.var["moranI_fdr"] = svg["fdr"].reindex(kept.var_names).to_numpy()
    for column in META_COLUMNS:
        kept.obs[column] = pd.Categorical(kept.obs[column])
    return kept, spots, svg


def section_stats(spots: pd.DataFrame, kept: AnnData, svg: pd.DataFrame, sample: str) -> dict[str, Any]:
    """Summarise a section's QC for the MultiQC table.

    Parameters
    ----------
    spots
        The per-spot metric table (all spots).
    kept
        The kept spots (:func:`process_section`).
    svg
        The Moran's I table.
    sample
        The sample name.

    Returns
    -------
    dict
        ``Sample``, spot counts (total, in tissue, kept), median UMIs, genes and % mitochondrial per kept spot,
        Leiden clusters and spatially variable genes at FDR < 0.05.
    """
    in_tissue = spots["in_tissue"] == 1
    return {
        "Sample": sample,
        "spots_total": int(len(spots)),
        "spots_in_tissue": int(in_tissue.sum()),
        "spots_kept": int(kept.n_obs),
        "median_umis_per_spot": float(kept.obs["total_counts"].median()),
        "median_genes_per_spot": float(kept.obs["n_genes_by_counts"].median()),
        "median_pct_mito": float(kept.obs["pct_counts_mito"].median()),
        "n_clusters": int(kept.obs["leiden"].nunique()),
        "n_svg_fdr05": int((svg["fdr"] < 0.05).sum()),
    }


def write_outputs(kept, spots, svg, stats, sample: str, outdir: Path, params: dict[str, Any]) -> Path:
    """Write the QC tables, MultiQC sections, tissue maps and ``<sample>.spatial.h5ad``.

    Parameters
    ----------
    kept
        The kept spots (:func:`process_section`); modified in place (see Adds).
    spots
        The per-spot metric table.
    svg
        The Moran's I table.
    stats
        :func:`section_stats`.
    sample
        The sample name (file prefix).
    outdir
        The output folder.
    params
        The parameters (``spatial_n_svg``; recorded as provenance).

    Returns
    -------
    pathlib.Path
        The written h5ad.

    Adds
    ----
    ``uns['tmeflow']['spatial_qc']``
        Provenance (version, parameters) and ``stats``; ``uns['tmeflow_spatial']`` is removed.
    """
    header = io.multiqc_header(
        "tmeflow_spatial_qc_general_stats",
        "Spatial section QC",
        "Spots in tissue and kept per section, counts per spot, spatially variable genes (tmeflow spatial_qc).",
        "generalstats",
        pconfig=[
            {"spots_kept": {"title": "Spots kept", "format": "{:,.0f}"}},
            {"median_umis_per_spot": {"title": "UMI/spot"}},
            {"median_genes_per_spot": {"title": "Genes/spot"}},
            {"n_svg_fdr05": {"title": "SVGs (FDR<0.05)"}},
        ],
    )
    io.write_table(pd.DataFrame([stats]), outdir / f"{sample}.spatial_qc_stats_mqc.tsv", header_lines=header)
    columns = [
        "barcode",
        "in_tissue",
        "array_row",
        "array_col",
        "total_counts",
        "n_genes_by_counts",
        "pct_counts_mito",
        "qc_fail_reason",
    ]
    io.write_table(spots[columns], outdir / f"{sample}.spatial_spots.tsv.gz", index=True)
    top = svg.head(params["spatial_n_svg"]).reset_index()
    io.write_table(top, outdir / f"{sample}.spatially_variable_genes.tsv")

    qc_maps = {
        "total counts": np.log10(kept.obs["total_counts"].to_numpy() + 1),
        "detected genes": kept.obs["n_genes_by_counts"].to_numpy(),
        "% mitochondrial": kept.obs["pct_counts_mito"].to_numpy(),
        "Leiden cluster": kept.obs["leiden"],
    }
    io.save_figure(
        plot_on_tissue(kept, qc_maps, sample=sample, title=f"{sample}: {kept.n_obs} spots kept"),
        outdir / f"{sample}.spatial_qc.png",
    )
    genes = top["gene"].head(4).tolist()
    if genes:
        matrix = kept[:, genes].X
        matrix = np.asarray(matrix.todense() if sp.issparse(matrix) else matrix)
        values = {f"{g} (I={svg.loc[g, 'I']:.2f})": matrix[:, k] for k, g in enumerate(genes)}
        figure = plot_on_tissue(
            kept, values, sample=sample, cmap="magma", title=f"{sample}: top spatially variable genes (Moran's I)"
        )
        io.save_figure(figure, outdir / f"{sample}.spatial_svg.png")
    kept.uns["tmeflow"] = {"spatial_qc": {**io.provenance("spatial_qc", params), "stats": stats}}
    kept.uns.pop("tmeflow_spatial", None)
    return io.write_h5ad(kept, outdir / f"{sample}.spatial.h5ad")


def run_spatial_qc(input_path: str | Path, meta: dict[str, str], outdir: str | Path, params: dict[str, Any]) -> Path:
    """Read one section, run QC and write ``<sample>.spatial.h5ad``, tables and plots to ``outdir``.

    Parameters
    ----------
    input_path
        The Space Ranger-like ``outs/`` folder (or a file :func:`tmeflow.readers.read_spatial` reads).
    meta
        The samplesheet values of ``META_COLUMNS``.
    outdir
        The output folder.
    params
        The ``spatial_qc_options`` parameters, ``seed`` and ``strict_counts``.

    Returns
    -------
    pathlib.Path
        ``<sample>.spatial.h5ad``.
    """
    from .readers import read_spatial

    sample, outdir = meta["sample"], Path(outdir)
    with timed(logger, f"{sample}: reading {input_path}"):
        adata = read_spatial(input_path, sample=sample, strict_counts=params.get("strict_counts", False))
    if not sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X)
    with timed(logger, f"{sample}: spatial QC of {adata.n_obs} spots x {adata.n_vars} genes"):
        try:
            kept, spots, svg = process_section(adata, meta, SpatialQcSettings.from_params(params))
        except TmeflowInputError as error:
            raise TmeflowInputError(error.message, file=input_path, sample=sample) from error
    stats = section_stats(spots, kept, svg, sample)
    logger.info(
        "%s: kept %d of %d in-tissue spots, %d clusters, %d spatially variable genes (FDR < 0.05)",
        sample,
        stats["spots_kept"],
        stats["spots_in_tissue"],
        stats["n_clusters"],
        stats["n_svg_fdr05"],
    )
    return write_outputs(kept, spots, svg, stats, sample, outdir, params)


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Run ``tmeflow spatial_qc``.

    Parameters
    ----------
    args
        The parsed command line (``input``, ``outdir`` and the ``META_COLUMNS``).
    params
        The parameters (:func:`run_spatial_qc`).
    """
    meta = {column: getattr(args, column) for column in META_COLUMNS}
    run_spatial_qc(args.input, meta, args.outdir, params)
