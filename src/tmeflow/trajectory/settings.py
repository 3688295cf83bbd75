"""The trajectory stage's settings: the ``trajectory_options`` of the schema, and the seed."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import StageSettings, comma_list


@dataclass(frozen=True)
class TrajectorySettings(StageSettings):
    """The ``trajectory_options`` of the schema, and the seed; the comma lists also as lists (properties)."""

    SCHEMA_GROUPS = ("trajectory_options",)

    trajectory_subset: str | None
    trajectory_max_cells: int
    trajectory_root_type: str | None
    trajectory_root_cluster: str | None
    trajectory_root_genes: str | None
    trajectory_resolution: float
    trajectory_n_pcs: int
    trajectory_n_neighbors: int
    trajectory_n_dcs: int
    trajectory_n_top_genes: int
    trajectory_batch_key: str | None
    trajectory_n_states: int
    trajectory_n_terminal: int
    trajectory_kernel_weight: float
    trajectory_fdr: float
    trajectory_branch_knots: int
    trajectory_branch_clusters: int
    trajectory_trend_sets: str | None
    seed: int

    root_genes = comma_list("trajectory_root_genes")
    batch_keys = comma_list("trajectory_batch_key")
    trend_sets = comma_list("trajectory_trend_sets")

    @property
    def root_type(self) -> str:
        """Return ``trajectory_root_type`` without surrounding blanks (empty when unset)."""
        return (self.trajectory_root_type or "").strip()

    @property
    def root_cluster(self) -> str:
        """Return ``trajectory_root_cluster`` without surrounding blanks (empty when unset)."""
        return (self.trajectory_root_cluster or "").strip()
