"""Re-clustering of each compartment and fine subtype annotation.

Method (sc-best-practices.org "Annotation"; the compartment-wise re-analysis of Zheng et al. 2021
(T cells), Cheng et al. 2021 (myeloid cells), Xue et al. 2022 (neutrophils) and Wu et al. 2021
(breast cancer stroma)):

For each compartment written by ``tmeflow annotate`` that has a bundled subtype marker set
(``epithelial``, ``T/NK``, ``myeloid``, ``neutrophil``, ``fibroblast``, ``endothelial``, ``B/plasma``)
and at least ``subcluster_min_cells`` cells:

1. keep the genes detected in any of its cells and re-normalise its raw counts (CP10k + log1p),
   so that genes of other compartments do not drive it;
2. ``seurat_v3`` HVGs on the counts (``subcluster_n_top_genes``, batch-aware);
3. sparse PCA with implicit centring/scaling (as :func:`tmeflow.integrate.sparse_pca`; 30 PCs);
4. Harmony (Korsunsky et al. 2019) on the batch key used by ``tmeflow integrate`` when the
   compartment spans more than one batch;
5. kNN graph, Leiden (Traag et al. 2019; ``subcluster_resolution``), UMAP;
6. Wilcoxon markers per subcluster (as in ``tmeflow annotate``);
7. fine subtypes from ``resources/markers/subtypes_<species>.tsv`` (or ``subtype_markers``): per-cell
   decoupler ULM scores (Badia-i-Mompel et al. 2022) of the compartment's subtypes, averaged per
   subcluster; the best subtype wins unless its mean score is below 0.5 or its margin over the
   second is below 0.1, in which case the subcluster keeps its major type.

Compartments with fewer cells, or without a subtype set, keep ``cell_type_fine = cell_type``.
Writes ``obs['subcluster']`` (``<compartment>:<cluster>``), ``obs['cell_type_fine']`` and
``obsm['X_umap_subcluster']`` (per-compartment UMAP, NaN elsewhere); outputs ``subclustered.h5ad``,
``subcluster_calls_mqc.tsv``, ``subcluster_markers.tsv``, ``subcluster_counts.tsv`` and one
``subcluster_umap_<compartment>.png`` per re-clustered compartment.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from . import io
from .annotate import (
    bundled_markers,
    call_clusters,
    find_markers,
    marker_network,
    read_marker_table,
    ulm_scores,
)
from .errors import TmeflowInputError
from .genes import species_of
from .log import get_logger, timed
from .settings import StageSettings

logger = get_logger(__name__)

SUBTYPE_MIN_SCORE = 0.5
SUBTYPE_MIN_MARGIN = 0.1
N_PCS = 30
N_NEIGHBORS = 15
N_MARKERS = 25
MIN_CELLS_PER_GENE = 1


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in name)


@dataclass(frozen=True)
class SubclusterSettings(StageSettings):
    """The ``subcluster_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("subcluster_options",)

    subtype_markers: str | None
    subcluster_min_cells: int
    subcluster_n_top_genes: int
    subcluster_resolution: float
    seed: int


def recluster(sub: AnnData, batch_key: str | None, *, n_top_genes: int, resolution: float, seed: int) -> None:
    """Re-cluster one compartment in place: normalise, HVGs, sparse PCA, Harmony, graph, Leiden and UMAP.

    The steps of :mod:`tmeflow.integrate` on the compartment's own genes (``N_PCS`` PCs, ``N_NEIGHBORS`` neighbours;
    Harmony, Korsunsky et al. 2019, only when ``batch_key`` has more than one level in the compartment).

    Parameters
    ----------
    sub
        The compartment's cells with raw counts in ``layers['counts']``.
    batch_key
        Obs column of the batches; None: no correction.
    n_top_genes
        HVGs of the compartment (``subcluster_n_top_genes``).
    resolution
        Leiden resolution (``subcluster_resolution``).
    seed
        Random state of PCA, Harmony, graph, Leiden and UMAP.

    Adds
    ----
    ``X``, ``var['highly_variable']``
        log1p(CP10k) of the counts and the compartment's HVGs (``layers['counts']`` is removed).
    ``obsm['X_pca']``, ``obsm['X_pca_harmony']``
        PCs (and corrected PCs with a batch key).
    ``obsp['connectivities']``, ``obsp['distances']``, ``obsm['X_umap']``
        Graph and UMAP.
    ``obs['subcluster']``
        Leiden clusters of the compartment.
    """
    import scanpy as sc

    from .integrate import harmony, lognormalise, select_hvgs, sparse_pca

    select_hvgs(sub, n_top_genes, batch_key)  # seurat_v3 on the counts
    # the counts are not used past the HVGs: normalised in place, never held beside their log-normalised copy
    sub.X = lognormalise(sub.layers.pop("counts"), copy=False)
    sub.uns["log1p"] = {"base": None}
    hvg = sub.var["highly_variable"].to_numpy()
    result = sparse_pca(sub.X[:, hvg], min(N_PCS, sub.n_obs - 2, int(hvg.sum()) - 1), seed=seed)
    sub.obsm["X_pca"] = result["scores"].astype(np.float32)
    rep = "X_pca"
    if batch_key and sub.obs[batch_key].nunique() > 1:
        sub.obsm["X_pca_harmony"] = harmony(sub.obsm["X_pca"], sub.obs, batch_key, seed)
        rep = "X_pca_harmony"
    sc.pp.neighbors(sub, n_neighbors=min(N_NEIGHBORS, sub.n_obs - 1), use_rep=rep, random_state=seed)
    sc.tl.leiden(sub, resolution=resolution, flavor="igraph", n_iterations=2, directed=False,
                 random_state=seed, key_added="subcluster")  # fmt: skip
    sc.tl.umap(sub, random_state=seed)


