"""Trajectories: pseudotime, fates and fate genes (``tmeflow trajectory``).

Input: the atlas h5ad (log1p CP10k in ``X``, raw counts in ``layers['counts']`` when present;
``obs`` ``cell_type``, ``condition``, optionally ``compartment``, ``malignant``, ``sample``).

Subset (``trajectory_subset``)
    Comma-separated names, each matched (case-insensitive) to ``obs['compartment']``, else to
    ``cell_type`` / ``cell_type_fine``. ``epithelial`` without a compartment column takes every cell
    type named ``*epithelial*``, ``malignant``, ``tumour``/``tumor``/``cancer*`` and cells with
    ``obs['malignant']`` true. Empty: all cells. An unknown name is an input error.
Embedding
    Highly variable genes of the subset (``trajectory_n_top_genes``; Seurat v3 on raw counts, else
    Seurat on ``X``), PCA (``trajectory_n_pcs``), kNN graph (``trajectory_n_neighbors``), diffusion
    map (its first two components are the plotted embedding), Leiden clusters (``trajectory_resolution``; obs ``trajectory_cluster``).
Root (first that is set)
    ``trajectory_root_genes``: the cell with the highest score, the mean z-score of the root genes,
    averaged over each cell's kNN neighbourhood (absent genes are ignored with a warning; no gene
    present or none expressed in the subset is an input error). ``trajectory_root_type`` /
    ``trajectory_root_cluster``: among the cells of that type / cluster, the cell at the extreme of
    the diffusion component (of the first five) that best separates them from the rest of the subset
    (largest standardised mean difference), on their side. A type or cluster absent from the subset
    is an input error. None given: the extreme cell of the first diffusion component (warning).
Pseudotime
    scanpy diffusion pseudotime (Haghverdi et al. 2016) on ``trajectory_n_dcs`` diffusion components,
    obs ``pseudotime`` (cells unreachable from
    the root get NaN and are left out of the fate analysis).
Fates (CellRank 2, Weiler et al. 2024)
    Kernel ``w x PseudotimeKernel + (1 - w) x ConnectivityKernel`` (``trajectory_kernel_weight``,
    soft thresholding), GPCCA with ``trajectory_n_states`` macrostates (``seed`` fixed; when GPCCA
    cannot split at this number, e.g. a complex-conjugate Schur pair, the stage tries n + 1, then n - 1
    ... 2, and fails with an input error naming what it tried), terminal states by CellRank's
    stability criterion (or the ``trajectory_n_terminal`` highest-mass macrostates), absorption
    (fate) probabilities. Each fate is named after its label (below; e.g. ``metastasis_branch``,
    the macrostate appended when labels repeat): obs ``fate_probability_<fate>``, ``fate`` (most
    likely fate), ``terminal_state``.
Condition enrichment of a fate (samples as units)
    Per sample (>= 10 subset cells) the mean fate probability of its cells; for each fate and
    condition, the condition's samples against all other samples by a t-test on the per-sample means
    (paired by patient when every patient has samples on both sides), BH FDR over all
    fate x condition tests (:func:`condition_enrichment`). A fate's ``label`` is ``<condition>
    branch`` for the condition with the largest positive difference at FDR < 0.05 (e.g. "metastasis
    branch"), else ``shared``. Cells are not replicates: a cell-level test (used before) labels
    branches after conditions almost automatically. Without ``obs['sample']`` each condition is one
    sample and no fate can be labelled.
Genes along each fate
    Weighted Spearman correlation of each gene (log-normalised, expressed in >= 5% of the subset)
    with pseudotime, weights = the fate's probability; p-values from the t approximation with the
    Kish effective sample size, BH FDR per fate. What this ranking can claim: genes that change along
    the inferred pseudotime of a fate, in these cells. It is exploratory, not a test of a biological
    hypothesis: cells are not independent replicates (samples are), and pseudotime and fates were
    computed from the same genes' expression (double dipping), so p-values and FDRs are too small and
    serve to rank genes; validate in held-out samples or with sample-level designs. *Fate genes*: FDR < ``trajectory_fdr``, rho > 0
    and rho at least 0.1 above the gene's rho in every other fate. Hallmark over-representation of
    the fate genes: hypergeometric test against the tested genes (bundled Hallmark GMT; mouse: the
    ortholog-mapped one), BH FDR per fate.

Outputs: ``trajectory.h5ad`` (the subset), ``trajectory_cells.tsv``, ``trajectory_fates.tsv``,
``trajectory_fate_genes.tsv``, ``trajectory_fate_enrichment.tsv``, ``trajectory_embedding.png``,
``trajectory_trends.png``, ``trajectory_summary.json``, ``trajectory_mqc.tsv``.
"""

