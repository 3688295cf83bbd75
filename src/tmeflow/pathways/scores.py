"""Per-cell and pseudobulk scores: log-CPM, pseudobulk profiles, module scores, PROGENy activities."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import TmeflowInputError
from ..io import group_sums, row_blocks
from ..log import get_logger
from ..signatures import resource_path
from ..ulm import ulm_scores
from .gene_sets import (
    PROGENY,
    column_name,
)

if TYPE_CHECKING:
    from anndata import AnnData

logger = get_logger("tmeflow.pathways")

#: fewest footprint genes in the data for a PROGENy pathway to be scored
PROGENY_TMIN = 5


def log_cpm(counts: pd.DataFrame) -> pd.DataFrame:
    """Transform a samples x genes count table to log2(CPM + 1), genes x samples.

    Parameters
    ----------
    counts
        Samples x genes counts.

    Returns
    -------
    pandas.DataFrame
        Genes x samples log2(CPM + 1).
    """
    totals = counts.sum(axis=1).replace(0, 1)
    return np.log2(counts.div(totals, axis=0) * 1e6 + 1).T


def pseudobulk_profiles(adata: AnnData, by: list[str], min_cells: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Sum the raw counts per combination of the ``obs`` columns ``by`` (pseudobulk profiles).

    Parameters
    ----------
    adata
        Cells with raw counts in ``layers['counts']`` (in memory or on disk: read in row blocks).
    by
        ``obs`` columns defining the groups (e.g. ``sample``, ``condition``, ``cell_type``).
    min_cells
        Groups with fewer cells are dropped.

    Returns
    -------
    tuple of pandas.DataFrame
        ``(groups x genes counts, group table)``: the table has the ``by`` columns and ``n_cells``.
    """
    counts = adata.layers["counts"] if "counts" in adata.layers else None
    if counts is None:
        raise TmeflowInputError("atlas has no layers['counts'] (raw counts are needed for pseudobulk ssGSEA)")
    keys = adata.obs[by].astype(str).agg("|".join, axis=1).to_numpy()
    labels = pd.Categorical(keys)
    sizes = np.bincount(labels.codes, minlength=len(labels.categories))
    summed = group_sums(counts, labels.codes, len(labels.categories))  # counts may stay on disk
    frame = pd.DataFrame(summed, index=labels.categories.astype(str), columns=adata.var_names.astype(str))
    keep = sizes >= min_cells
    meta = pd.DataFrame([k.split("|") for k in frame.index[keep]], columns=by, index=frame.index[keep])
    meta["n_cells"] = sizes[keep]
    return frame.loc[keep], meta


def control_genes(genes: list[str], gene_means: pd.Series, *, ctrl_size: int, n_bins: int, seed: int) -> pd.Index:
    """Draw a gene set's control genes from expression bins, as scanpy's ``score_genes`` (Seurat's AddModuleScore).

    The genes are binned by the rank of their mean expression over all cells into ``n_bins`` bins; from every
    bin holding a set gene ``ctrl_size`` genes are drawn (all of the bin when it has fewer) and the set's genes
    removed. The draw uses numpy's legacy global generator seeded with ``seed``, as scanpy does, so the control
    genes are the ones ``scanpy.tl.score_genes(..., random_state=seed)`` picks.

    Parameters
    ----------
    genes
        The set's genes present in the data.
    gene_means
        Mean expression of every gene over all cells (index: gene names).
    ctrl_size
        Control genes drawn per bin.
    n_bins
        Expression bins.
    seed
        Seed of the draw.

    Returns
    -------
    pandas.Index
        The control genes, sorted.
    """
    np.random.seed(seed)  # scanpy's draw: pandas' sample on the legacy global generator
    means = gene_means[np.isfinite(gene_means)]
    items_per_bin = int(np.round(len(means) / (n_bins - 1)))
    bins = means.rank(method="min") // items_per_bin
    chosen = pd.Index([], dtype="string")
    for level in np.unique(bins.loc[genes]):
        candidates = bins.index[bins == level]
        if ctrl_size < len(candidates):
            candidates = candidates.to_series().sample(ctrl_size).index
        chosen = chosen.union(candidates.difference(genes))
    return chosen