def _detected_counts(counts, rows: np.ndarray) -> tuple[sp.csr_matrix, np.ndarray]:
    """Read the rows' counts of the genes detected in at least ``MIN_CELLS_PER_GENE`` of them.

    Silent genes break the HVG loess. Two passes over row blocks: the rows' counts are never held with all genes.
    """
    cells_detecting = np.zeros(counts.shape[1], dtype=np.int64)
    for start in range(0, len(rows), io.ROW_BLOCK_CELLS):
        block = counts[rows[start : start + io.ROW_BLOCK_CELLS]]
        cells_detecting += np.bincount(block.indices[block.data > 0], minlength=counts.shape[1])
    detected = cells_detecting >= MIN_CELLS_PER_GENE
    return sp.csr_matrix(io.read_rows(counts, rows, np.flatnonzero(detected)), dtype=np.float32), detected


def subcluster_compartment(
    adata: AnnData,
    mask: np.ndarray,
    compartment: str,
    subtypes: pd.DataFrame,
    batch_key: str | None,
    settings: SubclusterSettings,
) -> tuple[AnnData, pd.DataFrame, pd.DataFrame]:
    """Re-cluster one compartment and call a fine subtype per subcluster from its subtype markers.

    Subtypes are scored by decoupler's ULM (Badia-i-Mompel et al. 2022) on the compartment's markers and called
    per subcluster (score at least ``SUBTYPE_MIN_SCORE``, margin ``SUBTYPE_MIN_MARGIN``); a subcluster without a
    confident call, or a compartment with fewer than two scorable subtypes, keeps its major cell type.

    Parameters
    ----------
    adata
        The annotated atlas (``layers['counts']``, ``obs['cell_type']``).
    mask
        The compartment's cells.
    compartment
        The compartment's name.
    subtypes
        Subtype marker table (``gene``, ``compartment``, ``cell_type_fine``).
    batch_key
        Obs column of the batches; None: no correction.
    settings
        The subcluster settings.

    Returns
    -------
    tuple
        ``(compartment AnnData (:func:`recluster`), calls per subcluster, marker genes per subcluster)``.
    """
    counts, detected = _detected_counts(adata.layers["counts"], np.flatnonzero(mask))
    sub = adata.__class__(
        obs=adata.obs.loc[mask].copy(), var=pd.DataFrame(index=adata.var_names[detected]), layers={"counts": counts}
    )
    recluster(
        sub,
        batch_key,
        n_top_genes=settings.subcluster_n_top_genes,
        resolution=settings.subcluster_resolution,
        seed=settings.seed,
    )
    markers = find_markers(sub, "subcluster", N_MARKERS, settings.seed)
    genes = subtypes.loc[subtypes["compartment"] == compartment]
    calls = pd.DataFrame({"cluster": sorted(sub.obs["subcluster"].astype(str).unique(), key=int)})
    try:
        net = marker_network(genes.rename(columns={"cell_type_fine": "cell_type"}), sub.var_names)
        n_types = net["source"].nunique()
    except TmeflowInputError:
        n_types = 0
    if n_types >= 2:
        scores = ulm_scores(sub, net)
        calls, _ = call_clusters(
            scores, sub.obs["subcluster"], min_score=SUBTYPE_MIN_SCORE, min_margin=SUBTYPE_MIN_MARGIN
        )
    else:
        logger.warning(
            "%s: fewer than 2 subtypes have 3 marker genes in the data; subclusters keep the major type", compartment
        )
        calls["n_cells"] = sub.obs["subcluster"].astype(str).value_counts().reindex(calls["cluster"]).to_numpy()
        calls["cell_type"] = "Unknown"
    major = (
        sub.obs["cell_type"]
        .astype(str)
        .groupby(sub.obs["subcluster"].astype(str).to_numpy())
        .agg(lambda s: s.value_counts().index[0])
    )
    resolved = calls["cell_type"] != "Unknown"
    calls["cell_type_fine"] = np.where(resolved, calls["cell_type"], calls["cluster"].map(major))
    calls["call"] = np.where(resolved, "subtype markers", "major type kept (low score or margin)")
    calls = calls.drop(columns=["cell_type"])
    calls.insert(0, "compartment", compartment)
    markers.insert(0, "compartment", compartment)
    return sub, calls, markers


