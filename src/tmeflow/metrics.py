"""Compute integration-quality metrics (scIB definitions).

Integration-quality metrics after the scIB benchmark (Luecken et al. 2022, *Benchmarking atlas-level
data integration in single-cell genomics*, Nat Methods 19:41-50).

Every metric is computed on an embedding (uncorrected PCs, Harmony PCs or the scVI latent space) and
returned on scIB's scale, where **higher is better** for all of them:

Batch mixing (``batch`` is the batch key: ``sample``, ``batch``...)
    * **kBET acceptance rate** (Büttner et al. 2019, Nat Methods). For each label (cell type) with at
      least two batches and 10 cells, every cell's neighbourhood of ``k0`` cells (the cell itself and
      its ``k0 - 1`` nearest neighbours, as the R package builds it; ``k0`` = a quarter of the mean
      batch size within the label, kept between 10 and 70 as scIB sets it) is compared with the label's
      batch frequencies by Pearson's chi-squared test (df = batches - 1); a cell is *rejected* when
      p < 0.05. The score is ``1 - mean rejection rate`` over labels (scIB's ``kBET``). This is a
      re-implementation of the test (the R package is not called): every cell is tested, the
      expectation of R's repeated random 10% test subsets; scIB's extra handling of disconnected graph
      components is not reproduced.
    * **iLISI** (Korsunsky et al. 2019, Nat Methods): the inverse Simpson index of batch labels in a
      Gaussian-kernel neighbourhood of perplexity 30 over the 90 nearest neighbours (the LISI
      definition, on embedding distances); the median over cells is scaled as
      ``(median - 1) / (n_batches - 1)`` to [0, 1].
    * **batch ASW**: per label, the silhouette of the batch labels; ``1 - |s|`` per cell, averaged
      per label, then over labels (scIB ``silhouette_batch``).
    * **graph connectivity**: per label, the fraction of the label's cells in the largest connected
      component of the kNN graph (k = 15) restricted to that label; mean over labels.

Biological conservation (only with a label key)
    * **cLISI**: LISI of the labels, scaled ``(n_labels - median) / (n_labels - 1)``.
    * **label ASW**: silhouette of the labels, scaled ``(s + 1) / 2``.

Without labels, kBET, iLISI and batch ASW treat all cells as one label and graph connectivity is not
reported (NaN): on the whole graph it would measure how separated the cell types are. Silhouettes and the neighbour
searches run on at most ``max_cells`` cells (a seeded random subsample, default 20,000) so that the
metrics stay cheap on large cohorts; the subsample is reported.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pandas as pd

LISI_PERPLEXITY = 30.0
LISI_NEIGHBOURS = 90  # 3 x perplexity, as in the LISI reference implementation and scIB
GRAPH_NEIGHBOURS = 15
KBET_ALPHA = 0.05
KBET_K0_RANGE = (10, 70)  # scIB's kBET
KBET_MIN_CELLS = 10  # scIB skips smaller labels


def knn(embedding: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Find the exact ``k`` nearest neighbours of every cell, the cell itself excluded (Euclidean).

    Parameters
    ----------
    embedding
        Cells x dimensions.
    k
        Neighbours per cell (at most cells - 1).

    Returns
    -------
    tuple of numpy.ndarray
        ``(distances, indices)``, each cells x k, nearest first.
    """
    from sklearn.neighbors import NearestNeighbors

    embedding = np.asarray(embedding, dtype=np.float64)
    k = min(k, embedding.shape[0] - 1)
    nn = NearestNeighbors(n_neighbors=k + 1).fit(embedding)
    distances, indices = nn.kneighbors(embedding)
    # Drop each cell itself (the first neighbour, unless duplicates tie with it).
    keep = np.ones_like(indices, dtype=bool)
    own = indices == np.arange(len(indices))[:, None]
    has_own = own.any(axis=1)
    keep[has_own] = ~own[has_own]
    keep[~has_own, -1] = False
    return distances[keep].reshape(len(indices), k), indices[keep].reshape(len(indices), k)


