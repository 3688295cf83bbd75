"""The ``tmeflow simulate`` stage: draw the model, write every modality, the samplesheet and the truth."""

from __future__ import annotations

import gzip
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..io import atomic_path, write_json, write_text
from ..log import get_logger, timed
from .cohort import simulate_bulk, simulate_immunotherapy, simulate_validation_cohort, write_cell_lines
from .genes import build_genes
from .model import Model, build_model
from .settings import (
    BRANCH_POINT,
    BULK_MEDIAN_SURVIVAL_DAYS,
    CELL_TYPES,
    CNV_GAIN,
    CNV_LOSS,
    COMPARTMENT,
    DA_CELL_TYPE,
    DA_FOLD,
    DE_CELL_TYPE,
    DE_LOG2FC,
    DOUBLET_THINNING,
    FATE_A_PROB,
    INTERFACE_LR_FOLD,
    LOW_QUALITY_MITO,
    LOW_QUALITY_UMI,
    LR_FOLD,
    LR_SOURCE,
    LR_TARGET,
    MALIGNANT,
    METASTASIS,
    MITO_FRACTION,
    NEUTROPHIL_LOG2FC,
    NEUTROPHIL_MATURE_AT,
    NEUTROPHIL_PROK2_AT,
    NEUTROPHIL_PROK2_PROB,
    PATHWAY,
    PATHWAY_FOLD,
    PX_PER_UM,
    REGION_COMPOSITION,
    SPOT_CELLS,
    SPOT_SPACING_UM,
    TRAJECTORY_LOG2FC,
    TRUTH_CELL_COLUMNS,
    SimConfig,
    _tumour_conditions,
)
from .singlecell import _write_sc_sample, plan_samples, simulate_sample
from .spatial import _sections, add_heldout_patients, simulate_section

logger = get_logger(__package__)


# ----------------------------------------------------------------------------------------------
# Samplesheet, truth, run
# ----------------------------------------------------------------------------------------------
SAMPLESHEET_COLUMNS = (
    "sample",
    "patient",
    "condition",
    "tissue",
    "species",
    "batch",
    "modality",
    "data",
    "clinical",
    "region_annotation",
)


def _samplesheet(rows: list[dict[str, str]]) -> str:
    frame = pd.DataFrame(rows, columns=list(SAMPLESHEET_COLUMNS)).fillna("")
    return frame.to_csv(index=False)


