"""Single-cell samples: the sample plan, cells, counts in blocks, and the 10x mtx / h5 / h5ad writers."""

from __future__ import annotations

import gzip
import math
import shutil
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import __version__
from ..io import atomic_path, provenance, write_csr_blocks, write_h5ad_elements
from .model import Model, _make_low_quality, cell_means, draw_counts
from .settings import (
    BLOCK_ELEMENTS,
    BRANCH_POINT,
    CELL_TYPES,
    COMPARTMENT,
    COMPOSITION,
    COMPOSITION_CONCENTRATION,
    DA_CELL_TYPE,
    DA_FOLD,
    DOUBLET_THINNING,
    FATE_A_PROB,
    LIBRARY_FACTOR,
    LIBRARY_MEDIAN,
    LIBRARY_SD,
    MALIGNANT,
    METASTASIS,
    NEUTROPHIL_MATURE_AT,
    NEUTROPHIL_PROK2_AT,
    NEUTROPHIL_PROK2_PROB,
    NEUTROPHIL_STREAM,
    NORMAL,
    SAMPLE_SHIFT_SD,
    TISSUE,
    SimConfig,
)


# ----------------------------------------------------------------------------------------------
# Single-cell samples
# ----------------------------------------------------------------------------------------------
def _composition(condition: str) -> np.ndarray:
    weights = dict(COMPOSITION[NORMAL if condition == NORMAL else "tumour"])
    if condition == METASTASIS:
        weights[DA_CELL_TYPE] *= DA_FOLD
    vector = np.array([weights[t] for t in CELL_TYPES])
    return vector / vector.sum()


