"""Per-cell and pseudobulk scores: log-CPM, pseudobulk profiles, module scores, PROGENy activities."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import TmeflowInputError
from ..log import get_logger
from ..signatures import resource_path
from .gene_sets import (
    PROGENY,
    column_name,
)

if TYPE_CHECKING:
    from anndata import AnnData

logger = get_logger("tmeflow.pathways")


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
        Cells with raw counts in ``layers['counts']``.
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
    indicator = sp.csr_matrix(
        (np.ones(len(keys)), (labels.codes, np.arange(len(keys)))), shape=(len(labels.categories), len(keys))
    )
    summed = indicator @ sp.csr_matrix(counts)
    frame = pd.DataFrame(summed.toarray(), index=labels.categories.astype(str), columns=adata.var_names.astype(str))
    keep = sizes >= min_cells
    meta = pd.DataFrame([k.split("|") for k in frame.index[keep]], columns=by, index=frame.index[keep])
    meta["n_cells"] = sizes[keep]
    return frame.loc[keep], meta


def module_scores(adata: AnnData, sets: dict[str, list[str]], *, ctrl_size: int, seed: int) -> list[str]:
    """Score every cell for every gene set with scanpy ``score_genes`` (Tirosh et al. 2016).

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
    import scanpy as sc

    columns = []
    for name, genes in sets.items():
        column = column_name("score", name)
        sc.tl.score_genes(
            adata, genes, ctrl_size=ctrl_size, n_bins=25, score_name=column, random_state=seed, use_raw=False
        )
        columns.append(column)
    return columns


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
    getattr(dc.mt, method)(data=adata, net=net, tmin=5, verbose=False)
    scores = adata.obsm.pop(f"score_{method}")
    adata.obsm.pop(f"padj_{method}", None)
    columns = []
    for pathway in scores.columns:
        column = column_name("progeny", str(pathway))
        adata.obs[column] = scores[pathway].to_numpy()
        columns.append(column)
    return columns
