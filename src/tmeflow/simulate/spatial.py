"""Simulated Visium sections: spot grid, regions, spot means and the Space Ranger-like outs folder."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..io import atomic_path, write_json, write_table
from ..log import get_logger
from .model import Model, _draw_patient, cell_means, draw_counts
from .settings import (
    BLOCK_ELEMENTS,
    BRANCH_POINT,
    CELL_TYPES,
    FATE_A_PROB,
    HELDOUT_STREAM,
    INTERFACE_LR_FOLD,
    LR_SOURCE,
    LR_TARGET,
    MALIGNANT,
    METASTASIS,
    PLATFORM_STREAM,
    PX_PER_UM,
    REGION_COLOUR,
    REGION_COMPOSITION,
    REGIONS,
    SCALEFACTORS,
    SPOT_CELLS,
    SPOT_SPACING_UM,
    TISSUE,
    SimConfig,
    _tumour_conditions,
)
from .singlecell import _barcodes, _genome, write_10x_h5, write_10x_mtx

logger = get_logger(__package__)


# ----------------------------------------------------------------------------------------------
# Spatial
# ----------------------------------------------------------------------------------------------
def spot_grid(n_spots: int, grid: str) -> pd.DataFrame:
    """Lay ``n_spots`` spots on a Visium-like hexagonal (or square) grid, with physical x/y in um.

    Parameters
    ----------
    n_spots
        Number of spots.
    grid
        ``"hex"`` (Visium: odd rows shifted by one column) or ``"square"``.

    Returns
    -------
    pandas.DataFrame
        ``array_row``, ``array_col`` (grid indices), ``x_um``, ``y_um`` (centres in micrometres), one row per spot.
    """
    aspect = math.sqrt(3) / 2 if grid == "hex" else 1.0
    n_rows = max(1, round(math.sqrt(n_spots * aspect)))
    n_per_row = math.ceil(n_spots / n_rows)
    rows, per = np.divmod(np.arange(n_spots), n_per_row)
    if grid == "hex":
        cols = 2 * per + (rows % 2)  # Visium: odd rows are shifted by one column
        x, y = cols * SPOT_SPACING_UM / 2, rows * SPOT_SPACING_UM * aspect
    else:
        cols = per
        x, y = cols * SPOT_SPACING_UM, rows * SPOT_SPACING_UM
    return pd.DataFrame({"array_row": rows, "array_col": cols, "x_um": x, "y_um": y})


def _regions(spots: pd.DataFrame, rng: np.random.Generator) -> tuple[np.ndarray, list[dict[str, float]]]:
    """Tumour blobs (1-2 discs), an interface ring 1.5 spot spacings wide, stroma elsewhere."""
    width, height = spots["x_um"].max(), spots["y_um"].max()
    n_blobs = int(rng.integers(1, 3))
    radius = min(width, height) * (0.25 if n_blobs == 1 else 0.17)
    blobs = []
    for b in range(n_blobs):
        cx = width * ((b + 0.5) / n_blobs + rng.uniform(-0.05, 0.05))
        cy = height * rng.uniform(0.4, 0.6)
        blobs.append({"x_um": float(cx), "y_um": float(cy), "radius_um": float(radius * rng.uniform(0.85, 1.15))})
    distance = np.min(
        [np.hypot(spots["x_um"] - b["x_um"], spots["y_um"] - b["y_um"]) - b["radius_um"] for b in blobs], axis=0
    )
    ring = 1.5 * SPOT_SPACING_UM
    region = np.where(distance <= 0, "tumour", np.where(distance <= ring, "interface", "stroma"))
    return region, blobs


def _spot_cells(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cell counts per spot and type (spots x types)."""
    counts: np.ndarray = np.zeros((len(region), len(CELL_TYPES)), dtype=np.int64)
    n_cells = rng.integers(SPOT_CELLS[0], SPOT_CELLS[1] + 1, size=len(region))
    for name in REGIONS:
        rows = np.flatnonzero(region == name)
        weights = np.array([REGION_COMPOSITION[name].get(t, 0.0) for t in CELL_TYPES])
        for i in rows:
            p = rng.dirichlet(weights * 50 + 1e-9)
            counts[i] = rng.multinomial(n_cells[i], p / p.sum())
    return counts