def _truth(config: SimConfig, model: Model, plan: pd.DataFrame, sections: list[dict], bulk: dict) -> dict[str, Any]:
    genes = model.genes
    return {
        "tmeflow_version": __version__,
        "seed": config.seed,
        "parameters": config.settings(),
        "species": config.species,
        "n_genes": len(genes.var),
        "genes_per_arm": genes.var["chr_arm"].value_counts().sort_index().to_dict(),
        "cell_types": list(CELL_TYPES),
        "compartments": COMPARTMENT,
        "markers": genes.markers,
        "mito_genes": genes.mito,
        "ribo_genes": genes.ribo,
        "haemoglobin_genes": genes.haemoglobin,
        "samples": plan.drop(columns=["composition", "library_shift"])
        .assign(composition=[dict(zip(CELL_TYPES, np.round(c, 4).tolist(), strict=True)) for c in plan["composition"]])
        .to_dict(orient="records"),
        "batches": sorted(model.batch_factors),
        "cnv": {
            "events": model.cnv_events,
            "gain_fold": CNV_GAIN,
            "loss_fold": CNV_LOSS,
            "cells": "malignant cells of the patient",
        },
        "differential_abundance": {
            "cell_type": DA_CELL_TYPE,
            "fold_change": DA_FOLD,
            "condition": METASTASIS,
            "reference": "other tumour conditions",
        },
        "differential_expression": {
            "cell_type": DE_CELL_TYPE,
            "condition": METASTASIS,
            "reference": "other tumour conditions",
            "log2fc": DE_LOG2FC,
            "up": model.programmes["de_up"],
            "down": model.programmes["de_down"],
        },
        "pathway": {
            "name": PATHWAY,
            "cell_type": MALIGNANT,
            "condition": METASTASIS,
            "fold_change": PATHWAY_FOLD,
            "genes": genes.pathway,
        },
        "ligand_receptor": {
            "ligand": genes.ligand,
            "receptor": genes.receptor,
            "source": LR_SOURCE,
            "target": LR_TARGET,
            "condition": METASTASIS,
            "fold_change": LR_FOLD,
            "interface_fold_change": INTERFACE_LR_FOLD,
        },
        "trajectory": {
            "cell_type": MALIGNANT,
            "branch_point": BRANCH_POINT,
            "log2fc": TRAJECTORY_LOG2FC,
            "early": model.programmes["early"],
            "fate_A": model.programmes["fate_A"],
            "fate_B": model.programmes["fate_B"],
            "fate_A_probability": {"metastasis": FATE_A_PROB["metastasis"], "other": FATE_A_PROB["other"]},
        },
        "neutrophil_states": {
            "genes": model.neutrophil_states,
            "mature_at": NEUTROPHIL_MATURE_AT,
            "prok2_at": NEUTROPHIL_PROK2_AT,
            "prok2_probability": NEUTROPHIL_PROK2_PROB,
            "log2fc": NEUTROPHIL_LOG2FC,
            "root_genes": genes.neutrophil_states.get("immature neutrophil", []),
        },
        "qc": {
            "low_quality_rate": config.low_quality_rate,
            "low_quality_umi": LOW_QUALITY_UMI,
            "low_quality_mito_fraction": LOW_QUALITY_MITO,
            "doublet_rate": config.doublet_rate,
            "doublet_thinning": DOUBLET_THINNING,
            "mito_fraction_good": MITO_FRACTION,
        },
        "spatial": {
            "grid": config.grid,
            "n_spots": config.n_spots,
            "sections": sections,
            "regions": {
                "tumour": "inside a tumour blob (disc)",
                "interface": "within 1.5 spot spacings outside a blob",
                "stroma": "elsewhere",
                "composition": REGION_COMPOSITION,
            },
            "cells_per_spot": SPOT_CELLS,
            "spot_spacing_um": SPOT_SPACING_UM,
            "pixels_per_um": PX_PER_UM,
            "platform_sd": config.spatial_platform_sd,
            "umi_per_cell": config.spot_umi_per_cell,
            "heldout_patients": config.heldout_sections,
        },
        "bulk": {
            "n_samples": config.n_bulk,
            "beta": config.bulk_beta,
            "signature_genes": model.programmes["fate_A"],
            "score": "mean log2(TPM+1) over signature_genes, z-scored across samples (population SD)",
            "true_proportions": "bulk/true_proportions.tsv: mixture weights of the cell-type profiles (RNA "
            "fractions) and true_signature_z",
            "hazard": f"exponential, baseline median {BULK_MEDIAN_SURVIVAL_DAYS:g} days, hazard ratio exp(beta * z)",
            **bulk,
        },
        "files": {"truth_cells": "truth_cells.tsv.gz", "samplesheet": "samplesheet.csv"},
    }


def _bulk_row(config: SimConfig, sample: str, patient: str) -> dict[str, str]:
    """Return the samplesheet row of a bulk cohort written to the folder ``<sample>/``."""
    return {
        "sample": sample,
        "patient": patient,
        "condition": _tumour_conditions(config)[0],
        "tissue": "primary_tumour",
        "species": config.bulk_species or config.species,
        "batch": sample,
        "modality": "bulk",
        "data": f"{sample}/expression.tsv",
        "clinical": f"{sample}/clinical.tsv",
    }


