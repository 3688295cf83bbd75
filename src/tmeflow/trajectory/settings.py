"""The trajectory stage's settings: the ``trajectory_options`` of the schema, and the seed."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import StageSettings
from ..text import split_list


@dataclass(frozen=True)
class TrajectorySettings(StageSettings):
    """The ``trajectory_options`` of the schema, and the seed; comma lists parsed once (properties)."""

    SCHEMA_GROUPS = ("trajectory_options",)

    trajectory_subset: str | None
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

    @property
    def root_genes(self) -> list[str]:
        return split_list(self.trajectory_root_genes)

    @property
    def batch_keys(self) -> list[str]:
        return split_list(self.trajectory_batch_key)

    @property
    def trend_sets(self) -> list[str]:
        return split_list(self.trajectory_trend_sets)

    @property
    def root_type(self) -> str:
        return (self.trajectory_root_type or "").strip()

    @property
    def root_cluster(self) -> str:
        return (self.trajectory_root_cluster or "").strip()
