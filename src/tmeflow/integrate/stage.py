"""The integrate stage: run everything after concatenation, write the outputs, and the CLI entry."""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import io
from ..errors import TmeflowInputError
from ..log import get_logger, timed
from .correction import correct
from .graph import graph_and_umap, leiden, uncorrected_umap
from .inputs import check_inputs, concatenate, inspect_inputs
from .preprocess import normalise, pca, select_hvgs
from .quality import label_key, metrics_table, plot_umaps
from .settings import METRIC_COLUMNS, PLOT_KEYS, IntegrationSettings

logger = get_logger(__name__)


def _embedding(adata, rep: str, n_pcs: int) -> np.ndarray:
    return adata.obsm[rep][:, :n_pcs] if rep == "X_pca" else adata.obsm[rep]


def integrate(adata: AnnData, settings: IntegrationSettings) -> tuple[AnnData, pd.DataFrame]:
    """Run everything after concatenation: normalise, HVGs, PCA, batch correction, graph, Leiden, UMAP and metrics.

    Parameters
    ----------
    adata
        The concatenated cohort with raw counts in ``X`` (:func:`concatenate`).
    settings
        ``IntegrationSettings.from_params(params)``, or ``IntegrationSettings.defaults()``.

    Returns
    -------
    tuple
        ``(adata, metrics table)`` (the same AnnData, changed in place).

    Adds
    ----
    ``layers['counts']``, ``X`` (log-normalised), ``var['highly_variable']``, ``obsm['X_pca']``, ``varm['PCs']``
        :func:`normalise`, :func:`select_hvgs`, :func:`pca`.
    ``obsm['X_pca_harmony']`` / ``obsm['X_scVI']``, ``obsm['X_umap_uncorrected']``
        The corrected embedding and the uncorrected UMAP (with correction).
    ``obsp['connectivities']``, ``obsp['distances']``, ``obsm['X_umap']``, ``obs['leiden']``
        Graph, UMAP and clusters on the corrected embedding.
    ``uns['integration']``
        ``use_rep, batch_key, method, label_key, n_pcs``.
    """
    batch_key, n_pcs, seed = settings.batch_key, settings.n_pcs, settings.seed
    with timed(
        logger, f"normalising and selecting {settings.n_top_genes} HVGs ({adata.n_obs} cells x {adata.n_vars} genes)"
    ):
        normalise(adata)
        select_hvgs(adata, settings.n_top_genes, batch_key)
    mito = ", % mito regressed" if settings.regress_mito else ""
    with timed(logger, f"sparse PCA ({settings.pca_comps} components{mito})"):
        pca(adata, n_comps=settings.pca_comps, regress_mito=settings.regress_mito, seed=seed)
    rep = correct(adata, settings)
    corrected = rep != "X_pca"
    if corrected:
        with timed(logger, f"neighbours and UMAP of the uncorrected PCs (at most {settings.metrics_max_cells} cells)"):
            uncorrected_umap(adata, settings)
    with timed(logger, f"neighbours, UMAP and Leiden (resolution {settings.leiden_resolution}) on {rep}"):
        graph_and_umap(adata, rep, n_neighbors=settings.n_neighbors, n_pcs=n_pcs, seed=seed)
        leiden(adata, settings.leiden_resolution, seed)
    logger.info("%d Leiden clusters", adata.obs["leiden"].nunique())
    labels = label_key(adata, settings.metrics_label_key)
    embeddings = {"uncorrected": _embedding(adata, "X_pca", n_pcs)}
    if corrected:
        embeddings[settings.batch_correction] = _embedding(adata, rep, n_pcs)
    with timed(logger, f"integration metrics (labels: {labels or 'none'})"):
        table = metrics_table(adata, embeddings, labels, max_cells=settings.metrics_max_cells, seed=seed)
    adata.uns["integration"] = {
        "use_rep": rep,
        "batch_key": batch_key,
        "method": settings.batch_correction if corrected else "none",
        "label_key": labels or "",
        "n_pcs": int(n_pcs),
    }
    return adata, table


