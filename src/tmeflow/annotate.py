"""Cluster markers and automated major cell-type annotation.

Method (sc-best-practices.org "Annotation"; Heumos et al. 2023 Nat Rev Genet):

1. **Cluster markers**: Wilcoxon rank-sum tests of each cluster (``annotation_cluster_key``, default
   the ``leiden`` clusters of ``tmeflow integrate``) against all other cells on the log-normalised
   ``X`` (:func:`scanpy.tl.rank_genes_groups`, Benjamini-Hochberg), on at most 1,000 cells per
   cluster (seeded) so large cohorts stay fast; the top ``n_marker_genes`` per cluster are written
   with log2 fold changes and detection rates, and the top 3 per cluster are drawn as a dotplot.
2. **Major cell types from canonical markers**: the bundled tables
   ``resources/markers/major_<species>.tsv`` (T, NK, B, plasma, monocyte/macrophage, DC,
   neutrophil, mast, epithelial, fibroblast, endothelial, smooth muscle/pericyte, hepatocyte,
   cholangiocyte, erythroid, with sources in ``SOURCE.md``) or a user ``markers`` table. Every cell
   is scored for every type by a univariate linear model (decoupler ``ulm``; Badia-i-Mompel et al.
   2022, Bioinform Adv): the t-value of the slope of the cell's expression over all genes regressed
   on marker membership. The scores are averaged per cluster; the cluster gets the best type, with
   ``annotation_confidence`` = the margin between the best and the second-best cluster mean. A
   cluster whose best score is below ``annotation_min_score`` or whose margin is below
   ``annotation_min_margin`` is ``Unknown``. The ``proliferating`` genes are not a type: a cell with
   a proliferation ULM score above 3 is flagged in ``obs['proliferating']``.
3. **CellTypist** (optional; Domínguez Conde et al. 2022, Science): with a user-supplied model
   file (never downloaded), logistic-regression labels with majority voting over the clusters are
   added as ``obs['celltypist_label']`` / ``celltypist_majority`` / ``celltypist_conf``, next to the
   marker-based call (which stays ``cell_type``).
4. **Overrides**: a table ``cluster -> cell_type`` (optional ``compartment``) replaces the calls of
   the clusters it names.

Writes ``obs['cell_type']``, ``obs['compartment']`` (T/NK, B/plasma, myeloid, neutrophil, mast,
epithelial, fibroblast, endothelial, perivascular, hepatocyte, erythroid, unknown),
``obs['annotation_confidence']``; outputs ``annotated.h5ad``, ``annotation_markers.tsv``,
``annotation_clusters_mqc.tsv``, ``annotation_scores.tsv``, ``annotation_dotplot_mqc.png``,
``annotation_umap_mqc.png``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from . import io
from .errors import TmeflowInputError
from .genes import species_of
from .log import get_logger, timed
from .plotting import pyplot
from .settings import StageSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__name__)

UNKNOWN = "Unknown"
FLAG_TYPES = ("proliferating",)
PROLIFERATING_SCORE = 3.0
MAX_CELLS_PER_CLUSTER_FOR_MARKERS = 1000
MIN_GENES_PER_TYPE = 3


# ----------------------------------------------------------------------------------------------
# Marker tables
# ----------------------------------------------------------------------------------------------
def bundled_markers(kind: str, species: str) -> Path:
    """Locate a bundled marker table.

    Parameters
    ----------
    kind
        ``major`` (cell types) or ``subtypes``.
    species
        ``human`` or ``mouse``.

    Returns
    -------
    pathlib.Path
        ``resources/markers/<kind>_<species>.tsv``.
    """
    return Path(str(resources.files("tmeflow").joinpath("resources", "markers", f"{kind}_{species}.tsv")))


def read_marker_table(path: str | Path, *, type_column: str = "cell_type", required=("gene",)) -> pd.DataFrame:
    """Read a marker table (TSV: ``cell_type``/``cell_type_fine``, ``compartment``, ``gene``[, ``source``]).

    Parameters
    ----------
    path
        The table; a missing file or column is a one-line input error naming it.
    type_column
        Column of the cell-type names.
    required
        Other columns that must be present.

    Returns
    -------
    pandas.DataFrame
        Rows with a type and a gene (names stripped); ``compartment`` defaults to the type.
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("marker table not found", file=path)
    try:
        table = pd.read_csv(path, sep="\t", comment="#", dtype=str)
    except Exception as exc:  # noqa: BLE001
        raise TmeflowInputError(f"cannot read marker table ({exc})", file=path) from exc
    for column in (type_column, *required):
        if column not in table.columns:
            raise TmeflowInputError(
                f"marker table lacks column '{column}' (has: {', '.join(table.columns)})", file=path, column=column
            )
    table = table.dropna(subset=[type_column, "gene"])
    table[type_column] = table[type_column].str.strip()
    table["gene"] = table["gene"].str.strip()
    if "compartment" not in table:
        table["compartment"] = table[type_column]
    table["compartment"] = table["compartment"].fillna(table[type_column])
    return table


