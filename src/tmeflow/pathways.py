"""Pathways and signature scores (``tmeflow pathways``).

Inputs: the atlas h5ad (raw counts in ``layers['counts']``, log1p CP10k in ``X``, ``obs`` ``sample``,
``condition``, ``cell_type``), the DE tables of ``tmeflow de`` (``--de``, optional), user GMT files
(``--signatures``, optional). Gene sets are human symbols; for a mouse atlas (``obs['species']`` or
``mt-`` genes) they are mapped with the bundled one-to-one orthologs
(:func:`tmeflow.signatures.map_gene_sets`; Hallmark uses its bundled mouse file).

Gene sets
    *Pathway collections* (GSEA, over-representation): bundled MSigDB Hallmark (50 sets) and the
    regulated-cell-death sets (``resources/cell_death``). *Signatures* (ssGSEA, module scores): the
    bundled TME signatures ``resources/signatures/tme_signatures.gmt`` (necroptosis, EMT, DAMPs,
    naive / cytotoxic / exhausted T, M1 / M2, pro- / anti-inflammatory, 12-chemokine TLS, ESTIMATE
    immune / stromal; see its SOURCE.md) plus every set of the user's GMT files. A user GMT none of
    whose sets has a gene in the atlas is an input error (exit 2).

Per DE table, contrast and cell type
    * GSEA preranked (Subramanian et al. 2005, PNAS 102:15545) with ``gseapy.prerank`` on the DE
      ``stat`` column (Wald statistic for pseudobulk, Wilcoxon z for wilcoxon), ``gsea_permutations``
      gene-set permutations seeded with ``seed``, sets of ``gsea_min_size``-``gsea_max_size`` genes;
      offline (gene sets passed as a dict). ``rank`` orders sets by nominal p-value, then by
      decreasing |NES|.
    * Over-representation: hypergeometric test (one-sided, ``scipy.stats.hypergeom``) of the up genes
      (``padj < ora_fdr``, ``log2fc > ora_lfc``) and of the down genes, universe = genes tested in
      that table, BH FDR over sets per list.

Per sample
    * ssGSEA (GSVA's ``method="ssgsea"`` definition, :func:`tmeflow.signatures.ssgsea`, normalised
      over the scored matrix) of the signatures on pseudobulk profiles, log2(CPM + 1) of raw counts
      summed per sample (all cells) and per sample x cell type (groups of at least
      ``MIN_PSEUDOBULK_CELLS`` cells); columns ``ssgsea_<SET>``.

Per cell
    * Module scores: :func:`scanpy.tl.score_genes` (Seurat ``AddModuleScore``; Tirosh et al. 2016,
      Science 352:189) on ``X`` with ``score_ctrl_size`` control genes from 25 expression bins, seeded;
      ``obs['score_<SET>']``.
    * Stemness: original CytoTRACE (Gulati et al. 2020, Science 367:405; :mod:`tmeflow.stemness`):
      the gene counts signature (the 200 genes most correlated with the number of detected genes)
      smoothed on the kNN graph and ranked to (0, 1] (``obs['score_cytotrace']``, 1 = least
      differentiated; ``n_genes_detected``, ``gene_counts_signature`` beside it). Compared between
      conditions with samples as units: per sample and cell type (>= ``MIN_PSEUDOBULK_CELLS`` cells)
      the mean score, a moderated test per cell type and contrast (``contrast``; paired by patient
      when possible), BH FDR (``stemness_samples.tsv``, ``stemness_tests.tsv``,
      ``stemness_by_condition.png``). CytoTRACE 2 is not used (non-commercial licence; see
      :mod:`tmeflow.stemness`).
    * PROGENy pathway activities (Schubert et al. 2018, Nat Commun 9:20) with decoupler
      (Badia-i-Mompel et al. 2022) ``ulm`` or ``mlm`` (``progeny_method``) and the bundled weights
      (``progeny_top`` 100 or 500 genes per pathway, ``resources/progeny``);
      ``obs['progeny_<Pathway>']``.

Set names become column names after replacing characters other than letters, digits and ``_`` by
``_``; the same names are used in ``obs`` and in every table.

Outputs: ``gsea_<contrast>.tsv``, ``ora_<contrast>.tsv``, ``gsea_<contrast>_bubble.png``,
``gsea_<contrast>_enrichment.png`` (running score of the top set per cell type), ``ssgsea_samples.tsv``,
``ssgsea_cell_types.tsv``, ``ssgsea_by_condition_heatmap.png``, ``ssgsea_cell_types_heatmap.png``,
``cell_scores.tsv.gz`` (per cell: sample, condition, cell_type, ``score_*``, ``progeny_*``),
``scores_by_cell_type.tsv`` (means per cell type x condition), ``module_scores_bubble.png``,
``pathways.h5ad`` (the atlas with the scores in ``obs``), ``stemness_samples.tsv``, ``stemness_tests.tsv``,
``stemness_by_condition.png``.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import io
from .composition import check_obs, condition_order, resolve_contrasts, sample_table
from .errors import TmeflowInputError
from .genes import species_of
from .log import get_logger, progress, timed
from .plotting import pyplot
from .settings import StageSettings
from .signatures import filter_gene_sets, map_gene_sets, read_gmt, resource_path, ssgsea
from .stemness import compare_conditions, cytotrace, plot_by_condition, sample_means

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure

logger = get_logger(__name__)

TME_SIGNATURES = "signatures/tme_signatures.gmt"
HALLMARK = {"human": "hallmark/hallmark_human.gmt", "mouse": "hallmark/hallmark_mouse_orthomapped_DERIVED.gmt"}
CELL_DEATH = ("cell_death/necroptosis.gmt", "cell_death/pyroptosis_ferroptosis_autophagy.gmt")
PROGENY = "progeny/progeny_{species}_top{top}.tsv"
MIN_PSEUDOBULK_CELLS = 10
MIN_SIGNATURE_GENES = 2
STEMNESS = "score_cytotrace"
GSEA_COLUMNS = ["contrast", "cell_type", "term", "rank", "es", "nes", "pvalue", "fdr", "fwer", "n_genes", "lead_genes"]
ORA_COLUMNS = [
    "contrast",
    "cell_type",
    "direction",
    "term",
    "n_list",
    "n_universe",
    "n_set",
    "overlap",
    "expected",
    "odds_ratio",
    "pvalue",
    "fdr",
    "genes",
]


def column_name(prefix: str, set_name: str) -> str:
    """Name a score column ``<prefix>_<set>``, characters other than letters, digits and ``_`` replaced by ``_``.

    Parameters
    ----------
    prefix
        ``score``, ``ssgsea`` or ``progeny``.
    set_name
        Gene-set or pathway name.

    Returns
    -------
    str
        The column name (HDF5-safe).
    """
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]+', '_', set_name).strip('_')}"


# --------------------------------------------------------------------------------------------------
# Gene sets


def pathway_collection(species: str) -> dict[str, list[str]]:
    """Load the Hallmark and regulated-cell-death gene sets for GSEA and over-representation.

    Parameters
    ----------
    species
        ``human`` or ``mouse`` (the cell-death sets are mapped from human by orthology).

    Returns
    -------
    dict
        Set name -> gene symbols.
    """
    sets = dict(read_gmt(resource_path(HALLMARK[species])))
    death: dict[str, list[str]] = {}
    for path in CELL_DEATH:
        death.update(read_gmt(resource_path(path)))
    sets.update(map_gene_sets(death, "human", species))
    return sets


def signature_sets(species: str, user_gmts: list[str], genes) -> dict[str, list[str]]:
    """Collect the bundled TME signatures and the user's sets, restricted to ``genes``.

    Parameters
    ----------
    species
        ``human`` or ``mouse``.
    user_gmts
        User GMT files; one without any gene present, or a set named like a bundled one, is an input error.
    genes
        Genes of the atlas.

    Returns
    -------
    dict
        Set name -> genes present (bundled sets with fewer than ``MIN_SIGNATURE_GENES`` present are dropped).
    """
    bundled = map_gene_sets(read_gmt(resource_path(TME_SIGNATURES)), "human", species)
    sets = filter_gene_sets(bundled, genes, min_size=MIN_SIGNATURE_GENES, required=False)
    for path in user_gmts:
        user = read_gmt(path)
        kept = filter_gene_sets(user, genes, min_size=1, source=path, required=True)
        for name, members in kept.items():
            if name in sets:
                raise TmeflowInputError(f"gene set {name} is also a bundled signature; rename it", file=path)
            sets[name] = members
    return sets


# --------------------------------------------------------------------------------------------------
# DE-table analyses


def read_de_tables(paths: list[str]) -> pd.DataFrame:
    """Read and stack the DE tables written by ``tmeflow de``.

    Parameters
    ----------
    paths
        ``de_<contrast>.tsv`` files (columns ``contrast``, ``cell_type``, ``gene``, ``log2fc``, ``stat``,
        ``padj``); a missing file or column is a one-line input error naming the file.

    Returns
    -------
    pandas.DataFrame
        The tables concatenated, in the order given.
    """
    frames = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise TmeflowInputError("DE table not found", file=path)
        frame = pd.read_csv(path, sep="\t")
        missing = [c for c in ("contrast", "cell_type", "gene", "log2fc", "stat", "padj") if c not in frame.columns]
        if missing:
            raise TmeflowInputError(
                f"DE table lacks column(s) {', '.join(missing)}; give tables written by 'tmeflow de'", file=path
            )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


@dataclass(frozen=True)
class PathwaysSettings(StageSettings):
    """The ``comparison_options`` and ``pathways_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("comparison_options", "pathways_options")

    contrast: str | None
    gsea_permutations: int
    gsea_min_size: int
    gsea_max_size: int
    ora_fdr: float
    ora_lfc: float
    score_ctrl_size: int
    progeny_method: str
    progeny_top: int
    seed: int


