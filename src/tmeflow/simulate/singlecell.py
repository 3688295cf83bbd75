"""``tmeflow simulate``: a synthetic cancer cohort with planted ground truth.

Every later test and benchmark runs on this cohort, so everything that is planted is written down in
``truth.json`` (and per cell / spot / bulk sample in truth tables).

Generative model
----------------
Genes
    Real symbols from the bundled gene-position table of the species (``--n_genes`` of them, default
    4,000): every marker / programme gene below, the Hallmark hypoxia genes, ribosomal RPL/RPS genes,
    haemoglobin genes, plus an equal share of random genes per chromosome arm (capped by what the arm
    has), so that arm-level copy-number changes span many genes. The 13 mitochondrial genes (not in
    the table) are added on chromosome ``MT``. Mouse uses the bundled one-to-one orthologs of the
    human markers (with a few well-known mouse names where no one-to-one ortholog exists).
    ``--n_genes`` must leave room for the programme genes, 20 genes per arm and five autosomal arms of
    40 genes for the planted CNVs (1,322 for human, 975 for mouse); a smaller value is a one-line error.
Expression profiles
    A baseline profile is drawn once (gamma, shape 0.3: heavy-tailed). Each cell type multiplies it by
    a log-normal type-specific factor; its marker genes sit at the 95-99.9th percentile of the
    baseline in that type and at the 10-40th elsewhere; malignant cells start from the epithelial
    profile. Mitochondrial genes hold 5% and ribosomal genes 15% of every profile.
Cells
    ``mean = library size x profile(cell type) x batch factor x planted effects``; counts are
    negative-binomial (gamma-Poisson) with gene-wise dispersion 0.2-0.5. Library sizes are
    log-normal around 2,500 UMI with a per-sample shift; batches multiply genes by log-normal
    factors (``--batch_effect`` is their log-scale SD).
Planted effects (all recorded in ``truth.json``)
    * CNV: each patient has 3-5 autosomal arm-level events (gain x1.5 / loss x0.5 on every gene of
      the arm), in that patient's malignant cells only.
    * Trajectory (malignant cells): ``true_pseudotime`` ~ U(0, 1); an early programme decreases with
      pseudotime; after the branch point (0.3) cells follow fate A or B, each raising its own genes.
      Fate A makes 75% of branched metastasis cells and 25% elsewhere.
    * Ligand-receptor: MDK x4 in malignant cells and NCL x4 in fibroblasts of metastasis samples.
    * Differential abundance: neutrophils x3 in metastasis.
    * Differential expression: ~30 genes in myeloid cells, metastasis vs other tumour samples,
      log2FC +1 / -1; Hallmark hypoxia genes x1.5 in metastasis malignant cells.
    * QC: ``--low_quality_rate`` cells with 200-400 UMI and 30-60% mitochondrial reads;
      ``--doublet_rate`` heterotypic doublets (two cells' means summed and thinned to 75-100%).
Spatial
    A Visium-like hexagonal (or square) grid; one or two tumour blobs, an interface ring 1-2 spots
    wide, stroma elsewhere. A spot mixes 5-15 cells drawn from region-specific proportions; in
    interface spots MDK (malignant cells) and NCL (fibroblasts) are raised further. Each section is
    a Space Ranger-like ``outs/`` folder (``filtered_feature_bc_matrix/`` and ``.h5``,
    ``spatial/tissue_positions.csv``, ``scalefactors_json.json``, rendered tissue images).
Bulk
    TPM from per-sample random mixtures of the cell-type profiles; the fate-A genes form a signature
    whose z-scored score (mean log2(TPM+1) over the signature, z across samples) sets an exponential
    hazard ``exp(beta * z)``; exponential censoring (~35%).

All randomness comes from one ``numpy`` Generator seeded with ``--seed`` (split with ``spawn`` into
model / single-cell / spatial / bulk streams). Cells are generated one sample at a time, in blocks
of at most ``BLOCK_ELEMENTS`` dense means, turned into CSR at once and appended to the sample's
h5ad, so memory does not grow with the number of cells.

Truth lives in ``truth.json`` (cohort-level), ``truth_cells.tsv.gz`` and the ``true_*`` obs columns
(per cell), ``spatial/<section>/truth_spots.tsv`` (per spot) and ``bulk/true_proportions.tsv``.
"""

from __future__ import annotations

import gzip
import math
import shutil
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from . import __version__
from .errors import TmeflowInputError
from .io import atomic_path, provenance, write_json, write_table, write_text
from .log import get_logger, timed

logger = get_logger(__name__)

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
SC_FORMATS = ("h5ad", "mtx", "h5")
TRUTH_CELL_COLUMNS = (
    "true_cell_type", "true_compartment", "true_malignant", "true_pseudotime", "true_fate", "true_qc", "true_doublet_partner",
)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# Configuration
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class SimConfig:
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
    bulk_beta: float = math.log(2)
    doublet_rate: float = 0.0
    low_quality_rate: float = 0.0
    sc_format: str = "h5ad"
    spatial_platform_sd: float = 0.7
    heldout_sections: bool = False
    spot_umi_per_cell: float = 800.0

    def settings(self) -> dict[str, Any]:
        """The options as plain JSON/HDF5-friendly values (no output folder)."""
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k != "outdir"}

    def check(self) -> None:
        """Raise :class:`TmeflowInputError` on an impossible setting (before anything is written)."""
        positive = {"n_cells": self.n_cells, "n_patients": self.n_patients, "n_genes": self.n_genes, "n_batches": self.n_batches}
        for name, value in positive.items():
            if value < 1:
                raise TmeflowInputError(f"--{name} must be at least 1, got {value}")
        for name, value in {"n_sections": self.n_sections, "n_spots": self.n_spots, "n_bulk": self.n_bulk}.items():
            if value < 0:
                raise TmeflowInputError(f"--{name} must be 0 or more, got {value}")
        if 0 < self.n_bulk < 10:
            raise TmeflowInputError(f"--n_bulk must be 0 or at least 10, got {self.n_bulk}")
        if self.n_sections and self.n_spots < 50:
            raise TmeflowInputError(f"--n_spots must be at least 50, got {self.n_spots}")
        for name, value in {"doublet_rate": self.doublet_rate, "low_quality_rate": self.low_quality_rate}.items():
            if not 0.0 <= value < 0.5:
                raise TmeflowInputError(f"--{name} must be in [0, 0.5), got {value}")
        if self.doublet_rate + self.low_quality_rate >= 0.5:
            raise TmeflowInputError("--doublet_rate plus --low_quality_rate must stay below 0.5")
        choices = {
            "species": (self.species, ("human", "mouse")),
            "grid": (self.grid, ("hex", "square")),
            "sc_format": (self.sc_format, SC_FORMATS),
        }
        for name, (value, allowed) in choices.items():
            if value not in allowed:
                raise TmeflowInputError(f"--{name} must be one of {', '.join(allowed)}, got {value}")
        for name, value in {"batch_effect": self.batch_effect, "spatial_platform_sd": self.spatial_platform_sd}.items():
            if value < 0:
                raise TmeflowInputError(f"--{name} must be 0 or more, got {value}")
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