def _perplexity_weights(distances: np.ndarray, perplexity: float, *, tol: float = 1e-5, n_iter: int = 50) -> np.ndarray:
    """Compute Gaussian-kernel neighbour weights at a given perplexity.

    Gaussian-kernel neighbour weights with entropy ``log(perplexity)`` per row (LISI's binary search
    over the precision ``beta``), vectorised over cells.
    """
    n = distances.shape[0]
    beta = np.ones(n)
    beta_min = np.full(n, -np.inf)
    beta_max = np.full(n, np.inf)
    target = math.log(perplexity)
    d = distances - distances.min(axis=1, keepdims=True)  # shift for stability; weights are unchanged
    weights = np.full_like(d, 1.0 / d.shape[1])
    for _ in range(n_iter):
        p = np.exp(-d * beta[:, None])
        total = p.sum(axis=1)
        entropy = np.log(total) + beta * (d * p).sum(axis=1) / total
        weights = p / total[:, None]
        diff = entropy - target
        if np.all(np.abs(diff) < tol):
            break
        higher = diff > 0  # entropy too high: sharpen the kernel
        beta_min = np.where(higher, beta, beta_min)
        beta_max = np.where(higher, beta_max, beta)
        up = np.where(np.isinf(beta_max), beta * 2, (beta + beta_max) / 2)
        down = np.where(np.isinf(beta_min), beta / 2, (beta + beta_min) / 2)
        beta = np.where(np.abs(diff) < tol, beta, np.where(higher, up, down))
    return weights


def lisi(distances: np.ndarray, indices: np.ndarray, labels, *, perplexity: float = LISI_PERPLEXITY) -> np.ndarray:
    """Compute the local inverse Simpson index of every cell (Korsunsky et al. 2019, Harmony's LISI).

    Neighbours are weighted by a Gaussian kernel whose width gives each cell's weights the entropy
    ``log(perplexity)``; with uniform weights LISI is ``1 / sum_b f_b^2`` for the neighbour fractions ``f_b`` of each
    label: 1 when all neighbours share one label, ``B`` when ``B`` labels are equally represented.

    Parameters
    ----------
    distances
        Cells x k neighbour distances (:func:`knn`).
    indices
        Cells x k neighbour indices.
    labels
        Label (batch or cell type) per cell.
    perplexity
        Effective neighbourhood size (default ``LISI_PERPLEXITY`` = 30 as in scIB; at most k / 3).

    Returns
    -------
    numpy.ndarray
        LISI per cell, between 1 and the number of labels.
    """
    codes, _ = pd.factorize(pd.Series(labels).astype(str))
    perplexity = min(perplexity, distances.shape[1] / 3)
    weights = _perplexity_weights(distances, perplexity)
    neighbour_codes = codes[indices]
    simpson = np.zeros(indices.shape[0])
    for code in range(codes.max() + 1):
        simpson += (weights * (neighbour_codes == code)).sum(axis=1) ** 2
    return 1.0 / simpson


def ilisi(distances, indices, batches) -> float:
    """Compute iLISI (scIB): median LISI of the batches, scaled to [0, 1].

    Parameters
    ----------
    distances
        Cells x k neighbour distances (:func:`knn`).
    indices
        Cells x k neighbour indices.
    batches
        Batch per cell.

    Returns
    -------
    float
        0 = no mixing, 1 = every neighbourhood holds all batches evenly; NaN with one batch.
    """
    n_batches = pd.Series(batches).nunique()
    if n_batches < 2:
        return float("nan")
    return float((np.nanmedian(lisi(distances, indices, batches)) - 1) / (n_batches - 1))


def clisi(distances, indices, labels) -> float:
    """Compute cLISI (scIB): median LISI of the cell labels, scaled to [0, 1] so that higher is better.

    Parameters
    ----------
    distances
        Cells x k neighbour distances (:func:`knn`).
    indices
        Cells x k neighbour indices.
    labels
        Cell type per cell.

    Returns
    -------
    float
        1 = every neighbourhood holds one label; NaN with one label.
    """
    n_labels = pd.Series(labels).nunique()
    if n_labels < 2:
        return float("nan")
    return float((n_labels - np.nanmedian(lisi(distances, indices, labels))) / (n_labels - 1))