def _spot_means(
    model: Model,
    counts: np.ndarray,
    region: np.ndarray,
    patient: str,
    condition: str,
    umi_per_cell: float,
    rng: np.random.Generator,
) -> np.ndarray:
    """Compute expected counts per spot: sum over its cells of the cell-type means (with planted effects)."""
    n_spots, n_genes = counts.shape[0], len(model.genes.var)
    mu = np.zeros((n_spots, n_genes), dtype=np.float32)
    capture = rng.lognormal(math.log(umi_per_cell), 0.25, size=n_spots).astype(np.float32)
    interface = region == "interface"
    for t, cell_type in enumerate(CELL_TYPES):
        n_t = counts[:, t]
        if not n_t.any():
            continue
        cells = pd.DataFrame(
            {"type_code": t, "library": n_t * capture, "pseudotime": rng.uniform(0, 1, n_spots), "fate": "none"}
        )
        if cell_type == MALIGNANT:
            p_a = FATE_A_PROB["metastasis" if condition == METASTASIS else "other"]
            fate = np.where(rng.uniform(size=n_spots) < p_a, "A", "B")
            cells["fate"] = np.where(cells["pseudotime"] < BRANCH_POINT, "root", fate)
        part = cell_means(model, cells, patient=patient, condition=condition, batch=None)
        if cell_type == LR_SOURCE:
            part[np.ix_(interface, model.idx["ligand"])] *= INTERFACE_LR_FOLD
        if cell_type == LR_TARGET:
            part[np.ix_(interface, model.idx["receptor"])] *= INTERFACE_LR_FOLD
        mu += part
    return mu


