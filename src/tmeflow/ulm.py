"""Univariate linear model (ULM) scores of gene sets, computed in row blocks from sums.

decoupler's ``ulm`` (Badia-i-Mompel et al. 2022, Bioinform Adv) scores a cell for a gene set by regressing
the cell's expression over the genes on the set's weights (1 for a member, 0 otherwise) and reporting the
t-value of the slope. decoupler densifies its input in blocks of 250,000 cells over all genes (20 GB at
20,000 genes), more than a million-cell atlas allows. The statistic only needs, per cell, the sum and the
sum of squares of its expression and its products with the weights, so here it is computed from those sums
over row blocks of a sparse (in memory or on disk) matrix, in O(non-zeros) time and O(cells x sets) memory.

The definitions are decoupler's (its ``extract``, ``prune`` and ``_func_ulm``): the genes are those detected
(a stored value) in at least one cell; a set keeps its members among them and is scored only with at least
``tmin`` members; r is the Pearson correlation between the cell's expression and the weights over those
genes, t = r sqrt(df / ((1 - r)(1 + r))) with df = genes - 2. A cell with no detected gene scores NaN.
``tests/test_ulm.py`` checks agreement with ``decoupler.mt.ulm``.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .io import row_blocks

_EPS = 2.2e-16  # decoupler's guard against r = +-1


def ulm_scores(matrix, genes: pd.Index, cells: pd.Index, net: pd.DataFrame, *, tmin: int) -> pd.DataFrame:
    """Score every cell for every gene set of ``net`` by the ULM t-value (decoupler's ``ulm``).

    Parameters
    ----------
    matrix
        Cells x genes expression (log-normalised): a dense array, a scipy sparse matrix or an h5ad's backed
        CSR dataset (:func:`anndata.io.sparse_dataset`), read in row blocks (:func:`tmeflow.io.row_blocks`).
    genes
        The matrix's gene names.
    cells
        The matrix's cell names (the result's index).
    net
        ``source`` (set), ``target`` (gene), ``weight``; one row per set and gene.
    tmin
        Fewest members among the detected genes for a set to be scored.

    Returns
    -------
    pandas.DataFrame
        Cells x scored sets (sorted), the t-values; NaN for a cell with no detected gene.
    """
    net = net[net["target"].isin(genes)]
    sources = pd.Index(sorted(net["source"].unique()))
    weights = np.zeros((len(genes), len(sources)))
    weights[genes.get_indexer(net["target"]), sources.get_indexer(net["source"])] = net["weight"].to_numpy()
    members: np.ndarray = np.zeros(weights.shape, dtype=bool)
    members[genes.get_indexer(net["target"]), sources.get_indexer(net["source"])] = True

    sums, squares = np.zeros(len(cells)), np.zeros(len(cells))
    products = np.zeros((len(cells), len(sources)))
    detected: np.ndarray = np.zeros(len(genes), dtype=bool)
    for start, rows_in_memory in row_blocks(matrix):
        block = sp.csr_matrix(rows_in_memory, dtype=np.float64)
        rows = slice(start, start + block.shape[0])
        sums[rows] = np.asarray(block.sum(axis=1)).ravel()
        squares[rows] = np.asarray(block.multiply(block).sum(axis=1)).ravel()
        products[rows] = block @ weights
        detected[block.indices] = True

    scored = members[detected].sum(axis=0) >= tmin
    universe = weights[detected][:, scored]  # undetected genes are 0 in every cell: they add nothing to the products
    n = int(detected.sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        covariance = (products[:, scored] - sums[:, None] * universe.mean(axis=0)) / (n - 1)
        spread = np.sqrt(np.maximum(squares - sums**2 / n, 0.0) / (n - 1))
        r = covariance / (spread[:, None] * universe.std(axis=0, ddof=1))
        t = r * np.sqrt((n - 2) / ((1.0 - r + _EPS) * (1.0 + r + _EPS)))
    return pd.DataFrame(t, index=cells, columns=sources[scored])
