"""The ``cell2location`` method (Kleshchevnikov et al. 2022) and the choice of device (``auto``)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..log import get_logger, progress_line, timed
from .inputs import LABEL_KEY, DeconvolutionSettings

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# cell2location
# ----------------------------------------------------------------------------------------------
def cuda_available() -> bool:
    """Say whether torch sees a CUDA GPU, importing torch only where the CUDA driver loads.

    On Linux, torch is imported only when the CUDA driver library (``libcuda.so.1``) loads: without it
    ``torch.cuda.is_available()`` is False, and importing torch to learn so costs ~4 s of CPU, a tenth of a
    small cohort's deconvolve stage (issue 23).

    Returns
    -------
    bool
        True when a CUDA GPU is usable.
    """
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            return False
    import torch

    return bool(torch.cuda.is_available())


def _cuda() -> bool:
    """Ask the package's :func:`cuda_available`, so that stubbing ``tmeflow.deconvolve.cuda_available`` decides."""
    from .. import deconvolve

    return bool(deconvolve.cuda_available())


def resolve_method(method: str) -> str:
    """Resolve ``deconvolution_method``: ``auto`` is cell2location on a CUDA GPU, else ``poisson`` (logged either way).

    Parameters
    ----------
    method
        ``auto``, ``poisson``, ``nnls`` or ``cell2location``.

    Returns
    -------
    str
        The method to run (``method`` itself unless ``auto``).
    """
    if method != "auto":
        return method
    if _cuda():
        logger.info("deconvolution_method auto: a CUDA GPU is visible, using cell2location")
        return "cell2location"
    logger.info("deconvolution_method auto: no CUDA GPU, using poisson (cell2location needs hours on a CPU)")
    return "poisson"


