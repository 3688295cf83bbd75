"""Per-sample quality control: QC metrics, cell filters, doublet removal.

Method (Heumos et al. 2023, *Best practices for single-cell analysis across modalities*, Nat Rev
Genet; sc-best-practices.org "Quality control"):

1. Metrics per cell with :func:`scanpy.pp.calculate_qc_metrics`: detected genes, total counts and
   the % of counts from mitochondrial (``MT-``/``mt-``), ribosomal and haemoglobin genes.
2. Filters, ``qc_mode``:

   - ``fixed`` (default): the thresholds of the studies tmeflow reproduces (min_genes 200,
     min_counts 500, max_pct_mito 25, max_pct_hb 1);
   - ``mad``: per-sample outliers, more than ``mad_counts`` / ``mad_genes`` median absolute
     deviations (MADs) from the median of log1p total counts / log1p detected genes (5 MADs), or
     more than ``mad_mito`` MADs above the median % mito (3 MADs); ``max_pct_hb`` still applies.
3. Doublets: Scrublet (Wolock et al. 2019, Cell Syst) via :func:`scanpy.pp.scrublet` on the cells
   that pass the filters, with ``expected_doublet_rate``; predicted doublets are removed. When the
   automatic threshold fails (more than 3x the expected rate called), the top expected-rate fraction
   of doublet scores is removed instead, with a warning. The kNN of observed and simulated cells is
   exact (brute force, as scanpy already does below ~2,700 cells) up to
   :data:`SCRUBLET_EXACT_MAX_CELLS` cells, approximate (PyNNDescent, scanpy's default) above.
4. The kept cells are written with raw counts in ``layers['counts']`` and log1p(counts per 10,000)
   in ``X`` (a fixed target sum, so values are comparable across samples).

A sample left with fewer than ``min_cells_per_sample`` cells fails with one line naming it (and
the cells lost to each filter), or is dropped with a warning when ``drop_failed_samples`` is set.
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
from .genes import SPECIES, gene_class_mask, mostly_ensembl, symbols_from_ensembl
from .log import get_logger, timed
from .plotting import pyplot
from .settings import StageSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__name__)

TARGET_SUM = 1e4
GENE_CLASSES = ("mito", "ribo", "hb")
# Scrublet's simulated-doublet kNN needs enough cells to be meaningful.
MIN_CELLS_FOR_DOUBLETS = 100
# Scrublet's automatic threshold (minimum of the simulated-score histogram) fails on unimodal score
# distributions and can then call a third of a sample; above this multiple of the expected rate the
# call is replaced by the top expected-rate fraction of scores.
MAX_DOUBLET_RATE_FACTOR = 3.0
# Scrublet looks for k = 40 x (1 + 2) = 120 neighbours among the observed and 2x as many simulated
# cells. Exact brute-force search (BLAS distances in blocks) costs O(n^2) but is far cheaper than
# PyNNDescent's approximate index at sample sizes (issue 23, 1 core: 3.2 s of CPU instead of 41-50 s
# at 25,000 points (8,300 cells), where PyNNDescent also compiles functions numba cannot cache), and
# gives the exact neighbours. Above this many cells per sample the approximate index is used.
SCRUBLET_EXACT_MAX_CELLS = 50_000
META_COLUMNS = ("sample", "patient", "condition", "tissue", "species", "batch")


@dataclass
class QCResult:
    """What QC of one sample produced; ``h5ad`` is None when the sample was dropped."""

    sample: str
    stats: dict[str, Any]
    h5ad: Path | None


def check_species(var_names: pd.Index, species: str, *, sample: str, file: str | None = None) -> None:
    """Fail when the gene symbols look like another species (mitochondrial genes of the other one only).

    Parameters
    ----------
    var_names
        Gene symbols of the sample.
    species
        Declared species of the sample (samplesheet).
    sample, file
        Named in the one-line error.
    """
    other = next(s for s in SPECIES if s != species)
    if not gene_class_mask(var_names, species, "mito").any() and gene_class_mask(var_names, other, "mito").any():
        raise TmeflowInputError(
            f"species is {species} but the mitochondrial genes look {other}; fix the samplesheet's species",
            file=file,
            sample=sample,
            column="species",
        )


def ensembl_to_symbols(adata: AnnData, species: str, *, sample: str) -> None:
    """Name genes by symbol when the input has Ensembl ids only.

    A features.tsv without symbols or an h5ad without a symbol column: the mitochondrial, ribosomal and haemoglobin
    classes, the species check and every later stage work on symbols. Ids without a symbol in the bundled table are
    kept. Fails when no mitochondrial gene can be named, rather than setting % mito to 0 for every cell.

    Parameters
    ----------
    adata
        One sample's cells x genes.
    species
        ``human`` or ``mouse`` (the bundled id -> symbol table).
    sample
        Named in the error.

    Adds
    ----
    ``var['gene_ids']``
        The Ensembl ids (``var_names`` become symbols, made unique).
    """
    if not mostly_ensembl(adata.var_names):
        return
    symbols, mapped = symbols_from_ensembl(adata.var_names, species)
    if "gene_ids" not in adata.var:
        adata.var["gene_ids"] = adata.var_names.astype(str)
    adata.var_names = symbols
    adata.var_names_make_unique()
    if mapped == 0 or not gene_class_mask(adata.var_names, species, "mito").any():
        raise TmeflowInputError(
            f"genes are Ensembl ids and {'none' if mapped == 0 else 'no mitochondrial one'} maps to a {species} symbol "
            "(bundled table), so % mito cannot be computed; give gene symbols (features.tsv column 2, or a symbol "
            "column in var) or check the species",
            sample=sample,
            column="species" if mapped == 0 else None,
        )
    logger.info(
        "%s: genes were Ensembl ids; named %d of %d by symbol (bundled %s table)", sample, mapped, adata.n_vars, species
    )


def compute_qc_metrics(adata: AnnData, species: str) -> None:
    """Add per-cell QC metrics (scanpy ``calculate_qc_metrics``; counts in ``X``).

    Parameters
    ----------
    adata
        One sample's raw counts.
    species
        ``human`` or ``mouse``: which symbols are mitochondrial (``MT-``/``mt-``), ribosomal and haemoglobin.

    Adds
    ----
    ``var['mito']``, ``var['ribo']``, ``var['hb']``
        Gene-class masks.
    ``obs['n_genes_by_counts']``, ``obs['total_counts']``
        Detected genes and total counts per cell (and their ``log1p_`` versions).
    ``obs['pct_counts_mito']``, ``obs['pct_counts_ribo']``, ``obs['pct_counts_hb']``
        Percent of counts in each class (and ``total_counts_<class>``, ``log1p_total_counts_<class>``).
    """
    import scanpy as sc

    for gene_class in GENE_CLASSES:
        adata.var[gene_class] = gene_class_mask(adata.var_names, species, gene_class)
    sc.pp.calculate_qc_metrics(adata, qc_vars=list(GENE_CLASSES), percent_top=None, log1p=True, inplace=True)


def mad_outlier(values: np.ndarray, n_mads: float, *, upper_only: bool = False) -> np.ndarray:
    """Flag values more than ``n_mads`` median absolute deviations from the median (scater ``isOutlier``).

    Parameters
    ----------
    values
        One metric per cell (log-scale for counts, as in the OSCA book).
    n_mads
        Number of MADs (unscaled MAD) a value may deviate.
    upper_only
        Flag only values above the median (e.g. % mitochondrial).

    Returns
    -------
    numpy.ndarray
        Boolean per cell.
    """
    median = np.median(values)
    mad = np.median(np.abs(values - median))
    deviation = values - median if upper_only else np.abs(values - median)
    return deviation > n_mads * mad


@dataclass(frozen=True)
class QcSettings(StageSettings):
    """The ``qc_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("qc_options",)

    qc_mode: str
    min_genes: int
    min_counts: int
    max_pct_mito: float
    max_pct_hb: float
    mad_counts: float
    mad_genes: float
    mad_mito: float
    doublet_method: str
    expected_doublet_rate: float
    min_cells_per_sample: int
    drop_failed_samples: bool
    strict_counts: bool
    seed: int


