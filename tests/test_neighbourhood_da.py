"""Milo-style neighbourhood differential abundance: Milo's spatial FDR, calibration on null cohorts,
a planted expanding state inside a cell type found, end to end through tmeflow composition.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from tmeflow.cli import main
from tmeflow.neighbourhood_da import neighbourhood_da, spatial_fdr
from tmeflow.params import defaults
from tmeflow.stats import bh_fdr

N_NULL_COHORTS = 40
STATES = 6


def _atlas(rng, *, fold: float = 1.0, n_per_condition: int = 4, cells: int = 250) -> ad.AnnData:
    """Cells of ``STATES`` Gaussian states in 10 dimensions; states 0-2 are cell type A, 3-5 type B.
    Every sample draws its own state proportions (Dirichlet: sample-to-sample variation); in
    ``metastasis`` state 1 is ``fold`` times as frequent (a state expanding inside type A).
    """
    centres = rng.normal(0, 4, size=(STATES, 10))
    base = np.full(STATES, 1.0 / STATES)
    blocks, obs = [], []
    for condition in ("primary", "metastasis"):
        for s in range(n_per_condition):
            weights = base * (np.where(np.arange(STATES) == 1, fold, 1.0) if condition == "metastasis" else 1.0)
            q = rng.dirichlet(weights / weights.sum() * 200)
            states = rng.choice(STATES, size=cells, p=q)
            blocks.append(centres[states] + rng.normal(size=(cells, 10)))
            obs.append(
                pd.DataFrame(
                    {
                        "sample": f"{condition}{s}",
                        "patient": f"{condition}{s}",
                        "condition": condition,
                        "cell_type": np.where(states < 3, "A", "B"),
                        "state": states,
                    }
                )
            )
    embedding = np.vstack(blocks)
    obs = pd.concat(obs, ignore_index=True)
    obs.index = [f"c{i}" for i in range(len(obs))]
    return ad.AnnData(obs=obs, obsm={"X_pca_harmony": embedding.astype(np.float32)})


def _samples(adata) -> pd.DataFrame:
    return adata.obs.drop_duplicates("sample").set_index("sample")[["condition", "patient"]].sort_index()


def test_spatial_fdr_is_milos_weighted_bh():
    p = np.array([0.01, 0.04, 0.03, 0.5])
    w = np.array([1.0, 2.0, 1.0, 1.0])
    # p order 0.01 (w1), 0.03 (w1), 0.04 (w2), 0.5 (w1); sum w = 5; cumsum 1, 2, 4, 5
    expected_sorted = np.minimum.accumulate(np.array([0.01 * 5 / 1, 0.03 * 5 / 2, 0.04 * 5 / 4, 0.5 * 5 / 5])[::-1])[
        ::-1
    ]
    np.testing.assert_allclose(spatial_fdr(p, w), expected_sorted[[0, 2, 1, 3]])
    np.testing.assert_allclose(spatial_fdr(p, np.ones(4)), bh_fdr(p))  # equal weights: Benjamini-Hochberg


def test_null_cohorts_are_calibrated_and_a_planted_state_is_found():
    options = {"prop": defaults()["da_nhood_prop"], "fdr": 0.05, "moderated": True, "seed": 0}
    any_discovery, null_p = 0, []
    for seed in range(N_NULL_COHORTS):
        adata = _atlas(np.random.default_rng(seed))
        table = neighbourhood_da(adata, _samples(adata), [("metastasis", "primary")], **options)[
            "metastasis_vs_primary"
        ]
        any_discovery += int((table["spatial_fdr"] < 0.05).any())
        null_p += table["pvalue"].tolist()
    rate_any, rate_p = any_discovery / N_NULL_COHORTS, float(np.mean(np.array(null_p) < 0.05))
    adata = _atlas(np.random.default_rng(123), fold=3.0, n_per_condition=6)
    table = neighbourhood_da(adata, _samples(adata), [("metastasis", "primary")], **options)["metastasis_vs_primary"]
    state = adata.obs.loc[table["index_cell"], "state"].to_numpy()
    found = table["spatial_fdr"].to_numpy() < 0.05
    print(
        f"null: {any_discovery} of {N_NULL_COHORTS} cohorts with a discovery (spatial FDR < 0.05), neighbourhood "
        f"p < 0.05 in {rate_p:.3f}; planted state 1 x3 (6 vs 6 samples): "
        f"{found[state == 1].mean():.2f} of its neighbourhoods found, "
        f"{found[state != 1].mean():.3f} of the others"
    )
    assert rate_any <= 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / N_NULL_COHORTS)
    assert found[state == 1].mean() >= 0.8 and (table.loc[state == 1, "logfc"] > 0).all()
    # the other states' fractions really fall (proportions sum to one): what is found there is a decrease
    assert (table.loc[found & (state != 1), "logfc"] < 0).all()


def test_composition_writes_neighbourhood_da(tmp_path):
    adata = _atlas(np.random.default_rng(5), fold=3.0)
    adata.write_h5ad(tmp_path / "atlas.h5ad")
    assert main(["composition", "--input", str(tmp_path / "atlas.h5ad"), "--outdir", str(tmp_path / "out")]) == 0
    table = pd.read_csv(tmp_path / "out" / "da_nhood_metastasis_vs_primary.tsv", sep="\t")
    assert {"index_cell", "n_cells", "cell_type", "logfc", "pvalue", "spatial_fdr"} <= set(table.columns)
    assert (table["spatial_fdr"] < 0.05).any() and (
        tmp_path / "out" / "da_nhood_metastasis_vs_primary.png"
    ).stat().st_size > 0
    da = pd.read_csv(tmp_path / "out" / "da_major_metastasis_vs_primary.tsv", sep="\t").set_index("cell_type")
    print(f"type A propeller FDR {da.loc['A', 'fdr']:.3g}; neighbourhoods found {(table['spatial_fdr'] < 0.05).sum()}")


@pytest.mark.parametrize("prop", [0.05, 0.2])
def test_index_cells_are_refined_and_unique(prop):
    from tmeflow.neighbourhood_da import index_cells

    adata = _atlas(np.random.default_rng(1), cells=100)
    embedding = np.asarray(adata.obsm["X_pca_harmony"], dtype=float)
    index, neighbourhoods, kth = index_cells(embedding, 30, prop, seed=0)
    assert len(np.unique(index)) == len(index) and 0 < len(index) <= round(prop * adata.n_obs)
    assert (neighbourhoods[:, 0] == index).all() and neighbourhoods.shape == (len(index), 30) and (kth > 0).all()


def test_refined_sampling_in_batches_is_the_same(monkeypatch):
    """Refining the drawn cells a batch at a time (bounded memory at 1M cells) picks the same neighbourhoods."""
    from tmeflow import neighbourhood_da

    embedding = np.random.default_rng(0).normal(size=(3000, 8))
    whole = neighbourhood_da.index_cells(embedding, 40, 0.1, seed=3)
    monkeypatch.setattr(neighbourhood_da, "REFINE_BATCH", 7)
    batched = neighbourhood_da.index_cells(embedding, 40, 0.1, seed=3)
    assert len(whole[0]) > 200
    for one, other in zip(whole, batched, strict=True):
        np.testing.assert_array_equal(one, other)


def test_max_nhoods_caps_the_drawn_cells_and_still_covers_and_finds_the_planted_state():
    """``da_max_nhoods`` (issue 23): 100 neighbourhoods of 120 cells on 3,000 cells (4x coverage, as 20,000 of 200
    on a million cells) instead of 10% drawn: the drawn cells within the cap, most of the cells Milo's 10% cover
    still covered, the planted state still found."""
    from tmeflow.neighbourhood_da import index_cells, nhood_size

    adata = _atlas(np.random.default_rng(123), fold=3.0, n_per_condition=6)
    samples = _samples(adata)
    embedding = np.asarray(adata.obsm["X_pca_harmony"], dtype=float)
    index, neighbourhoods, _ = index_cells(embedding, nhood_size(len(samples)), 0.1, seed=0, max_nhoods=100)
    uncapped = index_cells(embedding, nhood_size(len(samples)), 0.1, seed=0)[1]
    assert len(index) <= 100 < round(0.1 * adata.n_obs)
    # refined sampling moves index cells towards dense centres, so 10% drawn cover 78% of the cells here
    assert len(np.unique(neighbourhoods)) >= 0.8 * len(np.unique(uncapped))
    options = {"prop": 0.1, "fdr": 0.05, "moderated": True, "seed": 0, "max_nhoods": 100}
    table = neighbourhood_da(adata, samples, [("metastasis", "primary")], **options)["metastasis_vs_primary"]
    state = adata.obs.loc[table["index_cell"], "state"].to_numpy()
    found = table["spatial_fdr"].to_numpy() < 0.05
    print(f"capped: {len(table)} neighbourhoods, {found[state == 1].mean():.2f} of state 1's found")
    assert len(table) == len(index)
    assert found[state == 1].mean() >= 0.8 and (table.loc[state == 1, "logfc"] > 0).all()