def epoch_logger(what: str, max_epochs: int, every: int | None = None):
    """Build a Lightning callback that logs epoch, ELBO loss and ETA (about 20 lines a run).

    Parameters
    ----------
    what
        The step named in the log line (e.g. ``cell2location reference``).
    max_epochs
        The epochs of the run.
    every
        Log every ``every`` epochs; None: ``max_epochs // 20``.

    Returns
    -------
    lightning.pytorch.callbacks.Callback
        The callback, to pass to the model's ``train``.
    """
    from lightning.pytorch.callbacks import Callback

    every = every or max(1, max_epochs // 20)

    class EpochLogger(Callback):
        def on_train_start(self, trainer, module) -> None:
            self.started = time.perf_counter()

        def on_train_epoch_end(self, trainer, module) -> None:
            epoch = trainer.current_epoch + 1
            if epoch % every and epoch != max_epochs:
                return
            elapsed = time.perf_counter() - self.started
            loss = trainer.callback_metrics.get("elbo_train", trainer.callback_metrics.get("train_loss_epoch"))
            loss_text = f"{float(loss):.4g}" if loss is not None else "n/a"
            logger.info("%s, ELBO loss %s", progress_line(f"{what}: epoch", epoch, max_epochs, elapsed), loss_text)

    return EpochLogger()


def choose_accelerator() -> str:
    """Choose the device cell2location trains on: the GPU when CUDA is available, else the CPU with a warning.

    Returns
    -------
    str
        ``gpu`` or ``cpu`` (a Lightning accelerator name).
    """
    import torch

    if _cuda():
        logger.info("cell2location: CUDA available, training on GPU (%s)", torch.cuda.get_device_name(0))
        return "gpu"
    logger.warning(
        "cell2location: no CUDA GPU available, training on CPU (slow; use the GPU profile or "
        "deconvolution_method poisson for large sections)"
    )
    return "cpu"


def c2l_gene_filter(ref: AnnData) -> np.ndarray:
    """Select the reference genes of the cell2location tutorial's ``filter_genes``.

    Parameters
    ----------
    ref
        The reference with raw counts in ``X``.

    Returns
    -------
    numpy.ndarray
        Boolean per gene: detected in >= 5 cells and (>= 3% of cells or mean non-zero count >= 1.12).
    """
    counts = sp.csr_matrix(ref.X)
    n_cells = np.asarray((counts > 0).sum(axis=0)).ravel()
    totals = np.asarray(counts.sum(axis=0)).ravel()
    nonzero_mean = totals / np.maximum(n_cells, 1)
    return (n_cells >= 5) & ((n_cells / ref.n_obs >= 0.03) | (nonzero_mean >= 1.12))


def cell2location_deconvolve(
    spots: AnnData, ref: AnnData, settings: DeconvolutionSettings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Estimate cell abundances with cell2location (Kleshchevnikov et al. 2022).

    Reference signatures from :class:`cell2location.models.RegressionModel`, then the spatial model
    :class:`cell2location.models.Cell2location`; see :mod:`tmeflow.deconvolve` for the settings used.

    Parameters
    ----------
    spots, ref
        The prepared section and reference (:func:`tmeflow.deconvolve.prepare_inputs`: shared genes, raw counts
        in ``X``, reference ``obs['cell_type']``).
    settings
        The stage settings (``DeconvolutionSettings.from_params(params)`` or ``.defaults()``);
        ``c2l_*`` and ``seed`` are used.

    Returns
    -------
    tuple[pandas.DataFrame, dict]
        Posterior-mean cells per spot and type (spots x types), and a summary (``method``, epochs, final ELBO,
        ``q05_abundance`` spots x types, ``signatures`` genes x types).
    """
    import scvi
    from cell2location.models import Cell2location, RegressionModel

    accelerator = choose_accelerator()
    scvi.settings.seed = settings.seed
    keep = c2l_gene_filter(ref)
    ref = ref[:, keep].copy()
    spots = spots[:, ref.var_names].copy()
    logger.info("cell2location: %d genes after the reference gene filter", ref.n_vars)
    batch_key = "sample" if "sample" in ref.obs.columns and ref.obs["sample"].nunique() > 1 else None
    with timed(logger, f"cell2location reference regression ({settings.c2l_ref_epochs} epochs, {accelerator})"):
        RegressionModel.setup_anndata(ref, labels_key=LABEL_KEY, batch_key=batch_key)
        ref_model = RegressionModel(ref)
        ref_model.train(
            max_epochs=settings.c2l_ref_epochs,
            batch_size=2500,
            train_size=1,
            lr=0.002,
            accelerator=accelerator,
            enable_progress_bar=False,
            callbacks=[epoch_logger("cell2location reference regression", settings.c2l_ref_epochs)],
        )
        ref = ref_model.export_posterior(
            ref,
            sample_kwargs={
                "num_samples": settings.c2l_posterior_samples,
                "batch_size": 2500,
                "accelerator": accelerator,
            },
        )
    signatures = ref.varm["means_per_cluster_mu_fg"].copy()
    signatures.columns = [c.removeprefix("means_per_cluster_mu_fg_") for c in signatures.columns]
    signatures = signatures[list(ref.obs[LABEL_KEY].cat.categories)]
    with timed(logger, f"cell2location spatial model ({settings.c2l_epochs} epochs, {accelerator})"):
        Cell2location.setup_anndata(spots)
        model = Cell2location(
            spots,
            cell_state_df=signatures,
            N_cells_per_location=settings.c2l_n_cells_per_spot,
            detection_alpha=settings.c2l_detection_alpha,
        )
        model.train(
            max_epochs=settings.c2l_epochs,
            batch_size=None,
            train_size=1,
            accelerator=accelerator,
            enable_progress_bar=False,
            callbacks=[epoch_logger("cell2location spatial model", settings.c2l_epochs)],
        )
        spots = model.export_posterior(
            spots,
            sample_kwargs={
                "num_samples": settings.c2l_posterior_samples,
                "batch_size": spots.n_obs,
                "accelerator": accelerator,
            },
        )
    names = model.factor_names_
    mean = pd.DataFrame(spots.obsm["means_cell_abundance_w_sf"].to_numpy(), index=spots.obs_names, columns=names)
    q05 = pd.DataFrame(spots.obsm["q05_cell_abundance_w_sf"].to_numpy(), index=spots.obs_names, columns=names)
    elbo = model.history["elbo_train"].to_numpy().ravel() if "elbo_train" in model.history else np.array([np.nan])
    info = {
        "method": "cell2location",
        "n_genes": int(ref.n_vars),
        "accelerator": accelerator,
        "final_elbo": float(elbo[-1]),
        "q05_abundance": q05,
        "signatures": signatures,
    }
    return mean, info
