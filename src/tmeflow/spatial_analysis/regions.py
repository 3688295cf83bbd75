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
    """Summed deconvolved proportion of the ``malignant_types`` per spot, and the types matched."""
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
    """Spots within ``rings`` steps of each other on ``graph`` (no self loops)."""
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
    """tumour (malignant proportion >= ``threshold``, first-ring smoothed when ``smoothing``) / interface
    (within ``rings`` rings of a tumour spot) / stroma."""
    if smoothing:
        malignant = smooth(malignant, graph)
    tumour = malignant >= threshold
    near = rings_graph(graph, rings) @ tumour.astype(float) > 0
    return np.where(tumour, "tumour", np.where(near, "interface", "stroma"))


def read_region_annotation(path, adata) -> np.ndarray:
    """Regions per spot from a barcode -> region table (CSV/TSV; columns ``barcode`` and ``region``,
    else the first two columns)."""
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
    """Signed distance to the tumour boundary in spot spacings (< 0 inside tumour)."""
    from scipy.spatial import cKDTree

    distance = np.full(len(coords), np.nan)
    if tumour.any() and (~tumour).any():
        d_out, _ = cKDTree(coords[tumour]).query(coords[~tumour])
        d_in, _ = cKDTree(coords[~tumour]).query(coords[tumour])
        distance[~tumour] = d_out / spacing
        distance[tumour] = -d_in / spacing
    return distance