def gsea_prerank(
    ranking: pd.Series, gene_sets: dict[str, list[str]], *, permutations: int, min_size: int, max_size: int, seed: int
):
    """Run preranked GSEA with gseapy (Subramanian et al. 2005).

    Parameters
    ----------
    ranking
        Gene -> statistic (e.g. the DE Wald statistic); NaN and duplicated genes dropped.
    gene_sets
        Set name -> genes.
    permutations
        ``gsea_permutations``: gene-set permutations of the null.
    min_size, max_size
        Sets with fewer or more genes in the ranking are skipped.
    seed
        Permutation seed.

    Returns
    -------
    tuple
        ``(table, gseapy result)``: ``term``, ``es``, ``nes``, ``pvalue``, ``fdr``, ``fwer``, ``n_genes``,
        ``lead_genes``, ``rank`` (by p-value, then |NES|); the result holds the running enrichment scores.
    """
    import gseapy

    rnk = ranking.dropna()
    rnk = rnk[~rnk.index.duplicated()].sort_values(ascending=False)
    result = gseapy.prerank(
        rnk=rnk,
        gene_sets=gene_sets,
        permutation_num=permutations,
        seed=seed,
        min_size=min_size,
        max_size=max_size,
        threads=1,
        outdir=None,
        no_plot=True,
        verbose=False,
    )
    res = result.res2d.copy()
    table = pd.DataFrame(
        {
            "term": res["Term"].astype(str),
            "es": res["ES"].astype(float),
            "nes": res["NES"].astype(float),
            "pvalue": res["NOM p-val"].astype(float),
            "fdr": res["FDR q-val"].astype(float),
            "fwer": res["FWER p-val"].astype(float),
            "n_genes": res["Tag %"].astype(str).str.split("/").str[1].astype(int),
            "lead_genes": res["Lead_genes"].astype(str),
        }
    )
    table = table.assign(abs_nes=table["nes"].abs()).sort_values(
        ["pvalue", "abs_nes", "term"], ascending=[True, False, True]
    )
    table["rank"] = np.arange(1, len(table) + 1)
    return table.drop(columns="abs_nes"), result


