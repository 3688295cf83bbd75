"""The malignant call: CNV scores, neighbourhood correlation, CNV-high cells, malignant clusters."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..log import get_logger, timed
from ..stats import conformal_quantile
from .clusters import arm_summary, cluster_cnv, smooth_over_neighbours, window_arms
from .infer import infer_cnv
from .positions import MALIGNANT_LABEL, NORMAL_EPITHELIAL_LABEL
from .reference import _in_list, candidate_mask, normal_tissue_mask, reference_mask, reference_plan
from .settings import CnvSettings

if TYPE_CHECKING:
    from anndata import AnnData

logger = get_logger(__package__)


@dataclass
class CnvResult:
    """What :func:`call_malignant` adds besides the AnnData columns."""

    plan: pd.DataFrame
    clusters: pd.DataFrame
    arms: pd.DataFrame
    window_arms: np.ndarray
    summary: pd.DataFrame
    notes: dict[str, Any] = field(default_factory=dict)


def _pearson_rows(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of two equally shaped matrices (0 where a row is constant)."""
    A = A - A.mean(axis=1, keepdims=True)
    B = B - B.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (A * B).sum(axis=1) / norms, 0.0)


def neighbourhood_correlation(
    X, graph, in_consensus: np.ndarray, in_null: np.ndarray, null_sum: np.ndarray, n_null: int
) -> np.ndarray:
    """Correlate each cell's neighbourhood-averaged CNV profile with the candidate-minus-null contrast.

    The contrast is computed *without* the cell's neighbourhood. ``graph`` (cells x cells, binary, self included)
    defines the neighbourhood N(i); ``in_consensus`` marks the candidate cells whose mean makes the patient profile,
    ``in_null`` the held-out reference cells among these rows; ``null_sum`` / ``n_null`` are the sum and number of all
    held-out rows of the group. For cell i the contrast is mean(candidates outside N(i)) - mean(held-out cells outside
    N(i)): a cell is never compared with a profile it or its neighbours helped to make. (Averaging correlations over
    neighbours, as before, let each candidate's neighbours be correlated with a candidate mean that contained the
    candidate, and each held-out cell's neighbours with a held-out mean that contained it, which pushed candidates up
    and the null down.) Subtracting the held-out mean removes the baseline's own noise, which every row shares.

    Parameters
    ----------
    X
        CNV rows of the group's cells (cells x windows, sparse or dense).
    graph
        Cells x cells binary neighbourhood graph, self included.
    in_consensus
        Boolean per row: candidate cells whose mean is the patient profile.
    in_null
        Boolean per row: held-out reference cells among the rows.
    null_sum
        Sum of all held-out rows of the group (one value per window).
    n_null
        Number of held-out rows summed in ``null_sum``.

    Returns
    -------
    numpy.ndarray
        Pearson correlation per row (0 where a profile is constant).
    """
    X = sp.csr_matrix(X)
    cand = sp.csr_matrix(X.multiply(in_consensus[:, None].astype(np.float64)))
    nul = sp.csr_matrix(X.multiply(in_null[:, None].astype(np.float64)))
    cand_sum = np.asarray(cand.sum(axis=0)).ravel()
    n_cand = int(in_consensus.sum())
    graph = sp.csr_matrix(graph)
    out = np.zeros(X.shape[0])
    for start in range(0, X.shape[0], 2000):
        g = graph[start : start + 2000]
        degree = np.asarray(g.sum(axis=1)).ravel()
        profile = np.asarray((g @ X).todense()) / np.maximum(degree, 1)[:, None]
        k_cand = g @ in_consensus.astype(np.float64)
        k_null = g @ in_null.astype(np.float64)
        rest_cand = (cand_sum[None, :] - np.asarray((g @ cand).todense())) / np.maximum(n_cand - k_cand, 1)[:, None]
        rest_null = (null_sum[None, :] - np.asarray((g @ nul).todense())) / np.maximum(n_null - k_null, 1)[:, None]
        out[start : start + 2000] = _pearson_rows(profile, rest_cand - rest_null)
    return out


