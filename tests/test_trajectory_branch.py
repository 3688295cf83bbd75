"""Branch-dependent genes (tmeflow.trajectory.branch): calibrated under a null cohort, powered on planted genes."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import average_precision_score


def _cohort(seed: int, effect: float, n_samples: int = 8, n_cells: int = 150, n_genes: int = 200, n_branch: int = 20):
    """Cells of ``n_samples`` samples on a two-lineage trajectory (branch at pseudotime 0.4). Every gene has its
    own pseudotime trend shared by both lineages, sample offsets, and a *sample-specific* lineage difference
    (sd 0.25 at the end: cells of one sample share it, so cell-level tests are pseudo-replicated). The first
    ``n_branch`` genes rise by ``effect`` along lineage A only.
    """
    rng = np.random.default_rng(seed)
    trend = rng.normal(0, 1, n_genes)
    X, T, W, S = [], [], [], []
    for s in range(n_samples):
        t = rng.uniform(0, 1, n_cells)
        progress = np.clip((t - 0.4) / 0.6, 0, 1)
        lineage_a = rng.random(n_cells) < rng.uniform(0.3, 0.7)
        wa = 0.5 + 0.5 * progress * np.where(lineage_a, 1, -1) * rng.uniform(0.6, 1.0, n_cells)
        sample_diff = rng.normal(0, 0.25, n_genes)
        y = (
            2
            + rng.normal(0, 0.3, n_genes)
            + np.outer(t, trend)
            + np.outer(progress * (wa - 0.5) * 2, sample_diff)
            + rng.normal(0, 1.0, (n_cells, n_genes))
        )
        y[:, :n_branch] += effect * np.outer(progress * lineage_a, np.ones(n_branch))
        X.append(y)
        T.append(t)
        W.append(np.c_[wa, 1 - wa])
        S += [f"s{s}"] * n_cells
    return np.vstack(X), np.concatenate(T), np.vstack(W), np.array(S)


def _run(X, t, W, S):
    from tmeflow.trajectory.branch import branch_tests, fit_smooths

    genes = [f"g{i}" for i in range(X.shape[1])]
    per_sample, pooled, grid = fit_smooths(X, t, W, S, n_knots=5)
    return branch_tests(per_sample, grid, genes, ["A", "B"]).set_index("gene").loc[genes]


def test_null_cohorts_are_calibrated_and_cell_level_is_not():
    """Fates independent of expression: at FDR 5% no cohort of 40 should reject much (BH under the complete null
    controls the chance of any rejection at 5%); the per-gene p-values are uniform. Pooling cells (a cell-level
    fit, each sample's lineage difference then looks like signal) rejects far more often.
    """
    any_rejection, pvalues = 0, []
    for seed in range(40):
        table = _run(*_cohort(seed, effect=0.0))
        any_rejection += bool((table["fdr_branch"] < 0.05).any())
        pvalues.append(table["pvalue_diff_end"].to_numpy())
    p = np.concatenate(pvalues)
    print(
        f"null: {any_rejection}/40 cohorts with a branch gene at FDR 5%; P(p_diff_end < 0.05) = {np.mean(p < 0.05):.3f}"
    )
    assert any_rejection / 40 <= 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / 40)
    assert abs(np.mean(p < 0.05) - 0.05) < 0.02
    # the same cohorts analysed as one sample (cells as replicates, a t-test over cell residuals) are not calibrated
    from scipy.stats import ttest_ind

    X, t, W, S = _cohort(0, effect=0.0)
    late = t > 0.8
    cell_p = ttest_ind(X[late & (W[:, 0] > 0.5)], X[late & (W[:, 0] <= 0.5)], axis=0).pvalue
    print(f"cell-level t-test on the same null cohort: P(p < 0.05) = {np.mean(cell_p < 0.05):.3f}")
    assert np.mean(cell_p < 0.05) > 0.1  # about twice the nominal rate


def test_planted_branch_genes_are_recovered():
    aps, fdps = [], []
    for seed in range(5):
        table = _run(*_cohort(100 + seed, effect=0.8))
        truth = np.arange(len(table)) < 20
        aps.append(average_precision_score(truth, -np.log10(table["pvalue_branch"].to_numpy() + 1e-300)))
        called = table["fdr_branch"].to_numpy() < 0.05
        fdps.append(float((called & ~truth).sum() / max(called.sum(), 1)))
        assert called[truth].mean() >= 0.7
        assert (table.loc[truth, "diff_end"] > 0).all()
    print(f"planted: AUPRC {np.round(aps, 3)}, false discovery proportion {np.round(fdps, 3)}")
    assert min(aps) >= 0.8
    assert np.mean(fdps) <= 0.1


def test_spline_basis_reproduces_a_cubic_inside_and_is_linear_beyond_the_knots():
    from tmeflow.trajectory.branch import spline_basis

    knots = np.array([0.0, 0.25, 0.5, 0.75, 1.0])
    t = np.linspace(0, 1, 200)
    B = spline_basis(t, knots)
    assert B.shape == (200, 5)
    y = np.sin(3 * t)
    fit = B @ np.linalg.lstsq(B, y, rcond=None)[0]
    assert np.max(np.abs(fit - y)) < 0.01
    beyond = spline_basis(np.array([1.5, 2.0, 2.5]), knots)
    assert np.allclose(np.diff(beyond, 2, axis=0), 0, atol=1e-9)  # natural: linear beyond the boundary knots