def over_representation(
    genes: list[str], universe: list[str], gene_sets: dict[str, list[str]], *, min_size: int, max_size: int
) -> pd.DataFrame:
    """Test the over-representation of ``genes`` in every set by the hypergeometric test, BH FDR.

    Parameters
    ----------
    genes
        The gene list (e.g. significant up-regulated genes).
    universe
        Genes tested (the list and sets are restricted to it).
    gene_sets
        Set name -> genes.
    min_size, max_size
        Sets with fewer or more genes in the universe are skipped.

    Returns
    -------
    pandas.DataFrame
        One row per set: ``term``, ``n_list``, ``n_universe``, ``n_set``, ``overlap``, ``expected``,
        ``odds_ratio``, ``pvalue``, ``genes``, ``fdr``; by p-value.
    """
    from scipy.stats import hypergeom

    from .stats import bh_fdr

    universe_set = set(universe)
    hits = set(genes) & universe_set
    rows = []
    for term, members in gene_sets.items():
        in_universe = universe_set.intersection(members)
        if not min_size <= len(in_universe) <= max_size:
            continue
        overlap = sorted(hits & in_universe)
        n_u, n_s, n_l = len(universe_set), len(in_universe), len(hits)
        p = float(hypergeom.sf(len(overlap) - 1, n_u, n_s, n_l)) if n_l else 1.0
        expected = n_l * n_s / n_u if n_u else 0.0
        odds = (
            (len(overlap) * (n_u - n_s - n_l + len(overlap))) / max(1e-12, (n_s - len(overlap)) * (n_l - len(overlap)))
            if n_l
            else np.nan
        )
        rows.append(
            {
                "term": term,
                "n_list": n_l,
                "n_universe": n_u,
                "n_set": n_s,
                "overlap": len(overlap),
                "expected": expected,
                "odds_ratio": odds,
                "pvalue": p,
                "genes": ",".join(overlap),
            }
        )
    frame = pd.DataFrame(
        rows, columns=[c for c in ORA_COLUMNS if c not in ("contrast", "cell_type", "direction", "fdr")]
    )
    frame["fdr"] = bh_fdr(frame["pvalue"]) if len(frame) else []
    return frame.sort_values(["pvalue", "term"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Scores


def log_cpm(counts: pd.DataFrame) -> pd.DataFrame:
    """Transform a samples x genes count table to log2(CPM + 1), genes x samples.

    Parameters
    ----------
    counts
        Samples x genes counts.

    Returns
    -------
    pandas.DataFrame
        Genes x samples log2(CPM + 1).
    """
    totals = counts.sum(axis=1).replace(0, 1)
    return np.log2(counts.div(totals, axis=0) * 1e6 + 1).T


def pseudobulk_profiles(adata: AnnData, by: list[str], min_cells: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sum the raw counts per combination of the ``obs`` columns ``by`` (pseudobulk profiles).

    Parameters
    ----------
    adata
        Cells with raw counts in ``layers['counts']``.
    by
        ``obs`` columns defining the groups (e.g. ``sample``, ``condition``, ``cell_type``).
    min_cells
        Groups with fewer cells are dropped.

    Returns
    -------
    tuple of pandas.DataFrame
        ``(groups x genes counts, group table)``: the table has the ``by`` columns and ``n_cells``.
    """
    counts = adata.layers["counts"] if "counts" in adata.layers else None
    if counts is None:
        raise TmeflowInputError("atlas has no layers['counts'] (raw counts are needed for pseudobulk ssGSEA)")
    keys = adata.obs[by].astype(str).agg("|".join, axis=1).to_numpy()
    labels = pd.Categorical(keys)
    sizes = np.bincount(labels.codes, minlength=len(labels.categories))
    indicator = sp.csr_matrix(
        (np.ones(len(keys)), (labels.codes, np.arange(len(keys)))), shape=(len(labels.categories), len(keys))
    )
    summed = indicator @ sp.csr_matrix(counts)
    frame = pd.DataFrame(summed.toarray(), index=labels.categories.astype(str), columns=adata.var_names.astype(str))
    keep = sizes >= min_cells
    meta = pd.DataFrame([k.split("|") for k in frame.index[keep]], columns=by, index=frame.index[keep])
    meta["n_cells"] = sizes[keep]
    return frame.loc[keep], meta


def module_scores(adata: AnnData, sets: dict[str, list[str]], *, ctrl_size: int, seed: int) -> list[str]:
    """Score every cell for every gene set with scanpy ``score_genes`` (Tirosh et al. 2016).

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``.
    sets
        Set name -> genes.
    ctrl_size
        ``score_ctrl_size``: control genes per expression bin (25 bins).
    seed
        Seed of the control-gene draw.

    Returns
    -------
    list of str
        The score columns written.

    Adds
    ----
    ``obs['score_<set>']``
        Mean expression of the set minus that of the control genes (:func:`column_name`).
    """
    import scanpy as sc

    columns = []
    for name, genes in sets.items():
        column = column_name("score", name)
        sc.tl.score_genes(
            adata, genes, ctrl_size=ctrl_size, n_bins=25, score_name=column, random_state=seed, use_raw=False
        )
        columns.append(column)
    return columns


def progeny_activities(adata: AnnData, species: str, *, method: str, top: int) -> list[str]:
    """Infer PROGENy pathway activities per cell with decoupler (Schubert et al. 2018; bundled weights).

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``.
    species
        ``human`` or ``mouse`` (which bundled footprint table).
    method
        ``progeny_method``: decoupler method (e.g. ``ulm``, ``mlm``).
    top
        ``progeny_top``: footprint genes per pathway (the bundled table of that size).

    Returns
    -------
    list of str
        The activity columns written (empty, with a warning, when no footprint gene is in the atlas).

    Adds
    ----
    ``obs['progeny_<pathway>']``
        Activity score per cell and pathway.
    """
    import decoupler as dc

    net = pd.read_csv(resource_path(PROGENY.format(species=species, top=top)), sep="\t")
    net = net[["source", "target", "weight"]]
    present = net["target"].isin(adata.var_names)
    if not present.any():
        logger.warning("PROGENy: none of the footprint genes is in the atlas; no pathway activities")
        return []
    getattr(dc.mt, method)(data=adata, net=net, tmin=5, verbose=False)
    scores = adata.obsm.pop(f"score_{method}")
    adata.obsm.pop(f"padj_{method}", None)
    columns = []
    for pathway in scores.columns:
        column = column_name("progeny", str(pathway))
        adata.obs[column] = scores[pathway].to_numpy()
        columns.append(column)
    return columns


# --------------------------------------------------------------------------------------------------
# Plots


def plot_heatmap(frame: pd.DataFrame, title: str, *, center: bool = True) -> Figure:
    """Draw a rows x columns heatmap of scores, rows z-scored across columns when ``center``.

    Parameters
    ----------
    frame
        Scores (e.g. ssGSEA signatures x conditions); index and columns label the axes.
    title
        Figure title.
    center
        Z-score each row across the columns (default; the signatures' scales differ); with a single column the
        raw scores are drawn.

    Returns
    -------
    Figure
        Diverging heatmap symmetric about 0, with a colour bar; the caller saves it.
    """
    plt = pyplot()
    data = frame.astype(float)
    if center and data.shape[1] > 1:
        sd = data.std(axis=1).replace(0, 1)
        data = data.sub(data.mean(axis=1), axis=0).div(sd, axis=0)
    fig, ax = plt.subplots(figsize=(max(3.5, 0.45 * data.shape[1] + 3), max(2.5, 0.28 * data.shape[0] + 1.2)))
    limit = np.nanmax(np.abs(data.to_numpy())) if data.size else 1.0
    image = ax.imshow(data.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit)
    ax.set_xticks(range(data.shape[1]))
    ax.set_xticklabels(data.columns, rotation=90, fontsize=7)
    ax.set_yticks(range(data.shape[0]))
    ax.set_yticklabels(data.index, fontsize=7)
    fig.colorbar(image, ax=ax, shrink=0.6, label="row z-score" if center else "score")
    ax.set_title(title, fontsize=9)
    return fig


def plot_bubbles(
    frame: pd.DataFrame, x: str, y: str, colour: str, size: str, title: str, colour_label: str, size_label: str
) -> Figure:
    """Draw a bubble grid: one point per row of ``frame``, placed by two label columns.

    Parameters
    ----------
    frame
        Long table, one row per point.
    x, y
        Columns whose labels (in order of first appearance) make the x and y axes.
    colour
        Numeric column mapped to a diverging colour scale symmetric about 0 (e.g. NES).
    size
        Non-negative numeric column mapped to the point area (largest point 120 pt^2; e.g. -log10 FDR).
    title
        Figure title.
    colour_label, size_label
        Legends of the colour bar and of the size encoding (in the title).

    Returns
    -------
    Figure
        The bubble grid; the caller saves it.
    """
    plt = pyplot()
    xs = list(dict.fromkeys(frame[x]))
    ys = list(dict.fromkeys(frame[y]))
    fig, ax = plt.subplots(figsize=(max(3.5, 0.5 * len(xs) + 3.5), max(2.5, 0.3 * len(ys) + 1.2)))
    sizes = frame[size].astype(float).to_numpy()
    scale = 120.0 / max(1e-9, np.nanmax(sizes)) if len(sizes) else 1.0
    values = frame[colour].astype(float)
    limit = float(np.nanmax(np.abs(values))) if len(values) else 1.0
    points = ax.scatter(
        [xs.index(v) for v in frame[x]],
        [ys.index(v) for v in frame[y]],
        s=np.nan_to_num(sizes) * scale + 2,
        c=values,
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        edgecolors="k",
        linewidths=0.3,
    )
    ax.set_xticks(range(len(xs)))
    ax.set_xticklabels(xs, rotation=90, fontsize=7)
    ax.set_yticks(range(len(ys)))
    ax.set_yticklabels(ys, fontsize=7)
    fig.colorbar(points, ax=ax, shrink=0.6, label=colour_label)
    ax.set_title(f"{title}\n(size: {size_label})", fontsize=9)
    return fig


def plot_enrichment(curves: list[tuple[str, str, float, np.ndarray, np.ndarray]], title: str) -> Figure:
    """Draw the GSEA running enrichment score and the hits of one gene set per panel.

    Parameters
    ----------
    curves
        One ``(cell type, term, NES, running enrichment score per rank, hit ranks)`` per panel (Subramanian et
        al. 2005).
    title
        Figure title.

    Returns
    -------
    Figure
        One panel per curve (an empty one when ``curves`` is empty); the caller saves it.
    """
    plt = pyplot()
    n = max(1, len(curves))
    fig, axes = plt.subplots(1, n, figsize=(3.6 * n, 3.0), squeeze=False)
    for ax, (group, term, nes, res, hits) in zip(axes.ravel(), curves, strict=False):
        ax.plot(np.arange(len(res)), res, color="#2b8cbe", lw=1.2)
        ax.axhline(0, color="k", lw=0.5)
        low = float(np.min(res)) if len(res) else 0.0
        ax.vlines(hits, low - 0.08, low - 0.02, color="k", lw=0.4)
        ax.set_title(f"{group}: {term}\nNES {nes:.2f}", fontsize=7)
        ax.set_xlabel("gene rank", fontsize=7)
        ax.set_ylabel("running enrichment score", fontsize=7)
        ax.tick_params(labelsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Stage


TOP_SETS_IN_REPORT = 3
GSEA_TABLE_COLUMNS = ["contrast", "cell_type", "term", "nes", "pvalue", "fdr"]


def write_gsea_table(gsea_tables: list[pd.DataFrame], path: Path) -> Path:
    """Write the top GSEA sets of each cell type and contrast as one sortable MultiQC table, lowest FDR first."""
    gsea = (
        pd.concat(gsea_tables, ignore_index=True)
        if gsea_tables
        else pd.DataFrame(columns=[*GSEA_TABLE_COLUMNS, "rank"])
    )
    table = gsea[gsea["rank"] <= TOP_SETS_IN_REPORT][GSEA_TABLE_COLUMNS].sort_values(["fdr", "pvalue"], kind="stable")
    table.insert(
        0,
        "test",
        table["contrast"].astype(str) + ": " + table["cell_type"].astype(str) + ": " + table["term"].astype(str),
    )
    return io.write_multiqc_table(
        table,
        path,
        "tmeflow_pathways_gsea",
        "Top gene sets (GSEA)",
        f"Pre-ranked GSEA of the differential-expression statistics: the {TOP_SETS_IN_REPORT} top sets "
        "per cell type and contrast, lowest FDR first (NES > 0: up in the test condition).",
    )


def run_pathways(
    input_path: str | Path, de_paths: list[str], user_gmts: list[str], outdir: str | Path, params: dict[str, Any]
) -> dict[str, Any]:
    """Run GSEA/ORA on the DE tables and ssGSEA, module scores, CytoTRACE and PROGENy on the atlas; write outputs."""
    outdir = Path(outdir)
    input_path = Path(input_path)
    settings = PathwaysSettings.from_params(params)
    adata = io.read_h5ad(input_path, "atlas h5ad")
    check_obs(adata.obs, ("sample", "condition", "cell_type"), file=input_path)
    if "counts" not in adata.layers:
        raise TmeflowInputError(
            "atlas has no layers['counts'] (raw counts are needed for pseudobulk ssGSEA)", file=input_path
        )
    contrast = (settings.contrast or "").strip()
    pairs = (
        resolve_contrasts(adata.obs, contrast, file=input_path)
        if (contrast or len(condition_order(adata.obs)) > 1)
        else []
    )
    species = species_of(adata)
    genes = adata.var_names.astype(str)
    signatures = signature_sets(species, list(user_gmts or []), genes)
    if not signatures:
        raise TmeflowInputError(
            "no signature has at least 2 genes in the atlas; check gene identifiers and species", file=input_path
        )
    de = read_de_tables(list(de_paths or []))
    collection = pathway_collection(species)
    seed = settings.seed
    summary: dict[str, Any] = {
        "species": species,
        "signatures": {k: len(v) for k, v in signatures.items()},
        "gsea_top": {},
    }

    # ---------------------------------------------------------------- GSEA + ORA per DE table
    gsea_tables: list[pd.DataFrame] = []
    for contrast, frame in de.groupby("contrast", sort=False) if len(de) else []:
        gsea_rows, ora_rows, curves = [], [], []
        for group, sub in progress(
            frame.groupby("cell_type", sort=False),
            frame["cell_type"].nunique(),
            f"GSEA {contrast} ({settings.gsea_permutations} permutations), cell type",
            logger,
        ):
            ranking = pd.Series(sub["stat"].to_numpy(dtype=float), index=sub["gene"].astype(str))
            with timed(logger, f"GSEA {contrast}, {group} ({ranking.notna().sum()} ranked genes)"):
                try:
                    table, result = gsea_prerank(
                        ranking,
                        collection,
                        permutations=settings.gsea_permutations,
                        min_size=settings.gsea_min_size,
                        max_size=settings.gsea_max_size,
                        seed=seed,
                    )
                except (LookupError, ValueError) as error:  # gseapy: no set of the allowed size
                    logger.warning("GSEA %s, %s skipped: %s", contrast, group, error)
                    continue
            table.insert(0, "cell_type", group)
            table.insert(0, "contrast", contrast)
            gsea_rows.append(table[GSEA_COLUMNS])
            top = table.iloc[0]
            summary["gsea_top"][f"{contrast}:{group}"] = top["term"]
            detail = result.results.get(top["term"], {})
            if "RES" in detail:
                curves.append(
                    (group, top["term"], float(top["nes"]), np.asarray(detail["RES"]), np.asarray(detail["hits"]))
                )
            universe = sub.loc[sub["padj"].notna(), "gene"].astype(str).tolist()
            tested = sub[sub["padj"].notna()]
            for direction, chosen in (
                ("up", tested["log2fc"] > settings.ora_lfc),
                ("down", tested["log2fc"] < -settings.ora_lfc),
            ):
                genes_list = tested.loc[chosen & (tested["padj"] < settings.ora_fdr), "gene"].astype(str).tolist()
                ora = over_representation(
                    genes_list, universe, collection, min_size=settings.gsea_min_size, max_size=settings.gsea_max_size
                )
                ora.insert(0, "direction", direction)
                ora.insert(0, "cell_type", group)
                ora.insert(0, "contrast", contrast)
                ora_rows.append(ora[ORA_COLUMNS])
        gsea = pd.concat(gsea_rows, ignore_index=True) if gsea_rows else pd.DataFrame(columns=GSEA_COLUMNS)
        io.write_table(gsea, outdir / f"gsea_{contrast}.tsv")
        gsea_tables.append(gsea)
        io.write_table(
            pd.concat(ora_rows, ignore_index=True) if ora_rows else pd.DataFrame(columns=ORA_COLUMNS),
            outdir / f"ora_{contrast}.tsv",
        )
        if len(gsea):
            top_terms = gsea[gsea["rank"] <= 5]["term"].unique()
            shown = gsea[gsea["term"].isin(top_terms)].assign(mlog10fdr=lambda f: -np.log10(f["fdr"].clip(lower=1e-4)))
            io.save_figure(
                plot_bubbles(shown, "cell_type", "term", "nes", "mlog10fdr", f"GSEA {contrast}", "NES", "-log10 FDR"),
                outdir / f"gsea_{contrast}_bubble.png",
            )
        if curves:
            io.save_figure(
                plot_enrichment(curves, f"GSEA {contrast}: top set per cell type"),
                outdir / f"gsea_{contrast}_enrichment.png",
            )
    write_gsea_table(gsea_tables, outdir / "pathways_gsea_mqc.tsv")

    # ---------------------------------------------------------------- ssGSEA on pseudobulk
    conditions = condition_order(adata.obs)
    with timed(logger, f"ssGSEA of {len(signatures)} signatures on pseudobulk profiles"):
        per_sample, sample_meta = pseudobulk_profiles(adata, ["sample", "condition"], 1)
        scores = ssgsea(log_cpm(per_sample), signatures).T
        scores.columns = [column_name("ssgsea", c) for c in scores.columns]
        samples_table = pd.concat([sample_meta.reset_index(drop=True), scores.reset_index(drop=True)], axis=1)
        io.write_table(samples_table, outdir / "ssgsea_samples.tsv")
        by_condition = samples_table.groupby("condition")[list(scores.columns)].mean().T
        by_condition = by_condition[[c for c in conditions if c in by_condition.columns]]
        io.save_figure(
            plot_heatmap(by_condition, "ssGSEA (pseudobulk per sample), mean by condition"),
            outdir / "ssgsea_by_condition_heatmap.png",
        )
        per_type, type_meta = pseudobulk_profiles(adata, ["sample", "condition", "cell_type"], MIN_PSEUDOBULK_CELLS)
        type_scores = ssgsea(log_cpm(per_type), signatures).T
        type_scores.columns = [column_name("ssgsea", c) for c in type_scores.columns]
        types_table = pd.concat([type_meta.reset_index(drop=True), type_scores.reset_index(drop=True)], axis=1)
        io.write_table(types_table, outdir / "ssgsea_cell_types.tsv")
        means = types_table.groupby(["cell_type", "condition"])[list(type_scores.columns)].mean()
        means.index = [f"{t} | {c}" for t, c in means.index]
        io.save_figure(
            plot_heatmap(means.T, "ssGSEA (pseudobulk per sample x cell type), mean by cell type and condition"),
            outdir / "ssgsea_cell_types_heatmap.png",
        )

    # ---------------------------------------------------------------- per-cell scores
    with timed(logger, f"module scores of {len(signatures)} signatures on {adata.n_obs} cells"):
        score_columns = module_scores(adata, signatures, ctrl_size=settings.score_ctrl_size, seed=seed)
    with timed(logger, f"CytoTRACE on {adata.n_obs} cells"):
        stem = cytotrace(adata, seed=seed)
        for column in ("n_genes_detected", "gene_counts_signature"):
            adata.obs[column] = stem[column].to_numpy()
        adata.obs[STEMNESS] = stem["cytotrace"].to_numpy()
        score_columns.append(STEMNESS)
    stem_means = sample_means(adata.obs, STEMNESS, min_cells=MIN_PSEUDOBULK_CELLS)
    io.write_table(stem_means, outdir / "stemness_samples.tsv")
    stem_tests = compare_conditions(stem_means, sample_table(adata.obs), pairs)
    io.write_table(stem_tests, outdir / "stemness_tests.tsv")
    io.save_figure(plot_by_condition(stem_means, conditions), outdir / "stemness_by_condition.png")
    summary["stemness"] = {"method": "CytoTRACE (Gulati et al. 2020)", "tests": stem_tests.head(20).to_dict("records")}
    with timed(logger, f"PROGENy activities ({settings.progeny_method}, top {settings.progeny_top})"):
        progeny_columns = progeny_activities(adata, species, method=settings.progeny_method, top=settings.progeny_top)
    meta_columns = [c for c in ("sample", "patient", "condition", "cell_type") if c in adata.obs.columns]
    cell_table = adata.obs[meta_columns + score_columns + progeny_columns].copy()
    cell_table.index.name = "cell"
    with io.atomic_path(outdir / "cell_scores.tsv.gz") as tmp:
        cell_table.to_csv(tmp, sep="\t", float_format="%.6g", compression="gzip")
    grouped = cell_table.groupby(["cell_type", "condition"], observed=True)
    means = grouped[score_columns + progeny_columns].mean()
    means.insert(0, "n_cells", grouped.size())
    io.write_table(means.reset_index(), outdir / "scores_by_cell_type.tsv")
    long = []
    for column in score_columns:
        values = cell_table.groupby(["cell_type", "condition"], observed=True)[column]
        zmean = values.mean()
        long.append(
            pd.DataFrame(
                {
                    "group": [f"{t} | {c}" for t, c in zmean.index],
                    "score": column,
                    "mean": zmean.to_numpy(),
                    "fraction_positive": values.apply(lambda v: float((v > 0).mean())).to_numpy(),
                }
            )
        )
    long = pd.concat(long, ignore_index=True)
    long["mean_z"] = long.groupby("score")["mean"].transform(
        lambda v: (v - v.mean()) / (v.std() if v.std() > 0 else 1.0)
    )
    io.save_figure(
        plot_bubbles(
            long,
            "score",
            "group",
            "mean_z",
            "fraction_positive",
            "Module scores by cell type and condition",
            "mean (z across groups)",
            "fraction of cells > 0",
        ),
        outdir / "module_scores_bubble.png",
    )
    adata.uns.setdefault("tmeflow", {})["pathways"] = io.provenance("pathways", params)
    io.write_h5ad(adata, outdir / "pathways.h5ad")
    summary["cell_scores"] = score_columns + progeny_columns
    io.write_json(summary, outdir / "pathways_summary.json")
    return summary


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow pathways``."""
    run_pathways(args.input, args.de, args.signatures, args.outdir, params)
