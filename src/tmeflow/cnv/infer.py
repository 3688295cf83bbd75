"""Malignant cells: copy-number inference from expression, CNV score and malignant calls.

Method
------
1. **Gene order.** Genes are placed on the genome with the bundled position tables
   (``resources/gene_positions``: GRCh38 for human, mm10 for mouse, from XClone 0.4.0) or a user
   table (``--gene_positions``: gene, chromosome, start, end, optional arm; header optional).
   Chromosome arms come from the table's ``chr_arm``/``arm`` column, else from the bundled table of
   the species by gene symbol (arm membership does not change between genome builds), else from the
   nearest gene with a known arm on the same chromosome. ``cnv_exclude_chromosomes`` (default X, Y)
   are left out, and so are genes detected (count > 0) in fewer than ``cnv_min_gene_fraction`` of
   the cells (their log fold changes are mostly sampling noise; inferCNV filters on mean counts for
   the same reason). Fewer than ``MIN_POSITIONED_GENES`` (1,000) positioned genes, before or after
   that filter, is an input error.
2. **Reference.** Cells whose ``cell_type`` is one of ``cnv_reference_types`` (default T, NK, B;
   case-insensitive) are the normal reference, together with the candidate-like cells (step 6) of
   samples whose ``condition`` is in ``cnv_normal_conditions`` (default ``normal``): normal
   epithelium is the best reference for epithelial cells, because expression differences between
   cell types (clustered marker genes, cell-type-wide programmes) otherwise look like CNVs. A patient with at least ``cnv_min_reference_cells``
   reference cells is inferred against its own reference cells; the other patients together against
   the reference cells of the whole cohort. The choice is logged and written to
   ``cnv_reference.tsv``. When the group holds at least ``cnv_min_reference_cells`` normal-tissue
   reference cells, they alone define the reference expression (mixing very different cell types
   in infercnvpy's "bounded" difference flattens real CNVs); otherwise the reference cell types do.
   The reference expression is the mean log-normalised profile of each reference cell type with at
   least ``MIN_CELLS_PER_REFERENCE_TYPE`` (5) cells (infercnvpy's "bounded" difference between
   several references; the pooled mean when no type has 5 cells).
3. **CNV inference** with :func:`infercnvpy.tl.infercnv` on log1p(CP10k) in ``X``: log fold change
   against the reference, clipped at +/- ``cnv_lfc_clip`` (default 1.0; infercnvpy's own default is 3),
   pyramid-weighted running mean of ``cnv_window`` genes every ``cnv_step`` genes per chromosome, per-cell median centring, noise below 1.5 SD set to 0.
4. **CNV score** per cell: mean absolute CNV signal over all windows (infercnvpy's ``cnv_score``,
   computed per cell instead of per cluster), averaged over the cell and its CNV neighbours
   (``obs['cnv_score']``; the unsmoothed value is ``cnv_score_cell``). **CNV correlation**
   (``obs['cnv_correlation']``): Pearson correlation of the cell's CNV profile with the mean
   profile of its patient's candidate cells (in a tumour, mostly the clonal CNVs of its malignant
   cells), averaged over CNV neighbours. On 10x data the correlation separates malignant from
   normal epithelial cells far better than the score (simulated cohort: AUC 0.99 vs 0.83).
5. **CNV clusters** (``obs['cnv_cluster']``, ``<patient>:<n>``), within each patient (malignant
   clones are patient-specific; this also keeps the neighbour search small):
   :func:`infercnvpy.tl.pca` (``N_PCS`` 30), :func:`infercnvpy.pp.neighbors` (15 neighbours,
   Gaussian-kernel connectivities: the UMAP kernel's numba code compiles for ~40 s in every new
   process; exact scikit-learn neighbours up to 30,000 cells per patient) and
   :func:`infercnvpy.tl.leiden` (``cnv_leiden_resolution``).
6. **Malignant calls.** Candidates are cells whose ``compartment`` is in
   ``cnv_candidate_compartments`` (default epithelial) or whose ``cell_type`` is in
   ``cnv_candidate_types``; reference cells are never candidates. A cell is *CNV-high* when its
   CNV correlation is above the ``cnv_score_quantile`` (0.95) quantile of the reference cells'
   correlations with the same patient profile and its CNV score is above the reference cells'
   median score. A CNV cluster is malignant when at least ``cnv_cluster_min_fraction`` (0.5) of its
   candidate cells are CNV-high and at most ``cnv_cluster_max_reference`` (0.25) of its cells are
   reference cells. ``obs['malignant']`` is True for the candidate cells of malignant clusters, and
   for the CNV-high candidate cells of clusters that fail only the reference rule (small tumours
   whose few cells share a cluster with reference cells).
   ``cell_type`` of candidate cells becomes ``"Malignant"`` when malignant and
   ``"Epithelial (normal)"`` when not malignant and epithelial-like (cell type or compartment
   containing "epithel"); the previous label is kept in ``obs['cell_type_pre_cnv']``.
7. **Arm summary** (``cnv_arms.tsv``): mean CNV signal per chromosome arm (windows assigned to the
   arm of their central gene) over the malignant cells of each patient (``cnv_cluster`` = ``all``)
   and of each patient x CNV cluster; ``gain`` when the mean is above ``cnv_arm_threshold``,
   ``loss`` when below minus it, else ``neutral``.

Known trap: ``infercnvpy.pp.neighbors`` (scanpy's neighbours) fails with
``'csr_array' object has no attribute 'getnnz'`` when pynndescent >= 0.7 is used (from 8,192 cells
on). tmeflow pins ``pynndescent==0.5.13`` / ``scipy==1.16.3``; if a known-bad version is installed
anyway, :func:`neighbour_transformer` switches to scikit-learn's exact neighbours with a warning.
"""

