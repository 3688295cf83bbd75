"""The simulated genes: real symbols of the species, programme genes and an equal share per chromosome arm."""

from __future__ import annotations

from dataclasses import dataclass, field
from importlib import resources

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from .settings import (
    CELL_TYPES,
    CNV_EVENTS_RANGE,
    HAEMOGLOBIN,
    HUMAN_MITO,
    LR_LIGAND,
    LR_RECEPTOR,
    MALIGNANT,
    MARKERS,
    MIN_CNV_ARM_GENES,
    MOUSE_MITO,
    MOUSE_NAMES,
    NEUTROPHIL_STATE_GENES,
    PATHWAY,
    RIBO_PATTERN,
    SimConfig,
)


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
    neutrophil_states: dict[str, list[str]] = field(default_factory=dict)  # mouse only: state -> varying genes
    position: dict[str, int] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        """Index the gene symbols."""
        self.position = {symbol: i for i, symbol in enumerate(self.var.index)}

    def index(self, symbols) -> np.ndarray:
        """Return the column positions of ``symbols``."""
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
    """Return the genes of the bundled marker tables (mouse only).

    Genes of the bundled major and subtype marker tables (mouse only), so annotation and sub-clustering
    of a simulated mouse cohort can score every bundled type. Human simulations keep their gene list (and so
    their bytes for a seed): the human tables are matched by the random background genes as before.
    """
    if species == "human":
        return []
    genes: set[str] = set()
    for kind in ("major", "subtypes"):
        genes |= set(_resource_table("markers", f"{kind}_{species}.tsv")["gene"].astype(str))
    return sorted(genes & available)


def _species_symbol(human: str, species: str, orthologs: dict[str, str], available: set[str]) -> str | None:
    """Return the symbol of a human gene in ``species`` (ortholog, then known mouse name, then capitalised)."""
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
    which genes of an arm), so it can be checked before anything is drawn.
    """
    counts = (
        table.loc[required, "chr_arm"].value_counts().add(pd.Series(_allocate_per_arm(per_arm, budget)), fill_value=0)
    )
    autosomal = set(table.loc[~table["chromosome"].isin(["X", "Y", "MT"]), "chr_arm"])
    return int(sum(n >= MIN_CNV_ARM_GENES for arm, n in counts.items() if arm in autosomal))


def build_genes(config: SimConfig, rng: np.random.Generator) -> Genes:
    """Choose the simulated genes; raise if ``--n_genes`` cannot hold the programme genes and the CNV arms.

    Parameters
    ----------
    config
        The simulation settings (``species``, ``n_genes``).
    rng
        The random generator (consumed in a fixed order, so a seed gives one cohort).

    Returns
    -------
    Genes
        ``var`` (genome order, mitochondrial genes last; symbols of ``config.species``) and the named gene groups.
    """
    species = config.species
    table_name = "genes_hg38_xclone.tsv" if species == "human" else "genes_mm10_xclone.tsv"
    table = _resource_table("gene_positions", table_name).drop_duplicates("gene_symbol")
    table = table[table["chromosome"] != "Y"].set_index("gene_symbol", drop=False)
    available = set(table.index)
    orthologs = {}
    if species == "mouse":
        pairs = _resource_table("orthologs", "orthologs_human_mouse.tsv")
        orthologs = dict(zip(pairs["human_symbol"], pairs["mouse_symbol"], strict=True))
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
            f"{CNV_EVENTS_RANGE[1]} autosomal arms of {MIN_CNV_ARM_GENES} genes for the planted CNVs); got "
            f"{config.n_genes}"
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
        {
            "gene_id": [v[0] for v in mito.values()],
            "chromosome": "MT",
            "start": [v[1] for v in mito.values()],
            "end": [v[1] + 500 for v in mito.values()],
            "chr_arm": "MT",
        },
        index=list(mito),
    )
    var = pd.concat([var, mito_var])
    var.index.name = None
    var.insert(1, "feature_types", "Gene Expression")
    var = var.rename(columns={"gene_id": "gene_ids"})
    states = _neutrophil_states(species, set(var.index) - special)
    if ligand is None or receptor is None:  # the planted pair is in both species' gene lists
        raise ValueError(f"the planted ligand-receptor pair {LR_LIGAND}-{LR_RECEPTOR} has no {species} symbol")
    return Genes(var, markers, ribo, list(mito), haemoglobin, pathway, ligand, receptor, states)


def _neutrophil_states(species: str, candidates: set[str]) -> dict[str, list[str]]:
    """Return the genes that vary with the planted neutrophil states (mouse only; see ``NEUTROPHIL_STATE_GENES``)."""
    if species != "mouse":
        return {}
    return {state: [g for g in genes if g in candidates] for state, genes in NEUTROPHIL_STATE_GENES.items()}
