"""CNV inference (infercnvpy) against the reference, calibrated by held-out reference cells."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..io import read_rows
from ..log import get_logger
from .positions import MIN_CELLS_PER_REFERENCE_TYPE
from .reference import reference_profiles
from .settings import CnvSettings

logger = get_logger(__package__)


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
    """Split the reference cells at random (seeded), within each cell type, into a baseline and a null half.

    A reference with fewer than ``2 * MIN_NULL_CELLS`` cells is not split (both masks are the whole reference).

    Parameters
    ----------
    cell_types
        Cell-type label per cell (the split is stratified by it; odd counts give the baseline one more).
    mask
        Boolean per cell: the reference cells to split.
    seed
        Pipeline seed.
    salt
        Group name mixed into the seed, so that every inference group draws its own split.

    Returns
    -------
    tuple of numpy.ndarray
        ``(baseline, null)``: ``mask``-sized boolean arrays.
    """
    if mask.sum() < 2 * MIN_NULL_CELLS:
        return mask.copy(), mask.copy()
    rng = np.random.default_rng([int(seed), *(ord(ch) for ch in salt)])
    build: np.ndarray = np.zeros(len(mask), dtype=bool)
    for cell_type in pd.unique(cell_types[mask]):
        members = rng.permutation(np.flatnonzero(mask & (cell_types == cell_type)))
        build[members[: (len(members) + 1) // 2]] = True
    return build, mask & ~build


def chunk_cells(n_genes: int) -> int:
    """Choose the cells per infercnvpy call, bounding the dense cells x genes block to ~2e7 values.

    Parameters
    ----------
    n_genes
        Genes in the inference.

    Returns
    -------
    int
        Cells per chunk, between 200 and 2,000.
    """
    return max(200, min(2000, int(2e7 // max(n_genes, 1))))


def _infer_rows(
    adata: AnnData, cells: np.ndarray, genes: np.ndarray, profiles: np.ndarray, settings: CnvSettings, n_jobs: int
):
    """Yield the undenoised CNV rows of ``cells`` against ``profiles``, chunk by chunk.

    infercnvpy without its per-chunk noise filter; ``(start, chr_pos, dense float32 block)`` per chunk of
    :func:`chunk_cells` cells.
    """
    import infercnvpy as cnv

    chunk = chunk_cells(int(genes.sum()))
    gene_table = adata.var.loc[genes]
    for start in range(0, len(cells), chunk):
        rows = cells[start : start + chunk]
        chr_pos, matrix, _ = cnv.tl.infercnv(  # the chunk read once (X may be on disk), its CNV genes only
            AnnData(read_rows(adata.X, rows, np.flatnonzero(genes)), obs=adata.obs.iloc[rows], var=gene_table),
            reference=profiles[:, genes],
            window_size=settings.cnv_window,
            step=settings.cnv_step,
            exclude_chromosomes=settings.excluded_chromosomes,
            lfc_clip=settings.cnv_lfc_clip,
            dynamic_threshold=None,
            inplace=False,
            n_jobs=n_jobs,
            chunksize=chunk,
        )
        yield start, chr_pos, np.asarray(matrix.toarray() if sp.issparse(matrix) else matrix, dtype=np.float32)


def _rows(
    adata: AnnData,
    cells,
    genes,
    profiles,
    settings: CnvSettings,
    n_jobs,
    offsets=None,
    samples=None,
    threshold=None,
    programme=None,
):
    """Compute the CNV rows of ``cells`` (csr, or dense when ``threshold`` is None).

    Each row is minus its sample's offset and, for candidate cells of a type in ``programme``
    (:class:`Programme`), minus that type's cross-patient consensus, and, with a ``threshold``, denoised chunk
    by chunk (memory stays one chunk of dense rows).
    """
    blocks, chr_pos = [], None
    for start, positions, block in _infer_rows(adata, cells, genes, profiles, settings, n_jobs):
        chr_pos = positions
        if offsets:
            block_samples = samples[cells[start : start + len(block)]]
            for sample, offset in offsets.items():
                block[block_samples == sample] -= offset
        if programme is not None:
            programme.subtract(block, cells[start : start + len(block)])
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
        """Subtract, in place, each candidate cell type's consensus from its rows of ``block`` (rows: ``cells``)."""
        for cell_type, row in self.consensus.items():
            block[self.candidates[cells] & (self.cell_types[cells] == cell_type)] -= row


