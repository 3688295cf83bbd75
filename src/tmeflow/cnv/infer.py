"""CNV inference (infercnvpy), scores, CNV clusters, arm calls and the malignant call."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..log import get_logger, timed
from ..text import split_list
from .positions import MALIGNANT_LABEL, NORMAL_EPITHELIAL_LABEL, N_PCS, SCORE_NEIGHBOURS, _chrom
from .reference import candidate_mask, neighbour_transformer, normal_tissue_mask, reference_mask, reference_plan, reference_profiles


logger = get_logger(__package__)


# ----------------------------------------------------------------------------------------------
# Inference
# ----------------------------------------------------------------------------------------------
@dataclass
class CnvResult:
    """What :func:`call_malignant` adds besides the AnnData columns."""

    plan: pd.DataFrame
    clusters: pd.DataFrame
    arms: pd.DataFrame
    window_arms: np.ndarray
    summary: pd.DataFrame
    notes: dict[str, Any] = field(default_factory=dict)


def excluded_chromosomes(params: dict[str, Any]) -> list[str]:
    """``cnv_exclude_chromosomes`` as infercnvpy names chromosomes (``chr``-prefixed)."""
    return ["chr" + _chrom(c) for c in split_list(params["cnv_exclude_chromosomes"])]


NOISE_SD_AMPLIFIER = 1.5
"""infercnvpy's ``dynamic_threshold`` (inferCNV's ``sd_amplifier``): CNV values within this many SDs
of 0 are set to 0."""


def chunk_cells(n_genes: int) -> int:
    """Cells per infercnvpy call (bounds the dense cells x genes block to ~2e7 values)."""
    return max(200, min(2000, int(2e7 // max(n_genes, 1))))


def infer_group(sub, reference: np.ndarray, params: dict[str, Any], *, n_jobs: int = 1) -> tuple[dict, sp.csr_matrix]:
    """:func:`infercnvpy.tl.infercnv` on one inference group, with one noise threshold for the group.

    infercnvpy sets to 0 the values below ``dynamic_threshold`` x the SD of each *chunk* of cells it
    processes, so a cell's CNV profile depended on the cells that shared its chunk (a chunk full of
    malignant cells has a larger SD than one of normal cells) and on the chunk size. Here infercnvpy
    runs without its filter, chunk by chunk (:func:`chunk_cells`), and the filter uses the SD of all
    the group's values (computed in a first pass when the group spans several chunks): the same
    result as infercnvpy's when the group fits in one chunk, and independent of chunking otherwise."""
    import infercnvpy as cnv

    chunk = chunk_cells(sub.n_vars)
    starts = list(range(0, sub.n_obs, chunk))

    def rows(start: int):
        chr_pos, matrix, _ = cnv.tl.infercnv(
            sub[start:start + chunk], reference=reference, window_size=params["cnv_window"], step=params["cnv_step"],
            exclude_chromosomes=excluded_chromosomes(params), lfc_clip=params["cnv_lfc_clip"], dynamic_threshold=None,
            inplace=False, n_jobs=n_jobs, chunksize=chunk,
        )
        return chr_pos, (matrix.toarray() if sp.issparse(matrix) else np.asarray(matrix))

    if len(starts) == 1:
        chr_pos, block = rows(0)
        cached = [block]
        sd = float(np.std(block))
    else:  # first pass: the SD of every value of the group, as infercnvpy's np.std of a chunk
        cached, total, squares, count = [], 0.0, 0.0, 0
        for start in starts:
            chr_pos, block = rows(start)
            values = block.astype(np.float64)
            total, squares, count = total + values.sum(), squares + np.square(values).sum(), count + values.size
        mean = total / count
        sd = float(np.sqrt(max(squares / count - mean * mean, 0.0)))
    threshold = NOISE_SD_AMPLIFIER * sd
    out = []
    for index, start in enumerate(starts):
        block = cached[index] if cached else rows(start)[1]
        block[np.abs(block) < threshold] = 0
        out.append(sp.csr_matrix(block, dtype=np.float32))
    return chr_pos, sp.vstack(out).tocsr()


