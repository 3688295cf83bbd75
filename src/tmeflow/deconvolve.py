"""Deconvolution of spatial spots into the single-cell reference's cell types.

Methods (``deconvolution_method``); ``auto`` (the default) is cell2location when a CUDA GPU is
visible (the ``process_gpu`` path) and ``poisson`` otherwise, with one log line saying which and why:

``poisson`` (the CPU default; RCTD-style, Cable et al. 2022, Nat Biotechnol 40:517)
    Spot counts on the informative genes (as for ``nnls``) are Poisson with rate
    ``sum_k a_k m_gk exp(gamma_g)``: ``m_gk`` the type's mean raw counts per cell in the reference,
    ``gamma_g`` a per-gene platform effect between the single-cell assay and the section (a random
    effect, ``N(0, 1)``, estimated once on the summed section as RCTD does), ``a_k`` the spot's cell
    abundances, fitted by maximum likelihood (multiplicative updates; seconds to a minute per section).
    Chosen by measurement (``benchmarks/deconvolution_real.py``, ``benchmarks/deconvolution_simulated.py``):
    on the real MSTI breast section with the CID4465 reference its proportions agree better with each
    type's reference-marker score than NNLS's (mean Spearman 0.54 vs 0.45 over 9 types), and on
    simulated sections with platform effects, a held-out patient and low depth it is closer to the
    planted proportions than NNLS in every scenario.

``cell2location`` (Kleshchevnikov et al. 2022, Nat Biotechnol 40:661)
    1. Reference signatures: :class:`cell2location.models.RegressionModel` (negative-binomial
       regression of the reference counts on ``cell_type``, with the reference ``sample`` as batch
       when it has several) on genes detected in enough reference cells (the tutorial's
       ``filter_genes`` criteria: >= 5 cells, and >= 3% of cells or mean non-zero count >= 1.12),
       ``c2l_ref_epochs`` epochs; posterior means of the per-type expression.
    2. Spatial model :class:`cell2location.models.Cell2location` on the section's counts with
       ``N_cells_per_location = c2l_n_cells_per_spot`` and ``detection_alpha = c2l_detection_alpha``,
       ``c2l_epochs`` epochs (full-data batches), ``c2l_posterior_samples`` posterior samples.
       Abundances are the posterior means of cells per spot and type (``q05`` kept beside them).
    Runs on the GPU when :func:`torch.cuda.is_available`, else on the CPU with a logged warning.

``nnls`` (fast, non-Bayesian; Lawson-Hanson non-negative least squares, as in SPOTlight/MuSiC-style
signature regression)
    1. Signatures: mean raw counts per reference cell type (so that a type's larger or smaller
       libraries are part of its signature and coefficients are cell numbers up to one global
       capture factor) over ``nnls_n_markers`` informative genes per type: genes detected in >= 10% of
       the type's cells with the largest log2 fold change of the type's mean normalised expression
       over the mean of the other types.
    2. Each spot's counts on those genes are regressed on the signatures with non-negative
       coefficients (rows weighted by 1/sqrt(mean signature), a Poisson-like variance stabilisation).
       Abundances are the coefficients, proportions the abundances normalised to sum 1.

Every method writes ``obsm['deconvolution_abundance']`` / ``obsm['deconvolution_proportions']`` (spots x
types DataFrames), ``obs['prop_<type>']``, ``obs['dominant_type']``, tables, and plots on the tissue (proportions,
and abundances, which keep the spot's cellularity: on the MSTI section the epithelial abundance follows the
H&E's stained epithelium better than the proportion or the marker score, ``benchmarks/deconvolution_real.py``); with
a ``cell_type_fine`` column in the reference also ``obsm['deconvolution_proportions_fine']`` (subtypes).

A marker-score baseline guards every section: each reference type's score (scanpy ``score_genes`` of its
``MARKER_BASELINE_GENES`` informative genes on the log-normalised spots) is written beside the proportions,
with Spearman's rho between a type's proportion and its score; a type whose rho falls below
``deconv_min_agreement`` gets a warning in the log and in the report's agreement table.

Input checks (one-line :class:`TmeflowInputError`, exit 2): no ``cell_type`` column in the
reference; a reference without counts (no ``layers['counts']`` and a non-integer ``X``); fewer
genes shared by section and reference than ``deconv_min_shared_genes``; fewer than two cell types
with at least ``deconv_min_cells_per_type`` cells.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from . import io
from .errors import TmeflowInputError
from .log import get_logger, progress_line, timed
from .settings import StageSettings
from .spatial_qc import plot_on_tissue

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
    values = values[: 2_000_000]
    return bool(values.size == 0 or (np.all(values >= 0) and np.all(np.abs(values - np.round(values)) < 1e-6)))


def reference_counts(reference, *, file: str | None = None) -> sp.csr_matrix:
    """Raw counts of the reference: ``layers['counts']``, else an integer-valued ``X``."""
    if "counts" in reference.layers:
        matrix = reference.layers["counts"]
        if not _is_integer_matrix(matrix):
            raise TmeflowInputError("reference layers['counts'] holds non-integer values; deconvolution needs raw counts",
                                    file=file)
    elif _is_integer_matrix(reference.X):
        matrix = reference.X
    else:
        raise TmeflowInputError("reference has no raw counts (no layers['counts'] and X is not integer counts); "
                                "give the atlas with raw counts", file=file)
    return sp.csr_matrix(matrix, dtype=np.float32)


def section_counts(adata, *, file: str | None = None) -> sp.csr_matrix:
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
    deconv_min_agreement: float
    nnls_n_markers: int
    c2l_ref_epochs: int
    c2l_epochs: int
    c2l_n_cells_per_spot: float
    c2l_detection_alpha: float
    c2l_posterior_samples: int
    seed: int


def prepare_inputs(section: AnnData, reference: AnnData, *, min_shared_genes: int, min_cells_per_type: int,
                   section_file: str | None = None, reference_file: str | None = None,
                   label_key: str = LABEL_KEY) -> tuple[AnnData, AnnData]:
    """Check inputs; return (section, reference) restricted to shared genes with counts in ``X``,
    reference cells restricted to types (``label_key``, stored as ``cell_type``) with at least
    ``min_cells_per_type`` cells. Fewer than ``min_shared_genes`` shared genes, or fewer than two types
    left, is a :class:`TmeflowInputError`."""
    import anndata as ad

    if label_key not in reference.obs.columns:
        raise TmeflowInputError(f"reference has no obs column '{label_key}' (the cell-type labels to deconvolve into)",
                                file=reference_file, column=label_key)
    ref_counts = reference_counts(reference, file=reference_file)
    spot_counts = section_counts(section, file=section_file)
    shared = section.var_names.intersection(reference.var_names, sort=False)
    if len(shared) < min_shared_genes:
        raise TmeflowInputError(
            f"only {len(shared)} genes are shared by the section ({section.n_vars} genes) and the reference "
            f"({reference.n_vars} genes), fewer than deconv_min_shared_genes {min_shared_genes}; check gene identifiers and species",
            file=reference_file)
    labels = reference.obs[label_key].astype(str)
    sizes = labels.value_counts()
    small = sizes[sizes < min_cells_per_type]
    if len(small):
        logger.warning("cell types with fewer than %d reference cells left out: %s", min_cells_per_type,
                       ", ".join(f"{k} ({v})" for k, v in small.items()))
    keep_types = sizes.index[sizes >= min_cells_per_type]
    if len(keep_types) < 2:
        raise TmeflowInputError(f"fewer than two cell types have at least {min_cells_per_type} reference "
                                "cells; nothing to deconvolve", file=reference_file, column=label_key)
    cells = labels.isin(keep_types).to_numpy()
    ref_index = reference.var_names.get_indexer(shared)
    sec_index = section.var_names.get_indexer(shared)
    ref = ad.AnnData(ref_counts[cells][:, ref_index], obs=pd.DataFrame({LABEL_KEY: pd.Categorical(labels[cells])},
                                                                        index=reference.obs_names[cells]),
                     var=pd.DataFrame(index=shared))
    if "sample" in reference.obs.columns:
        ref.obs["sample"] = reference.obs["sample"].astype(str).to_numpy()[cells]
    spots = ad.AnnData(spot_counts[:, sec_index], obs=pd.DataFrame(index=section.obs_names), var=pd.DataFrame(index=shared))
    logger.info("deconvolution inputs: %d spots, %d reference cells of %d types, %d shared genes",
                spots.n_obs, ref.n_obs, len(keep_types), len(shared))
    return spots, ref


# ----------------------------------------------------------------------------------------------
# NNLS
# ----------------------------------------------------------------------------------------------
def type_means(ref) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Per type: mean raw counts, mean normalised (per 10,000) expression and detection rate (genes x types)."""
    counts = sp.csr_matrix(ref.X)
    size = np.asarray(counts.sum(axis=1)).ravel()
    normalised = sp.diags(TARGET_SUM / np.maximum(size, 1.0)) @ counts
    detected = counts.copy()
    detected.data = (detected.data > 0).astype(np.float32)
    types = list(ref.obs[LABEL_KEY].cat.categories)
    codes = ref.obs[LABEL_KEY].cat.codes.to_numpy()
    indicator = sp.csr_matrix((np.ones(len(codes)), (codes, np.arange(len(codes)))), shape=(len(types), len(codes)))
    n = np.asarray(indicator.sum(axis=1)).ravel()[:, None]
    frames = []
    for matrix in (counts, normalised, detected):
        mean = np.asarray((indicator @ matrix).todense()) / n
        frames.append(pd.DataFrame(mean.T, index=ref.var_names, columns=types))
    return frames[0], frames[1], frames[2]


