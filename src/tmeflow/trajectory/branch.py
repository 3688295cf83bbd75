"""Branch-dependent genes along a trajectory, tested with samples as units.

The model follows tradeSeq (Van den Berge et al. 2020, Nat Commun 11:1201): per gene, expression is a
smooth function of pseudotime per lineage, cells weighted by their lineage (here: CellRank fate)
probabilities, and lineages are compared through their fitted smooths.

Smooths
    Natural cubic regression splines (Hastie, Tibshirani & Friedman, ESL 2nd ed., eq. 5.4-5.5) with
    ``n_knots`` knots at pseudotime quantiles (pseudotime scaled to [0, 1] between its 1% and 99%
    quantiles). One smooth ``f_l`` per lineage, fitted by weighted least squares with the cells'
    probabilities of lineage ``l`` as weights (Gaussian GAM on log-normalised expression; a small ridge
    penalty keeps sparse samples stable). Each cell thus counts in every lineage with its probability,
    the expectation of tradeSeq's random assignment of cells to lineages by their weights; cells before
    the branch point (probabilities near 1/L) anchor all smooths at the root. The normal equations
    are shared by all genes, so one solve per lineage fits every gene.
Inference (samples are the units; cells of one sample are not independent)
    The model is fitted in each sample (>= ``MIN_SAMPLE_CELLS`` cells and a summed probability
    >= ``MIN_LINEAGE_WEIGHT`` in every lineage) and summarised on a grid of ``GRID`` pseudotime points:

    * *association* (tradeSeq ``startVsEndTest``): per lineage, the smooth's mean over the last quarter
      of the grid minus its mean over the first quarter;
    * *between lineages*, per pair of lineages: ``diff_end`` (tradeSeq ``diffEndTest``), the mean
      difference of the two smooths over the last quarter of the grid, and ``diff_mean`` (a one-degree
      summary of tradeSeq's ``patternTest``), the mean difference over the whole grid.

    Each per-sample summary is tested against zero across samples with a limma-style moderated
    one-sample t-test (empirical-Bayes variance moderation across genes, Smyth 2004;
    :func:`tmeflow.stats.moderated_by_pattern`). A gene's branch p-value is the Bonferroni minimum
    over the pairs and the two summaries; its association p-value the Bonferroni minimum over
    lineages. BH FDR over genes. Pseudotime and fates come from the same expression (double dipping);
    under a null where fates are independent of expression the test is calibrated
    (tests/test_trajectory_branch.py), on real data the FDR ranks genes rather than proves them.
Clusters
    Branch genes (FDR below ``trajectory_fdr``) are clustered by k-means (``trajectory_branch_clusters``,
    seed fixed) on their cohort-level smooths (all cells, same model), the lineages' curves
    concatenated and z-scored per gene, as Monocle's branched heatmap does (Qiu et al. 2017, BEAM);
    each cluster's over-representation in the Hallmark and regulated-cell-death sets uses the pathways
    stage's :func:`tmeflow.pathways.over_representation` (universe: the tested genes).
"""

from __future__ import annotations

from itertools import combinations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..stats import bh_fdr, moderated_by_pattern

GRID = 25
END_FRACTION = 0.25
MIN_SAMPLE_CELLS = 30
MIN_LINEAGE_WEIGHT = 10.0
MIN_SAMPLES = 3
RIDGE = 1e-3


def scale_pseudotime(t: np.ndarray) -> np.ndarray:
    """Scale pseudotime to [0, 1] between its 1% and 99% quantiles (clipped), as tradeSeq's grid does.

    Parameters
    ----------
    t
        Pseudotime per cell (any scale; NaN ignored by the quantiles).

    Returns
    -------
    numpy.ndarray
        Scaled pseudotime, same shape as ``t``, in [0, 1].
    """
    lo, hi = np.nanquantile(t, [0.01, 0.99])
    return np.clip((t - lo) / max(hi - lo, 1e-12), 0.0, 1.0)