def _umap_cells(sub: AnnData) -> AnnData:
    """Keep what a compartment's UMAP figure shows (its cells' labels and UMAP), not its matrices and graphs."""
    keys = [key for key in ("subcluster", "sample", "condition") if key in sub.obs]
    return sub.__class__(obs=sub.obs[keys].copy(), obsm={"X_umap": sub.obsm["X_umap"]})


def subcluster(adata: AnnData, settings: SubclusterSettings) -> dict[str, Any]:
    """Sub-cluster every compartment with enough cells and subtype markers, and call fine cell types.

    Parameters
    ----------
    adata
        The annotated atlas: ``obs['cell_type']``, ``obs['compartment']``, raw counts in ``layers['counts']``.
    settings
        ``SubclusterSettings.from_params(params)``, or ``SubclusterSettings.defaults()``.

    Returns
    -------
    dict
        ``calls`` and ``markers`` tables of every re-clustered compartment, and ``figures`` (``{compartment: its
        AnnData}``, for the UMAPs).

    Adds
    ----
    ``obs['cell_type_fine']``
        Fine subtype (the major type outside re-clustered compartments or without a confident call).
    ``obs['subcluster']``
        ``<compartment>:<cluster>`` labels (the compartment outside re-clustered ones).
    ``obsm['X_umap_subcluster']``
        Each compartment's own UMAP (NaN elsewhere).

    Raises
    ------
    TmeflowInputError
        No ``cell_type``/``compartment`` column, no counts, or none of the user's subtype marker genes in the data.
    """
    for column in ("cell_type", "compartment"):
        if column not in adata.obs:
            raise TmeflowInputError(f"input has no obs '{column}' (run tmeflow annotate first)", column=column)
    if "counts" not in adata.layers:
        raise TmeflowInputError("input has no raw counts in layers['counts'] (run tmeflow integrate first)")
    species = species_of(adata)
    subtypes = read_marker_table(
        settings.subtype_markers or bundled_markers("subtypes", species),
        type_column="cell_type_fine",
        required=("gene", "compartment"),
    )
    if settings.subtype_markers and not subtypes["gene"].isin(set(adata.var_names)).any():
        raise TmeflowInputError("none of the subtype marker genes is in the data", file=settings.subtype_markers)
    batch_key = (adata.uns.get("integration", {}) or {}).get("batch_key") or "batch"
    batch_key = batch_key if batch_key in adata.obs else None

    fine = adata.obs["cell_type"].astype(str).to_numpy().copy()
    labels = np.array(["" for _ in range(adata.n_obs)], dtype=object)
    umap = np.full((adata.n_obs, 2), np.nan, dtype=np.float32)
    all_calls, all_markers, figures = [], [], {}
    compartments = adata.obs["compartment"].astype(str)
    for compartment, n_cells in compartments.value_counts().items():
        if compartment not in set(subtypes["compartment"]):
            continue
        if n_cells < settings.subcluster_min_cells:
            logger.info(
                "%s: %d cells (< subcluster_min_cells %d); cell_type_fine = cell_type",
                compartment,
                n_cells,
                settings.subcluster_min_cells,
            )
            continue
        mask = (compartments == compartment).to_numpy()
        with timed(logger, f"{compartment}: re-clustering {n_cells} cells"):
            sub, calls, markers = subcluster_compartment(adata, mask, compartment, subtypes, batch_key, settings)
        by_cluster = calls.set_index("cluster")["cell_type_fine"]
        clusters = sub.obs["subcluster"].astype(str)
        fine[mask] = clusters.map(by_cluster).to_numpy()
        labels[mask] = (compartment + ":" + clusters).to_numpy()
        umap[mask] = sub.obsm["X_umap"]
        all_calls.append(calls)
        all_markers.append(markers)
        figures[compartment] = _umap_cells(sub)
        del sub
        logger.info(
            "%s: %d subclusters: %s", compartment, len(calls), ", ".join(f"{c}={t}" for c, t in by_cluster.items())
        )
    adata.obs["cell_type_fine"] = pd.Categorical(fine)
    adata.obs["subcluster"] = pd.Categorical(np.where(labels == "", adata.obs["compartment"].astype(str), labels))
    adata.obsm["X_umap_subcluster"] = umap
    return {
        "calls": pd.concat(all_calls, ignore_index=True)
        if all_calls
        else pd.DataFrame(columns=["compartment", "cluster", "cell_type_fine"]),
        "markers": pd.concat(all_markers, ignore_index=True)
        if all_markers
        else pd.DataFrame(columns=["compartment", "cluster", "gene"]),
        "figures": figures,
    }