def type_markers(norm_means: pd.DataFrame, detection: pd.DataFrame, cell_type: str, n_markers: int) -> list[str]:
    """The ``n_markers`` genes with the largest log2 fold change of ``cell_type`` over the mean of the
    other types, among genes detected in >= 10% of the type's cells."""
    others = norm_means.drop(columns=cell_type).mean(axis=1) if norm_means.shape[1] > 1 else norm_means[cell_type] * 0
    lfc = np.log2(norm_means[cell_type] + 0.1) - np.log2(others + 0.1)
    lfc = lfc[(detection[cell_type] >= MARKER_MIN_DETECTION) & (lfc > 0)]
    return list(lfc.sort_values(ascending=False).index[:n_markers])


def informative_genes(norm_means: pd.DataFrame, detection: pd.DataFrame, n_markers: int) -> list[str]:
    """Union over types of each type's :func:`type_markers`."""
    genes: dict[str, None] = {}
    for cell_type in norm_means.columns:
        genes.update(dict.fromkeys(type_markers(norm_means, detection, cell_type, n_markers)))
    return list(genes)


def nnls_deconvolve(spots: AnnData, ref: AnnData, settings: DeconvolutionSettings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """NNLS abundances (spots x types) and a summary of what was used."""
    from scipy.optimize import nnls

    raw_means, norm_means, detection = type_means(ref)
    genes = informative_genes(norm_means, detection, settings.nnls_n_markers)
    if len(genes) < raw_means.shape[1]:
        raise TmeflowInputError(f"only {len(genes)} informative genes for {raw_means.shape[1]} cell types; "
                                "the reference and the section share too few marker genes")
    signatures = raw_means.loc[genes].to_numpy(dtype=float)
    weights = 1.0 / np.sqrt(signatures.mean(axis=1) + 1e-3)
    design = signatures * weights[:, None]
    y = np.asarray(spots[:, genes].X.todense(), dtype=float) * weights[None, :]
    coefficients = np.zeros((spots.n_obs, signatures.shape[1]))
    residuals = np.zeros(spots.n_obs)
    for i in range(spots.n_obs):
        coefficients[i], residuals[i] = nnls(design, y[i])
    abundance = pd.DataFrame(coefficients, index=spots.obs_names, columns=raw_means.columns)
    info = {"method": "nnls", "n_genes": len(genes), "genes": genes,
            "median_relative_residual": float(np.median(residuals / np.maximum(np.linalg.norm(y, axis=1), 1e-9)))}
    return abundance, info


# ----------------------------------------------------------------------------------------------
# Poisson model with per-gene platform effects (RCTD-style)
# ----------------------------------------------------------------------------------------------
PLATFORM_SD = 1.0
MAX_ITERATIONS = 2_000
TOLERANCE = 1e-6


def platform_effects(bulk: np.ndarray, signatures: np.ndarray, *, sd: float = PLATFORM_SD,
                     rounds: int = 25) -> tuple[np.ndarray, np.ndarray]:
    """Per-gene platform effects ``gamma`` and bulk abundances ``b`` of the summed section.

    Fits ``bulk_g ~ Poisson(exp(gamma_g) * sum_k b_k signatures_gk)`` with ``gamma_g ~ N(0, sd^2)``
    (the random effect of RCTD's platform-effect step, Cable et al. 2022, Nat Biotechnol 40:517) by
    alternating: ``b`` by multiplicative Poisson updates given ``gamma``; each ``gamma_g`` by Newton steps
    on its penalised log-likelihood given ``b``.
    """
    gamma = np.zeros(bulk.shape[0])
    b = np.full(signatures.shape[1], bulk.sum() / max(signatures.sum(), 1e-12))
    for _ in range(rounds):
        scaled = signatures * np.exp(gamma)[:, None]
        b = poisson_weights(bulk[None, :], scaled, start=b[None, :], max_iterations=200)[0]
        base = signatures @ b
        for _ in range(5):  # Newton on  bulk*gamma - base*exp(gamma) - gamma^2 / (2 sd^2)
            rate = base * np.exp(gamma)
            gradient = bulk - rate - gamma / sd**2
            gamma = gamma + np.clip(gradient / (rate + 1.0 / sd**2), -1.0, 1.0)
    return gamma, b


def poisson_weights(counts: np.ndarray, signatures: np.ndarray, *, start: np.ndarray | None = None,
                    max_iterations: int = MAX_ITERATIONS, tolerance: float = TOLERANCE,
                    progress: str | None = None) -> np.ndarray:
    """Non-negative ``W`` (rows x types) maximising the Poisson likelihood of ``counts ~ W @ signatures.T``.

    Lee-Seung multiplicative updates for the generalised KL divergence with the dictionary fixed (each
    update raises the likelihood; Lee & Seung 2001), stopped when the mean log-likelihood per count
    changes by less than ``tolerance`` (relative).
    """
    counts = np.asarray(counts, dtype=float)
    column_sums = signatures.sum(axis=0)
    weights = (np.array(start, dtype=float) if start is not None
               else np.outer(counts.sum(axis=1), np.full(signatures.shape[1], 1.0 / signatures.shape[1]))
               / max(column_sums.mean(), 1e-12))
    weights = np.maximum(weights, 1e-10)
    previous = -np.inf
    started = time.perf_counter()
    for iteration in range(1, max_iterations + 1):
        rates = np.maximum(weights @ signatures.T, 1e-12)
        weights *= ((counts / rates) @ signatures) / column_sums
        if iteration % 25 == 0 or iteration == max_iterations:
            rates = np.maximum(weights @ signatures.T, 1e-12)
            loglik = float((counts * np.log(rates) - rates).sum() / max(counts.sum(), 1.0))
            if progress and iteration % 250 == 0:
                logger.info("%s: iteration %d, log-likelihood per count %.5f, %.0f s", progress, iteration, loglik,
                            time.perf_counter() - started)
            if abs(loglik - previous) < tolerance * max(abs(loglik), 1.0):
                break
            previous = loglik
    return weights


def poisson_deconvolve(spots: AnnData, ref: AnnData, settings: DeconvolutionSettings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Cell abundances (spots x types) under a Poisson model with per-gene platform effects.

    Spot counts on the informative genes are ``y_sg ~ Poisson(sum_k a_sk m_gk exp(gamma_g))`` with
    ``m_gk`` the type's mean raw counts per cell in the reference (so ``a`` are cell numbers up to one
    capture factor) and ``gamma_g`` the gene's platform effect between the reference assay and the
    section, estimated once on the summed section (:func:`platform_effects`), as RCTD does (Cable et
    al. 2022). ``a`` is then the Poisson maximum-likelihood fit per spot (:func:`poisson_weights`).
    """
    raw_means, norm_means, detection = type_means(ref)
    genes = informative_genes(norm_means, detection, settings.nnls_n_markers)
    if len(genes) < raw_means.shape[1]:
        raise TmeflowInputError(f"only {len(genes)} informative genes for {raw_means.shape[1]} cell types; "
                                "the reference and the section share too few marker genes")
    signatures = raw_means.loc[genes].to_numpy(dtype=float) + 1e-6
    counts = np.asarray(spots[:, genes].X.todense(), dtype=float)
    gamma, _ = platform_effects(counts.sum(axis=0), signatures)
    adjusted = signatures * np.exp(gamma)[:, None]
    abundance = poisson_weights(counts, adjusted, progress=f"poisson deconvolution of {spots.n_obs} spots")
    info = {"method": "poisson", "n_genes": len(genes), "genes": genes,
            "platform_effect_sd": float(np.std(gamma)),
            "platform_effects": pd.Series(gamma, index=genes, name="platform_effect")}
    return pd.DataFrame(abundance, index=spots.obs_names, columns=raw_means.columns), info


# ----------------------------------------------------------------------------------------------
# cell2location
# ----------------------------------------------------------------------------------------------
def cuda_available() -> bool:
    """Whether torch sees a CUDA GPU. On Linux, torch is imported only when the CUDA driver library
    (``libcuda.so.1``) loads: without it ``torch.cuda.is_available()`` is False, and importing torch
    to learn so costs ~4 s of CPU, a tenth of a small cohort's deconvolve stage (issue 23)."""
    import ctypes
    import sys

    if sys.platform.startswith("linux"):
        try:
            ctypes.CDLL("libcuda.so.1")
        except OSError:
            return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_method(method: str) -> str:
    """``auto``: cell2location on a CUDA GPU, else the CPU method ``poisson``; logged either way."""
    if method != "auto":
        return method
    if cuda_available():
        logger.info("deconvolution_method auto: a CUDA GPU is visible, using cell2location")
        return "cell2location"
    logger.info("deconvolution_method auto: no CUDA GPU, using poisson (cell2location needs hours on a CPU)")
    return "poisson"


def epoch_logger(what: str, max_epochs: int, every: int | None = None):
    """A Lightning callback logging epoch, ELBO loss and ETA every ``every`` epochs (about 20 lines a run)."""
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
    """``gpu`` when CUDA is available (:func:`cuda_available`), else ``cpu`` with a warning."""
    import torch

    if cuda_available():
        logger.info("cell2location: CUDA available, training on GPU (%s)", torch.cuda.get_device_name(0))
        return "gpu"
    logger.warning("cell2location: no CUDA GPU available, training on CPU (slow; use the GPU profile or "
                   "deconvolution_method poisson for large sections)")
    return "cpu"


def c2l_gene_filter(ref) -> np.ndarray:
    """cell2location tutorial gene filter: detected in >= 5 cells and (>= 3% of cells or mean non-zero >= 1.12)."""
    counts = sp.csr_matrix(ref.X)
    n_cells = np.asarray((counts > 0).sum(axis=0)).ravel()
    totals = np.asarray(counts.sum(axis=0)).ravel()
    nonzero_mean = totals / np.maximum(n_cells, 1)
    return (n_cells >= 5) & ((n_cells / ref.n_obs >= 0.03) | (nonzero_mean >= 1.12))


def cell2location_deconvolve(spots: AnnData, ref: AnnData,
                             settings: DeconvolutionSettings) -> tuple[pd.DataFrame, dict[str, Any]]:
    """cell2location abundances (posterior means, spots x types) and a summary."""
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
        ref_model.train(max_epochs=settings.c2l_ref_epochs, batch_size=2500, train_size=1, lr=0.002,
                        accelerator=accelerator, enable_progress_bar=False,
                        callbacks=[epoch_logger("cell2location reference regression", settings.c2l_ref_epochs)])
        ref = ref_model.export_posterior(ref, sample_kwargs={"num_samples": settings.c2l_posterior_samples,
                                                             "batch_size": 2500, "accelerator": accelerator})
    signatures = ref.varm["means_per_cluster_mu_fg"].copy()
    signatures.columns = [c.removeprefix("means_per_cluster_mu_fg_") for c in signatures.columns]
    signatures = signatures[list(ref.obs[LABEL_KEY].cat.categories)]
    with timed(logger, f"cell2location spatial model ({settings.c2l_epochs} epochs, {accelerator})"):
        Cell2location.setup_anndata(spots)
        model = Cell2location(spots, cell_state_df=signatures, N_cells_per_location=settings.c2l_n_cells_per_spot,
                              detection_alpha=settings.c2l_detection_alpha)
        model.train(max_epochs=settings.c2l_epochs, batch_size=None, train_size=1, accelerator=accelerator,
                    enable_progress_bar=False, callbacks=[epoch_logger("cell2location spatial model", settings.c2l_epochs)])
        spots = model.export_posterior(spots, sample_kwargs={"num_samples": settings.c2l_posterior_samples,
                                                             "batch_size": spots.n_obs, "accelerator": accelerator})
    names = model.factor_names_
    mean = pd.DataFrame(spots.obsm["means_cell_abundance_w_sf"].to_numpy(), index=spots.obs_names, columns=names)
    q05 = pd.DataFrame(spots.obsm["q05_cell_abundance_w_sf"].to_numpy(), index=spots.obs_names, columns=names)
    elbo = model.history["elbo_train"].to_numpy().ravel() if "elbo_train" in model.history else np.array([np.nan])
    info = {"method": "cell2location", "n_genes": int(ref.n_vars), "accelerator": accelerator,
            "final_elbo": float(elbo[-1]), "q05_abundance": q05, "signatures": signatures}
    return mean, info


# ----------------------------------------------------------------------------------------------
# Stage
# ----------------------------------------------------------------------------------------------
def proportions_from(abundance: pd.DataFrame) -> pd.DataFrame:
    total = abundance.sum(axis=1)
    proportions = abundance.div(total.where(total > 0, 1.0), axis=0)
    proportions[total <= 0] = 1.0 / abundance.shape[1]
    return proportions


METHODS = {"nnls": nnls_deconvolve, "poisson": poisson_deconvolve, "cell2location": cell2location_deconvolve}


def deconvolve_level(section: AnnData, reference: AnnData, settings: DeconvolutionSettings, method: str, *,
                     label_key: str = LABEL_KEY, section_file: str | None = None,
                     reference_file: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], Any]:
    """Abundances, proportions and info of one label level; also the prepared reference (for the baseline)."""
    spots, ref = prepare_inputs(section, reference, min_shared_genes=settings.deconv_min_shared_genes,
                                min_cells_per_type=settings.deconv_min_cells_per_type, section_file=section_file,
                                reference_file=reference_file, label_key=label_key)
    with timed(logger, f"deconvolution ({method}, {label_key}) of {spots.n_obs} spots into {ref.obs[LABEL_KEY].nunique()} types"):
        abundance, info = METHODS[method](spots, ref, settings)
    return abundance, proportions_from(abundance), info, (spots, ref)