def filter_reasons(obs: pd.DataFrame, settings: QcSettings) -> pd.Series:
    """Name the first filter each cell fails, in the order the filters are listed.

    Parameters
    ----------
    obs
        Cells with :func:`compute_qc_metrics` columns.
    settings
        ``qc_options``: ``qc_mode`` ``mad`` (MAD outliers, :func:`mad_outlier`) or ``fixed`` thresholds
        (``min_genes``, ``min_counts``, ``max_pct_mito``), then ``max_pct_hb`` in both modes.

    Returns
    -------
    pandas.Series
        Filter name per cell (``''`` when the cell passes), indexed like ``obs``.
    """
    if settings.qc_mode == "mad":
        failed = {
            "mad_counts": mad_outlier(obs["log1p_total_counts"].to_numpy(), settings.mad_counts),
            "mad_genes": mad_outlier(obs["log1p_n_genes_by_counts"].to_numpy(), settings.mad_genes),
            "mad_mito": mad_outlier(obs["pct_counts_mito"].to_numpy(), settings.mad_mito, upper_only=True),
        }
    else:
        failed = {
            "min_genes": obs["n_genes_by_counts"].to_numpy() < settings.min_genes,
            "min_counts": obs["total_counts"].to_numpy() < settings.min_counts,
            "max_pct_mito": obs["pct_counts_mito"].to_numpy() > settings.max_pct_mito,
        }
    failed["max_pct_hb"] = obs["pct_counts_hb"].to_numpy() > settings.max_pct_hb
    reasons: np.ndarray = np.full(len(obs), "", dtype=object)
    for name, mask in reversed(failed.items()):  # the first listed filter wins
        reasons[mask] = name
    return pd.Series(reasons, index=obs.index, name="qc_fail_reason")


