"""Inputs of ``tmeflow deconvolve``: count matrices, the settings, the checked gene-matched section and reference."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import TmeflowInputError
from ..io import h5ad_on_disk, read_rows
from ..log import get_logger
from ..settings import StageSettings
from ..stats import cap_cells_per_group

logger = get_logger(__name__)


LABEL_KEY = "cell_type"
FINE_LABEL_KEY = "cell_type_fine"
TARGET_SUM = 1e4
MARKER_BASELINE_GENES = 50
MARKER_MIN_DETECTION = 0.10


# ----------------------------------------------------------------------------------------------
# Inputs
# ----------------------------------------------------------------------------------------------
def _is_integer_matrix(matrix) -> bool:
    values = matrix.data if sp.issparse(matrix) else np.asarray(matrix).ravel()
    values = values[:2_000_000]
    return bool(values.size == 0 or (np.all(values >= 0) and np.all(np.abs(values - np.round(values)) < 1e-6)))


def reference_counts(reference: AnnData, *, file: str | None = None) -> sp.csr_matrix:
    """Return the reference's raw counts: ``layers['counts']``, else an integer-valued ``X``.

    Parameters
    ----------
    reference
        The reference atlas.
    file
        The reference file, named in the error.

    Returns
    -------
    scipy.sparse.csr_matrix
        Cells x genes, float32.

    Raises
    ------
    TmeflowInputError
        No ``layers['counts']`` and a non-integer ``X``.
    """
    if "counts" in reference.layers:
        matrix = reference.layers["counts"]
        if not _is_integer_matrix(matrix):
            raise TmeflowInputError(
                "reference layers['counts'] holds non-integer values; deconvolution needs raw counts", file=file
            )
    elif _is_integer_matrix(reference.X):
        matrix = reference.X
    else:
        raise TmeflowInputError(
            "reference has no raw counts (no layers['counts'] and X is not integer counts); "
            "give the atlas with raw counts",
            file=file,
        )
    return sp.csr_matrix(matrix, dtype=np.float32)


def read_reference(path, max_cells_per_type: int, seed: int) -> AnnData:
    """Read the reference atlas's cell labels and raw counts, at most ``max_cells_per_type`` cells per label.

    The atlas stays on disk: only its ``obs``, ``var`` and the chosen cells' rows of ``layers['counts']`` (else of
    ``X``) are read, so a million-cell atlas costs the chosen cells' memory. A label is a ``cell_type`` and, when
    the atlas has it, ``cell_type_fine`` value; a larger label keeps a seeded random subsample of its cells
    (:func:`tmeflow.stats.cap_cells_per_group`). The signatures are per-type means, estimated to about 1% from
    5,000 cells.

    Parameters
    ----------
    path
        The reference atlas h5ad.
    max_cells_per_type
        Cells read per label at most (``deconv_max_cells_per_type``); 0 reads every cell.
    seed
        Random seed of the subsample.

    Returns
    -------
    AnnData
        The chosen cells with the atlas's ``obs`` and ``var``; their counts in ``layers['counts']`` (no ``X``) or,
        when the atlas has no counts layer, in ``X``.
    """
    with h5ad_on_disk(path, "reference atlas") as atlas:
        columns = [column for column in (LABEL_KEY, FINE_LABEL_KEY) if column in atlas.obs.columns]
        labels = atlas.obs[columns].astype(str).agg("|".join, axis=1).to_numpy() if columns else np.zeros(atlas.n_obs)
        cells = cap_cells_per_group(labels, max_cells_per_type, seed)
        obs, var = atlas.obs.iloc[cells].copy(), atlas.var.copy()
        if "counts" in atlas.layers:
            reference = AnnData(obs=obs, var=var, layers={"counts": read_rows(atlas.layers["counts"], cells)})
        else:
            reference = AnnData(read_rows(atlas.X, cells), obs=obs, var=var)
    if len(cells) < len(labels):
        logger.info(
            "reference: %d of %d cells read, at most %d per cell type (deconv_max_cells_per_type)",
            len(cells),
            len(labels),
            max_cells_per_type,
        )
    return reference


def section_counts(adata: AnnData, *, file: str | None = None) -> sp.csr_matrix:
    """Return the section's raw counts: ``layers['counts']``, else an integer-valued ``X``.

    Parameters
    ----------
    adata
        The spatial section (``tmeflow spatial_qc`` output).
    file
        The section file, named in the error.

    Returns
    -------
    scipy.sparse.csr_matrix
        Spots x genes, float32.

    Raises
    ------
    TmeflowInputError
        No ``layers['counts']`` and a non-integer ``X``.
    """
    if "counts" in adata.layers:
        return sp.csr_matrix(adata.layers["counts"], dtype=np.float32)
    if _is_integer_matrix(adata.X):
        return sp.csr_matrix(adata.X, dtype=np.float32)
    raise TmeflowInputError("section has no raw counts (no layers['counts']); give the spatial_qc output", file=file)


@dataclass(frozen=True)
class DeconvolutionSettings(StageSettings):
    """The ``deconvolution_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("deconvolution_options",)

    deconvolution_method: str
    deconv_min_shared_genes: int
    deconv_min_cells_per_type: int
    deconv_max_cells_per_type: int
    deconv_min_agreement: float
    nnls_n_markers: int
    c2l_ref_epochs: int
    c2l_epochs: int
    c2l_n_cells_per_spot: float
    c2l_detection_alpha: float
    c2l_posterior_samples: int
    seed: int


