"""Gene-set collections of the pathways stage: bundled files, signatures, score column names."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from ..errors import TmeflowInputError
from ..signatures import filter_gene_sets, map_gene_sets, read_gmt, resource_path

if TYPE_CHECKING:
    pass


TME_SIGNATURES = "signatures/tme_signatures.gmt"
HALLMARK = {"human": "hallmark/hallmark_human.gmt", "mouse": "hallmark/hallmark_mouse_orthomapped_DERIVED.gmt"}
CELL_DEATH = ("cell_death/necroptosis.gmt", "cell_death/pyroptosis_ferroptosis_autophagy.gmt")
PROGENY = "progeny/progeny_{species}_top{top}.tsv"
MIN_PSEUDOBULK_CELLS = 10
MIN_SIGNATURE_GENES = 2
STEMNESS = "score_cytotrace"
GSEA_COLUMNS = ["contrast", "cell_type", "term", "rank", "es", "nes", "pvalue", "fdr", "fwer", "n_genes", "lead_genes"]
ORA_COLUMNS = [
    "contrast",
    "cell_type",
    "direction",
    "term",
    "n_list",
    "n_universe",
    "n_set",
    "overlap",
    "expected",
    "odds_ratio",
    "pvalue",
    "fdr",
    "genes",
]


def column_name(prefix: str, set_name: str) -> str:
    """Name a score column ``<prefix>_<set>``, characters other than letters, digits and ``_`` replaced by ``_``.

    Parameters
    ----------
    prefix
        ``score``, ``ssgsea`` or ``progeny``.
    set_name
        Gene-set or pathway name.

    Returns
    -------
    str
        The column name (HDF5-safe).
    """
    return f"{prefix}_{re.sub(r'[^A-Za-z0-9_]+', '_', set_name).strip('_')}"


# --------------------------------------------------------------------------------------------------
# Gene sets


def pathway_collection(species: str) -> dict[str, list[str]]:
    """Load the Hallmark and regulated-cell-death gene sets for GSEA and over-representation.

    Parameters
    ----------
    species
        ``human`` or ``mouse`` (the cell-death sets are mapped from human by orthology).

    Returns
    -------
    dict
        Set name -> gene symbols.
    """
    sets = dict(read_gmt(resource_path(HALLMARK[species])))
    death: dict[str, list[str]] = {}
    for path in CELL_DEATH:
        death.update(read_gmt(resource_path(path)))
    sets.update(map_gene_sets(death, "human", species))
    return sets


def signature_sets(species: str, user_gmts: list[str], genes) -> dict[str, list[str]]:
    """Collect the bundled TME signatures and the user's sets, restricted to ``genes``.

    Parameters
    ----------
    species
        ``human`` or ``mouse``.
    user_gmts
        User GMT files; one without any gene present, or a set named like a bundled one, is an input error.
    genes
        Genes of the atlas.

    Returns
    -------
    dict
        Set name -> genes present (bundled sets with fewer than ``MIN_SIGNATURE_GENES`` present are dropped).
    """
    bundled = map_gene_sets(read_gmt(resource_path(TME_SIGNATURES)), "human", species)
    sets = filter_gene_sets(bundled, genes, min_size=MIN_SIGNATURE_GENES, required=False)
    for path in user_gmts:
        user = read_gmt(path)
        kept = filter_gene_sets(user, genes, min_size=1, source=path, required=True)
        for name, members in kept.items():
            if name in sets:
                raise TmeflowInputError(f"gene set {name} is also a bundled signature; rename it", file=path)
            sets[name] = members
    return sets