def _lowres_image(
    spots: pd.DataFrame, region: np.ndarray, scalef: float, spot_diameter_px: float, rng: np.random.Generator
) -> np.ndarray:
    """Draw an RGB tissue image: darker purple where tumour, pink stroma, white background."""
    margin = 2 * spot_diameter_px
    height = int((spots["pxl_row_in_fullres"].max() + margin) * scalef) + 1
    width = int((spots["pxl_col_in_fullres"].max() + margin) * scalef) + 1
    image: np.ndarray = np.full((height, width, 3), 245, dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    radius = max(1.0, SPOT_SPACING_UM * PX_PER_UM * scalef * 0.6)
    for (row_px, col_px), name in zip(
        spots[["pxl_row_in_fullres", "pxl_col_in_fullres"]].to_numpy() * scalef, region, strict=True
    ):
        r0, r1 = int(max(0, row_px - radius)), int(min(height, row_px + radius + 1))
        c0, c1 = int(max(0, col_px - radius)), int(min(width, col_px + radius + 1))
        disc = (yy[r0:r1, c0:c1] - row_px) ** 2 + (xx[r0:r1, c0:c1] - col_px) ** 2 <= radius**2
        image[r0:r1, c0:c1][disc] = REGION_COLOUR[name]
    image += rng.normal(0, 6, size=image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def _write_image(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    with atomic_path(path) as tmp:
        Image.fromarray(array).save(tmp, format="PNG")


def spatial_platform(model: Model, config: SimConfig) -> np.ndarray:
    """Draw the per-gene factors of the spatial assay.

    Per-gene factors of the spatial assay relative to the single-cell one (log-normal, SD
    ``spatial_platform_sd``), shared by every section: the gene-specific capture differences that
    make a single-cell reference and a Visium section disagree (Cable et al. 2022, RCTD). Drawn from
    their own random stream, so they leave every other simulated value unchanged.

    Parameters
    ----------
    model
        The simulation model (its genes).
    config
        The simulation settings (``seed``, ``spatial_platform_sd``).

    Returns
    -------
    numpy.ndarray
        One positive float32 factor per gene.
    """
    rng = np.random.default_rng([config.seed, PLATFORM_STREAM])
    return rng.lognormal(0.0, config.spatial_platform_sd, size=len(model.genes.var)).astype(np.float32)


def add_heldout_patients(model: Model, sections: list[dict[str, str]], config: SimConfig) -> None:
    """Give the patients of held-out sections their own CNVs and malignant programme (own random stream).

    Parameters
    ----------
    model
        The simulation model; ``cnv_events`` and ``patient_factors`` gain the new patients (changed in place).
    sections
        The planned sections (each with a ``patient``); patients already in the model are left as they are.
    config
        The simulation settings (``seed``).
    """
    rng = np.random.default_rng([config.seed, HELDOUT_STREAM])
    for section in sections:
        if section["patient"] not in model.patient_factors:
            model.cnv_events[section["patient"]], model.patient_factors[section["patient"]] = _draw_patient(
                model.genes, rng
            )


def simulate_section(
    model: Model, section: dict[str, Any], config: SimConfig, rng: np.random.Generator
) -> pd.DataFrame:
    """Simulate one Visium-like section and write its ``outs/`` folder; return the spot truth.

    Parameters
    ----------
    model
        The simulation model.
    section
        The planned section (``sample``, ``patient``, ...); gains ``blobs``, the tumour discs drawn.
    config
        The simulation settings (``n_spots``, ``grid``, ``outdir`` ...).
    rng
        The random generator (consumed in a fixed order, so a seed gives one cohort).

    Returns
    -------
    pandas.DataFrame
        One row per spot: barcode, grid position, ``true_region``, ``true_n_cells`` and per cell type
        ``true_prop_<type>`` and ``true_n_<type>``.
    """
    spots = spot_grid(config.n_spots, config.grid)
    region, blobs = _regions(spots, rng)
    section["blobs"] = blobs
    counts = _spot_cells(region, rng)
    offset = 3 * SPOT_SPACING_UM * PX_PER_UM
    spots["pxl_row_in_fullres"] = np.round(spots["y_um"] * PX_PER_UM + offset).astype(int)
    spots["pxl_col_in_fullres"] = np.round(spots["x_um"] * PX_PER_UM + offset).astype(int)
    barcodes = _barcodes(len(spots), rng)
    platform = spatial_platform(model, config)
    block = max(1, BLOCK_ELEMENTS // len(model.genes.var))
    parts = []
    for s in range(0, len(spots), block):
        mu = _spot_means(
            model,
            counts[s : s + block],
            region[s : s + block],
            section["patient"],
            section["condition"],
            config.spot_umi_per_cell,
            rng,
        )
        parts.append(draw_counts(mu * platform[None, :], model.dispersion, rng))
    matrix = sp.vstack(parts, format="csr")

    folder = config.outdir / "spatial" / section["sample"]
    outs = folder / "outs"
    write_10x_mtx(matrix, barcodes, model.genes.var, outs / "filtered_feature_bc_matrix")
    write_10x_h5(
        matrix,
        barcodes,
        model.genes.var,
        outs / "filtered_feature_bc_matrix.h5",
        _genome(config.species),
        section["sample"],
    )
    position_columns = ("array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres")
    positions = pd.DataFrame({"barcode": barcodes, "in_tissue": 1, **{c: spots[c] for c in position_columns}})
    with atomic_path(outs / "spatial" / "tissue_positions.csv") as tmp:
        positions.to_csv(tmp, index=False)
    diameter = 55.0 * PX_PER_UM
    scalefactors = {**SCALEFACTORS, "spot_diameter_fullres": diameter, "fiducial_diameter_fullres": diameter * 1.6}
    write_json(scalefactors, outs / "spatial" / "scalefactors_json.json")
    for name, key in (
        ("tissue_lowres_image.png", "tissue_lowres_scalef"),
        ("tissue_hires_image.png", "tissue_hires_scalef"),
    ):
        _write_image(_lowres_image(positions, region, SCALEFACTORS[key], diameter, rng), outs / "spatial" / name)

    n_cells = counts.sum(axis=1)
    truth = pd.DataFrame({"barcode": barcodes, "array_row": spots["array_row"], "array_col": spots["array_col"]})
    truth["true_region"], truth["true_n_cells"] = region, n_cells
    for t, cell_type in enumerate(CELL_TYPES):
        truth[f"true_prop_{cell_type}"] = counts[:, t] / n_cells
    for t, cell_type in enumerate(CELL_TYPES):
        truth[f"true_n_{cell_type}"] = counts[:, t]
    write_table(truth, folder / "truth_spots.tsv")
    with atomic_path(folder / "region_annotation.csv") as tmp:
        truth[["barcode"]].assign(region=region).to_csv(tmp, index=False)
    logger.info(
        "spatial section %s: %d spots (%s), %d UMI per spot (median)",
        section["sample"],
        len(spots),
        ", ".join(f"{r} {int((region == r).sum())}" for r in REGIONS),
        int(np.median(np.asarray(matrix.sum(axis=1)))),
    )
    return truth


def _sections(config: SimConfig) -> list[dict[str, str]]:
    tumour = _tumour_conditions(config)
    sections = []
    for k in range(config.n_sections):
        patient = f"P{config.n_patients + k + 1}" if config.heldout_sections else f"P{k % config.n_patients + 1}"
        condition = tumour[k % len(tumour)]
        sample = f"{patient}_{condition}_visium{k + 1}"
        sections.append(
            {"sample": sample, "patient": patient, "condition": condition, "tissue": TISSUE.get(condition, condition)}
        )
    return sections
