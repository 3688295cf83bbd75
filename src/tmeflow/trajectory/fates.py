"""Embedding, diffusion pseudotime, CellRank fates and their condition labels."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import TmeflowInputError
from ..log import get_logger
from ..stats import bh_fdr
from ..text import slug
from .settings import TrajectorySettings

logger = get_logger(__name__)


def regress_out_keys(X: np.ndarray, obs: pd.DataFrame, keys: list[str]) -> np.ndarray:
    """Remove the effect of categorical covariates by least squares, keeping the overall mean.

    Parameters
    ----------
    X
        Cells x genes (dense).
    obs
        Cell metadata holding ``keys``.
    keys
        Categorical columns (e.g. ``batch``) regressed out as one-hot levels (first level as reference).

    Returns
    -------
    numpy.ndarray
        ``X`` minus its fit on the non-intercept columns, float32.
    """
    columns = [np.ones(len(obs))]
    for key in keys:
        levels = obs[key].astype(str).to_numpy()
        columns += [(levels == level).astype(float) for level in sorted(set(levels))[1:]]
    design = np.column_stack(columns)
    beta, *_ = np.linalg.lstsq(design, X, rcond=None)
    return (X - design[:, 1:] @ beta[1:]).astype(np.float32)


def embed(adata: AnnData, settings: TrajectorySettings) -> None:
    """Embed the trajectory subset: HVGs, PCA, kNN graph, diffusion map (Haghverdi et al. 2016) and Leiden clusters.

    Parameters
    ----------
    adata
        The trajectory subset (log-normalised ``X``, ``layers['counts']`` when present for Seurat v3 HVGs).
    settings
        ``trajectory_n_top_genes``, ``trajectory_n_pcs``, ``trajectory_n_neighbors``, ``trajectory_resolution``,
        ``trajectory_batch_keys`` (regressed out of the HVGs before PCA) and ``seed``.

    Adds
    ----
    ``var['highly_variable']``
        The HVGs.
    ``obsm['X_pca']``
        PCs (of the regressed HVGs with batch keys).
    ``obsp['connectivities']``, ``obsp['distances']``, ``uns['neighbors']``
        The kNN graph.
    ``obsm['X_diffmap']``, ``uns['diffmap_evals']``
        Diffusion map (at most 15 components).
    ``obs['trajectory_cluster']``
        Leiden clusters.
    ``uns['trajectory_regressed_out']``
        The regressed keys (only with batch keys).
    """
    import scanpy as sc

    seed = settings.seed
    n_top = min(settings.trajectory_n_top_genes, adata.n_vars)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if "counts" in adata.layers:
            sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat_v3", layer="counts")
        else:
            sc.pp.highly_variable_genes(adata, n_top_genes=n_top, flavor="seurat")
    n_pcs = int(min(settings.trajectory_n_pcs, adata.n_obs - 1, int(adata.var["highly_variable"].sum()) - 1))
    keys = settings.batch_keys
    if keys:
        hvg = adata[:, adata.var["highly_variable"].to_numpy()]
        X = hvg.X.toarray() if sp.issparse(hvg.X) else np.array(hvg.X, dtype=float)
        work = sc.AnnData(regress_out_keys(X, adata.obs, keys), obs=adata.obs[[]].copy())
        sc.pp.pca(work, n_comps=n_pcs, random_state=seed)
        adata.obsm["X_pca"] = work.obsm["X_pca"]
        adata.uns["trajectory_regressed_out"] = keys
    else:
        sc.pp.pca(adata, n_comps=n_pcs, mask_var="highly_variable", random_state=seed)
    sc.pp.neighbors(adata, n_neighbors=settings.trajectory_n_neighbors, use_rep="X_pca", random_state=seed)
    sc.tl.diffmap(adata, n_comps=min(15, adata.n_obs - 2))
    sc.tl.leiden(
        adata,
        resolution=settings.trajectory_resolution,
        key_added="trajectory_cluster",
        random_state=seed,
        flavor="igraph",
        n_iterations=2,
        directed=False,
    )


def pseudotime(adata: AnnData, root: int, n_dcs: int = 10) -> np.ndarray:
    """Compute diffusion pseudotime from ``root`` (Haghverdi et al. 2016, scanpy's ``tl.dpt``).

    Parameters
    ----------
    adata
        Cells with ``obsm['X_diffmap']`` (and the neighbour graph it came from).
    root
        Index of the root cell.
    n_dcs
        Diffusion components used (default 10, at most as many as computed).

    Returns
    -------
    numpy.ndarray
        Pseudotime per cell (0 at the root); NaN for cells not connected to it.

    Adds
    ----
    ``uns['iroot']``
        The root cell index.
    ``obs['dpt_pseudotime']``
        Scanpy's diffusion pseudotime (infinite for unreachable cells).
    """
    import scanpy as sc

    adata.uns["iroot"] = int(root)
    sc.tl.dpt(adata, n_dcs=min(int(n_dcs), adata.obsm["X_diffmap"].shape[1]))
    values = adata.obs["dpt_pseudotime"].to_numpy(dtype=float)
    values[~np.isfinite(values)] = np.nan
    return values


def _safe(name: str) -> str:
    return slug(name, keep="_") or "fate"


def fates(adata: AnnData, settings: TrajectorySettings) -> tuple[pd.DataFrame, pd.Series, int]:
    """Compute CellRank fate probabilities (Lange et al. 2022; GPCCA macrostates, Reuter et al. 2019).

    The transition matrix mixes a pseudotime kernel and a connectivity kernel (``trajectory_kernel_weight``);
    GPCCA looks for ``trajectory_n_states`` macrostates (neighbouring numbers when that fails) and the terminal
    ones (``trajectory_n_terminal``, else CellRank's choice).

    Parameters
    ----------
    adata
        The embedded subset (:func:`embed`) with ``obs['pseudotime']``.
    settings
        The trajectory settings (kernel weight, states, terminal states, seed).

    Returns
    -------
    tuple
        ``(probabilities cells x fates, terminal state per cell ('' outside one), number of macrostates)``;
        fate names are file-name safe.
    """
    import cellrank as cr

    seed = settings.seed
    np.random.seed(seed)
    weight = settings.trajectory_kernel_weight
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pk = cr.kernels.PseudotimeKernel(adata, time_key="pseudotime").compute_transition_matrix(
            threshold_scheme="soft", show_progress_bar=False
        )
        ck = cr.kernels.ConnectivityKernel(adata).compute_transition_matrix()
        kernel = weight * pk + (1.0 - weight) * ck if 0.0 < weight < 1.0 else (pk if weight >= 1.0 else ck)
        g = cr.estimators.GPCCA(kernel)
        requested = settings.trajectory_n_states
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
                "try another trajectory_n_states or a larger trajectory subset"
            )
        n_states = g.macrostates.cat.categories.size
        if n != requested:
            logger.warning("GPCCA could not use %d macrostates; used %d", requested, n)
        n_terminal = settings.trajectory_n_terminal
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
    """Test, per fate and condition, whether the fate is more likely in the condition's samples.

    Samples are the units (cells of one sample are not independent): per sample with at least
    :data:`MIN_CELLS_PER_SAMPLE` subset cells, the mean fate probability of its cells; per fate and
    condition, those of the condition's samples against the other samples by a linear-model t-test
    (:func:`tmeflow.stats.condition_contrast`, ``~ condition + patient`` -- a paired t-test -- when
    every patient has samples on both sides, else ``~ condition``; not moderated: fate probabilities
    sum to one, so fates share no exchangeable variance prior and eBayes over them was
    anti-conservative, 12.5% rejections at 5% on null cohorts), two-sided, BH FDR
    over all fate x condition tests. Needs two samples on each side; otherwise ``pvalue`` is NaN.

    Parameters
    ----------
    probs
        Fate probabilities, cells x fates.
    obs
        Cell metadata with ``sample``, ``condition`` and ``patient`` (rows as ``probs``).
    order
        Conditions to test, in the table's order.

    Returns
    -------
    pandas.DataFrame
        One row per condition and fate: ``fate, condition, n_samples_condition, n_samples_other,
        n_cells_condition, mean_probability, enrichment`` (the condition's mean of sample means over the mean of
        all sample means), ``difference`` (the tested effect), ``t, pvalue, design`` and ``fdr``.
    """
    from ..composition import sample_table
    from ..stats import condition_contrast

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
            rows.append(
                {
                    "fate": fate,
                    "condition": condition,
                    "n_samples_condition": int(is_c.sum()),
                    "n_samples_other": int((~is_c).sum()),
                    "n_cells_condition": int(n_cells.loc[kept][is_c].sum()),
                    "mean_probability": float(means.loc[is_c, fate].mean()),
                    "enrichment": float(means.loc[is_c, fate].mean()) / max(float(overall[fate]), 1e-12),
                    "difference": float(fit.at[fate, "estimate"]) if tested else np.nan,
                    "t": float(fit.at[fate, "t"]) if tested else np.nan,
                    "pvalue": float(fit.at[fate, "pvalue"]) if tested else np.nan,
                    "design": fit.at[fate, "design"] if tested else "not tested (fewer than 2 samples per side)",
                }
            )
    table = pd.DataFrame(rows)
    if len(table):
        table["fdr"] = bh_fdr(table["pvalue"])
    return table


def label_fates(enrichment: pd.DataFrame) -> dict[str, dict[str, Any]]:
    """Label each fate by the condition it is enriched in.

    Parameters
    ----------
    enrichment
        :func:`condition_enrichment`'s table.

    Returns
    -------
    dict
        Per fate: ``label`` (``<condition> branch`` for the condition with the largest sample-level difference when
        its FDR < :data:`FATE_FDR` and the difference is positive; else ``shared``), ``enriched_condition`` ('' when
        shared) and that condition's ``enrichment``, ``pvalue`` and ``fdr``.
    """
    labels = {}
    for fate, block in enrichment.groupby("fate", sort=False):
        top = block.sort_values("difference", ascending=False, na_position="last").iloc[0]
        enriched = bool(top["fdr"] < FATE_FDR and top["difference"] > 0)
        labels[fate] = {
            "label": f"{top['condition']} branch" if enriched else "shared",
            "enriched_condition": top["condition"] if enriched else "",
            "enrichment": float(top["enrichment"]),
            "pvalue": float(top["pvalue"]),
            "fdr": float(top["fdr"]),
        }
    return labels
