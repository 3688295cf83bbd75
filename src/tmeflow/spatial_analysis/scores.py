"""Signature scores, the tumour-to-stroma trajectory, distance association and tertiary lymphoid structures."""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import TmeflowInputError
from ..log import get_logger
from ..stats import bh_fdr
from .common import MIN_SIGNATURE_GENES, SIGNATURES, TLS_CHEMOKINES, TLS_COLUMNS, _dense, _match_types

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Scores, trajectory, distances, TLS
# ----------------------------------------------------------------------------------------------
def signature_sets(species: str) -> dict[str, list[str]]:
    """Read the bundled signatures of the trajectory and TLS scores in a species.

    Parameters
    ----------
    species
        ``human`` or ``mouse`` (mouse sets mapped through orthologs).

    Returns
    -------
    dict[str, list[str]]
        Name -> genes: ``SIGNATURES`` (EMT, necroptosis, immune, stromal) and ``TLS_chemokines``.
    """
    from ..signatures import map_gene_sets, read_bundled_gmt

    sets = {}
    for name, (key, set_name) in SIGNATURES.items():
        genes = read_bundled_gmt(key).get(set_name, [])
        sets[name] = map_gene_sets({name: genes}, "human", species)[name] if species != "human" else genes
    tls = list(TLS_CHEMOKINES)
    sets["TLS_chemokines"] = map_gene_sets({"t": tls}, "human", species)["t"] if species != "human" else tls
    return sets


