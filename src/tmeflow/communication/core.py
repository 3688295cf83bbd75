"""Cell-cell communication per condition and its differences (``tmeflow communication``).

Input: the atlas h5ad (log1p CP10k in ``X``; ``obs`` ``sample``, ``condition``, ``cell_type``,
optionally ``patient`` and ``species``). Interactions are inferred between ``cell_type`` groups.

Inference per condition (and per sample)
    LIANA ``rank_aggregate`` (Dimitrov et al. 2022, *Nat Commun* 13:3224): the consensus of
    CellPhoneDB, Connectome, log2FC, NATMI, SingleCellSignalR and CellChat-like scores, aggregated by
    robust rank aggregation. Resource: ``communication_resource`` or, when empty, LIANA's bundled
    ``consensus`` (human) / ``mouseconsensus`` (mouse; from obs ``species``); nothing is downloaded.
    ``communication_expr_prop`` is the minimum fraction of cells of a group expressing every subunit
    of a ligand / receptor; ``communication_n_perms`` permutations for the CellPhoneDB p-values.
    An interaction *is called* in a condition when its ``magnitude_rank <= communication_rank_cutoff``.
    With ``communication_per_sample`` the same runs on every sample alone.

Too few cells
    A cell type with fewer than ``communication_min_cells`` cells in a condition (or sample) is left
    out of that condition's (sample's) inference with a warning; every such case is listed in
    ``communication_skipped.tsv`` (scope, condition, sample, cell type, cells, reason).

Number and strength (CellChat-style)
    Per condition and source -> target pair: the number of called interactions and their strength
    (sum of LIANA ``lr_means`` of the called interactions); heatmaps per condition and of the
    difference between the contrasted conditions. Pathways from a ``pathway`` column of the resource
    or, as the LIANA consensus resources have none, the bundled ligand -> CellChatDB pathway names
    (:mod:`tmeflow.communication.signalling`; never a ligand-name prefix, which would put IL1B, IL6 and
    IL10 in one "IL" pathway): strength per condition, pathway and source -> target
    (``communication_pathways.tsv``).

Signalling pathways and roles (:mod:`tmeflow.communication.signalling`)
    Pathway-level differential signalling per contrast (Simes combination of the sample-level
    interaction tests below, per pathway and per pathway and source -> target; BH FDR), signalling
    roles per condition and pathway (sender, receiver, mediator, influencer: CellChat's network
    centralities, Jin et al. 2021), circle plots of the pathways of ``communication_plot_pathways`` or
    else the ``communication_n_pathway_plots`` top differential (or, without a contrast, strongest) ones.

Differential interactions between conditions (sample-level)
    Cells are not replicates; samples are. For each sample and cell type the mean log-normalised
    expression of every resource gene is computed (cell types with fewer than
    ``communication_min_cells`` cells in a sample give no value for that sample). A complex takes
    the minimum over its subunits (LIANA's convention). The sample-level score of an interaction
    ``ligand -> receptor`` from ``source`` to ``target`` is ``mean_L(source) x mean_R(target)``
    (LIANA's ``expr_prod`` on the sample's cells). Candidates: interactions whose ligand (in the
    source) and receptor (in the target) are expressed by at least ``communication_expr_prop`` of the
    cells in at least one of the two contrasted conditions (pooled). Per candidate,
    ``log2(score + 0.1)`` (the pseudo-count damps the noise of near-zero products) is modelled over
    the samples of the two conditions by a linear model ``~ condition`` or, when paired (every
    patient has both conditions, at least two patients), ``~ condition + patient``, and the
    condition coefficient is tested with limma-style moderated t-statistics (empirical-Bayes
    variance shrinkage, :func:`tmeflow.composition.linear_model_test`, the test used for
    differential abundance), fitted separately for each set of samples with values. Why not
    Wilcoxon: with 2-6 samples per condition its smallest p-value cannot pass any FDR; why not a
    plain t-test: with 2-4 residual degrees of freedom its ranking is dominated by interactions
    whose few values happen to agree. Benjamini-Hochberg FDR over all candidates of the contrast;
    ``significant`` when ``fdr < communication_fdr``. Each condition needs at least two samples with
    values; otherwise the contrast is skipped (listed in the skipped table). A batch that coincides
    with the condition is indistinguishable from it: its gene-wise factors show up as differential
    interactions.
    Contrasts as in :mod:`tmeflow.composition` (``contrast``; same default rule). With a single
    condition and no ``contrast`` no differential analysis is done.

Source -> target proportion tests (sample level; with ``communication_per_sample``)
    Samples, not interactions, are the units: per sample the fraction of interactions LIANA tested
    that are called, per source -> target pair (arcsine-square-root scale), then moderated t-tests
    (:func:`proportion_tests`). ``within_condition``: source -> target vs every other source -> the
    same target (e.g. fibroblast -> malignant vs other sources -> malignant), over the samples of a
    condition. ``between_conditions``: for each contrast and source -> target pair, test vs
    reference condition (paired by patient when possible). BH FDR per condition / contrast.

Outputs: ``communication_liana_by_condition.tsv.gz``, ``communication_liana_by_sample.tsv.gz``
(with ``communication_per_sample``), ``communication_counts.tsv``, ``communication_pathways.tsv``,
``communication_counts_heatmap.png``, ``communication_strength_heatmap.png``,
``communication_proportion_tests.tsv``, ``communication_sample_scores_<contrast>.tsv.gz``,
``communication_diff_<contrast>.tsv``, ``communication_diff_<contrast>_dotplot.png``,
``communication_skipped.tsv``, ``communication_summary.json``, ``communication_mqc.tsv``,
``communication_roles.tsv``, ``communication_roles_heatmap.png``, ``communication_pathway_circle_<pathway>.png``,
``communication_pathway_diff_<contrast>.tsv``, ``communication_pathway_diff_<contrast>_heatmap.png``.
"""