def knots_at_quantiles(t: np.ndarray, n_knots: int) -> np.ndarray:
    """Place spline knots at evenly spaced quantiles of pseudotime.

    Parameters
    ----------
    t
        Pseudotime of the cells (any scale).
    n_knots
        Number of knots (at least 3); tied quantiles are merged.

    Returns
    -------
    numpy.ndarray
        The distinct knots, increasing; ``[0, 0.5, 1]`` when fewer than 3 are distinct.
    """
    knots = np.unique(np.quantile(t, np.linspace(0.0, 1.0, max(int(n_knots), 3))))
    return knots if knots.size >= 3 else np.array([0.0, 0.5, 1.0])


def spline_basis(t: np.ndarray, knots: np.ndarray) -> np.ndarray:
    """Evaluate the natural cubic spline basis (Hastie, Tibshirani & Friedman, ESL eq. 5.4-5.5).

    Parameters
    ----------
    t
        Scaled pseudotime of the cells (or grid points).
    knots
        Increasing knots (at least 3), e.g. :func:`knots_at_quantiles`.

    Returns
    -------
    numpy.ndarray
        ``len(t) x K`` basis: ``1, t, d_k - d_{K-1}`` for ``k = 1 .. K-2``, linear beyond the boundary knots.
    """
    t = np.asarray(t, dtype=float)
    K = knots.size

    def d(k):
        return (np.maximum(t - knots[k], 0) ** 3 - np.maximum(t - knots[-1], 0) ** 3) / (knots[-1] - knots[k])

    last = d(K - 2)
    return np.column_stack([np.ones_like(t), t] + [d(k) - last for k in range(K - 2)])


def _solve(ztz: np.ndarray, zty: np.ndarray) -> np.ndarray:
    penalty = RIDGE * max(float(np.trace(ztz)) / ztz.shape[0], 1e-12)
    return np.linalg.solve(ztz + penalty * np.eye(ztz.shape[0]), zty)


