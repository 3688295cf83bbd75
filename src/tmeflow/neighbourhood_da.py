"""Cluster-free differential abundance on kNN neighbourhoods of the atlas (Milo-style).

When a cell *state* rather than a whole cell type expands between conditions (an SPP1+ macrophage
state inside the macrophages, a stress state of fibroblasts), cell-type proportions dilute it.
Milo (Dann et al. 2022, *Nat Biotechnol* 40:245) tests overlapping neighbourhoods of the kNN graph
instead, with the sample as the unit of replication.

Method (defaults of miloR/milopy where they apply)
    1. **Neighbours** on the integrated embedding (``X_scVI`` / ``X_pca_harmony`` / ``X_pca``, as
       ``tmeflow integrate`` wrote it), ``k = max(30, 10 x samples)`` (at most 200): Milo asks for at least 5 and gains
       power with more neighbourhoods of several cells per sample; the atlas's own 15-neighbour graph would give about
       two cells per sample and no power.
    2. **Index cells** (Milo's refined sampling): a seeded random ``da_nhood_prop`` (10%) of the
       cells, at most ``da_max_nhoods`` (the exact neighbour search costs drawn x all cells: linear in the
       cells with the cap, quadratic without); each is replaced by the member of its neighbourhood nearest
       to the neighbourhood's median position in the embedding; duplicates dropped. A **neighbourhood**
       is an index cell and its ``k - 1`` nearest neighbours.
    3. **Counts**: cells of each sample in each neighbourhood.
    4. **Test**: per neighbourhood, the logit of the sample's fraction of cells in it
       (``(n + 0.5) / (N + 1)``, ``N`` = the sample's cells), a linear model over every sample
       (``~ 0 + condition``, ``+ patient`` when paired) and the contrast ``test - reference`` with
       limma's empirical-Bayes moderation (:func:`tmeflow.composition.linear_model_test`; miloR
       uses edgeR's negative-binomial quasi-likelihood GLM instead; both treat samples as replicates).
    5. **Spatial FDR** (Milo's weighted Benjamini-Hochberg): p-values weighted by the inverse
       distance of each index cell to its k-th neighbour (densely sampled regions of the graph
       would otherwise count many overlapping tests), ``spatial_fdr``.

Outputs (per contrast): ``da_nhood_<contrast>.tsv`` (one row per neighbourhood: index cell, size,
majority ``cell_type`` and its fraction, ``logfc`` on the logit scale, ``t``, ``pvalue``,
``spatial_fdr``) and ``da_nhood_<contrast>.png`` (neighbourhood log fold changes per majority cell
type, Milo's beeswarm).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from .errors import TmeflowInputError
from .io import group_sums
from .log import get_logger

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__name__)

EMBEDDINGS = ("X_scVI", "X_pca_harmony", "X_pca")


def embedding_of(adata: AnnData) -> tuple[str, np.ndarray]:
    """Return the integrated embedding the atlas graph was built on (the first of :data:`EMBEDDINGS` present).

    Parameters
    ----------
    adata
        Atlas cells with ``obsm`` embeddings.

    Returns
    -------
    tuple
        ``(obsm key, cells x dimensions float64 array)``.
    """
    for key in EMBEDDINGS:
        if key in adata.obsm:
            return key, np.asarray(adata.obsm[key], dtype=np.float64)
    raise TmeflowInputError(f"atlas has no embedding ({', '.join(EMBEDDINGS)}) for neighbourhood DA", column="obsm")


#: drawn cells refined at a time by :func:`index_cells` (their neighbourhoods' coordinates in memory)
REFINE_BATCH = 5000


def nhood_size(n_samples: int) -> int:
    """Choose the neighbours per neighbourhood: ``max(30, 10 x samples)``, at most 200.

    Parameters
    ----------
    n_samples
        Samples in the cohort.

    Returns
    -------
    int
        ``k``.
    """
    return int(min(200, max(30, 10 * n_samples)))


def index_cells(
    embedding: np.ndarray, k: int, prop: float, seed: int, max_nhoods: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sample neighbourhood index cells by Milo's refined sampling (Dann et al. 2022).

    Each randomly drawn cell moves to the member of its ``k``-neighbourhood nearest to the neighbourhood's median
    position.

    Parameters
    ----------
    embedding
        Cells x dimensions.
    k
        Neighbours per neighbourhood (:func:`nhood_size`).
    prop
        Fraction of cells drawn (``da_nhood_prop``).
    seed
        Seed of the draw.
    max_nhoods
        Cells drawn at most (``da_max_nhoods``); 0: no cap.

    Returns
    -------
    tuple of numpy.ndarray
        Unique index cells (sorted), their neighbourhoods (index cells x ``k`` cell indices, the index cell
        included) and the distance of each index cell to its k-th neighbour.
    """
    from sklearn.neighbors import NearestNeighbors

    k = min(k, embedding.shape[0])
    rng = np.random.default_rng(seed)
    n_drawn = max(1, int(round(prop * embedding.shape[0])))
    drawn = rng.choice(embedding.shape[0], size=min(n_drawn, max_nhoods) if max_nhoods > 0 else n_drawn, replace=False)
    search = NearestNeighbors(n_neighbors=k).fit(embedding)
    refined: np.ndarray = np.empty(len(drawn), dtype=np.int64)
    for start in range(0, len(drawn), REFINE_BATCH):  # batches: ~drawn x k x dimensions floats otherwise (GBs)
        _, members = search.kneighbors(embedding[drawn[start : start + REFINE_BATCH]])
        around = embedding[members]
        nearest = np.argmin(np.linalg.norm(around - np.median(around, axis=1)[:, None, :], axis=2), axis=1)
        refined[start : start + len(members)] = members[np.arange(len(members)), nearest]
    index = np.unique(refined)
    distances, neighbourhoods = search.kneighbors(embedding[index])
    return index, neighbourhoods, distances[:, -1]


