"""The cnv stage's settings: the ``cnv_options`` of the schema, and the seed."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import StageSettings, comma_list
from ..text import split_list
from .positions import _chrom


def excluded_chromosomes(names: str | None) -> list[str]:
    """Return ``cnv_exclude_chromosomes`` (e.g. ``"X,Y"``) as infercnvpy names chromosomes (``chr``-prefixed).

    Parameters
    ----------
    names
        A comma-separated list of chromosomes, with or without the ``chr`` prefix; None or empty for none.

    Returns
    -------
    list of str
        The chromosomes as ``chr``-prefixed names (``["chrX", "chrY"]``), in the given order.
    """
    return ["chr" + _chrom(name) for name in split_list(names)]


@dataclass(frozen=True)
class CnvSettings(StageSettings):
    """The ``cnv_options`` of the schema, and the seed; the comma lists also as lists (properties)."""

    SCHEMA_GROUPS = ("cnv_options",)

    gene_positions: str | None
    cnv_reference_types: str
    cnv_candidate_compartments: str | None
    cnv_candidate_types: str | None
    cnv_normal_conditions: str | None
    cnv_min_reference_cells: int
    cnv_window: int
    cnv_step: int
    cnv_exclude_chromosomes: str | None
    cnv_min_gene_fraction: float
    cnv_lfc_clip: float
    cnv_score_quantile: float
    cnv_leiden_resolution: float
    cnv_cluster_min_fraction: float
    cnv_cluster_max_reference: float
    cnv_arm_threshold: float
    seed: int

    reference_types = comma_list("cnv_reference_types")
    candidate_compartments = comma_list("cnv_candidate_compartments")
    candidate_types = comma_list("cnv_candidate_types")
    normal_conditions = comma_list("cnv_normal_conditions")

    @property
    def excluded_chromosomes(self) -> list[str]:
        """``cnv_exclude_chromosomes`` as ``chr``-prefixed names."""
        return excluded_chromosomes(self.cnv_exclude_chromosomes)
