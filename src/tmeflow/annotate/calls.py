"""Per-cell marker scores (ULM), cluster calls, overrides and CellTypist labels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import io, ulm
from ..errors import TmeflowInputError
from ..log import get_logger
from .markers import MIN_GENES_PER_TYPE, UNKNOWN

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Scoring
# ----------------------------------------------------------------------------------------------
def score_column(cell_type: str) -> str:
    """Name the obs column of a type's score (no '/' or spaces, which HDF5 keys cannot hold).

    Parameters
    ----------
    cell_type
        Cell-type name.

    Returns
    -------
    str
        ``score_<type>`` with characters other than letters and digits replaced by ``_``.
    """
    return "score_" + "".join(c if c.isalnum() else "_" for c in cell_type)


def ulm_scores(adata: AnnData, net: pd.DataFrame) -> pd.DataFrame:
    """Score every cell for every cell type by decoupler's univariate linear model (Badia-i-Mompel et al. 2022).

    Computed in row blocks of ``X`` (:func:`tmeflow.ulm.ulm_scores`, decoupler's definitions), so ``X`` may stay
    on disk (:func:`tmeflow.io.h5ad_on_disk`).

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``.
    net
        Marker network (:func:`marker_network`: ``source`` cell type, ``target`` gene, ``weight``).

    Returns
    -------
    pandas.DataFrame
        Cells x types ULM t-values (0 where a type could not be scored).
    """
    scores = ulm.ulm_scores(adata.X, adata.var_names, adata.obs_names, net, tmin=MIN_GENES_PER_TYPE)
    return scores.fillna(0.0)


def call_clusters(
    cell_scores: pd.DataFrame, clusters: pd.Series, *, min_score: float, min_margin: float
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Call each cluster's cell type from the mean marker scores of its cells.

    Parameters
    ----------
    cell_scores
        Cells x types scores (:func:`ulm_scores`).
    clusters
        Cluster label per cell.
    min_score
        ``annotation_min_score``: a best mean score below it is ``Unknown``.
    min_margin
        ``annotation_min_margin``: a margin (best - second mean score) below it is ``Unknown``.

    Returns
    -------
    tuple of pandas.DataFrame
        ``(calls, means)``: per cluster ``cluster``, ``n_cells``, ``best_type``, ``best_score``, ``second_type``,
        ``second_score``, ``confidence`` (the margin), ``cell_type``, ``call``; and clusters x types mean scores.
    """
    clusters = clusters.astype(str)
    means = cell_scores.groupby(clusters.to_numpy(), observed=True).mean()
    means.index.name = "cluster"
    ordered = np.sort(means.to_numpy(), axis=1)
    best = means.idxmax(axis=1)
    top = ordered[:, -1]
    second = ordered[:, -2] if means.shape[1] > 1 else np.full(len(means), -np.inf)
    margin = top - second
    calls = pd.DataFrame(
        {
            "cluster": means.index,
            "n_cells": clusters.value_counts().reindex(means.index).to_numpy(),
            "best_type": best.to_numpy(),
            "best_score": top,
            "second_type": [
                row.drop(b).idxmax() if len(row) > 1 else "" for (_, row), b in zip(means.iterrows(), best, strict=True)
            ],
            "second_score": second,
            "confidence": margin,
        }
    )
    ambiguous = (calls["best_score"] < min_score) | (calls["confidence"] < min_margin)
    calls["cell_type"] = np.where(ambiguous, UNKNOWN, calls["best_type"])
    calls["call"] = np.where(ambiguous, "unknown (low score or margin)", "markers")
    return calls, means


def read_overrides(path: str | Path, clusters: set[str]) -> pd.DataFrame:
    """Read the cluster override table (columns ``cluster``, ``cell_type`` [, ``compartment``]).

    Parameters
    ----------
    path
        TSV or CSV; a missing file, column or unknown cluster is a one-line input error.
    clusters
        The clusters of the data.

    Returns
    -------
    pandas.DataFrame
        One row per overridden cluster.
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("annotation_overrides file not found", file=path)
    table = pd.read_csv(path, sep=None, engine="python", dtype=str)
    for column in ("cluster", "cell_type"):
        if column not in table.columns:
            raise TmeflowInputError(f"annotation_overrides lacks column '{column}'", file=path, column=column)
    table["cluster"] = table["cluster"].str.strip()
    unknown = sorted(set(table["cluster"]) - clusters)
    if unknown:
        raise TmeflowInputError(
            f"annotation_overrides names cluster(s) not in the data: {', '.join(unknown)}", file=path, column="cluster"
        )
    return table


def run_celltypist(adata: AnnData, model_path: str | Path, cluster_key: str) -> None:
    """Label the cells with a local CellTypist model (Dominguez Conde et al. 2022), majority voting by cluster.

    Parameters
    ----------
    adata
        Cells with log-normalised ``X`` (log1p CP10k, as CellTypist expects).
    model_path
        Local ``.pkl`` model (models are never downloaded).
    cluster_key
        ``obs`` column of the clusters used for majority voting.

    Adds
    ----
    ``obs['celltypist_label']``, ``obs['celltypist_majority']``
        Per-cell prediction and the cluster's majority label.
    ``obs['celltypist_conf']``
        Highest class probability per cell.
    """
    import celltypist

    path = Path(model_path)
    if not path.is_file():
        raise TmeflowInputError(
            "celltypist_model file not found (models are never downloaded; give a local .pkl)", file=path
        )
    try:
        model = celltypist.models.Model.load(model=str(path))
    except Exception as exc:  # noqa: BLE001
        raise TmeflowInputError(f"cannot load the CellTypist model ({type(exc).__name__})", file=path) from exc
    shared = len(set(model.features) & set(adata.var_names))
    if shared == 0:
        raise TmeflowInputError("the CellTypist model shares no gene with the data", file=path)
    labels, confidence = [], []
    for _, block in io.row_blocks(adata.X):  # a cell's prediction depends on its own expression only
        prediction = celltypist.annotate(adata.__class__(X=block, var=pd.DataFrame(index=adata.var_names)), model=model)
        labels.append(prediction.predicted_labels["predicted_labels"].astype(str).to_numpy())
        confidence.append(prediction.probability_matrix.max(axis=1).to_numpy())
    label = np.concatenate(labels)
    clusters = adata.obs[cluster_key].astype(str).to_numpy()
    majority = pd.crosstab(label, clusters).idxmax(axis=0)  # CellTypist's majority_vote (min_prop 0)
    adata.obs["celltypist_label"] = pd.Categorical(label)
    adata.obs["celltypist_majority"] = pd.Categorical(majority.reindex(clusters).astype(str).to_numpy())
    adata.obs["celltypist_conf"] = np.concatenate(confidence)
    logger.info("CellTypist (%s, %d of its genes in the data): %d labels", path.name, shared, majority.nunique())
