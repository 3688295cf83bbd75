"""CNV inference (infercnvpy), scores, CNV clusters, arm calls and the malignant call."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..log import get_logger, timed
from ..stats import conformal_quantile
from .positions import MIN_CELLS_PER_REFERENCE_TYPE, MALIGNANT_LABEL, NORMAL_EPITHELIAL_LABEL, N_PCS, SCORE_NEIGHBOURS
from .settings import CnvSettings
from .reference import _in_list, candidate_mask, neighbour_transformer, normal_tissue_mask, reference_mask, reference_plan, reference_profiles


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


NOISE_SD_AMPLIFIER = 1.5
"""Noise filter of the CNV matrix: values within this many SDs of the held-out reference cells' CNV
values are set to 0 (inferCNV's ``sd_amplifier`` and infercnvpy's ``dynamic_threshold``, both 1.5)."""

MIN_NULL_CELLS = 5
"""Fewest held-out reference cells per half; a smaller reference is not split (its null is then the
reference cells themselves, which built it: a warning says the calls are not calibrated)."""


@dataclass
class ReferenceNull:
    """The held-out reference cells of one inference group, scored exactly like its candidates."""

    cells: np.ndarray  # indices (adata order) of the held-out reference cells
    matrix: sp.csr_matrix  # their CNV rows against the group's baseline (denoised like every row)
    in_group: np.ndarray  # which of them belong to the group (their adata row is this row)
    noise_threshold: float
    held_out: bool


def split_reference(cell_types: np.ndarray, mask: np.ndarray, seed: int, salt: str) -> tuple[np.ndarray, np.ndarray]:
    """Split the reference cells at random (seeded), within each cell type, into a half that builds the
    baseline and a half that is the null; both are ``mask``-sized boolean arrays. A reference with
    fewer than ``2 * MIN_NULL_CELLS`` cells is not split (both masks are the whole reference)."""
    if mask.sum() < 2 * MIN_NULL_CELLS:
        return mask.copy(), mask.copy()
    rng = np.random.default_rng([int(seed), *(ord(ch) for ch in salt)])
    build = np.zeros(len(mask), dtype=bool)
    for cell_type in pd.unique(cell_types[mask]):
        members = rng.permutation(np.flatnonzero(mask & (cell_types == cell_type)))
        build[members[: (len(members) + 1) // 2]] = True
    return build, mask & ~build


def chunk_cells(n_genes: int) -> int:
    """Cells per infercnvpy call (bounds the dense cells x genes block to ~2e7 values)."""
    return max(200, min(2000, int(2e7 // max(n_genes, 1))))


def _infer_rows(adata, cells: np.ndarray, genes: np.ndarray, profiles: np.ndarray, settings: CnvSettings, n_jobs: int):
    """Undenoised CNV rows of ``cells`` against ``profiles`` (infercnvpy without its per-chunk noise
    filter), as (chr_pos, dense float32 block) per chunk of :func:`chunk_cells` cells."""
    import infercnvpy as cnv

    chunk = chunk_cells(int(genes.sum()))
    for start in range(0, len(cells), chunk):
        chr_pos, matrix, _ = cnv.tl.infercnv(
            adata[cells[start:start + chunk], genes], reference=profiles[:, genes], window_size=settings.cnv_window,
            step=settings.cnv_step, exclude_chromosomes=settings.excluded_chromosomes, lfc_clip=settings.cnv_lfc_clip,
            dynamic_threshold=None, inplace=False, n_jobs=n_jobs, chunksize=chunk,
        )
        yield start, chr_pos, np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float32)


def _rows(adata, cells, genes, profiles, settings: CnvSettings, n_jobs, offsets=None, samples=None, threshold=None,
          programme=None):
    """CNV rows of ``cells`` (csr, or dense when ``threshold`` is None), each minus its sample's offset
    and, for candidate cells of a type in ``programme`` (:class:`Programme`), minus that type's
    cross-patient consensus, and, with a ``threshold``, denoised chunk by chunk (memory stays one chunk
    of dense rows)."""
    blocks, chr_pos = [], None
    for start, chr_pos, block in _infer_rows(adata, cells, genes, profiles, settings, n_jobs):
        if offsets:
            block_samples = samples[cells[start:start + len(block)]]
            for sample, offset in offsets.items():
                block[block_samples == sample] -= offset
        if programme is not None:
            programme.subtract(block, cells[start:start + len(block)])
        if threshold is not None:
            block[np.abs(block) < threshold] = 0
            block = sp.csr_matrix(block)
        blocks.append(block)
    if not blocks:
        return chr_pos, None
    return chr_pos, (sp.vstack(blocks).tocsr() if threshold is not None else np.vstack(blocks))


MIN_CONSENSUS_PATIENTS = 3
"""Fewest patients with candidates of a cell type for its cross-patient consensus (with two, the median
is the mean and half of each patient's CNVs would enter it)."""

CONSENSUS_CELLS = 300
"""Candidate cells per patient and cell type (at most, seeded subsample) whose mean enters the consensus."""


@dataclass
class Programme:
    """Per candidate cell type, the cross-patient consensus CNV row that :func:`candidate_programme` found."""

    consensus: dict[str, np.ndarray]
    candidates: np.ndarray  # adata-sized mask of the cells it applies to
    cell_types: np.ndarray  # adata-sized cell-type labels

    def subtract(self, block: np.ndarray, cells: np.ndarray) -> None:
        for cell_type, row in self.consensus.items():
            block[self.candidates[cells] & (self.cell_types[cells] == cell_type)] -= row


def candidate_programme(adata, candidates: np.ndarray, genes: np.ndarray, profiles: np.ndarray, settings: CnvSettings,
                        n_jobs: int, offsets: dict[str, np.ndarray], samples: np.ndarray | None) -> Programme | None:
    """Cross-patient consensus of the candidates' CNV rows, per candidate cell type: against a reference
    of other cell types only (immune cells), the expression programme of the candidates' own cell type
    (e.g. epithelial genes) reads as a CNV of every candidate, normal or malignant. That programme is
    shared by the cell type in every patient, whereas copy-number changes of carcinomas are
    patient-specific (clonal). So, against the group's baseline, each patient's mean CNV row of the
    type's candidates (at most :data:`CONSENSUS_CELLS` per patient, after the sample offsets) is taken,
    and their window-wise median across patients is the type's expression programme, subtracted from its
    candidates' rows (cf. Tirosh et al. 2016, Science 352:189, who judged cells by the correlation with
    their own tumour's consensus CNV profile; CopyKAT and SCEVAN likewise look for what distinguishes a
    clone from the cell population's baseline). The median over at least :data:`MIN_CONSENSUS_PATIENTS`
    patients leaves out a change present in fewer than half of them; a change recurrent in most
    patients (e.g. a cancer type's hallmark arm event) is absorbed into the consensus and weakened.
    None when no candidate type has :data:`MIN_CONSENSUS_PATIENTS` patients with
    ``2 * MIN_CELLS_PER_REFERENCE_TYPE`` candidates of it."""
    patients = adata.obs["patient"].astype(str).to_numpy()
    cell_types = adata.obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(settings.seed)
    consensus = {}
    for cell_type in pd.unique(cell_types[candidates]):
        means = []
        for patient in pd.unique(patients[candidates]):
            cells = np.flatnonzero(candidates & (cell_types == cell_type) & (patients == patient))
            if len(cells) < 2 * MIN_CELLS_PER_REFERENCE_TYPE:
                continue
            if len(cells) > CONSENSUS_CELLS:
                cells = np.sort(rng.choice(cells, CONSENSUS_CELLS, replace=False))
            means.append(_rows(adata, cells, genes, profiles, settings, n_jobs, offsets, samples)[1].mean(axis=0))
        if len(means) >= MIN_CONSENSUS_PATIENTS:
            consensus[str(cell_type)] = np.median(np.vstack(means), axis=0).astype(np.float32)
            logger.info("candidate %s: cross-patient consensus of %d patients subtracted (its expression programme "
                        "against the reference types)", cell_type, len(means))
    if not consensus:
        return None
    return Programme(consensus, candidates.copy(), cell_types)


def sample_offsets(rows: np.ndarray, samples: np.ndarray, cell_types: np.ndarray) -> dict[str, np.ndarray]:
    """What every cell of a sample shares: per sample, the mean over anchor cell types (the reference
    cell types, e.g. T, NK, B, which carry no CNV) with at least ``MIN_CELLS_PER_REFERENCE_TYPE`` cells
    there of (the type's mean CNV row in the sample - its mean over all samples), shrunk towards 0 by
    the positive-part James-Stein factor ``max(0, 1 - noise / |offset|^2)`` (James & Stein 1961; noise:
    the summed sampling variance of the offset over windows). ``rows`` are the anchors' CNV rows
    against one baseline. A batch or sample effect on gene expression otherwise reads as a CNV shared
    by every cell of the sample, which the candidate profile picks up and the held-out reference cells
    of other samples (normal tissue) do not; an offset estimated from few anchors would add its own
    shared noise instead, hence the shrinkage (no batch effect: offsets near 0)."""
    offsets: dict[str, np.ndarray] = {}
    stats = {}
    for t in pd.unique(cell_types):
        of_type = rows[cell_types == t]
        stats[t] = (of_type.mean(axis=0), of_type.var(axis=0, ddof=1) if len(of_type) > 1 else np.zeros(rows.shape[1]), len(of_type))
    for sample in pd.unique(samples):
        parts, noise = [], []
        for t, (mean_all, _, n_all) in stats.items():
            here = rows[(samples == sample) & (cell_types == t)]
            if len(here) < MIN_CELLS_PER_REFERENCE_TYPE:
                continue
            parts.append(here.mean(axis=0) - mean_all)
            # variance of (sample mean - overall mean); the sample's cells are part of the overall mean
            noise.append(here.var(axis=0, ddof=1) * (1.0 / len(here) - 1.0 / n_all))
        if parts:
            offset = np.mean(parts, axis=0)
            energy = float(np.sum(np.mean(noise, axis=0)) / len(parts))
            norm = float(np.sum(offset.astype(np.float64) ** 2))
            factor = max(0.0, 1.0 - energy / norm) if norm > 0 else 0.0
            offsets[str(sample)] = (factor * offset).astype(np.float32)
    return offsets


def infer_cnv(adata, plan: pd.DataFrame, is_reference: np.ndarray, normal_tissue: np.ndarray, settings: CnvSettings,
              *, n_jobs: int = 1, anchors: np.ndarray | None = None, candidates: np.ndarray | None = None):
    """Run infercnvpy per inference group; store ``obsm['X_cnv']`` (cells in ``adata`` order) and
    ``uns['cnv']``; return the per-cell group label, the mask of the reference cells of every group
    (normal-tissue candidate-like cells when the group has ``cnv_min_reference_cells`` of them, else
    the reference cell types), each group's :class:`ReferenceNull` and the mask of the baseline
    halves (their rows are against the other half's baseline).

    Calibration (cross-fitting: inferCNV and CopyKAT compare cells with normal cells that did not take
    part in the comparison): the group's reference cells are split at random within each cell type
    (:func:`split_reference`). One half builds the baseline expression; the other half is scored
    against it exactly like the candidates (same rows, offsets, noise filter and, later, neighbour
    smoothing) and is the null of the malignant call. The baseline half's own rows are scored against
    the null half, so no reference cell is compared with a mean it belongs to (which shrank reference
    rows towards 0 and made other cells look CNV-rich). With an obs ``sample`` column and ``anchors``
    (cells of the reference cell types), each sample's shared offset (:func:`sample_offsets`) is
    subtracted from its cells' rows before the noise filter. The noise filter is inferCNV's
    (``NOISE_SD_AMPLIFIER`` SDs of the held-out reference cells' values, inferCNV ``sd_amplifier``), one
    value per group, instead of infercnvpy's SD of each chunk of cells, which made a cell's profile
    depend on the cells that shared its chunk. When the group's reference has no normal tissue of the
    candidates' type, the candidates' cross-patient consensus (:func:`candidate_programme`) is subtracted
    from their rows (``candidates``: the candidate mask)."""
    patients = adata.obs["patient"].astype(str).to_numpy()
    cell_types = adata.obs["cell_type"].astype(str).to_numpy()
    samples = adata.obs["sample"].astype(str).to_numpy() if "sample" in adata.obs.columns else None
    group = np.where(np.isin(patients, plan.loc[plan["reference"] == "patient", "patient"].to_numpy()), patients, "cohort")
    genes = adata.var["cnv_gene"].to_numpy(dtype=bool)
    profile_cells = np.zeros(adata.n_obs, dtype=bool)
    crossed_cells = np.zeros(adata.n_obs, dtype=bool)
    nulls: dict[str, ReferenceNull] = {}
    blocks: list[sp.csr_matrix] = []
    order: list[np.ndarray] = []
    chr_pos = None
    for name in pd.unique(group):
        members = group == name
        cells = np.flatnonzero(members)
        ref_cells = is_reference & members if name != "cohort" else is_reference.copy()
        normal_cells = ref_cells & normal_tissue
        if normal_cells.sum() >= settings.cnv_min_reference_cells:
            ref_cells = normal_cells
        elif (ref_cells & ~normal_tissue).any():
            ref_cells = ref_cells & ~normal_tissue
        profile_cells |= ref_cells
        build, null = split_reference(cell_types, ref_cells, settings.seed, str(name))
        held_out = not (build & null).any()
        if not held_out:
            logger.warning("CNV group %s has only %d reference cells: its null is the reference itself, so malignant "
                           "calls are not calibrated", name, int(ref_cells.sum()))
        profiles, used = reference_profiles(adata.X, adata.obs["cell_type"], build)
        logger.info("CNV inference for %s: %d cells against %d %sreference cells (%s), %d held out as the null",
                    "patients without enough reference cells" if name == "cohort" else f"patient {name}",
                    len(cells), int(build.sum()), "normal-tissue " if ref_cells[normal_tissue].any() else "",
                    ", ".join(used), int(null.sum()) if held_out else 0)
        null_cells = np.flatnonzero(null)
        in_group = members[null_cells]
        crossed = np.flatnonzero(build & members) if held_out else np.array([], dtype=int)
        crossed_cells[crossed] = True
        scored = cells[~null[cells] & ~build[cells]] if held_out else cells
        offsets: dict[str, np.ndarray] = {}
        if samples is not None and anchors is not None:
            relevant = np.isin(samples, pd.unique(samples[np.concatenate([cells, null_cells])]))
            anchor_cells = np.flatnonzero(anchors & relevant)
            if len(anchor_cells) and len(pd.unique(samples[anchor_cells])) > 1:
                _, anchor_rows = _rows(adata, anchor_cells, genes, profiles, settings, n_jobs)
                offsets = sample_offsets(anchor_rows, samples[anchor_cells], cell_types[anchor_cells])
                missing = sorted(set(pd.unique(samples[cells])) - set(offsets))
                if missing:
                    logger.info("CNV group %s: no sample offset for %s (fewer than %d cells of every reference type)",
                                name, ", ".join(missing), MIN_CELLS_PER_REFERENCE_TYPE)
        programme = None
        if not (ref_cells & normal_tissue).any() and candidates is not None and candidates[cells].any():
            programme = candidate_programme(adata, candidates, genes, profiles, settings, n_jobs, offsets, samples)
            if programme is None:
                logger.warning("CNV group %s: no normal-tissue cells of the candidates' type in the reference (cnv_normal_conditions) "
                               "and fewer than %d patients with candidates of one type for a cross-patient consensus; the null "
                               "holds only %s cells, so cell-type expression differences can look like CNVs (simulated "
                               "normal-only cohorts: 30-65%% of normal epithelial cells CNV-high)", name, MIN_CONSENSUS_PATIENTS,
                               ", ".join(sorted(pd.unique(cell_types[ref_cells]))))
        chr_pos, null_rows = _rows(adata, null_cells, genes, profiles, settings, n_jobs, offsets, samples)
        threshold = NOISE_SD_AMPLIFIER * float(np.std(null_rows))
        null_rows[np.abs(null_rows) < threshold] = 0
        null_matrix = sp.csr_matrix(null_rows)
        if len(scored):
            blocks.append(_rows(adata, scored, genes, profiles, settings, n_jobs, offsets, samples, threshold, programme)[1])
            order.append(scored)
        if len(crossed):  # the baseline half against the held-out half's baseline
            cross_profiles, _ = reference_profiles(adata.X, adata.obs["cell_type"], null)
            blocks.append(_rows(adata, crossed, genes, cross_profiles, settings, n_jobs, offsets, samples, threshold)[1])
            order.append(crossed)
        if held_out and in_group.any():
            blocks.append(null_matrix[in_group])
            order.append(null_cells[in_group])
        nulls[str(name)] = ReferenceNull(null_cells, null_matrix, in_group, threshold, held_out)
    stacked = sp.vstack(blocks).tocsr()
    inverse = np.empty(adata.n_obs, dtype=np.int64)
    inverse[np.concatenate(order)] = np.arange(adata.n_obs)
    adata.obsm["X_cnv"] = stacked[inverse]
    adata.uns["cnv"] = {"chr_pos": {k: int(v) for k, v in chr_pos.items()}}
    return group, profile_cells, nulls, crossed_cells


def window_arms(var: pd.DataFrame, window: int, step: int, chr_pos: dict[str, int], n_windows: int) -> np.ndarray:
    """Chromosome arm of every CNV window (the arm of its central gene), as infercnvpy lays them out."""
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


def smooth_over_neighbours(values: np.ndarray, distances, include: np.ndarray | None = None) -> np.ndarray:
    """Average of each cell's value and its CNV neighbours' values (only neighbours in ``include``
    when given: the baseline half of the reference, scored against the other half, is not comparable)."""
    edges = (distances > 0).astype(np.float64)
    if include is not None:
        edges = sp.csr_matrix(edges) @ sp.diags(np.asarray(include, dtype=np.float64))
    graph = sp.csr_matrix(edges + sp.identity(distances.shape[0], format="csr"))
    return np.asarray(graph @ values).ravel() / np.asarray(graph.sum(axis=1)).ravel()


EXACT_NEIGHBOURS_MAX_CELLS = 30000


def _cluster_key(label: str) -> tuple:
    patient, _, number = str(label).rpartition(":")
    return (patient, int(number)) if number.isdigit() else (str(label), -1)


def cluster_cnv(adata, *, resolution: float, seed: int):
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
        cnv.tl.pca(sub, n_comps=n_comps, random_state=seed)
        transformer = "sklearn" if len(cells) <= EXACT_NEIGHBOURS_MAX_CELLS else neighbour_transformer()
        # UMAP connectivities: the Gaussian kernel divides by zero where cells share one CNV profile
        # (flat, denoised normal cells), which left every cell a cluster of its own
        cnv.pp.neighbors(sub, n_neighbors=min(SCORE_NEIGHBOURS, len(cells) - 1), random_state=seed,
                         method="umap", transformer=transformer)
        cnv.tl.leiden(sub, resolution=resolution, random_state=seed,
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


def _pearson_rows(A: np.ndarray, B: np.ndarray) -> np.ndarray:
    """Row-wise Pearson correlation of two equally shaped matrices (0 where a row is constant)."""
    A = A - A.mean(axis=1, keepdims=True)
    B = B - B.mean(axis=1, keepdims=True)
    norms = np.linalg.norm(A, axis=1) * np.linalg.norm(B, axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(norms > 0, (A * B).sum(axis=1) / norms, 0.0)


def neighbourhood_correlation(X, graph, in_consensus: np.ndarray, in_null: np.ndarray, null_sum: np.ndarray,
                              n_null: int) -> np.ndarray:
    """Correlation of each cell's neighbourhood-averaged CNV profile with the candidate-minus-null
    contrast computed *without* the cell's neighbourhood.

    ``graph`` (cells x cells, binary, self included) defines the neighbourhood N(i); ``in_consensus``
    marks the candidate cells whose mean makes the patient profile, ``in_null`` the held-out reference
    cells among these rows; ``null_sum`` / ``n_null`` are the sum and number of all held-out rows of
    the group. For cell i the contrast is mean(candidates outside N(i)) - mean(held-out cells outside
    N(i)): a cell is never compared with a profile it or its neighbours helped to make. (Averaging
    correlations over neighbours, as before, let each candidate's neighbours be correlated with a
    candidate mean that contained the candidate, and each held-out cell's neighbours with a held-out
    mean that contained it, which pushed candidates up and the null down.) Subtracting the held-out
    mean removes the baseline's own noise, which every row shares."""
    X = sp.csr_matrix(X)
    cand = sp.csr_matrix(X.multiply(in_consensus[:, None].astype(np.float64)))
    nul = sp.csr_matrix(X.multiply(in_null[:, None].astype(np.float64)))
    cand_sum = np.asarray(cand.sum(axis=0)).ravel()
    n_cand = int(in_consensus.sum())
    graph = sp.csr_matrix(graph)
    out = np.zeros(X.shape[0])
    for start in range(0, X.shape[0], 2000):
        g = graph[start:start + 2000]
        degree = np.asarray(g.sum(axis=1)).ravel()
        profile = np.asarray((g @ X).todense()) / np.maximum(degree, 1)[:, None]
        k_cand = g @ in_consensus.astype(np.float64)
        k_null = g @ in_null.astype(np.float64)
        rest_cand = (cand_sum[None, :] - np.asarray((g @ cand).todense())) / np.maximum(n_cand - k_cand, 1)[:, None]
        rest_null = (null_sum[None, :] - np.asarray((g @ nul).todense())) / np.maximum(n_null - k_null, 1)[:, None]
        out[start:start + 2000] = _pearson_rows(profile, rest_cand - rest_null)
    return out


def cnv_high(adata, group: np.ndarray, nulls: dict, is_candidate: np.ndarray, distances, level: float,
             crossed: np.ndarray | None = None):
    """CNV-high cells: CNV correlation above the conformal ``level`` quantile
    (:func:`tmeflow.stats.conformal_quantile`) of the held-out reference cells' correlations, and CNV
    score above their median.

    The held-out cells (:func:`infer_cnv`) are scored exactly like the candidates: rows against the
    same baseline and noise filter, then :func:`neighbourhood_correlation` over the same CNV
    neighbour graph (the baseline half, scored against the other half, is left out of every
    neighbourhood); the CNV score is averaged over the same neighbourhoods. inferCNV and CopyKAT
    likewise judge cells against normal cells that did not build what they are compared with. For
    patients inferred against the cohort-wide reference, held-out cells of other patients are not in
    the patient's graph: their single-cell rows are correlated with the contrast without themselves,
    which varies more than a neighbourhood average, so that threshold is conservative. Returns the
    CNV-high mask, correlation, raw and smoothed scores, per-cell threshold and per-patient thresholds."""
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
        correlation[cells] = neighbourhood_correlation(X[cells], graph[cells][:, cells], is_candidate[cells], here[cells],
                                                       null_sum, n_null)
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


def call_malignant(adata, settings: CnvSettings, *, n_jobs: int = 1) -> CnvResult:
    """CNV inference, scores, clusters and malignant calls on an AnnData whose ``var`` carries positions
    (:func:`annotate_positions`); adds ``obs`` ``malignant``, ``cnv_score``, ``cnv_cluster`` and more."""
    obs = adata.obs
    is_reference = reference_mask(obs, settings)
    is_candidate = candidate_mask(obs, settings)
    plan = reference_plan(obs, is_reference, settings.cnv_min_reference_cells)
    for row in plan.itertuples():
        logger.info("patient %s: %d reference cells -> %s reference", row.patient, row.n_reference_cells,
                    "own" if row.reference == "patient" else "cohort-wide")
    with timed(logger, f"CNV inference on {adata.n_obs} cells x {int(adata.var['chromosome'].notna().sum())} positioned genes"):
        anchors = _in_list(obs["cell_type"], settings.reference_types)
        group, profile_cells, nulls, crossed = infer_cnv(adata, plan, is_reference, normal_tissue_mask(obs, settings), settings, n_jobs=n_jobs,
                                                         anchors=anchors, candidates=is_candidate)
    with timed(logger, "CNV clustering (PCA, neighbours, Leiden)"):
        distances = cluster_cnv(adata, resolution=settings.cnv_leiden_resolution, seed=settings.seed)
    above, correlation, raw, smoothed, threshold, patient_thresholds = cnv_high(
        adata, group, nulls, is_candidate, distances, settings.cnv_score_quantile, crossed=crossed)

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
            "malignant": bool(cand.any() and frac_above >= settings.cnv_cluster_min_fraction
                              and frac_ref <= settings.cnv_cluster_max_reference),
        })
    cluster_table = pd.DataFrame(rows)
    malignant_clusters = set(cluster_table.loc[cluster_table["malignant"], "cnv_cluster"])
    # clusters that fail only the reference rule (mixed clusters): their CNV-high candidates are still malignant
    mostly_high = set(cluster_table.loc[cluster_table["fraction_candidates_above"] >= settings.cnv_cluster_min_fraction, "cnv_cluster"])
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
    arms = window_arms(adata.var, settings.cnv_window, settings.cnv_step, adata.uns["cnv"]["chr_pos"],
                       adata.obsm["X_cnv"].shape[1])
    arm_table = arm_summary(adata, arms, settings.cnv_arm_threshold)
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