def nhood_matrix(neighbourhoods: np.ndarray, n_cells: int) -> sp.csr_matrix:
    """Build the cells x neighbourhoods membership matrix.

    Parameters
    ----------
    neighbourhoods
        Neighbourhoods x ``k`` cell indices (:func:`index_cells`).
    n_cells
        Cells in the atlas.

    Returns
    -------
    scipy.sparse.csr_matrix
        Cells x neighbourhoods, 1 where the cell belongs.
    """
    n_nhoods, k = neighbourhoods.shape
    return sp.csr_matrix(
        (np.ones(n_nhoods * k, dtype=np.float32), (neighbourhoods.ravel(), np.repeat(np.arange(n_nhoods), k))),
        shape=(n_cells, n_nhoods),
    )


def spatial_fdr(pvalues: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Adjust neighbourhood p-values by Milo's weighted Benjamini-Hochberg (``graphSpatialFDR``).

    ``p_(i) * sum(w) / cumsum(w)_(i)`` in p-value order, made monotone from the largest p down.

    Parameters
    ----------
    pvalues
        One p-value per neighbourhood.
    weights
        Per neighbourhood (1 / distance to the k-th neighbour: dense regions weigh less).

    Returns
    -------
    numpy.ndarray
        Spatial FDR per neighbourhood, capped at 1; NaN where the p-value or weight is not finite.
    """
    out = np.full(len(pvalues), np.nan)
    ok = np.isfinite(pvalues) & np.isfinite(weights)
    if not ok.any():
        return out
    p, w = pvalues[ok], weights[ok]
    order = np.argsort(p, kind="stable")
    adjusted = p[order] * w.sum() / np.cumsum(w[order])
    adjusted = np.minimum.accumulate(adjusted[::-1])[::-1]
    values = np.empty(len(p))
    values[order] = np.minimum(adjusted, 1.0)
    out[ok] = values
    return out


def nhood_counts(membership: sp.csr_matrix, samples_of_cells: np.ndarray, samples: list[str]) -> pd.DataFrame:
    """Count each sample's cells in every neighbourhood.

    Parameters
    ----------
    membership
        Cells x neighbourhoods (:func:`nhood_matrix`).
    samples_of_cells
        Sample per cell.
    samples
        Sample order of the rows.

    Returns
    -------
    pandas.DataFrame
        Samples x neighbourhoods cell counts.
    """
    codes = pd.Categorical(samples_of_cells, categories=samples).codes
    return pd.DataFrame(group_sums(membership, codes, len(samples)), index=samples)


def contrast_neighbourhoods(
    counts: pd.DataFrame,
    sample_sizes: pd.Series,
    samples: pd.DataFrame,
    test: str,
    reference: str,
    *,
    paired: bool,
    moderated: bool = True,
) -> pd.DataFrame:
    """Test ``test - reference`` on every neighbourhood's logit fraction of the sample's cells (step 4).

    Parameters
    ----------
    counts
        Samples x neighbourhoods cell counts.
    sample_sizes
        Cells per sample.
    samples
        :func:`tmeflow.composition.sample_table`.
    test, reference
        The contrasted conditions.
    paired
        Block on patient.
    moderated
        Empirical-Bayes moderated t (default).

    Returns
    -------
    pandas.DataFrame
        :func:`tmeflow.composition.linear_model_test` table, one row per neighbourhood.
    """
    from .composition import contrast_design, linear_model_test

    kept, design, contrast = contrast_design(samples, test, reference, paired=paired)
    fraction = (counts.loc[kept.index] + 0.5).div(sample_sizes.loc[kept.index] + 1.0, axis=0)
    return linear_model_test(np.log(fraction / (1 - fraction)), design, coef=contrast, moderated=moderated)


def neighbourhood_da(
    adata: AnnData,
    samples: pd.DataFrame,
    pairs: list[tuple[str, str]],
    *,
    prop: float,
    fdr: float,
    moderated: bool,
    seed: int,
    max_nhoods: int = 0,
) -> dict[str, pd.DataFrame]:
    """Test Milo-style neighbourhood differential abundance for every contrast (see the module docstring).

    Parameters
    ----------
    adata
        Cells with ``obs`` ``sample``, ``cell_type`` and an integrated embedding (:data:`EMBEDDINGS`).
    samples
        :func:`tmeflow.composition.sample_table`.
    pairs
        ``(test, reference)`` contrasts.
    prop
        Fraction of cells sampled as neighbourhood indices (``da_nhood_prop``).
    fdr
        Spatial FDR logged as a call (``da_fdr``).
    moderated
        Empirical-Bayes moderated t (``da_moderated``).
    seed
        Seed of the index sampling.
    max_nhoods
        Cells drawn as index cells at most (``da_max_nhoods``); 0: no cap.

    Returns
    -------
    dict
        ``<test>_vs_<reference>`` -> one row per neighbourhood: ``index_cell``, ``n_cells``, majority
        ``cell_type`` and ``cell_type_fraction``, ``logfc``, ``t``, ``df``, ``pvalue``, ``spatial_fdr``.
    """
    from .composition import contrast_name, is_paired

    key, embedding = embedding_of(adata)
    k = nhood_size(len(samples))
    index, neighbourhoods, kth_distance = index_cells(embedding, k, prop, seed, max_nhoods)
    membership = nhood_matrix(neighbourhoods, adata.n_obs)
    sizes = np.full(len(index), neighbourhoods.shape[1])
    weights = 1.0 / np.maximum(kth_distance, 1e-12)
    cell_samples = adata.obs["sample"].astype(str).to_numpy()
    counts = nhood_counts(membership, cell_samples, list(samples.index))
    sample_sizes = pd.Series(cell_samples).value_counts().reindex(samples.index).astype(float)
    majority, purity = _majority_type(membership, adata.obs["cell_type"].astype(str).to_numpy())
    logger.info("neighbourhood DA: %d neighbourhoods of %d cells on %s", len(index), k, key)
    tables = {}
    for test, reference in pairs:
        fit = contrast_neighbourhoods(
            counts,
            sample_sizes,
            samples,
            test,
            reference,
            paired=is_paired(samples, test, reference),
            moderated=moderated,
        )
        table = pd.DataFrame(
            {
                "index_cell": adata.obs_names[index],
                "n_cells": sizes.astype(int),
                "cell_type": majority,
                "cell_type_fraction": purity,
                "logfc": fit["logfc"].to_numpy(),
                "t": fit["t"].to_numpy(),
                "df": fit["df"].to_numpy(),
                "pvalue": fit["pvalue"].to_numpy(),
            }
        )
        table["spatial_fdr"] = spatial_fdr(table["pvalue"].to_numpy(), weights)
        name = contrast_name(test, reference)
        logger.info(
            "neighbourhood DA %s: %d of %d neighbourhoods differ (spatial FDR < %g)",
            name,
            int((table["spatial_fdr"] < fdr).sum()),
            len(table),
            fdr,
        )
        tables[name] = table
    return tables


def _majority_type(membership: sp.csr_matrix, cell_types: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    categories = pd.Categorical(cell_types)
    one_hot = sp.csr_matrix(
        (np.ones(len(cell_types)), (np.arange(len(cell_types)), categories.codes)),
        shape=(len(cell_types), len(categories.categories)),
    )
    per_nhood = np.asarray((membership.T @ one_hot).todense())
    best = per_nhood.argmax(axis=1)
    return np.asarray(categories.categories)[best], per_nhood.max(axis=1) / np.maximum(per_nhood.sum(axis=1), 1)


def plot_beeswarm(table: pd.DataFrame, fdr: float, title: str) -> Figure:
    """Draw the neighbourhood log fold changes per majority cell type (Milo's beeswarm).

    Parameters
    ----------
    table
        :func:`neighbourhood_da` table of one contrast (``cell_type``, ``logfc``, ``spatial_fdr``).
    fdr
        Spatial FDR below which a neighbourhood is coloured (red up, blue down; others grey).
    title
        Figure title.

    Returns
    -------
    Figure
        One row of jittered points per cell type, ordered by mean log fold change; the caller saves it.
    """
    from .plotting import pyplot

    plt = pyplot()
    types = table.groupby("cell_type")["logfc"].mean().sort_values().index.tolist()
    fig, ax = plt.subplots(figsize=(6.0, max(2.5, 0.35 * len(types) + 1)))
    rng = np.random.default_rng(0)  # jitter only
    for row, cell_type in enumerate(types):
        part = table[table["cell_type"] == cell_type]
        significant = (part["spatial_fdr"] < fdr).to_numpy()
        y = row + rng.uniform(-0.3, 0.3, len(part))
        ax.scatter(part["logfc"][~significant], y[~significant], s=6, color="0.7", linewidths=0)
        ax.scatter(
            part["logfc"][significant],
            y[significant],
            s=8,
            c=np.sign(part["logfc"][significant]),
            cmap="coolwarm",
            vmin=-1,
            vmax=1,
            linewidths=0,
        )
    ax.axvline(0, color="k", lw=0.6)
    ax.set_yticks(range(len(types)))
    ax.set_yticklabels(types, fontsize=7)
    ax.set_xlabel("neighbourhood log fold change (logit fraction)")
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig
