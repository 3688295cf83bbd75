"""Per-section spatial analysis of a deconvolved section: regions, neighbourhoods, co-localisation,
spatial ligand-receptor co-expression, a tumour-to-stroma trajectory, distance tests and TLS.

Methods
-------
Regions
    From a pathologist's annotation (``--region_annotation``: CSV/TSV with a barcode and a region
    column; ``tumor``/``tumour`` spellings unified) when given; otherwise derived from the
    deconvolution: the malignant proportion of a spot is the summed proportion of the reference
    types listed in ``malignant_cell_types``, averaged with its first-ring neighbours when
    ``region_smoothing`` (deconvolution noise otherwise fragments the tumour); **tumour** = that
    proportion >= ``tumour_threshold``; **interface** = non-tumour spots within ``interface_rings`` rings of a
    tumour spot (a ring = the first neighbour shell, 1.5 spot spacings); **stroma** = the rest.
Neighbourhoods
    Spatial graph of the first neighbour shell (:func:`tmeflow.spatial_qc.spatial_graph`);
    :func:`squidpy.gr.nhood_enrichment` (permutation z-scores, ``spatial_n_perms``) and
    :func:`squidpy.gr.co_occurrence` of the regions and of the dominant cell types.
Co-localisation with malignant cells
    For each cell type, Pearson correlation of its proportion with the *spatially lagged* malignant
    proportion (mean over the spot's neighbours, the spot excluded; a bivariate Moran-type
    statistic), with a spatially constrained p-value: Moran spectral randomisation of the cell
    type's proportion (Wagner & Dray 2015), which keeps its spatial autocorrelation (an i.i.d.
    permutation of spots does not, and rejects far above the nominal level for smooth patterns),
    exact null variance and normal p (:func:`tmeflow.stats.msr_linear_test`); BH FDR.
Spatial ligand-receptor co-expression
    :func:`liana.mt.bivariate` local scores (``lr_local_metric``, default ``product``: the spatially
    weighted product of the standardised ligand and receptor expression, which grows with the
    amount of both; cosine and correlation metrics are scale-free and miss a co-ordinated rise) over
    liana's bundled ``consensus`` resource and a Gaussian spatial kernel (bandwidth 1.5 spot spacings,
    the spot itself included; :func:`liana.ut.spatial_neighbors`), on log-normalised expression with
    ligand and receptor each detected in >= ``lr_min_prop`` of spots. Interface enrichment: mean
    local score in interface spots minus elsewhere, one-sided, against Moran spectral randomisation of
    the (autocorrelated, kernel-smoothed) score (:func:`interface_test`), BH FDR over interactions;
    interface-enriched at FDR < ``lr_fdr`` with a positive difference. Each section is one
    observation of its patient: these p-values are about this section, not a population; the
    section's z-scores are stored (``uns['spatial_statistics']``) and combined across sections with
    patients as the units by :mod:`tmeflow.spatial_cohort` (in ``tmeflow atlas``).
Trajectory from tumour to stroma
    Axis = signed distance to the tumour boundary in spot spacings (negative inside tumour: distance
    to the nearest non-tumour spot; positive outside: distance to the nearest tumour spot). Signature
    scores per spot (:func:`scanpy.tl.score_genes`): EMT (Hallmark EPITHELIAL_MESENCHYMAL_TRANSITION),
    necroptosis (GO:0070266 necroptotic process, bundled cell_death sets), immune and stromal
    (ESTIMATE) and the 12-chemokine TLS score; means per ``trajectory_n_bins`` equal-width bins of the
    axis, and Spearman correlation of each score and each cell-type proportion with the axis; its
    p-value comes from Moran spectral randomisation of the feature's ranks
    (:func:`tmeflow.stats.msr_rank_correlation`), not from Spearman's test over spots, which treats
    autocorrelated spots as independent; BH FDR.
Distance association
    For the genes in ``distance_genes``: Spearman correlation of log-normalised expression with the
    distance to the nearest malignant-rich (tumour) spot over non-tumour spots, p-value from Moran
    spectral randomisation of the gene over the section, BH FDR.
Spot-level CNV map
    Copy-number inference on the spots themselves (:mod:`tmeflow.spatial_cnv`: infercnvpy against half
    of the stroma-rich spots, the other half the null): a tumour map that does not come from the
    deconvolution, with its agreement with the malignant proportion and the regions.
Tertiary lymphoid structures
    12-chemokine TLS score (CCL2, CCL3, CCL4, CCL5, CCL8, CCL18, CCL19, CCL21, CXCL9, CXCL10, CXCL11,
    CXCL13; Coppola et al. 2011; Cabrita et al. 2020) per spot. Absolute thresholds, the same in every
    section: a TLS spot has a chemokine score >= ``tls_min_score`` (score_genes units: log-normalised
    expression above expression-matched control genes) and a lymphoid (``lymphoid_cell_types``: B/T)
    proportion >= ``tls_min_lymphoid``; neighbouring TLS spots form one TLS (connected components of
    the spatial graph) when there are at least ``tls_min_spots`` of them. A section without lymphoid
    aggregates therefore reports none (per-section quantiles, used before, called a TLS in almost
    every section). The defaults (0.3, 0.3, 3 spots) are tmeflow's conventions, not values from a
    publication; histology remains the reference for TLS.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from . import io, spatial_cohort
from .errors import TmeflowInputError
from .genes import species_of
from .log import get_logger, timed
from .plotting import pyplot
from .settings import StageSettings, comma_list
from .spatial_cnv import agreement, spot_cnv
from .spatial_qc import plot_on_tissue, smooth, spatial_graph, spot_spacing
from .stats import bh_fdr

logger = get_logger(__name__)

REGIONS = ("tumour", "interface", "stroma")
REGION_SYNONYMS = {"tumor": "tumour", "tumour": "tumour", "cancer": "tumour", "stroma": "stroma", "stromal": "stroma",
                   "interface": "interface", "boundary": "interface", "border": "interface", "margin": "interface"}
TLS_CHEMOKINES = ("CCL2", "CCL3", "CCL4", "CCL5", "CCL8", "CCL18", "CCL19", "CCL21", "CXCL9", "CXCL10", "CXCL11", "CXCL13")
SIGNATURES = {  # name: (bundled GMT key, set name)
    "EMT": ("hallmark", "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION"),
    "necroptosis": ("necroptosis", "GO_0070266_NECROPTOTIC_PROCESS"),
    "immune": ("estimate", "ImmuneSignature"),
    "stromal": ("estimate", "StromalSignature"),
}
MIN_SIGNATURE_GENES = 3
TLS_COLUMNS = ["tls_id", "n_spots", "mean_tls_score", "mean_lymphoid_prop", "region", "mean_signed_distance"]


def _normalise_name(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def _match_types(wanted: list[str], available: list[str]) -> list[str]:
    """Available types named in ``wanted`` (case, spaces, '_' and '-' ignored)."""
    keys = {_normalise_name(w) for w in wanted}
    return [t for t in available if _normalise_name(t) in keys]


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.todense() if sp.issparse(matrix) else matrix, dtype=float)


@dataclass(frozen=True)
class SpatialAnalysisSettings(StageSettings):
    """The ``spatial_analysis_options`` of the schema, and the seed; the comma lists also as lists (properties)."""

    SCHEMA_GROUPS = ("spatial_analysis_options",)

    malignant_cell_types: str
    tumour_threshold: float
    region_smoothing: bool
    interface_rings: int
    spatial_n_perms: int
    lr_local_metric: str
    lr_min_prop: float
    lr_fdr: float
    trajectory_n_bins: int
    distance_genes: str | None
    tls_min_score: float
    tls_min_lymphoid: float
    tls_min_spots: int
    lymphoid_cell_types: str | None
    spot_cnv_reference_quantile: float
    seed: int

    malignant_types = comma_list("malignant_cell_types")
    lymphoid_types = comma_list("lymphoid_cell_types")
    distance_gene_names = comma_list("distance_genes")


# ----------------------------------------------------------------------------------------------
# Regions
# ----------------------------------------------------------------------------------------------
def malignant_proportion(adata: AnnData, malignant_types: list[str]) -> tuple[np.ndarray, list[str]]:
    """Summed deconvolved proportion of the ``malignant_types`` per spot, and the types matched."""
    if "deconvolution_proportions" not in adata.obsm:
        raise TmeflowInputError("section has no obsm['deconvolution_proportions']; run tmeflow deconvolve first")
    proportions = adata.obsm["deconvolution_proportions"]
    types = _match_types(malignant_types, list(proportions.columns))
    if not types:
        raise TmeflowInputError(
            f"none of malignant_cell_types ({', '.join(malignant_types)}) is a deconvolved cell type "
            f"({', '.join(map(str, proportions.columns))}); set --malignant_cell_types")
    return proportions[types].sum(axis=1).to_numpy(dtype=float), types


def rings_graph(graph: sp.csr_matrix, rings: int) -> sp.csr_matrix:
    """Spots within ``rings`` steps of each other on ``graph`` (no self loops)."""
    reach = sp.identity(graph.shape[0], format="csr")
    step = sp.csr_matrix(graph, dtype=bool).astype(np.float32) + sp.identity(graph.shape[0], format="csr")
    for _ in range(max(1, rings)):
        reach = (reach @ step).astype(bool).astype(np.float32)
    reach = sp.csr_matrix(reach)
    reach.setdiag(0)
    reach.eliminate_zeros()
    return reach


def derive_regions(malignant: np.ndarray, graph: sp.csr_matrix, *, threshold: float, rings: int,
                   smoothing: bool = True) -> np.ndarray:
    """tumour (malignant proportion >= ``threshold``, first-ring smoothed when ``smoothing``) / interface
    (within ``rings`` rings of a tumour spot) / stroma."""
    if smoothing:
        malignant = smooth(malignant, graph)
    tumour = malignant >= threshold
    near = rings_graph(graph, rings) @ tumour.astype(float) > 0
    return np.where(tumour, "tumour", np.where(near, "interface", "stroma"))


def read_region_annotation(path, adata) -> np.ndarray:
    """Regions per spot from a barcode -> region table (CSV/TSV; columns ``barcode`` and ``region``,
    else the first two columns)."""
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("region annotation file not found", file=path)
    try:
        table = pd.read_csv(path, sep=None, engine="python", dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise TmeflowInputError(f"cannot read region annotation: {error}", file=path) from error
    columns = {c.lower(): c for c in table.columns}
    if table.shape[1] < 2:
        raise TmeflowInputError("region annotation needs a barcode and a region column", file=path)
    barcode = columns.get("barcode", table.columns[0])
    region = columns.get("region", table.columns[1])
    table = table[[barcode, region]].dropna()
    mapping = pd.Series(table[region].str.strip().to_numpy(), index=table[barcode].str.strip().to_numpy())
    if mapping.index.duplicated().any():
        raise TmeflowInputError(f"barcode {mapping.index[mapping.index.duplicated()][0]} annotated twice", file=path,
                                column=barcode)
    spots = pd.Index(adata.obs["barcode"].astype(str) if "barcode" in adata.obs else adata.obs_names.astype(str))
    matched = spots.isin(mapping.index)
    if matched.sum() == 0:
        raise TmeflowInputError(f"none of the {len(spots)} spot barcodes of the section is in the region annotation "
                                f"(e.g. section {spots[0]}, annotation {mapping.index[0]})", file=path, column=barcode)
    if matched.mean() < 0.5:
        raise TmeflowInputError(f"only {int(matched.sum())} of {len(spots)} spot barcodes are in the region annotation; "
                                "barcodes do not match the section", file=path, column=barcode)
    unknown = mapping.index.difference(spots)
    if len(unknown):
        logger.info("%d annotated barcodes are not among the section's kept spots (filtered by QC?)", len(unknown))
    labels = mapping.reindex(spots).fillna("unannotated").to_numpy(dtype=object)
    return np.array([REGION_SYNONYMS.get(str(v).lower(), str(v)) for v in labels], dtype=object)


def signed_distance(coords: np.ndarray, tumour: np.ndarray, spacing: float) -> np.ndarray:
    """Signed distance to the tumour boundary in spot spacings (< 0 inside tumour)."""
    from scipy.spatial import cKDTree

    distance = np.full(len(coords), np.nan)
    if tumour.any() and (~tumour).any():
        d_out, _ = cKDTree(coords[tumour]).query(coords[~tumour])
        d_in, _ = cKDTree(coords[~tumour]).query(coords[tumour])
        distance[~tumour] = d_out / spacing
        distance[tumour] = -d_in / spacing
    return distance


# ----------------------------------------------------------------------------------------------
# Neighbourhoods and co-localisation
# ----------------------------------------------------------------------------------------------
def neighbourhood(adata: AnnData, key: str, *, n_perms: int, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Neighbourhood-enrichment z-scores (cluster x cluster) and co-occurrence (long table)."""
    import squidpy as sq

    adata.obs[key] = pd.Categorical(adata.obs[key].astype(str))
    adata.obs[key] = adata.obs[key].cat.remove_unused_categories()
    categories = list(adata.obs[key].cat.categories)
    if len(categories) < 2:
        return pd.DataFrame(), pd.DataFrame()
    sq.gr.nhood_enrichment(adata, cluster_key=key, n_perms=n_perms, seed=seed, n_jobs=1,
                           show_progress_bar=False)
    zscore = pd.DataFrame(adata.uns[f"{key}_nhood_enrichment"]["zscore"], index=categories, columns=categories)
    spacing = spot_spacing(adata.obsm["spatial"])
    interval = np.linspace(spacing * 0.5, spacing * 10, 11)
    sq.gr.co_occurrence(adata, cluster_key=key, interval=interval)
    occurrence = adata.uns[f"{key}_co_occurrence"]["occ"]
    rows = []
    for i, a in enumerate(categories):
        for j, b in enumerate(categories):
            for k in range(occurrence.shape[2]):
                rows.append((a, b, interval[k + 1] / spacing, float(occurrence[i, j, k])))
    co = pd.DataFrame(rows, columns=["cluster", "conditional_on", "distance_spots", "co_occurrence_ratio"])
    return zscore, co


