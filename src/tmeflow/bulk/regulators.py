"""Immune regulators: each score's Spearman correlation with the bundled immunomodulators' expression.

Each score's Spearman correlation with the expression of the bundled immunomodulator genes (MHC, immune
checkpoints, cytokines and chemokines and their receptors; the 78 genes of the CRI iAtlas, Thorsson et al. 2018,
Immunity 48:812; ``resources/immune_regulators/SOURCE.md``), per cancer type (or over the whole cohort, ``all``,
without a cancer-type column), as in pan-cancer signature studies.

``fdr``: BH within the type across scores x genes; ``pancancer_fdr``: BH across types x genes of each score.
Only the focus scores (user signatures, genes, necroptosis sets; :func:`.pancancer.focus_features`) are
tested; immunomodulators absent from the expression matrix are skipped (logged).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pandas as pd

from ..log import get_logger
from ..signatures import resource_path
from .pancancer import correlation_per_type, plot_rho_panels

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__package__)

RESOURCE = "immune_regulators/immunomodulators_thorsson2018.tsv"
MAX_PANELS = 4


def immunomodulator_genes() -> list[str]:
    """Return the bundled immunomodulator gene symbols.

    Returns
    -------
    list of str
        The 78 human symbols of ``resources/immune_regulators``, in file order.
    """
    return pd.read_csv(resource_path(RESOURCE), sep="\t")["gene"].tolist()


def regulator_correlations(
    features: pd.DataFrame,
    focus: list[str],
    log_expr: pd.DataFrame,
    types: pd.Series | None,
    min_samples: int,
    species: str = "human",
) -> pd.DataFrame:
    """Correlate each focus score with each immunomodulator's log expression per cancer type (Spearman).

    Parameters
    ----------
    features
        Samples x features.
    focus
        The focus scores tested.
    log_expr
        Log2 expression, genes x samples (immunomodulators absent from it are skipped, logged).
    types
        Cancer type per sample (None: one type ``all``).
    min_samples
        Smallest type analysed (``pancancer_min_samples``).
    species
        Species of ``log_expr``'s symbols; mouse maps the human list through the bundled orthologs.

    Returns
    -------
    DataFrame
        The table of :func:`tmeflow.bulk.pancancer.correlation_per_type` (``target``: the immunomodulator).
    """
    genes = immunomodulator_genes()
    if species != "human":
        from ..signatures import ortholog_map

        mapping = ortholog_map("human", species)
        genes = [mapping[g] for g in genes if g in mapping]
    present = [g for g in genes if g in log_expr.index]
    if len(present) < len(genes):
        logger.info(
            "immune regulators: %d of %d immunomodulator genes in the expression matrix", len(present), len(genes)
        )
    if not present or not focus:
        return pd.DataFrame()
    groups = types.dropna() if types is not None else pd.Series("all", index=features.index)
    sizes = groups.value_counts()
    analysed = sorted(sizes.index[sizes >= min_samples])
    if not analysed:
        return pd.DataFrame()
    targets = log_expr.loc[present, groups.index].T
    return correlation_per_type(features.loc[groups.index, focus], targets, groups, analysed)


def plot_regulator_heatmap(table: pd.DataFrame, focus: list[str]) -> Figure:
    """Plot rho as heatmaps, immunomodulators x cancer types, one panel per focus score.

    Parameters
    ----------
    table
        The table of :func:`regulator_correlations`.
    focus
        The focus scores; the first :data:`MAX_PANELS` are drawn.

    Returns
    -------
    Figure
        * marks pan-cancer FDR < 0.05, one shared colour bar.
    """
    shown = [f for f in focus if f in set(table["feature"])][:MAX_PANELS]
    genes = list(dict.fromkeys(table["target"]))
    types = sorted(table["cancer_type"].unique())
    return plot_rho_panels(
        [(feature, table[table["feature"] == feature]) for feature in shown],
        ("target", genes),
        ("cancer_type", types),
        figsize=(0.35 * len(types) * len(shown) + 2.5 * len(shown) + 1, 0.17 * len(genes) + 1.5),
        fontsizes=(5, 7, 6),
        shrink=0.5,
    )