# ----------------------------------------------------------------------------------------------
# Genes
# ----------------------------------------------------------------------------------------------
@dataclass
class Genes:
    """The simulated gene set: ``var`` (genome order, mito last) and the named gene groups."""

    var: pd.DataFrame
    markers: dict[str, list[str]]
    ribo: list[str]
    mito: list[str]
    haemoglobin: list[str]
    pathway: list[str]
    ligand: str
    receptor: str
    position: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self.position = {symbol: i for i, symbol in enumerate(self.var.index)}

    def index(self, symbols) -> np.ndarray:
        return np.array([self.position[s] for s in symbols], dtype=np.int64)


def _resource_table(*parts: str) -> pd.DataFrame:
    with resources.as_file(resources.files("tmeflow").joinpath("resources", *parts)) as path:
        return pd.read_csv(path, sep="\t", dtype={"chromosome": str})


def _read_gmt_set(species: str, name: str) -> list[str]:
    filename = "hallmark_human.gmt" if species == "human" else "hallmark_mouse_orthomapped_DERIVED.gmt"
    text = resources.files("tmeflow").joinpath("resources", "hallmark", filename).read_text()
    for line in text.splitlines():
        fields = line.rstrip("\n").split("\t")
        if fields[0] == name:
            return [g.strip() for g in fields[2:] if g.strip()]
    raise KeyError(name)


def _marker_table_genes(species: str, available: set[str]) -> list[str]:
    """Genes of the bundled major and subtype marker tables (mouse only), so annotation and sub-clustering
    of a simulated mouse cohort can score every bundled type. Human simulations keep their gene list (and so
    their bytes for a seed): the human tables are matched by the random background genes as before."""
    if species == "human":
        return []
    genes: set[str] = set()
    for kind in ("major", "subtypes"):
        genes |= set(_resource_table("markers", f"{kind}_{species}.tsv")["gene"].astype(str))
    return sorted(genes & available)


def _species_symbol(human: str, species: str, orthologs: dict[str, str], available: set[str]) -> str | None:
    """The symbol of a human gene in ``species`` (ortholog, then known mouse name, then capitalised)."""
    if species == "human":
        return human if human in available else None
    for candidate in (orthologs.get(human), MOUSE_NAMES.get(human), human.capitalize()):
        if candidate and candidate in available:
            return candidate
    return None


