"""Integrate the cohort: from the QC'd samples to a batch-corrected, clustered atlas.

Cohort integration: concatenate the QC'd samples, normalise, select genes, PCA, batch correction,
neighbours, Leiden clusters, UMAP, and integration-quality metrics before and after correction.

Method (sc-best-practices.org, Heumos et al. 2023 Nat Rev Genet: "Normalization", "Feature
selection", "Dimensionality reduction", "Data integration", "Clustering"):

1. **Concatenation** (fan-in of ``<sample>.qc.h5ad``): the gene sets are checked first from the
   files' metadata alone; samples sharing fewer than ``min_shared_genes`` genes fail with one line
   naming them. Each sample is then reduced to its raw counts (``layers['counts']``) on the shared
   genes and written to a temporary file, one sample at a time, and
   :func:`anndata.experimental.concat_on_disk` joins them on disk; only the joined matrix is read
   back, so the cohort is never held twice in memory.
2. **Normalisation**: counts per 10,000 and ``log1p`` into ``X``; counts stay in ``layers['counts']``.
3. **Highly variable genes**: ``seurat_v3`` on the counts (Stuart et al. 2019), batch-aware
   (``batch_key``), ``n_top_genes`` (default 3,000).
4. **PCA** (``pca_comps`` = 50 components; ``n_pcs`` = 30 used downstream) on the HVGs of the
   log-normalised matrix, **without densifying it**: the gene-wise centring (and, with
   ``regress_mito``, the least-squares removal of % mitochondrial counts per gene) and the scaling to
   unit variance are applied implicitly inside a randomised SVD (Halko et al. 2011; 7 power
   iterations, seeded), so memory stays at the sparse matrix plus cells x 60 dense blocks. This
   equals PCA of the centred, regressed and scaled matrix, except that values are not clipped at 10
   as ``sc.pp.scale(max_value=10)`` would (the dense route costs ~8 bytes x cells x genes).
5. **Batch correction** ``batch_correction``:

   * ``harmony`` (default): Harmony (Korsunsky et al. 2019, Nat Methods) by
     :func:`harmonypy.run_harmony` on the first ``n_pcs`` PCs with ``batch_key`` (``batch``,
     ``sample``, ``patient``...) -> ``obsm['X_pca_harmony']``;
   * ``scvi``: scVI (Lopez et al. 2018, Nat Methods; scvi-tools) on the HVG counts with the batch
     as covariate, ``scvi_n_latent`` dimensions, ``scvi_max_epochs`` epochs, on the GPU when
     :func:`torch.cuda.is_available` (else on the CPU, with a warning) -> ``obsm['X_scVI']``;
   * ``none``: the PCs are used as they are.

   A cohort with a single batch (e.g. one sample) is not corrected (warning).
6. **Graph, clusters, embedding**: kNN graph (``n_neighbors`` 15) on the corrected embedding,
   Leiden (Traag et al. 2019, Sci Rep; ``leiden_resolution``, igraph, seeded) -> ``obs['leiden']``,
   UMAP -> ``obsm['X_umap']``. The uncorrected PCs get their own graph and UMAP
   (``obsm['X_umap_uncorrected']``) for the before/after figures, on at most ``metrics_max_cells``
   cells (a seeded subsample; NaN for the other cells), since it only feeds the figure.
7. **Metrics** (:mod:`tmeflow.metrics`, scIB definitions, Luecken et al. 2022): kBET acceptance,
   iLISI, batch ASW and graph connectivity by ``sample`` and by ``batch``, plus cLISI and label ASW
   when labels exist (``metrics_label_key``, else ``cell_type`` when present), on the uncorrected and
   the corrected embedding -> ``integration_metrics_mqc.tsv``.

Outputs: ``integrated.h5ad``, ``integration_metrics_mqc.tsv``, ``integration_clusters.tsv`` (cells
per cluster and sample), ``integration_umap_uncorrected_mqc.png``, ``integration_umap_corrected_mqc.png``.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from . import io
from .errors import TmeflowInputError
from .log import get_logger, timed
from .plotting import pyplot
from .settings import StageSettings

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__name__)

TARGET_SUM = 1e4
PLOT_KEYS = ("sample", "patient", "condition", "batch")
METRIC_COLUMNS = ("kbet_acceptance", "ilisi", "batch_asw", "graph_connectivity", "clisi", "label_asw")
REPRESENTATION = {"harmony": "X_pca_harmony", "scvi": "X_scVI", "none": "X_pca"}


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------
def _sample_name(path: Path, obs: pd.DataFrame) -> str:
    if "sample" in obs and obs["sample"].nunique() == 1:
        return str(obs["sample"].iloc[0])
    return path.name.removesuffix(".h5ad").removesuffix(".qc")


def inspect_inputs(paths: list[Path]) -> list[dict[str, Any]]:
    """Gene names, obs columns, cell count and sample name of every input, without reading counts."""
    import anndata as ad

    infos = []
    for path in paths:
        if not path.is_file():
            raise TmeflowInputError("input h5ad not found", file=path)
        try:
            backed = ad.read_h5ad(path, backed="r")
        except Exception as exc:  # noqa: BLE001 - anything unreadable is a user input problem
            raise TmeflowInputError(f"cannot read h5ad ({type(exc).__name__}: {exc})", file=path) from exc
        try:
            obs = backed.obs.copy()
            infos.append(
                {
                    "path": path,
                    "sample": _sample_name(path, obs),
                    "genes": pd.Index(backed.var_names.astype(str)),
                    "columns": list(obs.columns),
                    "n_obs": backed.n_obs,
                    "has_counts": "counts" in backed.layers.keys(),
                    "species": sorted(obs["species"].astype(str).unique()) if "species" in obs else [],
                }
            )
        finally:
            backed.file.close()
    return infos


def shared_genes(infos: list[dict[str, Any]], min_shared: int) -> pd.Index:
    """Genes in every sample (in the first sample's order); fail naming the samples that share too few."""
    names = [info["sample"] for info in infos]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise TmeflowInputError(f"sample(s) {', '.join(duplicated)} given more than once", sample=duplicated[0])
    common = infos[0]["genes"]
    for info in infos[1:]:
        common = common.intersection(info["genes"])
    if len(common) >= min_shared:
        keep = set(common)
        return pd.Index([g for g in infos[0]["genes"] if g in keep])
    culprits = []
    for i, info in enumerate(infos):
        others = [other["genes"] for j, other in enumerate(infos) if j != i]
        if others:
            rest = others[0]
            for genes in others[1:]:
                rest = rest.intersection(genes)
            if len(rest) >= min_shared:
                culprits.append(
                    f"{info['sample']} ({len(info['genes'].intersection(rest))} of {len(info['genes'])} genes shared)"
                )
    named = ", ".join(culprits) if culprits else ", ".join(f"{i['sample']} ({len(i['genes'])} genes)" for i in infos)
    raise TmeflowInputError(
        f"the samples share only {len(common)} genes (min_shared_genes {min_shared}): {named}; "
        "are they the same species and gene naming (symbols vs Ensembl IDs)?"
    )


@dataclass(frozen=True)
class IntegrationSettings(StageSettings):
    """The ``integration_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("integration_options",)

    batch_key: str
    min_shared_genes: int
    n_top_genes: int
    regress_mito: bool
    pca_comps: int
    n_pcs: int
    batch_correction: str
    scvi_max_epochs: int
    scvi_n_latent: int
    n_neighbors: int
    leiden_resolution: float
    metrics_label_key: str | None
    metrics_max_cells: int
    seed: int


def check_inputs(infos: list[dict[str, Any]], *, batch_key: str, min_shared_genes: int) -> pd.Index:
    """Check the integration inputs; return the shared genes.

    Validate the inputs before anything is computed (one species, ``batch_key`` present, >= 3 cells per
    sample); return the genes shared by every sample (at least ``min_shared_genes``).
    """
    species = sorted({s for info in infos for s in info["species"]})
    if len(species) > 1:
        raise TmeflowInputError(f"the samples mix species ({', '.join(species)}); integrate each species separately")
    for info in infos:
        if batch_key not in info["columns"]:
            raise TmeflowInputError(
                f"batch_key '{batch_key}' is not an obs column",
                file=info["path"],
                sample=info["sample"],
                column=batch_key,
            )
        if info["n_obs"] < 3:
            raise TmeflowInputError(f"only {info['n_obs']} cells", file=info["path"], sample=info["sample"])
    return shared_genes(infos, min_shared_genes)


def _slim_counts(path: Path, genes: pd.Index, columns: list[str]):
    """One sample as counts-only AnnData on ``genes`` with the ``columns`` of obs."""
    import anndata as ad

    full = ad.read_h5ad(path)
    counts = full.layers["counts"] if "counts" in full.layers else full.X
    counts = sp.csr_matrix(counts, dtype=np.float32)
    index = full.var_names.get_indexer(genes)
    slim = ad.AnnData(X=counts[:, index], obs=full.obs[columns].copy(), var=pd.DataFrame(index=genes))
    for column in slim.obs.columns:
        if slim.obs[column].dtype == object or isinstance(slim.obs[column].dtype, pd.CategoricalDtype):
            slim.obs[column] = slim.obs[column].astype(str)
    return slim


def concatenate(infos: list[dict[str, Any]], genes: pd.Index, workdir: Path):
    """Join the counts of every sample on the shared genes, joined on disk (never two copies of the cohort)."""
    import anndata as ad
    from anndata.experimental import concat_on_disk

    columns = [c for c in infos[0]["columns"] if all(c in info["columns"] for info in infos)]
    parts = []
    for i, info in enumerate(infos):
        part = workdir / f"part{i:05d}.h5ad"
        slim = _slim_counts(info["path"], genes, columns)
        slim.write_h5ad(part)
        parts.append(part)
        del slim
    joined = workdir / "joined.h5ad"
    concat_on_disk(parts, joined, join="inner")
    for part in parts:
        part.unlink()
    adata = ad.read_h5ad(joined)
    joined.unlink()
    if not adata.obs_names.is_unique:
        raise TmeflowInputError("cell names repeat across samples; run QC (it prefixes barcodes with the sample)")
    for column in adata.obs.columns:
        if adata.obs[column].dtype == object:
            adata.obs[column] = pd.Categorical(adata.obs[column].astype(str))
    return adata


# ----------------------------------------------------------------------------------------------
# Normalisation, genes, PCA
# ----------------------------------------------------------------------------------------------
def normalise(adata) -> None:
    """Keep counts in ``layers['counts']``; put log1p(CP10k) into ``X``."""
    import scanpy as sc

    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=TARGET_SUM)
    sc.pp.log1p(adata)


def select_hvgs(adata, n_top_genes: int, batch_key: str | None) -> None:
    """Batch-aware ``seurat_v3`` HVGs on the counts -> ``var['highly_variable']``.

    seurat_v3's loess fit can fail on small or sparse data (near-singular fits); then it is retried
    without the batch key, and finally the ``seurat`` flavour (dispersions of the log data, no
    loess) is used, each time with a warning.
    """
    import scanpy as sc

    n_top = min(n_top_genes, adata.n_vars)
    batched = batch_key if batch_key and adata.obs[batch_key].nunique() > 1 else None
    attempts = [("seurat_v3", batched), ("seurat_v3", None), ("seurat", batched)]
    if batched is None:
        attempts = attempts[1:]
    for flavor, key in attempts:
        try:
            if flavor == "seurat_v3":
                sc.pp.highly_variable_genes(
                    adata, flavor=flavor, n_top_genes=n_top, layer="counts", batch_key=key, subset=False
                )
            else:
                sc.pp.highly_variable_genes(adata, flavor=flavor, n_top_genes=n_top, batch_key=key, subset=False)
            return
        except (ValueError, ZeroDivisionError, np.linalg.LinAlgError) as exc:
            if (flavor, key) == attempts[-1]:
                raise
            logger.warning(
                "HVG selection (%s, batch_key %s) failed (%s); retrying more simply", flavor, key, str(exc).strip()[:80]
            )


def _svd_flip(u: np.ndarray, vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Deterministic signs: the largest-magnitude loading of each component is positive."""
    signs = np.sign(vt[np.arange(vt.shape[0]), np.argmax(np.abs(vt), axis=1)])
    signs[signs == 0] = 1
    return u * signs, vt * signs[:, None]


def sparse_pca(
    X,
    n_comps: int,
    *,
    covariates: np.ndarray | None = None,
    scale: bool = True,
    seed: int = 0,
    n_iter: int = 7,
    oversample: int = 10,
) -> dict[str, np.ndarray]:
    """Compute an implicitly centred, regressed and scaled PCA.

    PCA of ``X`` (cells x genes, sparse or dense) centred per gene, with ``covariates`` regressed
    out per gene by least squares and scaled to unit variance, all implicitly (never densified).

    Returns ``scores`` (cells x comps), ``loadings`` (genes x comps), ``variance``, ``variance_ratio``.
    """
    X = sp.csr_matrix(X, dtype=np.float64) if sp.issparse(X) else np.asarray(X, dtype=np.float64)
    n, g = X.shape
    design = np.ones((n, 1))
    if covariates is not None:
        cov = np.asarray(covariates, dtype=np.float64).reshape(n, -1)
        design = np.hstack([design, cov - cov.mean(axis=0)])
    gram = design.T @ design
    dtx = np.asarray(X.T @ design).T  # d x g
    coef = np.linalg.solve(gram, dtx)  # d x g: per-gene least-squares fit on the design
    # Residual sum of squares per gene: sum X^2 - 2 sum X (D B) + sum (D B)^2
    sq = np.asarray(X.multiply(X).sum(axis=0)).ravel() if sp.issparse(X) else (X**2).sum(axis=0)
    cross = (dtx * coef).sum(axis=0)
    fitted = np.einsum("kg,kl,lg->g", coef, gram, coef)
    rss = np.maximum(sq - 2 * cross + fitted, 0.0)
    std = np.sqrt(rss / max(n - 1, 1)) if scale else np.ones(g)
    std[std == 0] = 1.0

    def matmat(v: np.ndarray) -> np.ndarray:  # (residual / std) @ v
        w = v / std[:, None]
        return np.asarray(X @ w) - design @ (coef @ w)

    def rmatmat(u: np.ndarray) -> np.ndarray:  # (residual / std).T @ u
        return (np.asarray(X.T @ u) - coef.T @ (design.T @ u)) / std[:, None]

    k = min(n_comps, n - 1, g - 1)
    width = min(k + oversample, n, g)
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(matmat(rng.standard_normal((g, width))))
    for _ in range(n_iter):
        z, _ = np.linalg.qr(rmatmat(q))
        q, _ = np.linalg.qr(matmat(z))
    small = rmatmat(q).T  # width x g
    u_small, s, vt = np.linalg.svd(small, full_matrices=False)
    u = q @ u_small
    u, vt = _svd_flip(u[:, :k], vt[:k])
    s = s[:k]
    variance = s**2 / max(n - 1, 1)
    total = (rss / max(n - 1, 1) / std**2).sum()
    return {"scores": u * s, "loadings": vt.T, "variance": variance, "variance_ratio": variance / total}


def pca(adata: AnnData, *, n_comps: int, regress_mito: bool, seed: int) -> None:
    """Run the sparse PCA of the HVGs.

    Implicitly centred/scaled PCA (``n_comps`` components) of the HVGs, the % mito regressed out when
    ``regress_mito`` -> ``obsm['X_pca']``, ``varm['PCs']``, ``uns['pca']``.
    """
    hvg = adata.var["highly_variable"].to_numpy()
    covariates = None
    if regress_mito:
        if "pct_counts_mito" not in adata.obs:
            raise TmeflowInputError(
                "regress_mito needs obs 'pct_counts_mito' (written by tmeflow qc)", column="pct_counts_mito"
            )
        covariates = adata.obs["pct_counts_mito"].to_numpy(dtype=float)
    result = sparse_pca(adata.X[:, hvg], n_comps, covariates=covariates, seed=seed)
    adata.obsm["X_pca"] = result["scores"].astype(np.float32)
    loadings = np.zeros((adata.n_vars, result["loadings"].shape[1]), dtype=np.float32)
    loadings[hvg] = result["loadings"]
    adata.varm["PCs"] = loadings
    adata.uns["pca"] = {
        "variance": result["variance"],
        "variance_ratio": result["variance_ratio"],
        "params": {"zero_center": True, "implicit_scaling": True, "regress_mito": bool(regress_mito)},
    }


# ----------------------------------------------------------------------------------------------
# Batch correction
# ----------------------------------------------------------------------------------------------
def harmony(pcs: np.ndarray, obs: pd.DataFrame, batch_key: str, seed: int) -> np.ndarray:
    """Harmony-corrected PCs (cells x PCs), whatever orientation harmonypy returns."""
    import harmonypy

    result = harmonypy.run_harmony(np.asarray(pcs, dtype=np.float64), obs[[batch_key]].astype(str), [batch_key],
                                   random_state=seed, verbose=False)  # fmt: skip
    corrected = result.Z_corr
    corrected = corrected.cpu().numpy() if hasattr(corrected, "cpu") else np.asarray(corrected)
    if corrected.shape[0] != pcs.shape[0]:  # harmonypy < 0.2 returns PCs x cells
        corrected = corrected.T
    return corrected.astype(np.float32)


def scvi_latent(adata: AnnData, batch_key: str, *, n_latent: int, max_epochs: int, seed: int) -> np.ndarray:
    """Train scVI and return its latent space.

    ScVI latent space (``n_latent`` dimensions, ``max_epochs`` epochs) trained on the HVG counts with
    ``batch_key`` as the batch covariate.
    """
    import scvi
    import torch

    scvi.settings.seed = seed
    use_gpu = torch.cuda.is_available()
    if not use_gpu:
        logger.warning("no CUDA GPU: training scVI on the CPU (slow on large cohorts; use the GPU profile)")
    hvg = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    hvg.obs = hvg.obs[[batch_key]].astype(str).astype("category")
    scvi.model.SCVI.setup_anndata(hvg, layer="counts", batch_key=batch_key)
    model = scvi.model.SCVI(hvg, n_latent=n_latent, n_layers=2, gene_likelihood="nb")
    model.train(max_epochs=max_epochs, accelerator="gpu" if use_gpu else "cpu", devices=1,
                enable_progress_bar=False)  # fmt: skip
    return np.asarray(model.get_latent_representation(), dtype=np.float32)


def correct(adata: AnnData, settings: IntegrationSettings) -> str:
    """Run the chosen batch correction; return the obsm key of the embedding to use downstream."""
    method, batch_key, n_pcs = settings.batch_correction, settings.batch_key, settings.n_pcs
    n_pcs = min(n_pcs, adata.obsm["X_pca"].shape[1])
    n_batches = adata.obs[batch_key].nunique()
    if method != "none" and n_batches < 2:
        logger.warning(
            "batch_correction %s requested but the cohort has a single %s; not correcting", method, batch_key
        )
        method = "none"
    if method == "harmony":
        with timed(logger, f"Harmony on {n_pcs} PCs over {n_batches} levels of '{batch_key}'"):
            adata.obsm["X_pca_harmony"] = harmony(adata.obsm["X_pca"][:, :n_pcs], adata.obs, batch_key, settings.seed)
    elif method == "scvi":
        with timed(logger, f"scVI ({settings.scvi_max_epochs} epochs) over {n_batches} levels of '{batch_key}'"):
            adata.obsm["X_scVI"] = scvi_latent(
                adata,
                batch_key,
                n_latent=settings.scvi_n_latent,
                max_epochs=settings.scvi_max_epochs,
                seed=settings.seed,
            )
    return REPRESENTATION[method]


def _embedding(adata, rep: str, n_pcs: int) -> np.ndarray:
    return adata.obsm[rep][:, :n_pcs] if rep == "X_pca" else adata.obsm[rep]


def graph_and_umap(
    adata: AnnData, rep: str, *, n_neighbors: int, n_pcs: int, seed: int, key: str | None = None
) -> None:
    """``n_neighbors`` kNN graph on ``rep`` (its first ``n_pcs`` for PCs) and UMAP; ``key`` names a secondary graph."""
    import scanpy as sc

    use_pcs = min(n_pcs, adata.obsm[rep].shape[1]) if rep == "X_pca" else None
    sc.pp.neighbors(adata, n_neighbors=n_neighbors, use_rep=rep, n_pcs=use_pcs, random_state=seed, key_added=key)
    if key is None:
        sc.tl.umap(adata, random_state=seed)
    else:
        sc.tl.umap(adata, random_state=seed, neighbors_key=key)
        adata.obsm[f"X_umap_{key}"] = adata.obsm.pop("X_umap")


def uncorrected_umap(adata: AnnData, settings: IntegrationSettings) -> None:
    """UMAP of the uncorrected PCs for the before/after figure -> ``obsm['X_umap_uncorrected']``.

    Computed on at most ``metrics_max_cells`` cells (seeded subsample; the other rows are NaN): it
    only feeds the figure, and a full second graph + UMAP would double the cost on large cohorts.
    """
    import anndata as ad

    from .metrics import subsample

    idx = subsample(adata.n_obs, settings.metrics_max_cells, settings.seed)
    view = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names[idx]))
    view.obsm["X_pca"] = np.asarray(adata.obsm["X_pca"][idx])
    graph_and_umap(view, "X_pca", n_neighbors=settings.n_neighbors, n_pcs=settings.n_pcs, seed=settings.seed)
    coords = np.full((adata.n_obs, 2), np.nan, dtype=np.float32)
    coords[idx] = view.obsm["X_umap"]
    adata.obsm["X_umap_uncorrected"] = coords


