"""Constants, name matching and the settings of ``tmeflow spatial_analysis``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp

from ..log import get_logger
from ..settings import StageSettings, comma_list

logger = get_logger(__name__)


REGIONS = ("tumour", "interface", "stroma")
REGION_SYNONYMS = {
    "tumor": "tumour",
    "tumour": "tumour",
    "cancer": "tumour",
    "stroma": "stroma",
    "stromal": "stroma",
    "interface": "interface",
    "boundary": "interface",
    "border": "interface",
    "margin": "interface",
}
TLS_CHEMOKINES = (
    "CCL2",
    "CCL3",
    "CCL4",
    "CCL5",
    "CCL8",
    "CCL18",
    "CCL19",
    "CCL21",
    "CXCL9",
    "CXCL10",
    "CXCL11",
    "CXCL13",
)
SIGNATURES = {  # name: (bundled GMT key, set name)
    "EMT": ("hallmark", "HALLMARK_EPITHELIAL_MESENCHYMAL_TRANSITION"),
    "necroptosis": ("necroptosis", "GO_0070266_NECROPTOTIC_PROCESS"),
    "immune": ("estimate", "ImmuneSignature"),
    "stromal": ("estimate", "StromalSignature"),
}
MIN_SIGNATURE_GENES = 3
TLS_COLUMNS = ["tls_id", "n_spots", "mean_tls_score", "mean_lymphoid_prop", "region", "mean_signed_distance"]


def _normalise_name(name: str) -> str:
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def _match_types(wanted: list[str], available: list[str]) -> list[str]:
    """Available types named in ``wanted`` (case, spaces, '_' and '-' ignored)."""
    keys = {_normalise_name(w) for w in wanted}
    return [t for t in available if _normalise_name(t) in keys]


def _dense(matrix) -> np.ndarray:
    return np.asarray(matrix.todense() if sp.issparse(matrix) else matrix, dtype=float)


@dataclass(frozen=True)
class SpatialAnalysisSettings(StageSettings):
    """The ``spatial_analysis_options`` of the schema, and the seed; the comma lists also as lists (properties)."""

    SCHEMA_GROUPS = ("spatial_analysis_options",)

    malignant_cell_types: str
    tumour_threshold: float
    region_smoothing: bool
    interface_rings: int
    spatial_n_perms: int
    lr_local_metric: str
    lr_min_prop: float
    lr_fdr: float
    trajectory_n_bins: int
    distance_genes: str | None
    tls_min_score: float
    tls_min_lymphoid: float
    tls_min_spots: int
    lymphoid_cell_types: str | None
    spot_cnv_reference_quantile: float
    seed: int

    malignant_types = comma_list("malignant_cell_types")
    lymphoid_types = comma_list("lymphoid_cell_types")
    distance_gene_names = comma_list("distance_genes")