def run_simulate(config: SimConfig) -> Path:
    """Simulate the cohort into ``config.outdir``; return the samplesheet path."""
    config.check()
    # one stream per part (spawn(n)[:4] equals spawn(4): new parts leave the others unchanged)
    rng_model, rng_sc, rng_spatial, rng_bulk, rng_drugs, rng_io, rng_validation = np.random.default_rng(
        config.seed
    ).spawn(7)
    with timed(logger, f"building the {config.species} model"):
        genes = build_genes(config, rng_model)  # checks --n_genes before anything is written
        model = build_model(config, genes, rng_model)
    outdir = config.outdir
    outdir.mkdir(parents=True, exist_ok=True)
    logger.info(
        "%d genes, %d patients, %d CNV events",
        len(genes.var),
        config.n_patients,
        sum(map(len, model.cnv_events.values())),
    )
    plan = plan_samples(config, rng_sc)
    sheet: list[dict[str, str]] = []
    truth_columns = ["sample", *TRUTH_CELL_COLUMNS]
    with (
        atomic_path(outdir / "truth_cells.tsv.gz") as tmp,
        gzip.open(tmp, "wt", compresslevel=4, encoding="utf-8") as truth_handle,
    ):
        for i, row in enumerate(plan.itertuples(index=False)):
            start = time.perf_counter()
            counts = simulate_sample(model, row, config, rng_sc)
            data = _write_sc_sample(counts, config)
            truth_cells = (
                counts.obs[truth_columns].rename_axis("barcode").round({"true_pseudotime": 5, "true_maturation": 5})
            )
            truth_cells.to_csv(truth_handle, sep="\t", header=(i == 0))
            meta = {k: getattr(row, k) for k in ("sample", "patient", "condition", "tissue", "species", "batch")}
            sheet.append({**meta, "modality": "sc", "data": data})
            logger.info(
                "sample %s: %d cells, %d genes, %.1f UMI/cell (mean) written in %.1f s",
                row.sample,
                len(counts.obs),
                len(counts.var),
                counts.total_umi / max(1, len(counts.obs)),
                time.perf_counter() - start,
            )
    sections = _sections(config)
    add_heldout_patients(model, sections, config)
    for section in sections:
        start = time.perf_counter()
        simulate_section(model, section, config, rng_spatial)
        folder = f"spatial/{section['sample']}"
        sheet.append(
            {
                **{k: section[k] for k in ("sample", "patient", "condition", "tissue")},
                "species": config.species,
                "batch": "visium",
                "modality": "spatial",
                "data": f"{folder}/outs",
                "region_annotation": f"{folder}/region_annotation.csv",
            }
        )
        logger.info("section %s written in %.1f s", section["sample"], time.perf_counter() - start)
    bulk: dict[str, Any] = {}
    if config.n_bulk:
        bulk = simulate_bulk(model, config, rng_bulk)
        sheet.append(_bulk_row(config, "bulk", "bulk_cohort"))
    validation = None
    if config.n_bulk_validation:
        validation = simulate_validation_cohort(model, config, rng_validation)
        sheet.append(_bulk_row(config, "bulk_validation", "bulk_validation_cohort"))
    immunotherapy = None
    if config.n_immunotherapy:
        immunotherapy = simulate_immunotherapy(model, config, rng_io)
        sheet.append(_bulk_row(config, "immunotherapy", "immunotherapy_cohort"))
    truth = _truth(config, model, plan, sections, bulk)
    if validation is not None:
        truth["bulk_validation"] = validation
    if immunotherapy is not None:
        truth["immunotherapy"] = immunotherapy
    if config.n_cell_lines:
        truth["drugs"] = write_cell_lines(model, config, rng_drugs)
    write_json(truth, outdir / "truth.json")
    return write_text(_samplesheet(sheet), outdir / "samplesheet.csv")


def config_from_args(args) -> SimConfig:
    """Build the simulation settings from parsed command-line arguments.

    Parameters
    ----------
    args
        The ``tmeflow simulate`` arguments (``argparse.Namespace``): one attribute per :class:`SimConfig` field,
        ``conditions`` as a comma-separated string and ``outdir`` as a path string.

    Returns
    -------
    SimConfig
        The frozen settings.
    """
    conditions = tuple(c.strip() for c in str(args.conditions).split(",") if c.strip())
    fields = {
        name: getattr(args, name)
        for name in SimConfig.__dataclass_fields__
        if name not in {"outdir", "conditions"} and hasattr(args, name)
    }
    return SimConfig(outdir=Path(args.outdir), conditions=conditions, **fields)


def cli(args, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow simulate``."""
    config = config_from_args(args)
    with timed(
        logger,
        f"simulating {config.n_cells} cells, {config.n_sections} section(s), {config.n_bulk} bulk samples into "
        f"{config.outdir}",
    ):
        sheet = run_simulate(config)
    logger.info("samplesheet: %s", sheet)