from __future__ import annotations

import argparse
import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .composition import condition_order
from .stats import bh_fdr
from .errors import TmeflowInputError
from .genes import species_of
from .io import multiqc_header, provenance, read_h5ad, save_figure, write_h5ad, write_json, write_table
from .log import get_logger, timed
from .plotting import pyplot
from .text import slug, split_list

logger = get_logger(__name__)

EPITHELIAL_PATTERN = re.compile(r"epithel|malignant|tumou?r|cancer|carcinoma", re.IGNORECASE)
MIN_EXPRESSED = 0.05  # fraction of subset cells expressing a gene for the fate-gene tests
SPECIFICITY = 0.1  # rho above every other fate's rho for a fate gene
CHUNK = 512


# --------------------------------------------------------------------------------------------------
# Inputs


def subset_mask(obs: pd.DataFrame, spec: str | None, *, file: str | Path | None = None) -> np.ndarray:
    """Cells of the compartments / cell types named in ``spec`` (all cells when empty)."""
    names = split_list(spec)
    if not names:
        return np.ones(len(obs), dtype=bool)
    mask = np.zeros(len(obs), dtype=bool)
    for name in names:
        low = name.lower()
        if "compartment" in obs.columns:
            hit = obs["compartment"].astype(str).str.lower().to_numpy() == low
            if hit.any():
                mask |= hit
                continue
        hit = np.zeros(len(obs), dtype=bool)
        for column in ("cell_type", "cell_type_fine"):
            if column in obs.columns:
                hit |= obs[column].astype(str).str.lower().to_numpy() == low
        if low == "epithelial":
            hit |= obs["cell_type"].astype(str).str.contains(EPITHELIAL_PATTERN).to_numpy()
            if "malignant" in obs.columns:
                hit |= obs["malignant"].astype(str).str.lower().isin(["true", "1"]).to_numpy()
        if not hit.any():
            raise TmeflowInputError(
                f"trajectory_subset names '{name}', which is neither a compartment nor a cell type of the atlas",
                column="cell_type",
            )
        mask |= hit
    return mask


def root_gene_score(adata, genes: list[str], *, file: str | Path | None = None) -> np.ndarray:
    """Neighbourhood-smoothed mean z-score of the root genes (input errors when none is usable)."""
    present = [g for g in genes if g in adata.var_names]
    missing = [g for g in genes if g not in adata.var_names]
    if missing:
        logger.warning("root genes not in the atlas, ignored: %s", ", ".join(missing))
    if not present:
        raise TmeflowInputError(f"none of the trajectory_root_genes ({', '.join(genes)}) is in the atlas var_names", file=file)
    X = adata[:, present].X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    expressed = (X > 0).sum(axis=0)
    if not expressed.any():
        raise TmeflowInputError(f"the trajectory_root_genes ({', '.join(present)}) are not expressed in the trajectory subset", file=file)
    X = X[:, expressed > 0]
    z = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-9)
    score = z.mean(axis=1)
    conn = adata.obsp["connectivities"] + sp.identity(adata.n_obs, format="csr")
    conn = sp.diags(1.0 / np.asarray(conn.sum(axis=1)).ravel()) @ conn
    return np.asarray(conn @ score).ravel()


def root_in_group(adata, mask: np.ndarray) -> int:
    """The cell of ``mask`` at the extreme of the diffusion component that best separates it from the rest."""
    dcs = adata.obsm["X_diffmap"][:, 1:6]
    if mask.all():
        return int(np.argmax(dcs[:, 0]))
    diff = dcs[mask].mean(axis=0) - dcs[~mask].mean(axis=0)
    effect = np.abs(diff) / np.maximum(dcs.std(axis=0), 1e-12)
    k = int(np.argmax(effect))
    values = np.where(mask, dcs[:, k] * np.sign(diff[k] or 1.0), -np.inf)
    return int(np.argmax(values))