def module_scores(adata: AnnData, sets: dict[str, list[str]], *, ctrl_size: int, seed: int) -> list[str]:
    """Score every cell for every gene set as scanpy's ``score_genes`` (Tirosh et al. 2016), in row blocks of ``X``.

    The score is the cell's mean expression over the set minus its mean over control genes of matched expression
    (:func:`control_genes`, 25 bins); the genes' means come from one pass over ``X`` and the scores from a
    second, a block of rows at a time, so ``X`` may stay on disk (:func:`tmeflow.io.h5ad_on_disk`). Same control
    genes and scores as ``scanpy.tl.score_genes(..., ctrl_size=ctrl_size, n_bins=25, random_state=seed)``.

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``.
    sets
        Set name -> genes.
    ctrl_size
        ``score_ctrl_size``: control genes per expression bin (25 bins).
    seed
        Seed of the control-gene draw.

    Returns
    -------
    list of str
        The score columns written.

    Adds
    ----
    ``obs['score_<set>']``
        Mean expression of the set minus that of the control genes (:func:`column_name`).
    """
    names = pd.Index(adata.var_names.astype(str))
    sums = np.zeros(adata.n_vars)
    for _, block in row_blocks(adata.X):
        sums += np.asarray(block.sum(axis=0, dtype=np.float64)).ravel()
    gene_means = pd.Series(sums / max(adata.n_obs, 1), index=names.astype("string"))
    columns, members = [], []
    for name, genes in sets.items():
        present = list(pd.Index(genes).intersection(names))
        if not present:
            raise TmeflowInputError(f"gene set {name}: none of its genes is in the atlas")
        controls = control_genes(present, gene_means, ctrl_size=ctrl_size, n_bins=25, seed=seed)
        columns.append(column_name("score", name))
        members.append((names.get_indexer(present), names.get_indexer(controls.astype(str))))
    scores = np.zeros((adata.n_obs, len(columns)))
    for start, block in row_blocks(adata.X):
        block = sp.csr_matrix(block, dtype=np.float64) if sp.issparse(block) else np.asarray(block, dtype=np.float64)
        in_block = slice(start, start + block.shape[0])
        for position, (in_set, controls) in enumerate(members):
            scores[in_block, position] = _row_means(block, in_set) - _row_means(block, controls)
    for name, values in zip(columns, scores.T, strict=True):
        adata.obs[name] = values
    return columns


def _row_means(block, columns: np.ndarray) -> np.ndarray:
    return np.asarray(block[:, columns].sum(axis=1)).ravel() / len(columns)


def progeny_activities(adata: AnnData, species: str, *, method: str, top: int) -> list[str]:
    """Infer PROGENy pathway activities per cell with decoupler (Schubert et al. 2018; bundled weights).

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``.
    species
        ``human`` or ``mouse`` (which bundled footprint table).
    method
        ``progeny_method``: decoupler method (e.g. ``ulm``, ``mlm``).
    top
        ``progeny_top``: footprint genes per pathway (the bundled table of that size).

    Returns
    -------
    list of str
        The activity columns written (empty, with a warning, when no footprint gene is in the atlas).

    Adds
    ----
    ``obs['progeny_<pathway>']``
        Activity score per cell and pathway.
    """
    import decoupler as dc

    net = pd.read_csv(resource_path(PROGENY.format(species=species, top=top)), sep="\t")
    net = net[["source", "target", "weight"]]
    present = net["target"].isin(adata.var_names)
    if not present.any():
        logger.warning("PROGENy: none of the footprint genes is in the atlas; no pathway activities")
        return []
    if method == "ulm":  # in row blocks (tmeflow.ulm: decoupler's definitions), X may stay on disk
        scores = ulm_scores(adata.X, adata.var_names, adata.obs_names, net, tmin=PROGENY_TMIN)
    else:  # decoupler's other methods on X in memory
        cells = type(adata)(X=adata.X.to_memory() if hasattr(adata.X, "to_memory") else adata.X, var=adata.var[[]])
        getattr(dc.mt, method)(data=cells, net=net, tmin=PROGENY_TMIN, verbose=False)
        scores = cells.obsm[f"score_{method}"]
    columns = []
    for pathway in scores.columns:
        column = column_name("progeny", str(pathway))
        adata.obs[column] = scores[pathway].to_numpy()
        columns.append(column)
    return columns