from __future__ import annotations

import argparse
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import io
from .errors import TmeflowInputError
from .log import get_logger, timed
from .plotting import pyplot
from .text import split_list

logger = get_logger(__name__)

MIN_POSITIONED_GENES = 1000
MIN_CELLS_PER_REFERENCE_TYPE = 5
N_PCS = 30
SCORE_NEIGHBOURS = 15
HEATMAP_MAX_CELLS = 1500
BUNDLED_POSITIONS = {"human": "genes_hg38_xclone.tsv", "mouse": "genes_mm10_xclone.tsv"}
REQUIRED_OBS = ("cell_type", "patient")
MALIGNANT_LABEL = "Malignant"
NORMAL_EPITHELIAL_LABEL = "Epithelial (normal)"


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------
def _chrom(name: Any) -> str:
    """Chromosome name without a ``chr`` prefix (``chr1`` -> ``1``, ``chrX`` -> ``X``)."""
    text = str(name).strip()
    return re.sub(r"^chr", "", text, flags=re.IGNORECASE)


# ----------------------------------------------------------------------------------------------
# Gene positions
# ----------------------------------------------------------------------------------------------
def bundled_positions(species: str) -> pd.DataFrame:
    """The bundled gene-position table of ``species`` (index gene symbol; chromosome, start, end,
    chr_arm, gene_id)."""
    if species not in BUNDLED_POSITIONS:
        raise TmeflowInputError(
            f"no bundled gene-position table for species {species!r} (have: {', '.join(BUNDLED_POSITIONS)}); "
            "give one with --gene_positions (gene, chromosome, start, end)",
            column="species",
        )
    ref = resources.files("tmeflow").joinpath("resources", "gene_positions", BUNDLED_POSITIONS[species])
    with ref.open("r") as handle:
        table = pd.read_csv(handle, sep="\t", dtype={"chromosome": str, "band": str})
    table = table.drop_duplicates("gene_symbol", keep="first").set_index("gene_symbol")
    table["chromosome"] = table["chromosome"].map(_chrom)
    return table[["gene_id", "chromosome", "start", "end", "chr_arm"]]


