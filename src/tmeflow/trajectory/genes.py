"""Genes along each fate (weighted Spearman with pseudotime) and their Hallmark over-representation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
import scipy.sparse as sp

if TYPE_CHECKING:
    from anndata import AnnData

from ..stats import bh_fdr

MIN_EXPRESSED = 0.05  # fraction of subset cells expressing a gene for the fate-gene tests
SPECIFICITY = 0.1  # rho above every other fate's rho for a fate gene
CHUNK = 512


def weighted_spearman(X, t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Correlate every column of ``X`` with ``t`` by weighted Spearman correlation.

    Ranks are unweighted, moments weighted by ``w``; p-values from the t approximation with Kish's effective
    sample size ``1 / sum(w^2)`` (weights normalised) as n.

    Parameters
    ----------
    X
        Cells x genes (dense or sparse; processed in blocks of ``CHUNK`` genes).
    t
        Pseudotime per cell.
    w
        Non-negative weight per cell (e.g. a fate probability).

    Returns
    -------
    tuple of numpy.ndarray
        ``(rho, pvalue)`` per gene; rho 0 for a constant gene.
    """
    from scipy.stats import rankdata
    from scipy.stats import t as t_dist

    w = np.asarray(w, dtype=float)
    w = w / w.sum()
    rt = rankdata(t)
    rt = rt - np.sum(w * rt)
    vt = float(np.sum(w * rt**2))
    rhos = []
    for start in range(0, X.shape[1], CHUNK):
        block = X[:, start : start + CHUNK]
        block = block.toarray() if sp.issparse(block) else np.asarray(block)
        r = rankdata(block, axis=0)
        r = r - (w[:, None] * r).sum(axis=0)
        cov = (w[:, None] * r * rt[:, None]).sum(axis=0)
        var = (w[:, None] * r**2).sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            rhos.append(np.where(var > 0, cov / np.sqrt(var * vt), 0.0))
    rho = np.clip(np.concatenate(rhos), -0.999999, 0.999999)
    n_eff = 1.0 / np.sum(w**2)
    df = max(n_eff - 2.0, 1.0)
    stat = rho * np.sqrt(df / (1.0 - rho**2))
    return rho, 2.0 * t_dist.sf(np.abs(stat), df)


def fate_genes(adata: AnnData, probs: pd.DataFrame, fdr: float) -> pd.DataFrame:
    """Test every expressed gene for a monotone trend along each fate.

    Weighted Spearman correlation with pseudotime (:func:`weighted_spearman`, weights: the cells' fate
    probabilities), Benjamini-Hochberg within each fate. A fate gene rises along its fate (``rho > 0``,
    ``fdr < fdr``) by at least ``SPECIFICITY`` more than along any other fate.

    Parameters
    ----------
    adata
        Cells of the trajectory subset: log-normalised ``X`` and ``obs['pseudotime']``; genes expressed in fewer than
        ``MIN_EXPRESSED`` (5%) of the cells are not tested.
    probs
        Fate probabilities, cells x fates (rows in ``adata``'s order).
    fdr
        Benjamini-Hochberg threshold of a fate gene.

    Returns
    -------
    pandas.DataFrame
        One row per fate and tested gene: ``fate, gene, rho, pvalue, fdr, rho_other_max, direction, fate_gene``,
        sorted by fate, fate genes first, then by decreasing ``rho``.
    """
    X = adata.X
    expressed = np.asarray((X > 0).mean(axis=0)).ravel() >= MIN_EXPRESSED
    genes = adata.var_names[expressed].astype(str)
    Xe = X[:, np.flatnonzero(expressed)]
    t = adata.obs["pseudotime"].to_numpy(dtype=float)
    rho = {}
    tables = []
    for fate in probs.columns:
        r, p = weighted_spearman(Xe, t, probs[fate].to_numpy())
        rho[fate] = r
        tables.append(pd.DataFrame({"fate": fate, "gene": genes, "rho": r, "pvalue": p, "fdr": bh_fdr(p)}))
    table = pd.concat(tables, ignore_index=True)
    others = []
    for fate in probs.columns:
        rest = [rho[f] for f in probs.columns if f != fate]
        others.append(np.max(rest, axis=0) if rest else np.full(len(genes), -1.0))
    table["rho_other_max"] = np.concatenate(others)
    table["direction"] = np.where(table["rho"] > 0, "up", "down")
    table["fate_gene"] = (
        (table["fdr"] < fdr) & (table["rho"] > 0) & (table["rho"] - table["rho_other_max"] >= SPECIFICITY)
    )
    return table.sort_values(["fate", "fate_gene", "rho"], ascending=[True, False, False]).reset_index(drop=True)


def hallmark_enrichment(table: pd.DataFrame, species: str) -> pd.DataFrame:
    """Test each fate's genes for over-representation in the Hallmark sets (hypergeometric; BH FDR per fate).

    Parameters
    ----------
    table
        :func:`fate_genes`'s table (universe: its tested genes).
    species
        ``human`` or ``mouse`` (mouse: the ortholog-mapped Hallmark GMT).

    Returns
    -------
    pandas.DataFrame
        One row per fate and set: ``fate, gene_set, set_size, n_fate_genes, overlap, expected, pvalue, genes, fdr``,
        sorted by fate and p-value.
    """
    from scipy.stats import hypergeom

    from ..signatures import BUNDLED_GMTS, read_gmt, resource_path

    gmt = (
        resource_path("hallmark/hallmark_mouse_orthomapped_DERIVED.gmt")
        if species == "mouse"
        else resource_path(BUNDLED_GMTS["hallmark"])
    )
    sets = read_gmt(gmt)
    universe = set(table["gene"])
    rows = []
    for fate, block in table.groupby("fate", sort=False):
        hits = set(block.loc[block["fate_gene"], "gene"])
        for name, members in sets.items():
            present = set(members) & universe
            if not present:
                continue
            overlap = hits & present
            p = float(hypergeom.sf(len(overlap) - 1, len(universe), len(members), len(hits))) if hits else 1.0
            rows.append(
                {
                    "fate": fate,
                    "gene_set": name,
                    "set_size": len(members),
                    "n_fate_genes": len(hits),
                    "overlap": len(overlap),
                    "expected": len(hits) * len(members) / max(len(universe), 1),
                    "pvalue": p,
                    "genes": ",".join(sorted(overlap)),
                }
            )
    out = pd.DataFrame(
        rows, columns=["fate", "gene_set", "set_size", "n_fate_genes", "overlap", "expected", "pvalue", "genes"]
    )
    out["fdr"] = np.nan
    for idx in out.groupby("fate").groups.values():
        out.loc[idx, "fdr"] = bh_fdr(out.loc[idx, "pvalue"])
    return out.sort_values(["fate", "pvalue"]).reset_index(drop=True)