def marker_network(
    table: pd.DataFrame,
    genes: pd.Index,
    *,
    type_column: str = "cell_type",
    file=None,
    stage: str = "annotate",
    species: str | None = None,
) -> pd.DataFrame:
    """Build the decoupler network (source, target, weight) of the marker genes present in ``genes``.

    Types with fewer than 3 genes present are dropped (warning); no gene present at all fails, in one line
    naming the stage and the species of the marker table (a species mismatch is the usual cause).

    Parameters
    ----------
    table
        Marker table (:func:`read_marker_table`).
    genes
        Genes of the data.
    type_column
        Column of the cell-type names (the network's ``source``).
    file
        The marker file named in errors (``None``: the bundled table).
    stage
        Stage named in errors.
    species
        Species of the bundled table named in errors.

    Returns
    -------
    pandas.DataFrame
        ``source`` (type), ``target`` (gene), ``weight`` (1.0), one row per type and gene.
    """
    present = table[table["gene"].isin(set(genes))]
    if present.empty:
        which = f"{species} " if species else ""
        raise TmeflowInputError(
            f"{stage}: none of the {table['gene'].nunique()} {which}marker genes is in the data "
            f"(e.g. {', '.join(table['gene'].head(3))}); check the species and gene naming",
            file=file,
        )
    counts = present.groupby(type_column)["gene"].nunique()
    dropped = sorted(
        counts.index[counts < MIN_GENES_PER_TYPE].tolist() + sorted(set(table[type_column]) - set(counts.index))
    )
    if dropped:
        logger.warning(
            "cell types with fewer than %d marker genes in the data are not scored: %s",
            MIN_GENES_PER_TYPE,
            ", ".join(dropped),
        )
    present = present[present[type_column].isin(counts.index[counts >= MIN_GENES_PER_TYPE])]
    if present.empty:
        raise TmeflowInputError(f"no cell type has {MIN_GENES_PER_TYPE} or more marker genes in the data", file=file)
    present = present.drop_duplicates([type_column, "gene"])
    return pd.DataFrame(
        {"source": present[type_column].to_numpy(), "target": present["gene"].to_numpy(), "weight": 1.0}
    )


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def score_column(cell_type: str) -> str:
    """Name the obs column of a type's score (no '/' or spaces, which HDF5 keys cannot hold).

    Parameters
    ----------
    cell_type
        Cell-type name.

    Returns
    -------
    str
        ``score_<type>`` with characters other than letters and digits replaced by ``_``.
    """
    return "score_" + "".join(c if c.isalnum() else "_" for c in cell_type)


def ulm_scores(adata: AnnData, net: pd.DataFrame) -> pd.DataFrame:
    """Score every cell for every cell type by decoupler's univariate linear model (Badia-i-Mompel et al. 2022).

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``.
    net
        Marker network (:func:`marker_network`: ``source`` cell type, ``target`` gene, ``weight``).

    Returns
    -------
    pandas.DataFrame
        Cells x types ULM t-values (0 where a type could not be scored).
    """
    import decoupler as dc

    scored = adata.__class__(
        X=adata.X, obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names)
    )
    dc.mt.ulm(data=scored, net=net, tmin=MIN_GENES_PER_TYPE, verbose=False)
    scores = scored.obsm["score_ulm"]
    if not isinstance(scores, pd.DataFrame):
        scores = pd.DataFrame(np.asarray(scores), index=adata.obs_names, columns=sorted(net["source"].unique()))
    return scores.fillna(0.0)