def _allocate_per_arm(available: pd.Series, budget: int) -> dict[str, int]:
    """Equal share of ``budget`` per arm, capped by what the arm has (water-filling)."""
    quota = {arm: 0 for arm in available.index}
    remaining, open_arms = budget, [arm for arm in available.index if available[arm] > 0]
    while remaining > 0 and open_arms:
        share = max(1, remaining // len(open_arms))
        for arm in list(open_arms):
            take = min(share, available[arm] - quota[arm], remaining)
            quota[arm] += take
            remaining -= take
            if quota[arm] >= available[arm]:
                open_arms.remove(arm)
            if remaining == 0:
                break
    return quota


def _cnv_arms(table: pd.DataFrame, required: list[str], per_arm: pd.Series, budget: int) -> int:
    """How many autosomal arms hold at least ``MIN_CNV_ARM_GENES`` simulated genes for this ``budget``.

    The count is fixed by the programme genes and the per-arm quota alone (the random draw only picks
    which genes of an arm), so it can be checked before anything is drawn."""
    counts = table.loc[required, "chr_arm"].value_counts().add(pd.Series(_allocate_per_arm(per_arm, budget)), fill_value=0)
    autosomal = set(table.loc[~table["chromosome"].isin(["X", "Y", "MT"]), "chr_arm"])
    return int(sum(n >= MIN_CNV_ARM_GENES for arm, n in counts.items() if arm in autosomal))


def build_genes(config: SimConfig, rng: np.random.Generator) -> Genes:
    """Choose the simulated genes; raise if ``--n_genes`` cannot hold the programme genes and the CNV arms."""
    species = config.species
    table_name = "genes_hg38_xclone.tsv" if species == "human" else "genes_mm10_xclone.tsv"
    table = _resource_table("gene_positions", table_name).drop_duplicates("gene_symbol")
    table = table[table["chromosome"] != "Y"].set_index("gene_symbol", drop=False)
    available = set(table.index)
    orthologs = {}
    if species == "mouse":
        pairs = _resource_table("orthologs", "orthologs_human_mouse.tsv")
        orthologs = dict(zip(pairs["human_symbol"], pairs["mouse_symbol"]))
    to_species = lambda g: _species_symbol(g, species, orthologs, available)  # noqa: E731

    markers: dict[str, list[str]] = {}
    for cell_type in CELL_TYPES:  # species symbols, each marker in one cell type only (malignant = epithelial)
        used = set().union(*(markers[t] for t in markers if {t, cell_type} != {"epithelial", MALIGNANT}))
        symbols = [s for s in dict.fromkeys(map(to_species, MARKERS[cell_type])) if s and s not in used]
        markers[cell_type] = symbols
    ligand, receptor = to_species(LR_LIGAND), to_species(LR_RECEPTOR)
    haemoglobin = [g for g in HAEMOGLOBIN[species] if g in available]
    ribo = sorted(table.index[table.index.str.match(RIBO_PATTERN[species])])
    special = set().union(*markers.values(), {ligand, receptor}, haemoglobin, ribo)
    pathway = [g for g in _read_gmt_set(species, PATHWAY) if g in available and g not in special]
    required = sorted(special | set(pathway) | set(_marker_table_genes(species, available)))

    mito = HUMAN_MITO if species == "human" else MOUSE_MITO
    budget = config.n_genes - len(required) - len(mito)
    n_arms = table["chr_arm"].nunique()
    pool = table.drop(index=required)
    per_arm = pool.groupby("chr_arm").size()
    fixed = len(required) + len(mito)
    if budget < 20 * n_arms or _cnv_arms(table, required, per_arm, budget) < CNV_EVENTS_RANGE[1]:
        least = 20 * n_arms  # the smallest budget that also leaves enough arms for the planted CNVs
        while least < len(pool) and _cnv_arms(table, required, per_arm, least) < CNV_EVENTS_RANGE[1]:
            least += 1
        raise TmeflowInputError(
            f"--n_genes must be at least {fixed + least} for {species} (programme genes plus 20 per arm, and "
            f"{CNV_EVENTS_RANGE[1]} autosomal arms of {MIN_CNV_ARM_GENES} genes for the planted CNVs); got {config.n_genes}"
        )
    quota = _allocate_per_arm(per_arm, budget)
    chosen = list(required)
    for arm, n in quota.items():
        if n:
            candidates = pool.index[pool["chr_arm"] == arm].to_numpy()
            chosen.extend(rng.choice(candidates, size=n, replace=False).tolist())
    var = table.loc[chosen, ["gene_id", "chromosome", "start", "end", "chr_arm"]].copy()
    chrom_order = {str(i): i for i in range(1, 23)} | {"X": 23}
    var["_order"] = var["chromosome"].map(chrom_order)
    var = var.sort_values(["_order", "start"]).drop(columns="_order")
    mito_var = pd.DataFrame(
        {"gene_id": [v[0] for v in mito.values()], "chromosome": "MT", "start": [v[1] for v in mito.values()],
         "end": [v[1] + 500 for v in mito.values()], "chr_arm": "MT"},
        index=list(mito),
    )
    var = pd.concat([var, mito_var])
    var.index.name = None
    var.insert(1, "feature_types", "Gene Expression")
    var = var.rename(columns={"gene_id": "gene_ids"})
    return Genes(var, markers, ribo, list(mito), haemoglobin, pathway, ligand, receptor)


# ----------------------------------------------------------------------------------------------
# Model: profiles and planted effects
# ----------------------------------------------------------------------------------------------
@dataclass
class Model:
    """Everything drawn once for the cohort: profiles, dispersion, batches, CNVs, programmes."""

    genes: Genes
    profiles: np.ndarray  # cell types x genes, each row sums to 1
    dispersion: np.ndarray  # per gene
    batch_factors: dict[str, np.ndarray]
    patient_factors: dict[str, np.ndarray]  # malignant-cell factor per patient (CNV x patient noise)
    cnv_events: dict[str, list[dict[str, str]]]
    programmes: dict[str, list[str]]  # early, fate_A, fate_B, de_up, de_down
    idx: dict[str, np.ndarray] = field(default_factory=dict)

    def type_index(self, cell_type: str) -> int:
        return CELL_TYPES.index(cell_type)


def _quantile_values(baseline: np.ndarray, low: float, high: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values of ``baseline`` at random quantiles between ``low`` and ``high``."""
    return np.quantile(baseline, rng.uniform(low, high, size=n))


def _pick_programme_genes(genes: Genes, taken: set[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` random autosomal/X genes not yet used by any programme."""
    pool = [g for g in genes.var.index if g not in taken and genes.var.at[g, "chromosome"] != "MT"]
    picked = rng.choice(np.array(pool), size=n, replace=False).tolist()
    taken.update(picked)
    return picked


def _draw_programmes(genes: Genes, rng: np.random.Generator) -> dict[str, list[str]]:
    taken = set().union(*genes.markers.values(), genes.ribo, genes.haemoglobin, genes.pathway, {genes.ligand, genes.receptor})
    programmes = {name: _pick_programme_genes(genes, taken, TRAJECTORY_N_GENES, rng) for name in ("early", "fate_A", "fate_B")}
    de = _pick_programme_genes(genes, taken, DE_N_GENES, rng)
    programmes["de_up"], programmes["de_down"] = sorted(de[: DE_N_GENES // 2]), sorted(de[DE_N_GENES // 2 :])
    return programmes


def _cnv_factor(genes: Genes, events: list[dict[str, str]]) -> np.ndarray:
    factor = np.ones(len(genes.var), dtype=np.float32)
    for event in events:
        factor[(genes.var["chr_arm"] == event["arm"]).to_numpy()] = CNV_GAIN if event["type"] == "gain" else CNV_LOSS
    return factor


def _draw_cnv_events(genes: Genes, rng: np.random.Generator) -> list[dict[str, str]]:
    """3-5 distinct autosomal arms; the first is a gain and the second a loss, the rest random."""
    counts = genes.var.loc[~genes.var["chromosome"].isin(["X", "Y", "MT"]), "chr_arm"].value_counts()
    arms = sorted(counts.index[counts >= MIN_CNV_ARM_GENES])
    n = int(rng.integers(CNV_EVENTS_RANGE[0], CNV_EVENTS_RANGE[1] + 1))
    chosen = rng.choice(np.array(arms), size=n, replace=False)
    kinds = ["gain", "loss"] + rng.choice(["gain", "loss"], size=n - 2).tolist()
    order = {arm: i for i, arm in enumerate(genes.var["chr_arm"].unique())}
    events = [{"arm": str(arm), "type": kind} for arm, kind in zip(chosen, kinds)]
    return sorted(events, key=lambda e: order[e["arm"]])


def _base_profiles(genes: Genes, programmes: dict[str, list[str]], rng: np.random.Generator) -> np.ndarray:
    n_genes = len(genes.var)
    baseline = rng.gamma(BASELINE_SHAPE, 1.0, size=n_genes)
    marker_genes = sorted(set().union(*genes.markers.values()))
    mid = sorted(set().union(*programmes.values(), genes.pathway, {genes.ligand, genes.receptor}))
    marker_levels = np.quantile(baseline, MARKER_QUANTILES)  # before pinning, from the raw baseline
    baseline[genes.index(mid)] = _quantile_values(baseline, *PROGRAMME_QUANTILES, len(mid), rng)
    baseline[genes.index(marker_genes)] = _quantile_values(baseline, *MARKER_OFF_QUANTILES, len(marker_genes), rng)
    mito, ribo, hb = genes.index(genes.mito), genes.index(genes.ribo), genes.index(genes.haemoglobin)
    fixed = np.zeros(n_genes, dtype=bool)
    fixed[np.concatenate([mito, ribo, hb])] = True

    profiles = np.empty((len(CELL_TYPES), n_genes))
    for t, cell_type in enumerate(CELL_TYPES):
        if cell_type == MALIGNANT:  # malignant = epithelial with extra noise, below
            continue
        profiles[t] = baseline * rng.lognormal(0.0, TYPE_NOISE_SD, size=n_genes)
        markers = genes.index(genes.markers[cell_type])
        profiles[t, markers] = np.exp(rng.uniform(*np.log(marker_levels), size=len(markers)))
    malignant = CELL_TYPES.index(MALIGNANT)
    profiles[malignant] = profiles[CELL_TYPES.index("epithelial")] * rng.lognormal(0.0, MALIGNANT_NOISE_SD, size=n_genes)
    # markers of other types stay at their (low) baseline in every type
    for t, cell_type in enumerate(CELL_TYPES):
        own = set(genes.markers[cell_type])
        others = [g for g in marker_genes if g not in own]
        profiles[t, genes.index(others)] = baseline[genes.index(others)]
    ribo_weights = rng.gamma(4.0, 1.0, size=len(ribo))
    mito_weights = rng.gamma(4.0, 1.0, size=len(mito))
    for t in range(len(CELL_TYPES)):
        profiles[t, ~fixed] *= (1.0 - MITO_FRACTION - RIBO_FRACTION - HB_WEIGHT * len(hb)) / profiles[t, ~fixed].sum()
        profiles[t, ribo] = RIBO_FRACTION * ribo_weights / ribo_weights.sum()
        profiles[t, mito] = MITO_FRACTION * mito_weights / mito_weights.sum()
        profiles[t, hb] = HB_WEIGHT
    return profiles


def _draw_patient(genes: Genes, rng: np.random.Generator) -> tuple[list[dict[str, str]], np.ndarray]:
    """A patient's CNV events and malignant-cell factor (CNV x patient-specific programme noise)."""
    events = _draw_cnv_events(genes, rng)
    noise = rng.lognormal(0.0, PATIENT_NOISE_SD, size=len(genes.var)).astype(np.float32)
    noise[genes.index(genes.markers[MALIGNANT] + genes.mito + genes.ribo)] = 1.0
    return events, _cnv_factor(genes, events) * noise


def build_model(config: SimConfig, genes: Genes, rng: np.random.Generator) -> Model:
    programmes = _draw_programmes(genes, rng)
    profiles = _base_profiles(genes, programmes, rng)
    n_genes = len(genes.var)
    dispersion = rng.uniform(*DISPERSION_RANGE, size=n_genes).astype(np.float32)
    batch_factors = {
        f"batch{b + 1}": rng.lognormal(0.0, config.batch_effect, size=n_genes).astype(np.float32) for b in range(config.n_batches)
    }
    cnv_events, patient_factors = {}, {}
    for p in range(config.n_patients):
        patient = f"P{p + 1}"
        cnv_events[patient], patient_factors[patient] = _draw_patient(genes, rng)
    model = Model(genes, profiles, dispersion, batch_factors, patient_factors, cnv_events, programmes)
    names = {**programmes, "pathway": genes.pathway, "ligand": [genes.ligand], "receptor": [genes.receptor], "mito": genes.mito}
    model.idx = {name: genes.index(symbols) for name, symbols in names.items()}
    return model


# ----------------------------------------------------------------------------------------------
# Cell means and counts
# ----------------------------------------------------------------------------------------------
def _trajectory_factor(model: Model, pseudotime: np.ndarray, fate: np.ndarray) -> np.ndarray:
    """Multiplicative factors (cells x genes of early, fate_A, fate_B) for malignant cells."""
    early = 2.0 ** (TRAJECTORY_LOG2FC * (1.0 - pseudotime))
    progress = np.clip((pseudotime - BRANCH_POINT) / (1.0 - BRANCH_POINT), 0.0, 1.0)
    fate_a = 2.0 ** (TRAJECTORY_LOG2FC * progress * (fate == "A"))
    fate_b = 2.0 ** (TRAJECTORY_LOG2FC * progress * (fate == "B"))
    n = TRAJECTORY_N_GENES
    return np.concatenate([np.repeat(early[:, None], n, 1), np.repeat(fate_a[:, None], n, 1), np.repeat(fate_b[:, None], n, 1)], axis=1)


def _scale_columns(mu: np.ndarray, rows: np.ndarray, cols: np.ndarray, factor) -> None:
    if rows.any():
        sub = mu[np.ix_(rows, cols)]
        mu[np.ix_(rows, cols)] = sub * factor


def cell_means(model: Model, cells: pd.DataFrame, *, patient: str, condition: str, batch: str | None) -> np.ndarray:
    """Expected counts (cells x genes, float32) of cells with columns type_code, library, pseudotime, fate.

    ``batch`` None: no batch factor (spatial sections are their own platform).
    """
    type_codes = cells["type_code"].to_numpy()
    mu = model.profiles[type_codes].astype(np.float32)
    if batch is not None:
        mu *= model.batch_factors[batch][None, :]
    mu *= cells["library"].to_numpy(np.float32)[:, None]
    malignant = type_codes == model.type_index(MALIGNANT)
    if malignant.any():
        mu[malignant] *= model.patient_factors[patient][None, :]
        traj_cols = np.concatenate([model.idx["early"], model.idx["fate_A"], model.idx["fate_B"]])
        factor = _trajectory_factor(model, cells["pseudotime"].to_numpy()[malignant], cells["fate"].to_numpy()[malignant])
        mu[np.ix_(malignant, traj_cols)] *= factor.astype(np.float32)
    if condition == METASTASIS:
        _scale_columns(mu, malignant, model.idx["ligand"], LR_FOLD)
        _scale_columns(mu, malignant, model.idx["pathway"], PATHWAY_FOLD)
        _scale_columns(mu, type_codes == model.type_index(LR_TARGET), model.idx["receptor"], LR_FOLD)
        myeloid = type_codes == model.type_index(DE_CELL_TYPE)
        _scale_columns(mu, myeloid, model.idx["de_up"], 2.0**DE_LOG2FC)
        _scale_columns(mu, myeloid, model.idx["de_down"], 2.0**-DE_LOG2FC)
    return mu


def _make_low_quality(mu: np.ndarray, rows: np.ndarray, mito: np.ndarray, rng: np.random.Generator) -> None:
    """Rescale rows to 200-400 expected UMI with 30-60% mitochondrial reads."""
    n = int(rows.sum())
    if not n:
        return
    total = rng.uniform(*LOW_QUALITY_UMI, size=n)
    fraction = rng.uniform(*LOW_QUALITY_MITO, size=n)
    sub = mu[rows]
    is_mito = np.zeros(mu.shape[1], dtype=bool)
    is_mito[mito] = True
    nonmito_sum = sub[:, ~is_mito].sum(axis=1)
    mito_sum = sub[:, is_mito].sum(axis=1)
    sub[:, ~is_mito] *= (total * (1 - fraction) / nonmito_sum)[:, None].astype(np.float32)
    sub[:, is_mito] *= (total * fraction / mito_sum)[:, None].astype(np.float32)
    mu[rows] = sub


def draw_counts(mu: np.ndarray, dispersion: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
    """Negative-binomial counts (gamma-Poisson, variance mu + dispersion * mu^2) as CSR float32."""
    shape = 1.0 / dispersion
    gamma = rng.standard_gamma(np.broadcast_to(shape[None, :], mu.shape), dtype=np.float32)
    gamma *= dispersion[None, :]
    gamma *= mu
    counts = rng.poisson(gamma)
    rows, cols = np.nonzero(counts)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=mu.shape[0]))])
    return sp.csr_matrix((counts[rows, cols].astype(np.float32), cols.astype(np.int32), indptr), shape=mu.shape)


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
    """One scRNA sample per patient x condition, with size, batch, library shift and composition."""
    rows = [(f"P{p + 1}", c) for p in range(config.n_patients) for c in config.conditions]
    n = len(rows)
    shares = 0.5 / n + 0.5 * rng.dirichlet(np.full(n, 4.0))  # every sample gets at least half the mean
    sizes = np.maximum(1, np.floor(shares * config.n_cells).astype(int))
    while sizes.sum() != config.n_cells:  # fix rounding: add to / take from the largest samples
        step = 1 if sizes.sum() < config.n_cells else -1
        sizes[np.argmax(sizes) if step < 0 else rng.integers(n)] += step
    batches = np.resize([f"batch{b + 1}" for b in range(config.n_batches)], n)
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
        for block in self.blocks:
            self.total_umi += float(block.sum())
            yield block


def simulate_sample(model: Model, plan_row, config: SimConfig, rng: np.random.Generator) -> SampleCounts:
    """One scRNA sample: cell metadata and truth now, counts block by block when the stream is read."""
    n = int(plan_row.n_cells)
    cells = _draw_cells(plan_row, n, plan_row.composition, rng)
    cells = _draw_qc(cells, config, plan_row.composition, rng)
    type_names = np.array(CELL_TYPES)
    obs = pd.DataFrame(
        {
            "sample": plan_row.sample, "patient": plan_row.patient, "condition": plan_row.condition,
            "tissue": plan_row.tissue, "species": plan_row.species, "batch": plan_row.batch,
            "true_cell_type": type_names[cells["type_code"]],
            "true_compartment": [COMPARTMENT[t] for t in type_names[cells["type_code"]]],
            "true_malignant": cells["type_code"].to_numpy() == CELL_TYPES.index(MALIGNANT),
            "true_pseudotime": cells["pseudotime"].to_numpy(),
            "true_fate": cells["fate"].to_numpy(),
            "true_qc": cells["qc"].to_numpy(),
            "true_doublet_partner": np.where(cells["partner_code"] >= 0, type_names[cells["partner_code"].clip(lower=0)], "none"),
        },  # fmt: skip
        index=pd.Index(_barcodes(n, rng), name=None),
    )
    for column in obs.columns.drop(["true_malignant", "true_pseudotime"]):
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
    yield "%%MatrixMarket matrix coordinate integer general\n%metadata_json: {\"software_version\": \"tmeflow-simulate\"}\n"
    yield f"{n_genes} {matrix.shape[0]} {matrix.nnz}\n"
    step = 20_000
    for start in range(0, matrix.shape[0], step):
        part = matrix[start : start + step].tocoo()
        frame = pd.DataFrame({"gene": part.col + 1, "cell": part.row + start + 1, "count": part.data.astype(np.int64)})
        yield frame.to_csv(sep=" ", header=False, index=False)


def write_10x_mtx(matrix: sp.csr_matrix, barcodes, var: pd.DataFrame, folder: Path) -> Path:
    """A Cell Ranger v3 ``filtered_feature_bc_matrix`` folder, written beside and renamed into place."""
    folder = Path(folder)
    tmp = folder.parent / f".{folder.name}.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    features = (f"{gid}\t{sym}\tGene Expression\n" for gid, sym in zip(var["gene_ids"], var.index))
    _write_gz_lines(tmp / "features.tsv.gz", ["".join(features)])
    _write_gz_lines(tmp / "barcodes.tsv.gz", ["".join(f"{b}\n" for b in barcodes)])
    _write_gz_lines(tmp / "matrix.mtx.gz", _mtx_chunks(matrix, len(var)))
    shutil.rmtree(folder, ignore_errors=True)
    tmp.rename(folder)
    return folder


def write_10x_h5(matrix: sp.csr_matrix, barcodes, var: pd.DataFrame, path: Path, genome: str, library_id: str) -> Path:
    """A Cell Ranger / Space Ranger v3 ``filtered_feature_bc_matrix.h5``."""
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
    import anndata as ad
    import h5py

    with atomic_path(path) as tmp, h5py.File(tmp, "w") as handle:
        x = None
        for block in counts.stream():
            if x is None:
                ad.io.write_elem(handle, "X", block, dataset_kwargs={"compression": "gzip"})
                x = ad.io.sparse_dataset(handle["X"])
            else:
                x.append(block)
        for key, value in (("obs", counts.obs), ("var", counts.var), ("uns", counts.uns)):
            ad.io.write_elem(handle, key, value)
        for key in ("obsm", "varm", "obsp", "varp", "layers"):
            ad.io.write_elem(handle, key, {})
        handle.attrs["encoding-type"], handle.attrs["encoding-version"] = "anndata", "0.1.0"
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


# ----------------------------------------------------------------------------------------------
# Spatial
# ----------------------------------------------------------------------------------------------
def spot_grid(n_spots: int, grid: str) -> pd.DataFrame:
    """``n_spots`` spots on a Visium-like hexagonal (or square) grid, with physical x/y in um."""
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
    distance = np.min([np.hypot(spots["x_um"] - b["x_um"], spots["y_um"] - b["y_um"]) - b["radius_um"] for b in blobs], axis=0)
    ring = 1.5 * SPOT_SPACING_UM
    region = np.where(distance <= 0, "tumour", np.where(distance <= ring, "interface", "stroma"))
    return region, blobs


def _spot_cells(region: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Cell counts per spot and type (spots x types)."""
    counts = np.zeros((len(region), len(CELL_TYPES)), dtype=np.int64)
    n_cells = rng.integers(SPOT_CELLS[0], SPOT_CELLS[1] + 1, size=len(region))
    for name in REGIONS:
        rows = np.flatnonzero(region == name)
        weights = np.array([REGION_COMPOSITION[name].get(t, 0.0) for t in CELL_TYPES])
        for i in rows:
            p = rng.dirichlet(weights * 50 + 1e-9)
            counts[i] = rng.multinomial(n_cells[i], p / p.sum())
    return counts


def _spot_means(model: Model, counts: np.ndarray, region: np.ndarray, patient: str, condition: str, umi_per_cell: float,
                rng: np.random.Generator) -> np.ndarray:
    """Expected counts per spot: sum over its cells of the cell-type means (with planted effects)."""
    n_spots, n_genes = counts.shape[0], len(model.genes.var)
    mu = np.zeros((n_spots, n_genes), dtype=np.float32)
    capture = rng.lognormal(math.log(umi_per_cell), 0.25, size=n_spots).astype(np.float32)
    interface = region == "interface"
    for t, cell_type in enumerate(CELL_TYPES):
        n_t = counts[:, t]
        if not n_t.any():
            continue
        cells = pd.DataFrame({"type_code": t, "library": n_t * capture, "pseudotime": rng.uniform(0, 1, n_spots), "fate": "none"})
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


def _lowres_image(spots: pd.DataFrame, region: np.ndarray, scalef: float, spot_diameter_px: float, rng: np.random.Generator) -> np.ndarray:
    """An RGB tissue image: darker purple where tumour, pink stroma, white background."""
    margin = 2 * spot_diameter_px
    height = int((spots["pxl_row_in_fullres"].max() + margin) * scalef) + 1
    width = int((spots["pxl_col_in_fullres"].max() + margin) * scalef) + 1
    image = np.full((height, width, 3), 245, dtype=np.float32)
    yy, xx = np.mgrid[0:height, 0:width]
    radius = max(1.0, SPOT_SPACING_UM * PX_PER_UM * scalef * 0.6)
    for (row_px, col_px), name in zip(spots[["pxl_row_in_fullres", "pxl_col_in_fullres"]].to_numpy() * scalef, region):
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
    """Per-gene factors of the spatial assay relative to the single-cell one (log-normal, SD
    ``spatial_platform_sd``), shared by every section: the gene-specific capture differences that
    make a single-cell reference and a Visium section disagree (Cable et al. 2022, RCTD). Drawn from
    their own random stream, so they leave every other simulated value unchanged."""
    rng = np.random.default_rng([config.seed, PLATFORM_STREAM])
    return rng.lognormal(0.0, config.spatial_platform_sd, size=len(model.genes.var)).astype(np.float32)


def add_heldout_patients(model: Model, sections: list[dict[str, str]], config: SimConfig) -> None:
    """Patients of held-out sections get their own CNVs and malignant programme (own random stream)."""
    rng = np.random.default_rng([config.seed, HELDOUT_STREAM])
    for section in sections:
        if section["patient"] not in model.patient_factors:
            model.cnv_events[section["patient"]], model.patient_factors[section["patient"]] = _draw_patient(model.genes, rng)


def simulate_section(model: Model, section: dict[str, str], config: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Simulate one Visium-like section and write its ``outs/`` folder; return the spot truth."""
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
        mu = _spot_means(model, counts[s : s + block], region[s : s + block], section["patient"], section["condition"],
                         config.spot_umi_per_cell, rng)
        parts.append(draw_counts(mu * platform[None, :], model.dispersion, rng))
    matrix = sp.vstack(parts, format="csr")

    folder = config.outdir / "spatial" / section["sample"]
    outs = folder / "outs"
    write_10x_mtx(matrix, barcodes, model.genes.var, outs / "filtered_feature_bc_matrix")
    write_10x_h5(matrix, barcodes, model.genes.var, outs / "filtered_feature_bc_matrix.h5", _genome(config.species), section["sample"])
    position_columns = ("array_row", "array_col", "pxl_row_in_fullres", "pxl_col_in_fullres")
    positions = pd.DataFrame({"barcode": barcodes, "in_tissue": 1, **{c: spots[c] for c in position_columns}})
    with atomic_path(outs / "spatial" / "tissue_positions.csv") as tmp:
        positions.to_csv(tmp, index=False)
    diameter = 55.0 * PX_PER_UM
    scalefactors = {**SCALEFACTORS, "spot_diameter_fullres": diameter, "fiducial_diameter_fullres": diameter * 1.6}
    write_json(scalefactors, outs / "spatial" / "scalefactors_json.json")
    for name, key in (("tissue_lowres_image.png", "tissue_lowres_scalef"), ("tissue_hires_image.png", "tissue_hires_scalef")):
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
    logger.info("spatial section %s: %d spots (%s), %d UMI per spot (median)", section["sample"], len(spots),
                ", ".join(f"{r} {int((region == r).sum())}" for r in REGIONS), int(np.median(np.asarray(matrix.sum(axis=1)))))  # fmt: skip
    return truth


def _sections(config: SimConfig) -> list[dict[str, str]]:
    tumour = _tumour_conditions(config)
    sections = []
    for k in range(config.n_sections):
        patient = f"P{config.n_patients + k + 1}" if config.heldout_sections else f"P{k % config.n_patients + 1}"
        condition = tumour[k % len(tumour)]
        sample = f"{patient}_{condition}_visium{k + 1}"
        sections.append({"sample": sample, "patient": patient, "condition": condition, "tissue": TISSUE.get(condition, condition)})
    return sections


# ----------------------------------------------------------------------------------------------
# Bulk cohort with survival
# ----------------------------------------------------------------------------------------------
def signature_score(expression: pd.DataFrame, genes: list[str]) -> pd.Series:
    """The planted survival score: mean log2(TPM + 1) over ``genes``, z-scored across samples."""
    score = np.log2(expression.loc[genes] + 1.0).mean(axis=0)
    return (score - score.mean()) / score.std(ddof=0)


def _bulk_expression(model: Model, n: int, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    ids = [f"BULK{i + 1:04d}" for i in range(n)]
    proportions = rng.dirichlet(_composition("primary") * 10.0 + 0.05, size=n)
    fate_a = rng.beta(2.0, 2.0, size=n)
    malignant = model.type_index(MALIGNANT)
    platform = rng.lognormal(0.0, BULK_PLATFORM_SD, size=model.profiles.shape[1])
    tpm = np.empty((n, model.profiles.shape[1]))
    for i in range(n):
        profiles = model.profiles.copy()
        profiles[malignant, model.idx["fate_A"]] *= 2.0 ** (BULK_SIGNATURE_LOG2FC * fate_a[i])
        profiles[malignant, model.idx["fate_B"]] *= 2.0 ** (BULK_SIGNATURE_LOG2FC * (1 - fate_a[i]))
        mix = proportions[i] @ profiles * platform * rng.lognormal(0.0, BULK_NOISE_SD, size=profiles.shape[1])
        tpm[i] = 1e6 * mix / mix.sum()
    expression = pd.DataFrame(np.round(tpm.T, 3), index=model.genes.var.index, columns=ids)
    expression.index.name = "gene"
    truth = pd.DataFrame(proportions, index=ids, columns=CELL_TYPES)
    truth.index.name = "sample"
    truth["true_fate_A_fraction"] = fate_a
    return expression, truth


def _survival(z: pd.Series, beta: float, rng: np.random.Generator) -> pd.DataFrame:
    n = len(z)
    baseline = math.log(2) / BULK_MEDIAN_SURVIVAL_DAYS
    event_time = rng.exponential(1.0 / (baseline * np.exp(beta * z.to_numpy())))
    censor_time = rng.exponential(1.0 / (BULK_CENSORING_RATIO * baseline), size=n)
    os_time = np.maximum(1, np.ceil(np.minimum(event_time, censor_time))).astype(int)
    n_stage = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.8 * z.to_numpy() - 0.3)))).astype(int)
    return pd.DataFrame(
        {"sample": z.index, "os_time": os_time, "os_event": (event_time <= censor_time).astype(int),
         "age": np.clip(np.round(rng.normal(62, 10, size=n)), 25, 95).astype(int), "n_stage": n_stage,
         "sex": rng.choice(["female", "male"], size=n)}
    )  # fmt: skip