_GENE_COLUMNS = ("gene", "gene_symbol", "symbol", "gene_name", "name")
_CHROM_COLUMNS = ("chromosome", "chr", "chrom", "seqnames", "seqname")


def read_gene_positions(path: str | Path, species: str | None = None) -> pd.DataFrame:
    """Read a user gene-position table (gene, chromosome, start, end[, arm]; TSV/CSV, header optional).

    Arms come from a ``chr_arm``/``arm`` column, else from the bundled table of ``species``,
    else from the nearest gene with a known arm on the same chromosome.
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("gene-position table not found", file=path)
    try:
        raw = pd.read_csv(path, sep=None, engine="python", header=None, dtype=str, comment="#")
    except Exception as exc:  # pandas raises many types for malformed text
        raise TmeflowInputError(f"cannot read gene-position table ({str(exc).splitlines()[0]})", file=path) from exc
    if raw.shape[1] < 4 or raw.empty:
        raise TmeflowInputError("gene-position table needs 4 columns: gene, chromosome, start, end", file=path)
    first = raw.iloc[0].astype(str).str.strip().str.lower().tolist()
    if not first[2].lstrip("-").isdigit() and not first[3].lstrip("-").isdigit():  # a header row
        raw.columns = first
        raw = raw.iloc[1:]
        gene_col = next((c for c in _GENE_COLUMNS if c in raw.columns), raw.columns[0])
        chrom_col = next((c for c in _CHROM_COLUMNS if c in raw.columns), raw.columns[1])
        start_col = "start" if "start" in raw.columns else raw.columns[2]
        end_col = next((c for c in ("end", "stop") if c in raw.columns), raw.columns[3])
        arm_col = next((c for c in ("chr_arm", "arm") if c in raw.columns), None)
    else:
        raw.columns = [f"c{i}" for i in range(raw.shape[1])]
        gene_col, chrom_col, start_col, end_col = "c0", "c1", "c2", "c3"
        arm_col = None
    table = pd.DataFrame({
        "gene": raw[gene_col].str.strip(),
        "chromosome": raw[chrom_col].map(_chrom),
        "start": pd.to_numeric(raw[start_col], errors="coerce"),
        "end": pd.to_numeric(raw[end_col], errors="coerce"),
    })
    bad = table["start"].isna() | table["end"].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise TmeflowInputError(f"gene-position table has {int(bad.sum())} non-numeric start/end values", file=path, row=row)
    table = table.drop_duplicates("gene", keep="first").set_index("gene")
    table["start"] = table["start"].astype(np.int64)
    table["end"] = table["end"].astype(np.int64)
    if arm_col is not None:
        arms = raw.drop_duplicates(gene_col, keep="first").set_index(raw[gene_col].drop_duplicates().str.strip())[arm_col]
        arms = arms.reindex(table.index).astype(str).str.strip()
        # an arm column holding only "p"/"q" is prefixed with the chromosome
        short = arms.str.fullmatch(r"[pq]")
        arms[short] = table.loc[short, "chromosome"] + arms[short]
        table["chr_arm"] = arms
    else:
        table["chr_arm"] = _arms_from_bundled(table, species)
    table["gene_id"] = np.nan
    return table[["gene_id", "chromosome", "start", "end", "chr_arm"]]


def _arms_from_bundled(table: pd.DataFrame, species: str | None) -> pd.Series:
    """Arm of each gene from the bundled table by symbol; gaps filled from neighbours on the chromosome."""
    arms = pd.Series(np.nan, index=table.index, dtype=object)
    if species in BUNDLED_POSITIONS:
        bundled = bundled_positions(species)
        known = bundled["chr_arm"].reindex(table.index)
        same_chrom = bundled["chromosome"].reindex(table.index) == table["chromosome"]
        arms[same_chrom] = known[same_chrom]
    ordered = table.assign(arm=arms).sort_values(["chromosome", "start"])
    filled = ordered.groupby("chromosome", sort=False)["arm"].transform(lambda s: s.ffill().bfill())
    filled = filled.fillna(ordered["chromosome"])  # no arm known on the chromosome: the whole chromosome
    return filled.reindex(table.index)


def annotate_positions(adata, positions: pd.DataFrame) -> int:
    """Write ``chromosome`` (``chr``-prefixed, as infercnvpy expects), ``start``, ``end`` and ``chr_arm``
    to ``adata.var`` by gene symbol (then by ``var['gene_ids']``); return the number of genes placed."""
    var = adata.var
    matched = positions.reindex(var.index)
    if "gene_ids" in var.columns and positions["gene_id"].notna().any():
        by_id = positions.reset_index().dropna(subset=["gene_id"]).drop_duplicates("gene_id").set_index("gene_id")
        missing = matched["chromosome"].isna().to_numpy()
        if missing.any():
            fill = by_id.reindex(var["gene_ids"].astype(str).to_numpy()[missing])
            for column in ("chromosome", "start", "end", "chr_arm"):
                values = matched[column].to_numpy(dtype=object)
                values[missing] = fill[column].to_numpy(dtype=object)
                matched[column] = values
    placed = matched["chromosome"].notna().to_numpy()
    var["chromosome"] = pd.Series(np.where(placed, "chr" + matched["chromosome"].astype(str), None), index=var.index, dtype=object)
    var["start"] = pd.to_numeric(matched["start"]).to_numpy()
    var["end"] = pd.to_numeric(matched["end"]).to_numpy()
    var["chr_arm"] = pd.Series(np.where(placed, matched["chr_arm"].astype(str), None), index=var.index, dtype=object)
    return int(placed.sum())


# ----------------------------------------------------------------------------------------------
# Dependency trap
# ----------------------------------------------------------------------------------------------
def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def dependency_problem() -> str | None:
    """Why scanpy's pynndescent neighbours would crash here (None when the versions are known-good)."""
    import pynndescent
    import scipy

    if _version_tuple(pynndescent.__version__) >= (0, 7):
        return (f"pynndescent {pynndescent.__version__} returns sparse arrays that scanpy 1.11 cannot read "
                "('csr_array' object has no attribute 'getnnz'); pin pynndescent==0.5.13")
    if _version_tuple(scipy.__version__) >= (1, 17):
        return f"scipy {scipy.__version__} is untested with infercnvpy 0.6.1 (known-good: 1.16.3)"
    return None


