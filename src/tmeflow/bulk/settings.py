"""The bulk stage's settings: the ``bulk_options`` of the schema, and the seed."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import StageSettings, comma_list


@dataclass(frozen=True)
class BulkSettings(StageSettings):
    """The ``bulk_options`` of the schema, and the seed; the comma lists also as lists (properties).

    Built once by :func:`tmeflow.bulk.run_bulk` (with the samplesheet row's species as ``bulk_species``)
    and by :func:`tmeflow.validate` for each bulk row; ``BulkSettings.defaults()`` gives the schema's
    defaults for notebooks and tests.
    """

    SCHEMA_GROUPS = ("bulk_options",)

    bulk_values: str
    bulk_species: str
    bulk_id_type: str
    probe_annotation: str | None
    bulk_genes: str
    bulk_hallmark: bool
    ssgsea_alpha: float
    ssgsea_normalize: bool
    signature_min_size: int
    reference_markers: int
    cutpoint_method: str
    cutpoint_min_prop: float
    cutpoint_permutations: int
    survival_endpoints: str
    survival_columns: str
    cox_covariates: str
    node_column: str
    cancer_type_column: str
    pancancer_min_samples: int
    maf: str | None
    tmb_capture_mb: float
    sample_type_column: str
    normal_expression: str | None
    normal_clinical: str | None
    msi: str | None
    copy_number: str | None
    methylation: str | None
    response_column: str
    drug_expression: str | None
    drug_response: str | None
    drug_response_column: str
    drug_values: str
    drug_predict: bool
    drug_min_cv_rho: float
    ph_alpha: float
    bulk_max_missing: float
    seed: int

    genes = comma_list("bulk_genes")