from __future__ import annotations

import argparse
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..composition import (
    check_obs,
    condition_order,
    contrast_name,
    resolve_contrasts,
    sample_table,
)
from ..errors import TmeflowInputError
from ..genes import species_of
from ..stats import bh_fdr, condition_contrast, moderated_by_pattern
from ..io import atomic_path, multiqc_header, read_h5ad, save_figure, write_json, write_multiqc_table, write_table
from ..log import get_logger, progress, timed
from ..settings import StageSettings
from ..text import slug, split_list
from .plots import plot_diff_dots, plot_pair_heatmaps, plot_pathway_circles, plot_pathway_diff_heatmap, plot_roles_heatmap
from .signalling import curated_pathway_map, ligand_pathways, pathway_tests, signalling_roles

logger = get_logger(__name__)

PSEUDO = 0.1  # added to the sample-level expr_prod (log1p CP10k units squared) before log2
MIN_SAMPLES = 2  # per condition, for the differential test
SKIP_COLUMNS = ["scope", "condition", "sample", "cell_type", "n_cells", "reason"]
PATHWAY_COLUMNS = ("pathway", "pathway_name", "pathway_name_ligand", "category")
DIFF_COLUMNS = [
    "contrast", "source", "target", "ligand", "receptor", "interaction", "pathway", "logfc", "t", "df", "pvalue", "fdr",
    "significant", "mean_score_test", "mean_score_reference", "n_samples_test", "n_samples_reference", "design",
]  # fmt: skip


# --------------------------------------------------------------------------------------------------
# Inputs


def check_lognorm(adata, *, file: str | Path | None = None) -> None:
    """``X`` must be log-normalised (non-negative, not raw integer counts); checked on up to 2,000 cells."""
    block = adata.X[: min(2000, adata.n_obs)]
    values = block.data if sp.issparse(block) else np.asarray(block).ravel()
    if not values.size:
        return
    if values.min() < 0:
        raise TmeflowInputError("atlas X has negative values; communication needs log-normalised (log1p CP10k) X", file=file)
    if values.max() > 50 and np.allclose(values, np.round(values)):
        raise TmeflowInputError("atlas X looks like raw counts; communication needs log-normalised (log1p CP10k) X", file=file)


def load_resource(name: str | None, species: str, var_names, *, file: str | Path | None = None,
                  stage: str = "communication") -> tuple[str, pd.DataFrame]:
    """The ligand-receptor resource (bundled in LIANA; offline) and its name; checks gene overlap.

    The default is the species' consensus resource; a resource that covers fewer than 10 of the data's
    genes (species mismatch, Ensembl ids) is a one-line error naming ``stage`` and the species."""
    import liana as li

    name = (name or "").strip() or ("mouseconsensus" if species == "mouse" else "consensus")
    available = list(li.rs.show_resources())
    if name not in available:
        raise TmeflowInputError(f"unknown communication_resource '{name}' (LIANA resources: {', '.join(available)})")
    resource = li.rs.select_resource(name).copy()
    resource["ligand"] = resource["ligand"].astype(str)
    resource["receptor"] = resource["receptor"].astype(str)
    genes = set(map(str, var_names))
    subunits = {g for col in ("ligand", "receptor") for entry in resource[col] for g in entry.split("_")}
    found = len(subunits & genes)
    if found < 10:
        raise TmeflowInputError(
            f"{stage}: only {found} genes of the ligand-receptor resource '{name}' are in the data's var_names "
            f"(species {species}: use gene symbols of that species, or set communication_resource)", file=file,
        )
    return name, resource


