"""The ``tmeflow trajectory`` stage: read, compute, write."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..composition import condition_order
from ..errors import TmeflowInputError
from ..genes import species_of
from ..io import (
    multiqc_header,
    provenance,
    read_h5ad_parts,
    read_h5ad_rows,
    save_figure,
    write_h5ad,
    write_json,
    write_table,
)
from ..log import get_logger, timed
from .branch import branch_analysis, resolve_trend_sets
from .fates import _safe, condition_enrichment, embed, fates, label_fates, pseudotime
from .genes import MIN_EXPRESSED, fate_genes, hallmark_enrichment
from .inputs import choose_root, subsample_cells, subset_mask
from .plots import plot_branch_heatmap, plot_embedding, plot_set_trends, plot_trends
from .settings import TrajectorySettings

logger = get_logger(__name__)


def run_trajectory(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Check the atlas and parameters, compute pseudotime, fates and fate genes, write outputs."""
    outdir = Path(outdir)
    settings = TrajectorySettings.from_params(params)
    obs = read_h5ad_parts(input_path, "atlas h5ad").obs
    for column in ("cell_type", "condition"):
        if column not in obs.columns:
            raise TmeflowInputError(f"atlas obs has no column '{column}'", file=input_path, column=column)
    subset = np.flatnonzero(subset_mask(obs, settings.trajectory_subset, file=input_path))
    n_min = max(50, settings.trajectory_n_neighbors + 2)
    if subset.size < n_min:
        raise TmeflowInputError(
            f"trajectory subset '{settings.trajectory_subset}' has {subset.size} cells; needs at least {n_min}",
            file=input_path,
        )
    kept = subset[subsample_cells(obs.iloc[subset], settings.trajectory_max_cells, settings.seed)]
    if kept.size < subset.size:
        logger.info(
            "trajectory subset subsampled from %d to %d cells (trajectory_max_cells %d; per sample and cell type)",
            subset.size,
            kept.size,
            settings.trajectory_max_cells,
        )
    del obs
    adata = read_h5ad_rows(input_path, "atlas h5ad", kept)  # only these cells' rows are read
    for key in settings.batch_keys:
        if key not in adata.obs.columns:
            raise TmeflowInputError(
                f"trajectory_batch_key '{key}' is not an obs column of the atlas", file=input_path, column=key
            )
    root_type = settings.root_type
    if root_type and not settings.root_genes:
        present = set(adata.obs["cell_type"].astype(str))
        if "cell_type_fine" in adata.obs.columns:
            present |= set(adata.obs["cell_type_fine"].astype(str))
        if root_type not in present:
            raise TmeflowInputError(
                f"trajectory_root_type '{root_type}' is not a cell type of the trajectory subset "
                f"(types: {', '.join(sorted(set(adata.obs['cell_type'].astype(str))))})",
                file=input_path,
                column="cell_type",
            )
    genes = settings.root_genes
    if genes:
        found = [g for g in genes if g in adata.var_names]
        if not found:
            raise TmeflowInputError(
                f"none of the trajectory_root_genes ({', '.join(genes)}) is in the atlas var_names", file=input_path
            )
        block = adata[:, found].X
        if (block.count_nonzero() if sp.issparse(block) else np.count_nonzero(block)) == 0:
            raise TmeflowInputError(
                f"the trajectory_root_genes ({', '.join(found)}) are not expressed in the trajectory subset",
                file=input_path,
            )
    resolve_trend_sets(
        settings.trend_sets, species_of(adata), file=input_path
    )  # fail on a misspelt set before the heavy steps
    logger.info("trajectory subset: %d cells (%s)", adata.n_obs, settings.trajectory_subset or "all cells")
    with timed(logger, "embedding (HVG, PCA, kNN, diffusion map, Leiden)"):
        embed(adata, settings)
    root, how = choose_root(adata, settings, file=input_path)
    logger.info("root cell %s (%s)", adata.obs_names[root], how)
    with timed(logger, "diffusion pseudotime"):
        adata.obs["pseudotime"] = pseudotime(adata, root, settings.trajectory_n_dcs)
    reachable = np.isfinite(adata.obs["pseudotime"].to_numpy())
    if (~reachable).any():
        logger.warning("%d cells are not connected to the root; left out of the fate analysis", int((~reachable).sum()))
        adata = adata[reachable].copy()
        root = int(np.flatnonzero(reachable[: root + 1]).size - 1)
        adata.uns["iroot"] = root
    with timed(logger, "CellRank fates (PseudotimeKernel + ConnectivityKernel, GPCCA)"):
        probs, terminal, n_states = fates(adata, settings)
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
        genes_table = fate_genes(adata, probs, settings.trajectory_fdr)
    species = species_of(adata)
    hallmark = hallmark_enrichment(genes_table, species)
    hallmark["significant"] = hallmark["fdr"] < settings.trajectory_fdr
    with timed(logger, "branch-dependent genes (lineage smooths per sample, sample-level tests)"):
        branch = branch_analysis(
            adata,
            probs,
            species,
            trend_sets=settings.trend_sets,
            knots=settings.trajectory_branch_knots,
            fdr=settings.trajectory_fdr,
            n_clusters=settings.trajectory_branch_clusters,
            seed=settings.seed,
            min_expressed=MIN_EXPRESSED,
            file=input_path,
        )
    if branch["n_samples"] < 3:
        logger.warning(
            "branch-gene tests need >= 3 samples with enough cells in every fate; %d had them: no p-values",
            branch["n_samples"],
        )
    # outputs
    fates_table = pd.DataFrame(
        [
            {
                "fate": f,
                **labels[f],
                "n_terminal_cells": int((adata.obs["terminal_state"] == f).sum()),
                "n_most_likely": int((adata.obs["fate"] == f).sum()),
                "n_fate_genes": int(genes_table.loc[genes_table["fate"] == f, "fate_gene"].sum()),
                "top_genes": ",".join(
                    genes_table.loc[(genes_table["fate"] == f) & genes_table["fate_gene"], "gene"].head(10)
                ),
            }
            for f in fate_names
        ]
    )
    adata.uns.setdefault("tmeflow", {})["trajectory"] = {
        **provenance("trajectory", params),
        "root": str(adata.obs_names[root]),
        "root_rule": how,
        "n_macrostates": int(n_states),
    }
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
    write_table(branch["genes"], outdir / "trajectory_branch_genes.tsv")
    clusters = branch["clusters"].rename_axis("gene").reset_index()
    write_table(
        clusters.merge(branch["genes"], on=["gene", "cluster"]).sort_values(["cluster", "pvalue_branch"]),
        outdir / "trajectory_branch_clusters.tsv",
    )
    write_table(branch["enrichment"], outdir / "trajectory_branch_enrichment.tsv")
    write_table(branch["trends"], outdir / "trajectory_set_trends.tsv")
    save_figure(plot_branch_heatmap(branch), outdir / "trajectory_branch_heatmap.png")
    save_figure(plot_set_trends(branch["trends"]), outdir / "trajectory_set_trends.png")
    save_figure(plot_embedding(adata, fate_names, labels), outdir / "trajectory_embedding.png")
    save_figure(plot_trends(adata, genes_table[genes_table["fate_gene"]], fate_names), outdir / "trajectory_trends.png")
    mqc = pd.crosstab(adata.obs["condition"].astype(str), adata.obs["fate"].astype(str))
    header = multiqc_header(
        "tmeflow_trajectory",
        "Trajectory fates",
        "Cells per most likely CellRank fate and condition.",
        "bargraph",
        pconfig={"id": "tmeflow_trajectory_plot", "title": "Most likely fate per condition"},
    )
    write_table(mqc, outdir / "trajectory_mqc.tsv", index=True, header_lines=header)
    for key in list(adata.obsm):
        if type(adata.obsm[key]).__name__ == "Lineage":  # CellRank's array subclass does not round-trip through h5ad
            adata.obsm[key] = np.asarray(adata.obsm[key].X)
    for column in adata.obs.columns:
        if adata.obs[column].dtype == object:
            adata.obs[column] = adata.obs[column].astype(str)
    write_h5ad(adata, outdir / "trajectory.h5ad")
    summary = {
        "n_cells": int(adata.n_obs),
        "n_cells_subset": int(subset.size),
        "root": str(adata.obs_names[root]),
        "root_rule": how,
        "n_macrostates": int(n_states),
        "fates": {f: labels[f] for f in fate_names},
        "n_fate_genes": {f: int(genes_table.loc[genes_table["fate"] == f, "fate_gene"].sum()) for f in fate_names},
        "branch_genes": {
            "n_samples": int(branch["n_samples"]),
            "n_tested": int(len(branch["genes"])),
            "n_branch_genes": int(branch["genes"]["branch_gene"].sum()),
            "n_clusters": int(branch["clusters"].nunique()),
            "top": branch["genes"].loc[branch["genes"]["branch_gene"], "gene"].head(20).tolist(),
        },
        "hallmark_significant": {
            f: hallmark.loc[(hallmark["fate"] == f) & hallmark["significant"], "gene_set"].tolist() for f in fate_names
        },
    }
    write_json(summary, outdir / "trajectory_summary.json")
    logger.info("fates: %s", "; ".join(f"{f}: {labels[f]['label']}" for f in fate_names))
    return summary


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow trajectory``."""
    run_trajectory(args.input, args.outdir, params)