def neighbour_transformer() -> str | None:
    """``None`` (scanpy's default, pynndescent on large data) or ``'sklearn'`` when pynndescent is a
    known-bad version."""
    problem = dependency_problem()
    if problem and problem.startswith("pynndescent"):
        logger.warning("%s; using scikit-learn exact neighbours for the CNV graph instead", problem)
        return "sklearn"
    return None


# ----------------------------------------------------------------------------------------------
# Reference and candidates
# ----------------------------------------------------------------------------------------------
def _in_list(values: pd.Series, items: list[str]) -> np.ndarray:
    wanted = {item.lower() for item in items}
    return values.astype(str).str.strip().str.lower().isin(wanted).to_numpy()


def _candidate_like(obs: pd.DataFrame, params: dict[str, Any]) -> np.ndarray:
    mask = np.zeros(len(obs), dtype=bool)
    compartments = split_list(params["cnv_candidate_compartments"])
    if compartments and "compartment" in obs.columns:
        mask |= _in_list(obs["compartment"], compartments)
    types = split_list(params.get("cnv_candidate_types"))
    if types:
        mask |= _in_list(obs["cell_type"], types)
    return mask


def normal_tissue_mask(obs: pd.DataFrame, params: dict[str, Any]) -> np.ndarray:
    """Candidate-like cells (e.g. epithelium) of samples whose condition is a normal tissue."""
    conditions = split_list(params.get("cnv_normal_conditions"))
    if not conditions or "condition" not in obs.columns:
        return np.zeros(len(obs), dtype=bool)
    return _candidate_like(obs, params) & _in_list(obs["condition"], conditions)


