"""tmeflow.ulm: ULM scores from row-block sums equal decoupler's ``ulm`` (in memory, on disk, with empty genes)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tmeflow import io
from tmeflow.ulm import ulm_scores


def _cells_and_net(seed: int):
    rng = np.random.default_rng(seed)
    counts = sp.random(300, 200, density=0.1, format="lil", random_state=rng)
    counts[:, [5, 17]] = 0  # genes detected in no cell leave decoupler's universe
    counts[7, :] = 0  # a cell with no detected gene
    matrix = sp.csr_matrix(counts)
    matrix.eliminate_zeros()
    matrix.data = np.log1p(10 * matrix.data).astype(np.float32)
    genes = pd.Index([f"g{i}" for i in range(200)])
    members = {"A": [5, 17, 1, 2, 3, 4, 6, 7], "B": range(10, 18), "C": [5, 17, 19], "D": [20, 21, 22, 23]}
    net = pd.DataFrame(
        [(source, f"g{gene}", 1.0) for source, targets in members.items() for gene in targets],
        columns=["source", "target", "weight"],
    )
    net.loc[net["source"] == "D", "weight"] = [0.5, 2.0, -1.0, 1.0]  # weighted sets too
    return ad.AnnData(matrix, obs=pd.DataFrame(index=[f"c{i}" for i in range(300)]), var=pd.DataFrame(index=genes)), net


@pytest.mark.parametrize("seed", [0, 1])
def test_ulm_equals_decoupler_in_memory_and_from_disk(tmp_path, seed):
    dc = pytest.importorskip("decoupler")
    adata, net = _cells_and_net(seed)
    repaired = dc.mt.ulm(data=adata.copy(), net=net, tmin=3, verbose=False)  # drops the empty cell
    expected = repaired.obsm["score_ulm"]
    assert list(expected.columns) == ["A", "B", "D"]  # C has 1 detected member: not scored

    ours = ulm_scores(adata.X, adata.var_names, adata.obs_names, net, tmin=3)
    assert list(ours.columns) == ["A", "B", "D"] and ours.loc["c7"].isna().all()
    np.testing.assert_allclose(ours.loc[expected.index].to_numpy(), expected.to_numpy(), rtol=1e-9, atol=1e-12)

    path = io.write_h5ad(adata, tmp_path / "cells.h5ad")
    with io.h5ad_on_disk(path, "cells") as lazy:
        from_disk = ulm_scores(lazy.X, lazy.var_names, lazy.obs_names, net, tmin=3)
    pd.testing.assert_frame_equal(from_disk, ours)
    dense = ulm_scores(adata.X.toarray(), adata.var_names, adata.obs_names, net, tmin=3)
    pd.testing.assert_frame_equal(dense, ours)