def cnv_high(
    adata: AnnData,
    group: np.ndarray,
    nulls: dict,
    is_candidate: np.ndarray,
    distances,
    level: float,
    crossed: np.ndarray | None = None,
):
    """Call CNV-high cells against the held-out reference cells of their group.

    A cell is CNV-high when its CNV correlation is above the conformal ``level`` quantile
    (:func:`tmeflow.stats.conformal_quantile`) of the held-out reference cells' correlations and its CNV score above
    their median. The held-out cells (:func:`infer_cnv`) are scored exactly like the candidates: rows against the same
    baseline and noise filter, then :func:`neighbourhood_correlation` over the same CNV neighbour graph (the baseline
    half, scored against the other half, is left out of every neighbourhood); the CNV score is averaged over the same
    neighbourhoods. inferCNV and CopyKAT likewise judge cells against normal cells that did not build what they are
    compared with. For patients inferred against the cohort-wide reference, held-out cells of other patients are not in
    the patient's graph: their single-cell rows are correlated with the contrast without themselves, which varies more
    than a neighbourhood average, so that threshold is conservative.

    Parameters
    ----------
    adata
        Cells after :func:`tmeflow.cnv.infer_cnv` (``obsm['X_cnv']``) and :func:`tmeflow.cnv.cluster_cnv`.
    group
        Inference group label per cell (patient, or the cohort-wide group).
    nulls
        :class:`~tmeflow.cnv.ReferenceNull` per group: the held-out reference cells and their CNV rows.
    is_candidate
        Boolean per cell: candidate (possibly malignant) cells.
    distances
        CNV-neighbour distances of all cells (cells x cells, block-diagonal by patient).
    level
        ``cnv_score_quantile`` (default 0.95): the null quantile a correlation must exceed.
    crossed
        Boolean per cell: reference cells held out for a group they are not in, or ``None``.

    Returns
    -------
    tuple
        ``(cnv_high, correlation, raw_score, smoothed_score, threshold, patient_thresholds)``: boolean and float
        arrays per cell (threshold: the correlation cut of the cell's group) and a dict patient -> cut.
    """
    X = sp.csr_matrix(adata.obsm["X_cnv"])
    comparable = np.ones(adata.n_obs, dtype=bool) if crossed is None else ~crossed
    raw = np.asarray(abs(X).mean(axis=1)).ravel()
    smoothed = smooth_over_neighbours(raw, distances, comparable)
    graph = sp.csr_matrix((sp.csr_matrix(distances) > 0).astype(np.float64)) @ sp.diags(comparable.astype(np.float64))
    graph = sp.csr_matrix(graph + sp.identity(adata.n_obs, format="csr"))
    patients = adata.obs["patient"].astype(str).to_numpy()
    correlation = np.zeros(adata.n_obs)
    threshold = np.full(adata.n_obs, np.nan)
    score_floor = np.full(adata.n_obs, np.nan)
    patient_thresholds = {}
    for patient in pd.unique(patients):
        in_patient = patients == patient
        cells = np.flatnonzero(in_patient)
        if not is_candidate[cells].any():
            patient_thresholds[patient] = np.nan
            continue
        null = nulls[str(group[cells[0]])]
        null_sum = np.asarray(null.matrix.sum(axis=0)).ravel()
        n_null = null.matrix.shape[0]
        here = np.zeros(adata.n_obs, dtype=bool)
        here[null.cells[null.in_group]] = True
        here &= in_patient
        correlation[cells] = neighbourhood_correlation(
            X[cells], graph[cells][:, cells], is_candidate[cells], here[cells], null_sum, n_null
        )
        own = np.isin(null.cells, cells) & null.in_group
        corr_values = np.zeros(n_null)
        corr_values[own] = correlation[null.cells[own]]
        if (~own).any():  # held-out cells outside this patient's graph: each row alone, without itself
            others = null.matrix[~own].toarray()
            cand_mean = np.asarray(X[cells[is_candidate[cells]]].mean(axis=0)).ravel()
            rest_null = (null_sum[None, :] - others) / max(n_null - 1, 1)
            corr_values[~own] = _pearson_rows(others, cand_mean[None, :] - rest_null)
        score_values = np.where(own, smoothed[null.cells], np.asarray(abs(null.matrix).mean(axis=1)).ravel())
        patient_thresholds[patient] = conformal_quantile(corr_values, level)
        threshold[in_patient] = patient_thresholds[patient]
        score_floor[in_patient] = float(np.median(score_values)) if len(score_values) else np.nan
    above = (correlation > threshold) & (smoothed > score_floor)
    return above, correlation, raw, smoothed, threshold, patient_thresholds