def write_outputs(adata, table: pd.DataFrame, outdir: Path, params: dict[str, Any]) -> Path:
    """Write the integrated AnnData, the metrics and cluster tables and the before/after UMAPs."""
    header = io.multiqc_header(
        "tmeflow_integration_metrics",
        "Integration metrics",
        "Batch mixing (kBET acceptance, iLISI, batch ASW, graph connectivity) and label conservation (cLISI, "
        "label ASW) before and after batch correction, scIB definitions (Luecken et al. 2022); higher is better.",
        "table",
    )
    if len(table):
        io.write_table(table, outdir / "integration_metrics_mqc.tsv", header_lines=header)
    else:
        io.write_table(pd.DataFrame(columns=["Embedding"]), outdir / "integration_metrics_mqc.tsv", header_lines=header)
    clusters = pd.crosstab(adata.obs["leiden"], adata.obs["sample"])
    io.write_table(clusters, outdir / "integration_clusters.tsv", index=True)
    keys = [k for k in PLOT_KEYS if k in adata.obs]
    label = adata.uns["integration"]["label_key"]
    if "X_umap_uncorrected" in adata.obsm:
        io.save_figure(
            plot_umaps(adata, "X_umap_uncorrected", keys + ([label] if label else []), "Uncorrected PCs"),
            outdir / "integration_umap_uncorrected_mqc.png",
        )
        title = f"After {adata.uns['integration']['method']} ({adata.uns['integration']['batch_key']})"
    else:
        adata.obsm["X_umap_uncorrected"] = adata.obsm["X_umap"].copy()
        io.save_figure(
            plot_umaps(adata, "X_umap", keys + ([label] if label else []), "Uncorrected PCs (no batch correction)"),
            outdir / "integration_umap_uncorrected_mqc.png",
        )
        title = "No batch correction"
    io.save_figure(
        plot_umaps(adata, "X_umap", keys + ([label] if label else []) + ["leiden"], title),
        outdir / "integration_umap_corrected_mqc.png",
    )
    adata.uns.setdefault("tmeflow", {})["integrate"] = {
        **io.provenance("integrate", params),
        "metrics": {str(row["Embedding"]): {k: float(row[k]) for k in METRIC_COLUMNS} for _, row in table.iterrows()},
    }
    return io.write_h5ad(adata, outdir / "integrated.h5ad")


def run_integrate(inputs: list[str | Path], outdir: str | Path, params: dict[str, Any]) -> Path:
    """Integrate the QC'd samples ``inputs`` into ``outdir/integrated.h5ad`` (+ metrics, figures)."""
    start = time.perf_counter()
    outdir = Path(outdir)
    paths = [Path(p) for p in inputs]
    if not paths:
        raise TmeflowInputError("no input h5ad given")
    infos = inspect_inputs(paths)
    settings = IntegrationSettings.from_params(params)
    genes = check_inputs(infos, batch_key=settings.batch_key, min_shared_genes=settings.min_shared_genes)
    outdir.mkdir(parents=True, exist_ok=True)
    with timed(
        logger,
        f"concatenating {len(infos)} samples ({sum(i['n_obs'] for i in infos)} cells) on {len(genes)} shared genes",
    ):
        with tempfile.TemporaryDirectory(prefix=".integrate.", dir=outdir) as workdir:
            adata = concatenate(infos, genes, Path(workdir))
    adata, table = integrate(adata, settings)
    for row in table.itertuples():
        logger.info(
            "%s: kBET %.3f iLISI %.3f batchASW %.3f graph %.3f cLISI %.3f labelASW %.3f",
            row.Embedding,
            row.kbet_acceptance,
            row.ilisi,
            row.batch_asw,
            row.graph_connectivity,
            row.clisi,
            row.label_asw,
        )
    path = write_outputs(adata, table, outdir, params)
    logger.info("integrated %d cells from %d samples into %d clusters in %.1f s", adata.n_obs, len(infos),
                adata.obs["leiden"].nunique(), time.perf_counter() - start)  # fmt: skip
    return path


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Run ``tmeflow integrate``."""
    run_integrate(args.input, args.outdir, params)
