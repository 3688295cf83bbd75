"""PyDESeq2 inference vectorised over genes (the numerical engine of ``tmeflow de``'s pseudobulk test).

PyDESeq2 (Muzellec et al. 2023, *Bioinformatics* 39:btad547) fits each gene with a Python call
(``DefaultInference``: one scikit-learn regression, one IRLS loop and two scipy L-BFGS-B dispersion
fits per gene, one Wald test per gene), ~10 ms per gene and fit on one core. PyDESeq2 lets a caller
swap these routines (``DeseqDataSet(inference=...)``); :class:`VectorizedInference` computes the same
quantities for all genes at once with numpy. The model, the steps (size factors, gene-wise
dispersions, trend, MAP dispersions, IRLS log fold changes, Cook's distances and refit, Wald test,
independent filtering, BH) and the defaults are PyDESeq2's; only the inner loops change:

- ``lin_reg_mu``: the per-gene least-squares fit of ``counts / size_factors`` on the design, solved
  for all genes with one ``lstsq`` (the same minimum-norm solution).
- ``irls``: the same IRLS iterations (initial values, ridge 1e-6, deviance stopping rule,
  ``beta_tol``), run on all genes together, each gene frozen at the iteration where its own loop
  would stop. A gene whose IRLS diverges (|beta| > ``max_beta`` or ``maxiter`` reached) is handed to
  PyDESeq2's own per-gene solver, which takes its L-BFGS-B / grid path as before.
- ``alpha_mle``: the same objective (negative binomial likelihood with Cox-Reid adjustment and,
  for MAP dispersions, the log-normal prior; Love et al. 2014, *Genome Biol* 15:550), minimised
  over log(alpha) within [min_disp, max_disp] by a safeguarded Newton iteration (analytic gradient,
  finite-difference curvature, backtracking) from the same start, run to |step| < 1e-10 instead of
  L-BFGS-B's default tolerances. As L-BFGS-B, a gene whose projected gradient at the start is within
  1e-5 keeps its start. Genes where the Newton fit does not converge in 100 iterations or its line
  search fails are handed to PyDESeq2's per-gene L-BFGS-B (with its grid-search fallback). Where
  L-BFGS-B stops early in a flat likelihood near ``min_disp``, the Newton fit goes on to the optimum:
  results then differ more (``benchmarks/README.md``).
- ``wald_test``: the same covariance and statistic for all genes at once (two-sided test; other
  alternative hypotheses use PyDESeq2's per-gene routine).

The dispersion optimum is found more tightly than L-BFGS-B's stopping rule, so results agree with
``DefaultInference`` to its optimiser's precision (``tests/test_de.py`` compares them), not bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from pydeseq2 import utils
from pydeseq2.default_inference import DefaultInference
from scipy.special import digamma, gammaln
from scipy.stats import norm

NEWTON_MAX_ITER = 100
NEWTON_STEP_TOL = 1e-10
CURVATURE_STEP = 1e-5
LBFGSB_PGTOL = 1e-5  # scipy's L-BFGS-B default gtol


def _gram(X: np.ndarray, W: np.ndarray) -> np.ndarray:
    """``X' diag(W[:, g]) X`` for every gene g: (genes, p, p)."""
    return np.einsum("ni,ng,nj->gij", X, W, X, optimize=True)


def nb_nll(counts: np.ndarray, mu: np.ndarray, alpha: np.ndarray) -> np.ndarray:
    """Compute the negative binomial negative log-likelihood per gene (column), as ``pydeseq2.utils.nb_nll``.

    Parameters
    ----------
    counts
        Samples x genes counts.
    mu
        Samples x genes fitted means.
    alpha
        Dispersion per gene.

    Returns
    -------
    numpy.ndarray
        Negative log-likelihood per gene.
    """
    inv = 1.0 / alpha
    logbinom = gammaln(counts + inv) - gammaln(counts + 1) - gammaln(inv)
    return (inv * np.log(alpha) - logbinom + (counts + inv) * np.log(mu + inv) - counts * np.log(mu)).sum(axis=0)


