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
    A cell type with more than ``communication_max_cells`` cells in a condition (or sample) enters
    LIANA as a seeded random subsample of that many (its means and expression fractions are estimated
    to ~1% from 5,000 cells; LIANA's time and memory grow with the cells); every such case is listed
    in the summary's ``liana_subsampled``. The sample-level tests below use every cell.
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

import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import TmeflowInputError
from ..io import read_rows
from ..log import get_logger
from ..settings import StageSettings
from ..stats import cap_cells_per_group
from .signalling import curated_pathway_map

logger = get_logger(__name__)


SKIP_COLUMNS = ["scope", "condition", "sample", "cell_type", "n_cells", "reason"]
PATHWAY_COLUMNS = ("pathway", "pathway_name", "pathway_name_ligand", "category")


# --------------------------------------------------------------------------------------------------
# Inputs


def check_lognorm(adata: AnnData, *, file: str | Path | None = None) -> None:
    """Check that ``X`` is log-normalised (non-negative, not raw integer counts), on up to 2,000 cells.

    Parameters
    ----------
    adata
        The atlas; only the first 2,000 rows of ``X`` are read.
    file
        The atlas file, named in the error.

    Raises
    ------
    TmeflowInputError
        ``X`` has negative values, or its values are integers above 50 (raw counts).
    """
    block = adata.X[: min(2000, adata.n_obs)]
    values = block.data if sp.issparse(block) else np.asarray(block).ravel()
    if not values.size:
        return
    if values.min() < 0:
        raise TmeflowInputError(
            "atlas X has negative values; communication needs log-normalised (log1p CP10k) X", file=file
        )
    if values.max() > 50 and np.allclose(values, np.round(values)):
        raise TmeflowInputError(
            "atlas X looks like raw counts; communication needs log-normalised (log1p CP10k) X", file=file
        )


def load_resource(
    name: str | None, species: str, var_names, *, file: str | Path | None = None, stage: str = "communication"
) -> tuple[str, pd.DataFrame]:
    """Load the ligand-receptor resource bundled in LIANA (offline) and check its gene overlap with the data.

    Parameters
    ----------
    name
        A LIANA resource name (``communication_resource``); empty or None: the species' consensus resource
        (``consensus`` for human, ``mouseconsensus`` for mouse).
    species
        ``human`` or ``mouse`` (:func:`tmeflow.genes.species_of`).
    var_names
        The data's gene symbols.
    file
        The input file, named in the errors.
    stage
        The stage named in the error (``communication``, ``spatial_analysis``).

    Returns
    -------
    tuple[str, pandas.DataFrame]
        The resource name and the resource (``ligand``, ``receptor`` as strings, complexes ``A_B``).

    Raises
    ------
    TmeflowInputError
        An unknown resource name, or fewer than 10 of the resource's genes in ``var_names`` (species
        mismatch, Ensembl ids).
    """
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
            f"(species {species}: use gene symbols of that species, or set communication_resource)",
            file=file,
        )
    return name, resource


def pathway_map(resource: pd.DataFrame) -> tuple[dict[tuple[str, str], str], str]:
    """Map each (ligand, receptor) of the resource to its signalling pathway.

    Parameters
    ----------
    resource
        The ligand-receptor resource (:func:`load_resource`). Its first non-empty column of
        ``PATHWAY_COLUMNS`` is used; else the bundled ligand -> CellChatDB pathway table
        (:func:`tmeflow.communication.curated_pathway_map`).

    Returns
    -------
    tuple[dict[tuple[str, str], str], str]
        (ligand, receptor) -> pathway name (``other`` where the resource column is empty; empty dict when no
        annotation exists), and a sentence saying where the pathways came from.
    """
    for column in PATHWAY_COLUMNS:
        if column in resource.columns and resource[column].notna().any():
            labels = resource[column].fillna("other").astype(str)
            return dict(
                zip(zip(resource["ligand"], resource["receptor"], strict=True), labels, strict=True)
            ), f"resource column '{column}'"
    curated = curated_pathway_map(resource)
    if curated:
        return curated, (
            f"bundled ligand -> CellChatDB pathway names (cellchat_pathways/ligand_pathways.tsv; "
            f"{len(curated)} of {len(resource)} interactions)"
        )
    return {}, "none (the resource has no pathway annotation and no ligand is in the bundled pathway table)"