def detect_doublets(adata: AnnData, *, expected_rate: float, seed: int, sample: str) -> tuple[np.ndarray, np.ndarray]:
    """Score and call doublets with Scrublet (Wolock et al. 2019; counts in ``X``).

    Parameters
    ----------
    adata
        Cells that passed the metric filters.
    expected_rate
        ``expected_doublet_rate`` given to Scrublet.
    seed
        Scrublet's seed.
    sample
        Named in warnings.

    Returns
    -------
    tuple of numpy.ndarray
        ``(scores, called)`` per cell; zeros and no calls for samples with fewer than ``MIN_CELLS_FOR_DOUBLETS``
        cells.
    """
    import scanpy as sc

    if adata.n_obs < MIN_CELLS_FOR_DOUBLETS:
        logger.warning("%s: %d cells are too few for Scrublet; no doublets removed", sample, adata.n_obs)
        return np.zeros(adata.n_obs), np.zeros(adata.n_obs, dtype=bool)
    scored = adata.copy()
    n_pcs = min(30, scored.n_obs - 1, scored.n_vars - 1)
    sc.pp.scrublet(
        scored,
        expected_doublet_rate=expected_rate,
        n_prin_comps=n_pcs,
        random_state=seed,
        verbose=False,
        use_approx_neighbors=False if scored.n_obs <= SCRUBLET_EXACT_MAX_CELLS else None,
    )  # None: scanpy's choice
    scores = scored.obs["doublet_score"].to_numpy()
    called = scored.obs["predicted_doublet"].to_numpy(dtype=bool)
    if called.mean() > MAX_DOUBLET_RATE_FACTOR * expected_rate:
        cutoff = np.quantile(scores, 1.0 - expected_rate)
        logger.warning(
            "%s: Scrublet's automatic threshold called %.1f%% doublets (expected %.1f%%); keeping the top %.1f%% "
            "of scores (>= %.3f) instead",
            sample,
            100 * called.mean(),
            100 * expected_rate,
            100 * expected_rate,
            cutoff,
        )
        called = scores >= cutoff
    return scores, called