def _normal_equations(basis: np.ndarray, weights: np.ndarray, Y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per lineage ``N' W_l N`` and ``N' W_l Y`` (L x K x K, L x K x genes)."""
    ztz = np.stack([basis.T @ (weights[:, [lin]] * basis) for lin in range(weights.shape[1])])
    zty = np.stack([basis.T @ (weights[:, [lin]] * Y) for lin in range(weights.shape[1])])
    return ztz, zty


def _curves(ztz: np.ndarray, zty: np.ndarray, grid_basis: np.ndarray) -> np.ndarray:
    return np.stack([grid_basis @ _solve(ztz[lin], zty[lin]) for lin in range(ztz.shape[0])])  # L x grid x genes


def fit_smooths(
    X, t: np.ndarray, weights: np.ndarray, samples: np.ndarray, *, n_knots: int = 5, grid_size: int = GRID
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Fit per-sample and pooled lineage smooths on a pseudotime grid (tradeSeq-style GAM, Van den Berge et al. 2020).

    Each lineage's smooth is the weighted least-squares spline fit with the cells' probabilities of that lineage as
    weights (each cell counted in every lineage with its probability: the expectation of tradeSeq's random assignment
    of cells to lineages), so cells before the branch point, shared by all lineages, anchor every smooth at the root.
    A small ridge (``RIDGE`` x mean diagonal) keeps sparse samples solvable.

    Parameters
    ----------
    X
        Cells x genes, log-normalised (dense or sparse).
    t
        Pseudotime per cell (scaled internally by :func:`scale_pseudotime`).
    weights
        Cells x L lineage (fate) probabilities.
    samples
        Sample of each cell; smooths are fitted per sample (samples are the units of replication).
    n_knots
        Knots at pseudotime quantiles (default 5: enough for one turn before and after a branch point).
    grid_size
        Points of the evaluation grid on [0, 1] (default ``GRID``).

    Returns
    -------
    tuple
        ``({sample: L x grid x genes}, pooled L x grid x genes, grid)``; samples with fewer than
        ``MIN_SAMPLE_CELLS`` cells or less than ``MIN_LINEAGE_WEIGHT`` weight in a lineage are left out of the
        per-sample dict (they still count in the pooled fit).
    """
    ts = scale_pseudotime(np.asarray(t, dtype=float))
    knots = knots_at_quantiles(ts, n_knots)
    grid = np.linspace(0.0, 1.0, grid_size)
    grid_basis = spline_basis(grid, knots)
    W = np.asarray(weights, dtype=float)
    per_sample: dict[str, np.ndarray] = {}
    ztz_all, zty_all = np.zeros(0), np.zeros(0)
    for sample in pd.unique(samples):
        idx = np.flatnonzero(samples == sample)
        Y = X[idx]
        Y = Y.toarray() if sp.issparse(Y) else np.asarray(Y, dtype=float)
        ztz, zty = _normal_equations(spline_basis(ts[idx], knots), W[idx], Y)
        ztz_all, zty_all = (ztz, zty) if ztz_all.size == 0 else (ztz_all + ztz, zty_all + zty)
        if idx.size >= MIN_SAMPLE_CELLS and W[idx].sum(axis=0).min() >= MIN_LINEAGE_WEIGHT:
            per_sample[str(sample)] = _curves(ztz, zty, grid_basis)
    return per_sample, _curves(ztz_all, zty_all, grid_basis), grid


def _one_sample_tests(values: pd.DataFrame) -> pd.DataFrame:
    """Moderated one-sample t-test of every column (samples x genes) against zero."""

    def design_for(keep):
        return (np.ones((len(keep), 1)), 0, "~ 1") if len(keep) >= MIN_SAMPLES else None

    return moderated_by_pattern(values, design_for).reindex(values.columns)


def branch_tests(per_sample: dict[str, np.ndarray], grid: np.ndarray, genes, fate_names: list[str]) -> pd.DataFrame:
    """Test every gene for association with pseudotime and for differences between lineages, across samples.

    Per sample, a lineage's change is the smooth's mean over the last ``END_FRACTION`` of the grid minus its mean
    over the first; the between-lineage statistics are, per pair of lineages, the difference at the end
    (``diff_end``) and over the whole grid (``diff_mean``). Each is tested across samples by a moderated one-sample
    t-test (:func:`tmeflow.stats.moderated_by_pattern`; limma, Smyth 2004). Association: the smallest lineage
    p-value, Bonferroni over lineages; branch: the smallest pair/statistic p-value, Bonferroni over them. BH FDR
    over genes for both.

    Parameters
    ----------
    per_sample
        ``{sample: L x grid x genes}`` smooths of :func:`fit_smooths`.
    grid
        The pseudotime grid (scaled, [0, 1]).
    genes
        Gene names, one per smooth column.
    fate_names
        Lineage names, in the smooths' order.

    Returns
    -------
    pandas.DataFrame
        One row per gene: ``gene, n_samples, change_<fate>...,
        pvalue_association, contrast, best_statistic, pvalue_branch, fdr_association, fdr_branch`` (plus
        ``diff_end``, ``diff_mean`` and their p-values with two lineages), sorted by ``pvalue_branch``; p-values
        NaN with fewer than ``MIN_SAMPLES`` samples.
    """
    genes = pd.Index(genes, dtype=str)
    samples = sorted(per_sample)
    end = grid >= 1.0 - END_FRACTION
    start = grid <= END_FRACTION
    out = pd.DataFrame(index=genes)
    out["n_samples"] = len(samples)
    if len(samples) < MIN_SAMPLES:
        for column in ("pvalue_association", "pvalue_branch", "fdr_association", "fdr_branch"):
            out[column] = np.nan
        return out.rename_axis("gene").reset_index()
    stack = np.stack([per_sample[s] for s in samples])  # samples x L x grid x genes
    assoc = []
    for lin, fate in enumerate(fate_names):
        change = stack[:, lin][:, end].mean(axis=1) - stack[:, lin][:, start].mean(axis=1)
        res = _one_sample_tests(pd.DataFrame(change, index=samples, columns=genes))
        out[f"change_{fate}"] = res["estimate"].to_numpy()
        assoc.append(res["pvalue"].to_numpy())
    out["pvalue_association"] = np.minimum(np.nanmin(np.vstack(assoc), axis=0) * len(fate_names), 1.0)
    pairs = list(combinations(range(len(fate_names)), 2))
    best_p = np.full(len(genes), np.inf)
    for a, b in pairs:
        diff = stack[:, a] - stack[:, b]  # samples x grid x genes
        label = f"{fate_names[a]} - {fate_names[b]}"
        for stat, values in (("diff_end", diff[:, end].mean(axis=1)), ("diff_mean", diff.mean(axis=1))):
            res = _one_sample_tests(pd.DataFrame(values, index=samples, columns=genes))
            p = res["pvalue"].to_numpy()
            better = p < best_p
            if len(pairs) == 1:
                out[stat] = res["estimate"].to_numpy()
                out[f"pvalue_{stat}"] = p
            out.loc[better, "contrast"] = label
            out.loc[better, "best_statistic"] = stat
            best_p = np.where(better, p, best_p)
    out["pvalue_branch"] = np.minimum(best_p * 2 * len(pairs), 1.0)
    out["fdr_association"] = bh_fdr(out["pvalue_association"])
    out["fdr_branch"] = bh_fdr(out["pvalue_branch"])
    return out.rename_axis("gene").reset_index().sort_values(["pvalue_branch", "gene"]).reset_index(drop=True)


def cluster_genes(pooled: np.ndarray, genes, selected, k: int, seed: int) -> pd.Series:
    """Cluster the selected genes' pooled smooths by k-means.

    The lineages' smooths are concatenated and z-scored per gene; clusters are numbered 1..k in the order of
    where along pseudotime their mean profile peaks.

    Parameters
    ----------
    pooled
        L x grid x genes pooled smooths (:func:`fit_smooths`).
    genes
        Names of the smooths' genes.
    selected
        The genes to cluster (e.g. the branch genes).
    k
        Number of clusters (at most the number of selected genes).
    seed
        k-means random state (10 initialisations).

    Returns
    -------
    pandas.Series
        Cluster (int, 1..k) per selected gene, named ``cluster``; empty when nothing is selected.
    """
    from sklearn.cluster import KMeans

    genes = pd.Index(genes, dtype=str)
    pos = genes.get_indexer(list(selected))
    if pos.size == 0:
        return pd.Series(dtype=int, name="cluster")
    curves = np.concatenate(list(pooled[:, :, pos]), axis=0).T  # genes x (L * grid)
    z = (curves - curves.mean(axis=1, keepdims=True)) / np.maximum(curves.std(axis=1, keepdims=True), 1e-9)
    k = max(1, min(int(k), pos.size))
    labels = KMeans(n_clusters=k, n_init=10, random_state=int(seed)).fit_predict(z)
    peak = {c: float(np.argmax(z[labels == c].mean(axis=0))) for c in range(k)}
    rank = {c: i + 1 for i, c in enumerate(sorted(peak, key=lambda c: peak[c]))}
    return pd.Series([rank[c] for c in labels], index=genes[pos], name="cluster")


def cluster_enrichment(clusters: pd.Series, universe, gene_sets: dict[str, list[str]]) -> pd.DataFrame:
    """Test each cluster's genes for over-representation in ``gene_sets`` (hypergeometric, BH FDR).

    Uses the pathways stage's :func:`tmeflow.pathways.over_representation` (sets of 5-1,000 genes in the
    universe).

    Parameters
    ----------
    clusters
        Cluster per gene (:func:`cluster_genes`).
    universe
        The tested genes (background).
    gene_sets
        ``{name: genes}``.

    Returns
    -------
    pandas.DataFrame
        One row per cluster and set: ``cluster, term, n_list, n_universe, n_set, overlap, expected, odds_ratio,
        pvalue, fdr, genes``.
    """
    from ..pathways import ORA_COLUMNS, over_representation

    tables = []
    for cluster in sorted(clusters.unique()):
        table = over_representation(
            list(clusters.index[clusters == cluster]), list(universe), gene_sets, min_size=5, max_size=1000
        )
        tables.append(table.assign(cluster=int(cluster)))
    if not tables:
        return pd.DataFrame(
            columns=["cluster", *[c for c in ORA_COLUMNS if c not in ("contrast", "cell_type", "direction")]]
        )
    table = pd.concat(tables, ignore_index=True)
    return table[["cluster", *[c for c in table.columns if c != "cluster"]]]


# --------------------------------------------------------------------------------------------------
# Gene sets and the stage-level analysis

DAMPS_GMT = "cell_death/damps.gmt"


def branch_gene_sets(species: str) -> dict[str, list[str]]:
    """Return the trend gene sets: Hallmark, regulated cell death (the pathways stage's collection) and DAMPs.

    Parameters
    ----------
    species
        ``human`` or ``mouse`` (mouse: ortholog-mapped sets).

    Returns
    -------
    dict
        ``{set name: gene symbols}``.
    """
    from ..pathways import pathway_collection
    from ..signatures import map_gene_sets, read_gmt, resource_path

    sets = dict(pathway_collection(species))
    sets.update(map_gene_sets(read_gmt(resource_path(DAMPS_GMT)), "human", species))
    return sets


def set_scores(adata: AnnData, sets: dict[str, list[str]]) -> pd.DataFrame:
    """Score gene sets per cell: the mean z-score (over the cells of ``adata``) of each set's genes present.

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``.
    sets
        ``{name: genes}``; a set with no gene in ``adata`` scores 0.

    Returns
    -------
    pandas.DataFrame
        Cells x sets scores, indexed by ``obs_names``.
    """
    out = {}
    for name, members in sets.items():
        present = [g for g in members if g in adata.var_names]
        if not present:
            out[name] = np.zeros(adata.n_obs)
            continue
        X = adata[:, present].X
        X = X.toarray() if sp.issparse(X) else np.asarray(X, dtype=float)
        out[name] = ((X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-9)).mean(axis=1)
    return pd.DataFrame(out, index=adata.obs_names)


def resolve_trend_sets(wanted: list[str], species: str, *, file=None) -> dict[str, list[str]]:
    """Resolve the named trend gene sets (``trajectory_trend_sets``) among the bundled ones.

    Parameters
    ----------
    wanted
        Set names, case-insensitive.
    species
        ``human`` or ``mouse``.
    file
        Input file named by the error.

    Returns
    -------
    dict
        ``{bundled name: genes}`` in the order of ``wanted``.

    Raises
    ------
    TmeflowInputError
        A name is not a bundled set.
    """
    from ..errors import TmeflowInputError

    sets = branch_gene_sets(species)
    by_upper = {name.upper(): name for name in sets}
    unknown = [w for w in wanted if w.upper() not in by_upper]
    if unknown:
        raise TmeflowInputError(
            f"trajectory_trend_sets names unknown gene sets: {', '.join(unknown)} (bundled: Hallmark, "
            "regulated cell death and DAMPS, e.g. GO_0070266_NECROPTOTIC_PROCESS, DAMPS, HALLMARK_HYPOXIA)",
            file=file,
        )
    return {by_upper[w.upper()]: sets[by_upper[w.upper()]] for w in wanted}


def branch_analysis(
    adata: AnnData,
    probs: pd.DataFrame,
    species: str,
    *,
    trend_sets: list[str],
    knots: int,
    fdr: float,
    n_clusters: int,
    seed: int,
    min_expressed: float,
    file=None,
) -> dict:
    """Find branch-dependent genes, their clusters and enrichment, and gene-set trends (the module docstring).

    Parameters
    ----------
    adata
        The trajectory subset: log-normalised ``X``, ``obs['pseudotime']``, ``obs['sample']`` (else
        ``obs['condition']``) and ``var['highly_variable']`` (all genes when absent).
    probs
        Fate probabilities, cells x fates.
    species
        ``human`` or ``mouse`` (gene sets).
    trend_sets
        Bundled gene sets whose pseudotime trends are drawn (``trajectory_trend_sets``).
    knots
        Spline knots per lineage smooth (``trajectory_branch_knots``).
    fdr
        BH threshold of a branch gene and of a significant enrichment (``trajectory_fdr``).
    n_clusters
        k-means clusters of the branch genes (``trajectory_branch_clusters``).
    seed
        k-means random state.
    min_expressed
        Fraction of cells in which a tested gene is detected.
    file
        Input file named by errors.

    Returns
    -------
    dict
        ``genes`` (:func:`branch_tests` table with ``branch_gene`` and ``cluster``), ``clusters``,
        ``enrichment`` (:func:`cluster_enrichment` with ``significant``), ``trends`` (set scores per fate and grid
        point with the sets' tests), ``pooled`` smooths, ``tested_genes``, ``grid``, ``fate_names`` and
        ``n_samples`` (samples with per-sample smooths).
    """
    sets = branch_gene_sets(species)
    chosen = resolve_trend_sets(trend_sets, species, file=file)
    X = adata.X
    hvg = (
        adata.var["highly_variable"].to_numpy()
        if "highly_variable" in adata.var.columns
        else np.ones(adata.n_vars, bool)
    )
    expressed = np.asarray((X > 0).mean(axis=0)).ravel() >= min_expressed
    keep = np.flatnonzero(hvg & expressed)
    genes = adata.var_names[keep].astype(str)
    t = adata.obs["pseudotime"].to_numpy(dtype=float)
    samples = (adata.obs["sample"] if "sample" in adata.obs.columns else adata.obs["condition"]).astype(str).to_numpy()
    fate_names = list(probs.columns)
    W = probs.to_numpy(dtype=float)
    per_sample, pooled, grid = fit_smooths(X[:, keep], t, W, samples, n_knots=knots)
    table = branch_tests(per_sample, grid, genes, fate_names)
    table["branch_gene"] = table["fdr_branch"] < fdr
    clusters = cluster_genes(pooled, genes, table.loc[table["branch_gene"], "gene"], n_clusters, seed)
    table["cluster"] = table["gene"].map(clusters).astype("Int64")
    enrichment = cluster_enrichment(clusters, genes, sets)
    if len(enrichment):
        enrichment["significant"] = enrichment["fdr"] < fdr
    rows = []
    if chosen:
        scores = set_scores(adata, chosen)
        set_per_sample, set_pooled, _ = fit_smooths(scores.to_numpy(), t, W, samples, n_knots=knots)
        set_tests = branch_tests(set_per_sample, grid, list(chosen), fate_names).set_index("gene")
        for s, name in enumerate(chosen):
            for lin, fate in enumerate(fate_names):
                for g, x in enumerate(grid):
                    rows.append(
                        {
                            "gene_set": name,
                            "fate": fate,
                            "pseudotime_scaled": float(x),
                            "score": float(set_pooled[lin, g, s]),
                            "n_genes_present": int(sum(m in adata.var_names for m in chosen[name])),
                            "pvalue_association": set_tests.at[name, "pvalue_association"],
                            "pvalue_branch": set_tests.at[name, "pvalue_branch"],
                        }
                    )
    trends = pd.DataFrame(
        rows,
        columns=[
            "gene_set",
            "fate",
            "pseudotime_scaled",
            "score",
            "n_genes_present",
            "pvalue_association",
            "pvalue_branch",
        ],
    )
    return {
        "genes": table,
        "clusters": clusters,
        "enrichment": enrichment,
        "trends": trends,
        "pooled": pooled,
        "tested_genes": genes,
        "grid": grid,
        "fate_names": fate_names,
        "n_samples": len(per_sample),
    }