# --------------------------------------------------------------------------------------------------
# LIANA


def groups_with_cells(labels: pd.Series, min_cells: int) -> tuple[list[str], dict[str, int]]:
    """Split cell types into those with at least ``min_cells`` cells and those with fewer.

    Parameters
    ----------
    labels
        Cell type per cell.
    min_cells
        Minimum number of cells (``communication_min_cells``).

    Returns
    -------
    tuple[list[str], dict[str, int]]
        The kept cell types (sorted), and the cell count of every type with fewer cells.
    """
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
    communication_max_cells: int
    communication_n_perms: int
    communication_per_sample: bool
    communication_rank_cutoff: float
    communication_fdr: float
    communication_top_n: int
    communication_plot_pathways: str | None
    communication_n_pathway_plots: int
    seed: int


def interactions_in(resource: pd.DataFrame, genes) -> pd.DataFrame:
    """Keep the resource's interactions whose every gene (each subunit of a complex ``A_B``) is in ``genes``.

    LIANA keeps no others (``filter_resource``); filtering first with a set replaces its ``np.isin`` over the
    whole resource's object arrays in every LIANA call (0.3 s each on 3,000 genes), same result.

    Parameters
    ----------
    resource
        The ligand-receptor resource (:func:`load_resource`).
    genes
        The data's gene symbols.

    Returns
    -------
    pandas.DataFrame
        The covered rows of ``resource``, in its order.
    """
    present = set(map(str, genes))
    covered = [
        all(gene in present for gene in f"{ligand}_{receptor}".split("_"))
        for ligand, receptor in zip(resource["ligand"], resource["receptor"], strict=True)
    ]
    return resource[np.asarray(covered, dtype=bool)]


def run_liana(adata: AnnData, resource: pd.DataFrame, settings: CommunicationSettings) -> pd.DataFrame:
    """Run LIANA ``rank_aggregate`` (Dimitrov et al. 2022) between the ``cell_type`` groups of ``adata``.

    Parameters
    ----------
    adata
        Cells with log-normalised ``X`` and ``obs['cell_type']``.
    resource
        The ligand-receptor resource (:func:`load_resource`).
    settings
        ``communication_expr_prop``, ``communication_min_cells``, ``communication_n_perms`` (CellPhoneDB
        permutations) and ``seed`` are used.

    Returns
    -------
    pandas.DataFrame
        One row per source, target, ligand and receptor with LIANA's scores (``lr_means``, ``magnitude_rank``,
        ``specificity_rank``, ...); the complex columns renamed ``ligand`` and ``receptor``.
    """
    import liana as li

    covered = interactions_in(resource, adata.var_names)
    if covered.empty:
        raise ValueError("no interaction of the resource has all its genes in the data")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = li.mt.rank_aggregate(
            adata,
            groupby="cell_type",
            resource=covered[["ligand", "receptor"]],
            expr_prop=settings.communication_expr_prop,
            min_cells=settings.communication_min_cells,
            use_raw=False,
            n_perms=settings.communication_n_perms,
            seed=settings.seed,
            inplace=False,
            verbose=False,
        )
    return result.rename(columns={"ligand_complex": "ligand", "receptor_complex": "receptor"})