def qc_sample(adata: AnnData, meta: dict[str, str], settings: QcSettings):
    """Run QC on one sample (raw counts in ``X``).

    Parameters
    ----------
    adata
        The sample's raw counts (cells x genes).
    meta
        Samplesheet row: ``sample``, ``species`` and the other ``META_COLUMNS``.
    settings
        ``qc_options``.

    Returns
    -------
    tuple
        ``(kept, cells)``: the AnnData of kept cells (counts in ``layers['counts']``, log1p CP10k ``X``, the
        ``META_COLUMNS`` categorical in ``obs``) and the per-cell table of every cell (metrics, ``doublet_score``,
        ``qc_fail_reason``).

    Adds
    ----
    ``obs[<META_COLUMNS>]``, ``obs['barcode']``
        Samplesheet columns and the original barcode (``obs_names`` become ``<sample>_<barcode>``).
    ``obs['doublet_score']``, ``obs['qc_fail_reason']``
        Scrublet score (NaN when not scored) and the first failed filter (``''`` when kept).
    """
    import scanpy as sc

    sample = meta["sample"]
    ensembl_to_symbols(adata, meta["species"], sample=sample)
    check_species(adata.var_names, meta["species"], sample=sample)
    for column in META_COLUMNS:
        adata.obs[column] = meta[column]
    adata.obs["barcode"] = adata.obs_names.astype(str)
    adata.obs_names = [f"{sample}_{barcode}" for barcode in adata.obs["barcode"]]
    compute_qc_metrics(adata, meta["species"])
    reasons = filter_reasons(adata.obs, settings)
    adata.obs["doublet_score"] = np.nan
    passing = (reasons == "").to_numpy()
    if settings.doublet_method == "scrublet":
        scores, called = detect_doublets(
            adata[passing], expected_rate=settings.expected_doublet_rate, seed=settings.seed, sample=sample
        )
        adata.obs.loc[passing, "doublet_score"] = scores
        reasons.iloc[np.flatnonzero(passing)[called]] = "doublet"
    adata.obs["qc_fail_reason"] = reasons
    cells = adata.obs.copy()
    kept = adata[(reasons == "").to_numpy()].copy()
    kept.layers["counts"] = kept.X.copy()
    if kept.n_obs:  # every cell may fail; run_qc then fails or drops the sample with one line
        sc.pp.normalize_total(kept, target_sum=TARGET_SUM)
        sc.pp.log1p(kept)
    for column in META_COLUMNS:
        kept.obs[column] = pd.Categorical(kept.obs[column])
    return kept, cells


def sample_stats(cells: pd.DataFrame, kept_obs: pd.DataFrame, sample: str) -> dict[str, Any]:
    """Summarise one sample's QC for the MultiQC general-statistics table.

    Parameters
    ----------
    cells
        Per-cell table of every cell (``qc_fail_reason``, ``doublet_score``).
    kept_obs
        ``obs`` of the kept cells.
    sample
        Sample name.

    Returns
    -------
    dict
        ``Sample``, ``cells_in``, ``cells_kept``, ``pct_kept``, medians of genes, UMIs and % mito of kept cells,
        ``doublet_rate`` (% of scored cells) and ``removed_<reason>`` counts.
    """
    reasons = cells["qc_fail_reason"]
    n_scored = int(cells["doublet_score"].notna().sum())
    stats = {
        "Sample": sample,
        "cells_in": len(cells),
        "cells_kept": len(kept_obs),
        "pct_kept": 100.0 * len(kept_obs) / len(cells),
        "median_genes": float(kept_obs["n_genes_by_counts"].median()) if len(kept_obs) else 0.0,
        "median_umis": float(kept_obs["total_counts"].median()) if len(kept_obs) else 0.0,
        "median_pct_mito": float(kept_obs["pct_counts_mito"].median()) if len(kept_obs) else 0.0,
        "doublet_rate": 100.0 * int((reasons == "doublet").sum()) / n_scored if n_scored else 0.0,
    }
    for reason, count in reasons[reasons != ""].value_counts().items():
        stats[f"removed_{reason}"] = int(count)
    return stats