def score_signatures(adata: AnnData, species: str, seed: int, section: str = "") -> pd.DataFrame:
    """Score each bundled signature per spot with scanpy ``score_genes``.

    Parameters
    ----------
    adata
        The section (log-normalised ``X``); not modified (``score_genes`` on a copy).
    species
        ``human`` or ``mouse``.
    seed
        ``score_genes`` random state (control genes).
    section
        The section named in the error.

    Returns
    -------
    pandas.DataFrame
        Spots x signatures with at least ``MIN_SIGNATURE_GENES`` genes in the section.

    Raises
    ------
    TmeflowInputError
        The section covers none of the signatures (a species mismatch, or a gene panel); never a silently
        empty result.
    """
    import scanpy as sc

    sets = signature_sets(species)
    scores = {}
    for name, genes in sets.items():
        present = [g for g in genes if g in adata.var_names]
        if len(present) < MIN_SIGNATURE_GENES:
            logger.warning(
                "signature %s: only %d of %d genes in the section; not scored", name, len(present), len(genes)
            )
            continue
        result = sc.tl.score_genes(
            adata,
            present,
            ctrl_size=min(50, max(10, adata.n_vars // 20)),
            random_state=seed,
            score_name=f"score_{name}",
            copy=True,
            use_raw=False,
        )
        scores[name] = result.obs[f"score_{name}"].to_numpy()
    if sets and not scores:
        raise TmeflowInputError(
            f"spatial_analysis: none of the {len(sets)} bundled {species} signatures has "
            f"{MIN_SIGNATURE_GENES} genes in the section; is the section {species}?",
            sample=section or None,
        )
    return pd.DataFrame(scores, index=adata.obs_names)


def trajectory(
    axis: np.ndarray, scores: pd.DataFrame, proportions: pd.DataFrame, n_bins: int, vectors: np.ndarray | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Bin scores and proportions along the tumour-to-stroma axis and correlate them with it.

    Spearman correlation of each feature with the axis; its p-value comes from Moran spectral
    randomisation of the feature's ranks (:func:`tmeflow.stats.msr_rank_correlation`), not from
    Spearman's test over spots, which treats autocorrelated spots as independent; BH FDR.

    Parameters
    ----------
    axis
        Signed distance to the tumour boundary per spot (spot spacings).
    scores
        Spots x signature scores.
    proportions
        Spots x types proportions.
    n_bins
        Equal-width bins of the axis (``trajectory_n_bins``).
    vectors
        Moran eigenvectors of the section's graph, or None (p-values NaN).

    Returns
    -------
    tuple[pandas.DataFrame, pandas.DataFrame]
        Bins (``signed_distance_mid``, ``n_spots``, mean ``score_<name>`` and ``prop_<type>``), and the
        correlations (``feature``, ``spearman_rho``, ``z_msr``, ``pval``, ``fdr``); both empty with fewer than 3
        spots of finite axis.
    """
    from ..stats import msr_rank_correlation

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
    """Translate ``distance_genes`` to the section's species.

    A gene in the section is kept as given (symbols of the species); a human symbol missing from a mouse
    section takes its mouse ortholog (``S100A8`` -> ``S100a8``).

    Parameters
    ----------
    genes
        The requested genes.
    species
        ``human`` or ``mouse``.
    var_names
        The section's genes.

    Returns
    -------
    list[str]
        The genes to test, in the section's symbols.
    """
    if species == "human":
        return genes
    from ..signatures import map_gene_sets

    present = set(var_names)
    missing = {g: [g] for g in genes if g not in present}
    mapped = map_gene_sets(missing, "human", species) if missing else {}
    return list(dict.fromkeys(g if g in present else (mapped[g][0] if mapped.get(g) else g) for g in genes))


def distance_association(
    adata: AnnData, distance: np.ndarray, tumour: np.ndarray, genes: list[str], vectors: np.ndarray | None = None
) -> pd.DataFrame:
    """Correlate each gene with the distance to the tumour over the non-tumour spots.

    Parameters
    ----------
    adata
        The section (log-normalised ``X``); not modified.
    distance
        Distance to the nearest tumour spot (0 inside tumour), spot spacings.
    tumour
        Boolean per spot; tumour spots are left out.
    genes
        The genes (``distance_genes`` after :func:`species_genes`); genes not in the section are skipped.
    vectors
        Moran eigenvectors of the section's graph, or None (p-values NaN).

    Returns
    -------
    pandas.DataFrame
        ``gene``, ``n_spots``, ``spearman_rho``, ``z_msr``, ``pval`` (Moran spectral randomisation of the gene over
        the section, :func:`tmeflow.stats.msr_rank_correlation`) and ``fdr`` (BH).
    """
    from ..stats import msr_rank_correlation

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


def detect_tls(
    tls_score: pd.Series | None,
    proportions: pd.DataFrame,
    graph: sp.csr_matrix,
    regions: np.ndarray,
    distance: np.ndarray,
    *,
    lymphoid_types: list[str],
    min_score: float,
    min_lymphoid: float,
    min_spots: int,
) -> tuple[np.ndarray, pd.DataFrame]:
    """Call tertiary lymphoid structures: connected groups of spots with chemokine score and lymphoid cells.

    Absolute thresholds, the same in every section: a TLS spot has a 12-chemokine score >= ``min_score``
    (Coppola et al. 2011; Cabrita et al. 2020) and a lymphoid proportion >= ``min_lymphoid``; neighbouring
    TLS spots form one TLS (connected components of the spatial graph) when there are at least ``min_spots``.

    Parameters
    ----------
    tls_score
        The TLS chemokine score per spot; None: no TLS.
    proportions
        Spots x types proportions.
    graph
        Spots x spots first-ring adjacency.
    regions, distance
        Region and signed distance per spot, summarised per TLS.
    lymphoid_types
        The lymphoid (B/T) reference types (``lymphoid_cell_types``).
    min_score, min_lymphoid, min_spots
        ``tls_min_score``, ``tls_min_lymphoid``, ``tls_min_spots`` (tmeflow's conventions 0.3, 0.3 and 3).

    Returns
    -------
    tuple[numpy.ndarray, pandas.DataFrame]
        TLS number per spot (0, 1, ...; -1 outside a TLS), and one row per TLS (``TLS_COLUMNS``), highest mean
        chemokine score first; empty when the score or the lymphoid types are missing.
    """
    from scipy.sparse.csgraph import connected_components

    n = proportions.shape[0]
    labels = np.full(n, -1)
    wanted = lymphoid_types
    lymphoid_types = _match_types(wanted, list(proportions.columns))
    if tls_score is None or not lymphoid_types:
        logger.warning(
            "TLS detection skipped (%s)",
            "no chemokine score"
            if tls_score is None
            else f"none of lymphoid_cell_types {', '.join(wanted)} was deconvolved",
        )
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
            rows.append(
                (
                    number,
                    len(members),
                    float(score[members].mean()),
                    float(lymphoid[members].mean()),
                    str(region_values[np.argmax(counts)]),
                    float(np.nanmean(distance[members])) if np.isfinite(distance[members]).any() else np.nan,
                )
            )
    table = pd.DataFrame(rows, columns=TLS_COLUMNS)
    return labels, table.sort_values("mean_tls_score", ascending=False).reset_index(drop=True)