def section_eigenvectors(graph: sp.csr_matrix) -> np.ndarray | None:
    """Moran eigenvectors of the section's spatial graph for the spatially constrained nulls, or None
    (with a warning) above :data:`tmeflow.stats.MSR_MAX_SPOTS` spots."""
    from .stats import MSR_MAX_SPOTS, moran_eigenvectors

    if graph.shape[0] > MSR_MAX_SPOTS:
        logger.warning("%d spots: above %d, no spatially constrained null (co-localisation and interface p-values NaN)",
                       graph.shape[0], MSR_MAX_SPOTS)
        return None
    return moran_eigenvectors(graph)


def colocalisation(proportions: pd.DataFrame, malignant: np.ndarray, graph: sp.csr_matrix,
                   malignant_types: list[str], vectors: np.ndarray | None = None) -> pd.DataFrame:
    """Per cell type: correlation with the malignant proportion in the same spot and in the neighbours.

    The p-value of ``r_lagged_malignant`` comes from Moran spectral randomisation of the cell type's
    proportion (:func:`tmeflow.stats.msr_linear_test`): the null keeps its spatial autocorrelation.
    Permuting spots i.i.d. (done before) ignores it, and two smooth but unrelated patterns then
    look co-localised far more often than the nominal level. ``vectors``: Moran eigenvectors of
    ``graph`` (computed when None)."""
    from .stats import msr_linear_test

    if vectors is None:
        vectors = section_eigenvectors(graph)
    degree = np.asarray(graph.sum(axis=1)).ravel()
    lagged = (graph @ malignant) / np.maximum(degree, 1)
    z_lag = (lagged - lagged.mean()) / (lagged.std() or 1.0)
    n = len(z_lag)
    rows = []
    for cell_type in proportions.columns:
        if cell_type in malignant_types:
            continue
        x = proportions[cell_type].to_numpy(dtype=float)
        if x.std() == 0:
            rows.append((cell_type, np.nan, np.nan, np.nan, np.nan))
            continue
        r_spot = float(np.corrcoef(x, malignant)[0, 1]) if malignant.std() > 0 else np.nan
        if vectors is None:
            r_lag, z, p = float(np.mean((x - x.mean()) / x.std() * z_lag)), np.nan, np.nan
        else:
            r_lag, z, p = msr_linear_test(x, z_lag / (n * x.std()), vectors)
        rows.append((cell_type, r_spot, r_lag, z, p))
    table = pd.DataFrame(rows, columns=["cell_type", "r_same_spot", "r_lagged_malignant", "z_msr", "pval_msr"])
    table["fdr"] = bh_fdr(table["pval_msr"].to_numpy())
    return table.sort_values("r_lagged_malignant", ascending=False).reset_index(drop=True)


