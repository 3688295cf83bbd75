"""Spatial ligand-receptor co-expression (liana bivariate local scores) and its interface enrichment."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..log import get_logger
from ..spatial_qc import spot_spacing
from .common import _dense
from .neighbourhoods import interface_test

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Ligand-receptor
# ----------------------------------------------------------------------------------------------
def spatial_lr(
    adata: AnnData,
    regions: np.ndarray,
    vectors: np.ndarray | None = None,
    *,
    species: str = "human",
    local_metric: str = "product",
    min_prop: float = 0.05,
    fdr: float = 0.05,
) -> tuple[pd.DataFrame, Any]:
    """Score spatial ligand-receptor co-expression per spot and test its interface enrichment.

    liana bivariate local scores (``local_metric``; Gaussian kernel of bandwidth 1.5 spot spacings) over the
    species' bundled resource (``consensus`` / ``mouseconsensus``, as in ``tmeflow communication``) on pairs
    expressed in >= ``min_prop`` of spots, then :func:`interface_test`.

    Parameters
    ----------
    adata
        The section (log-normalised ``X``, ``obsm['spatial']``); not modified.
    regions
        Region per spot (``tumour``, ``interface``, ``stroma``).
    vectors
        Moran eigenvectors of the section's graph (:func:`section_eigenvectors`); None: no constrained null
        (p-values NaN) for sections above :data:`tmeflow.stats.MSR_MAX_SPOTS` spots.
    species
        ``human`` or ``mouse``: chooses the resource.
    local_metric
        liana's local metric (``lr_local_metric``; ``product`` grows with the amount of both partners).
    min_prop
        Fraction of spots that must express ligand and receptor (``lr_min_prop``).
    fdr
        ``interface_enriched`` at FDR < ``fdr`` (``lr_fdr``) with a positive difference.

    Returns
    -------
    tuple[pandas.DataFrame, AnnData]
        The interface test per interaction (:func:`interface_test`) and liana's spots x interactions AnnData of
        local scores (drawn on the tissue for the top pairs).
    """
    import anndata as ad
    import liana as li

    from ..communication import load_resource

    _, resource = load_resource(None, species, adata.var_names, stage="spatial_analysis")
    work = ad.AnnData(
        sp.csr_matrix(adata.X), obs=pd.DataFrame(index=adata.obs_names), var=pd.DataFrame(index=adata.var_names)
    )
    work.obsm["spatial"] = np.asarray(adata.obsm["spatial"], dtype=float)
    spacing = spot_spacing(work.obsm["spatial"])
    li.ut.spatial_neighbors(work, bandwidth=1.5 * spacing, cutoff=0.1, set_diag=True, key_added="lr")
    lrdata = li.mt.bivariate(
        work,
        resource=resource[["ligand", "receptor"]],
        local_name=local_metric,
        global_name=None,
        n_perms=None,
        nz_prop=min_prop,
        connectivity_key="lr_connectivities",
        use_raw=False,
        verbose=False,
    )
    table = interface_test(_dense(lrdata.X), list(lrdata.var_names), regions, vectors, fdr)
    return table, lrdata