def candidate_programme(
    adata: AnnData,
    candidates: np.ndarray,
    genes: np.ndarray,
    profiles: np.ndarray,
    settings: CnvSettings,
    n_jobs: int,
    offsets: dict[str, np.ndarray],
    samples: np.ndarray | None,
) -> Programme | None:
    """Find the cross-patient consensus of the candidates' CNV rows, per candidate cell type.

    Against a reference of other cell types only (immune cells), the expression programme of the candidates' own cell
    type (e.g. epithelial genes) reads as a CNV of every candidate, normal or malignant. That programme is shared by the
    cell type in every patient, whereas copy-number changes of carcinomas are patient-specific (clonal). So, against the
    group's baseline, each patient's mean CNV row of the type's candidates (at most :data:`CONSENSUS_CELLS` per patient,
    after the sample offsets) is taken, and their window-wise median across patients is the type's expression programme,
    subtracted from its candidates' rows (cf. Tirosh et al. 2016, Science 352:189, who judged cells by the correlation
    with their own tumour's consensus CNV profile; CopyKAT and SCEVAN likewise look for what distinguishes a clone from
    the cell population's baseline). The median over at least :data:`MIN_CONSENSUS_PATIENTS` patients leaves out a
    change present in fewer than half of them; a change recurrent in most patients (e.g. a cancer type's hallmark arm
    event) is absorbed into the consensus and weakened.

    Parameters
    ----------
    adata
        Log-normalised cells (``obs`` ``patient``, ``cell_type``).
    candidates
        Boolean per cell: candidate cells.
    genes
        Boolean per gene: genes used for CNV.
    profiles
        Reference expression profiles (reference types x genes) of the group's baseline.
    settings
        ``cnv_options`` (window, step, clip, seed).
    n_jobs
        infercnvpy worker processes.
    offsets
        Sample offsets (:func:`sample_offsets`) subtracted first.
    samples
        Sample per cell, or ``None`` without sample offsets.

    Returns
    -------
    Programme or None
        The consensus row per candidate cell type; ``None`` when no candidate type has
        :data:`MIN_CONSENSUS_PATIENTS` patients with ``2 * MIN_CELLS_PER_REFERENCE_TYPE`` candidates of it.
    """
    patients = adata.obs["patient"].astype(str).to_numpy()
    cell_types = adata.obs["cell_type"].astype(str).to_numpy()
    rng = np.random.default_rng(settings.seed)
    consensus: dict[str, np.ndarray] = {}
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
            logger.info(
                "candidate %s: cross-patient consensus of %d patients subtracted (its expression programme "
                "against the reference types)",
                cell_type,
                len(means),
            )
    if not consensus:
        return None
    return Programme(consensus, candidates.copy(), cell_types)


def sample_offsets(rows: np.ndarray, samples: np.ndarray, cell_types: np.ndarray) -> dict[str, np.ndarray]:
    """Estimate what every cell of a sample shares (a batch offset), per sample.

    The offset is the mean over anchor cell types (the reference cell types, e.g. T, NK, B, which carry no CNV) with at
    least ``MIN_CELLS_PER_REFERENCE_TYPE`` cells there of (the type's mean CNV row in the sample - its mean over all
    samples), shrunk towards 0 by the positive-part James-Stein factor ``max(0, 1 - noise / |offset|^2)`` (James & Stein
    1961; noise: the summed sampling variance of the offset over windows). ``rows`` are the anchors' CNV rows against
    one baseline. A batch or sample effect on gene expression otherwise reads as a CNV shared by every cell of the
    sample, which the candidate profile picks up and the held-out reference cells of other samples (normal tissue) do
    not; an offset estimated from few anchors would add its own shared noise instead, hence the shrinkage (no batch
    effect: offsets near 0).

    Parameters
    ----------
    rows
        CNV rows of the anchor cells (cells x windows).
    samples
        Sample per row.
    cell_types
        Cell type per row.

    Returns
    -------
    dict
        Sample -> offset (float32, one value per window); samples without anchors of any type are absent.
    """
    offsets: dict[str, np.ndarray] = {}
    stats = {}
    for t in pd.unique(cell_types):
        of_type = rows[cell_types == t]
        stats[t] = (
            of_type.mean(axis=0),
            of_type.var(axis=0, ddof=1) if len(of_type) > 1 else np.zeros(rows.shape[1]),
            len(of_type),
        )
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