def interface_test(scores: np.ndarray, names: list[str], regions: np.ndarray, vectors: np.ndarray | None,
                   fdr: float) -> pd.DataFrame:
    """Interface enrichment of local ligand-receptor scores (spots x interactions): the difference of
    the mean score in interface spots and elsewhere, tested one-sided against Moran spectral
    randomisation of each score (:func:`tmeflow.stats.msr_linear_test`). Kernel-smoothed local
    scores are strongly autocorrelated, so a Mann-Whitney test over spots (done before) treats
    thousands of dependent spots as independent; the constrained null keeps that autocorrelation.
    BH FDR over interactions; ``interface_enriched`` at FDR < ``fdr`` with a positive difference."""
    from .stats import msr_linear_test

    interface = regions == "interface"
    weights = np.where(interface, 1.0 / max(interface.sum(), 1), -1.0 / max((~interface).sum(), 1))
    rows = []
    for k, name in enumerate(names):
        inside, outside = scores[interface, k], scores[~interface, k]
        z = p = np.nan
        if interface.sum() >= 3 and (~interface).sum() >= 3 and np.ptp(scores[:, k]) > 0 and vectors is not None:
            _, z, p = msr_linear_test(scores[:, k], weights, vectors, alternative="greater")
        rows.append((name, float(inside.mean()) if len(inside) else np.nan, float(outside.mean()), z, p))
    table = pd.DataFrame(rows, columns=["interaction", "mean_interface", "mean_elsewhere", "z_msr", "pval"])
    parts = table["interaction"].str.split("^", n=1, expand=True, regex=False)
    table.insert(1, "ligand", parts[0])
    table.insert(2, "receptor", parts[1] if parts.shape[1] > 1 else "")
    table["difference"] = table["mean_interface"] - table["mean_elsewhere"]
    table["fdr"] = bh_fdr(table["pval"].to_numpy())
    table["interface_enriched"] = (table["fdr"] < fdr) & (table["difference"] > 0)
    return table.sort_values(["fdr", "difference"], ascending=[True, False]).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Ligand-receptor