def leiden(adata, resolution: float, seed: int, *, key_added: str = "leiden", neighbors_key: str | None = None) -> None:
    """Leiden clusters (igraph implementation, 2 iterations, seeded) with string labels ordered by size."""
    import scanpy as sc

    sc.tl.leiden(adata, resolution=resolution, flavor="igraph", n_iterations=2, directed=False, random_state=seed,
                 key_added=key_added, neighbors_key=neighbors_key)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Metrics and figures
# ----------------------------------------------------------------------------------------------
def label_key(adata: AnnData, metrics_label_key: str | None) -> str | None:
    """Choose the cell-label column of the conservation metrics.

    The obs column used as cell labels by the conservation metrics: ``metrics_label_key`` when set, else
    ``cell_type`` when present (None when there is none).
    """
    key = metrics_label_key or ""
    if key:
        if key not in adata.obs:
            raise TmeflowInputError(f"metrics_label_key '{key}' is not an obs column", column=key)
        return key
    return "cell_type" if "cell_type" in adata.obs else None


def metrics_table(
    adata: AnnData, embeddings: dict[str, np.ndarray], labels_key: str | None, *, max_cells: int, seed: int
) -> pd.DataFrame:
    """Compute the scIB metrics of each embedding.

    ScIB metrics per embedding and per batch key (``sample``, ``batch``), on at most ``max_cells`` cells
    (seeded subsample).
    """
    from .metrics import integration_metrics

    labels = None if labels_key is None else adata.obs[labels_key].astype(str).to_numpy()
    rows = []
    for key in ("sample", "batch"):
        if key not in adata.obs or adata.obs[key].nunique() < 2:
            continue
        for name, emb in embeddings.items():
            values = integration_metrics(emb, adata.obs[key].to_numpy(), labels, max_cells=max_cells, seed=seed)
            rows.append(
                {
                    "Embedding": f"{name} ({key})",
                    "embedding": name,
                    "batch_key": key,
                    "label_key": labels_key or "",
                    **values,
                }
            )
    return pd.DataFrame(rows)