def pathway_map(resource: pd.DataFrame) -> tuple[dict[tuple[str, str], str], str]:
    """(ligand, receptor) -> pathway, and where the pathway came from."""
    for column in PATHWAY_COLUMNS:
        if column in resource.columns and resource[column].notna().any():
            labels = resource[column].fillna("other").astype(str)
            return dict(zip(zip(resource["ligand"], resource["receptor"]), labels)), f"resource column '{column}'"
    curated = curated_pathway_map(resource)
    if curated:
        return curated, (f"bundled ligand -> CellChatDB pathway names (cellchat_pathways/ligand_pathways.tsv; "
                         f"{len(curated)} of {len(resource)} interactions)")
    return {}, "none (the resource has no pathway annotation and no ligand is in the bundled pathway table)"


# --------------------------------------------------------------------------------------------------
# LIANA


def groups_with_cells(labels: pd.Series, min_cells: int) -> tuple[list[str], dict[str, int]]:
    """Cell types with at least ``min_cells`` cells, and the cell counts of those with fewer."""
    counts = labels.astype(str).value_counts()
    kept = sorted(counts.index[counts >= min_cells])
    return kept, {k: int(v) for k, v in counts.items() if v < min_cells}


@dataclass(frozen=True)
class CommunicationSettings(StageSettings):
    """The ``comparison_options`` and ``communication_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("comparison_options", "communication_options")

    contrast: str | None
    communication_resource: str | None
    communication_expr_prop: float
    communication_min_cells: int
    communication_n_perms: int
    communication_per_sample: bool
    communication_rank_cutoff: float
    communication_fdr: float
    communication_top_n: int
    communication_plot_pathways: str | None
    communication_n_pathway_plots: int
    seed: int


def run_liana(adata: AnnData, resource: pd.DataFrame, settings: CommunicationSettings) -> pd.DataFrame:
    """LIANA ``rank_aggregate`` on ``adata`` (groupby ``cell_type``, log-normalised ``X``)."""
    import liana as li

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = li.mt.rank_aggregate(
            adata, groupby="cell_type", resource=resource[["ligand", "receptor"]], expr_prop=settings.communication_expr_prop,
            min_cells=settings.communication_min_cells, use_raw=False, n_perms=settings.communication_n_perms,
            seed=settings.seed, inplace=False, verbose=False,
        )
    return result.rename(columns={"ligand_complex": "ligand", "receptor_complex": "receptor"})


def liana_on(adata: AnnData, mask: np.ndarray, resource: pd.DataFrame, settings: CommunicationSettings, *, scope: str,
             condition: str, sample: str, skipped: list[dict[str, Any]]) -> pd.DataFrame | None:
    """LIANA on the cells of ``mask`` after leaving out cell types with too few cells (listed in ``skipped``)."""
    min_cells = settings.communication_min_cells
    sub = adata[mask]
    kept, few = groups_with_cells(sub.obs["cell_type"], min_cells)
    for cell_type, n in sorted(few.items()):
        logger.warning("%s %s: cell type %s has %d cells (< communication_min_cells %d); skipped", scope,
                       sample if scope == "sample" else condition, cell_type, n, min_cells)
        skipped.append({"scope": scope, "condition": condition, "sample": sample, "cell_type": cell_type, "n_cells": n,
                        "reason": f"fewer than communication_min_cells ({min_cells}) cells"})
    if len(kept) < 2:
        skipped.append({"scope": scope, "condition": condition, "sample": sample, "cell_type": "", "n_cells": int(sub.n_obs),
                        "reason": f"fewer than two cell types with >= {min_cells} cells; no inference"})
        logger.warning("%s %s: fewer than two cell types with enough cells; skipped", scope, sample or condition)
        return None
    sub = sub[sub.obs["cell_type"].astype(str).isin(kept)].copy()
    sub.obs["cell_type"] = pd.Categorical(sub.obs["cell_type"].astype(str), categories=kept)
    try:
        result = run_liana(sub, resource, settings)
    except ValueError as exc:  # e.g. no interaction passes the filters in a tiny sample
        skipped.append({"scope": scope, "condition": condition, "sample": sample, "cell_type": "", "n_cells": int(sub.n_obs),
                        "reason": f"LIANA found nothing to score ({str(exc).splitlines()[0]})"})
        logger.warning("%s %s: LIANA failed: %s", scope, sample or condition, str(exc).splitlines()[0])
        return None
    result.insert(0, "condition", condition)
    if scope == "sample":
        result.insert(0, "sample", sample)
    return result


# --------------------------------------------------------------------------------------------------
# Summaries


def count_strength(liana: pd.DataFrame, cutoff: float) -> pd.DataFrame:
    """Per condition and source -> target: number of called interactions and their summed ``lr_means``."""
    called = liana[liana["magnitude_rank"] <= cutoff]
    tested = liana.groupby(["condition", "source", "target"], observed=True).size().rename("n_tested")
    grouped = called.groupby(["condition", "source", "target"], observed=True)
    table = pd.concat([tested, grouped.size().rename("n_interactions"), grouped["lr_means"].sum().rename("strength")], axis=1)
    return table.fillna({"n_interactions": 0, "strength": 0.0}).astype({"n_interactions": int}).reset_index()


def pathway_table(liana: pd.DataFrame, pathways: dict[tuple[str, str], str], cutoff: float) -> pd.DataFrame:
    """Per condition, pathway (from the resource's annotation) and source -> target: called interactions
    and their strength. Empty when the resource has no pathway annotation: grouping by ligand-name
    prefix would put IL1B, IL6 and IL10 in one "IL" pathway."""
    columns = ["condition", "pathway", "source", "target", "n_interactions", "strength"]
    if not pathways:
        return pd.DataFrame(columns=columns)
    called = liana[liana["magnitude_rank"] <= cutoff].copy()
    called["pathway"] = [pathways.get((l, r), "other") for l, r in zip(called["ligand"], called["receptor"])]
    grouped = called.groupby(["condition", "pathway", "source", "target"], observed=True)
    out = pd.concat([grouped.size().rename("n_interactions"), grouped["lr_means"].sum().rename("strength")], axis=1).reset_index()
    return out.sort_values(["condition", "strength"], ascending=[True, False])


PROPORTION_COLUMNS = ["comparison", "condition", "contrast", "source", "target", "fraction", "fraction_other", "other",
                      "estimate", "t", "df", "pvalue", "fdr", "n_samples", "design"]


def sample_call_counts(per_sample: pd.DataFrame, cutoff: float) -> pd.DataFrame:
    """Per sample and source -> target: interactions LIANA tested (``n_tested``) and called (``n_interactions``)."""
    called = (per_sample["magnitude_rank"] <= cutoff).astype(int)
    grouped = per_sample.assign(called=called).groupby(["sample", "condition", "source", "target"], observed=True)["called"]
    return pd.concat([grouped.size().rename("n_tested"), grouped.sum().rename("n_interactions")], axis=1).reset_index()


def proportion_tests(counts: pd.DataFrame, samples: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Source -> target called fractions with samples as units (per-sample LIANA, :func:`sample_call_counts`).

    Interactions of one sample are not independent trials (they share cells, genes and pathways), so
    the unit is the sample: per sample the called fraction ``k / n`` of a source -> target pair is
    arcsine-square-root transformed (propeller's ``asin`` transform, Phipson et al. 2022) and
    ``within_condition``: the per-sample difference to the fraction of every other source -> the same
    target is tested against 0 over the samples of the condition (moderated one-sample t-test);
    ``between_conditions``: the transformed fractions are compared between the contrasted conditions
    (moderated t-test, paired by patient when every patient has both; :func:`tmeflow.stats.condition_contrast`).
    At least two samples (per condition) are needed. BH FDR per condition / contrast.
    ``fraction`` / ``fraction_other`` are mean per-sample fractions.
    """
    if not len(counts):
        return pd.DataFrame(columns=PROPORTION_COLUMNS)
    frac = counts.assign(fraction=counts["n_interactions"] / counts["n_tested"])
    totals = counts.groupby(["sample", "target"], observed=True)[["n_interactions", "n_tested"]].transform("sum")
    other_n = totals["n_tested"] - counts["n_tested"]
    frac["fraction_other"] = np.where(other_n > 0, (totals["n_interactions"] - counts["n_interactions"]) / other_n.clip(lower=1), np.nan)
    wide = frac.pivot_table(index="sample", columns=["source", "target"], values="fraction", observed=True)
    wide_other = frac.pivot_table(index="sample", columns=["source", "target"], values="fraction_other", observed=True)
    asin = np.arcsin(np.sqrt(wide))
    parts = []
    for condition, block in samples.groupby("condition", sort=False):
        keep = [s for s in block.index if s in wide.index]
        if len(keep) < 2:
            continue
        diff = asin.loc[keep] - np.arcsin(np.sqrt(wide_other.loc[keep]))
        diff = diff.loc[:, diff.notna().sum() >= 2]
        fit = moderated_by_pattern(diff, lambda k: (np.ones((len(k), 1)), 0, "~ 1") if len(k) >= 2 else None)
        fit["fraction"] = wide.loc[keep].mean().reindex(fit.index)
        fit["fraction_other"] = wide_other.loc[keep].mean().reindex(fit.index)
        fit = fit.assign(comparison="within_condition", condition=condition, contrast="", other="other sources -> same target")
        fit["fdr"] = bh_fdr(fit["pvalue"])
        parts.append(fit)
    for test, reference in pairs:
        fit = condition_contrast(asin, samples, test, reference, min_samples=MIN_SAMPLES)
        is_test = samples.loc[asin.index, "condition"].to_numpy() == test
        is_ref = samples.loc[asin.index, "condition"].to_numpy() == reference
        fit["fraction"] = wide[is_test].mean().reindex(fit.index)
        fit["fraction_other"] = wide[is_ref].mean().reindex(fit.index)
        fit = fit.assign(comparison="between_conditions", condition=test, contrast=contrast_name(test, reference), other=reference)
        fit["fdr"] = bh_fdr(fit["pvalue"])
        parts.append(fit.drop(columns=["n_samples_test", "n_samples_reference"]))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=PROPORTION_COLUMNS)
    table = pd.concat(parts)
    table.index = pd.MultiIndex.from_tuples(list(table.index), names=["source", "target"])
    return table.reset_index()[PROPORTION_COLUMNS]