# ----------------------------------------------------------------------------------------------
def spatial_lr(adata: AnnData, regions: np.ndarray, vectors: np.ndarray | None = None, *, species: str = "human",
               local_metric: str = "product", min_prop: float = 0.05, fdr: float = 0.05) -> tuple[pd.DataFrame, Any]:
    """liana bivariate local scores (``local_metric``, pairs expressed in >= ``min_prop`` of spots) and their
    interface enrichment at ``fdr`` (:func:`interface_test`), with the species' bundled resource
    (``consensus`` / ``mouseconsensus``, as in ``tmeflow communication``)."""
    import anndata as ad
    import liana as li

    from .communication import load_resource

    _, resource = load_resource(None, species, adata.var_names, stage="spatial_analysis")
    work = ad.AnnData(sp.csr_matrix(adata.X), obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names))
    work.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=float)
    spacing = spot_spacing(work.obsm["spatial"])
    li.ut.spatial_neighbors(work, bandwidth=1.5 * spacing, cutoff=0.1, set_diag=True, key_added="lr")
    lrdata = li.mt.bivariate(work, resource=resource[["ligand", "receptor"]], local_name=local_metric, global_name=None,
                             n_perms=None, nz_prop=min_prop, connectivity_key="lr_connectivities",
                             use_raw=False, verbose=False)
    table = interface_test(_dense(lrdata.X), list(lrdata.var_names), regions, vectors, fdr)
    return table, lrdata