def simulate_bulk(model: Model, config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    expression, proportions = _bulk_expression(model, config.n_bulk, rng)
    z = signature_score(expression, model.programmes["fate_A"])
    clinical = _survival(z, config.bulk_beta, rng)
    bulk_dir = config.outdir / "bulk"
    with atomic_path(bulk_dir / "expression.tsv") as tmp:  # values are already rounded: skip slow float formatting
        expression.to_csv(tmp, sep="\t")
    write_table(clinical, bulk_dir / "clinical.tsv")
    proportions["true_signature_z"] = z
    write_table(proportions, bulk_dir / "true_proportions.tsv", index=True)
    logger.info("bulk: %d samples, %.0f%% censored", config.n_bulk, 100 * (1 - clinical["os_event"].mean()))
    return {"censored_fraction": float(1 - clinical["os_event"].mean())}


# ----------------------------------------------------------------------------------------------
# Samplesheet, truth, run
# ----------------------------------------------------------------------------------------------
SAMPLESHEET_COLUMNS = ("sample", "patient", "condition", "tissue", "species", "batch", "modality", "data", "clinical", "region_annotation")


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
        "samples": plan.drop(columns=["composition", "library_shift"]).assign(
            composition=[dict(zip(CELL_TYPES, np.round(c, 4).tolist())) for c in plan["composition"]]
        ).to_dict(orient="records"),
        "batches": sorted(model.batch_factors),
        "cnv": {"events": model.cnv_events, "gain_fold": CNV_GAIN, "loss_fold": CNV_LOSS, "cells": "malignant cells of the patient"},
        "differential_abundance": {"cell_type": DA_CELL_TYPE, "fold_change": DA_FOLD, "condition": METASTASIS, "reference": "other tumour conditions"},
        "differential_expression": {"cell_type": DE_CELL_TYPE, "condition": METASTASIS, "reference": "other tumour conditions",
                                    "log2fc": DE_LOG2FC, "up": model.programmes["de_up"], "down": model.programmes["de_down"]},
        "pathway": {"name": PATHWAY, "cell_type": MALIGNANT, "condition": METASTASIS, "fold_change": PATHWAY_FOLD, "genes": genes.pathway},
        "ligand_receptor": {"ligand": genes.ligand, "receptor": genes.receptor, "source": LR_SOURCE, "target": LR_TARGET,
                            "condition": METASTASIS, "fold_change": LR_FOLD, "interface_fold_change": INTERFACE_LR_FOLD},
        "trajectory": {"cell_type": MALIGNANT, "branch_point": BRANCH_POINT, "log2fc": TRAJECTORY_LOG2FC,
                       "early": model.programmes["early"], "fate_A": model.programmes["fate_A"], "fate_B": model.programmes["fate_B"],
                       "fate_A_probability": {"metastasis": FATE_A_PROB["metastasis"], "other": FATE_A_PROB["other"]}},
        "qc": {"low_quality_rate": config.low_quality_rate, "low_quality_umi": LOW_QUALITY_UMI, "low_quality_mito_fraction": LOW_QUALITY_MITO,
               "doublet_rate": config.doublet_rate, "doublet_thinning": DOUBLET_THINNING, "mito_fraction_good": MITO_FRACTION},
        "spatial": {"grid": config.grid, "n_spots": config.n_spots, "sections": sections, "regions": {
            "tumour": "inside a tumour blob (disc)", "interface": "within 1.5 spot spacings outside a blob",
            "stroma": "elsewhere", "composition": REGION_COMPOSITION}, "cells_per_spot": SPOT_CELLS,
            "spot_spacing_um": SPOT_SPACING_UM, "pixels_per_um": PX_PER_UM,
            "platform_sd": config.spatial_platform_sd, "umi_per_cell": config.spot_umi_per_cell,
            "heldout_patients": config.heldout_sections},
        "bulk": {"n_samples": config.n_bulk, "beta": config.bulk_beta, "signature_genes": model.programmes["fate_A"],
                 "score": "mean log2(TPM+1) over signature_genes, z-scored across samples (population SD)",
                 "true_proportions": "bulk/true_proportions.tsv: mixture weights of the cell-type profiles (RNA fractions) and true_signature_z",
                 "hazard": "exponential, baseline median %g days, hazard ratio exp(beta * z)" % BULK_MEDIAN_SURVIVAL_DAYS, **bulk},
        "files": {"truth_cells": "truth_cells.tsv.gz", "samplesheet": "samplesheet.csv"},
    }  # fmt: skip