# --------------------------------------------------------------------------------------------------
# Sample-level differential interactions


def group_means(X, labels: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Per label: mean of ``X`` and fraction of cells with a non-zero value (label order, means, fracs, n)."""
    cat = pd.Categorical(labels)
    codes = cat.codes
    indicator = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(cat.categories), len(codes)))
    n = np.asarray(indicator.sum(axis=1)).ravel()
    sums = indicator @ X
    nonzero = indicator @ (X != 0).astype(np.float32) if sp.issparse(X) else indicator @ (np.asarray(X) != 0).astype(np.float32)
    sums = sums.toarray() if sp.issparse(sums) else np.asarray(sums)
    nonzero = nonzero.toarray() if sp.issparse(nonzero) else np.asarray(nonzero)
    with np.errstate(invalid="ignore", divide="ignore"):
        return [str(c) for c in cat.categories], sums / n[:, None], nonzero / n[:, None], n


def complex_values(values: np.ndarray, gene_index: dict[str, int], entries: list[str]) -> np.ndarray:
    """groups x entries: the minimum over each complex's subunits (NaN where a subunit is missing)."""
    out = np.full((values.shape[0], len(entries)), np.nan)
    for j, entry in enumerate(entries):
        idx = [gene_index.get(g) for g in entry.split("_")]
        if all(i is not None for i in idx):
            out[:, j] = values[:, idx].min(axis=1)
    return out


def differential_interactions(adata: AnnData, resource: pd.DataFrame, pathways: dict, samples: pd.DataFrame, test: str,
                              reference: str, cell_types: list[str], *, min_cells: int, expr_prop: float,
                              fdr: float) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """Sample-level differential interactions of one contrast: (results, long sample scores, reason skipped).
    A cell type needs ``min_cells`` cells in a sample and a gene ``expr_prop`` of them expressing it;
    ``significant`` is FDR < ``fdr``."""
    name = contrast_name(test, reference)
    obs = adata.obs
    in_contrast = obs["condition"].astype(str).isin([test, reference]).to_numpy() & obs["cell_type"].astype(str).isin(cell_types).to_numpy()
    genes = [g for g in adata.var_names.astype(str)]
    wanted = sorted({g for col in ("ligand", "receptor") for e in resource[col] for g in e.split("_")} & set(genes))
    gene_pos = pd.Index(genes).get_indexer(wanted)
    X = adata.X[np.flatnonzero(in_contrast)][:, gene_pos]
    X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
    gene_index = {g: i for i, g in enumerate(wanted)}
    sub_obs = obs.iloc[np.flatnonzero(in_contrast)]
    ct = sub_obs["cell_type"].astype(str).to_numpy()
    ligands = sorted(set(resource["ligand"]))
    receptors = sorted(set(resource["receptor"]))
    lig_pos = {l: i for i, l in enumerate(ligands)}
    rec_pos = {r: i for i, r in enumerate(receptors)}
    # Pooled per condition x cell type: expression fractions (candidate filter).
    keys = sub_obs["condition"].astype(str).to_numpy() + "\x1f" + ct
    labels, _, fracs, _ = group_means(X, keys)
    frac_l = complex_values(fracs, gene_index, ligands)
    frac_r = complex_values(fracs, gene_index, receptors)
    label_pos = {label: i for i, label in enumerate(labels)}
    # Per sample x cell type: means (NaN when the cell type has too few cells in the sample).
    skeys = sub_obs["sample"].astype(str).to_numpy() + "\x1f" + ct
    slabels, smeans, _, sn = group_means(X, skeys)
    smeans[sn < min_cells] = np.nan
    mean_l = complex_values(smeans, gene_index, ligands)
    mean_r = complex_values(smeans, gene_index, receptors)
    spos = {label: i for i, label in enumerate(slabels)}
    used = samples[samples["condition"].isin([test, reference])]
    lr = resource[["ligand", "receptor"]].drop_duplicates().reset_index(drop=True)
    li_idx = lr["ligand"].map(lig_pos).to_numpy()
    ri_idx = lr["receptor"].map(rec_pos).to_numpy()
    score_blocks = []
    for source in cell_types:
        for target in cell_types:
            ok = np.zeros(len(lr), dtype=bool)
            for condition in (test, reference):
                a, b = label_pos.get(f"{condition}\x1f{source}"), label_pos.get(f"{condition}\x1f{target}")
                if a is None or b is None:
                    continue
                ok |= (frac_l[a, li_idx] >= expr_prop) & (frac_r[b, ri_idx] >= expr_prop)
            if not ok.any():
                continue
            scores = np.full((len(used), int(ok.sum())), np.nan)
            for i, sample in enumerate(used.index):
                a, b = spos.get(f"{sample}\x1f{source}"), spos.get(f"{sample}\x1f{target}")
                if a is None or b is None:
                    continue
                scores[i] = mean_l[a, li_idx[ok]] * mean_r[b, ri_idx[ok]]
            frame = pd.DataFrame(scores, index=used.index, columns=pd.MultiIndex.from_arrays(
                [[source] * ok.sum(), [target] * ok.sum(), lr["ligand"][ok].to_numpy(), lr["receptor"][ok].to_numpy()],
                names=["source", "target", "ligand", "receptor"]))
            score_blocks.append(frame)
    if not score_blocks:
        return pd.DataFrame(columns=DIFF_COLUMNS), pd.DataFrame(), "no candidate interaction passes communication_expr_prop"
    scores = pd.concat(score_blocks, axis=1)
    long = scores.T.stack().rename("score").reset_index()
    long.insert(0, "contrast", name)
    long["condition"] = long["sample"].map(used["condition"])
    # One moderated linear model per set of samples with values (tmeflow.stats.condition_contrast).
    fit = condition_contrast(np.log2(scores + PSEUDO), used, test, reference, min_samples=MIN_SAMPLES)
    if not len(fit):
        return pd.DataFrame(columns=DIFF_COLUMNS), long, f"fewer than {MIN_SAMPLES} samples per condition with >= {min_cells} cells of the cell types"
    is_test = (used["condition"] == test).to_numpy()
    results = [fit.rename(columns={"estimate": "logfc"}).assign(
        mean_score_test=scores[is_test].mean().reindex(fit.index),
        mean_score_reference=scores[~is_test].mean().reindex(fit.index))]
    table = pd.concat(results)
    table.index = pd.MultiIndex.from_tuples(list(table.index), names=scores.columns.names)
    table = table.reset_index()
    table.insert(0, "contrast", name)
    table["interaction"] = table["ligand"] + "->" + table["receptor"]
    table["pathway"] = [pathways.get((l, r), "") for l, r in zip(table["ligand"], table["receptor"])]
    table["fdr"] = bh_fdr(table["pvalue"])
    table["significant"] = table["fdr"] < fdr
    table = table.sort_values(["pvalue", "logfc"], key=lambda s: s if s.name == "pvalue" else -s.abs(), na_position="last", kind="stable")
    return table[DIFF_COLUMNS].reset_index(drop=True), long, None


# --------------------------------------------------------------------------------------------------
# Stage


def _write_gz(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, compression="gzip", float_format="%.6g")


TOP_PATHWAYS_IN_REPORT = 15
PATHWAY_TABLE_COLUMNS = ["contrast", "pathway", "logfc", "pvalue", "fdr"]


def write_pathway_table(top_pathways: list[pd.DataFrame], path: Path) -> Path:
    """The top differential signalling pathways of every contrast as one sortable MultiQC table."""
    table = pd.concat(top_pathways, ignore_index=True) if top_pathways else pd.DataFrame(columns=PATHWAY_TABLE_COLUMNS)
    table = table[PATHWAY_TABLE_COLUMNS].copy()
    table.insert(0, "test", table["contrast"].astype(str) + ": " + table["pathway"].astype(str))
    return write_multiqc_table(table, path, "tmeflow_communication_pathways", "Differential signalling pathways",
                               f"Top {TOP_PATHWAYS_IN_REPORT} pathways per contrast by p (Simes over the sample-level interaction "
                               "tests of the pathway, BH); logfc = log2 summed strength, test over reference (descriptive).")


def run_communication(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Check the atlas, infer interactions per condition / sample, test differences, write outputs."""
    settings = CommunicationSettings.from_params(params)
    outdir = Path(outdir)
    adata = read_h5ad(input_path, "atlas h5ad")
    check_obs(adata.obs, ("sample", "condition", "cell_type"), file=input_path)
    check_lognorm(adata, file=input_path)
    obs = adata.obs
    samples = sample_table(obs)
    conditions = condition_order(obs)
    contrast = (settings.contrast or "").strip()
    pairs = resolve_contrasts(obs, contrast, file=input_path) if (contrast or len(conditions) > 1) else []
    resource_name, resource = load_resource(settings.communication_resource, species_of(obs=obs, var_names=adata.var_names),
                                            adata.var_names, file=input_path)
    pathways, pathway_source = pathway_map(resource)
    chosen = split_list(settings.communication_plot_pathways)
    unknown = [p for p in chosen if p not in set(pathways.values())]
    if unknown:
        known = sorted(set(pathways.values()) - {"other"})
        raise TmeflowInputError(f"communication_plot_pathways: unknown pathway(s) {', '.join(unknown)} (known: {', '.join(known[:40])}"
                                f"{' ...' if len(known) > 40 else ''})", file=input_path)
    cutoff = settings.communication_rank_cutoff
    skipped: list[dict[str, Any]] = []
    condition_labels = obs["condition"].astype(str).to_numpy()
    results = []
    for condition in conditions:
        with timed(logger, f"LIANA rank_aggregate, condition {condition} ({int((condition_labels == condition).sum())} cells)"):
            res = liana_on(adata, condition_labels == condition, resource, settings, scope="condition", condition=condition,
                           sample="", skipped=skipped)
        if res is not None:
            results.append(res)
    if not results:
        raise TmeflowInputError("no condition has two cell types with at least communication_min_cells cells", file=input_path)
    liana = pd.concat(results, ignore_index=True)
    liana["interaction"] = liana["ligand"] + "->" + liana["receptor"]
    liana["called"] = liana["magnitude_rank"] <= cutoff
    _write_gz(liana, outdir / "communication_liana_by_condition.tsv.gz")
    summary: dict[str, Any] = {"resource": resource_name, "pathways_from": pathway_source, "conditions": conditions,
                               "contrasts": [contrast_name(*p) for p in pairs], "called": {}, "differential": {},
                               "pathway_differential": {}}
    sample_counts = None
    if settings.communication_per_sample:
        sample_labels = obs["sample"].astype(str).to_numpy()
        per_sample = []
        with timed(logger, f"LIANA rank_aggregate per sample ({len(samples)} samples)"):
            what = f"LIANA ({settings.communication_n_perms} permutations), sample"
            for sample in progress(samples.index, len(samples), what, logger):
                res = liana_on(adata, sample_labels == sample, resource, settings, scope="sample",
                               condition=str(samples.at[sample, "condition"]), sample=sample, skipped=skipped)
                if res is not None:
                    per_sample.append(res)
        if per_sample:
            table = pd.concat(per_sample, ignore_index=True)
            table["called"] = table["magnitude_rank"] <= cutoff
            _write_gz(table, outdir / "communication_liana_by_sample.tsv.gz")
            sample_counts = sample_call_counts(table, cutoff)
    counts = count_strength(liana, cutoff)
    write_table(counts, outdir / "communication_counts.tsv")
    strength = pathway_table(liana, pathways, cutoff)
    write_table(strength.assign(pathway_source=pathway_source), outdir / "communication_pathways.tsv")
    roles = signalling_roles(strength)
    write_table(roles, outdir / "communication_roles.tsv")
    present = [c for c in conditions if c in set(counts["condition"])]
    save_figure(plot_pair_heatmaps(counts, "n_interactions", present, pairs, f"Number of interactions (magnitude_rank <= {cutoff:g})"),
                outdir / "communication_counts_heatmap.png")
    save_figure(plot_pair_heatmaps(counts, "strength", present, pairs, "Interaction strength (sum of lr_means of called interactions)"),
                outdir / "communication_strength_heatmap.png")
    if sample_counts is None:
        logger.warning("source -> target proportion tests need per-sample inference (communication_per_sample); not done")
    write_table(proportion_tests(sample_counts if sample_counts is not None else pd.DataFrame(), samples, pairs),
                outdir / "communication_proportion_tests.tsv")
    for condition in present:
        summary["called"][condition] = int(liana.loc[liana["condition"] == condition, "called"].sum())
    min_cells = settings.communication_min_cells
    top_pathways: list[pd.DataFrame] = []
    for test, reference in pairs:
        name = contrast_name(test, reference)
        in_pair = obs["condition"].astype(str).isin([test, reference])
        per_condition = pd.crosstab(obs.loc[in_pair, "cell_type"].astype(str), obs.loc[in_pair, "condition"].astype(str))
        cell_types = sorted(per_condition.index[(per_condition.reindex(columns=[test, reference], fill_value=0) >= min_cells).all(axis=1)])
        with timed(logger, f"{name}: sample-level differential interactions over {len(cell_types)} cell types"):
            table, long, reason = differential_interactions(
                adata, resource, pathways, samples, test, reference, cell_types, min_cells=min_cells,
                expr_prop=settings.communication_expr_prop, fdr=settings.communication_fdr)
        if reason:
            logger.warning("%s: differential interactions skipped: %s", name, reason)
            skipped.append({"scope": "contrast", "condition": name, "sample": "", "cell_type": "", "n_cells": 0, "reason": reason})
        write_table(table, outdir / f"communication_diff_{name}.tsv")
        if len(long):
            _write_gz(long, outdir / f"communication_sample_scores_{name}.tsv.gz")
        if len(table):
            save_figure(plot_diff_dots(table, settings.communication_top_n, f"Top differential interactions, {name}"),
                        outdir / f"communication_diff_{name}_dotplot.png")
        path_table = pathway_tests(table, pathways, name, fdr=settings.communication_fdr)
        write_table(path_table, outdir / f"communication_pathway_diff_{name}.tsv")
        overall = path_table[path_table["level"] == "pathway"]
        top_pathways.append(overall.sort_values("pvalue", kind="stable").head(TOP_PATHWAYS_IN_REPORT))
        if len(overall):
            save_figure(plot_pathway_diff_heatmap(path_table, settings.communication_top_n, f"Differential signalling pathways, {name}"),
                        outdir / f"communication_pathway_diff_{name}_heatmap.png")
        summary["pathway_differential"][name] = overall.head(10)[["pathway", "logfc", "pvalue", "fdr"]].to_dict("records")
        n_sig = int(table["significant"].sum()) if len(table) else 0
        logger.info("%s: %d candidate interactions tested, %d with FDR < %g", name, len(table), n_sig, settings.communication_fdr)
        summary["differential"][name] = {
            "tested": int(len(table)), "significant": n_sig,
            "top": table.head(10)[["source", "target", "interaction", "logfc", "pvalue", "fdr"]].to_dict("records") if len(table) else [],
        }
    plot_pathways(strength, roles, summary, chosen, present, settings.communication_n_pathway_plots, outdir)
    write_table(pd.DataFrame(skipped, columns=SKIP_COLUMNS), outdir / "communication_skipped.tsv")
    write_pathway_table(top_pathways, outdir / "communication_pathways_mqc.tsv")
    mqc = counts.groupby("condition", observed=True)[["n_interactions"]].sum()
    header = multiqc_header("tmeflow_communication", "Cell-cell communication",
                            f"Ligand-receptor interactions called by LIANA (magnitude_rank <= {cutoff:g}) per condition.", "bargraph",
                            pconfig={"id": "tmeflow_communication_plot", "title": "Called interactions per condition"})
    write_table(mqc, outdir / "communication_mqc.tsv", index=True, header_lines=header)
    summary["skipped"] = skipped
    write_json(summary, outdir / "communication_summary.json")
    return summary


def plot_pathways(strength: pd.DataFrame, roles: pd.DataFrame, summary: dict[str, Any], chosen: list[str], conditions: list[str],
                  n_plots: int, outdir: Path) -> None:
    """Circle plots and the role heatmap of the chosen pathways: ``communication_plot_pathways`` or else the
    ``n_plots`` top pathways of the first contrast's pathway-level test (by p-value), or, without a
    contrast, the ``n_plots`` strongest pathways (summed strength of called interactions)."""
    ranked = strength[strength["pathway"] != "other"]
    if chosen:
        selected, rule = chosen, "communication_plot_pathways"
    elif summary["pathway_differential"] and next(iter(summary["pathway_differential"].values())):
        selected = [r["pathway"] for r in next(iter(summary["pathway_differential"].values()))][:n_plots]
        rule = f"top {n_plots} differential pathways of {next(iter(summary['pathway_differential']))}"
    else:
        selected = list(ranked.groupby("pathway")["strength"].sum().sort_values(ascending=False).index[:n_plots])
        rule = f"top {n_plots} pathways by strength"
    summary["plotted_pathways"] = {"pathways": selected, "rule": rule}
    summary["top_pathways_by_strength"] = {
        c: ranked[ranked["condition"] == c].groupby("pathway")["strength"].sum().sort_values(ascending=False).head(10).round(4).to_dict()
        for c in conditions}
    for pathway in selected:
        if pathway in set(ranked["pathway"]):
            save_figure(plot_pathway_circles(ranked, pathway, conditions), outdir / f"communication_pathway_circle_{slug(pathway)}.png")
        else:
            logger.warning("pathway %s has no called interaction in any condition; no circle plot", pathway)
    shown = [p for p in selected if p in set(roles["pathway"])]
    if len(roles):
        save_figure(plot_roles_heatmap(roles, shown + ["all"], conditions), outdir / "communication_roles_heatmap.png")


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow communication``."""
    run_communication(args.input, args.outdir, params)
