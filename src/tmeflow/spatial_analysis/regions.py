"""Regions of a section (tumour, interface, stroma): derived from the deconvolution or read from an annotation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..errors import TmeflowInputError
from ..log import get_logger
from ..spatial_qc import smooth
from .common import REGION_SYNONYMS, _match_types

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Regions
# ----------------------------------------------------------------------------------------------
def malignant_proportion(adata: AnnData, malignant_types: list[str]) -> tuple[np.ndarray, list[str]]:
    """Sum the deconvolved proportions of the malignant types per spot.

    Parameters
    ----------
    adata
        The deconvolved section (``obsm['deconvolution_proportions']``); not modified.
    malignant_types
        The malignant reference types (``malignant_cell_types``; case, spaces, '_' and '-' ignored).

    Returns
    -------
    tuple[numpy.ndarray, list[str]]
        The malignant proportion per spot and the types matched.

    Raises
    ------
    TmeflowInputError
        No deconvolution in the section, or none of ``malignant_types`` among its types.
    """
    if "deconvolution_proportions" not in adata.obsm:
        raise TmeflowInputError("section has no obsm['deconvolution_proportions']; run tmeflow deconvolve first")
    proportions = adata.obsm["deconvolution_proportions"]
    types = _match_types(malignant_types, list(proportions.columns))
    if not types:
        raise TmeflowInputError(
            f"none of malignant_cell_types ({', '.join(malignant_types)}) is a deconvolved cell type "
            f"({', '.join(map(str, proportions.columns))}); set --malignant_cell_types"
        )
    return proportions[types].sum(axis=1).to_numpy(dtype=float), types


def rings_graph(graph: sp.csr_matrix, rings: int) -> sp.csr_matrix:
    """Connect the spots within ``rings`` steps of each other on ``graph``.

    Parameters
    ----------
    graph
        Spots x spots first-ring adjacency.
    rings
        Steps (``interface_rings``).

    Returns
    -------
    scipy.sparse.csr_matrix
        Spots x spots adjacency within ``rings`` steps, no self loops.
    """
    reach = sp.identity(graph.shape[0], format="csr")
    step = sp.csr_matrix(graph, dtype=bool).astype(np.float32) + sp.identity(graph.shape[0], format="csr")
    for _ in range(max(1, rings)):
        reach = (reach @ step).astype(bool).astype(np.float32)
    reach = sp.csr_matrix(reach)
    reach.setdiag(0)
    reach.eliminate_zeros()
    return reach


def derive_regions(
    malignant: np.ndarray, graph: sp.csr_matrix, *, threshold: float, rings: int, smoothing: bool = True
) -> np.ndarray:
    """Derive tumour, interface and stroma regions from the malignant proportion.

    Parameters
    ----------
    malignant
        Malignant proportion per spot.
    graph
        Spots x spots first-ring adjacency.
    threshold
        Tumour at (smoothed) malignant proportion >= ``threshold`` (``tumour_threshold``).
    rings
        Interface: non-tumour spots within ``rings`` rings of a tumour spot (``interface_rings``).
    smoothing
        Average the proportion with the first-ring neighbours first (``region_smoothing``): deconvolution noise
        otherwise fragments the tumour.

    Returns
    -------
    numpy.ndarray
        ``tumour``, ``interface`` or ``stroma`` per spot.
    """
    if smoothing:
        malignant = smooth(malignant, graph)
    tumour = malignant >= threshold
    near = rings_graph(graph, rings) @ tumour.astype(float) > 0
    return np.where(tumour, "tumour", np.where(near, "interface", "stroma"))


def read_region_annotation(path: str | Path, adata: AnnData) -> np.ndarray:
    """Read a pathologist's region per spot from a barcode -> region table.

    Parameters
    ----------
    path
        CSV or TSV with columns ``barcode`` and ``region`` (else the first two columns); ``tumor``/``tumour``
        and other spellings unified (``REGION_SYNONYMS``).
    adata
        The section; its ``obs['barcode']`` (or ``obs_names``) are matched. Not modified.

    Returns
    -------
    numpy.ndarray
        ``tumour``, ``interface`` or ``stroma`` per spot.

    Raises
    ------
    TmeflowInputError
        A missing or unreadable table, fewer than two columns, a barcode annotated twice, or fewer than half of
        the section's spots in it (naming the file).
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("region annotation file not found", file=path)
    try:
        table = pd.read_csv(path, sep=None, engine="python", dtype=str)
    except (OSError, ValueError, pd.errors.ParserError) as error:
        raise TmeflowInputError(f"cannot read region annotation: {error}", file=path) from error
    columns = {c.lower(): c for c in table.columns}
    if table.shape[1] < 2:
        raise TmeflowInputError("region annotation needs a barcode and a region column", file=path)
    barcode = columns.get("barcode", table.columns[0])
    region = columns.get("region", table.columns[1])
    table = table[[barcode, region]].dropna()
    mapping = pd.Series(table[region].str.strip().to_numpy(), index=table[barcode].str.strip().to_numpy())
    if mapping.index.duplicated().any():
        raise TmeflowInputError(
            f"barcode {mapping.index[mapping.index.duplicated()][0]} annotated twice", file=path, column=barcode
        )
    spots = pd.Index(adata.obs["barcode"].astype(str) if "barcode" in adata.obs else adata.obs_names.astype(str))
    matched = spots.isin(mapping.index)
    if matched.sum() == 0:
        raise TmeflowInputError(
            f"none of the {len(spots)} spot barcodes of the section is in the region annotation "
            f"(e.g. section {spots[0]}, annotation {mapping.index[0]})",
            file=path,
            column=barcode,
        )
    if matched.mean() < 0.5:
        raise TmeflowInputError(
            f"only {int(matched.sum())} of {len(spots)} spot barcodes are in the region annotation; "
            "barcodes do not match the section",
            file=path,
            column=barcode,
        )
    unknown = mapping.index.difference(spots)
    if len(unknown):
        logger.info("%d annotated barcodes are not among the section's kept spots (filtered by QC?)", len(unknown))
    labels = mapping.reindex(spots).fillna("unannotated").to_numpy(dtype=object)
    return np.array([REGION_SYNONYMS.get(str(v).lower(), str(v)) for v in labels], dtype=object)


def signed_distance(coords: np.ndarray, tumour: np.ndarray, spacing: float) -> np.ndarray:
    """Compute each spot's signed distance to the tumour boundary in spot spacings.

    Parameters
    ----------
    coords
        Spots x 2 coordinates.
    tumour
        Boolean per spot.
    spacing
        Spot spacing in coordinate units (:func:`tmeflow.spatial_qc.spot_spacing`).

    Returns
    -------
    numpy.ndarray
        Negative inside tumour (distance to the nearest non-tumour spot), positive outside (distance to the
        nearest tumour spot); NaN everywhere without tumour or without non-tumour spots.
    """
    from scipy.spatial import cKDTree

    distance = np.full(len(coords), np.nan)
    if tumour.any() and (~tumour).any():
        d_out, _ = cKDTree(coords[tumour]).query(coords[~tumour])
        d_in, _ = cKDTree(coords[~tumour]).query(coords[tumour])
        distance[~tumour] = d_out / spacing
        distance[tumour] = -d_in / spacing
    return distance
