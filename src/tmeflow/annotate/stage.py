"""The annotate stage: settings, the annotation of the clusters, figures and outputs (``tmeflow annotate``)."""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import io
from ..errors import TmeflowInputError
from ..genes import species_of
from ..log import get_logger, timed
from ..plotting import pyplot
from ..settings import StageSettings
from .calls import call_clusters, read_overrides, run_celltypist, score_column, ulm_scores
from .markers import (
    FLAG_TYPES,
    MIN_GENES_PER_TYPE,
    PROLIFERATING_SCORE,
    bundled_markers,
    find_markers,
    marker_cells,
    marker_network,
    read_marker_table,
)

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__name__)


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
        Annotated cells in memory, the markers' subsample (:func:`marker_cells`; log-normalised ``X``,
        ``obs[cluster_key]`` and ``obs['cell_type']``): a cluster's mean expression and detection rate are the
        subsample's.
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
    from ..integrate import metrics_table

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


def write_outputs(
    adata: AnnData, results: dict[str, pd.DataFrame], outdir: Path, params: dict[str, Any], source: Path
) -> Path:
    """Write the annotation tables, figures (saved here) and ``annotated.h5ad`` (``source`` with the new obs)."""
    from ..integrate import plot_umaps

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
    seed = int(params.get("seed", 0))
    conservation = label_conservation(adata, seed)
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
        io.save_figure(
            plot_dotplot(marker_cells(adata, cluster_key, seed), results["markers"], cluster_key),
            outdir / "annotation_dotplot_mqc.png",
        )
    if "X_umap" in adata.obsm:
        keys = ["cell_type", "compartment", cluster_key] + (
            ["celltypist_majority"] if "celltypist_majority" in adata.obs else []
        )
        io.save_figure(plot_umaps(adata, "X_umap", keys, "Annotation"), outdir / "annotation_umap_mqc.png")
    adata.uns.setdefault("tmeflow", {})["annotate"] = io.provenance("annotate", params)
    with timed(logger, "writing annotated.h5ad"):
        return io.write_h5ad_copy(source, outdir / "annotated.h5ad", obs=adata.obs, uns=adata.uns)


def run_annotate(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> Path:
    """Annotate ``input_path`` (integrated h5ad) into ``outdir/annotated.h5ad`` (+ tables, figures)."""
    start = time.perf_counter()
    input_path, outdir = Path(input_path), Path(outdir)
    for key in ("markers", "celltypist_model", "annotation_overrides"):
        if params.get(key) and not Path(params[key]).is_file():
            raise TmeflowInputError(f"{key} file not found", file=params[key])
    with io.h5ad_on_disk(input_path, "integrated h5ad") as adata:  # X is read in row blocks and subsamples
        results = annotate(adata, AnnotationSettings.from_params(params))
        path = write_outputs(adata, results, outdir, params, input_path)
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