def liana_on(
    adata: AnnData,
    mask: np.ndarray,
    resource: pd.DataFrame,
    settings: CommunicationSettings,
    *,
    scope: str,
    condition: str,
    sample: str,
    skipped: list[dict[str, Any]],
    subsampled: list[dict[str, Any]] | None = None,
) -> pd.DataFrame | None:
    """Run LIANA on the cells of ``mask`` after leaving out the cell types with too few cells.

    A cell type with more than ``communication_max_cells`` cells enters as a seeded subsample of that many
    (:func:`cap_cells_per_group`).

    Parameters
    ----------
    adata
        The atlas (log-normalised ``X``; ``obs['cell_type']``); not modified.
    mask
        Boolean per cell: the cells of one condition or sample.
    resource
        The ligand-receptor resource (:func:`load_resource`).
    settings
        The stage settings (:func:`run_liana`; ``communication_min_cells``).
    scope
        ``condition`` or ``sample``: what ``mask`` selects (recorded in ``skipped`` and the result).
    condition, sample
        The condition and sample names written into the result and into ``skipped``.
    skipped
        The skipped-cases list; one row is appended per cell type left out and when nothing is inferred.
    subsampled
        When given, one row (scope, condition, sample, cell type, cells, cells used) is appended per
        subsampled cell type.

    Returns
    -------
    pandas.DataFrame or None
        :func:`run_liana`'s table with ``condition`` (and, for ``scope='sample'``, ``sample``) inserted first;
        None when fewer than two cell types have enough cells or LIANA finds nothing to score.
    """
    min_cells = settings.communication_min_cells
    mask = np.asarray(mask, dtype=bool)
    labels = adata.obs["cell_type"][mask]
    kept, few = groups_with_cells(labels, min_cells)
    for cell_type, n in sorted(few.items()):
        logger.warning(
            "%s %s: cell type %s has %d cells (< communication_min_cells %d); skipped",
            scope,
            sample if scope == "sample" else condition,
            cell_type,
            n,
            min_cells,
        )
        skipped.append(
            {
                "scope": scope,
                "condition": condition,
                "sample": sample,
                "cell_type": cell_type,
                "n_cells": n,
                "reason": f"fewer than communication_min_cells ({min_cells}) cells",
            }
        )
    if len(kept) < 2:
        skipped.append(
            {
                "scope": scope,
                "condition": condition,
                "sample": sample,
                "cell_type": "",
                "n_cells": int(mask.sum()),
                "reason": f"fewer than two cell types with >= {min_cells} cells; no inference",
            }
        )
        logger.warning("%s %s: fewer than two cell types with enough cells; skipped", scope, sample or condition)
        return None
    # Only what LIANA reads: X and the groups. LIANA copies obs and obsp into its own AnnData and subsets them in
    # every per-cell-type view, so the atlas' ~50 obs columns and 3 cell x cell graphs would be carried along for
    # nothing (same result; ~1/3 of a test-cohort LIANA run).
    in_kept = labels.astype(str).isin(kept).to_numpy()
    kept_labels = labels.astype(str).to_numpy()[in_kept]
    chosen = cap_cells_per_group(kept_labels, settings.communication_max_cells, settings.seed)
    _record_subsampled(kept_labels, chosen, scope, condition, sample, subsampled)
    cells = np.flatnonzero(mask)[in_kept][chosen]
    groups = pd.Categorical(kept_labels[chosen], categories=kept)
    sub = AnnData(
        read_rows(adata.X, cells),
        obs=pd.DataFrame({"cell_type": groups}, index=adata.obs_names[cells]),
        var=pd.DataFrame(index=adata.var_names),
    )
    try:
        result = run_liana(sub, resource, settings)
    except ValueError as exc:  # e.g. no interaction passes the filters in a tiny sample
        skipped.append(
            {
                "scope": scope,
                "condition": condition,
                "sample": sample,
                "cell_type": "",
                "n_cells": int(sub.n_obs),
                "reason": f"LIANA found nothing to score ({str(exc).splitlines()[0]})",
            }
        )
        logger.warning("%s %s: LIANA failed: %s", scope, sample or condition, str(exc).splitlines()[0])
        return None
    result.insert(0, "condition", condition)
    if scope == "sample":
        result.insert(0, "sample", sample)
    return result