def plan_samples(config: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Plan one scRNA sample per patient x condition, with size, batch, library shift and composition.

    Parameters
    ----------
    config
        The simulation settings (``n_patients``, ``conditions``, ``n_cells``, ``n_batches``, ``species``).
    rng
        The random generator (consumed in a fixed order, so a seed gives one cohort).

    Returns
    -------
    pandas.DataFrame
        One row per sample: ``sample`` (``<patient>_<condition>``), ``patient``, ``condition``, ``tissue``,
        ``species``, ``batch``, ``n_cells`` (summing to ``n_cells``), ``library_shift`` and ``composition``
        (cell-type proportions).
    """
    rows = [(f"P{p + 1}", c) for p in range(config.n_patients) for c in config.conditions]
    n = len(rows)
    shares = 0.5 / n + 0.5 * rng.dirichlet(np.full(n, 4.0))  # every sample gets at least half the mean
    sizes = np.maximum(1, np.floor(shares * config.n_cells).astype(int))
    while sizes.sum() != config.n_cells:  # fix rounding: add to / take from the largest samples
        step = 1 if sizes.sum() < config.n_cells else -1
        sizes[np.argmax(sizes) if step < 0 else rng.integers(n)] += step
    batches: np.ndarray = np.resize([f"batch{b + 1}" for b in range(config.n_batches)], n)
    rng.shuffle(batches)
    plan = pd.DataFrame(rows, columns=["patient", "condition"])
    plan.insert(0, "sample", plan["patient"] + "_" + plan["condition"])
    plan["tissue"] = plan["condition"].map(lambda c: TISSUE.get(c, c))
    plan["species"] = config.species
    plan["batch"] = batches
    plan["n_cells"] = sizes
    plan["library_shift"] = rng.lognormal(0.0, SAMPLE_SHIFT_SD, size=n)
    plan["composition"] = [rng.dirichlet(_composition(c) * COMPOSITION_CONCENTRATION + 1e-9) for c in plan["condition"]]
    return plan


def _barcodes(n: int, rng: np.random.Generator) -> np.ndarray:
    letters = np.frombuffer(b"ACGT", dtype="S1")
    while True:
        codes = letters[rng.integers(0, 4, size=(n, 16))]
        barcodes = np.char.add(codes.view("S16").ravel().astype(str), "-1")
        if len(np.unique(barcodes)) == n:
            return barcodes


def _draw_cells(plan_row, n: int, composition: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Per-cell metadata: type, library size, pseudotime, fate (for malignant cells)."""
    type_codes = rng.choice(len(CELL_TYPES), size=n, p=composition)
    factors = np.array([LIBRARY_FACTOR.get(t, 1.0) for t in CELL_TYPES])
    library = rng.lognormal(math.log(LIBRARY_MEDIAN * plan_row.library_shift), LIBRARY_SD, size=n) * factors[type_codes]
    malignant = type_codes == CELL_TYPES.index(MALIGNANT)
    pseudotime = np.where(malignant, rng.uniform(0.0, 1.0, size=n), np.nan)
    p_a = FATE_A_PROB["metastasis" if plan_row.condition == METASTASIS else "other"]
    fate = np.where(rng.uniform(size=n) < p_a, "A", "B")
    fate = np.where(pseudotime < BRANCH_POINT, "root", fate)
    fate = np.where(malignant, fate, "none")
    return pd.DataFrame({"type_code": type_codes, "library": library, "pseudotime": pseudotime, "fate": fate})


def _draw_neutrophil_states(cells: pd.DataFrame, plan_row, config: SimConfig) -> pd.DataFrame:
    """Draw the maturation and state of each neutrophil.

    Maturation and state of each neutrophil (mouse only; ``NEUTROPHIL_*`` in settings), from a stream of
    its own per sample so every other draw of the cohort is unchanged.
    """
    n = len(cells)
    cells["maturation"], cells["state"] = np.nan, "none"
    if config.species != "mouse":
        return cells
    rng = np.random.default_rng([config.seed, NEUTROPHIL_STREAM, zlib.crc32(str(plan_row.sample).encode())])
    maturation, u = rng.uniform(size=n), rng.uniform(size=n)
    neutrophil = cells["type_code"].to_numpy() == CELL_TYPES.index("neutrophil")
    p_prok2 = NEUTROPHIL_PROK2_PROB["metastasis" if plan_row.condition == METASTASIS else "other"]
    state = np.where(maturation < NEUTROPHIL_MATURE_AT, "immature neutrophil", "mature neutrophil")
    state = np.where((maturation >= NEUTROPHIL_PROK2_AT) & (u < p_prok2), "PROK2-high neutrophil", state)
    cells["maturation"] = np.where(neutrophil, maturation, np.nan)
    cells["state"] = np.where(neutrophil, state, "none")
    return cells


def _draw_qc(cells: pd.DataFrame, config: SimConfig, composition: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Mark low-quality cells and doublets; a doublet gets a partner of another cell type."""
    n = len(cells)
    u = rng.uniform(size=n)
    qc = np.where(u < config.low_quality_rate, "low_quality", "good")
    qc = np.where((u >= config.low_quality_rate) & (u < config.low_quality_rate + config.doublet_rate), "doublet", qc)
    partner = np.full(n, -1)
    for i in np.flatnonzero(qc == "doublet"):
        weights = composition.copy()
        weights[cells["type_code"].iat[i]] = 0.0
        if weights.sum() <= 0:
            qc[i] = "good"
            continue
        partner[i] = rng.choice(len(CELL_TYPES), p=weights / weights.sum())
    cells["qc"] = qc
    cells["partner_code"] = partner
    return cells


def _partner_cells(cells: pd.DataFrame, plan_row, rng: np.random.Generator) -> pd.DataFrame:
    """Metadata of the second cell of each doublet (same sample, its own library and pseudotime)."""
    n = len(cells)
    codes = cells["partner_code"].to_numpy()
    factors = np.array([LIBRARY_FACTOR.get(t, 1.0) for t in CELL_TYPES])
    library = rng.lognormal(math.log(LIBRARY_MEDIAN * plan_row.library_shift), LIBRARY_SD, size=n) * factors[codes]
    pseudotime = rng.uniform(0.0, 1.0, size=n)
    fate = np.where(pseudotime < BRANCH_POINT, "root", np.where(rng.uniform(size=n) < 0.5, "A", "B"))
    return pd.DataFrame({"type_code": codes, "library": library, "pseudotime": pseudotime, "fate": fate})


def _sample_block(model: Model, cells: pd.DataFrame, plan_row, rng: np.random.Generator) -> sp.csr_matrix:
    meta = dict(patient=plan_row.patient, condition=plan_row.condition, batch=plan_row.batch)
    mu = cell_means(model, cells, **meta)
    doublets = (cells["qc"] == "doublet").to_numpy()
    if doublets.any():
        partners = _partner_cells(cells[doublets], plan_row, rng)
        thinning = rng.uniform(*DOUBLET_THINNING, size=int(doublets.sum())).astype(np.float32)
        mu[doublets] = (mu[doublets] + cell_means(model, partners, **meta)) * thinning[:, None]
    _make_low_quality(mu, (cells["qc"] == "low_quality").to_numpy(), model.idx["mito"], rng)
    return draw_counts(mu, model.dispersion, rng)


@dataclass
class SampleCounts:
    """One scRNA sample: truth in ``obs`` and its counts as a one-pass stream of CSR blocks."""

    obs: pd.DataFrame
    var: pd.DataFrame
    uns: dict[str, Any]
    blocks: Iterator[sp.csr_matrix]
    total_umi: float = 0.0

    def stream(self) -> Iterator[sp.csr_matrix]:
        """Yield the counts of the sample in blocks of cells."""
        for block in self.blocks:
            self.total_umi += float(block.sum())
            yield block


def simulate_sample(model: Model, plan_row, config: SimConfig, rng: np.random.Generator) -> SampleCounts:
    """Simulate one scRNA sample: cell metadata and truth now, counts block by block when read.

    Parameters
    ----------
    model
        The simulation model.
    plan_row
        The sample's row of :func:`plan_samples` (a named tuple from ``itertuples``).
    config
        The simulation settings.
    rng
        The random generator (consumed in a fixed order, so a seed gives one cohort).

    Returns
    -------
    SampleCounts
        The cells' ``obs`` (metadata and planted truth), ``var``, ``uns`` and a one-pass stream of CSR count blocks.
    """
    n = int(plan_row.n_cells)
    cells = _draw_cells(plan_row, n, plan_row.composition, rng)
    cells = _draw_qc(cells, config, plan_row.composition, rng)
    cells = _draw_neutrophil_states(cells, plan_row, config)
    type_names = np.array(CELL_TYPES)
    obs = pd.DataFrame(
        {
            "sample": plan_row.sample,
            "patient": plan_row.patient,
            "condition": plan_row.condition,
            "tissue": plan_row.tissue,
            "species": plan_row.species,
            "batch": plan_row.batch,
            "true_cell_type": type_names[cells["type_code"]],
            "true_compartment": [COMPARTMENT[t] for t in type_names[cells["type_code"]]],
            "true_malignant": cells["type_code"].to_numpy() == CELL_TYPES.index(MALIGNANT),
            "true_pseudotime": cells["pseudotime"].to_numpy(),
            "true_fate": cells["fate"].to_numpy(),
            "true_qc": cells["qc"].to_numpy(),
            "true_doublet_partner": np.where(
                cells["partner_code"] >= 0, type_names[cells["partner_code"].clip(lower=0)], "none"
            ),
            "true_state": cells["state"].to_numpy(),
            "true_maturation": cells["maturation"].to_numpy(),
        },  # fmt: skip
        index=pd.Index(_barcodes(n, rng), name=None),
    )
    for column in obs.columns.drop(["true_malignant", "true_pseudotime", "true_maturation"]):
        obs[column] = obs[column].astype("category")
    block = max(1, BLOCK_ELEMENTS // len(model.genes.var))
    blocks = (_sample_block(model, cells.iloc[s : s + block], plan_row, rng) for s in range(0, n, block))
    uns = {"tmeflow": {"simulate": provenance("simulate", config.settings())}}
    return SampleCounts(obs, model.genes.var.copy(), uns, blocks)


# ----------------------------------------------------------------------------------------------
# Writers: 10x mtx / h5, h5ad
# ----------------------------------------------------------------------------------------------
def _write_gz_lines(path: Path, lines_iter) -> None:
    with atomic_path(path) as tmp, gzip.open(tmp, "wt", compresslevel=4, encoding="utf-8") as handle:
        for chunk in lines_iter:
            handle.write(chunk)


def _mtx_chunks(matrix: sp.csr_matrix, n_genes: int):
    """MatrixMarket lines (genes x cells, 1-based) of a cells x genes CSR, in chunks of cells."""
    yield '%%MatrixMarket matrix coordinate integer general\n%metadata_json: {"software_version": "tmeflow-simulate"}\n'
    yield f"{n_genes} {matrix.shape[0]} {matrix.nnz}\n"
    step = 20_000
    for start in range(0, matrix.shape[0], step):
        part = matrix[start : start + step].tocoo()
        frame = pd.DataFrame({"gene": part.col + 1, "cell": part.row + start + 1, "count": part.data.astype(np.int64)})
        yield frame.to_csv(sep=" ", header=False, index=False)


def write_10x_mtx(matrix: sp.csr_matrix, barcodes, var: pd.DataFrame, folder: Path) -> Path:
    """Write a Cell Ranger v3 ``filtered_feature_bc_matrix`` folder beside and renamed into place."""
    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    features = (f"{gid}\t{sym}\tGene Expression\n" for gid, sym in zip(var["gene_ids"], var.index, strict=True))
    _write_gz_lines(tmp / "features.tsv.gz", ["".join(features)])
    _write_gz_lines(tmp / "barcodes.tsv.gz", ["".join(f"{b}\n" for b in barcodes)])
    _write_gz_lines(tmp / "matrix.mtx.gz", _mtx_chunks(matrix, len(var)))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def write_10x_h5(matrix: sp.csr_matrix, barcodes, var: pd.DataFrame, path: Path, genome: str, library_id: str) -> Path:
    """Write a Cell Ranger / Space Ranger v3 ``filtered_feature_bc_matrix.h5``."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        handle.attrs["library_ids"] = np.array([library_id], dtype="S")
        handle.attrs["chemistry_description"] = "tmeflow simulate"
        handle.attrs["software_version"] = f"tmeflow-{__version__}"
        group = handle.create_group("matrix")
        group.create_dataset("barcodes", data=np.array(barcodes, dtype="S"))
        group.create_dataset("data", data=matrix.data.astype(np.int32), compression="gzip")
        group.create_dataset("indices", data=matrix.indices.astype(np.int64), compression="gzip")
        group.create_dataset("indptr", data=matrix.indptr.astype(np.int64))
        group.create_dataset("shape", data=np.array([matrix.shape[1], matrix.shape[0]], dtype=np.int32))
        features = group.create_group("features")
        features.create_dataset("id", data=np.array(var["gene_ids"], dtype="S"))
        features.create_dataset("name", data=np.array(var.index, dtype="S"))
        features.create_dataset("feature_type", data=np.array(["Gene Expression"] * len(var), dtype="S"))
        features.create_dataset("genome", data=np.array([genome] * len(var), dtype="S"))
        features.create_dataset("_all_tag_keys", data=np.array([b"genome"]))
    return Path(path)


def write_h5ad_streamed(counts: SampleCounts, path: Path) -> Path:
    """Write an h5ad (counts in X, CSR float32, gzip) appending X block by block: one block in memory."""
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        write_csr_blocks(handle, "X", counts.stream(), compression="gzip")
        write_h5ad_elements(handle, obs=counts.obs, var=counts.var, uns=counts.uns)
    return Path(path)


def _write_sc_sample(counts: SampleCounts, config: SimConfig) -> str:
    """Write one sample in ``--sc_format``; return its path relative to the output folder."""
    sample = str(counts.obs["sample"].iat[0])
    sc_dir = config.outdir / "sc"
    if config.sc_format == "h5ad":
        write_h5ad_streamed(counts, sc_dir / f"{sample}.h5ad")
        return f"sc/{sample}.h5ad"
    matrix = sp.vstack(list(counts.stream()), format="csr")  # 10x formats: the whole sample, sparse
    if config.sc_format == "h5":
        write_10x_h5(matrix, counts.obs.index, counts.var, sc_dir / f"{sample}.h5", _genome(config.species), sample)
        return f"sc/{sample}.h5"
    write_10x_mtx(matrix, counts.obs.index, counts.var, sc_dir / sample)
    return f"sc/{sample}"


def _genome(species: str) -> str:
    return "GRCh38" if species == "human" else "mm10"