def reference_mask(obs: pd.DataFrame, params: dict[str, Any]) -> np.ndarray:
    """Reference cells: the cell types of cnv_reference_types, plus candidate-like cells of normal tissue."""
    return _in_list(obs["cell_type"], split_list(params["cnv_reference_types"])) | normal_tissue_mask(obs, params)


def candidate_mask(obs: pd.DataFrame, params: dict[str, Any]) -> np.ndarray:
    return _candidate_like(obs, params) & ~reference_mask(obs, params)


def reference_plan(obs: pd.DataFrame, is_reference: np.ndarray, min_reference_cells: int) -> pd.DataFrame:
    """Per patient: cells, reference cells and whether it is inferred against its own reference."""
    patients = obs["patient"].astype(str)
    rows = []
    for patient in pd.unique(patients):
        in_patient = (patients == patient).to_numpy()
        n_ref = int((is_reference & in_patient).sum())
        rows.append({
            "patient": patient,
            "n_cells": int(in_patient.sum()),
            "n_reference_cells": n_ref,
            "reference": "patient" if n_ref >= min_reference_cells else "cohort",
        })
    plan = pd.DataFrame(rows)
    n_cohort_ref = int(is_reference.sum())
    plan["reference_cells_used"] = np.where(plan["reference"] == "patient", plan["n_reference_cells"], n_cohort_ref)
    return plan