class VectorizedInference(DefaultInference):
    """:class:`pydeseq2.default_inference.DefaultInference` with the per-gene loops vectorised."""

    def __init__(self, **kwargs: Any) -> None:
        kwargs.setdefault("n_cpus", 1)
        super().__init__(**kwargs)

    def lin_reg_mu(self, counts, size_factors, design_matrix, min_mu):
        """Initialise the means by least squares of normalised counts on the design, all genes at once."""
        coef = np.linalg.lstsq(design_matrix, counts / size_factors[:, None], rcond=None)[0]
        return np.maximum(size_factors[:, None] * (design_matrix @ coef), min_mu)

    def irls(
        self,
        counts,
        size_factors,
        design_matrix,
        disp,
        min_mu,
        beta_tol,
        min_beta=-30,
        max_beta=30,
        optimizer="L-BFGS-B",
        maxiter=250,
    ):
        """Fit the negative-binomial GLM coefficients of every gene by IRLS, vectorised over genes.

        Same arguments and returns as :meth:`pydeseq2.default_inference.DefaultInference.irls`.
        """
        X = np.asarray(design_matrix, dtype=float)
        counts = np.asarray(counts, dtype=float)
        n, p = X.shape
        g = counts.shape[1]
        sf = np.asarray(size_factors, dtype=float)[:, None]
        disp = np.asarray(disp, dtype=float)
        ridge = np.diag(np.repeat(1e-6, p))
        if np.linalg.matrix_rank(X) == p:
            Q, R = np.linalg.qr(X)
            beta = np.linalg.solve(R, Q.T @ np.log(counts / sf + 0.1)).T
        else:
            beta = np.zeros((g, p))
            beta[:, 0] = np.log(counts / sf).mean(axis=0)
        mu = np.maximum(sf * np.exp(X @ beta.T), min_mu)
        dev = np.full(g, 1000.0)
        active = np.ones(g, dtype=bool)
        diverged = np.zeros(g, dtype=bool)
        iteration = 0
        while active.any():
            idx = np.flatnonzero(active)
            m, d, y = mu[:, idx], disp[idx], counts[:, idx]
            W = m / (1.0 + m * d)
            z = np.log(m / sf) + (y - m) / m
            beta_hat = np.linalg.solve(_gram(X, W) + ridge, np.einsum("ni,ng->gi", X, W * z)[..., None])[..., 0]
            iteration += 1
            bad = (np.abs(beta_hat) > max_beta).any(axis=1) | (iteration >= maxiter)
            diverged[idx[bad]] = True
            active[idx[bad]] = False
            idx, beta_hat = idx[~bad], beta_hat[~bad]
            beta[idx] = beta_hat
            mu[:, idx] = np.maximum(sf * np.exp(X @ beta_hat.T), min_mu)
            old = dev[idx]
            dev[idx] = -2 * nb_nll(counts[:, idx], mu[:, idx], disp[idx])
            done = np.abs(dev[idx] - old) / (np.abs(dev[idx]) + 0.1) <= beta_tol
            active[idx[done]] = False
        W = mu / (1.0 + mu * disp)
        inverse = np.linalg.inv(_gram(X, W) + ridge)
        hat = np.einsum("ni,gij,nj->ng", X, inverse, X, optimize=True) * W
        mu_raw = sf * np.exp(X @ beta.T)
        converged = np.ones(g, dtype=bool)
        for i in np.flatnonzero(diverged):  # PyDESeq2's own solver, with its L-BFGS-B / grid fallback
            beta[i], mu_raw[:, i], hat[:, i], converged[i] = utils.irls_solver(
                counts=counts[:, i],
                size_factors=sf[:, 0],
                design_matrix=X,
                disp=disp[i],
                min_mu=min_mu,
                beta_tol=beta_tol,
                min_beta=min_beta,
                max_beta=max_beta,
                optimizer=optimizer,
                maxiter=maxiter,
            )
        return beta, mu_raw, hat, converged

    def alpha_mle(
        self,
        counts,
        design_matrix,
        mu,
        alpha_hat,
        min_disp,
        max_disp,
        prior_disp_var=None,
        cr_reg=True,
        prior_reg=False,
        optimizer="L-BFGS-B",
    ):
        """Estimate the gene-wise dispersions by maximum (Cox-Reid adjusted) likelihood, vectorised over genes.

        Same arguments and returns as :meth:`pydeseq2.default_inference.DefaultInference.alpha_mle`.
        """
        X = np.asarray(design_matrix, dtype=float)
        counts = np.asarray(counts, dtype=float)
        mu = np.asarray(mu, dtype=float)
        alpha_hat = np.asarray(alpha_hat, dtype=float)
        if prior_reg and prior_disp_var is None:
            raise ValueError("Sigma_prior is required for prior regularization")
        lo, hi = np.log(min_disp), np.log(max_disp)
        start = np.log(alpha_hat)

        def loss(log_alpha, cols):
            alpha = np.exp(log_alpha)
            m = mu[:, cols]
            value = nb_nll(counts[:, cols], m, alpha)
            if cr_reg:
                value = value + 0.5 * np.linalg.slogdet(_gram(X, m / (1 + m * alpha)))[1]
            if prior_reg:
                value = value + (log_alpha - start[cols]) ** 2 / (2 * prior_disp_var)
            return value

        def grad(log_alpha, cols):
            alpha = np.exp(log_alpha)
            inv = 1.0 / alpha
            y, m = counts[:, cols], mu[:, cols]
            dnll = -(inv**2) * (digamma(inv) - digamma(y + inv) + np.log(1 + m * alpha) + (y - m) / (m + inv)).sum(
                axis=0
            )
            value = alpha * dnll
            if cr_reg:
                W = m / (1 + m * alpha)
                value = value + 0.5 * alpha * (np.linalg.inv(_gram(X, W)) * _gram(X, -(W**2))).sum(axis=(1, 2))
            if prior_reg:
                value = value + (log_alpha - start[cols]) / prior_disp_var
            return value

        x = np.clip(start, lo, hi)
        g = len(x)
        # L-BFGS-B stops at once where the projected gradient at the start is within its pgtol (1e-5),
        # e.g. a start at min_disp where the likelihood is flat in log(alpha): such genes keep their start
        gr0 = grad(x, np.arange(g))
        projected = np.where(x <= lo, np.minimum(gr0, 0), np.where(x >= hi, np.maximum(gr0, 0), gr0))
        converged = np.abs(projected) <= LBFGSB_PGTOL
        active = np.flatnonzero(~converged)
        for _ in range(NEWTON_MAX_ITER):
            if not len(active):
                break
            xa = x[active]
            gr = grad(xa, active)
            curv = (grad(xa + CURVATURE_STEP, active) - grad(xa - CURVATURE_STEP, active)) / (2 * CURVATURE_STEP)
            step = np.where(curv > 0, -gr / np.where(curv > 0, curv, 1.0), -np.sign(gr))
            step = np.clip(step, -1.0, 1.0)
            # at a bound with the gradient pointing outwards: the bounded optimum
            at_bound = ((xa <= lo) & (gr > 0)) | ((xa >= hi) & (gr < 0))
            f0 = loss(xa, active)
            t = np.ones_like(xa)
            new = np.clip(xa + step, lo, hi)
            worse = np.zeros(len(xa), dtype=bool)
            for _ in range(30):  # backtracking until the loss does not increase
                worse = ~(loss(new, active) <= f0 + 1e-12 * np.abs(f0)) & ~at_bound
                if not worse.any():
                    break
                t = np.where(worse, t / 2, t)
                new = np.where(worse, np.clip(xa + t * step, lo, hi), new)
            x[active] = np.where(at_bound | worse, xa, new)
            # converged: at the bounded optimum, or a full Newton step smaller than the tolerance
            done = at_bound | ((t == 1) & (np.abs(new - xa) < NEWTON_STEP_TOL))
            converged[active[done]] = True
            active = active[~done & ~worse]  # a gene whose line search failed goes to PyDESeq2's L-BFGS-B
        for i in np.flatnonzero(~converged):  # PyDESeq2's own L-BFGS-B (and grid search) for the rest
            alpha, converged[i] = utils.fit_alpha_mle(
                counts=counts[:, i],
                design_matrix=X,
                mu=mu[:, i],
                alpha_hat=alpha_hat[i],
                min_disp=min_disp,
                max_disp=max_disp,
                prior_disp_var=prior_disp_var,
                cr_reg=cr_reg,
                prior_reg=prior_reg,
                optimizer=optimizer,
            )
            x[i] = np.log(alpha)
        return np.exp(x), converged

    def wald_test(self, design_matrix, disp, lfc, mu, ridge_factor, contrast, lfc_null, alt_hypothesis=None):
        """Run the Wald test of ``contrast`` for every gene at once (pydeseq2's per-gene test otherwise)."""
        if alt_hypothesis is not None:
            return super().wald_test(design_matrix, disp, lfc, mu, ridge_factor, contrast, lfc_null, alt_hypothesis)
        X = np.asarray(design_matrix, dtype=float)
        W = mu / (1 + mu * np.asarray(disp)[None, :])
        M = _gram(X, W)
        Hc = np.linalg.inv(M + ridge_factor) @ np.asarray(contrast, dtype=float)
        se = np.sqrt(np.einsum("gi,gij,gj->g", Hc, M, Hc))
        stat = (np.asarray(lfc) - lfc_null) @ np.asarray(contrast, dtype=float) / se
        return 2 * norm.sf(np.abs(stat)), stat, se