def choose_root(adata, params: dict[str, Any], *, file: str | Path | None = None) -> tuple[int, str]:
    """Index of the root cell in the subset, and how it was chosen."""
    genes = split_list(params.get("trajectory_root_genes"))
    if genes:
        score = root_gene_score(adata, genes, file=file)
        return int(np.argmax(score)), f"root genes {', '.join(genes)}"
    root_type = (params.get("trajectory_root_type") or "").strip()
    if root_type:
        types = adata.obs["cell_type"].astype(str)
        mask = (types == root_type).to_numpy()
        if not mask.any() and "cell_type_fine" in adata.obs.columns:
            mask = (adata.obs["cell_type_fine"].astype(str) == root_type).to_numpy()
        if not mask.any():
            raise TmeflowInputError(
                f"trajectory_root_type '{root_type}' is not a cell type of the trajectory subset "
                f"(types: {', '.join(sorted(types.unique()))})", file=file, column="cell_type",
            )
        return root_in_group(adata, mask), f"cell type {root_type}"
    cluster = (params.get("trajectory_root_cluster") or "").strip()
    if cluster:
        labels = adata.obs["trajectory_cluster"].astype(str)
        mask = (labels == cluster).to_numpy()
        if not mask.any():
            raise TmeflowInputError(
                f"trajectory_root_cluster '{cluster}' is not a cluster of the trajectory subset "
                f"(clusters: {', '.join(sorted(labels.unique(), key=lambda c: (len(c), c)))})", file=file,
            )
        return root_in_group(adata, mask), f"cluster {cluster}"
    logger.warning("no trajectory_root_genes / _type / _cluster given: root = extreme cell of diffusion component 1")
    return int(np.argmax(adata.obsm["X_diffmap"][:, 1])), "diffusion component 1 (no root given)"


# --------------------------------------------------------------------------------------------------
# Embedding, pseudotime, fates