def infer_cnv(
    adata: AnnData,
    plan: pd.DataFrame,
    is_reference: np.ndarray,
    normal_tissue: np.ndarray,
    settings: CnvSettings,
    *,
    n_jobs: int = 1,
    anchors: np.ndarray | None = None,
    candidates: np.ndarray | None = None,
):
    """Run infercnvpy per inference group against a held-out-calibrated baseline.

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
    from their rows (``candidates``: the candidate mask).

    Parameters
    ----------
    adata
        Log-normalised cells (log1p CP10k in ``X``) with positions in ``var``; ``obs`` ``patient``,
        ``cell_type`` and optionally ``sample``.
    plan
        :func:`tmeflow.cnv.reference_plan`: the inference group of every patient.
    is_reference
        Boolean per cell: reference cells (:func:`tmeflow.cnv.reference_mask`).
    normal_tissue
        Boolean per cell: candidate-like cells of normal samples (:func:`tmeflow.cnv.normal_tissue_mask`).
    settings
        ``cnv_options``.
    n_jobs
        infercnvpy worker processes.
    anchors
        Boolean per cell: cells of the reference cell types, for the sample offsets; ``None``: no offsets.
    candidates
        Boolean per cell: candidate cells, for the cross-patient consensus; ``None``: no consensus.

    Returns
    -------
    tuple
        ``(group, profile_cells, nulls, crossed)``: inference group per cell; the mask of the reference cells
        that define each group's profile (normal-tissue cells when the group has ``cnv_min_reference_cells``
        of them, else the reference cell types); :class:`ReferenceNull` per group; the mask of the baseline
        halves (their rows are against the other half's baseline).

    Adds
    ----
    ``obsm['X_cnv']``
        Denoised CNV matrix (cells x windows, csr, ``adata`` order).
    ``uns['cnv']``
        ``{'chr_pos': first window of each chromosome}``.
    """
    patients = adata.obs["patient"].astype(str).to_numpy()
    cell_types = adata.obs["cell_type"].astype(str).to_numpy()
    samples = adata.obs["sample"].astype(str).to_numpy() if "sample" in adata.obs.columns else None
    group = np.where(
        np.isin(patients, plan.loc[plan["reference"] == "patient", "patient"].to_numpy()), patients, "cohort"
    )
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
            logger.warning(
                "CNV group %s has only %d reference cells: its null is the reference itself, so malignant "
                "calls are not calibrated",
                name,
                int(ref_cells.sum()),
            )
        profiles, used = reference_profiles(adata.X, adata.obs["cell_type"], build)
        logger.info(
            "CNV inference for %s: %d cells against %d %sreference cells (%s), %d held out as the null",
            "patients without enough reference cells" if name == "cohort" else f"patient {name}",
            len(cells),
            int(build.sum()),
            "normal-tissue " if ref_cells[normal_tissue].any() else "",
            ", ".join(used),
            int(null.sum()) if held_out else 0,
        )
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
                    logger.info(
                        "CNV group %s: no sample offset for %s (fewer than %d cells of every reference type)",
                        name,
                        ", ".join(missing),
                        MIN_CELLS_PER_REFERENCE_TYPE,
                    )
        programme = None
        if not (ref_cells & normal_tissue).any() and candidates is not None and candidates[cells].any():
            programme = candidate_programme(adata, candidates, genes, profiles, settings, n_jobs, offsets, samples)
            if programme is None:
                logger.warning(
                    "CNV group %s: no normal-tissue cells of the candidates' type in the reference "
                    "(cnv_normal_conditions) "
                    "and fewer than %d patients with candidates of one type for a cross-patient consensus; the null "
                    "holds only %s cells, so cell-type expression differences can look like CNVs (simulated "
                    "normal-only cohorts: 30-65%% of normal epithelial cells CNV-high)",
                    name,
                    MIN_CONSENSUS_PATIENTS,
                    ", ".join(sorted(pd.unique(cell_types[ref_cells]))),
                )
        chr_pos, null_rows = _rows(adata, null_cells, genes, profiles, settings, n_jobs, offsets, samples)
        threshold = NOISE_SD_AMPLIFIER * float(np.std(null_rows))
        null_rows[np.abs(null_rows) < threshold] = 0
        null_matrix = sp.csr_matrix(null_rows)
        if len(scored):
            blocks.append(
                _rows(adata, scored, genes, profiles, settings, n_jobs, offsets, samples, threshold, programme)[1]
            )
            order.append(scored)
        if len(crossed):  # the baseline half against the held-out half's baseline
            cross_profiles, _ = reference_profiles(adata.X, adata.obs["cell_type"], null)
            blocks.append(
                _rows(adata, crossed, genes, cross_profiles, settings, n_jobs, offsets, samples, threshold)[1]
            )
            order.append(crossed)
        if held_out and in_group.any():
            blocks.append(null_matrix[in_group])
            order.append(null_cells[in_group])
        nulls[str(name)] = ReferenceNull(null_cells, null_matrix, in_group, threshold, held_out)
    stacked = sp.vstack(blocks).tocsr()
    inverse = np.empty(adata.n_obs, dtype=np.int64)
    inverse[np.concatenate(order)] = np.arange(adata.n_obs)
    adata.obsm["X_cnv"] = stacked[inverse]
    if chr_pos is None:
        raise RuntimeError("CNV inference produced no windows")
    adata.uns["cnv"] = {"chr_pos": {k: int(v) for k, v in chr_pos.items()}}
    return group, profile_cells, nulls, crossed_cells
