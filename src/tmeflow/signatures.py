"""Gene signatures: GMT reading, gene-set filtering, human-mouse ortholog mapping and ssGSEA scores.

Shared by the bulk stage and by later stages that score signatures. Everything here is a pure
function over lists, dicts and DataFrames (genes x samples).
"""

from __future__ import annotations

import os
from functools import cache
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from scipy.stats import rankdata

from .errors import TmeflowInputError
from .log import get_logger

logger = get_logger(__name__)

#: Bundled GMT files, relative to ``tmeflow/resources``.
BUNDLED_GMTS = {
    "estimate": "estimate/estimate_signatures_current_symbols.gmt",
    "hallmark": "hallmark/hallmark_human.gmt",
    "necroptosis": "cell_death/necroptosis.gmt",
    "cell_death": "cell_death/pyroptosis_ferroptosis_autophagy.gmt",
}
#: Bundled gene tables (Ensembl id, symbol, position) per species, in ``tmeflow/resources/gene_positions``.
GENE_TABLES = {"human": "genes_hg38_xclone.tsv", "mouse": "genes_mm10_xclone.tsv"}


def resource_path(relative: str) -> Path:
    """Return the filesystem path of a file bundled in ``tmeflow/resources``.

    Parameters
    ----------
    relative
        Path inside ``tmeflow/resources`` (e.g. ``"estimate/estimate.gmt"``).

    Returns
    -------
    Path
        The bundled file's path.
    """
    return Path(str(resources.files("tmeflow").joinpath("resources", relative)))