def call_malignant(adata: AnnData, settings: CnvSettings, *, n_jobs: int = 1) -> CnvResult:
    """Infer CNVs, score and cluster the cells, and call malignant cells (steps 2-7 of :mod:`tmeflow.cnv`).

    Parameters
    ----------
    adata
        Log-normalised cells (``X``: log1p CP10k) whose ``var`` carries positions
        (:func:`tmeflow.cnv.annotate_positions`) and whose ``obs`` has ``patient``, ``cell_type`` and, when
        present, ``compartment``, ``condition`` and ``sample``.
    settings
        The stage's ``cnv_options`` (reference and candidate types, window, step, quantile, cluster rules, seed).
    n_jobs
        Worker processes for infercnvpy's smoothing.

    Returns
    -------
    CnvResult
        Reference plan per patient, the CNV-cluster table, the arm summary, the arm of every window and the
        per-patient summary table.

    Adds
    ----
    ``obs['cnv_score']``, ``obs['cnv_score_cell']``
        Mean absolute CNV signal of the cell averaged over its CNV neighbours, and the cell's own value.
    ``obs['cnv_correlation']``, ``obs['cnv_threshold']``
        Neighbourhood CNV correlation with the patient contrast, and the null cut it is compared with.
    ``obs['cnv_high']``, ``obs['malignant']``
        CNV-high cells, and the malignant call (candidates of malignant CNV clusters).
    ``obs['cnv_reference']``, ``obs['cnv_candidate']``, ``obs['cnv_group']``
        Reference cells, candidate cells and the inference group (patient or cohort).
    ``obs['cnv_cluster']``
        CNV cluster ``<patient>:<n>``.
    ``obs['cell_type']``, ``obs['cell_type_pre_cnv']``
        ``Malignant`` / ``Epithelial (normal)`` relabelling of candidates, and the label before it.
    ``obsm['X_cnv']``, ``obsm['X_cnv_pca']``, ``uns['cnv']``
        CNV matrix (cells x windows), its PCA within each patient, and ``chr_pos`` (first window per chromosome).
    """
    obs = adata.obs
    is_reference = reference_mask(obs, settings)
    is_candidate = candidate_mask(obs, settings)
    plan = reference_plan(obs, is_reference, settings.cnv_min_reference_cells)
    for row in plan.itertuples():
        logger.info(
            "patient %s: %d reference cells -> %s reference",
            row.patient,
            row.n_reference_cells,
            "own" if row.reference == "patient" else "cohort-wide",
        )
    with timed(
        logger, f"CNV inference on {adata.n_obs} cells x {int(adata.var['chromosome'].notna().sum())} positioned genes"
    ):
        anchors = _in_list(obs["cell_type"], settings.reference_types)
        group, profile_cells, nulls, crossed = infer_cnv(
            adata,
            plan,
            is_reference,
            normal_tissue_mask(obs, settings),
            settings,
            n_jobs=n_jobs,
            anchors=anchors,
            candidates=is_candidate,
        )
    with timed(logger, "CNV clustering (PCA, neighbours, Leiden)"):
        distances = cluster_cnv(adata, resolution=settings.cnv_leiden_resolution, seed=settings.seed)
    above, correlation, raw, smoothed, threshold, patient_thresholds = cnv_high(
        adata, group, nulls, is_candidate, distances, settings.cnv_score_quantile, crossed=crossed
    )

    cluster_table = _cluster_table(adata.obs["cnv_cluster"], is_candidate, above, is_reference, smoothed, settings)
    malignant_clusters = set(cluster_table.loc[cluster_table["malignant"], "cnv_cluster"])
    # clusters that fail only the reference rule (mixed clusters): their CNV-high candidates are still malignant
    mostly_high = set(
        cluster_table.loc[
            cluster_table["fraction_candidates_above"] >= settings.cnv_cluster_min_fraction, "cnv_cluster"
        ]
    )
    cluster_of = adata.obs["cnv_cluster"]  # pandas' hashed isin: numpy's sorts a million strings
    malignant = is_candidate & (
        cluster_of.isin(malignant_clusters).to_numpy() | (above & cluster_of.isin(mostly_high).to_numpy())
    )

    obs["cnv_score"] = smoothed.astype(np.float32)
    obs["cnv_score_cell"] = raw.astype(np.float32)
    obs["cnv_correlation"] = correlation.astype(np.float32)
    obs["cnv_threshold"] = threshold.astype(np.float32)
    obs["cnv_high"] = above
    obs["cnv_reference"] = is_reference
    obs["cnv_candidate"] = is_candidate
    obs["cnv_group"] = pd.Categorical(group)
    obs["malignant"] = malignant
    _relabel(adata, is_candidate, malignant)

    plan["cnv_correlation_threshold"] = [patient_thresholds[p] for p in plan["patient"]]
    arms = window_arms(
        adata.var, settings.cnv_window, settings.cnv_step, adata.uns["cnv"]["chr_pos"], adata.obsm["X_cnv"].shape[1]
    )
    arm_table = arm_summary(adata, arms, settings.cnv_arm_threshold)
    summary = _summary(adata, plan, arm_table)
    logger.info(
        "malignant cells: %d of %d candidates (%d CNV clusters, %d malignant)",
        int(malignant.sum()),
        int(is_candidate.sum()),
        len(cluster_table),
        len(malignant_clusters),
    )
    return CnvResult(plan=plan, clusters=cluster_table, arms=arm_table, window_arms=arms, summary=summary)


