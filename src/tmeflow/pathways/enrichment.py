"""DE-table analyses: reading the DE tables, preranked GSEA and over-representation."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from .gene_sets import (
    ORA_COLUMNS,
)

if TYPE_CHECKING:
    pass


def read_de_tables(paths: list[str]) -> pd.DataFrame:
    """Read and stack the DE tables written by ``tmeflow de``.

    Parameters
    ----------
    paths
        ``de_<contrast>.tsv`` files (columns ``contrast``, ``cell_type``, ``gene``, ``log2fc``, ``stat``,
        ``padj``); a missing file or column is a one-line input error naming the file.

    Returns
    -------
    pandas.DataFrame
        The tables concatenated, in the order given.
    """
    frames = []
    for name in paths:
        path = Path(name)
        if not path.is_file():
            raise TmeflowInputError("DE table not found", file=path)
        frame = pd.read_csv(path, sep="\t")
        missing = [c for c in ("contrast", "cell_type", "gene", "log2fc", "stat", "padj") if c not in frame.columns]
        if missing:
            raise TmeflowInputError(
                f"DE table lacks column(s) {', '.join(missing)}; give tables written by 'tmeflow de'", file=path
            )
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def gsea_prerank(
    ranking: pd.Series, gene_sets: dict[str, list[str]], *, permutations: int, min_size: int, max_size: int, seed: int
):
    """Run preranked GSEA with gseapy (Subramanian et al. 2005).

    Parameters
    ----------
    ranking
        Gene -> statistic (e.g. the DE Wald statistic); NaN and duplicated genes dropped.
    gene_sets
        Set name -> genes.
    permutations
        ``gsea_permutations``: gene-set permutations of the null.
    min_size, max_size
        Sets with fewer or more genes in the ranking are skipped.
    seed
        Permutation seed.

    Returns
    -------
    tuple
        ``(table, gseapy result)``: ``term``, ``es``, ``nes``, ``pvalue``, ``fdr``, ``fwer``, ``n_genes``,
        ``lead_genes``, ``rank`` (by p-value, then |NES|); the result holds the running enrichment scores.
    """
    import gseapy

    rnk = ranking.dropna()
    rnk = rnk[~rnk.index.duplicated()].sort_values(ascending=False)
    result = gseapy.prerank(
        rnk=rnk,
        gene_sets=gene_sets,
        permutation_num=permutations,
        seed=seed,
        min_size=min_size,
        max_size=max_size,
        threads=1,
        outdir=None,
        no_plot=True,
        verbose=False,
    )
    res = result.res2d.copy()
    table = pd.DataFrame(
        {
            "term": res["Term"].astype(str),
            "es": res["ES"].astype(float),
            "nes": res["NES"].astype(float),
            "pvalue": res["NOM p-val"].astype(float),
            "fdr": res["FDR q-val"].astype(float),
            "fwer": res["FWER p-val"].astype(float),
            "n_genes": res["Tag %"].astype(str).str.split("/").str[1].astype(int),
            "lead_genes": res["Lead_genes"].astype(str),
        }
    )
    table = table.assign(abs_nes=table["nes"].abs()).sort_values(
        ["pvalue", "abs_nes", "term"], ascending=[True, False, True]
    )
    table["rank"] = np.arange(1, len(table) + 1)
    return table.drop(columns="abs_nes"), result


def over_representation(
    genes: list[str], universe: list[str], gene_sets: dict[str, list[str]], *, min_size: int, max_size: int
) -> pd.DataFrame:
    """Test the over-representation of ``genes`` in every set by the hypergeometric test, BH FDR.

    Parameters
    ----------
    genes
        The gene list (e.g. significant up-regulated genes).
    universe
        Genes tested (the list and sets are restricted to it).
    gene_sets
        Set name -> genes.
    min_size, max_size
        Sets with fewer or more genes in the universe are skipped.

    Returns
    -------
    pandas.DataFrame
        One row per set: ``term``, ``n_list``, ``n_universe``, ``n_set``, ``overlap``, ``expected``,
        ``odds_ratio``, ``pvalue``, ``genes``, ``fdr``; by p-value.
    """
    from scipy.stats import hypergeom

    from ..stats import bh_fdr

    universe_set = set(universe)
    hits = set(genes) & universe_set
    rows = []
    for term, members in gene_sets.items():
        in_universe = universe_set.intersection(members)
        if not min_size <= len(in_universe) <= max_size:
            continue
        overlap = sorted(hits & in_universe)
        n_u, n_s, n_l = len(universe_set), len(in_universe), len(hits)
        p = float(hypergeom.sf(len(overlap) - 1, n_u, n_s, n_l)) if n_l else 1.0
        expected = n_l * n_s / n_u if n_u else 0.0
        odds = (
            (len(overlap) * (n_u - n_s - n_l + len(overlap))) / max(1e-12, (n_s - len(overlap)) * (n_l - len(overlap)))
            if n_l
            else np.nan
        )
        rows.append(
            {
                "term": term,
                "n_list": n_l,
                "n_universe": n_u,
                "n_set": n_s,
                "overlap": len(overlap),
                "expected": expected,
                "odds_ratio": odds,
                "pvalue": p,
                "genes": ",".join(overlap),
            }
        )
    frame = pd.DataFrame(
        rows, columns=[c for c in ORA_COLUMNS if c not in ("contrast", "cell_type", "direction", "fdr")]
    )
    frame["fdr"] = bh_fdr(frame["pvalue"]) if len(frame) else []
    return frame.sort_values(["pvalue", "term"]).reset_index(drop=True)
