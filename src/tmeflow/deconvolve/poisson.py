"""The ``poisson`` method: RCTD-style Poisson likelihood with per-gene platform effects (Cable et al. 2022)."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from ..errors import TmeflowInputError
from ..log import get_logger
from .inputs import DeconvolutionSettings
from .nnls import informative_genes, type_means

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Poisson model with per-gene platform effects (RCTD-style)
# ----------------------------------------------------------------------------------------------
PLATFORM_SD = 1.0
MAX_ITERATIONS = 2_000
TOLERANCE = 1e-6


def platform_effects(
    bulk: np.ndarray, signatures: np.ndarray, *, sd: float = PLATFORM_SD, rounds: int = 25
) -> tuple[np.ndarray, np.ndarray]:
    """Estimate per-gene platform effects ``gamma`` and bulk abundances ``b`` on the summed section.

    Fits ``bulk_g ~ Poisson(exp(gamma_g) * sum_k b_k signatures_gk)`` with ``gamma_g ~ N(0, sd^2)``
    (the random effect of RCTD's platform-effect step, Cable et al. 2022, Nat Biotechnol 40:517) by
    alternating: ``b`` by multiplicative Poisson updates given ``gamma``; each ``gamma_g`` by Newton steps
    on its penalised log-likelihood given ``b``.

    Parameters
    ----------
    bulk
        Summed counts per gene over the section's spots.
    signatures
        Genes x types mean raw counts per cell in the reference.
    sd
        Prior standard deviation of ``gamma`` (``PLATFORM_SD``, 1, as RCTD).
    rounds
        Alternation rounds.

    Returns
    -------
    tuple[numpy.ndarray, numpy.ndarray]
        ``gamma`` (per gene, log scale) and ``b`` (per type).
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


def poisson_weights(
    counts: np.ndarray,
    signatures: np.ndarray,
    *,
    start: np.ndarray | None = None,
    max_iterations: int = MAX_ITERATIONS,
    tolerance: float = TOLERANCE,
    progress: str | None = None,
) -> np.ndarray:
    """Fit non-negative ``W`` (rows x types) maximising the Poisson likelihood of ``counts ~ W @ signatures.T``.

    Lee-Seung multiplicative updates for the generalised KL divergence with the dictionary fixed (each
    update raises the likelihood; Lee & Seung 2001), stopped when the mean log-likelihood per count
    changes by less than ``tolerance`` (relative).

    Parameters
    ----------
    counts
        Rows (spots) x genes counts.
    signatures
        Genes x types rates per cell.
    start
        Initial ``W``; None: each row's total spread equally over the types, divided by the mean signature total.
    max_iterations
        Most updates (``MAX_ITERATIONS``).
    tolerance
        Relative change of the log-likelihood that stops the updates (``TOLERANCE``).
    progress
        When given, the step named in progress log lines.

    Returns
    -------
    numpy.ndarray
        ``W``, rows x types, non-negative.
    """
    counts = np.asarray(counts, dtype=float)
    column_sums = signatures.sum(axis=0)
    weights = (
        np.array(start, dtype=float)
        if start is not None
        else np.outer(counts.sum(axis=1), np.full(signatures.shape[1], 1.0 / signatures.shape[1]))
        / max(column_sums.mean(), 1e-12)
    )
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
                logger.info(
                    "%s: iteration %d, log-likelihood per count %.5f, %.0f s",
                    progress,
                    iteration,
                    loglik,
                    time.perf_counter() - started,
                )
            if abs(loglik - previous) < tolerance * max(abs(loglik), 1.0):
                break
            previous = loglik
    return weights


def poisson_deconvolve(
    spots: AnnData, ref: AnnData, settings: DeconvolutionSettings
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Estimate cell abundances under a Poisson model with per-gene platform effects (RCTD-style).

    Spot counts on the informative genes are ``y_sg ~ Poisson(sum_k a_sk m_gk exp(gamma_g))`` with
    ``m_gk`` the type's mean raw counts per cell in the reference (so ``a`` are cell numbers up to one
    capture factor) and ``gamma_g`` the gene's platform effect between the reference assay and the
    section, estimated once on the summed section (:func:`platform_effects`), as RCTD does (Cable et
    al. 2022). ``a`` is then the Poisson maximum-likelihood fit per spot (:func:`poisson_weights`).

    Parameters
    ----------
    spots, ref
        The prepared section and reference (:func:`tmeflow.deconvolve.prepare_inputs`: shared genes, raw counts
        in ``X``, reference ``obs['cell_type']``).
    settings
        The stage settings (``DeconvolutionSettings.from_params(params)`` or ``.defaults()``);
        ``nnls_n_markers`` chooses the informative genes.

    Returns
    -------
    tuple[pandas.DataFrame, dict]
        Abundances (spots x types), and a summary (``method``, ``n_genes``, ``genes``, ``platform_effect_sd``,
        ``platform_effects`` per gene).
    """
    raw_means, norm_means, detection = type_means(ref)
    genes = informative_genes(norm_means, detection, settings.nnls_n_markers)
    if len(genes) < raw_means.shape[1]:
        raise TmeflowInputError(
            f"only {len(genes)} informative genes for {raw_means.shape[1]} cell types; "
            "the reference and the section share too few marker genes"
        )
    signatures = raw_means.loc[genes].to_numpy(dtype=float) + 1e-6
    counts = np.asarray(spots[:, genes].X.todense(), dtype=float)
    gamma, _ = platform_effects(counts.sum(axis=0), signatures)
    adjusted = signatures * np.exp(gamma)[:, None]
    abundance = poisson_weights(counts, adjusted, progress=f"poisson deconvolution of {spots.n_obs} spots")
    info = {
        "method": "poisson",
        "n_genes": len(genes),
        "genes": genes,
        "platform_effect_sd": float(np.std(gamma)),
        "platform_effects": pd.Series(gamma, index=genes, name="platform_effect"),
    }
    return pd.DataFrame(abundance, index=spots.obs_names, columns=raw_means.columns), info
