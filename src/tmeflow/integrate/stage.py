"""The integrate stage: run everything after concatenation, write the outputs, and the CLI entry."""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .. import io
from ..errors import TmeflowInputError
from ..log import get_logger, timed
from .correction import correct
from .graph import graph_and_umap, leiden, uncorrected_umap
from .inputs import check_inputs, concatenate, inspect_inputs
from .preprocess import hvg_table, lognormalise, pca, row_blocks
from .quality import label_key, metrics_table, plot_umaps
from .settings import BLOCK_CELLS, METRIC_COLUMNS, PLOT_KEYS, IntegrationSettings

logger = get_logger(__name__)


class Integration(NamedTuple):
    """What :func:`integrate` returns."""

    cells: AnnData
    """The cells on their HVGs, with every embedding, graph, cluster and record of the stage."""
    genes: pd.DataFrame
    """Every gene with its HVG statistics (``highly_variable`` ...)."""
    metrics: pd.DataFrame
    """The integration metrics (:func:`~tmeflow.integrate.metrics_table`)."""


def _embedding(adata, rep: str, n_pcs: int) -> np.ndarray:
    return adata.obsm[rep][:, :n_pcs] if rep == "X_pca" else adata.obsm[rep]


def _hvg_cells(counts, obs: pd.DataFrame, genes: pd.DataFrame, flavor: str, *, keep_counts: bool) -> AnnData:
    """Return the cells on their HVGs, log-normalised over all genes (:func:`lognormalise`), built in row blocks.

    ``layers['counts']`` holds the HVG counts with ``keep_counts`` (scVI trains on them).
    """
    hvg = genes["highly_variable"].to_numpy()
    logged, raw = [], []
    for _, block in row_blocks(counts, BLOCK_CELLS):
        logged.append(lognormalise(block)[:, hvg])
        if keep_counts:
            raw.append(block[:, hvg])
    cells = AnnData(X=sp.vstack(logged, format="csr"), obs=obs.copy(), var=genes.loc[hvg].copy())
    if keep_counts:
        cells.layers["counts"] = sp.vstack(raw, format="csr")
    cells.uns["hvg"], cells.uns["log1p"] = {"flavor": flavor}, {"base": None}
    return cells


def integrate(counts, obs: pd.DataFrame, var: pd.DataFrame, settings: IntegrationSettings) -> Integration:
    """Run everything after concatenation: HVGs, normalisation, PCA, batch correction, graph, Leiden, UMAP, metrics.

    The counts are only read in row blocks of ``BLOCK_CELLS`` cells (twice for the HVG selection, once for the HVGs'
    log-normalised matrix); everything after the HVG selection works on the HVGs, and the log-normalised matrix of
    every gene is never made (:func:`write_integrated` writes it block by block).

    Parameters
    ----------
    counts
        Raw counts of the concatenated cohort, cells x genes: a CSR matrix or an h5ad's backed CSR dataset
        (:func:`anndata.io.sparse_dataset`); read only.
    obs
        The cells (``batch_key`` ...).
    var
        The genes.
    settings
        ``IntegrationSettings.from_params(params)``, or ``IntegrationSettings.defaults()``.

    Returns
    -------
    Integration
        ``cells``: the cells x HVGs with log-normalised ``X`` (``layers['counts']`` with scVI), ``obsm['X_pca']``,
        ``varm['PCs']``, ``obsm['X_pca_harmony']`` / ``obsm['X_scVI']``, ``obsm['X_umap_uncorrected']`` (with
        correction), ``obsp['connectivities']``, ``obsp['distances']``, ``obsm['X_umap']``, ``obs['leiden']``,
        ``uns['integration']`` (``use_rep, batch_key, method, label_key, n_pcs``) and scanpy's records in ``uns``;
        ``genes``: every gene's HVG statistics; ``metrics``: :func:`metrics_table`.
    """
    batch_key, n_pcs, seed = settings.batch_key, settings.n_pcs, settings.seed
    with timed(logger, f"selecting {settings.n_top_genes} HVGs ({counts.shape[0]} cells x {counts.shape[1]} genes)"):
        genes, flavor = hvg_table(counts, obs, var.index, settings.n_top_genes, batch_key)
    with timed(logger, "log-normalising the HVGs (counts per 10,000, log1p)"):
        adata = _hvg_cells(counts, obs, genes, flavor, keep_counts=settings.batch_correction == "scvi")
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
    return Integration(adata, genes, table)


def write_integrated(path: Path, cells: AnnData, genes: pd.DataFrame) -> None:
    """Turn the concatenated counts at ``path`` (:func:`concatenate`) into the integrated h5ad, block by block.

    The counts move to ``layers['counts']``; ``X`` becomes their log1p(counts per 10,000), written in row blocks
    (one block in memory); obs, var (``genes``), the embeddings, graphs, loadings (0 for non-HVGs) and records of
    ``cells`` are added.
    """
    import anndata as ad
    import h5py

    hvg = genes["highly_variable"].to_numpy()
    loadings = np.zeros((len(genes), cells.varm["PCs"].shape[1]), dtype=np.float32)
    loadings[hvg] = cells.varm["PCs"]
    with h5py.File(path, "r+") as handle:
        ad.io.write_elem(handle, "layers", {})
        handle.move("X", "layers/counts")
        counts = ad.io.sparse_dataset(handle["layers/counts"])
        io.write_csr_blocks(handle, "X", (lognormalise(block) for _, block in row_blocks(counts, BLOCK_CELLS)))
        io.write_h5ad_elements(handle, obs=cells.obs, var=genes, obsm=dict(cells.obsm), obsp=dict(cells.obsp),
                               varm={"PCs": loadings}, uns=dict(cells.uns))  # fmt: skip


def write_outputs(adata: AnnData, table: pd.DataFrame, outdir: Path, params: dict[str, Any]) -> None:
    """Write the metrics and cluster tables and the before/after UMAPs; record the provenance in ``adata.uns``."""
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
    n_cells = sum(info["n_obs"] for info in infos)
    with io.atomic_path(outdir / "integrated.h5ad") as h5ad:
        with timed(logger, f"concatenating {len(infos)} samples ({n_cells} cells) on {len(genes)} shared genes"):
            concatenate(infos, genes, h5ad)
        adata, gene_table, table = _integrate_file(h5ad, settings)
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
        write_outputs(adata, table, outdir, params)
        with timed(logger, "writing integrated.h5ad (log-normalised X in row blocks)"):
            write_integrated(h5ad, adata, gene_table)
    logger.info("integrated %d cells from %d samples into %d clusters in %.1f s", adata.n_obs, len(infos),
                adata.obs["leiden"].nunique(), time.perf_counter() - start)  # fmt: skip
    return outdir / "integrated.h5ad"


def _integrate_file(h5ad: Path, settings: IntegrationSettings) -> Integration:
    """Run :func:`integrate` on the counts of the concatenated h5ad, read from disk in row blocks."""
    import anndata as ad
    import h5py

    with h5py.File(h5ad, "r") as handle:
        obs, var = ad.io.read_elem(handle["obs"]), ad.io.read_elem(handle["var"])
        return integrate(ad.io.sparse_dataset(handle["X"]), obs, var, settings)


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Run ``tmeflow integrate``."""
    run_integrate(args.input, args.outdir, params)