def _too_few_cells_message(stats: dict[str, Any], minimum: int) -> str:
    removed = ", ".join(
        f"{value} {key.removeprefix('removed_')}" for key, value in stats.items() if key.startswith("removed_")
    )
    return (
        f"only {stats['cells_kept']} of {stats['cells_in']} cells pass QC (min_cells_per_sample {minimum}; "
        f"removed: {removed or 'none'}); relax the filters or set --drop_failed_samples"
    )


QC_METRICS = {  # column: (label, drawn on a log10(1 + x) scale)
    "n_genes_by_counts": ("detected genes", True),
    "total_counts": ("total counts", True),
    "pct_counts_mito": ("% mitochondrial", False),
    "pct_counts_hb": ("% haemoglobin", False),
}


def plot_qc_violins(cells: pd.DataFrame, sample: str, *, thresholds: dict[str, float | None] | None = None) -> Figure:
    """Draw violins of the QC metrics before and after filtering, with the fixed thresholds.

    Parameters
    ----------
    cells
        One row per cell of the sample (:func:`qc_sample`'s cell table): the ``QC_METRICS`` columns and
        ``qc_fail_reason`` (empty for kept cells).
    sample
        Sample name, in the title.
    thresholds
        Threshold drawn (red dashed line) per metric column, in the metric's units; ``None`` or a missing column
        draws none (adaptive MAD thresholds differ per cell group, so only fixed ones are drawn).

    Returns
    -------
    Figure
        One panel per metric (``before`` = all cells, ``after`` = kept cells; counts on log10(1 + x)); the
        caller saves it.
    """
    plt = pyplot()
    thresholds = thresholds or {}
    kept = cells["qc_fail_reason"] == ""
    fig, axes = plt.subplots(1, len(QC_METRICS), figsize=(3.2 * len(QC_METRICS), 3.4))
    for ax, (column, (label, log_scale)) in zip(axes, QC_METRICS.items(), strict=True):
        groups = [cells[column].to_numpy(), cells.loc[kept, column].to_numpy()]
        groups = [np.log10(1 + g) if log_scale else g for g in groups]
        ax.violinplot([g if len(g) else np.zeros(1) for g in groups], showmedians=True)
        threshold = thresholds.get(column)
        if threshold is not None:
            ax.axhline(np.log10(1 + threshold) if log_scale else threshold, color="red", linestyle="--", linewidth=1)
        ax.set_xticks([1, 2], ["before", "after"])
        ax.set_title(f"log10(1 + {label})" if log_scale else label)
    fig.suptitle(f"{sample}: {int(kept.sum())} of {len(cells)} cells kept")
    fig.tight_layout()
    return fig


