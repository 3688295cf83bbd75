"""Immune regulators: each score's Spearman correlation with the expression of the bundled immunomodulator
genes (MHC, immune checkpoints, cytokines and chemokines and their receptors; the 78 genes of the CRI
iAtlas, Thorsson et al. 2018, Immunity 48:812; ``resources/immune_regulators/SOURCE.md``), per cancer type
(or over the whole cohort, ``all``, without a cancer-type column), as in pan-cancer signature studies.

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
    """The bundled immunomodulator gene symbols (human)."""
    return pd.read_csv(resource_path(RESOURCE), sep="\t")["gene"].tolist()


def regulator_correlations(
    features: pd.DataFrame,
    focus: list[str],
    log_expr: pd.DataFrame,
    types: pd.Series | None,
    min_samples: int,
    species: str = "human",
) -> pd.DataFrame:
    """Spearman rho of each focus score with each immunomodulator's log expression, per type (module docstring)."""
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
    """Heatmap of rho, immunomodulators x cancer types, one panel per focus score (the first
    :data:`MAX_PANELS`); * marks pan-cancer FDR < 0.05.
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