def _record_subsampled(
    labels: np.ndarray,
    chosen: np.ndarray,
    scope: str,
    condition: str,
    sample: str,
    subsampled: list[dict[str, Any]] | None,
) -> None:
    """Log every cell type LIANA sees a subsample of, and list it in ``subsampled``."""
    total = pd.Series(labels).value_counts()
    used = pd.Series(labels[chosen]).value_counts()
    for cell_type in sorted(total.index[total > used.reindex(total.index, fill_value=0)]):
        logger.info(
            "%s %s: cell type %s has %d cells; LIANA sees a seeded subsample of %d (communication_max_cells)",
            scope,
            sample if scope == "sample" else condition,
            cell_type,
            total[cell_type],
            used[cell_type],
        )
        if subsampled is not None:
            subsampled.append(
                {
                    "scope": scope,
                    "condition": condition,
                    "sample": sample,
                    "cell_type": cell_type,
                    "n_cells": int(total[cell_type]),
                    "n_used": int(used[cell_type]),
                }
            )


# --------------------------------------------------------------------------------------------------
# Summaries


def count_strength(liana: pd.DataFrame, cutoff: float) -> pd.DataFrame:
    """Count the called interactions and sum their strength per condition and source -> target.

    Parameters
    ----------
    liana
        LIANA results with ``condition``, ``source``, ``target``, ``magnitude_rank`` and ``lr_means``.
    cutoff
        An interaction is called when ``magnitude_rank <= cutoff`` (``communication_rank_cutoff``).

    Returns
    -------
    pandas.DataFrame
        Columns ``condition, source, target, n_tested, n_interactions, strength`` (strength: the summed
        ``lr_means`` of the called interactions, CellChat-style; 0 when none is called).
    """
    called = liana[liana["magnitude_rank"] <= cutoff]
    tested = liana.groupby(["condition", "source", "target"], observed=True).size().rename("n_tested")
    grouped = called.groupby(["condition", "source", "target"], observed=True)
    table = pd.concat(
        [tested, grouped.size().rename("n_interactions"), grouped["lr_means"].sum().rename("strength")], axis=1
    )
    return table.fillna({"n_interactions": 0, "strength": 0.0}).astype({"n_interactions": int}).reset_index()


def pathway_table(liana: pd.DataFrame, pathways: dict[tuple[str, str], str], cutoff: float) -> pd.DataFrame:
    """Count the called interactions and sum their strength per condition, pathway and source -> target.

    Grouping by ligand-name prefix is never used: it would put IL1B, IL6 and IL10 in one "IL" pathway.

    Parameters
    ----------
    liana
        LIANA results with ``condition``, ``source``, ``target``, ``ligand``, ``receptor``,
        ``magnitude_rank`` and ``lr_means``.
    pathways
        (ligand, receptor) -> pathway (:func:`pathway_map`); interactions not in it are ``other``.
    cutoff
        An interaction is called when ``magnitude_rank <= cutoff``.

    Returns
    -------
    pandas.DataFrame
        Columns ``condition, pathway, source, target, n_interactions, strength``, strongest first within a
        condition; empty (with these columns) when ``pathways`` is empty.
    """
    columns = ["condition", "pathway", "source", "target", "n_interactions", "strength"]
    if not pathways:
        return pd.DataFrame(columns=columns)
    called = liana[liana["magnitude_rank"] <= cutoff].copy()
    called["pathway"] = [
        pathways.get((lig, rec), "other") for lig, rec in zip(called["ligand"], called["receptor"], strict=True)
    ]
    grouped = called.groupby(["condition", "pathway", "source", "target"], observed=True)
    out = pd.concat(
        [grouped.size().rename("n_interactions"), grouped["lr_means"].sum().rename("strength")], axis=1
    ).reset_index()
    return out.sort_values(["condition", "strength"], ascending=[True, False])