def read_gmt(path: str | os.PathLike) -> dict[str, list[str]]:
    """Read a GMT file (Broad format: ``name<TAB>description<TAB>gene<TAB>gene...`` per line).

    Empty lines and ``#`` comments are skipped, gene symbols are stripped, duplicated genes within a set are kept
    once (first occurrence). A missing file, a line with fewer than 3 fields, a duplicated set name or a file
    without any set raises :class:`TmeflowInputError`.

    Parameters
    ----------
    path
        The GMT file.

    Returns
    -------
    dict
        Set name -> its genes, in file order.
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("gene-set file not found", file=path)
    sets: dict[str, list[str]] = {}
    with open(path, encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if not line.strip() or line.startswith("#"):
                continue
            fields = [field.strip() for field in line.split("\t")]
            if len(fields) < 3:
                raise TmeflowInputError(
                    "GMT line needs name, description and at least one gene, tab-separated", file=path, row=number
                )
            name, genes = fields[0], [g for g in fields[2:] if g]
            if not name or not genes:
                raise TmeflowInputError("GMT line has an empty set name or no genes", file=path, row=number)
            if name in sets:
                raise TmeflowInputError(f"gene set {name} appears twice", file=path, row=number)
            sets[name] = list(dict.fromkeys(genes))
    if not sets:
        raise TmeflowInputError("GMT file contains no gene sets", file=path)
    return sets


def read_bundled_gmt(key: str) -> dict[str, list[str]]:
    """Read one of the bundled GMT files.

    Parameters
    ----------
    key
        A :data:`BUNDLED_GMTS` key (``necroptosis``, ``hallmark``, ``estimate`` ...).

    Returns
    -------
    dict
        Set name -> its genes (human symbols).
    """
    return read_gmt(resource_path(BUNDLED_GMTS[key]))


def filter_gene_sets(
    gene_sets: dict[str, list[str]],
    genes: pd.Index | list[str],
    *,
    min_size: int = 1,
    source: str | os.PathLike | None = None,
    required: bool = True,
) -> dict[str, list[str]]:
    """Restrict each set to the genes present in ``genes``; drop sets left with fewer than ``min_size``.

    Dropped sets are logged as a warning. When ``required`` and no set survives, a :class:`TmeflowInputError` says
    how many of the file's genes were found at all (the usual cause is a gene-identifier or species mismatch, e.g.
    mouse symbols against a human matrix).

    Parameters
    ----------
    gene_sets
        Set name -> genes.
    genes
        The genes measured.
    min_size
        Fewest genes present for a set to be kept (``signature_min_size``).
    source
        Where the sets come from, for messages.
    required
        Whether no surviving set is an input error.

    Returns
    -------
    dict
        The kept sets, restricted to the genes present.
    """
    present = set(map(str, genes))
    kept: dict[str, list[str]] = {}
    dropped = []
    for name, members in gene_sets.items():
        found = [g for g in members if g in present]
        if len(found) >= min_size:
            kept[name] = found
        else:
            dropped.append(f"{name} ({len(found)}/{len(members)})")
    if dropped:
        logger.warning(
            "%d gene set(s) with fewer than %d genes in the expression matrix dropped: %s",
            len(dropped),
            min_size,
            ", ".join(dropped[:10]) + (" ..." if len(dropped) > 10 else ""),
        )
    if not kept and required:
        universe = {g for members in gene_sets.values() for g in members}
        n_found = len(universe & present)
        raise TmeflowInputError(
            f"none of the {len(gene_sets)} gene set(s) has at least {min_size} of its genes in the expression matrix "
            f"({n_found} of {len(universe)} distinct set genes found); check gene identifiers and species",
            file=source,
        )
    return kept


# --------------------------------------------------------------------------------------------------
# Orthologs


@cache
def load_orthologs() -> pd.DataFrame:
    """Read the bundled one-to-one human-mouse ortholog table (Ensembl BioMart + HGNC HCOP; see SOURCE.md).

    Returns
    -------
    DataFrame
        One row per ortholog pair (text): ``human_symbol``, ``mouse_symbol``, ``human_ensembl``, ``mouse_ensembl``,
        ``ensembl_orthology_confidence`` and ``hcop_n_sources``.
    """
    return pd.read_csv(resource_path("orthologs/orthologs_human_mouse.tsv"), sep="\t", dtype=str)


def ortholog_map(from_species: str, to_species: str) -> dict[str, str]:
    """Map symbols between ``human`` and ``mouse`` (identity when the species are equal).

    Uses only the bundled one-to-one orthologs (Ensembl Compara ``ortholog_one2one``), so genes with one-to-many
    orthologs (e.g. CD8B) are not mapped.

    Parameters
    ----------
    from_species, to_species
        ``human`` or ``mouse``.

    Returns
    -------
    dict
        Symbol of ``from_species`` -> symbol of ``to_species``.
    """
    if from_species == to_species:
        return {}
    table = load_orthologs()
    column = {"human": "human_symbol", "mouse": "mouse_symbol"}
    return dict(zip(table[column[from_species]], table[column[to_species]], strict=True))


@cache
def species_symbols(species: str) -> frozenset[str]:
    """Return the gene symbols known for ``species``: the bundled gene-position table plus the ortholog table's.

    Parameters
    ----------
    species
        ``human`` or ``mouse``.

    Returns
    -------
    frozenset of str
        The known symbols.
    """
    positions = pd.read_csv(
        resource_path(f"gene_positions/{GENE_TABLES[species]}"), sep="\t", dtype=str, usecols=["gene_symbol"]
    )
    column = {"human": "human_symbol", "mouse": "mouse_symbol"}[species]
    return frozenset(positions["gene_symbol"].dropna()) | frozenset(load_orthologs()[column].dropna())


def map_gene_sets(gene_sets: dict[str, list[str]], from_species: str, to_species: str) -> dict[str, list[str]]:
    """Translate gene sets to another species; unmapped genes are dropped and each set's coverage is logged.

    A gene with a one-to-one ortholog (:func:`ortholog_map`) takes it. A gene without one (one-to-many or
    many-to-many in Ensembl Compara, e.g. CCL3, CCL4, GZMB, S100A9, HMGB1) keeps the gene of the other species with
    the same symbol ignoring case when the bundled gene tables know it (``Ccl3``, ``Gzmb`` ...), the usual convention
    for human-mouse symbol translation. Genes whose orthologs carry other names (CD8B -> Cd8b1, CCL21 ->
    Ccl21a/b/c) are not mapped: the bundled table has only one-to-one pairs, so such genes show up in the coverage
    log (:func:`mapping_coverage`).

    Parameters
    ----------
    gene_sets
        Set name -> genes of ``from_species``.
    from_species, to_species
        ``human`` or ``mouse``.

    Returns
    -------
    dict
        Set name -> genes of ``to_species``.
    """
    if from_species == to_species:
        return gene_sets
    mapping = ortholog_map(from_species, to_species)
    target = {g.casefold(): g for g in sorted(species_symbols(to_species))}
    mapped_from = set(mapping.values())

    def translate(gene: str) -> str | None:
        if gene in mapping:
            return mapping[gene]
        same = target.get(gene.casefold())
        return same if same is not None and same not in mapped_from else None

    out = {name: list(dict.fromkeys(t for t in map(translate, genes) if t)) for name, genes in gene_sets.items()}
    coverage = mapping_coverage(gene_sets, out)
    low = coverage[coverage["fraction"] < 0.9]
    logger.info(
        "gene sets mapped %s -> %s: %d set(s), median coverage %.0f%%",
        from_species,
        to_species,
        len(coverage),
        100 * coverage["fraction"].median() if len(coverage) else 100.0,
    )
    if len(low):
        logger.warning(
            "gene sets keeping < 90%% of their genes after %s -> %s mapping: %s",
            from_species,
            to_species,
            ", ".join(f"{r.gene_set} {r.n_mapped}/{r.n_genes}" for r in low.itertuples()),
        )
    return out


def mapping_coverage(gene_sets: dict[str, list[str]], mapped: dict[str, list[str]]) -> pd.DataFrame:
    """Count each set's genes before and after a species mapping.

    Parameters
    ----------
    gene_sets
        The sets before the mapping.
    mapped
        The sets after it.

    Returns
    -------
    DataFrame
        Per set: ``gene_set``, ``n_genes`` (before), ``n_mapped`` (after) and ``fraction`` kept.
    """
    rows = [
        {
            "gene_set": name,
            "n_genes": len(genes),
            "n_mapped": len(mapped.get(name, [])),
            "fraction": len(mapped.get(name, [])) / len(genes) if genes else float("nan"),
        }
        for name, genes in gene_sets.items()
    ]
    return pd.DataFrame(rows, columns=["gene_set", "n_genes", "n_mapped", "fraction"])


# The bundled gene-position tables (resources/gene_positions, XClone 0.4.0) carry no mitochondrial
# genes; the 13 protein-coding human MT genes, as GENCODE/Cell Ranger's GRCh38 features.tsv name them.
_HUMAN_MITO_IDS = {
    "ENSG00000198888": "MT-ND1",
    "ENSG00000198763": "MT-ND2",
    "ENSG00000198804": "MT-CO1",
    "ENSG00000198712": "MT-CO2",
    "ENSG00000228253": "MT-ATP8",
    "ENSG00000198899": "MT-ATP6",
    "ENSG00000198938": "MT-CO3",
    "ENSG00000198840": "MT-ND3",
    "ENSG00000212907": "MT-ND4L",
    "ENSG00000198886": "MT-ND4",
    "ENSG00000198786": "MT-ND5",
    "ENSG00000198695": "MT-ND6",
    "ENSG00000198727": "MT-CYB",
}
_POSITION_TABLES = {"human": "genes_hg38_xclone.tsv", "mouse": "genes_mm10_xclone.tsv"}


@cache
def ensembl_symbol_table() -> dict[str, str]:
    """Return the unversioned Ensembl gene id -> symbol table, human and mouse (see :func:`ensembl_to_symbol`).

    Returns
    -------
    dict
        Unversioned Ensembl gene id -> symbol (cached).
    """
    mapping: dict[str, str] = {}
    for table in GENE_TABLES.values():
        positions = pd.read_csv(
            resource_path(f"gene_positions/{table}"), sep="\t", dtype=str, usecols=["gene_symbol", "gene_id"]
        ).dropna()
        mapping.update(zip(positions["gene_id"], positions["gene_symbol"], strict=True))
    orthologs = load_orthologs()
    # the ortholog table is the newer Ensembl release: its (current) symbols win where both know an id
    mapping.update(zip(orthologs["human_ensembl"], orthologs["human_symbol"], strict=True))
    mapping.update(zip(orthologs["mouse_ensembl"], orthologs["mouse_symbol"], strict=True))
    mapping.update(_HUMAN_MITO_IDS)
    return mapping


def ensembl_to_symbol(ids: pd.Index | list[str]) -> dict[str, str]:
    """Map Ensembl gene IDs (version suffix ignored) to symbols, human and mouse.

    Sources: the bundled gene tables (``gene_positions/``: 33,472 human GRCh38 and 32,195 mouse GRCm38 Ensembl
    genes, all biotypes; plus the 13 human MT genes they lack) and the one-to-one ortholog table (Ensembl ~110; its
    current symbols win for ids in both). The ortholog table alone would drop every gene without a one-to-one
    ortholog (e.g. GZMB, GNLY, many immune genes).

    Parameters
    ----------
    ids
        Ensembl gene IDs, versioned or not.

    Returns
    -------
    dict
        ID as given -> symbol, for the IDs known.
    """
    mapping = ensembl_symbol_table()
    return {i: mapping[i.split(".")[0]] for i in map(str, ids) if i.split(".")[0] in mapping}


# --------------------------------------------------------------------------------------------------
# ssGSEA


def gsva_ranks(expression: np.ndarray) -> np.ndarray:
    """Rank genes within each sample as GSVA's ssGSEA does: average ranks of ties, truncated to integers.

    GSVA: ``colRanks(X, ties.method = "average")`` then ``mode(R) <- "integer"``.

    Parameters
    ----------
    expression
        Genes x samples.

    Returns
    -------
    ndarray
        Integer ranks, genes x samples; the lowest value gets rank 1, the highest rank ``n_genes``.
    """
    return np.floor(rankdata(expression, axis=0, method="average")).astype(np.int64)


def ssgsea(
    expression: pd.DataFrame,
    gene_sets: dict[str, list[str]],
    *,
    alpha: float = 0.25,
    normalize: bool = True,
    min_size: int = 1,
    drop_constant: bool = True,
) -> pd.DataFrame:
    """Single-sample GSEA scores (sets x samples), exactly as GSVA ``gsva(method="ssgsea")`` defines them.

    Method (Barbie et al. 2009, Nature 462:108; implementation of Hänzelmann et al. 2013, BMC
    Bioinformatics 14:7, GSVA package):

    1. Within each sample, genes get integer ranks ``r`` (:func:`gsva_ranks`; 1 = lowest expression)
       and are ordered by decreasing rank (ties keep the matrix order, as R's stable ``order``).
    2. For a set ``S`` of ``k`` genes among ``N``, walking down the ordering, the in-set step CDF is
       ``P_in(i) = sum_{j<=i, g_j in S} |r_j|^alpha / sum_{g in S} |r_g|^alpha`` and the out-of-set CDF
       is ``P_out(i) = #{j<=i, g_j not in S} / (N - k)``.
    3. The score is the *sum* over all positions of ``P_in(i) - P_out(i)`` (not the maximum
       deviation of classic GSEA).
    4. With ``normalize`` (GSVA ``ssgsea.norm=TRUE``) every score is divided by
       ``max - min`` of the whole score matrix (so scores depend on which sets/samples are scored together).

    The sums are evaluated in closed form: with 0-based positions ``p`` of the set's genes,
    ``sum_i P_in(i) = sum_S w (N - p) / sum_S w`` and
    ``sum_i P_out(i) = (N (N + 1) / 2 - sum_S (N - p)) / (N - k)``.
    As GSVA does, genes with constant expression across samples are removed first (``drop_constant``)
    and sets are restricted to genes present (sets with fewer than ``min_size`` are dropped, see
    :func:`filter_gene_sets`). Missing values are not allowed.

    Parameters
    ----------
    expression
        Genes x samples (log scale for bulk, as GSVA is usually run).
    gene_sets
        Set name -> genes.
    alpha
        Rank weight exponent (GSVA's default 0.25; ``ssgsea_alpha``).
    normalize
        Divide by the range of the score matrix (GSVA ``ssgsea.norm``; ``ssgsea_normalize``).
    min_size
        Fewest genes present for a set to be scored.
    drop_constant
        Remove genes with constant expression first, as GSVA does.

    Returns
    -------
    DataFrame
        Sets x samples.
    """
    if expression.isna().to_numpy().any():
        raise TmeflowInputError("expression matrix has missing values; impute or drop them before ssGSEA")
    frame = expression
    if drop_constant and frame.shape[1] > 1:
        values = frame.to_numpy(dtype=float)
        constant = np.all(values == values[:, :1], axis=1)
        if constant.any():
            logger.info("ssGSEA: %d gene(s) with constant expression removed (as GSVA does)", int(constant.sum()))
            frame = frame.loc[~constant]
    sets = filter_gene_sets(gene_sets, frame.index, min_size=min_size)
    genes = pd.Index(frame.index.astype(str))
    n_genes = len(genes)
    set_names = list(sets)
    membership = np.zeros((len(set_names), n_genes))
    index_of = pd.Series(np.arange(n_genes), index=genes)
    index_of = index_of[~index_of.index.duplicated()]
    for row, name in enumerate(set_names):
        membership[row, index_of.loc[sets[name]].to_numpy()] = 1.0
    ranks = gsva_ranks(frame.to_numpy(dtype=float))  # genes x samples
    # position of each gene in the decreasing ordering (stable: ties keep matrix order)
    order = np.argsort(-ranks, axis=0, kind="stable")
    positions = np.empty_like(order)
    np.put_along_axis(positions, order, np.arange(n_genes)[:, None], axis=0)
    weights = np.abs(ranks.astype(float)) ** alpha
    remaining = (n_genes - positions).astype(float)  # N - p: steps for which the gene is counted
    size = membership.sum(axis=1, keepdims=True)
    in_part = (membership @ (weights * remaining)) / (membership @ weights)
    out_part = (n_genes * (n_genes + 1) / 2.0 - membership @ remaining) / (n_genes - size)
    scores = in_part - out_part
    if normalize:
        spread = scores.max() - scores.min()
        if spread > 0:
            scores = scores / spread
    return pd.DataFrame(scores, index=set_names, columns=frame.columns)
