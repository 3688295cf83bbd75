"""Batch correction: Harmony on the PCs or scVI on the counts."""

from __future__ import annotations

import numpy as np
import pandas as pd
from anndata import AnnData

from ..log import get_logger, timed
from .settings import REPRESENTATION, IntegrationSettings

logger = get_logger(__name__)


def harmony(pcs: np.ndarray, obs: pd.DataFrame, batch_key: str, seed: int) -> np.ndarray:
    """Correct PCs for batch with Harmony (Korsunsky et al. 2019, Nat Methods; :func:`harmonypy.run_harmony`).

    Parameters
    ----------
    pcs
        Cells x PCs.
    obs
        Cell metadata with ``batch_key``.
    batch_key
        The batch column.
    seed
        Harmony's random state.

    Returns
    -------
    numpy.ndarray
        Corrected PCs, cells x PCs, float32 (whatever orientation harmonypy returns).
    """
    import harmonypy

    result = harmonypy.run_harmony(np.asarray(pcs, dtype=np.float64), obs[[batch_key]].astype(str), [batch_key],
                                   random_state=seed, verbose=False)  # fmt: skip
    corrected = result.Z_corr
    corrected = corrected.cpu().numpy() if hasattr(corrected, "cpu") else np.asarray(corrected)
    if corrected.shape[0] != pcs.shape[0]:  # harmonypy < 0.2 returns PCs x cells
        corrected = corrected.T
    return corrected.astype(np.float32)


def scvi_latent(adata: AnnData, batch_key: str, *, n_latent: int, max_epochs: int, seed: int) -> np.ndarray:
    """Train scVI (Lopez et al. 2018, Nat Methods) on the HVG counts and return its latent space.

    On the GPU when :func:`torch.cuda.is_available`, else on the CPU with a warning. Two layers, negative-binomial
    likelihood, ``batch_key`` as the batch covariate.

    Parameters
    ----------
    adata
        Cells with ``layers['counts']`` and ``var['highly_variable']``.
    batch_key
        The batch column.
    n_latent
        Latent dimensions (``scvi_n_latent``).
    max_epochs
        Training epochs (``scvi_max_epochs``).
    seed
        ``scvi.settings.seed``.

    Returns
    -------
    numpy.ndarray
        Cells x ``n_latent`` latent representation, float32.
    """
    import scvi
    import torch

    scvi.settings.seed = seed
    use_gpu = torch.cuda.is_available()
    if not use_gpu:
        logger.warning("no CUDA GPU: training scVI on the CPU (slow on large cohorts; use the GPU profile)")
    hvg = adata[:, adata.var["highly_variable"].to_numpy()].copy()
    hvg.obs = hvg.obs[[batch_key]].astype(str).astype("category")
    scvi.model.SCVI.setup_anndata(hvg, layer="counts", batch_key=batch_key)
    model = scvi.model.SCVI(hvg, n_latent=n_latent, n_layers=2, gene_likelihood="nb")
    model.train(max_epochs=max_epochs, accelerator="gpu" if use_gpu else "cpu", devices=1,
                enable_progress_bar=False)  # fmt: skip
    return np.asarray(model.get_latent_representation(), dtype=np.float32)


def correct(adata: AnnData, settings: IntegrationSettings) -> str:
    """Run the chosen batch correction; a single-batch cohort is not corrected (warning).

    Parameters
    ----------
    adata
        Cells with ``obsm['X_pca']`` (and counts and HVGs for scVI).
    settings
        ``batch_correction`` (``harmony``, ``scvi`` or ``none``), ``batch_key``, ``n_pcs``, the scVI settings, ``seed``.

    Returns
    -------
    str
        The obsm key of the embedding to use downstream (``X_pca_harmony``, ``X_scVI`` or ``X_pca``).

    Adds
    ----
    ``obsm['X_pca_harmony']`` or ``obsm['X_scVI']``
        The corrected embedding (nothing without correction).
    """
    method, batch_key, n_pcs = settings.batch_correction, settings.batch_key, settings.n_pcs
    n_pcs = min(n_pcs, adata.obsm["X_pca"].shape[1])
    n_batches = adata.obs[batch_key].nunique()
    if method != "none" and n_batches < 2:
        logger.warning(
            "batch_correction %s requested but the cohort has a single %s; not correcting", method, batch_key
        )
        method = "none"
    if method == "harmony":
        with timed(logger, f"Harmony on {n_pcs} PCs over {n_batches} levels of '{batch_key}'"):
            adata.obsm["X_pca_harmony"] = harmony(adata.obsm["X_pca"][:, :n_pcs], adata.obs, batch_key, settings.seed)
    elif method == "scvi":
        with timed(logger, f"scVI ({settings.scvi_max_epochs} epochs) over {n_batches} levels of '{batch_key}'"):
            adata.obsm["X_scVI"] = scvi_latent(
                adata,
                batch_key,
                n_latent=settings.scvi_n_latent,
                max_epochs=settings.scvi_max_epochs,
                seed=settings.seed,
            )
    return REPRESENTATION[method]