def _cluster_table(
    cnv_cluster: pd.Series,
    is_candidate: np.ndarray,
    above: np.ndarray,
    is_reference: np.ndarray,
    score: np.ndarray,
    settings: CnvSettings,
) -> pd.DataFrame:
    """One row per CNV cluster: its cells, candidates, reference cells, CNV-high fraction, mean score and call.

    Each cluster's cells come from one grouping of the cluster codes (in cell order, so the means are those of a
    boolean selection), not from comparing every cell with every cluster: a million cells fall into thousands.
    """
    codes = cnv_cluster.cat.codes.to_numpy()
    members_of = pd.Series(np.arange(len(codes))).groupby(codes).indices
    rows = []
    for position, cluster in enumerate(cnv_cluster.cat.categories):
        members = members_of.get(position, np.arange(0))
        candidates = members[is_candidate[members]]
        frac_above = float(above[candidates].mean()) if len(candidates) else 0.0
        frac_ref = float(is_reference[members].mean())
        rows.append(
            {
                "cnv_cluster": cluster,
                "n_cells": len(members),
                "n_candidates": len(candidates),
                "n_reference": int(is_reference[members].sum()),
                "fraction_candidates_above": frac_above,
                "fraction_reference": frac_ref,
                "mean_cnv_score": float(score[members].mean()),
                "malignant": bool(
                    len(candidates)
                    and frac_above >= settings.cnv_cluster_min_fraction
                    and frac_ref <= settings.cnv_cluster_max_reference
                ),
            }
        )
    return pd.DataFrame(rows)


def _relabel(adata: AnnData, is_candidate: np.ndarray, malignant: np.ndarray) -> None:
    obs = adata.obs
    before = obs["cell_type"].astype(str).to_numpy()
    obs["cell_type_pre_cnv"] = pd.Categorical(before)
    epithelial_like = pd.Series(before).str.contains("epithel", case=False).to_numpy()
    if "compartment" in obs.columns:
        epithelial_like |= obs["compartment"].astype(str).str.contains("epithel", case=False).to_numpy()
    after = before.astype(object).copy()
    after[is_candidate & malignant] = MALIGNANT_LABEL
    after[is_candidate & ~malignant & epithelial_like] = NORMAL_EPITHELIAL_LABEL
    obs["cell_type"] = pd.Categorical(after)


def _summary(adata: AnnData, plan: pd.DataFrame, arms: pd.DataFrame) -> pd.DataFrame:
    obs = adata.obs
    patients = obs["patient"].astype(str)
    rows = []
    for row in plan.itertuples():
        cells = (patients == row.patient).to_numpy()
        n_cand = int(obs["cnv_candidate"].to_numpy()[cells].sum())
        n_mal = int(obs["malignant"].to_numpy()[cells].sum())
        calls = arms[(arms["patient"] == row.patient) & (arms["cnv_cluster"] == "all")]
        rows.append(
            {
                "Sample": row.patient,
                "cells": row.n_cells,
                "candidates": n_cand,
                "malignant": n_mal,
                "pct_malignant_of_candidates": 100.0 * n_mal / n_cand if n_cand else 0.0,
                "reference": row.reference,
                "reference_cells": row.reference_cells_used,
                "median_cnv_score_malignant": float(
                    np.median(obs["cnv_score"].to_numpy()[cells & obs["malignant"].to_numpy()])
                )
                if n_mal
                else 0.0,
                "arm_gains": ",".join(calls.loc[calls["call"] == "gain", "chr_arm"]) or "none",
                "arm_losses": ",".join(calls.loc[calls["call"] == "loss", "chr_arm"]) or "none",
            }
        )
    return pd.DataFrame(rows)
