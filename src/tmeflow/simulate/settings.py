"""Planted-truth constants of the generative model and the simulator's configuration (:class:`SimConfig`)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from ..errors import TmeflowInputError

# ----------------------------------------------------------------------------------------------
# Programme genes (human symbols; mouse symbols come from the ortholog table)
# ----------------------------------------------------------------------------------------------
CELL_TYPES = (
    "T", "NK", "B", "plasma", "myeloid", "neutrophil", "mast",
    "epithelial", "malignant", "fibroblast", "endothelial",
)  # fmt: skip
MALIGNANT = "malignant"
MARKERS: dict[str, tuple[str, ...]] = {
    "T": ("CD3D", "CD3E", "CD3G", "CD2", "TRAC", "IL7R", "CD8A", "CD8B", "CD247", "LCK", "CD5", "CD6", "CD28"),
    "NK": ("NKG7", "GNLY", "KLRD1", "NCAM1", "KLRF1", "PRF1", "GZMB", "NCR1", "KLRB1"),
    "B": ("MS4A1", "CD79A", "CD79B", "CD19", "CD22", "BANK1", "PAX5", "FCRL1", "CR2", "BLK"),
    "plasma": ("JCHAIN", "MZB1", "IGHG1", "SDC1", "PRDM1", "TNFRSF17", "DERL3", "IGKC", "IGHA1"),
    "myeloid": ("CD68", "LYZ", "CD14", "C1QA", "C1QB", "C1QC", "CSF1R", "CD163", "AIF1", "MS4A7"),
    "neutrophil": ("S100A8", "S100A9", "FCGR3B", "CSF3R", "CXCR2", "CXCR1", "FPR1", "MNDA", "CMTM2"),
    "mast": ("TPSAB1", "CPA3", "KIT", "MS4A2", "TPSB2", "HDC", "HPGDS", "SIGLEC6", "CTSG"),
    "epithelial": ("EPCAM", "KRT8", "KRT18", "KRT19", "CDH1", "CLDN4", "CLDN7", "KRT7", "ELF3", "SPINT2"),
    "fibroblast": ("COL1A1", "COL1A2", "DCN", "LUM", "PDGFRA", "COL3A1", "FAP", "PDGFRB", "THY1", "FBLN1"),
    "endothelial": ("PECAM1", "VWF", "CDH5", "PLVAP", "KDR", "CLDN5", "EMCN", "FLT1", "TIE1", "ESAM"),
}
MARKERS[MALIGNANT] = MARKERS["epithelial"]  # malignant cells are epithelial
MARKER_QUANTILES = (0.95, 0.999)  # level of a marker in its own type (quantile of the baseline)
MARKER_OFF_QUANTILES = (0.1, 0.4)  # level of a marker in every other type
PROGRAMME_QUANTILES = (0.7, 0.95)  # baseline level of programme / planted genes
COMPARTMENT = {
    "T": "immune", "NK": "immune", "B": "immune", "plasma": "immune", "myeloid": "immune",
    "neutrophil": "immune", "mast": "immune", "epithelial": "epithelial", "malignant": "epithelial",
    "fibroblast": "stromal", "endothelial": "stromal",
}  # fmt: skip
LIBRARY_FACTOR = {"neutrophil": 0.6, "plasma": 1.4, "malignant": 1.3, "mast": 0.9}

HUMAN_MITO = {  # symbol: (Ensembl id, approximate start on chrM)
    "MT-ND1": ("ENSG00000198888", 3307), "MT-ND2": ("ENSG00000198763", 4470),
    "MT-CO1": ("ENSG00000198804", 5904), "MT-CO2": ("ENSG00000198712", 7586),
    "MT-ATP8": ("ENSG00000228253", 8366), "MT-ATP6": ("ENSG00000198899", 8527),
    "MT-CO3": ("ENSG00000198938", 9207), "MT-ND3": ("ENSG00000198840", 10059),
    "MT-ND4L": ("ENSG00000212907", 10470), "MT-ND4": ("ENSG00000198886", 10760),
    "MT-ND5": ("ENSG00000198786", 12337), "MT-ND6": ("ENSG00000198695", 14149),
    "MT-CYB": ("ENSG00000198727", 14747),
}  # fmt: skip
MOUSE_MITO = {
    "mt-Nd1": ("ENSMUSG00000064341", 2751), "mt-Nd2": ("ENSMUSG00000064345", 3914),
    "mt-Co1": ("ENSMUSG00000064351", 5328), "mt-Co2": ("ENSMUSG00000064354", 6959),
    "mt-Atp8": ("ENSMUSG00000064356", 7766), "mt-Atp6": ("ENSMUSG00000064357", 7927),
    "mt-Co3": ("ENSMUSG00000064358", 8607), "mt-Nd3": ("ENSMUSG00000064360", 9459),
    "mt-Nd4l": ("ENSMUSG00000065947", 9877), "mt-Nd4": ("ENSMUSG00000064363", 10167),
    "mt-Nd5": ("ENSMUSG00000064367", 11742), "mt-Nd6": ("ENSMUSG00000064368", 13552),
    "mt-Cytb": ("ENSMUSG00000064370", 14145),
}  # fmt: skip
HAEMOGLOBIN = {"human": ("HBA1", "HBA2", "HBB"), "mouse": ("Hba-a1", "Hba-a2", "Hbb-bs")}
RIBO_PATTERN = {"human": r"^RP[SL]\d+[AXYL]?\d*$", "mouse": r"^Rp[sl]\d+[axyl]?\d*$"}
# Mouse names for human markers without a one-to-one ortholog in the bundled table.
MOUSE_NAMES = {
    "TRAC": "Trac", "CD8B": "Cd8b1", "GZMB": "Gzmb", "KLRB1": "Klrb1c", "CD68": "Cd68", "LYZ": "Lyz2",
    "S100A9": "S100a9", "TPSAB1": "Tpsab1", "TPSB2": "Tpsb2", "IGHG1": "Ighg1", "IGHA1": "Igha",
    "FCGR3B": "Retnlg", "MNDA": "Ly6g", "SIGLEC6": "Mcpt4", "GNLY": "Klrk1", "KLRF1": "Klra8",
}  # fmt: skip

MITO_FRACTION = 0.05
RIBO_FRACTION = 0.15
HB_WEIGHT = 1e-7
BASELINE_SHAPE = 0.3
TYPE_NOISE_SD = 0.5
MALIGNANT_NOISE_SD = 0.3
PATIENT_NOISE_SD = 0.2
DISPERSION_RANGE = (0.2, 0.5)
LIBRARY_MEDIAN = 2500.0
LIBRARY_SD = 0.35
SAMPLE_SHIFT_SD = 0.15

# Composition (relative weights) of a normal and of a tumour sample.
COMPOSITION = {
    "normal": {"T": 0.15, "NK": 0.05, "B": 0.06, "plasma": 0.05, "myeloid": 0.12, "neutrophil": 0.03,
               "mast": 0.02, "epithelial": 0.30, "malignant": 0.0, "fibroblast": 0.12, "endothelial": 0.10},
    "tumour": {"T": 0.14, "NK": 0.04, "B": 0.05, "plasma": 0.04, "myeloid": 0.12, "neutrophil": 0.03,
               "mast": 0.02, "epithelial": 0.04, "malignant": 0.32, "fibroblast": 0.11, "endothelial": 0.08},
}  # fmt: skip
COMPOSITION_CONCENTRATION = 300.0  # Dirichlet concentration of per-sample composition noise
METASTASIS = "metastasis"
NORMAL = "normal"
TISSUE = {"normal": "adjacent_normal", "primary": "primary_tumour", "metastasis": "lymph_node"}

DA_CELL_TYPE = "neutrophil"
DA_FOLD = 3.0
DE_CELL_TYPE = "myeloid"
DE_N_GENES = 30
DE_LOG2FC = 1.0
PATHWAY = "HALLMARK_HYPOXIA"
PATHWAY_FOLD = 1.5
LR_LIGAND, LR_RECEPTOR = "MDK", "NCL"
LR_SOURCE, LR_TARGET = MALIGNANT, "fibroblast"
LR_FOLD = 4.0
INTERFACE_LR_FOLD = 3.0

CNV_GAIN, CNV_LOSS = 1.5, 0.5
CNV_EVENTS_RANGE = (3, 5)
MIN_CNV_ARM_GENES = 40
TRAJECTORY_N_GENES = 20
BRANCH_POINT = 0.3
TRAJECTORY_LOG2FC = 3.0
FATE_A_PROB = {"metastasis": 0.75, "other": 0.25}

# Neutrophil maturation, planted in mouse cohorts only (the colorectal liver-metastasis study's neutrophil
# states; state genes from the bundled mouse subtype table, Xue et al. 2022): maturation ~ U(0, 1) per
# neutrophil; immature genes fall and mature genes rise along it; late cells turn PROK2-high, more often in
# metastasis. Genes that are also simulated major neutrophil markers stay constant (they are dropped here);
# each state also moves NEUTROPHIL_PROGRAMME_GENES random genes.
NEUTROPHIL_STREAM = 0x4E45
NEUTROPHIL_STATE_GENES = {
    "immature neutrophil": ("Camp", "Ltf", "Lcn2", "Ngp", "Chil3", "Cd177", "Olfm4", "Mmp8"),
    "mature neutrophil": ("Sell", "Mme"),
    "PROK2-high neutrophil": ("Prok2", "Mmp25"),
}
NEUTROPHIL_MATURE_AT = 0.4  # maturation from which a neutrophil is mature
NEUTROPHIL_PROK2_AT = 0.6  # maturation from which a mature neutrophil may turn PROK2-high
NEUTROPHIL_PROK2_PROB = {"metastasis": 0.9, "other": 0.3}
NEUTROPHIL_LOG2FC = 3.0
NEUTROPHIL_PROGRAMME_GENES = 40  # random genes added to each state's markers

LOW_QUALITY_UMI = (200, 400)
LOW_QUALITY_MITO = (0.3, 0.6)
DOUBLET_THINNING = (0.75, 1.0)
BLOCK_ELEMENTS = 10_000_000  # cells x genes per block of dense means (40 MB float32)

REGIONS = ("tumour", "interface", "stroma")
REGION_COMPOSITION = {
    "tumour": {"malignant": 0.70, "fibroblast": 0.08, "myeloid": 0.08, "T": 0.06, "endothelial": 0.04,
               "NK": 0.02, "neutrophil": 0.02},
    "interface": {"malignant": 0.30, "fibroblast": 0.20, "myeloid": 0.14, "T": 0.12, "endothelial": 0.08,
                  "B": 0.05, "NK": 0.04, "neutrophil": 0.04, "plasma": 0.03},
    "stroma": {"fibroblast": 0.34, "endothelial": 0.15, "myeloid": 0.12, "T": 0.12, "B": 0.07,
               "plasma": 0.06, "epithelial": 0.05, "mast": 0.03, "NK": 0.03, "neutrophil": 0.03},
}  # fmt: skip
SPOT_CELLS = (5, 15)
PLATFORM_STREAM, HELDOUT_STREAM = 0x504C, 0x484F  # extra random streams: spatial platform, held-out patients
SPOT_SPACING_UM = 100.0
PX_PER_UM = 1.625
SCALEFACTORS = {"tissue_hires_scalef": 0.17, "tissue_lowres_scalef": 0.05}
REGION_COLOUR = {"tumour": (104, 52, 138), "interface": (168, 112, 180), "stroma": (232, 176, 206)}

BULK_SIGNATURE_LOG2FC = 3.0
BULK_NOISE_SD = 0.25
BULK_PLATFORM_SD = 0.3
BULK_MEDIAN_SURVIVAL_DAYS = 1500.0
BULK_CENSORING_RATIO = 0.55  # censoring hazard / baseline event hazard (~35% censored)
BULK_TMB_PER_MB = 2.0  # pan-cancer cohorts: mean non-synonymous variants per Mb (38 Mb capture) ...
BULK_TMB_LOG_PER_SD = 0.5  # ... times exp(0.5 * z) in the planted types (score-TMB correlation), flat elsewhere ...
BULK_TMB_LOG_SD = 0.8  # ... times a per-tumour log-normal factor (TMB varies over orders of magnitude between tumours)
BULK_CAPTURE_MB = 38.0
BULK_NORMAL_DE_GENES = 6  # --bulk_normals: the first 6 signature (fate-A) genes differ between tumour and normal ...
BULK_MSI_MEDIAN = (
    0.3  # pan-cancer cohorts: MSI score (MANTIS-like scale) = 0.3 x exp(0.4 z in the planted types + 0.5 N(0,1))
)
BULK_MSI_LOG_PER_SD = 0.4
BULK_MSI_LOG_SD = 0.5
BULK_CNV_PROBABILITIES = (0.05, 0.15, 0.6, 0.15, 0.05)  # GISTIC levels -2..2 of every signature gene, independent ...
BULK_CNV_LOG2_PER_LEVEL = (
    0.8  # ... and the 7th signature gene's TPM x 2^(0.8 x level) in tumours (CNV-expression correlation)
)
BULK_NORMAL_LOG2FC = (
    1.0  # ... by log2 fold change +1 (even positions: higher in tumours) or -1 (odd: lower); others equal
)
DRUG_BASE_LN_IC50 = 2.0  # simulated cell lines: ln IC50 = 2 + N(0, 1) ...
IO_BASE_LOGIT = -0.5  # immunotherapy cohort: logit P(CR/PR) = -0.5 + log_or * z (about 38% responders) ...
IO_LOG_HR_PER_LOG_OR = 0.6  # ... and progression / death-after-progression hazards exp(-0.6 * log_or * z)
IO_MEDIAN_PFS_DAYS = 150.0
IO_MEDIAN_POST_PROGRESSION_DAYS = 250.0
IO_CENSORING_HAZARD = 1 / 900.0  # administrative/loss-to-follow-up censoring of both endpoints
DRUG_SLOPE_PER_SD = 0.8  # ... minus 0.8 per SD of the signature score for the planted drugs (rho about -0.6)
SC_FORMATS = ("h5ad", "mtx", "h5")
TRUTH_CELL_COLUMNS = (
    "true_cell_type",
    "true_compartment",
    "true_malignant",
    "true_pseudotime",
    "true_fate",
    "true_qc",
    "true_doublet_partner",
    "true_state",
    "true_maturation",
)


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimConfig:
    """Hold the options of one simulated cohort (``tmeflow simulate``), with their defaults."""

    outdir: Path
    n_cells: int = 3000
    n_patients: int = 3
    conditions: tuple[str, ...] = ("normal", "primary", "metastasis")
    species: str = "human"
    seed: int = 0
    n_genes: int = 4000
    n_batches: int = 2
    batch_effect: float = 0.3
    n_sections: int = 1
    n_spots: int = 1000
    grid: str = "hex"
    n_bulk: int = 200
    bulk_species: str | None = None
    bulk_beta: float = math.log(2)
    bulk_cancer_types: int = 0
    bulk_planted_types: int = 1
    bulk_normals: int = 0
    n_cell_lines: int = 0
    n_immunotherapy: int = 0
    n_bulk_validation: int = 0
    immunotherapy_log_or: float = 1.0
    n_drugs: int = 20
    planted_drugs: int = 3
    doublet_rate: float = 0.0
    low_quality_rate: float = 0.0
    sc_format: str = "h5ad"
    spatial_platform_sd: float = 0.7
    heldout_sections: bool = False
    spot_umi_per_cell: float = 800.0

    def settings(self) -> dict[str, Any]:
        """Return the options as plain JSON/HDF5-friendly values (no output folder)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "outdir"}

    def check(self) -> None:
        """Raise :class:`TmeflowInputError` on an impossible setting (before anything is written)."""
        positive = {
            "n_cells": self.n_cells,
            "n_patients": self.n_patients,
            "n_genes": self.n_genes,
            "n_batches": self.n_batches,
        }
        for name, value in positive.items():
            if value < 1:
                raise TmeflowInputError(f"--{name} must be at least 1, got {value}")
        for name, value in {"n_sections": self.n_sections, "n_spots": self.n_spots, "n_bulk": self.n_bulk}.items():
            if value < 0:
                raise TmeflowInputError(f"--{name} must be 0 or more, got {value}")
        if 0 < self.n_bulk < 10:
            raise TmeflowInputError(f"--n_bulk must be 0 or at least 10, got {self.n_bulk}")
        if self.bulk_cancer_types < 0 or not 0 <= self.bulk_planted_types <= max(self.bulk_cancer_types, 1):
            raise TmeflowInputError(
                f"--bulk_cancer_types must be 0 or more and --bulk_planted_types between 0 and it, got "
                f"{self.bulk_cancer_types} and {self.bulk_planted_types}"
            )
        if self.bulk_normals < 0:
            raise TmeflowInputError(f"--bulk_normals must be 0 or more, got {self.bulk_normals}")
        if self.bulk_cancer_types and self.n_bulk < 10 * self.bulk_cancer_types:
            raise TmeflowInputError(
                f"--n_bulk {self.n_bulk} is fewer than 10 samples per cancer type "
                f"(--bulk_cancer_types {self.bulk_cancer_types})"
            )
        if self.n_cell_lines and (
            self.n_cell_lines < 20 or self.n_drugs < 1 or not 0 <= self.planted_drugs <= self.n_drugs
        ):
            raise TmeflowInputError(
                f"--n_cell_lines must be 0 or at least 20, --n_drugs at least 1 and --planted_drugs between 0 "
                f"and --n_drugs, got {self.n_cell_lines}, {self.n_drugs} and {self.planted_drugs}"
            )
        if 0 < self.n_bulk_validation < 10:
            raise TmeflowInputError(f"--n_bulk_validation must be 0 or at least 10, got {self.n_bulk_validation}")
        if 0 < self.n_immunotherapy < 30:
            raise TmeflowInputError(f"--n_immunotherapy must be 0 or at least 30, got {self.n_immunotherapy}")
        if self.n_sections and self.n_spots < 50:
            raise TmeflowInputError(f"--n_spots must be at least 50, got {self.n_spots}")
        for name, rate in {"doublet_rate": self.doublet_rate, "low_quality_rate": self.low_quality_rate}.items():
            if not 0.0 <= rate < 0.5:
                raise TmeflowInputError(f"--{name} must be in [0, 0.5), got {rate}")
        if self.doublet_rate + self.low_quality_rate >= 0.5:
            raise TmeflowInputError("--doublet_rate plus --low_quality_rate must stay below 0.5")
        choices = {
            "species": (self.species, ("human", "mouse")),
            "bulk_species": (self.bulk_species or self.species, ("human", "mouse")),
            "grid": (self.grid, ("hex", "square")),
            "sc_format": (self.sc_format, SC_FORMATS),
        }
        for name, (choice, allowed) in choices.items():
            if choice not in allowed:
                raise TmeflowInputError(f"--{name} must be one of {', '.join(allowed)}, got {choice}")
        for name, sd in {"batch_effect": self.batch_effect, "spatial_platform_sd": self.spatial_platform_sd}.items():
            if sd < 0:
                raise TmeflowInputError(f"--{name} must be 0 or more, got {sd}")
        if self.spot_umi_per_cell <= 0:
            raise TmeflowInputError(f"--spot_umi_per_cell must be positive, got {self.spot_umi_per_cell}")
        if not self.conditions or len(set(self.conditions)) != len(self.conditions):
            raise TmeflowInputError("--conditions must be a comma-separated list of distinct names")
        for condition in self.conditions:
            if not condition or not (condition[0].isalnum() and all(c.isalnum() or c in "._-" for c in condition)):
                raise TmeflowInputError(f"condition '{condition}' must be letters, digits, '.', '_' or '-'")
        if self.n_cells < self.n_patients * len(self.conditions):
            raise TmeflowInputError(f"--n_cells {self.n_cells} is fewer than one cell per sample")


def _tumour_conditions(config: SimConfig) -> list[str]:
    return [c for c in config.conditions if c != NORMAL] or ["primary"]