def deconvolve(section: AnnData, reference: AnnData, settings: DeconvolutionSettings, *,
               section_file: str | None = None, reference_file: str | None = None):
    """Deconvolve ``section`` with ``reference``; add results to ``section``; return (abundance, proportions, info).

    ``settings``: ``DeconvolutionSettings.from_params(params)``, or ``DeconvolutionSettings.defaults()``.

    ``info`` also holds the marker-score baseline (``marker_scores``, ``agreement``) and, when the
    reference has ``cell_type_fine``, the subtype proportions (``proportions_fine``).
    """
    method = resolve_method(settings.deconvolution_method)
    abundance, proportions, info, (spots, ref) = deconvolve_level(section, reference, settings, method,
                                                                  section_file=section_file, reference_file=reference_file)
    info["marker_scores"] = marker_scores(spots, ref)
    info["agreement"] = marker_agreement(proportions, info["marker_scores"], settings.deconv_min_agreement)
    section.obsm["deconvolution_abundance"] = abundance
    section.obsm["deconvolution_proportions"] = proportions
    section.obsm["deconvolution_marker_scores"] = info["marker_scores"]
    for cell_type in proportions.columns:
        section.obs[f"prop_{cell_type}"] = proportions[cell_type].to_numpy()
    section.obs["dominant_type"] = pd.Categorical(proportions.idxmax(axis=1).to_numpy(), categories=list(proportions.columns))
    if FINE_LABEL_KEY in reference.obs.columns and reference.obs[FINE_LABEL_KEY].nunique() > 1:
        _, fine, _, _ = deconvolve_level(section, reference, settings, method, label_key=FINE_LABEL_KEY,
                                         section_file=section_file, reference_file=reference_file)
        section.obsm["deconvolution_proportions_fine"] = fine
        info["proportions_fine"] = fine
    return abundance, proportions, info