# ----------------------------------------------------------------------------------------------
# Scores, trajectory, distances, TLS
# ----------------------------------------------------------------------------------------------
def signature_sets(species: str) -> dict[str, list[str]]:
    from .signatures import map_gene_sets, read_bundled_gmt

    sets = {}
    for name, (key, set_name) in SIGNATURES.items():
        genes = read_bundled_gmt(key).get(set_name, [])
        sets[name] = map_gene_sets({name: genes}, "human", species)[name] if species != "human" else genes
    tls = list(TLS_CHEMOKINES)
    sets["TLS_chemokines"] = map_gene_sets({"t": tls}, "human", species)["t"] if species != "human" else tls
    return sets


def score_signatures(adata, species: str, seed: int, section: str = "") -> pd.DataFrame:
    """``score_genes`` of each bundled signature (in the section's species) with at least
    ``MIN_SIGNATURE_GENES`` genes in the section; a section that covers none of them is a one-line error
    (a species mismatch, or a gene panel), never a silently empty result."""
    import scanpy as sc

    sets = signature_sets(species)
    scores = {}
    for name, genes in sets.items():
        present = [g for g in genes if g in adata.var_names]
        if len(present) < MIN_SIGNATURE_GENES:
            logger.warning("signature %s: only %d of %d genes in the section; not scored", name, len(present), len(genes))
            continue
        result = sc.tl.score_genes(adata, present, ctrl_size=min(50, max(10, adata.n_vars // 20)), random_state=seed,
                                   score_name=f"score_{name}", copy=True, use_raw=False)
        scores[name] = result.obs[f"score_{name}"].to_numpy()
    if sets and not scores:
        raise TmeflowInputError(f"spatial_analysis: none of the {len(sets)} bundled {species} signatures has "
                                f"{MIN_SIGNATURE_GENES} genes in the section; is the section {species}?", sample=section or None)
    return pd.DataFrame(scores, index=adata.obs_names)


def trajectory(axis: np.ndarray, scores: pd.DataFrame, proportions: pd.DataFrame,
               n_bins: int, vectors: np.ndarray | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Scores and proportions per equal-width bin of the tumour-to-stroma ``axis``, and their Spearman
    correlation with it, p-values from Moran spectral randomisation (:func:`tmeflow.stats.msr_rank_correlation`)."""
    from .stats import msr_rank_correlation

    ok = np.isfinite(axis)
    values = pd.concat([scores.add_prefix("score_"), proportions.add_prefix("prop_")], axis=1)
    if ok.sum() < 3:
        return pd.DataFrame(), pd.DataFrame()
    edges = np.linspace(axis[ok].min(), axis[ok].max(), n_bins + 1)
    bins = np.clip(np.digitize(axis[ok], edges[1:-1]), 0, n_bins - 1)
    frame = values[ok].copy()
    frame["bin"] = bins
    binned = frame.groupby("bin").mean()
    binned.insert(0, "n_spots", frame.groupby("bin").size())
    binned.insert(0, "signed_distance_mid", [(edges[b] + edges[b + 1]) / 2 for b in binned.index])
    rows = []
    for column in values.columns:
        rho, z, p = msr_rank_correlation(axis, values[column].to_numpy(dtype=float), vectors, ok)
        rows.append((column, rho, z, p))
    correlation = pd.DataFrame(rows, columns=["feature", "spearman_rho", "z_msr", "pval"])
    correlation["fdr"] = bh_fdr(correlation["pval"].to_numpy())
    return binned.reset_index(drop=True), correlation


def species_genes(genes: list[str], species: str, var_names) -> list[str]:
    """``distance_genes`` in the section's species: a gene in the section is kept as given (symbols of the
    species), a human symbol missing from a mouse section takes its mouse ortholog (``S100A8`` -> ``S100a8``)."""
    if species == "human":
        return genes
    from .signatures import map_gene_sets

    present = set(var_names)
    missing = {g: [g] for g in genes if g not in present}
    mapped = map_gene_sets(missing, "human", species) if missing else {}
    return list(dict.fromkeys(g if g in present else (mapped[g][0] if mapped.get(g) else g) for g in genes))


def distance_association(adata, distance: np.ndarray, tumour: np.ndarray, genes: list[str],
                         vectors: np.ndarray | None = None) -> pd.DataFrame:
    """Spearman correlation of each gene with the distance to the tumour over non-tumour spots, p-values
    from Moran spectral randomisation of the gene over the section (:func:`tmeflow.stats.msr_rank_correlation`)."""
    from .stats import msr_rank_correlation

    outside = ~tumour & np.isfinite(distance)
    rows = []
    for gene in genes:
        if gene not in adata.var_names:
            logger.warning("distance_genes: %s is not in the section; skipped", gene)
            continue
        rho, z, p = msr_rank_correlation(distance, _dense(adata[:, gene].X).ravel(), vectors, outside)
        rows.append((gene, int(outside.sum()), rho, z, p))
    table = pd.DataFrame(rows, columns=["gene", "n_spots", "spearman_rho", "z_msr", "pval"])
    table["fdr"] = bh_fdr(table["pval"].to_numpy()) if len(table) else []
    return table


def detect_tls(tls_score: pd.Series | None, proportions: pd.DataFrame, graph: sp.csr_matrix, regions: np.ndarray,
               distance: np.ndarray, *, lymphoid_types: list[str], min_score: float, min_lymphoid: float,
               min_spots: int) -> tuple[np.ndarray, pd.DataFrame]:
    from scipy.sparse.csgraph import connected_components

    n = proportions.shape[0]
    labels = np.full(n, -1)
    wanted = lymphoid_types
    lymphoid_types = _match_types(wanted, list(proportions.columns))
    if tls_score is None or not lymphoid_types:
        logger.warning("TLS detection skipped (%s)", "no chemokine score" if tls_score is None else
                       f"none of lymphoid_cell_types {', '.join(wanted)} was deconvolved")
        return labels, pd.DataFrame(columns=TLS_COLUMNS)
    score = tls_score.to_numpy(dtype=float)
    lymphoid = proportions[lymphoid_types].sum(axis=1).to_numpy(dtype=float)
    candidate = (score >= min_score) & (lymphoid >= min_lymphoid)
    idx = np.flatnonzero(candidate)
    rows = []
    if len(idx):
        sub = graph[idx][:, idx]
        _, component = connected_components(sub, directed=False)
        sizes = np.bincount(component)
        large = np.flatnonzero(sizes >= min_spots)
        for number, c in enumerate(large):
            members = idx[component == c]
            labels[members] = number
            region_values, counts = np.unique(regions[members], return_counts=True)
            rows.append((number, len(members), float(score[members].mean()), float(lymphoid[members].mean()),
                         str(region_values[np.argmax(counts)]),
                         float(np.nanmean(distance[members])) if np.isfinite(distance[members]).any() else np.nan))
    table = pd.DataFrame(rows, columns=TLS_COLUMNS)
    return labels, table.sort_values("mean_tls_score", ascending=False).reset_index(drop=True)


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------
def _heatmap(frames: dict[str, pd.DataFrame], path: Path, title: str) -> Path:
    plt = pyplot()

    frames = {k: v for k, v in frames.items() if not v.empty}
    fig, axes = plt.subplots(1, max(1, len(frames)), figsize=(5.2 * max(1, len(frames)), 4.4), squeeze=False)
    for ax, (name, frame) in zip(axes.ravel(), frames.items()):
        limit = float(np.nanmax(np.abs(frame.to_numpy()))) or 1.0
        image = ax.imshow(frame.to_numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks(range(frame.shape[1]), frame.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(frame.shape[0]), frame.index, fontsize=7)
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04, label="z-score")
    fig.suptitle(title)
    return io.save_figure(fig, path)


def _trajectory_plot(binned: pd.DataFrame, path: Path, title: str) -> Path:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = binned["signed_distance_mid"]
    for column in [c for c in binned.columns if c.startswith("score_")]:
        v = binned[column]
        axes[0].plot(x, (v - v.mean()) / (v.std() or 1.0), marker="o", label=column.removeprefix("score_"))
    for column in [c for c in binned.columns if c.startswith("prop_")]:
        axes[1].plot(x, binned[column], marker=".", label=column.removeprefix("prop_"))
    for ax, label in zip(axes, ("signature score (z across bins)", "cell-type proportion")):
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set(xlabel="signed distance to tumour boundary (spots; < 0 inside tumour)", ylabel=label)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    return io.save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# Stage
# ----------------------------------------------------------------------------------------------
def analyse_section(adata: AnnData, settings: SpatialAnalysisSettings, *, region_annotation=None) -> dict[str, Any]:
    """Run every analysis on a deconvolved section; annotate ``adata`` and return the result tables.

    ``settings``: ``SpatialAnalysisSettings.from_params(params)``, or ``SpatialAnalysisSettings.defaults()``.
    """
    sample = str(adata.obs["sample"].iloc[0]) if "sample" in adata.obs else "section"
    species = species_of(adata)
    malignant, malignant_types = malignant_proportion(adata, settings.malignant_types)
    graph = spatial_graph(adata)
    if region_annotation is not None:
        regions = read_region_annotation(region_annotation, adata)
        source = "annotation"
    else:
        regions = derive_regions(malignant, graph, threshold=settings.tumour_threshold, rings=settings.interface_rings,
                                 smoothing=settings.region_smoothing)
        source = "derived"
    adata.obs["malignant_prop"] = malignant
    adata.obs["region"] = pd.Categorical(regions)
    tumour = regions == "tumour"
    spacing = spot_spacing(adata.obsm["spatial"])
    distance = signed_distance(np.asarray(adata.obsm["spatial"], dtype=float), tumour, spacing)
    adata.obs["signed_distance"] = distance
    counts = pd.Series(regions).value_counts()
    logger.info("%s: regions (%s) %s", sample, source, ", ".join(f"{k} {v}" for k, v in counts.items()))
    results: dict[str, Any] = {"sample": sample, "region_source": source, "malignant_types": malignant_types}
    proportions = adata.obsm["deconvolution_proportions"]

    with timed(logger, f"{sample}: neighbourhood enrichment and co-occurrence"):
        for key, name in (("region", "region"), ("dominant_type", "type")):
            results[f"nhood_{name}"], results[f"cooc_{name}"] = neighbourhood(adata, key, n_perms=settings.spatial_n_perms,
                                                                                seed=settings.seed)
    with timed(logger, f"{sample}: Moran eigenvectors of {graph.shape[0]} spots (spatially constrained nulls)"):
        vectors = section_eigenvectors(graph)
    results["colocalisation"] = colocalisation(proportions, malignant, graph, malignant_types, vectors)
    if (regions == "interface").sum() >= 3:
        with timed(logger, f"{sample}: spatial ligand-receptor (liana bivariate {settings.lr_local_metric})"):
            results["lr"], lrdata = spatial_lr(adata, regions, vectors, species=species, local_metric=settings.lr_local_metric,
                                               min_prop=settings.lr_min_prop, fdr=settings.lr_fdr)
        results["lrdata"] = lrdata
    else:
        logger.warning("%s: fewer than 3 interface spots; interface ligand-receptor test skipped", sample)
        results["lr"] = pd.DataFrame(columns=["interaction", "ligand", "receptor", "mean_interface", "mean_elsewhere",
                                              "z_msr", "pval", "difference", "fdr", "interface_enriched"])
    with timed(logger, f"{sample}: signature scores, trajectory, distances, TLS"):
        scores = score_signatures(adata, species, settings.seed, sample)
        for column in scores.columns:
            adata.obs[f"score_{column}"] = scores[column].to_numpy()
        results["scores"] = scores
        results["trajectory_bins"], results["trajectory_correlation"] = trajectory(
            distance, scores, proportions, settings.trajectory_n_bins, vectors)
        distance_to_tumour = np.where(tumour, 0.0, distance)
        distance_genes = species_genes(settings.distance_gene_names, species, adata.var_names)
        results["distance"] = distance_association(adata, distance_to_tumour, tumour, distance_genes, vectors)
        tls_labels, results["tls"] = detect_tls(scores["TLS_chemokines"] if "TLS_chemokines" in scores else None,
                                                proportions, graph, regions, distance,
                                                lymphoid_types=settings.lymphoid_types, min_score=settings.tls_min_score,
                                                min_lymphoid=settings.tls_min_lymphoid, min_spots=settings.tls_min_spots)
        adata.obs["tls_id"] = tls_labels
    with timed(logger, f"{sample}: spot-level CNV map"):
        calls = spot_cnv(adata, malignant, graph, reference_quantile=settings.spot_cnv_reference_quantile,
                         seed=settings.seed, species=species)
    if calls is not None:
        for column in calls.columns:
            adata.obs[column] = calls[column].to_numpy()
        results["spot_cnv"] = agreement(calls, malignant, regions, sample, source)
        row = results["spot_cnv"].iloc[0]
        logger.info("%s: %d CNV-high spots; Spearman with the malignant proportion %.2f; agreement with the %s tumour "
                    "region %.2f", sample, row["n_cnv_tumour"], row["spearman_cnv_vs_malignant_prop"], source,
                    row["agreement_with_regions"])
    results["region_counts"] = counts
    return results


def write_outputs(adata, results: dict[str, Any], outdir: Path, params: dict[str, Any]) -> Path:
    sample = results["sample"]
    prefix = outdir / sample
    regions_table = adata.obs[["region", "malignant_prop", "signed_distance", "dominant_type", "tls_id"]].copy()
    for column in [c for c in adata.obs.columns if c.startswith("score_")]:
        regions_table[column] = adata.obs[column]
    io.write_table(regions_table.rename_axis("barcode"), f"{prefix}.regions.tsv", index=True)
    names = sorted(set(results["region_counts"].index) | set(REGIONS))
    summary = pd.DataFrame([{r: int(results["region_counts"].get(r, 0)) for r in names}],
                           index=pd.Index([sample], name="Sample"))
    header = io.multiqc_header("tmeflow_spatial_regions", "Spatial regions",
                               f"Spots per region ({results['region_source']}; tmeflow spatial_analysis).", "bargraph")
    io.write_table(summary, f"{prefix}.regions_mqc.tsv", index=True, header_lines=header)
    for key, name in (("nhood_region", "nhood_enrichment_region"), ("nhood_type", "nhood_enrichment_celltype")):
        if not results[key].empty:
            io.write_table(results[key].rename_axis("cluster"), f"{prefix}.{name}.tsv", index=True)
    cooc = pd.concat([results["cooc_region"].assign(key="region"), results["cooc_type"].assign(key="dominant_type")])
    io.write_table(cooc, f"{prefix}.co_occurrence.tsv")
    io.write_table(results["colocalisation"], f"{prefix}.colocalisation.tsv")
    coloc_header = io.multiqc_header(
        f"tmeflow_spatial_colocalisation_{sample}", f"Co-localisation with malignant cells: {sample}",
        "Correlation of each cell type's spot proportion with the neighbours' malignant proportion (tmeflow spatial_analysis).",
        "table")
    io.write_table(results["colocalisation"].set_index("cell_type")[["r_same_spot", "r_lagged_malignant", "fdr"]],
                   f"{prefix}.colocalisation_mqc.tsv", index=True, header_lines=coloc_header)
    io.write_table(results["lr"], f"{prefix}.lr_interface.tsv")
    io.write_table(results["trajectory_bins"], f"{prefix}.trajectory_bins.tsv")
    io.write_table(results["trajectory_correlation"], f"{prefix}.trajectory_correlation.tsv")
    io.write_table(results["distance"], f"{prefix}.distance_association.tsv")
    io.write_table(results["tls"], f"{prefix}.tls.tsv")
    if "spot_cnv" in results:
        io.write_table(results["spot_cnv"], f"{prefix}.spot_cnv.tsv")
        plot_on_tissue(adata, {"tissue": None, "spot CNV score": adata.obs["cnv_score_spot"].to_numpy(),
                               "CNV tumour spots": adata.obs["cnv_tumour"].astype(str).astype("category"),
                               "malignant proportion (deconvolution)": adata.obs["malignant_prop"].to_numpy()},
                       Path(f"{prefix}.spot_cnv.png"), sample=sample, title=f"{sample}: spot-level CNV map vs deconvolution")

    panels = {"region": adata.obs["region"], "malignant proportion": adata.obs["malignant_prop"].to_numpy(),
              "signed distance to tumour": adata.obs["signed_distance"].to_numpy()}
    if "score_TLS_chemokines" in adata.obs:
        panels["TLS chemokine score"] = adata.obs["score_TLS_chemokines"].to_numpy()
    plot_on_tissue(adata, panels, Path(f"{prefix}.regions.png"), sample=sample,
                   title=f"{sample}: regions ({results['region_source']})")
    _heatmap({"regions": results["nhood_region"], "dominant cell types": results["nhood_type"]},
             Path(f"{prefix}.nhood_enrichment.png"), f"{sample}: neighbourhood enrichment")
    if "lrdata" in results and len(results["lr"]):
        top = [i for i in results["lr"]["interaction"].head(4) if i in results["lrdata"].var_names]
        lrdata = results["lrdata"]
        plot_on_tissue(adata, {f"{i} (local)": _dense(lrdata[:, i].X).ravel() for i in top}, Path(f"{prefix}.lr_interface.png"),
                       sample=sample, cmap="magma", title=f"{sample}: top interface-enriched ligand-receptor pairs")
    if not results["trajectory_bins"].empty:
        _trajectory_plot(results["trajectory_bins"], Path(f"{prefix}.trajectory_mqc.png"), f"{sample}: tumour -> stroma")
    adata.uns["spatial_analysis"] = {
        "region_source": results["region_source"], "malignant_types": results["malignant_types"],
        "lr_interface_enriched": results["lr"].loc[results["lr"]["interface_enriched"].astype(bool),
                                                   "interaction"].tolist()[:200],
    }
    # the section's z-scores and effects, for the statistics across sections and patients (tmeflow.spatial_cohort)
    adata.uns[spatial_cohort.UNS_KEY] = spatial_cohort.section_table(results)
    adata.uns.setdefault("tmeflow", {})["spatial_analysis"] = io.provenance("spatial_analysis", params)
    for key in list(adata.uns):
        if key.endswith("_co_occurrence") or key.endswith("_nhood_enrichment"):
            adata.uns.pop(key)
    return io.write_h5ad(adata, f"{prefix}.spatial_analysis.h5ad", final=True)


def run_spatial_analysis(input_path, outdir, params: dict[str, Any], *, region_annotation=None) -> Path:

    input_path = Path(input_path)
    adata = io.read_h5ad(input_path, "deconvolved section")
    if "spatial" not in adata.obsm:
        raise TmeflowInputError("section has no obsm['spatial'] coordinates", file=input_path)
    try:
        results = analyse_section(adata, SpatialAnalysisSettings.from_params(params), region_annotation=region_annotation)
    except TmeflowInputError as error:
        raise TmeflowInputError(error.message, file=error.file or input_path, column=error.column) from error
    lr = results["lr"]
    logger.info("%s: %d of %d ligand-receptor pairs interface-enriched (FDR < %g); %d TLS", results["sample"],
                int(lr["interface_enriched"].sum()) if len(lr) else 0, len(lr), params["lr_fdr"], len(results["tls"]))
    return write_outputs(adata, results, Path(outdir), params)


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_spatial_analysis(args.input, args.outdir, params, region_annotation=args.region_annotation)