def infer_cnv(adata, plan: pd.DataFrame, is_reference: np.ndarray, normal_tissue: np.ndarray, params: dict[str, Any],
              *, n_jobs: int = 1):
    """Run infercnvpy per inference group; store ``obsm['X_cnv']`` (cells in ``adata`` order) and
    ``uns['cnv']``; return the per-cell group label and the mask of the cells whose profiles formed
    the reference (normal-tissue candidate-like cells when the group has ``cnv_min_reference_cells``
    of them, else the reference cell types)."""
    patients = adata.obs["patient"].astype(str).to_numpy()
    group = np.where(np.isin(patients, plan.loc[plan["reference"] == "patient", "patient"].to_numpy()), patients, "cohort")
    profile_cells = np.zeros(adata.n_obs, dtype=bool)
    blocks: list[sp.csr_matrix] = []
    order: list[np.ndarray] = []
    chr_pos = None
    for name in pd.unique(group):
        cells = np.flatnonzero(group == name)
        ref_cells = is_reference & (group == name) if name != "cohort" else is_reference.copy()
        normal_cells = ref_cells & normal_tissue
        if normal_cells.sum() >= params["cnv_min_reference_cells"]:
            ref_cells = normal_cells
        else:
            ref_cells = ref_cells & ~normal_tissue
        profile_cells |= ref_cells
        profiles, used = reference_profiles(adata.X, adata.obs["cell_type"], ref_cells)
        logger.info("CNV inference for %s: %d cells against %d %sreference cells (%s)",
                    "patients without enough reference cells" if name == "cohort" else f"patient {name}",
                    len(cells), int(ref_cells.sum()), "normal-tissue " if ref_cells[normal_tissue].any() else "",
                    ", ".join(used))
        genes = adata.var["cnv_gene"].to_numpy(dtype=bool)
        chr_pos, matrix = infer_group(adata[cells, genes], profiles[:, genes], params, n_jobs=n_jobs)
        blocks.append(matrix)
        order.append(cells)
    stacked = sp.vstack(blocks).tocsr()
    inverse = np.empty(adata.n_obs, dtype=np.int64)
    inverse[np.concatenate(order)] = np.arange(adata.n_obs)
    adata.obsm["X_cnv"] = stacked[inverse]
    adata.uns["cnv"] = {"chr_pos": {k: int(v) for k, v in chr_pos.items()}}
    return group, profile_cells