def plot_qc_scatter(cells: pd.DataFrame, sample: str) -> Figure:
    """Draw total counts against detected genes per cell, coloured by the filter each cell failed.

    Parameters
    ----------
    cells
        One row per cell of the sample: ``total_counts``, ``n_genes_by_counts`` and ``qc_fail_reason`` (empty for
        kept cells, drawn as ``kept``).
    sample
        Sample name, the title.

    Returns
    -------
    Figure
        Log-log scatter, one colour per reason, the legend giving each reason's cell count; the caller saves it.
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 4))
    for reason, group in cells.groupby(cells["qc_fail_reason"].replace("", "kept")):
        ax.scatter(group["total_counts"], group["n_genes_by_counts"], s=4, alpha=0.6, label=f"{reason} ({len(group)})")
    ax.set(xscale="log", yscale="log", xlabel="total counts", ylabel="detected genes", title=sample)
    ax.legend(fontsize=7, markerscale=3)
    return fig


def _drawn_thresholds(settings: QcSettings) -> dict[str, float | None]:
    """Thresholds the violins show: the fixed-mode ones, and the haemoglobin cap in every mode."""
    fixed = settings.qc_mode == "fixed"
    return {
        "n_genes_by_counts": settings.min_genes if fixed else None,
        "total_counts": settings.min_counts if fixed else None,
        "pct_counts_mito": settings.max_pct_mito if fixed else None,
        "pct_counts_hb": settings.max_pct_hb,
    }


def write_outputs(
    kept,
    cells: pd.DataFrame,
    stats: dict[str, Any],
    sample: str,
    outdir: Path,
    settings: QcSettings,
    params: dict[str, Any],
) -> Path | None:
    """Write the sample's QC tables, figures (saved here) and, when cells are kept, ``<sample>.qc.h5ad``."""
    header = io.multiqc_header(
        "tmeflow_qc_general_stats",
        "Per-sample QC",
        "Cells before and after QC per sample (tmeflow qc).",
        "generalstats",
        pconfig=[
            {"cells_kept": {"title": "Cells kept", "format": "{:,.0f}"}},
            {"pct_kept": {"title": "% kept", "max": 100, "suffix": "%"}},
            {"median_genes": {"title": "Median genes"}},
            {"median_umis": {"title": "Median UMIs"}},
            {"median_pct_mito": {"title": "% mito", "suffix": "%"}},
            {"doublet_rate": {"title": "Doublets", "suffix": "%"}},
        ],
    )
    columns = [
        "Sample",
        "cells_in",
        "cells_kept",
        "pct_kept",
        "median_genes",
        "median_umis",
        "median_pct_mito",
        "doublet_rate",
    ]
    io.write_table(pd.DataFrame([stats])[columns], outdir / f"{sample}.qc_stats_mqc.tsv", header_lines=header)
    cell_columns = [
        "barcode",
        "n_genes_by_counts",
        "total_counts",
        "pct_counts_mito",
        "pct_counts_ribo",
        "pct_counts_hb",
        "doublet_score",
        "qc_fail_reason",
    ]
    io.write_table(cells[cell_columns], outdir / f"{sample}.qc_cells.tsv.gz", index=True)
    io.save_figure(
        plot_qc_violins(cells, sample, thresholds=_drawn_thresholds(settings)), outdir / f"{sample}.qc_violin.png"
    )
    io.save_figure(plot_qc_scatter(cells, sample), outdir / f"{sample}.qc_scatter.png")
    if kept is None:
        return None
    kept.uns["tmeflow"] = {"qc": {**io.provenance("qc", params), "stats": stats}}
    return io.write_h5ad(kept, outdir / f"{sample}.qc.h5ad")


def run_qc(input_path: str | Path, meta: dict[str, str], outdir: str | Path, params: dict[str, Any]) -> QCResult:
    """Read one sample's counts, run QC and write ``<sample>.qc.h5ad``, tables and plots to ``outdir``."""
    from .readers import read_counts

    sample, outdir = meta["sample"], Path(outdir)
    settings = QcSettings.from_params(params)
    adata = read_counts(input_path, sample=sample, strict_counts=settings.strict_counts)
    if not sp.issparse(adata.X):
        adata.X = sp.csr_matrix(adata.X)
    with timed(logger, f"{sample}: QC of {adata.n_obs} cells x {adata.n_vars} genes ({settings.qc_mode} filters)"):
        try:
            kept, cells = qc_sample(adata, meta, settings)
        except TmeflowInputError as error:
            raise TmeflowInputError(error.message, file=input_path, sample=sample, column=error.column) from error
    stats = sample_stats(cells, kept.obs, sample)
    logger.info(
        "%s: kept %d of %d cells (%s)",
        sample,
        stats["cells_kept"],
        stats["cells_in"],
        ", ".join(f"{k}={v}" for k, v in stats.items() if k.startswith("removed_")) or "nothing removed",
    )
    if stats["cells_kept"] < settings.min_cells_per_sample:
        message = _too_few_cells_message(stats, settings.min_cells_per_sample)
        if not settings.drop_failed_samples:
            raise TmeflowInputError(message, file=input_path, sample=sample)
        logger.warning("%s: dropped: %s", sample, message)
        kept = None
    h5ad = write_outputs(kept, cells, stats, sample, outdir, settings, params)
    return QCResult(sample=sample, stats=stats, h5ad=h5ad)


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow qc``."""
    meta = {column: getattr(args, column) for column in META_COLUMNS}
    run_qc(args.input, meta, args.outdir, params)
