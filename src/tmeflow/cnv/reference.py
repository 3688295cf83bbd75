"""The CNV reference and candidate cells, and the pynndescent dependency trap."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

from ..log import get_logger
from .positions import MIN_CELLS_PER_REFERENCE_TYPE
from .settings import CnvSettings

logger = get_logger(__package__)


# ----------------------------------------------------------------------------------------------
# Dependency trap
# ----------------------------------------------------------------------------------------------
def _version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def dependency_problem() -> str | None:
    """Say why scanpy's pynndescent neighbours would crash here (None when the versions are known-good).

    Returns
    -------
    str or None
        A one-line explanation naming the installed pynndescent or scipy version and the known-good pin, or None.
    """
    import pynndescent
    import scipy

    if _version_tuple(pynndescent.__version__) >= (0, 7):
        return (
            f"pynndescent {pynndescent.__version__} returns sparse arrays that scanpy 1.11 cannot read "
            "('csr_array' object has no attribute 'getnnz'); pin pynndescent==0.5.13"
        )
    if _version_tuple(scipy.__version__) >= (1, 17):
        return f"scipy {scipy.__version__} is untested with infercnvpy 0.6.1 (known-good: 1.16.3)"
    return None


def neighbour_transformer() -> str | None:
    """Choose the neighbour search of the CNV graph, avoiding a known-bad pynndescent.

    Returns
    -------
    str or None
        ``None`` (scanpy's default, pynndescent on large data) or ``'sklearn'`` when pynndescent is a known-bad
        version (with a warning).
    """
    problem = dependency_problem()
    if problem and problem.startswith("pynndescent"):
        logger.warning("%s; using scikit-learn exact neighbours for the CNV graph instead", problem)
        return "sklearn"
    return None


# ----------------------------------------------------------------------------------------------
# Reference and candidates
# ----------------------------------------------------------------------------------------------
def _in_list(values: pd.Series, items: list[str]) -> np.ndarray:
    wanted = {item.lower() for item in items}
    return values.astype(str).str.strip().str.lower().isin(wanted).to_numpy()


def _candidate_like(obs: pd.DataFrame, settings: CnvSettings) -> np.ndarray:
    mask: np.ndarray = np.zeros(len(obs), dtype=bool)
    compartments = settings.candidate_compartments
    if compartments and "compartment" in obs.columns:
        mask |= _in_list(obs["compartment"], compartments)
    types = settings.candidate_types
    if types:
        mask |= _in_list(obs["cell_type"], types)
    return mask


def normal_tissue_mask(obs: pd.DataFrame, settings: CnvSettings) -> np.ndarray:
    """Mark the candidate-like cells (e.g. epithelium) of samples whose condition is a normal tissue.

    Parameters
    ----------
    obs
        Cell table (``cell_type``; ``compartment`` and ``condition`` when present).
    settings
        ``cnv_options`` (candidate compartments/types and normal conditions; case-insensitive).

    Returns
    -------
    numpy.ndarray
        Boolean per cell.
    """
    conditions = settings.normal_conditions
    if not conditions or "condition" not in obs.columns:
        return np.zeros(len(obs), dtype=bool)
    return _candidate_like(obs, settings) & _in_list(obs["condition"], conditions)


def reference_mask(obs: pd.DataFrame, settings: CnvSettings) -> np.ndarray:
    """Mark the reference cells: the cell types of ``cnv_reference_types`` and candidate-like normal-tissue cells.

    Parameters
    ----------
    obs
        Cell table (``cell_type``; ``compartment`` and ``condition`` when present).
    settings
        ``cnv_options`` (reference types, candidate compartments/types, normal conditions; case-insensitive).

    Returns
    -------
    numpy.ndarray
        Boolean per cell.
    """
    return _in_list(obs["cell_type"], settings.reference_types) | normal_tissue_mask(obs, settings)


def candidate_mask(obs: pd.DataFrame, settings: CnvSettings) -> np.ndarray:
    """Mark the candidate cells: ``cnv_candidate_compartments`` / ``cnv_candidate_types``, never reference cells.

    Parameters
    ----------
    obs
        Cell table (``cell_type``; ``compartment`` and ``condition`` when present).
    settings
        ``cnv_options``.

    Returns
    -------
    numpy.ndarray
        Boolean per cell.
    """
    return _candidate_like(obs, settings) & ~reference_mask(obs, settings)


def reference_plan(obs: pd.DataFrame, is_reference: np.ndarray, min_reference_cells: int) -> pd.DataFrame:
    """Plan the inference group of every patient: its own reference, or the cohort's.

    Parameters
    ----------
    obs
        Cell table (``patient``).
    is_reference
        Boolean per cell: reference cells (:func:`reference_mask`).
    min_reference_cells
        ``cnv_min_reference_cells``: a patient with at least this many reference cells uses its own.

    Returns
    -------
    pandas.DataFrame
        One row per patient: ``patient``, ``n_cells``, ``n_reference_cells``, ``reference`` (``patient`` or
        ``cohort``), ``reference_cells_used``.
    """
    patients = obs["patient"].astype(str)
    rows = []
    for patient in pd.unique(patients):
        in_patient = (patients == patient).to_numpy()
        n_ref = int((is_reference & in_patient).sum())
        rows.append(
            {
                "patient": patient,
                "n_cells": int(in_patient.sum()),
                "n_reference_cells": n_ref,
                "reference": "patient" if n_ref >= min_reference_cells else "cohort",
            }
        )
    plan = pd.DataFrame(rows)
    n_cohort_ref = int(is_reference.sum())
    plan["reference_cells_used"] = np.where(plan["reference"] == "patient", plan["n_reference_cells"], n_cohort_ref)
    return plan


def reference_profiles(X, cell_types: pd.Series, is_reference: np.ndarray) -> tuple[np.ndarray, list[str]]:
    """Average the expression of each reference cell type (infercnvpy's several references, "bounded" difference).

    Parameters
    ----------
    X
        Cells x genes log-normalised expression (dense, sparse or an h5ad's backed CSR dataset: the reference cells'
        rows are read).
    cell_types
        Cell type per cell.
    is_reference
        Boolean per cell: the reference cells to average.

    Returns
    -------
    tuple
        ``(types x genes mean profiles, type names)`` for types with at least ``MIN_CELLS_PER_REFERENCE_TYPE``
        cells; the pooled mean (``['pooled']``) when no type has that many.
    """
    types = cell_types.astype(str).to_numpy()
    kept = []
    rows = []
    for cell_type in pd.unique(types[is_reference]):
        mask = is_reference & (types == cell_type)
        if mask.sum() >= MIN_CELLS_PER_REFERENCE_TYPE:
            kept.append(str(cell_type))
            rows.append(np.asarray(X[np.flatnonzero(mask)].mean(axis=0)).ravel())
    if not rows:
        return np.asarray(X[np.flatnonzero(is_reference)].mean(axis=0)).ravel()[np.newaxis, :], ["pooled"]
    return np.vstack(rows), kept