def prepare_inputs(
    section: AnnData,
    reference: AnnData,
    *,
    min_shared_genes: int,
    min_cells_per_type: int,
    section_file: str | None = None,
    reference_file: str | None = None,
    label_key: str = LABEL_KEY,
) -> tuple[AnnData, AnnData]:
    """Check the section and the reference and restrict both to what the methods use.

    Parameters
    ----------
    section
        The spatial section (raw counts in ``layers['counts']`` or ``X``); not modified.
    reference
        The reference atlas with a ``label_key`` column (raw counts as for :func:`reference_counts`); not modified.
    min_shared_genes
        Fewest genes shared by section and reference (``deconv_min_shared_genes``).
    min_cells_per_type
        Fewest reference cells a type needs to be kept (``deconv_min_cells_per_type``).
    section_file, reference_file
        The input files, named in the errors.
    label_key
        The reference label column (``cell_type``, or ``cell_type_fine`` for subtypes).

    Returns
    -------
    tuple[AnnData, AnnData]
        (section, reference) on the shared genes with raw counts in ``X``; the reference restricted to the kept
        types, stored as ``obs['cell_type']``.

    Raises
    ------
    TmeflowInputError
        No ``label_key`` column, no raw counts, fewer than ``min_shared_genes`` shared genes, or fewer than two
        types left.
    """
    import anndata as ad

    if label_key not in reference.obs.columns:
        raise TmeflowInputError(
            f"reference has no obs column '{label_key}' (the cell-type labels to deconvolve into)",
            file=reference_file,
            column=label_key,
        )
    ref_counts = reference_counts(reference, file=reference_file)
    spot_counts = section_counts(section, file=section_file)
    shared = section.var_names.intersection(reference.var_names, sort=False)
    if len(shared) < min_shared_genes:
        raise TmeflowInputError(
            f"only {len(shared)} genes are shared by the section ({section.n_vars} genes) and the reference "
            f"({reference.n_vars} genes), fewer than deconv_min_shared_genes {min_shared_genes}; "
            "check gene identifiers and species",
            file=reference_file,
        )
    labels = reference.obs[label_key].astype(str)
    sizes = labels.value_counts()
    small = sizes[sizes < min_cells_per_type]
    if len(small):
        logger.warning(
            "cell types with fewer than %d reference cells left out: %s",
            min_cells_per_type,
            ", ".join(f"{k} ({v})" for k, v in small.items()),
        )
    keep_types = sizes.index[sizes >= min_cells_per_type]
    if len(keep_types) < 2:
        raise TmeflowInputError(
            f"fewer than two cell types have at least {min_cells_per_type} reference cells; nothing to deconvolve",
            file=reference_file,
            column=label_key,
        )
    cells = labels.isin(keep_types).to_numpy()
    ref_index = reference.var_names.get_indexer(shared)
    sec_index = section.var_names.get_indexer(shared)
    ref = ad.AnnData(
        ref_counts[cells][:, ref_index],
        obs=pd.DataFrame({LABEL_KEY: pd.Categorical(labels[cells])}, index=reference.obs_names[cells]),
        var=pd.DataFrame(index=shared),
    )
    if "sample" in reference.obs.columns:
        ref.obs["sample"] = reference.obs["sample"].astype(str).to_numpy()[cells]
    spots = ad.AnnData(
        spot_counts[:, sec_index], obs=pd.DataFrame(index=section.obs_names), var=pd.DataFrame(index=shared)
    )
    logger.info(
        "deconvolution inputs: %d spots, %d reference cells of %d types, %d shared genes",
        spots.n_obs,
        ref.n_obs,
        len(keep_types),
        len(shared),
    )
    return spots, ref