def label_asw(embedding: np.ndarray, labels) -> float:
    """Compute the label average silhouette width (scIB), scaled ``(s + 1) / 2``.

    Parameters
    ----------
    embedding
        Cells x dimensions.
    labels
        Cell type per cell.

    Returns
    -------
    float
        In [0, 1], higher = labels better separated; NaN with one label.
    """
    from sklearn.metrics import silhouette_score

    labels = pd.Series(labels).astype(str).to_numpy()
    if len(np.unique(labels)) < 2:
        return float("nan")
    return float((silhouette_score(embedding, labels) + 1) / 2)


def batch_asw(embedding: np.ndarray, batches, labels=None) -> float:
    """Compute scIB's ``silhouette_batch`` (batch average silhouette width within labels).

    Per label, the mean of ``1 - |silhouette of the batches|``; the mean over labels. Labels holding a single
    batch, or as many batches as cells, are skipped (as in scIB).

    Parameters
    ----------
    embedding
        Cells x dimensions.
    batches
        Batch per cell.
    labels
        Cell type per cell; None: all cells one label.

    Returns
    -------
    float
        In [0, 1], 1 = batches perfectly mixed within labels; NaN when no label qualifies.
    """
    from sklearn.metrics import silhouette_samples

    batches = pd.Series(batches).astype(str).to_numpy()
    labels = np.zeros(len(batches), dtype=int) if labels is None else pd.Series(labels).astype(str).to_numpy()
    per_label = []
    for label in pd.unique(labels):
        mask = labels == label
        n_batches = len(np.unique(batches[mask]))
        if n_batches < 2 or n_batches == mask.sum():
            continue
        scores = silhouette_samples(embedding[mask], batches[mask])
        per_label.append(np.mean(1.0 - np.abs(scores)))
    return float(np.mean(per_label)) if per_label else float("nan")