def run_simulate(config: SimConfig) -> Path:
    """Simulate the cohort into ``config.outdir``; return the samplesheet path."""
    config.check()
    rng_model, rng_sc, rng_spatial, rng_bulk = np.random.default_rng(config.seed).spawn(4)
    with timed(logger, f"building the {config.species} model"):
        genes = build_genes(config, rng_model)  # checks --n_genes before anything is written
        model = build_model(config, genes, rng_model)
    outdir = config.outdir
    outdir.mkdir(parents=True, exist_ok=True)
    logger.info("%d genes, %d patients, %d CNV events", len(genes.var), config.n_patients, sum(map(len, model.cnv_events.values())))
    plan = plan_samples(config, rng_sc)
    sheet: list[dict[str, str]] = []
    truth_columns = ["sample", *TRUTH_CELL_COLUMNS]
    with atomic_path(outdir / "truth_cells.tsv.gz") as tmp, gzip.open(tmp, "wt", compresslevel=4, encoding="utf-8") as truth_handle:
        for i, row in enumerate(plan.itertuples(index=False)):
            start = time.perf_counter()
            counts = simulate_sample(model, row, config, rng_sc)
            data = _write_sc_sample(counts, config)
            truth_cells = counts.obs[truth_columns].rename_axis("barcode").assign(true_pseudotime=lambda f: f["true_pseudotime"].round(5))
            truth_cells.to_csv(truth_handle, sep="\t", header=(i == 0))
            meta = {k: getattr(row, k) for k in ("sample", "patient", "condition", "tissue", "species", "batch")}
            sheet.append({**meta, "modality": "sc", "data": data})
            logger.info("sample %s: %d cells, %d genes, %.1f UMI/cell (mean) written in %.1f s", row.sample, len(counts.obs), len(counts.var),
                        counts.total_umi / max(1, len(counts.obs)), time.perf_counter() - start)  # fmt: skip
    sections = _sections(config)
    add_heldout_patients(model, sections, config)
    for section in sections:
        start = time.perf_counter()
        simulate_section(model, section, config, rng_spatial)
        folder = f"spatial/{section['sample']}"
        sheet.append({**{k: section[k] for k in ("sample", "patient", "condition", "tissue")}, "species": config.species, "batch": "visium",
                      "modality": "spatial", "data": f"{folder}/outs", "region_annotation": f"{folder}/region_annotation.csv"})  # fmt: skip
        logger.info("section %s written in %.1f s", section["sample"], time.perf_counter() - start)
    bulk: dict[str, Any] = {}
    if config.n_bulk:
        bulk = simulate_bulk(model, config, rng_bulk)
        sheet.append({"sample": "bulk", "patient": "bulk_cohort", "condition": _tumour_conditions(config)[0], "tissue": "primary_tumour",
                      "species": config.species, "batch": "bulk", "modality": "bulk", "data": "bulk/expression.tsv", "clinical": "bulk/clinical.tsv"})  # fmt: skip
    write_json(_truth(config, model, plan, sections, bulk), outdir / "truth.json")
    return write_text(_samplesheet(sheet), outdir / "samplesheet.csv")


def config_from_args(args) -> SimConfig:
    conditions = tuple(c.strip() for c in str(args.conditions).split(",") if c.strip())
    fields = {name: getattr(args, name) for name in SimConfig.__dataclass_fields__ if name not in {"outdir", "conditions"} and hasattr(args, name)}
    return SimConfig(outdir=Path(args.outdir), conditions=conditions, **fields)


def cli(args, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow simulate``."""
    config = config_from_args(args)
    with timed(logger, f"simulating {config.n_cells} cells, {config.n_sections} section(s), {config.n_bulk} bulk samples into {config.outdir}"):
        sheet = run_simulate(config)
    logger.info("samplesheet: %s", sheet)