def reference_profiles(X, cell_types: pd.Series, is_reference: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Mean expression per reference cell type with enough cells (rows), or the pooled mean."""
    types = cell_types.astype(str).to_numpy()
    kept = []
    rows = []
    for cell_type in pd.unique(types[is_reference]):
        mask = is_reference & (types == cell_type)
        if mask.sum() >= MIN_CELLS_PER_REFERENCE_TYPE:
            kept.append(str(cell_type))
            rows.append(np.asarray(X[mask].mean(axis=0)).ravel())
    if not rows:
        return np.asarray(X[is_reference].mean(axis=0)).ravel()[np.newaxis, :], ["pooled"]
    return np.vstack(rows), kept


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


def _excluded(params: dict[str, Any]) -> list[str]:
    return ["chr" + _chrom(c) for c in split_list(params["cnv_exclude_chromosomes"])]


def infer_cnv(adata, plan: pd.DataFrame, is_reference: np.ndarray, normal_tissue: np.ndarray, params: dict[str, Any],
              *, n_jobs: int = 1):
    """Run infercnvpy per inference group; store ``obsm['X_cnv']`` (cells in ``adata`` order) and
    ``uns['cnv']``; return the per-cell group label and the mask of the cells whose profiles formed
    the reference (normal-tissue candidate-like cells when the group has ``cnv_min_reference_cells``
    of them, else the reference cell types)."""
    import infercnvpy as cnv

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
        chunk = max(200, min(2000, int(2e7 // max(adata.n_vars, 1))))
        genes = adata.var["cnv_gene"].to_numpy(dtype=bool)
        chr_pos, matrix, _ = cnv.tl.infercnv(
            adata[cells, genes], reference=profiles[:, genes], window_size=params["cnv_window"], step=params["cnv_step"],
            exclude_chromosomes=_excluded(params), lfc_clip=params["cnv_lfc_clip"], inplace=False, n_jobs=n_jobs, chunksize=chunk,
        )
        blocks.append(sp.csr_matrix(matrix, dtype=np.float32))
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


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------
def plot_heatmap(adata, patient: str, path: Path, seed: int) -> Path:
    """CNV heatmap of one patient: cells (reference, other, malignant; by CNV cluster) x windows."""
    plt = pyplot()
    obs = adata.obs
    cells = np.flatnonzero((obs["patient"].astype(str) == patient).to_numpy())
    rng = np.random.default_rng(seed)
    if len(cells) > HEATMAP_MAX_CELLS:
        cells = np.sort(rng.choice(cells, HEATMAP_MAX_CELLS, replace=False))
    status = np.where(obs["malignant"].to_numpy()[cells], 2, np.where(obs["cnv_reference"].to_numpy()[cells], 0, 1))
    cluster = obs["cnv_cluster"].cat.codes.to_numpy()[cells]
    order = np.lexsort((cluster, status))
    cells, status = cells[order], status[order]
    matrix = adata.obsm["X_cnv"][cells].toarray()
    vmax = max(float(np.quantile(np.abs(matrix), 0.99)), 1e-3)
    fig, (ax_lab, ax) = plt.subplots(1, 2, figsize=(12, 5), gridspec_kw={"width_ratios": [1, 40], "wspace": 0.01})
    ax_lab.imshow(status[:, None], aspect="auto", cmap=plt.matplotlib.colors.ListedColormap(["#4477aa", "#bbbbbb", "#cc3311"]),
                  vmin=0, vmax=2, interpolation="nearest")
    ax_lab.set_xticks([])
    ax_lab.set_yticks([])
    ax_lab.set_ylabel("cells: reference (blue), other (grey), malignant (red)")
    image = ax.imshow(matrix, aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
    chr_pos = adata.uns["cnv"]["chr_pos"]
    starts = list(chr_pos.values())
    for start in starts[1:]:
        ax.axvline(start - 0.5, color="black", linewidth=0.5)
    ends = starts[1:] + [matrix.shape[1]]
    ax.set_xticks([(s + e) / 2 for s, e in zip(starts, ends)], [c.removeprefix("chr") for c in chr_pos], fontsize=7)
    ax.set_yticks([])
    ax.set_title(f"inferred CNV, patient {patient} ({len(cells)} cells shown)")
    fig.colorbar(image, ax=ax, fraction=0.02, label="CNV signal")
    return io.save_figure(fig, path)


VIOLIN_MAX_CELLS = 20000


def plot_violin(adata, path: Path, seed: int = 0) -> Path:
    """CNV score by cell type and by CNV cluster (at most ``VIOLIN_MAX_CELLS`` cells, seeded sample)."""
    plt = pyplot()
    obs = adata.obs
    if len(obs) > VIOLIN_MAX_CELLS:
        obs = obs.iloc[np.sort(np.random.default_rng(seed).choice(len(obs), VIOLIN_MAX_CELLS, replace=False))]
    fig, axes = plt.subplots(2, 1, figsize=(max(8, 0.45 * obs["cnv_cluster"].nunique()), 7))
    for ax, key in zip(axes, ("cell_type", "cnv_cluster")):
        labels = [str(c) for c in obs[key].astype("category").cat.categories if (obs[key] == c).any()]
        data = [obs.loc[obs[key] == c, "cnv_score"].to_numpy() for c in labels]
        ax.violinplot(data, showmedians=True)
        ax.set_xticks(np.arange(1, len(labels) + 1), labels, rotation=60, ha="right", fontsize=8)
        ax.set_ylabel("CNV score")
        ax.set_title(f"CNV score by {key.replace('_', ' ')}")
        if key == "cnv_cluster":
            malignant = obs.groupby("cnv_cluster", observed=True)["malignant"].mean()
            for i, c in enumerate(labels, start=1):
                if malignant.get(c, 0) > 0.5:
                    ax.get_xticklabels()[i - 1].set_color("#cc3311")
    fig.tight_layout()
    return io.save_figure(fig, path)


def plot_arms(arms: pd.DataFrame, path: Path) -> Path:
    """Patients x arms heatmap of the mean CNV of malignant cells."""
    plt = pyplot()
    table = arms[arms["cnv_cluster"] == "all"].pivot(index="patient", columns="chr_arm", values="mean_cnv")
    fig, ax = plt.subplots(figsize=(12, 0.4 * max(len(table), 1) + 1.5))
    if table.empty:
        ax.text(0.5, 0.5, "no malignant cells called", ha="center", va="center")
        ax.axis("off")
    else:
        table = table[sorted(table.columns, key=_arm_key)]
        vmax = max(float(np.nanmax(np.abs(table.to_numpy()))), 1e-3)
        image = ax.imshow(table.to_numpy(), aspect="auto", cmap="RdBu_r", vmin=-vmax, vmax=vmax)
        ax.set_xticks(np.arange(table.shape[1]), table.columns, rotation=90, fontsize=7)
        ax.set_yticks(np.arange(table.shape[0]), table.index)
        fig.colorbar(image, ax=ax, fraction=0.02, label="mean CNV (malignant cells)")
        ax.set_title("Arm-level CNV of malignant cells per patient")
    return io.save_figure(fig, path)


# ----------------------------------------------------------------------------------------------
# Stage
# ----------------------------------------------------------------------------------------------
def check_inputs(adata, params: dict[str, Any], *, file: str | None = None) -> None:
    """Everything that can be wrong with the input before any work is done."""
    missing = [c for c in REQUIRED_OBS if c not in adata.obs.columns]
    if missing:
        raise TmeflowInputError(f"obs lacks column(s) {', '.join(missing)} needed for CNV inference", file=file, column=missing[0])
    ref_types = split_list(params["cnv_reference_types"])
    if not ref_types:
        raise TmeflowInputError("cnv_reference_types is empty; name the normal cell types to use as reference", column="cnv_reference_types")
    n_ref = int(reference_mask(adata.obs, params).sum())
    if n_ref == 0:
        present = ", ".join(sorted(map(str, pd.unique(adata.obs["cell_type"].astype(str))))[:15])
        raise TmeflowInputError(
            f"no reference cells: no cell_type in cnv_reference_types ({', '.join(ref_types)}); cell types present: {present}",
            file=file, column="cell_type",
        )
    if params["cnv_window"] < 1 or params["cnv_step"] < 1:
        raise TmeflowInputError("cnv_window and cnv_step must be at least 1", column="cnv_window")


def prepare(adata, params: dict[str, Any], *, gene_positions: str | Path | None = None, species: str | None = None,
            file: str | None = None) -> int:
    """Check inputs and place genes on the genome; return the number of positioned, included genes."""
    check_inputs(adata, params, file=file)
    if species is None and "species" in adata.obs.columns:
        values = pd.unique(adata.obs["species"].astype(str))
        species = str(values[0]) if len(values) else None
    if gene_positions is not None:
        positions = read_gene_positions(gene_positions, species)
    else:
        if species is None:
            raise TmeflowInputError("species unknown (no obs 'species'); give --species or --gene_positions", file=file)
        positions = bundled_positions(species)
    n_placed = annotate_positions(adata, positions)
    excluded = _excluded(params)
    positioned = (adata.var["chromosome"].notna() & ~adata.var["chromosome"].isin(excluded)).to_numpy()
    n_positioned = int(positioned.sum())
    if n_positioned < MIN_POSITIONED_GENES:
        raise TmeflowInputError(
            f"only {n_positioned} genes have a known genomic position outside {', '.join(excluded) or 'no excluded chromosomes'} "
            f"(of {adata.n_vars}; {n_placed} placed); CNV inference needs at least {MIN_POSITIONED_GENES}; "
            "check the species or give --gene_positions",
            file=file,
        )
    counts = adata.layers["counts"] if "counts" in adata.layers else adata.X
    if sp.issparse(counts):
        counts = sp.csr_matrix(counts)
        detected = np.bincount(counts.indices[counts.data > 0], minlength=adata.n_vars) / max(adata.n_obs, 1)
    else:
        detected = np.asarray((np.asarray(counts) > 0).mean(axis=0)).ravel()
    used = positioned & (detected >= params["cnv_min_gene_fraction"])
    adata.var["cnv_detected_fraction"] = detected.astype(np.float32)
    adata.var["cnv_gene"] = used
    n_used = int(used.sum())
    if n_used < MIN_POSITIONED_GENES:
        raise TmeflowInputError(
            f"only {n_used} positioned genes are detected in at least {params['cnv_min_gene_fraction']:.1%} of cells; "
            f"CNV inference needs at least {MIN_POSITIONED_GENES}; lower cnv_min_gene_fraction",
            file=file,
        )
    logger.info("%d of %d genes placed on the genome; %d used (outside %s, detected in >= %.1f%% of cells)", n_placed,
                adata.n_vars, n_used, ", ".join(excluded) or "nothing", 100 * params["cnv_min_gene_fraction"])
    return n_used


def write_outputs(adata, result: CnvResult, outdir: Path, params: dict[str, Any]) -> dict[str, Path]:
    outdir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    header = io.multiqc_header(
        "tmeflow_cnv_summary", "CNV and malignant cells",
        "Per patient: candidate cells, cells called malignant from inferred copy-number profiles (infercnvpy), "
        f"the reference used and arm-level gains/losses of malignant cells (|mean CNV| > {params['cnv_arm_threshold']}).",
        "table",
    )
    paths["summary"] = io.write_table(result.summary, outdir / "cnv_summary_mqc.tsv", header_lines=header)
    paths["reference"] = io.write_table(result.plan, outdir / "cnv_reference.tsv")
    paths["clusters"] = io.write_table(result.clusters, outdir / "cnv_clusters.tsv")
    paths["arms"] = io.write_table(result.arms, outdir / "cnv_arms.tsv")
    cell_columns = ["patient", "cell_type_pre_cnv", "cell_type", "cnv_reference", "cnv_candidate", "cnv_group",
                    "cnv_cluster", "cnv_score", "cnv_score_cell", "cnv_correlation", "cnv_threshold", "cnv_high", "malignant"]
    if "sample" in adata.obs.columns:
        cell_columns.insert(0, "sample")
    with timed(logger, "writing cnv_cells.tsv.gz"):
        paths["cells"] = io.write_table(adata.obs[cell_columns], outdir / "cnv_cells.tsv.gz", index=True)
    with timed(logger, "plots"):
        paths["violin"] = plot_violin(adata, outdir / "cnv_score_violin_mqc.png", params["seed"])
        paths["arms_png"] = plot_arms(result.arms, outdir / "cnv_arms_mqc.png")
        for patient in pd.unique(adata.obs["patient"].astype(str)):
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", patient)
            paths[f"heatmap_{patient}"] = plot_heatmap(adata, patient, outdir / f"cnv_heatmap_{safe}.png", params["seed"])
    adata.uns.setdefault("tmeflow", {})
    adata.uns["tmeflow"]["cnv"] = {**io.provenance("cnv", params), "reference": result.plan.to_dict(orient="list")}
    with timed(logger, "writing cnv.h5ad"):
        paths["h5ad"] = io.write_h5ad(adata, outdir / "cnv.h5ad")
    return paths


def run_cnv(input_path: str | Path, outdir: str | Path, params: dict[str, Any], *,
            species: str | None = None, n_jobs: int = 1) -> dict[str, Path]:
    """Read the annotated atlas, infer CNV, call malignant cells and write every output to ``outdir``
    (genes placed with the ``gene_positions`` parameter's table when set, else the bundled one)."""

    input_path, outdir = Path(input_path), Path(outdir)
    with timed(logger, f"reading {input_path}"):
        adata = io.read_h5ad(input_path)
    prepare(adata, params, gene_positions=params.get("gene_positions"), species=species, file=str(input_path))
    result = call_malignant(adata, params, n_jobs=n_jobs)
    return write_outputs(adata, result, outdir, params)


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_cnv(args.input, args.outdir, params, species=args.species, n_jobs=args.n_jobs)
