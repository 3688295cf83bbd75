"""scIB-style integration metrics against small hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import chi2

from tmeflow import metrics


def test_lisi_uniform_neighbourhoods_is_inverse_simpson():
    # Equal distances -> uniform kernel weights -> LISI = 1 / sum(f_b^2).
    distances = np.ones((2, 4))
    labels = np.array(["a", "a", "b", "c", "x", "y"])
    indices = np.array([[0, 1, 2, 2], [0, 1, 2, 3]])  # neighbour labels: a a b b / a a b c
    values = metrics.lisi(distances, indices, labels, perplexity=30)
    assert values[0] == pytest.approx(2.0)
    assert values[1] == pytest.approx(1 / (0.5**2 + 0.25**2 + 0.25**2))


def test_lisi_kernel_weights_reach_the_perplexity():
    rng = np.random.default_rng(0)
    distances = np.sort(rng.uniform(0, 5, size=(20, 90)), axis=1)
    weights = metrics._perplexity_weights(distances, 30.0)
    entropy = -(weights * np.log(weights + 1e-300)).sum(axis=1)
    assert np.allclose(np.exp(entropy), 30.0, rtol=1e-3)
    assert np.allclose(weights.sum(axis=1), 1.0)


def _blocks(mixed: bool):
    """Two batches of 150 points from one distribution (mixed) or 100 SD apart (separated)."""
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(150, 2)), rng.normal(size=(150, 2))
    emb = np.vstack([a, b if mixed else b + 100.0])
    batches = np.array(["A"] * 150 + ["B"] * 150)
    return emb, batches


def test_ilisi_scaled_zero_when_separated_one_when_mixed():
    emb, batches = _blocks(mixed=False)
    d, i = metrics.knn(emb, 90)
    assert metrics.ilisi(d, i, batches) == pytest.approx(0.0, abs=1e-6)
    emb, batches = _blocks(mixed=True)
    d, i = metrics.knn(emb, 90)
    assert metrics.ilisi(d, i, batches) > 0.8
    # cLISI of the batches as if they were labels: the mirror image
    assert metrics.clisi(d, i, batches) < 0.1


def test_asw_hand_computed_four_points():
    emb = np.array([[0.0], [1.0], [10.0], [11.0]])
    groups = np.array(["A", "A", "B", "B"])
    s0 = 1 - 1 / 10.5  # a = 1, b = mean(10, 11)
    s1 = 1 - 1 / 9.5  # a = 1, b = mean(9, 10)
    mean_s = (s0 + s1) / 2
    assert metrics.batch_asw(emb, groups) == pytest.approx(1 - mean_s)
    assert metrics.label_asw(emb, groups) == pytest.approx((mean_s + 1) / 2)
    # per-label averaging: label L1 holds the four points, label L2 two mixed points (|s| = 1 - ...)
    emb2 = np.vstack([emb, [[50.0], [50.0], [50.0]]])
    groups2 = np.array(["A", "A", "B", "B", "A", "A", "B"])
    labels2 = np.array(["L1"] * 4 + ["L2"] * 3)
    # L2: three coincident points: a = b = 0 (and a singleton B) -> silhouette 0 -> 1 - |0| = 1
    assert metrics.batch_asw(emb2, groups2, labels2) == pytest.approx(((1 - mean_s) + 1.0) / 2)


def test_graph_connectivity_hand_computed():
    # label X = cells 0,1,2; 0<->1 linked, 2 only points to Y cells; label Y = 3,4 linked.
    indices = np.array([[1], [0], [3], [4], [3]])
    labels = np.array(["X", "X", "X", "Y", "Y"])
    assert metrics.graph_connectivity(indices, labels) == pytest.approx((2 / 3 + 1.0) / 2)
    assert metrics.graph_connectivity(indices) == pytest.approx(3 / 5)  # one label: {0,1} and {2,3,4}


def test_kbet_hand_computed_line():
    # 16 points on a line, batches alternating: each neighbourhood of 4 is 2:2 or 3:1 -> accepted.
    x = np.arange(16, dtype=float)[:, None]
    alternating = np.array(["A", "B"] * 8)
    assert metrics.kbet_acceptance(x, alternating, k0=4) == pytest.approx(1.0)
    # Two far blocks of 8: every neighbourhood is 4:0 against 2:2 expected -> chi2 = 4, p = 0.0455.
    assert chi2.sf(4.0, 1) < 0.05
    blocks = np.array(["A"] * 8 + ["B"] * 8)
    x2 = np.concatenate([np.arange(8.0), np.arange(8.0) + 1000])[:, None]
    assert metrics.kbet_acceptance(x2, blocks, k0=4) == pytest.approx(0.0)


def test_kbet_neighbourhood_and_k0_follow_r_kbet_and_scib():
    """R kBET tests the cell with its k0 - 1 nearest neighbours; scIB keeps k0 in [10, 70]."""
    assert metrics.kbet_k0(np.array([400, 400])) == 70 and metrics.kbet_k0(np.array([20, 30])) == 10
    assert metrics.kbet_k0(np.array([100, 140])) == 30
    rng = np.random.default_rng(2)
    x = rng.normal(size=(60, 3))
    batches = np.where(rng.random(60) < 0.4, "A", "B")
    x[batches == "A"] += 0.6
    k0 = 6
    distances = np.linalg.norm(x[:, None] - x[None], axis=2)
    rejected = 0
    freq = np.array([(batches == "A").mean(), (batches == "B").mean()])
    for cell in range(60):
        env = np.argsort(distances[cell], kind="stable")[:k0]  # the cell itself first, then k0 - 1 neighbours
        assert env[0] == cell
        observed = np.array([(batches[env] == "A").sum(), (batches[env] == "B").sum()])
        statistic = (((observed - k0 * freq) ** 2) / (k0 * freq)).sum()
        rejected += chi2.sf(statistic, 1) < 0.05
    assert metrics.kbet_acceptance(x, batches, k0=k0) == pytest.approx(1 - rejected / 60)


def test_integration_metrics_rank_mixed_above_separated():
    sep = metrics.integration_metrics(*_blocks(mixed=False), seed=0)
    mix = metrics.integration_metrics(*_blocks(mixed=True), seed=0)
    for key in ("kbet_acceptance", "ilisi", "batch_asw"):
        assert mix[key] > sep[key] + 0.5, key
    assert np.isnan(sep["clisi"]) and np.isnan(sep["label_asw"]) and np.isnan(sep["graph_connectivity"])
    labelled = metrics.integration_metrics(*_blocks(mixed=False), labels=np.repeat(["x", "y"], 150), seed=0)
    assert labelled["graph_connectivity"] == pytest.approx(1.0) and labelled["clisi"] == pytest.approx(1.0)