def regress_out_keys(X: np.ndarray, obs: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """``X`` minus its least-squares fit on the one-hot levels of the categorical ``keys`` (means kept)."""
    columns = [np.ones(len(obs))]
    for key in keys:
        levels = obs[key].astype(str).to_numpy()
        columns += [(levels == level).astype(float) for level in sorted(set(levels))[1:]]
    design = np.column_stack(columns)
    beta, *_ = np.linalg.lstsq(design, X, rcond=None)
    return (X - design[:, 1:] @ beta[1:]).astype(np.float32)


def embed(adata, params: dict[str, Any]) -> None:
    """HVGs, PCA, kNN graph, diffusion map and Leiden clusters of the subset (in place)."""
    import scanpy as sc

    seed = int(params.get("seed", 0))
    n_top = min(int(params["trajectory_n_top_genes"]), adata.n_vars)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "counts" in adata.layers:
            sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat_v3", layer="counts")
        else:
            sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat")
    n_pcs = int(min(params["trajectory_n_pcs"], adata.n_obs - 1, int(adata.var["highly_variable"].sum()) - 1))
    keys = split_list(params.get("trajectory_batch_key"))
    if keys:
        hvg = adata[:, adata.var["highly_variable"].to_numpy()]
        X = hvg.X.toarray() if sp.issparse(hvg.X) else np.array(hvg.X, dtype=float)
        work = sc.AnnData(regress_out_keys(X, adata.obs, keys), obs=adata.obs[[]].copy())
        sc.pp.pca(work, n_comps=n_pcs, random_state=seed)
        adata.obsm["X_pca"] = work.obsm["X_pca"]
        adata.uns["trajectory_regressed_out"] = keys
    else:
        sc.pp.pca(adata, n_comps=n_pcs, mask_var="highly_variable", random_state=seed)
    sc.pp.neighbors(adata, n_neighbors=int(params["trajectory_n_neighbors"]), use_rep="X_pca", random_state=seed)
    sc.tl.diffmap(adata, n_comps=min(15, adata.n_obs - 2))
    sc.tl.leiden(adata, resolution=float(params["trajectory_resolution"]), key_added="trajectory_cluster", random_state=seed,
                 flavor="igraph", n_iterations=2, directed=False)


def pseudotime(adata, root: int, n_dcs: int = 10) -> np.ndarray:
    import scanpy as sc

    adata.uns["iroot"] = int(root)
    sc.tl.dpt(adata, n_dcs=min(int(n_dcs), adata.obsm["X_diffmap"].shape[1]))
    values = adata.obs["dpt_pseudotime"].to_numpy(dtype=float)
    values[~np.isfinite(values)] = np.nan
    return values


def _safe(name: str) -> str:
    return slug(name, keep="_") or "fate"


def fates(adata, params: dict[str, Any]) -> tuple[pd.DataFrame, pd.Series, int]:
    """CellRank fate probabilities (cells x fates), terminal-state labels and the macrostates used."""
    import cellrank as cr

    seed = int(params.get("seed", 0))
    np.random.seed(seed)
    weight = float(params["trajectory_kernel_weight"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pk = cr.kernels.PseudotimeKernel(adata, time_key="pseudotime").compute_transition_matrix(
            threshold_scheme="soft", show_progress_bar=False)
        ck = cr.kernels.ConnectivityKernel(adata).compute_transition_matrix()
        kernel = weight * pk + (1.0 - weight) * ck if 0.0 < weight < 1.0 else (pk if weight >= 1.0 else ck)
        g = cr.estimators.GPCCA(kernel)
        requested = int(params["trajectory_n_states"])
        tries = [requested, requested + 1] + list(range(requested - 1, 1, -1))
        g.compute_schur(n_components=max(requested + 6, 10))
        errors = []
        for n in tries:
            try:
                np.random.seed(seed)
                g.compute_macrostates(n_states=n, cluster_key="trajectory_cluster")
                if g.macrostates is None or g.macrostates.cat.categories.size < 2:
                    raise ValueError("fewer than two macrostates")
                break
            except Exception as exc:  # GPCCA raises ValueError / RuntimeError on split complex-conjugate pairs
                errors.append(f"{n}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        else:
            raise TmeflowInputError(
                f"CellRank GPCCA found no macrostates for trajectory_n_states {tries} ({'; '.join(errors)}); "
                "try another trajectory_n_states or a larger trajectory subset")
        n_states = g.macrostates.cat.categories.size
        if n != requested:
            logger.warning("GPCCA could not use %d macrostates; used %d", requested, n)
        n_terminal = int(params["trajectory_n_terminal"])
        if n_terminal > 0:
            g.predict_terminal_states(method="top_n", n_states=min(n_terminal, n_states))
        else:
            try:
                g.predict_terminal_states(method="stability")
            except ValueError:  # CellRank raises when no macrostate passes the stability threshold
                logger.info("no macrostate passed CellRank's stability threshold")
            if g.terminal_states is None or g.terminal_states.cat.categories.size < 2:
                logger.warning("stability criterion found < 2 terminal states; taking the 2 highest-mass macrostates")
                g.predict_terminal_states(method="top_n", n_states=min(2, n_states))
        g.compute_fate_probabilities(solver="gmres", use_petsc=False, n_jobs=1, show_progress_bar=False)
    probs = g.fate_probabilities
    names = [_safe(n) for n in probs.names]
    frame = pd.DataFrame(np.asarray(probs.X), index=adata.obs_names, columns=names)
    terminal = g.terminal_states.astype(str).replace("nan", "").rename("terminal_state")
    terminal = terminal.map(lambda v: _safe(v) if v else "")
    return frame, terminal, n_states


MIN_CELLS_PER_SAMPLE = 10  # a sample's mean fate probability needs this many subset cells
FATE_FDR = 0.05


def condition_enrichment(probs: pd.DataFrame, obs: pd.DataFrame, order: list[str]) -> pd.DataFrame:
    """Per fate and condition: is the fate more likely in the condition's samples than in the others?

    Samples are the units (cells of one sample are not independent): per sample with at least
    :data:`MIN_CELLS_PER_SAMPLE` subset cells, the mean fate probability of its cells; per fate and
    condition, those of the condition's samples against the other samples by a linear-model t-test
    (:func:`tmeflow.stats.condition_contrast`, ``~ condition + patient`` -- a paired t-test -- when
    every patient has samples on both sides, else ``~ condition``; not moderated: fate probabilities
    sum to one, so fates share no exchangeable variance prior and eBayes over them was
    anti-conservative, 12.5% rejections at 5% on null cohorts), two-sided, BH FDR
    over all fate x condition tests. ``enrichment`` is the condition's mean of sample means over the
    mean of all sample means; ``difference`` the tested effect. Needs two samples on each side;
    otherwise ``pvalue`` is NaN.
    """
    from .composition import sample_table
    from .stats import condition_contrast

    cells = obs.assign(**{f"p{i}": probs[f].to_numpy() for i, f in enumerate(probs.columns)})
    per_sample = cells.groupby(cells["sample"].astype(str), observed=True)
    n_cells = per_sample.size()
    means = per_sample[[f"p{i}" for i in range(probs.shape[1])]].mean()
    means.columns = list(probs.columns)
    kept = n_cells.index[n_cells >= MIN_CELLS_PER_SAMPLE]
    means = means.loc[kept]
    samples = sample_table(obs).loc[kept]
    overall = means.mean()
    rows = []
    for condition in order:
        is_c = (samples["condition"] == condition).to_numpy()
        if not is_c.any():
            continue
        sides = samples.assign(condition=np.where(is_c, condition, "\x1fother"))
        fit = condition_contrast(means, sides, condition, "\x1fother", min_samples=2, moderated=False)
        for fate in probs.columns:
            tested = fate in fit.index
            rows.append({"fate": fate, "condition": condition, "n_samples_condition": int(is_c.sum()),
                         "n_samples_other": int((~is_c).sum()),
                         "n_cells_condition": int(n_cells.loc[kept][is_c].sum()),
                         "mean_probability": float(means.loc[is_c, fate].mean()),
                         "enrichment": float(means.loc[is_c, fate].mean()) / max(float(overall[fate]), 1e-12),
                         "difference": float(fit.at[fate, "estimate"]) if tested else np.nan,
                         "t": float(fit.at[fate, "t"]) if tested else np.nan,
                         "pvalue": float(fit.at[fate, "pvalue"]) if tested else np.nan,
                         "design": fit.at[fate, "design"] if tested else "not tested (fewer than 2 samples per side)"})
    table = pd.DataFrame(rows)
    if len(table):
        table["fdr"] = bh_fdr(table["pvalue"])
    return table


def label_fates(enrichment: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """``<condition> branch`` for the condition with the largest sample-level difference when its
    FDR < :data:`FATE_FDR` and the difference is positive; else ``shared``."""
    labels = {}
    for fate, block in enrichment.groupby("fate", sort=False):
        top = block.sort_values("difference", ascending=False, na_position="last").iloc[0]
        enriched = bool(top["fdr"] < FATE_FDR and top["difference"] > 0)
        labels[fate] = {"label": f"{top['condition']} branch" if enriched else "shared",
                        "enriched_condition": top["condition"] if enriched else "", "enrichment": float(top["enrichment"]),
                        "pvalue": float(top["pvalue"]), "fdr": float(top["fdr"])}
    return labels


# --------------------------------------------------------------------------------------------------
# Genes along fates


def weighted_spearman(X, t: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weighted Spearman rho of every column of ``X`` with ``t`` (weights ``w``); t-approximation p-values."""
    from scipy.stats import rankdata
    from scipy.stats import t as t_dist

    w = np.asarray(w, dtype=float)
    w = w / w.sum()
    rt = rankdata(t)
    rt = rt - np.sum(w * rt)
    vt = np.sum(w * rt**2)
    rhos = []
    for start in range(0, X.shape[1], CHUNK):
        block = X[:, start:start + CHUNK]
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


def fate_genes(adata, probs: pd.DataFrame, fdr: float) -> pd.DataFrame:
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
    table["fate_gene"] = (table["fdr"] < fdr) & (table["rho"] > 0) & (table["rho"] - table["rho_other_max"] >= SPECIFICITY)
    return table.sort_values(["fate", "fate_gene", "rho"], ascending=[True, False, False]).reset_index(drop=True)


def hallmark_enrichment(table: pd.DataFrame, species: str) -> pd.DataFrame:
    """Hypergeometric over-representation of each fate's genes in the Hallmark sets (universe: tested genes)."""
    from scipy.stats import hypergeom

    from .signatures import BUNDLED_GMTS, read_gmt, resource_path

    gmt = resource_path("hallmark/hallmark_mouse_orthomapped_DERIVED.gmt") if species == "mouse" else resource_path(BUNDLED_GMTS["hallmark"])
    sets = read_gmt(gmt)
    universe = set(table["gene"])
    rows = []
    for fate, block in table.groupby("fate", sort=False):
        hits = set(block.loc[block["fate_gene"], "gene"])
        for name, members in sets.items():
            members = set(members) & universe
            if not members:
                continue
            overlap = hits & members
            p = float(hypergeom.sf(len(overlap) - 1, len(universe), len(members), len(hits))) if hits else 1.0
            rows.append({"fate": fate, "gene_set": name, "set_size": len(members), "n_fate_genes": len(hits), "overlap": len(overlap),
                         "expected": len(hits) * len(members) / max(len(universe), 1), "pvalue": p, "genes": ",".join(sorted(overlap))})
    out = pd.DataFrame(rows, columns=["fate", "gene_set", "set_size", "n_fate_genes", "overlap", "expected", "pvalue", "genes"])
    out["fdr"] = np.nan
    for fate, idx in out.groupby("fate").groups.items():
        out.loc[idx, "fdr"] = bh_fdr(out.loc[idx, "pvalue"])
    return out.sort_values(["fate", "pvalue"]).reset_index(drop=True)


# --------------------------------------------------------------------------------------------------
# Plots


def plot_embedding(adata, fate_names: list[str], labels: dict[str, dict[str, Any]]):
    plt = pyplot()
    xy = adata.obsm["X_diffmap"][:, 1:3]
    panels = [("pseudotime", adata.obs["pseudotime"].to_numpy(dtype=float), "viridis")]
    panels += [(f"{f} ({labels[f]['label']})", adata.obs[f"fate_probability_{f}"].to_numpy(dtype=float), "magma_r") for f in fate_names]
    ncol = len(panels) + 1
    fig, axes = plt.subplots(1, ncol, figsize=(3.3 * ncol, 3.2), squeeze=False)
    for ax, (title, values, cmap) in zip(axes.ravel(), panels):
        dots = ax.scatter(xy[:, 0], xy[:, 1], c=values, s=4, cmap=cmap, linewidths=0)
        fig.colorbar(dots, ax=ax, shrink=0.7)
        ax.set_title(title, fontsize=8)
    ax = axes.ravel()[-1]
    conditions = adata.obs["condition"].astype(str)
    cmap = plt.get_cmap("tab10")
    for i, condition in enumerate(sorted(conditions.unique())):
        sel = (conditions == condition).to_numpy()
        ax.scatter(xy[sel, 0], xy[sel, 1], s=4, color=cmap(i % 10), label=condition, linewidths=0)
    ax.legend(fontsize=6, markerscale=2, frameon=False)
    ax.set_title("condition", fontsize=8)
    root = int(adata.uns["iroot"])
    for ax in axes.ravel():
        ax.scatter(xy[root, 0], xy[root, 1], marker="*", s=120, color="red", edgecolors="k")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout()
    return fig


def plot_trends(adata, genes_table: pd.DataFrame, fate_names: list[str], n_genes: int = 12, n_bins: int = 30):
    """Heatmap per fate: top fate genes (rows) x pseudotime bins of the cells most likely in that fate."""
    plt = pyplot()
    top = {f: genes_table[(genes_table["fate"] == f)].head(n_genes)["gene"].tolist() for f in fate_names}
    genes = list(dict.fromkeys(g for f in fate_names for g in top[f]))
    fig, axes = plt.subplots(1, len(fate_names), figsize=(3.0 * len(fate_names) + 1.5, 0.22 * max(len(genes), 4) + 1.5), squeeze=False)
    if not genes:
        return fig
    X = adata[:, genes].X
    X = X.toarray() if sp.issparse(X) else np.asarray(X)
    X = (X - X.mean(axis=0)) / np.maximum(X.std(axis=0), 1e-9)
    t = adata.obs["pseudotime"].to_numpy(dtype=float)
    best = adata.obs["fate"].astype(str).to_numpy()
    edges = np.linspace(np.nanmin(t), np.nanmax(t), n_bins + 1)
    for ax, fate in zip(axes.ravel(), fate_names):
        w = adata.obs[f"fate_probability_{fate}"].to_numpy(dtype=float)
        mat = np.full((len(genes), n_bins), np.nan)
        idx = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, n_bins - 1)
        for b in range(n_bins):
            sel = (idx == b) & np.isfinite(t)
            if sel.any() and w[sel].sum() > 0:
                mat[:, b] = (X[sel] * w[sel, None]).sum(axis=0) / w[sel].sum()
        im = ax.imshow(mat, aspect="auto", cmap="RdBu_r", vmin=-1.5, vmax=1.5, interpolation="nearest")
        ax.set_yticks(range(len(genes)))
        ax.set_yticklabels(genes, fontsize=6)
        ax.set_xlabel("pseudotime (bins; cells weighted by fate probability)", fontsize=7)
        ax.set_title(f"{fate} ({int((best == fate).sum())} cells)", fontsize=8)
    fig.colorbar(im, ax=axes.ravel().tolist(), shrink=0.6, label="z-score")
    return fig


# --------------------------------------------------------------------------------------------------
# Stage


def run_trajectory(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Check the atlas and parameters, compute pseudotime, fates and fate genes, write outputs."""
    outdir = Path(outdir)
    atlas = read_h5ad(input_path, "atlas h5ad")
    for column in ("cell_type", "condition"):
        if column not in atlas.obs.columns:
            raise TmeflowInputError(f"atlas obs has no column '{column}'", file=input_path, column=column)
    mask = subset_mask(atlas.obs, params.get("trajectory_subset"), file=input_path)
    n_min = max(50, int(params["trajectory_n_neighbors"]) + 2)
    if mask.sum() < n_min:
        raise TmeflowInputError(f"trajectory subset '{params.get('trajectory_subset')}' has {int(mask.sum())} cells; needs at least {n_min}",
                                file=input_path)
    adata = atlas[mask].copy()
    del atlas
    for key in split_list(params.get("trajectory_batch_key")):
        if key not in adata.obs.columns:
            raise TmeflowInputError(f"trajectory_batch_key '{key}' is not an obs column of the atlas", file=input_path, column=key)
    root_type = (params.get("trajectory_root_type") or "").strip()
    if root_type and not split_list(params.get("trajectory_root_genes")):
        present = set(adata.obs["cell_type"].astype(str))
        if "cell_type_fine" in adata.obs.columns:
            present |= set(adata.obs["cell_type_fine"].astype(str))
        if root_type not in present:
            raise TmeflowInputError(f"trajectory_root_type '{root_type}' is not a cell type of the trajectory subset "
                                    f"(types: {', '.join(sorted(set(adata.obs['cell_type'].astype(str))))})", file=input_path, column="cell_type")
    genes = split_list(params.get("trajectory_root_genes"))
    if genes:
        present = [g for g in genes if g in adata.var_names]
        if not present:
            raise TmeflowInputError(f"none of the trajectory_root_genes ({', '.join(genes)}) is in the atlas var_names", file=input_path)
        block = adata[:, present].X
        if (block.count_nonzero() if sp.issparse(block) else np.count_nonzero(block)) == 0:
            raise TmeflowInputError(f"the trajectory_root_genes ({', '.join(present)}) are not expressed in the trajectory subset",
                                    file=input_path)
    logger.info("trajectory subset: %d cells (%s)", adata.n_obs, params.get("trajectory_subset") or "all cells")
    with timed(logger, "embedding (HVG, PCA, kNN, diffusion map, Leiden)"):
        embed(adata, params)
    root, how = choose_root(adata, params, file=input_path)
    logger.info("root cell %s (%s)", adata.obs_names[root], how)
    with timed(logger, "diffusion pseudotime"):
        adata.obs["pseudotime"] = pseudotime(adata, root, int(params["trajectory_n_dcs"]))
    reachable = np.isfinite(adata.obs["pseudotime"].to_numpy())
    if (~reachable).any():
        logger.warning("%d cells are not connected to the root; left out of the fate analysis", int((~reachable).sum()))
        adata = adata[reachable].copy()
        root = int(np.flatnonzero(reachable[: root + 1]).size - 1)
        adata.uns["iroot"] = root
    with timed(logger, "CellRank fates (PseudotimeKernel + ConnectivityKernel, GPCCA)"):
        probs, terminal, n_states = fates(adata, params)
    order = condition_order(adata.obs)
    obs = adata.obs if "sample" in adata.obs.columns else adata.obs.assign(sample=adata.obs["condition"].astype(str))
    enrichment = condition_enrichment(probs, obs, order)
    labels = label_fates(enrichment)
    # name each fate by its label ("metastasis_branch"); the macrostate is appended when labels repeat
    slugs = {m: _safe(labels[m]["label"]) for m in probs.columns}
    names = {m: (slugs[m] if list(slugs.values()).count(slugs[m]) == 1 else f"{slugs[m]}_{m}") for m in probs.columns}
    for m in probs.columns:
        labels[m]["macrostate"] = str(m)
    labels = {names[m]: labels[m] for m in probs.columns}
    probs = probs.rename(columns=names)
    terminal = terminal.map(lambda v: names.get(v, v))
    enrichment["fate"] = enrichment["fate"].map(names)
    enrichment["label"] = enrichment["fate"].map(lambda f: labels[f]["label"])
    fate_names = list(probs.columns)
    for fate in fate_names:
        adata.obs[f"fate_probability_{fate}"] = probs[fate].to_numpy()
    adata.obs["fate"] = pd.Categorical(probs.idxmax(axis=1).to_numpy(), categories=fate_names)
    adata.obs["terminal_state"] = terminal.reindex(adata.obs_names).fillna("").to_numpy()
    with timed(logger, f"genes along {len(fate_names)} fates"):
        genes_table = fate_genes(adata, probs, float(params["trajectory_fdr"]))
    species = species_of(adata)
    hallmark = hallmark_enrichment(genes_table, species)
    hallmark["significant"] = hallmark["fdr"] < float(params["trajectory_fdr"])
    # outputs
    fates_table = pd.DataFrame([{"fate": f, **labels[f], "n_terminal_cells": int((adata.obs["terminal_state"] == f).sum()),
                                 "n_most_likely": int((adata.obs["fate"] == f).sum()),
                                 "n_fate_genes": int(genes_table.loc[genes_table["fate"] == f, "fate_gene"].sum()),
                                 "top_genes": ",".join(genes_table.loc[(genes_table["fate"] == f) & genes_table["fate_gene"], "gene"].head(10))}
                                for f in fate_names])
    adata.uns.setdefault("tmeflow", {})["trajectory"] = {**provenance("trajectory", params), "root": str(adata.obs_names[root]),
                                                         "root_rule": how, "n_macrostates": int(n_states)}
    adata.uns["trajectory_fate_labels"] = {f: labels[f]["label"] for f in fate_names}
    cells = adata.obs[["pseudotime", "fate", "terminal_state", *[f"fate_probability_{f}" for f in fate_names]]].copy()
    for column in ("sample", "condition", "cell_type", "trajectory_cluster"):
        if column in adata.obs.columns:
            cells.insert(0, column, adata.obs[column].astype(str).to_numpy())
    write_table(cells.rename_axis("barcode"), outdir / "trajectory_cells.tsv", index=True)
    write_table(fates_table, outdir / "trajectory_fates.tsv")
    write_table(enrichment, outdir / "trajectory_fate_conditions.tsv")
    write_table(genes_table, outdir / "trajectory_fate_genes.tsv")
    write_table(hallmark, outdir / "trajectory_fate_enrichment.tsv")
    save_figure(plot_embedding(adata, fate_names, labels), outdir / "trajectory_embedding.png")
    save_figure(plot_trends(adata, genes_table[genes_table["fate_gene"]], fate_names), outdir / "trajectory_trends.png")
    mqc = pd.crosstab(adata.obs["condition"].astype(str), adata.obs["fate"].astype(str))
    header = multiqc_header("tmeflow_trajectory", "Trajectory fates", "Cells per most likely CellRank fate and condition.", "bargraph",
                            pconfig={"id": "tmeflow_trajectory_plot", "title": "Most likely fate per condition"})
    write_table(mqc, outdir / "trajectory_mqc.tsv", index=True, header_lines=header)
    for key in list(adata.obsm):
        if type(adata.obsm[key]).__name__ == "Lineage":  # CellRank's array subclass does not round-trip through h5ad
            adata.obsm[key] = np.asarray(adata.obsm[key].X)
    for column in adata.obs.columns:
        if adata.obs[column].dtype == object:
            adata.obs[column] = adata.obs[column].astype(str)
    write_h5ad(adata, outdir / "trajectory.h5ad")
    summary = {"n_cells": int(adata.n_obs), "root": str(adata.obs_names[root]), "root_rule": how, "n_macrostates": int(n_states),
               "fates": {f: labels[f] for f in fate_names},
               "n_fate_genes": {f: int(genes_table.loc[genes_table["fate"] == f, "fate_gene"].sum()) for f in fate_names},
               "hallmark_significant": {f: hallmark.loc[(hallmark["fate"] == f) & hallmark["significant"], "gene_set"].tolist() for f in fate_names}}
    write_json(summary, outdir / "trajectory_summary.json")
    logger.info("fates: %s", "; ".join(f"{f}: {labels[f]['label']}" for f in fate_names))
    return summary


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow trajectory``."""
    run_trajectory(args.input, args.outdir, params)