def call_clusters(
    cell_scores: pd.DataFrame, clusters: pd.Series, *, min_score: float, min_margin: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Call each cluster's cell type from the mean marker scores of its cells.

    Parameters
    ----------
    cell_scores
        Cells x types scores (:func:`ulm_scores`).
    clusters
        Cluster label per cell.
    min_score
        ``annotation_min_score``: a best mean score below it is ``Unknown``.
    min_margin
        ``annotation_min_margin``: a margin (best - second mean score) below it is ``Unknown``.

    Returns
    -------
    tuple of pandas.DataFrame
        ``(calls, means)``: per cluster ``cluster``, ``n_cells``, ``best_type``, ``best_score``, ``second_type``,
        ``second_score``, ``confidence`` (the margin), ``cell_type``, ``call``; and clusters x types mean scores.
    """
    clusters = clusters.astype(str)
    means = cell_scores.groupby(clusters.to_numpy(), observed=True).mean()
    means.index.name = "cluster"
    ordered = np.sort(means.to_numpy(), axis=1)
    best = means.idxmax(axis=1)
    top = ordered[:, -1]
    second = ordered[:, -2] if means.shape[1] > 1 else np.full(len(means), -np.inf)
    margin = top - second
    calls = pd.DataFrame(
        {
            "cluster": means.index,
            "n_cells": clusters.value_counts().reindex(means.index).to_numpy(),
            "best_type": best.to_numpy(),
            "best_score": top,
            "second_type": [
                row.drop(b).idxmax() if len(row) > 1 else "" for (_, row), b in zip(means.iterrows(), best, strict=True)
            ],
            "second_score": second,
            "confidence": margin,
        }
    )
    ambiguous = (calls["best_score"] < min_score) | (calls["confidence"] < min_margin)
    calls["cell_type"] = np.where(ambiguous, UNKNOWN, calls["best_type"])
    calls["call"] = np.where(ambiguous, "unknown (low score or margin)", "markers")
    return calls, means


def read_overrides(path: str | Path, clusters: set[str]) -> pd.DataFrame:
    """Read the cluster override table (columns ``cluster``, ``cell_type`` [, ``compartment``]).

    Parameters
    ----------
    path
        TSV or CSV; a missing file, column or unknown cluster is a one-line input error.
    clusters
        The clusters of the data.

    Returns
    -------
    pandas.DataFrame
        One row per overridden cluster.
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("annotation_overrides file not found", file=path)
    table = pd.read_csv(path, sep=None, engine="python", dtype=str)
    for column in ("cluster", "cell_type"):
        if column not in table.columns:
            raise TmeflowInputError(f"annotation_overrides lacks column '{column}'", file=path, column=column)
    table["cluster"] = table["cluster"].str.strip()
    unknown = sorted(set(table["cluster"]) - clusters)
    if unknown:
        raise TmeflowInputError(
            f"annotation_overrides names cluster(s) not in the data: {', '.join(unknown)}", file=path, column="cluster"
        )
    return table


def run_celltypist(adata: AnnData, model_path: str | Path, cluster_key: str) -> None:
    """Label the cells with a local CellTypist model (Dominguez Conde et al. 2022), majority voting by cluster.

    Parameters
    ----------
    adata
        Cells with log-normalised ``X`` (log1p CP10k, as CellTypist expects).
    model_path
        Local ``.pkl`` model (models are never downloaded).
    cluster_key
        ``obs`` column of the clusters used for majority voting.

    Adds
    ----
    ``obs['celltypist_label']``, ``obs['celltypist_majority']``
        Per-cell prediction and the cluster's majority label.
    ``obs['celltypist_conf']``
        Highest class probability per cell.
    """
    import celltypist

    path = Path(model_path)
    if not path.is_file():
        raise TmeflowInputError(
            "celltypist_model file not found (models are never downloaded; give a local .pkl)", file=path
        )
    try:
        model = celltypist.models.Model.load(model=str(path))
    except Exception as exc:  # noqa: BLE001
        raise TmeflowInputError(f"cannot load the CellTypist model ({type(exc).__name__})", file=path) from exc
    shared = len(set(model.features) & set(adata.var_names))
    if shared == 0:
        raise TmeflowInputError("the CellTypist model shares no gene with the data", file=path)
    data = adata.__class__(
        X=adata.X, obs=adata.obs[[cluster_key]].astype(str).copy(), var=pd.DataFrame(index=adata.var_names)
    )
    prediction = celltypist.annotate(data, model=model, majority_voting=True, over_clustering=cluster_key)
    labels = prediction.predicted_labels
    adata.obs["celltypist_label"] = pd.Categorical(labels["predicted_labels"].astype(str).to_numpy())
    adata.obs["celltypist_majority"] = pd.Categorical(labels["majority_voting"].astype(str).to_numpy())
    conf = prediction.probability_matrix.max(axis=1)
    adata.obs["celltypist_conf"] = conf.to_numpy()
    logger.info(
        "CellTypist (%s, %d of its genes in the data): %d labels",
        path.name,
        shared,
        labels["majority_voting"].nunique(),
    )


def find_markers(adata: AnnData, cluster_key: str, n_genes: int, seed: int) -> pd.DataFrame:
    """Find marker genes per cluster by scanpy's Wilcoxon test, on at most 1,000 cells per cluster (seeded).

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``.
    cluster_key
        ``obs`` column of the clusters.
    n_genes
        ``n_marker_genes`` kept per cluster (positive log fold change only).
    seed
        Seed of the per-cluster subsample.

    Returns
    -------
    pandas.DataFrame
        ``cluster``, ``gene``, ``score``, ``logfoldchange``, ``pval``, ``pval_adj``, ``pct_in``, ``pct_out``; best
        first within each cluster.
    """
    import scanpy as sc

    rng = np.random.default_rng(seed)
    codes = adata.obs[cluster_key].astype(str).to_numpy()
    keep = []
    for cluster in np.unique(codes):
        members = np.flatnonzero(codes == cluster)
        if len(members) > MAX_CELLS_PER_CLUSTER_FOR_MARKERS:
            members = rng.choice(members, MAX_CELLS_PER_CLUSTER_FOR_MARKERS, replace=False)
        keep.append(members)
    sub = adata[np.sort(np.concatenate(keep))]
    sub = sub.__class__(
        X=sub.X,
        obs=pd.DataFrame({cluster_key: pd.Categorical(sub.obs[cluster_key].astype(str))}, index=sub.obs_names),
        var=pd.DataFrame(index=sub.var_names),
    )
    groups = sub.obs[cluster_key].value_counts()
    testable = groups.index[groups >= 2].tolist()
    if len(testable) < 2:
        return pd.DataFrame(
            columns=["cluster", "gene", "score", "logfoldchange", "pval", "pval_adj", "pct_in", "pct_out"]
        )
    sc.tl.rank_genes_groups(sub, cluster_key, groups=testable, method="wilcoxon", use_raw=False, pts=True)
    table = sc.get.rank_genes_groups_df(sub, group=None)
    if "group" not in table:
        table.insert(0, "group", testable[0])
    table = table.rename(
        columns={
            "group": "cluster",
            "names": "gene",
            "scores": "score",
            "logfoldchanges": "logfoldchange",
            "pvals": "pval",
            "pvals_adj": "pval_adj",
            "pct_nz_group": "pct_in",
            "pct_nz_reference": "pct_out",
        }
    )
    table = table[table["logfoldchange"] > 0]
    return table.groupby("cluster", observed=True, sort=False).head(n_genes).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Stage
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class AnnotationSettings(StageSettings):
    """The ``annotation_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("annotation_options",)

    markers: str | None
    celltypist_model: str | None
    annotation_overrides: str | None
    annotation_cluster_key: str
    annotation_min_score: float
    annotation_min_margin: float
    n_marker_genes: int
    seed: int


def annotate(adata: AnnData, settings: AnnotationSettings) -> dict[str, pd.DataFrame]:
    """Annotate the clusters: marker scores and calls, optional CellTypist, overrides and marker genes.

    Parameters
    ----------
    adata
        Integrated cells (log-normalised ``X``; ``obs[annotation_cluster_key]``).
    settings
        ``AnnotationSettings.from_params(params)``, or ``AnnotationSettings.defaults()``.

    Returns
    -------
    dict
        ``calls`` (:func:`call_clusters`, with ``compartment`` and optional ``celltypist`` and
        ``pct_proliferating``), ``scores`` (cluster mean scores), ``markers`` (:func:`find_markers` with
        ``cell_type``) and ``net`` (the marker network).

    Adds
    ----
    ``obs['cell_type']``, ``obs['compartment']``
        The cluster's call (categorical).
    ``obs['annotation_confidence']``
        The cluster's margin between the best and second-best type score.
    ``obs['score_<type>']``
        Per-cell ULM score of every type (:func:`score_column`).
    ``obs['proliferating']``
        Cells above ``PROLIFERATING_SCORE`` on the proliferation markers (when the marker table has them).
    ``obs['celltypist_*']``
        With ``celltypist_model`` (:func:`run_celltypist`).
    """
    cluster_key = settings.annotation_cluster_key
    if cluster_key not in adata.obs:
        raise TmeflowInputError(
            f"annotation_cluster_key '{cluster_key}' is not an obs column (run tmeflow integrate first)",
            column=cluster_key,
        )
    clusters = adata.obs[cluster_key].astype(str)
    overrides = read_overrides(settings.annotation_overrides, set(clusters)) if settings.annotation_overrides else None
    species = species_of(adata)
    marker_file = settings.markers or bundled_markers("major", species)
    table = read_marker_table(marker_file)
    flags = table[table["cell_type"].isin(FLAG_TYPES)]
    types = table[~table["cell_type"].isin(FLAG_TYPES)]
    net = marker_network(types, adata.var_names, file=settings.markers, species=None if settings.markers else species)
    compartments = types.drop_duplicates("cell_type").set_index("cell_type")["compartment"].to_dict()

    with timed(logger, f"scoring {net['source'].nunique()} cell types ({species} markers) in {adata.n_obs} cells"):
        scores = ulm_scores(adata, net)
    calls, means = call_clusters(
        scores, clusters, min_score=settings.annotation_min_score, min_margin=settings.annotation_min_margin
    )
    if not flags.empty and flags["gene"].isin(set(adata.var_names)).sum() >= MIN_GENES_PER_TYPE:
        flag_scores = ulm_scores(adata, marker_network(flags, adata.var_names))
        adata.obs["proliferating"] = (flag_scores.iloc[:, 0] > PROLIFERATING_SCORE).to_numpy()
        calls["pct_proliferating"] = (
            100
            * adata.obs["proliferating"]
            .groupby(clusters.to_numpy(), observed=True)
            .mean()
            .reindex(calls["cluster"])
            .to_numpy()
        )
    for column in scores.columns:
        adata.obs[score_column(column)] = scores[column].to_numpy(dtype=np.float32)

    if settings.celltypist_model:
        with timed(logger, "CellTypist"):
            run_celltypist(adata, settings.celltypist_model, cluster_key)
        majority = (
            adata.obs["celltypist_majority"]
            .astype(str)
            .groupby(clusters.to_numpy(), observed=True)
            .agg(lambda s: s.value_counts().index[0])
        )
        calls["celltypist"] = majority.reindex(calls["cluster"]).to_numpy()

    calls["compartment"] = [compartments.get(t, "unknown") for t in calls["cell_type"]]
    if overrides is not None:
        for row in overrides.itertuples():
            mask = calls["cluster"] == row.cluster
            calls.loc[mask, "cell_type"] = row.cell_type
            compartment = getattr(row, "compartment", None)
            calls.loc[mask, "compartment"] = (
                compartment
                if isinstance(compartment, str) and compartment
                else compartments.get(row.cell_type, "other")
            )
            calls.loc[mask, "call"] = "override"
        logger.info("overrides applied to %d clusters", len(overrides))

    by_cluster = calls.set_index("cluster")
    adata.obs["cell_type"] = pd.Categorical(clusters.map(by_cluster["cell_type"]).to_numpy())
    adata.obs["compartment"] = pd.Categorical(clusters.map(by_cluster["compartment"]).to_numpy())
    adata.obs["annotation_confidence"] = clusters.map(by_cluster["confidence"]).to_numpy(dtype=np.float32)

    with timed(logger, f"Wilcoxon markers of {clusters.nunique()} clusters"):
        markers = find_markers(adata, cluster_key, settings.n_marker_genes, settings.seed)
    markers.insert(1, "cell_type", markers["cluster"].astype(str).map(by_cluster["cell_type"]).to_numpy())
    for row in calls.itertuples():
        logger.info(
            "cluster %s (%d cells): %s (best %s %.2f, second %s %.2f)",
            row.cluster,
            row.n_cells,
            row.cell_type,
            row.best_type,
            row.best_score,
            row.second_type,
            row.second_score,
        )
    return {"calls": calls, "scores": means.reset_index(), "markers": markers, "net": net}


def plot_dotplot(adata: AnnData, markers: pd.DataFrame, cluster_key: str) -> Figure:
    """Draw the top marker genes of every cluster as a scanpy dot plot.

    Parameters
    ----------
    adata
        Annotated cells (log-normalised ``X``; ``obs[cluster_key]`` and ``obs['cell_type']``).
    markers
        :func:`find_markers` table (``cluster``, ``gene``, best first within each cluster); the top 3 genes per
        cluster are drawn, at most 120 genes (the first 5 genes of ``adata`` when ``markers`` is empty).
    cluster_key
        ``obs`` column of the clusters; the rows are labelled ``<cluster>: <cell type>``.

    Returns
    -------
    Figure
        Dot plot (mean expression scaled per gene, fraction of cells expressing); the caller saves it.
    """
    pyplot()  # scanpy draws with the Agg backend
    import scanpy as sc

    top = markers.groupby("cluster", observed=True, sort=False).head(3)
    genes = list(dict.fromkeys(top["gene"]))[:120] or list(adata.var_names[:5])
    labels = adata.obs[cluster_key].astype(str) + ": " + adata.obs["cell_type"].astype(str)
    order = sorted(labels.unique(), key=lambda x: (len(x.split(":")[0]), x))
    view = adata.__class__(
        X=adata[:, genes].X,
        obs=pd.DataFrame({"cluster": pd.Categorical(labels, categories=order)}, index=adata.obs_names),
        var=pd.DataFrame(index=genes),
    )
    dot = sc.pl.dotplot(view, genes, groupby="cluster", return_fig=True, show=False, standard_scale="var")
    dot.make_figure()
    return dot.fig if hasattr(dot, "fig") else dot.get_axes()["mainplot_ax"].figure


#: cells scored by the label-conservation metrics (seeded subsample), as ``metrics_max_cells`` at integration
LABEL_METRICS_MAX_CELLS = 20000


def label_conservation(adata: AnnData, seed: int) -> pd.DataFrame:
    """Recompute the integration metrics now that cells have labels (``cell_type``).

    On the uncorrected PCs and the batch-corrected embedding (``uns['integration']``): at integration time there were no
    labels, so cLISI and label ASW were NaN and over-correction (cell types merged by the batch correction) could not be
    seen. A drop of cLISI / label ASW from ``uncorrected`` to the corrected embedding is that over-correction. Same
    definitions and subsample rule as :func:`tmeflow.integrate.metrics_table`.

    Parameters
    ----------
    adata
        Annotated cells (``obs['cell_type']``, ``obsm`` embeddings, ``uns['integration']``).
    seed
        Seed of the metrics' cell subsample.

    Returns
    -------
    pandas.DataFrame
        One row per embedding (``uncorrected`` and the corrected one): the scIB metrics with labels.
    """
    from .integrate import metrics_table

    info = adata.uns.get("integration", {})
    rep = str(info.get("use_rep", "X_pca"))
    embeddings = {}
    if "X_pca" in adata.obsm:
        n_pcs = int(info.get("n_pcs", adata.obsm["X_pca"].shape[1]))
        embeddings["uncorrected"] = np.asarray(adata.obsm["X_pca"])[:, :n_pcs]
    if rep != "X_pca" and rep in adata.obsm:
        embeddings[str(info.get("method", rep))] = np.asarray(adata.obsm[rep])
    if not embeddings or "cell_type" not in adata.obs:
        return pd.DataFrame(columns=["Embedding"])
    table = metrics_table(adata, embeddings, "cell_type", max_cells=LABEL_METRICS_MAX_CELLS, seed=seed)
    return table


def write_outputs(adata: AnnData, results: dict[str, pd.DataFrame], outdir: Path, params: dict[str, Any]) -> Path:
    """Write the annotation tables, figures (saved here) and ``annotated.h5ad``."""
    from .integrate import plot_umaps

    cluster_key = params["annotation_cluster_key"]
    header = io.multiqc_header(
        "tmeflow_annotation",
        "Cluster annotation",
        "Major cell type per cluster from canonical markers (decoupler ULM); confidence = margin "
        "between the best and second-best type score.",
        "table",
    )
    calls = results["calls"].copy()
    calls.insert(0, "Cluster", "cluster " + calls.pop("cluster").astype(str))
    io.write_table(calls, outdir / "annotation_clusters_mqc.tsv", header_lines=header)
    io.write_table(results["scores"], outdir / "annotation_scores.tsv")
    io.write_table(results["markers"], outdir / "annotation_markers.tsv")
    conservation = label_conservation(adata, int(params.get("seed", 0)))
    io.write_table(
        conservation,
        outdir / "annotation_integration_metrics_mqc.tsv",
        header_lines=io.multiqc_header(
            "tmeflow_annotation_integration_metrics",
            "Integration metrics with cell types",
            "The integration metrics recomputed after annotation with cell_type labels, before (uncorrected) and after "
            "batch correction: a drop of cLISI or label ASW after correction means cell types were merged "
            "(over-correction). scIB definitions; higher is better.",
            "table",
        ),
    )
    if len(results["markers"]):
        io.save_figure(plot_dotplot(adata, results["markers"], cluster_key), outdir / "annotation_dotplot_mqc.png")
    if "X_umap" in adata.obsm:
        keys = ["cell_type", "compartment", cluster_key] + (
            ["celltypist_majority"] if "celltypist_majority" in adata.obs else []
        )
        io.save_figure(plot_umaps(adata, "X_umap", keys, "Annotation"), outdir / "annotation_umap_mqc.png")
    adata.uns.setdefault("tmeflow", {})["annotate"] = io.provenance("annotate", params)
    return io.write_h5ad(adata, outdir / "annotated.h5ad")


def run_annotate(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> Path:
    """Annotate ``input_path`` (integrated h5ad) into ``outdir/annotated.h5ad`` (+ tables, figures)."""
    start = time.perf_counter()
    input_path, outdir = Path(input_path), Path(outdir)
    for key in ("markers", "celltypist_model", "annotation_overrides"):
        if params.get(key) and not Path(params[key]).is_file():
            raise TmeflowInputError(f"{key} file not found", file=params[key])
    adata = io.read_h5ad(input_path)
    results = annotate(adata, AnnotationSettings.from_params(params))
    path = write_outputs(adata, results, outdir, params)
    counts = adata.obs["cell_type"].value_counts()
    logger.info(
        "annotated %d cells in %d clusters: %s (%.1f s)",
        adata.n_obs,
        len(results["calls"]),
        ", ".join(f"{k} {v}" for k, v in counts.items()),
        time.perf_counter() - start,
    )
    return path


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow annotate``."""
    run_annotate(args.input, args.outdir, params)