def write_outputs(adata, results: dict[str, Any], outdir: Path, params: dict[str, Any], source: Path) -> Path:
    """Write the calls, markers and counts tables, one UMAP per compartment and ``subclustered.h5ad``.

    ``subclustered.h5ad`` is the input h5ad ``source`` with the new ``obs``, ``obsm`` and ``uns``, gzip-compressed
    (a file users keep), copied in blocks.
    """
    from .integrate import plot_umaps

    header = io.multiqc_header(
        "tmeflow_subcluster",
        "Compartment subclusters",
        "Fine subtypes per compartment subcluster (subtype markers, decoupler ULM).",
        "table",
    )
    calls = results["calls"].copy()
    calls.insert(0, "Subcluster", calls["compartment"].astype(str) + ":" + calls["cluster"].astype(str))
    io.write_table(calls, outdir / "subcluster_calls_mqc.tsv", header_lines=header)
    io.write_table(results["markers"], outdir / "subcluster_markers.tsv")
    io.write_table(
        pd.crosstab(adata.obs["cell_type_fine"], adata.obs["sample"]), outdir / "subcluster_counts.tsv", index=True
    )
    for compartment, sub in results["figures"].items():
        sub.obs["cell_type_fine"] = (
            sub.obs["subcluster"]
            .astype(str)
            .map(
                results["calls"]
                .loc[results["calls"]["compartment"] == compartment]
                .set_index("cluster")["cell_type_fine"]
            )
        )
        keys = ["subcluster", "cell_type_fine"] + [k for k in ("sample", "condition") if k in sub.obs]
        io.save_figure(
            plot_umaps(sub, "X_umap", keys, f"{compartment}: {sub.n_obs} cells"),
            outdir / f"subcluster_umap_{_safe(compartment)}.png",
        )
    adata.uns.setdefault("tmeflow", {})["subcluster"] = io.provenance("subcluster", params)
    with timed(logger, "writing subclustered.h5ad (matrices recompressed with gzip)"):
        return io.write_h5ad_copy(
            source, outdir / "subclustered.h5ad", final=True, obs=adata.obs, obsm=dict(adata.obsm), uns=adata.uns
        )


def run_subcluster(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> Path:
    """Subcluster ``input_path`` (annotated h5ad) into ``outdir/subclustered.h5ad`` (+ tables, figures)."""
    start = time.perf_counter()
    input_path, outdir = Path(input_path), Path(outdir)
    if params.get("subtype_markers") and not Path(params["subtype_markers"]).is_file():
        raise TmeflowInputError("subtype_markers file not found", file=params["subtype_markers"])
    with io.h5ad_on_disk(input_path, "annotated h5ad") as adata:  # each compartment's counts are read by rows
        results = subcluster(adata, SubclusterSettings.from_params(params))
        path = write_outputs(adata, results, outdir, params, input_path)
    logger.info("subclustered %d compartments, %d fine types, %d cells (%.1f s)", len(results["figures"]),
                adata.obs["cell_type_fine"].nunique(), adata.n_obs, time.perf_counter() - start)  # fmt: skip
    return path


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Run ``tmeflow subcluster``."""
    run_subcluster(args.input, args.outdir, params)
