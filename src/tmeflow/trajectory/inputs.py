"""Trajectory inputs: the cell subset and the root cell."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import TmeflowInputError
from ..log import get_logger
from ..text import split_list
from .settings import TrajectorySettings

logger = get_logger(__name__)

EPITHELIAL_PATTERN = re.compile(r"epithel|malignant|tumou?r|cancer|carcinoma", re.IGNORECASE)


def subset_mask(obs: pd.DataFrame, spec: str | None, *, file: str | Path | None = None) -> np.ndarray:
    """Select the cells of the compartments or cell types named in ``spec`` (``trajectory_subset``).

    A name matches a ``compartment`` first, else ``cell_type`` / ``cell_type_fine`` (case-insensitive);
    ``epithelial`` also takes epithelial-like cell types and cells called malignant.

    Parameters
    ----------
    obs
        Cell metadata of the atlas.
    spec
        Comma-separated names; all cells when empty.
    file
        Input file named by the error.

    Returns
    -------
    numpy.ndarray
        Boolean mask over ``obs``.

    Raises
    ------
    TmeflowInputError
        A name matches no compartment or cell type.
    """
    names = split_list(spec)
    if not names:
        return np.ones(len(obs), dtype=bool)
    mask: np.ndarray = np.zeros(len(obs), dtype=bool)
    for name in names:
        low = name.lower()
        if "compartment" in obs.columns:
            hit = obs["compartment"].astype(str).str.lower().to_numpy() == low
            if hit.any():
                mask |= hit
                continue
        hit = np.zeros(len(obs), dtype=bool)
        for column in ("cell_type", "cell_type_fine"):
            if column in obs.columns:
                hit |= obs[column].astype(str).str.lower().to_numpy() == low
        if low == "epithelial":
            hit |= obs["cell_type"].astype(str).str.contains(EPITHELIAL_PATTERN).to_numpy()
            if "malignant" in obs.columns:
                hit |= obs["malignant"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
        if not hit.any():
            raise TmeflowInputError(
                f"trajectory_subset names '{name}', which is neither a compartment nor a cell type of the atlas",
                column="cell_type",
            )
        mask |= hit
    return mask


MIN_CELLS_PER_GROUP = 10  # a (sample, cell type) group keeps at least this many cells (or all it has)


def subsample_cells(obs: pd.DataFrame, max_cells: int, seed: int) -> np.ndarray:
    """Choose about ``max_cells`` cells, each (sample, cell type) group in proportion to its size.

    Every group keeps at least :data:`MIN_CELLS_PER_GROUP` cells (or all it has), so each sample stays
    in the per-sample fate summaries and a rare root cell type is not lost; the total may exceed
    ``max_cells`` by that floor.

    Parameters
    ----------
    obs
        Cell metadata of the trajectory subset (``sample`` and ``cell_type`` when present).
    max_cells
        The cap (``trajectory_max_cells``); 0 or at least ``len(obs)`` keeps every cell.
    seed
        Random seed of the draw.

    Returns
    -------
    numpy.ndarray
        Sorted positions of the chosen cells in ``obs``.
    """
    if max_cells <= 0 or len(obs) <= max_cells:
        return np.arange(len(obs))
    columns = [column for column in ("sample", "cell_type") if column in obs.columns]
    groups = obs[columns].astype(str).agg("|".join, axis=1) if columns else pd.Series("all", index=obs.index)
    rng = np.random.default_rng(seed)
    fraction = max_cells / len(obs)
    chosen = []
    for positions in groups.groupby(groups.to_numpy(), sort=True).indices.values():
        n_keep = min(len(positions), max(round(fraction * len(positions)), MIN_CELLS_PER_GROUP))
        chosen.append(rng.choice(positions, size=n_keep, replace=False))
    return np.sort(np.concatenate(chosen))


def root_gene_score(adata: AnnData, genes: list[str], *, file: str | Path | None = None) -> np.ndarray:
    """Score cells for the root genes: the neighbourhood-smoothed mean z-score of the expressed root genes.

    Parameters
    ----------
    adata
        The embedded subset (``obsp['connectivities']``, log-normalised ``X``).
    genes
        Root genes (``trajectory_root_genes``); absent ones are ignored with a warning.
    file
        Input file named by errors.

    Returns
    -------
    numpy.ndarray
        Score per cell (mean over the cell and its kNN neighbours).

    Raises
    ------
    TmeflowInputError
        No root gene is in ``adata`` or none is expressed.
    """
    present = [g for g in genes if g in adata.var_names]
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        logger.warning("root genes not in the atlas, ignored: %s", ", ".join(missing))
    if not present:
        raise TmeflowInputError(
            f"none of the trajectory_root_genes ({', '.join(genes)}) is in the atlas var_names", file=file
        )
    X = adata[:, present].X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    expressed = (X > 0).sum(axis=0)
    if not expressed.any():
        raise TmeflowInputError(
            f"the trajectory_root_genes ({', '.join(present)}) are not expressed in the trajectory subset", file=file
        )
    X = X[:, expressed > 0]
    z = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-9)
    score = z.mean(axis=1)
    conn = adata.obsp["connectivities"] + sp.identity(adata.n_obs, format="csr")
    conn = sp.diags(1.0 / np.asarray(conn.sum(axis=1)).ravel()) @ conn
    return np.asarray(conn @ score).ravel()


def root_in_group(adata: AnnData, mask: np.ndarray) -> int:
    """Return the cell of ``mask`` at the extreme of the diffusion component that best separates it from the rest.

    Parameters
    ----------
    adata
        Cells with ``obsm['X_diffmap']`` (components 1-5 are considered).
    mask
        The root group (a cell type or cluster).

    Returns
    -------
    int
        Index of the root cell (the group's extreme cell of diffusion component 1 when the group is everything).
    """
    dcs = adata.obsm["X_diffmap"][:, 1:6]
    if mask.all():
        return int(np.argmax(dcs[:, 0]))
    diff = dcs[mask].mean(axis=0) - dcs[~mask].mean(axis=0)
    effect = np.abs(diff) / np.maximum(dcs.std(axis=0), 1e-12)
    k = int(np.argmax(effect))
    values = np.where(mask, dcs[:, k] * np.sign(diff[k] or 1.0), -np.inf)
    return int(np.argmax(values))


def choose_root(adata: AnnData, settings: TrajectorySettings, *, file: str | Path | None = None) -> tuple[int, str]:
    """Choose the root cell: by root genes, else root cell type, else root cluster, else diffusion component 1.

    Parameters
    ----------
    adata
        The embedded subset (``obsm['X_diffmap']``, ``obs['trajectory_cluster']``).
    settings
        ``trajectory_root_genes``, ``trajectory_root_type`` and ``trajectory_root_cluster`` (first set wins).
    file
        Input file named by errors.

    Returns
    -------
    tuple
        ``(index of the root cell, how it was chosen)``.

    Raises
    ------
    TmeflowInputError
        The root type or cluster is not in the subset; no usable root gene.
    """
    genes = settings.root_genes
    if genes:
        score = root_gene_score(adata, genes, file=file)
        return int(np.argmax(score)), f"root genes {', '.join(genes)}"
    root_type = settings.root_type
    if root_type:
        types = adata.obs["cell_type"].astype(str)
        mask = (types == root_type).to_numpy()
        if not mask.any() and "cell_type_fine" in adata.obs.columns:
            mask = (adata.obs["cell_type_fine"].astype(str) == root_type).to_numpy()
        if not mask.any():
            raise TmeflowInputError(
                f"trajectory_root_type '{root_type}' is not a cell type of the trajectory subset "
                f"(types: {', '.join(sorted(types.unique()))})",
                file=file,
                column="cell_type",
            )
        return root_in_group(adata, mask), f"cell type {root_type}"
    cluster = settings.root_cluster
    if cluster:
        labels = adata.obs["trajectory_cluster"].astype(str)
        mask = (labels == cluster).to_numpy()
        if not mask.any():
            raise TmeflowInputError(
                f"trajectory_root_cluster '{cluster}' is not a cluster of the trajectory subset "
                f"(clusters: {', '.join(sorted(labels.unique(), key=lambda c: (len(c), c)))})",
                file=file,
            )
        return root_in_group(adata, mask), f"cluster {cluster}"
    logger.warning("no trajectory_root_genes / _type / _cluster given: root = extreme cell of diffusion component 1")
    return int(np.argmax(adata.obsm["X_diffmap"][:, 1])), "diffusion component 1 (no root given)"