def plot_umaps(adata: AnnData, basis: str, keys: list[str], title: str) -> Figure:
    """Draw one UMAP panel per obs key (categorical colours, legend when it fits).

    Cells are drawn in a fixed random order (seed 0) so that no category is painted on top of all
    the others; rows of ``obsm[basis]`` that are NaN (cells left out of a subsampled embedding) are
    not drawn.

    Parameters
    ----------
    adata
        Cells with the embedding in ``obsm[basis]`` and every key of ``keys`` in ``obs``.
    basis
        ``obsm`` key of a 2-D embedding (``X_umap``, ``X_umap_uncorrected``).
    keys
        ``obs`` columns, one panel each, coloured as categories (``tab10``, ``tab20`` above 10).
    title
        Figure title.

    Returns
    -------
    Figure
        One row of ``len(keys)`` panels; a legend beside each panel with at most 25 categories.
    """
    plt = pyplot()

    coords = np.asarray(adata.obsm[basis])
    fig, axes = plt.subplots(1, len(keys), figsize=(4.2 * len(keys), 4.0), squeeze=False)
    shown = np.flatnonzero(np.isfinite(coords).all(axis=1))  # a subsampled embedding has NaN rows
    order = np.random.default_rng(0).permutation(shown)  # no category painted on top of all others
    size = max(0.5, min(8.0, 30000 / max(len(shown), 1)))
    for ax, key in zip(axes[0], keys, strict=True):
        values = adata.obs[key].astype(str).to_numpy()
        categories = sorted(pd.unique(values))
        cmap = plt.get_cmap("tab20" if len(categories) > 10 else "tab10")
        colour = {c: cmap(i % cmap.N) for i, c in enumerate(categories)}
        ax.scatter(
            coords[order, 0],
            coords[order, 1],
            c=[colour[v] for v in values[order]],
            s=size,
            linewidths=0,
            rasterized=True,
        )
        ax.set(title=key, xticks=[], yticks=[], xlabel="UMAP1", ylabel="UMAP2")
        if len(categories) <= 25:
            handles = [plt.Line2D([], [], marker="o", ls="", color=colour[c], label=c) for c in categories]
            ax.legend(handles=handles, fontsize=6, loc="center left", bbox_to_anchor=(1.0, 0.5), frameon=False)
    fig.suptitle(title)
    fig.tight_layout()
    return fig


# ----------------------------------------------------------------------------------------------
# Stage
# ----------------------------------------------------------------------------------------------
def integrate(adata: AnnData, settings: IntegrationSettings) -> tuple[AnnData, pd.DataFrame]:
    """Everything after concatenation (counts in ``X``); returns the AnnData and the metrics table.

    ``settings``: ``IntegrationSettings.from_params(params)``, or ``IntegrationSettings.defaults()``.
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