def graph_connectivity(indices: np.ndarray, labels=None) -> float:
    """Compute the scIB graph connectivity.

    Mean over labels of the fraction of the label's cells in the largest connected component of
    the kNN graph (given as neighbour ``indices``) restricted to the label.

    Parameters
    ----------
    indices
        Cells x k neighbour indices (:func:`knn`).
    labels
        Cell type per cell; None: all cells one label.

    Returns
    -------
    float
        In (0, 1], 1 = every label's cells connected.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import connected_components

    n, k = indices.shape
    labels = np.zeros(n, dtype=int) if labels is None else pd.Series(labels).astype(str).to_numpy()
    graph = csr_matrix((np.ones(n * k), (np.repeat(np.arange(n), k), indices.ravel())), shape=(n, n))
    fractions = []
    for label in pd.unique(labels):
        members = np.flatnonzero(labels == label)
        _, components = connected_components(graph[members][:, members], directed=False)
        fractions.append(np.bincount(components).max() / len(members))
    return float(np.mean(fractions))


def kbet_k0(batch_sizes: np.ndarray) -> int:
    """Choose scIB's kBET neighbourhood size: a quarter of the mean batch size, kept between 10 and 70.

    Parameters
    ----------
    batch_sizes
        Cells per batch.

    Returns
    -------
    int
        ``k0`` (the cell and its ``k0 - 1`` neighbours).
    """
    return int(np.clip(np.floor(np.mean(batch_sizes) / 4), *KBET_K0_RANGE))


def kbet_acceptance(
    embedding: np.ndarray, batches, labels=None, *, alpha: float = KBET_ALPHA, k0: int | None = None
) -> float:
    """Compute the kBET acceptance rate (Büttner et al. 2019): ``1 -`` the mean rejection rate over labels.

    Per label, each cell's neighbourhood (the cell and its ``k0 - 1`` nearest neighbours) is tested for the label's
    batch proportions by a chi-squared test; labels with one batch, or fewer than ``KBET_MIN_CELLS`` cells without a
    given ``k0``, are skipped.

    Parameters
    ----------
    embedding
        Cells x dimensions.
    batches
        Batch per cell.
    labels
        Cell type per cell; None: all cells one label.
    alpha
        Significance level of each neighbourhood's test (default ``KBET_ALPHA`` = 0.05, kBET's).
    k0
        Neighbourhood size; None: :func:`kbet_k0` of the label's batch sizes.

    Returns
    -------
    float
        In [0, 1], 1 = no neighbourhood rejected; NaN when no label qualifies.
    """
    from scipy.stats import chi2

    batches = pd.Series(batches).astype(str).to_numpy()
    labels = np.zeros(len(batches), dtype=int) if labels is None else pd.Series(labels).astype(str).to_numpy()
    rejection = []
    for label in pd.unique(labels):
        mask = labels == label
        sub_batches = batches[mask]
        levels, codes = np.unique(sub_batches, return_inverse=True)
        if len(levels) < 2:
            continue
        sizes = np.bincount(codes)
        if mask.sum() < KBET_MIN_CELLS and k0 is None:
            continue
        k = min(k0 or kbet_k0(sizes), int(mask.sum()))
        if k < 2:
            continue
        _, neighbours = knn(embedding[mask], k - 1)
        idx = np.column_stack([np.arange(mask.sum()), neighbours])  # R kBET: the cell and its k0 - 1 neighbours
        observed = np.stack([(codes[idx] == b).sum(axis=1) for b in range(len(levels))], axis=1)
        expected = k * sizes / sizes.sum()
        statistic = ((observed - expected) ** 2 / expected).sum(axis=1)
        p_values = chi2.sf(statistic, df=len(levels) - 1)
        rejection.append(np.mean(p_values < alpha))
    return float(1.0 - np.mean(rejection)) if rejection else float("nan")


def subsample(n: int, max_cells: int, seed: int) -> np.ndarray:
    """Return the indices of at most ``max_cells`` of ``n`` cells (all of them, in order, when ``n`` is small).

    Parameters
    ----------
    n
        Number of cells.
    max_cells
        The most cells kept.
    seed
        Random seed of the draw (without replacement).

    Returns
    -------
    numpy.ndarray
        Sorted cell indices.
    """
    if n <= max_cells:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=max_cells, replace=False))


def integration_metrics(
    embedding: np.ndarray,
    batches,
    labels=None,
    *,
    max_cells: int = 20000,
    seed: int = 0,
) -> dict[str, Any]:
    """Compute every integration metric of one embedding for one batch key (and label key when ``labels`` is given).

    Parameters
    ----------
    embedding
        Cells x dimensions (e.g. the first ``n_pcs`` PCs or Harmony's corrected PCs).
    batches
        Batch per cell.
    labels
        Cell type per cell; None: label-conservation metrics and graph connectivity are NaN.
    max_cells
        Cells scored (a seeded subsample above it; default 20,000 keeps exact kNN and silhouettes tractable).
    seed
        Seed of the subsample.

    Returns
    -------
    dict
        ``cells_scored, kbet_acceptance, ilisi, batch_asw, graph_connectivity, clisi, label_asw``.
    """
    idx = subsample(embedding.shape[0], max_cells, seed)
    emb = np.asarray(embedding, dtype=np.float64)[idx]
    batches = pd.Series(batches).astype(str).to_numpy()[idx]
    labels = None if labels is None else pd.Series(labels).astype(str).to_numpy()[idx]
    distances, indices = knn(emb, LISI_NEIGHBOURS)
    k_graph = min(GRAPH_NEIGHBOURS, indices.shape[1])
    result = {
        "cells_scored": int(len(idx)),
        "kbet_acceptance": kbet_acceptance(emb, batches, labels),
        "ilisi": ilisi(distances, indices, batches),
        "batch_asw": batch_asw(emb, batches, labels),
        # Without labels the largest component of the whole graph measures cell-type separation, not
        # integration: left out.
        "graph_connectivity": float("nan") if labels is None else graph_connectivity(indices[:, :k_graph], labels),
        "clisi": float("nan"),
        "label_asw": float("nan"),
    }
    if labels is not None:
        result["clisi"] = clisi(distances, indices, labels)
        result["label_asw"] = label_asw(emb, labels)
    return result