# ----------------------------------------------------------------------------------------------
# Marker-score baseline
# ----------------------------------------------------------------------------------------------
def marker_scores(spots, ref, n_markers: int = MARKER_BASELINE_GENES) -> pd.DataFrame:
    """Per spot and reference type: scanpy ``score_genes`` of the type's ``n_markers`` informative genes
    (largest log2 fold change over the other types, detected in >= 10% of its cells) on the
    log-normalised spot counts (spots x types)."""
    import anndata as ad
    import scanpy as sc

    _, norm_means, detection = type_means(ref)
    normalised = ad.AnnData(sp.csr_matrix(spots.X, dtype=np.float32), obs=pd.DataFrame(index=spots.obs_names),
                            var=pd.DataFrame(index=spots.var_names))
    sc.pp.normalize_total(normalised, target_sum=TARGET_SUM)
    sc.pp.log1p(normalised)
    scores = {}
    for cell_type in norm_means.columns:
        genes = type_markers(norm_means, detection, cell_type, n_markers)
        if not genes:  # no gene is specific to the type: no baseline (its agreement is reported as missing)
            scores[cell_type] = np.full(normalised.n_obs, np.nan)
            continue
        sc.tl.score_genes(normalised, genes, score_name="_score", random_state=0, ctrl_size=min(50, normalised.n_vars // 4))
        scores[cell_type] = normalised.obs["_score"].to_numpy()
    return pd.DataFrame(scores, index=spots.obs_names)


def marker_agreement(proportions: pd.DataFrame, scores: pd.DataFrame, minimum: float) -> pd.DataFrame:
    """Spearman's rho between each type's proportion and its marker score over spots; warns below ``minimum``."""
    from scipy.stats import spearmanr

    rows = []
    for cell_type in proportions.columns:
        constant = proportions[cell_type].nunique() < 2 or scores[cell_type].nunique(dropna=True) < 2
        rho = np.nan if constant else float(spearmanr(proportions[cell_type], scores[cell_type]).statistic)
        rows.append({"cell_type": cell_type, "mean_proportion": float(proportions[cell_type].mean()),
                     "spearman_vs_marker_score": rho, "agrees": bool(rho >= minimum) if not constant else False})
    table = pd.DataFrame(rows).set_index("cell_type")
    disagree = table.index[~table["agrees"]]
    if len(disagree):
        logger.warning("deconvolution disagrees with the marker score (Spearman < %.2f) for: %s; check these types' "
                       "proportions against their markers", minimum,
                       ", ".join(f"{t} ({table.loc[t, 'spearman_vs_marker_score']:.2f})" for t in disagree))
    return table


def write_outputs(section, abundance, proportions, info, sample: str, outdir: Path, params: dict[str, Any]) -> Path:
    io.write_table(abundance.rename_axis("barcode"), outdir / f"{sample}.deconvolution_abundance.tsv", index=True)
    io.write_table(proportions.rename_axis("barcode"), outdir / f"{sample}.deconvolution_proportions.tsv", index=True)
    if "q05_abundance" in info:
        io.write_table(info["q05_abundance"].rename_axis("barcode"), outdir / f"{sample}.deconvolution_abundance_q05.tsv",
                       index=True)
    if "proportions_fine" in info:
        io.write_table(info["proportions_fine"].rename_axis("barcode"), outdir / f"{sample}.deconvolution_proportions_fine.tsv",
                       index=True)
    io.write_table(info["marker_scores"].rename_axis("barcode"), outdir / f"{sample}.deconvolution_marker_scores.tsv", index=True)
    agreement = info["agreement"].set_axis([f"{sample}: {t}" for t in info["agreement"].index]).rename_axis("Section: cell type")
    agreement_header = io.multiqc_header(
        "tmeflow_deconvolution_agreement", "Deconvolution vs marker scores",
        f"Spearman's rho between each type's proportion ({info['method']}) and its reference-marker score over the "
        f"spots; 'agrees' is false below deconv_min_agreement {params['deconv_min_agreement']}, a reason to check "
        "that type (tmeflow deconvolve).", "table")
    io.write_table(agreement, outdir / f"{sample}.deconvolution_agreement_mqc.tsv", index=True, header_lines=agreement_header)
    summary = proportions.mean(axis=0).to_frame(sample).T
    summary.index.name = "Sample"
    header = io.multiqc_header(
        "tmeflow_deconvolution", "Spatial deconvolution",
        f"Mean cell-type proportion over the spots of each section ({info['method']}; tmeflow deconvolve).",
        "bargraph", pconfig={"id": "tmeflow_deconvolution_bar", "title": "Mean spot composition", "stacking": "normal"})
    io.write_table(summary, outdir / f"{sample}.deconvolution_mqc.tsv", index=True, header_lines=header)
    types = list(proportions.columns)
    plot_on_tissue(section, {t: proportions[t].to_numpy() for t in types}, outdir / f"{sample}.deconvolution_proportions.png",
                   sample=sample, ncols=4, cmap="magma", title=f"{sample}: cell-type proportions ({info['method']})")
    plot_on_tissue(section, {t: abundance[t].to_numpy() for t in types}, outdir / f"{sample}.deconvolution_abundance.png",
                   sample=sample, ncols=4, cmap="magma",
                   title=f"{sample}: estimated cells per spot ({info['method']}; follows cellularity, unlike proportions)")
    plot_on_tissue(section, {"dominant cell type": section.obs["dominant_type"]}, outdir / f"{sample}.deconvolution_dominant.png",
                   sample=sample, ncols=1, title=f"{sample}: dominant cell type per spot")
    record = {k: v for k, v in info.items()
              if k not in ("q05_abundance", "signatures", "genes", "platform_effects", "marker_scores", "agreement",
                           "proportions_fine")}
    section.uns["deconvolution"] = {**record, "cell_types": types}
    if "genes" in info:
        section.uns["deconvolution"]["genes"] = np.asarray(info["genes"], dtype=object)
    section.uns.setdefault("tmeflow", {})["deconvolve"] = {**io.provenance("deconvolve", params), **record}
    return io.write_h5ad(section, outdir / f"{sample}.deconvolved.h5ad")


def run_deconvolve(input_path, reference_path, outdir, params: dict[str, Any], *, sample: str | None = None) -> Path:
    """Read a ``spatial_qc`` section and a reference atlas, deconvolve, write ``<sample>.deconvolved.h5ad`` etc."""
    section = io.read_h5ad(input_path, "spatial section")
    reference = io.read_h5ad(reference_path, "reference atlas")
    if sample is None:
        sample = str(section.obs["sample"].iloc[0]) if "sample" in section.obs else Path(input_path).name.split(".")[0]
    abundance, proportions, info = deconvolve(section, reference, DeconvolutionSettings.from_params(params),
                                              section_file=str(input_path),
                                              reference_file=str(reference_path))
    means = proportions.mean().sort_values(ascending=False)
    logger.info("%s: mean proportions %s", sample, ", ".join(f"{k} {v:.2f}" for k, v in means.items()))
    return write_outputs(section, abundance, proportions, info, sample, Path(outdir), params)


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    run_deconvolve(args.input, args.reference, args.outdir, params, sample=args.sample)
