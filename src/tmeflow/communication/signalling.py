"""Signalling pathways and signalling roles (CellChat-style) for ``tmeflow communication``.

Pathway names
    LIANA's bundled resources carry no pathway annotation; :func:`curated_pathway_map` gives every
    interaction the CellChatDB pathway name of its ligand (Jin et al. 2021, *Nat Commun* 12:1088)
    from ``resources/cellchat_pathways/ligand_pathways.tsv`` (curated here; see its SOURCE.md).

Pathway-level differential signalling (samples as units)
    The sample-level interaction tests (:func:`tmeflow.communication.core.differential_interactions`:
    per sample ``mean_L(source) x mean_R(target)``, moderated linear model ``~ condition`` or
    ``~ condition + patient``) are combined per pathway (``level = pathway``) and per pathway and
    source -> target pair (``level = pair``) by Simes' test (Simes 1986; valid under the positive
    dependence of interactions sharing a ligand, Sarkar 1998): "does any interaction of the pathway
    change between the conditions?"; Benjamini-Hochberg FDR per level. ``logfc`` is the log2 ratio of
    the pathway's strength (the summed mean sample scores of its tested interactions, CellChat's
    "information flow" on the sample scores) in test over reference, a description, not the tested
    statistic. Why not test the summed strength itself: a ligand expressed by many cell types (MDK
    in the simulator, MIF in tumours) makes the pathway sum over every sender, so a change in one
    sender -> receiver pair is diluted (measured on the simulated cohort: the planted MK ranked 6th,
    p = 0.66, summed over pairs; 1st, Simes p = 0.0014, combined), and a sum needs every cell type in
    every sample.

Signalling roles (Jin et al. 2021, ``netAnalysis_computeCentrality``)
    Per condition and pathway, the weighted directed network of cell types (weight: the summed
    ``lr_means`` of the called interactions of the pathway from source to target) gives each cell
    type four centralities: **sender** = weighted out-degree, **receiver** = weighted in-degree,
    **mediator** = flow betweenness (Freeman, Borgatti & White 1991, as ``sna::flowbet``: the max-flow
    between every other pair of cell types that is lost when the cell type is removed), **influencer**
    = information centrality (Stephenson & Zelen 1989, as ``sna::infocent`` on the network made
    symmetric by summing both directions, rescaled to sum 1; see :func:`information_centrality`). Each centrality is
    also given scaled to a maximum of 1 within the pathway and condition (``*_scaled``), as CellChat's role heatmaps
    show them. ``pathway = "all"`` is the network of every called interaction with a pathway.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

from ..stats import bh_fdr

RESOURCE = Path(__file__).resolve().parent.parent / "resources" / "cellchat_pathways" / "ligand_pathways.tsv"
PSEUDO = 0.1
PATHWAY_TEST_COLUMNS = [
    "contrast", "level", "pathway", "source", "target", "logfc", "pvalue", "fdr", "significant", "strength_test",
    "strength_reference", "n_interactions", "top_interaction", "n_samples_test", "n_samples_reference", "design",
]  # fmt: skip
ROLE_COLUMNS = [
    "condition",
    "pathway",
    "cell_type",
    "sender",
    "receiver",
    "mediator",
    "influencer",
    "sender_scaled",
    "receiver_scaled",
    "mediator_scaled",
    "influencer_scaled",
]


@lru_cache(maxsize=1)
def ligand_pathways() -> dict[str, str]:
    """Read the bundled ligand -> pathway table.

    Returns
    -------
    dict[str, str]
        Human ligand symbol -> CellChatDB pathway name (``cellchat_pathways/ligand_pathways.tsv``).
    """
    table = pd.read_csv(RESOURCE, sep="\t", dtype=str)
    return dict(zip(table["ligand"], table["pathway"], strict=True))


def pathway_of(ligand: str) -> str | None:
    """Give the pathway of a ligand, possibly a complex ``A_B``: the first listed subunit's, case-insensitive.

    Parameters
    ----------
    ligand
        Ligand symbol or complex (human or mouse capitalisation).

    Returns
    -------
    str or None
        The CellChatDB pathway name, None when the ligand is not in the table.
    """
    table = ligand_pathways()
    for gene in str(ligand).split("_"):
        hit = table.get(gene.upper())
        if hit:
            return hit
    return None


def curated_pathway_map(resource: pd.DataFrame) -> dict[tuple[str, str], str]:
    """Map every interaction of ``resource`` whose ligand is in the bundled table to its pathway.

    Parameters
    ----------
    resource
        The ligand-receptor resource (``ligand``, ``receptor``).

    Returns
    -------
    dict[tuple[str, str], str]
        (ligand, receptor) -> CellChatDB pathway name.
    """
    out = {}
    for ligand, receptor in zip(resource["ligand"].astype(str), resource["receptor"].astype(str), strict=True):
        name = pathway_of(ligand)
        if name:
            out[(ligand, receptor)] = name
    return out


# --------------------------------------------------------------------------------------------------
# Pathway-level test


def simes(pvalues) -> float:
    """Combine p-values by Simes (1986): ``min_i m p_(i) / i``.

    A valid test of "no interaction of the set differs" when the tests are independent or positively
    dependent (Sarkar 1998), as tests sharing a ligand are.

    Parameters
    ----------
    pvalues
        The p-values of the set; NaN are dropped.

    Returns
    -------
    float
        The combined p-value (at most 1); NaN for an empty set.
    """
    p = np.sort(np.asarray(pvalues, dtype=float))
    p = p[np.isfinite(p)]
    if not len(p):
        return float("nan")
    return float(min(1.0, np.min(len(p) * p / np.arange(1, len(p) + 1))))


def pathway_tests(table: pd.DataFrame, pathways: dict[tuple[str, str], str], name: str, *, fdr: float) -> pd.DataFrame:
    """Test differential signalling per pathway from the sample-level interaction tests.

    Per pathway (``level = pathway``, ``source = target = all``) and per pathway and source -> target
    (``level = pair``): the Simes combination of the interaction p-values (:func:`simes`), BH FDR per level;
    ``logfc`` = log2 of the summed mean sample score (strength) in test over reference, with the
    interaction of smallest p-value.

    Parameters
    ----------
    table
        The differential interactions of one contrast (:func:`tmeflow.communication.differential_interactions`).
    pathways
        (ligand, receptor) -> pathway.
    name
        The contrast name written in ``contrast``.
    fdr
        ``significant`` is ``fdr < fdr`` (``communication_fdr``).

    Returns
    -------
    pandas.DataFrame
        ``PATHWAY_TEST_COLUMNS``, one row per pathway and per pathway and source -> target pair.
    """
    if not len(table) or not pathways:
        return pd.DataFrame(columns=PATHWAY_TEST_COLUMNS)
    frame = table.assign(
        pathway=[pathways.get((lig, rec)) for lig, rec in zip(table["ligand"], table["receptor"], strict=True)]
    )
    frame = frame.dropna(subset=["pathway", "pvalue"]).sort_values("pvalue", kind="stable")
    parts = []
    for level, keys in (("pathway", ["pathway"]), ("pair", ["pathway", "source", "target"])):
        grouped = frame.groupby(keys, sort=False)
        out = grouped.agg(
            pvalue=("pvalue", simes),
            n_interactions=("pvalue", "size"),
            strength_test=("mean_score_test", "sum"),
            strength_reference=("mean_score_reference", "sum"),
            top_interaction=("interaction", "first"),
            n_samples_test=("n_samples_test", "max"),
            n_samples_reference=("n_samples_reference", "max"),
            design=("design", "first"),
        ).reset_index()
        if level == "pathway":
            out["source"], out["target"] = "all", "all"
            out["top_interaction"] = (
                grouped[["source", "target", "interaction"]]
                .first()
                .apply(lambda r: f"{r['source']} -> {r['target']}: {r['interaction']}", axis=1)
                .to_numpy()
            )
        else:
            out["top_interaction"] = out["top_interaction"].astype(str)
        out["logfc"] = np.log2((out["strength_test"] + PSEUDO) / (out["strength_reference"] + PSEUDO))
        out["fdr"] = bh_fdr(out["pvalue"])
        out["level"] = level
        parts.append(
            out.sort_values(["pvalue", "logfc"], key=lambda c: c if c.name == "pvalue" else -c.abs(), kind="stable")
        )
    result = pd.concat(parts, ignore_index=True)
    result.insert(0, "contrast", name)
    result["significant"] = result["fdr"] < fdr
    return result[PATHWAY_TEST_COLUMNS]


# --------------------------------------------------------------------------------------------------
# Centrality


def flow_betweenness(weights: np.ndarray) -> np.ndarray:
    """Compute flow betweenness (Freeman, Borgatti & White 1991; ``sna::flowbet``), CellChat's mediator role.

    For node ``i``, the sum over ordered pairs ``j != k`` (both ``!= i``) of
    ``maxflow(j, k) - maxflow(j, k without i)``. Weights are capacities (scaled to integers for
    :func:`scipy.sparse.csgraph.maximum_flow`).

    Parameters
    ----------
    weights
        Square source x target weight matrix (non-negative).

    Returns
    -------
    numpy.ndarray
        One value per node.
    """
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import maximum_flow

    w = np.array(weights, dtype=float)
    np.fill_diagonal(w, 0.0)
    n = len(w)
    out = np.zeros(n)
    if n < 3 or w.max() <= 0:
        return out
    cap = np.rint(w / w.max() * 1e6).astype(np.int64)

    def flows(matrix: np.ndarray, skip: int | None) -> np.ndarray:
        graph = csr_matrix(matrix)
        result = np.zeros((n, n))
        for j in range(n):
            if j == skip or not matrix[j].any():
                continue
            for k in range(n):
                if k not in (j, skip) and matrix[:, k].any():
                    result[j, k] = maximum_flow(graph, j, k).flow_value
        return result

    full = flows(cap, None)
    for i in range(n):
        if not (cap[i].any() and cap[:, i].any()):
            continue  # no flow passes through a node without in- and out-edges
        reduced = cap.copy()
        reduced[i, :], reduced[:, i] = 0, 0
        lost = full - flows(reduced, i)
        lost[i, :], lost[:, i] = 0, 0
        out[i] = lost.sum()
    return out / 1e6 * w.max()


def information_centrality(weights: np.ndarray) -> np.ndarray:
    """Compute information centrality (Stephenson & Zelen 1989) as ``sna::infocent(rescale = TRUE)``.

    On the symmetric network ``W + W^T`` (self-loops drop out of the Laplacian), ``C = (L + J)^-1`` (``L`` the
    Laplacian, ``J`` all ones), ``I_i = 1 / (C_ii + (T - 2 R_i) / n)`` with ``T`` the trace and ``R_i``
    the row sum of ``C``; rescaled to sum 1; isolated nodes get 0. CellChat passes ``cmode = "lower"``,
    which keeps only the edges from later to earlier cell types in the factor order (so the result
    depends on how the cell types are named); the sum of both directions is used here instead.

    Parameters
    ----------
    weights
        Square source x target weight matrix (non-negative).

    Returns
    -------
    numpy.ndarray
        One value per node, summing to 1 (all 0 without edges).
    """
    w = np.array(weights, dtype=float)
    np.fill_diagonal(w, 0.0)
    sym = w + w.T
    out = np.zeros(len(w))
    keep = np.flatnonzero(sym.sum(axis=1) > 0)
    if len(keep) < 2:
        return out
    a = sym[np.ix_(keep, keep)]
    n = len(keep)
    laplacian = np.diag(a.sum(axis=1)) - a
    c = np.linalg.pinv(laplacian + np.ones((n, n)))
    info = 1.0 / (np.diag(c) + (np.trace(c) - 2 * c.sum(axis=1)) / n)
    out[keep] = info / info.sum()
    return out


def network_roles(matrix: pd.DataFrame) -> pd.DataFrame:
    """Score every cell type's signalling roles in a source x target weight matrix (Jin et al. 2021).

    Parameters
    ----------
    matrix
        Square source x target strengths (index and columns: the same cell types).

    Returns
    -------
    pandas.DataFrame
        ``cell_type``, ``sender`` (out-strength), ``receiver`` (in-strength), ``mediator``
        (:func:`flow_betweenness`), ``influencer`` (:func:`information_centrality`) and each role divided by
        its maximum (``<role>_scaled``; 0 when the maximum is 0).
    """
    w = matrix.to_numpy(dtype=float)
    roles = pd.DataFrame(
        {
            "cell_type": matrix.index,
            "sender": w.sum(axis=1),
            "receiver": w.sum(axis=0),
            "mediator": flow_betweenness(w),
            "influencer": information_centrality(w),
        }
    )
    for role in ("sender", "receiver", "mediator", "influencer"):
        top = roles[role].max()
        roles[f"{role}_scaled"] = roles[role] / top if top > 0 else 0.0
    return roles


def signalling_roles(pathway_strength: pd.DataFrame) -> pd.DataFrame:
    """Score signalling roles per condition and pathway (and over all pathways, ``all``).

    Parameters
    ----------
    pathway_strength
        Called-interaction strengths per condition, pathway, source and target
        (:func:`tmeflow.communication.pathway_table`); ``other`` is left out.

    Returns
    -------
    pandas.DataFrame
        ``ROLE_COLUMNS``: condition, pathway, cell type and the roles of :func:`network_roles`; every cell type
        of the table appears in every network.
    """
    table = pathway_strength[pathway_strength["pathway"] != "other"]
    if not len(table):
        return pd.DataFrame(columns=ROLE_COLUMNS)
    types = sorted(set(table["source"]) | set(table["target"]))
    parts = []
    for condition, block in table.groupby("condition", sort=False, observed=True):
        groups = list(block.groupby("pathway", sort=True, observed=True)) + [("all", block)]
        for pathway, sub in groups:
            matrix = sub.pivot_table(index="source", columns="target", values="strength", aggfunc="sum", observed=True)
            matrix = matrix.reindex(index=types, columns=types).fillna(0.0)
            parts.append(network_roles(matrix).assign(condition=condition, pathway=pathway))
    return pd.concat(parts, ignore_index=True)[ROLE_COLUMNS]