def window_arms(var: pd.DataFrame, params: dict[str, Any], chr_pos: dict[str, int], n_windows: int) -> np.ndarray:
    """Chromosome arm of every CNV window (the arm of its central gene), as infercnvpy lays them out."""
    window, step = params["cnv_window"], params["cnv_step"]
    placed = var[var["cnv_gene"].to_numpy(dtype=bool)]
    arms = np.empty(n_windows, dtype=object)
    for chrom, first in chr_pos.items():
        genes = placed[placed["chromosome"] == chrom].sort_values("start")
        n = len(genes)
        if n > window:
            centres = np.arange(0, n - window + 1)[::step] + window // 2
        else:
            centres = np.array([n // 2])
        arms[first:first + len(centres)] = genes["chr_arm"].to_numpy()[centres]
    return arms


def smooth_over_neighbours(values: np.ndarray, distances) -> np.ndarray:
    """Average of each cell's value and its CNV neighbours' values."""
    graph = sp.csr_matrix((distances > 0).astype(np.float64) + sp.identity(distances.shape[0], format="csr"))
    return np.asarray(graph @ values).ravel() / np.asarray(graph.sum(axis=1)).ravel()


def cnv_scores(X_cnv, distances=None) -> tuple[np.ndarray, np.ndarray]:
    """Per-cell mean |CNV| and its average over the cell's CNV neighbours (raw, smoothed)."""
    raw = np.asarray(abs(X_cnv).mean(axis=1)).ravel()
    if distances is None:
        return raw, raw
    return raw, smooth_over_neighbours(raw, distances)


def profile_correlation(X_cnv, consensus: np.ndarray) -> np.ndarray:
    """Pearson correlation of each cell's CNV profile with a consensus profile."""
    X = X_cnv.toarray() if sp.issparse(X_cnv) else np.asarray(X_cnv)
    centred = consensus - consensus.mean()
    norm_c = np.linalg.norm(centred)
    out = np.zeros(X.shape[0])
    for start in range(0, X.shape[0], 5000):
        block = X[start:start + 5000]
        block = block - block.mean(axis=1, keepdims=True)
        norms = np.linalg.norm(block, axis=1) * norm_c
        with np.errstate(invalid="ignore", divide="ignore"):
            out[start:start + 5000] = np.where(norms > 0, block @ centred / norms, 0.0)
    return out


EXACT_NEIGHBOURS_MAX_CELLS = 30000


def _cluster_key(label: str) -> tuple:
    patient, _, number = str(label).rpartition(":")
    return (patient, int(number)) if number.isdigit() else (str(label), -1)


def cluster_cnv(adata, params: dict[str, Any]):
    """CNV-PCA, neighbours and Leiden clusters within each patient (``obs['cnv_cluster']``, labelled
    ``<patient>:<n>``); returns the CNV-neighbour distances of all cells (block-diagonal by patient).

    Malignant clones are patient-specific, so clustering per patient loses nothing and keeps the
    neighbour search quadratic in the patient's cells only (exact scikit-learn neighbours up to
    ``EXACT_NEIGHBOURS_MAX_CELLS`` cells, no numba compilation; pynndescent above)."""
    import anndata as ad
    import infercnvpy as cnv

    patients = adata.obs["patient"].astype(str).to_numpy()
    labels = np.empty(adata.n_obs, dtype=object)
    pcs = np.zeros((adata.n_obs, N_PCS), dtype=np.float32)
    rows, cols, values = [], [], []
    for patient in pd.unique(patients):
        cells = np.flatnonzero(patients == patient)
        if len(cells) < 3:
            labels[cells] = f"{patient}:0"
            continue
        sub = ad.AnnData(obs=pd.DataFrame(index=adata.obs_names[cells]))
        sub.obsm["X_cnv"] = adata.obsm["X_cnv"][cells]
        n_comps = int(min(N_PCS, len(cells) - 1, sub.obsm["X_cnv"].shape[1] - 1))
        cnv.tl.pca(sub, n_comps=n_comps, random_state=params["seed"])
        transformer = "sklearn" if len(cells) <= EXACT_NEIGHBOURS_MAX_CELLS else neighbour_transformer()
        # UMAP connectivities: the Gaussian kernel divides by zero where cells share one CNV profile
        # (flat, denoised normal cells), which left every cell a cluster of its own
        cnv.pp.neighbors(sub, n_neighbors=min(SCORE_NEIGHBOURS, len(cells) - 1), random_state=params["seed"],
                         method="umap", transformer=transformer)
        cnv.tl.leiden(sub, resolution=params["cnv_leiden_resolution"], random_state=params["seed"],
                      flavor="igraph", n_iterations=2, directed=False)
        labels[cells] = [f"{patient}:{k}" for k in sub.obs["cnv_leiden"].astype(str)]
        pcs[cells, :n_comps] = sub.obsm["X_cnv_pca"]
        dist = sp.coo_matrix(sub.obsp["cnv_neighbors_distances"])
        rows.append(cells[dist.row])
        cols.append(cells[dist.col])
        values.append(dist.data)
    adata.obs["cnv_cluster"] = pd.Categorical(labels, categories=sorted(pd.unique(labels), key=_cluster_key))
    adata.obsm["X_cnv_pca"] = pcs
    if rows:
        distances = sp.csr_matrix((np.concatenate(values), (np.concatenate(rows), np.concatenate(cols))), shape=(adata.n_obs, adata.n_obs))
    else:
        distances = sp.csr_matrix((adata.n_obs, adata.n_obs))
    adata.obsp["cnv_neighbors_distances"] = distances
    return distances


def arm_summary(adata, arms: np.ndarray, threshold: float) -> pd.DataFrame:
    """Mean CNV per arm over malignant cells, per patient (``cnv_cluster`` 'all') and patient x cluster."""
    X = adata.obsm["X_cnv"]
    malignant = adata.obs["malignant"].to_numpy(dtype=bool)
    arm_names = [a for a in pd.unique(arms) if a is not None]
    arm_order = sorted(arm_names, key=_arm_key)
    indicator = sp.csr_matrix(
        (np.ones(len(arms)), (np.arange(len(arms)), [arm_order.index(a) for a in arms])), shape=(len(arms), len(arm_order))
    )
    n_windows = np.asarray(indicator.sum(axis=0)).ravel()
    rows = []
    patients = adata.obs["patient"].astype(str).to_numpy()
    clusters = adata.obs["cnv_cluster"].astype(str).to_numpy()
    groups = []
    for patient in pd.unique(patients):
        cells = malignant & (patients == patient)
        if cells.any():
            groups.append((patient, "all", cells))
            for cluster in sorted(pd.unique(clusters[cells]), key=_cluster_key):
                groups.append((patient, cluster, cells & (clusters == cluster)))
    arm_index = np.array([arm_order.index(a) for a in arms])
    for patient, cluster, cells in groups:
        mean_window = np.asarray(X[cells].mean(axis=0)).ravel()
        per_arm = (mean_window @ indicator) / n_windows
        median_arm = [float(np.median(mean_window[arm_index == i])) for i in range(len(arm_order))]
        for arm, value, median, n_win in zip(arm_order, per_arm, median_arm, n_windows):
            call = "gain" if value > threshold else "loss" if value < -threshold else "neutral"
            rows.append({"patient": patient, "cnv_cluster": cluster, "n_cells": int(cells.sum()), "chr_arm": arm,
                         "n_windows": int(n_win), "mean_cnv": float(value), "median_cnv": median, "call": call})
    return pd.DataFrame(rows, columns=["patient", "cnv_cluster", "n_cells", "chr_arm", "n_windows", "mean_cnv", "median_cnv", "call"])


def _arm_key(arm: str) -> tuple:
    match = re.match(r"^(\d+)(.*)$", str(arm))
    return (0, int(match.group(1)), match.group(2)) if match else (1, 0, str(arm))


def call_malignant(adata, params: dict[str, Any], *, n_jobs: int = 1) -> CnvResult:
    """CNV inference, scores, clusters and malignant calls on an AnnData whose ``var`` carries positions
    (:func:`annotate_positions`); adds ``obs`` ``malignant``, ``cnv_score``, ``cnv_cluster`` and more."""
    obs = adata.obs
    is_reference = reference_mask(obs, params)
    is_candidate = candidate_mask(obs, params)
    plan = reference_plan(obs, is_reference, params["cnv_min_reference_cells"])
    for row in plan.itertuples():
        logger.info("patient %s: %d reference cells -> %s reference", row.patient, row.n_reference_cells,
                    "own" if row.reference == "patient" else "cohort-wide")
    with timed(logger, f"CNV inference on {adata.n_obs} cells x {int(adata.var['chromosome'].notna().sum())} positioned genes"):
        group, profile_cells = infer_cnv(adata, plan, is_reference, normal_tissue_mask(obs, params), params, n_jobs=n_jobs)
    with timed(logger, "CNV clustering (PCA, neighbours, Leiden)"):
        distances = cluster_cnv(adata, params)
    raw, smoothed = cnv_scores(adata.obsm["X_cnv"], distances=distances)
    patients = obs["patient"].astype(str).to_numpy()
    correlation = np.zeros(adata.n_obs)
    threshold = np.full(adata.n_obs, np.nan)
    score_floor = np.full(adata.n_obs, np.nan)
    patient_thresholds = {}
    for patient in pd.unique(patients):
        in_patient = patients == patient
        name = group[in_patient][0]
        ref = profile_cells & ((group == name) if name != "cohort" else np.ones(adata.n_obs, dtype=bool))
        consensus_cells = in_patient & is_candidate
        if not consensus_cells.any():
            patient_thresholds[patient] = np.nan
            continue
        consensus = np.asarray(adata.obsm["X_cnv"][consensus_cells].mean(axis=0)).ravel()
        correlation[in_patient] = profile_correlation(adata.obsm["X_cnv"][in_patient], consensus)
        ref_corr = profile_correlation(adata.obsm["X_cnv"][ref], consensus)
        patient_thresholds[patient] = float(np.quantile(ref_corr, params["cnv_score_quantile"]))
        threshold[in_patient] = patient_thresholds[patient]
        score_floor[in_patient] = float(np.median(smoothed[ref]))
    correlation = smooth_over_neighbours(correlation, distances)
    above = (correlation > threshold) & (smoothed > score_floor)

    clusters = adata.obs["cnv_cluster"].astype(str).to_numpy()
    rows = []
    for cluster in adata.obs["cnv_cluster"].cat.categories:
        in_cluster = clusters == cluster
        cand = in_cluster & is_candidate
        frac_above = float(above[cand].mean()) if cand.any() else 0.0
        frac_ref = float(is_reference[in_cluster].mean())
        rows.append({
            "cnv_cluster": cluster, "n_cells": int(in_cluster.sum()), "n_candidates": int(cand.sum()),
            "n_reference": int((in_cluster & is_reference).sum()), "fraction_candidates_above": frac_above,
            "fraction_reference": frac_ref, "mean_cnv_score": float(smoothed[in_cluster].mean()),
            "malignant": bool(cand.any() and frac_above >= params["cnv_cluster_min_fraction"]
                              and frac_ref <= params["cnv_cluster_max_reference"]),
        })
    cluster_table = pd.DataFrame(rows)
    malignant_clusters = set(cluster_table.loc[cluster_table["malignant"], "cnv_cluster"])
    # clusters that fail only the reference rule (mixed clusters): their CNV-high candidates are still malignant
    mostly_high = set(cluster_table.loc[cluster_table["fraction_candidates_above"] >= params["cnv_cluster_min_fraction"], "cnv_cluster"])
    malignant = is_candidate & (np.isin(clusters, list(malignant_clusters)) | (above & np.isin(clusters, list(mostly_high))))

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
    arms = window_arms(adata.var, params, adata.uns["cnv"]["chr_pos"], adata.obsm["X_cnv"].shape[1])
    arm_table = arm_summary(adata, arms, params["cnv_arm_threshold"])
    summary = _summary(adata, plan, arm_table)
    logger.info("malignant cells: %d of %d candidates (%d CNV clusters, %d malignant)",
                int(malignant.sum()), int(is_candidate.sum()), len(cluster_table), len(malignant_clusters))
    return CnvResult(plan=plan, clusters=cluster_table, arms=arm_table, window_arms=arms, summary=summary)


def _relabel(adata, is_candidate: np.ndarray, malignant: np.ndarray) -> None:
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


def _summary(adata, plan: pd.DataFrame, arms: pd.DataFrame) -> pd.DataFrame:
    obs = adata.obs
    patients = obs["patient"].astype(str)
    rows = []
    for row in plan.itertuples():
        cells = (patients == row.patient).to_numpy()
        n_cand = int(obs["cnv_candidate"].to_numpy()[cells].sum())
        n_mal = int(obs["malignant"].to_numpy()[cells].sum())
        calls = arms[(arms["patient"] == row.patient) & (arms["cnv_cluster"] == "all")]
        rows.append({
            "Sample": row.patient,
            "cells": row.n_cells,
            "candidates": n_cand,
            "malignant": n_mal,
            "pct_malignant_of_candidates": 100.0 * n_mal / n_cand if n_cand else 0.0,
            "reference": row.reference,
            "reference_cells": row.reference_cells_used,
            "median_cnv_score_malignant": float(np.median(obs["cnv_score"].to_numpy()[cells & obs["malignant"].to_numpy()])) if n_mal else 0.0,
            "arm_gains": ",".join(calls.loc[calls["call"] == "gain", "chr_arm"]) or "none",
            "arm_losses": ",".join(calls.loc[calls["call"] == "loss", "chr_arm"]) or "none",
        })
    return pd.DataFrame(rows)
