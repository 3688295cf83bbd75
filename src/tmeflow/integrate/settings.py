"""Integration settings (the schema's ``integration_options``) and shared constants."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import StageSettings

TARGET_SUM = 1e4

# Cells per row block when counts are read or normalised block by block (~40 M non-zeros at 2,000 genes per cell).
BLOCK_CELLS = 20_000


PLOT_KEYS = ("sample", "patient", "condition", "batch")


METRIC_COLUMNS = ("kbet_acceptance", "ilisi", "batch_asw", "graph_connectivity", "clisi", "label_asw")


REPRESENTATION = {"harmony": "X_pca_harmony", "scvi": "X_scVI", "none": "X_pca"}


@dataclass(frozen=True)
class IntegrationSettings(StageSettings):
    """The ``integration_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("integration_options",)

    batch_key: str
    min_shared_genes: int
    n_top_genes: int
    regress_mito: bool
    pca_comps: int
    n_pcs: int
    batch_correction: str
    scvi_max_epochs: int
    scvi_n_latent: int
    n_neighbors: int
    leiden_resolution: float
    metrics_label_key: str | None
    metrics_max_cells: int
    seed: int
