"""Outputs are written atomically: a failure leaves no file that looks complete."""

from __future__ import annotations

import pandas as pd
import pytest

from tmeflow import io
from tmeflow.errors import TmeflowInputError


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "table.tsv"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_complete_file(tmp_path):
    target = io.write_text("complete\n", tmp_path / "a.txt")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError
    assert target.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_table_with_multiqc_header_round_trips(tmp_path):
    header = io.multiqc_header("x", "X", "desc", "table")
    path = io.write_table(pd.DataFrame({"Sample": ["a"], "v": [1.5]}), tmp_path / "x_mqc.tsv", header_lines=header)
    lines = path.read_text().splitlines()
    assert lines[0] == "# id: x" and "plot_type: table" in path.read_text()
    assert pd.read_csv(path, sep="\t", comment="#").to_dict("list") == {"Sample": ["a"], "v": [1.5]}


def test_errors_are_one_line_and_name_where():
    error = TmeflowInputError("bad\nthing", file="f.csv", sample="S1", column="data", row=3)
    assert str(error) == "bad thing [file f.csv, sample S1, row 3, column data]"


def test_gz_tables_are_gzipped(tmp_path):
    path = io.write_table(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.tsv.gz")
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert pd.read_csv(path, sep="\t")["a"].tolist() == [1, 2]


def test_outputs_get_normal_permissions(tmp_path):
    path = io.write_text("x", tmp_path / "a.txt")
    assert path.stat().st_mode & 0o044 == 0o044  # readable by group and others under the usual umask


def test_intermediate_h5ad_is_lzf_and_the_kept_atlas_gzip(tmp_path):
    """Stage-to-stage h5ad files are LZF (fast to write); files users keep stay gzip (HDF5's built-in filter)."""
    import anndata as ad
    import h5py
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    adata = ad.AnnData(sp.random(200, 50, density=0.2, format="csr", random_state=rng, dtype=np.float32))
    adata.layers["counts"] = adata.X.copy()
    inter = io.write_h5ad(adata, tmp_path / "integrated.h5ad")
    final = io.write_h5ad(adata, tmp_path / "subclustered.h5ad", final=True)
    with h5py.File(inter) as handle:
        assert handle["X/data"].compression == "lzf" and handle["layers/counts/data"].compression == "lzf"
    with h5py.File(final) as handle:
        assert handle["X/data"].compression == "gzip"
    for path in (inter, final):  # same content either way
        back = ad.read_h5ad(path)
        assert (back.X != adata.X).nnz == 0 and (back.layers["counts"] != adata.layers["counts"]).nnz == 0


def test_read_h5ad_parts_reads_the_tables_and_named_embeddings_only(tmp_path):
    """The cell tables and the asked-for embeddings come back as written; matrices and other elements stay on disk."""
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    adata = ad.AnnData(sp.random(30, 8, density=0.3, format="csr", random_state=rng, dtype=np.float32))
    adata.layers["counts"] = adata.X.copy()
    adata.obs["sample"] = pd.Categorical(rng.choice(["s1", "s2"], 30))
    adata.obsm["X_pca_harmony"] = rng.normal(size=(30, 4))
    adata.obsm["X_umap"] = rng.normal(size=(30, 2))
    adata.uns["big"] = np.zeros(5)
    path = io.write_h5ad(adata, tmp_path / "atlas.h5ad")

    parts = io.read_h5ad_parts(path, "atlas h5ad", obsm_keys=("X_scVI", "X_pca_harmony"))
    assert parts.shape == adata.shape and parts.X is None
    pd.testing.assert_frame_equal(parts.obs, adata.obs)
    assert list(parts.var_names) == list(adata.var_names)
    assert list(parts.obsm) == ["X_pca_harmony"]
    np.testing.assert_array_equal(parts.obsm["X_pca_harmony"], adata.obsm["X_pca_harmony"])
    assert not parts.layers and not parts.uns

    (tmp_path / "broken.h5ad").write_text("not hdf5")
    for missing_or_broken, words in ((tmp_path / "none.h5ad", "not found"), (tmp_path / "broken.h5ad", "cannot read")):
        with pytest.raises(TmeflowInputError, match=f"atlas h5ad {words}|{words} atlas h5ad") as error:
            io.read_h5ad_parts(missing_or_broken, "atlas h5ad")
        assert "\n" not in str(error.value) and str(missing_or_broken) in str(error.value)


def test_read_h5ad_rows_equals_subsetting_the_whole_file(tmp_path):
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(1)
    adata = ad.AnnData(sp.random(40, 6, density=0.4, format="csr", random_state=rng, dtype=np.float32))
    adata.layers["counts"] = sp.random(40, 6, density=0.4, format="csr", random_state=rng)
    adata.layers["dense"] = rng.normal(size=(40, 6))
    adata.obs["cell_type"] = pd.Categorical(rng.choice(["T", "B", "tumour"], 40))
    adata.obsm["X_umap"] = rng.normal(size=(40, 2))
    adata.obsm["scores"] = pd.DataFrame(rng.normal(size=(40, 2)), index=adata.obs_names, columns=["a", "b"])
    adata.obsp["connectivities"] = sp.random(40, 40, density=0.1, format="csr", random_state=rng)
    adata.uns["log1p"] = {"base": None}
    path = io.write_h5ad(adata, tmp_path / "atlas.h5ad")

    rows = np.array([0, 3, 4, 17, 39])
    part, whole = io.read_h5ad_rows(path, "atlas h5ad", rows), ad.read_h5ad(path)[rows].copy()
    assert list(part.obs_names) == list(whole.obs_names)
    pd.testing.assert_frame_equal(part.obs, whole.obs)
    assert sp.issparse(part.X) and (part.X != whole.X).nnz == 0
    assert (part.layers["counts"] != whole.layers["counts"]).nnz == 0
    np.testing.assert_array_equal(part.layers["dense"], whole.layers["dense"])
    np.testing.assert_array_equal(part.obsm["X_umap"], whole.obsm["X_umap"])
    pd.testing.assert_frame_equal(part.obsm["scores"], whole.obsm["scores"])
    assert part.uns["log1p"] == {"base": None} and not part.obsp
    with pytest.raises(TmeflowInputError, match="atlas h5ad not found"):
        io.read_h5ad_rows(tmp_path / "none.h5ad", "atlas h5ad", rows)


def test_h5ad_on_disk_reads_rows_in_blocks_and_the_copy_keeps_the_matrices(tmp_path, monkeypatch):
    """X stays on disk (rows read when asked); the copy gets the new obs and keeps X, layers and graphs untouched."""
    import anndata as ad
    import h5py
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(2)
    adata = ad.AnnData(sp.random(50, 7, density=0.4, format="csr", random_state=rng, dtype=np.float32))
    adata.layers["counts"] = sp.random(50, 7, density=0.4, format="csr", random_state=rng)
    adata.obsm["X_umap"] = rng.normal(size=(50, 2))
    adata.obsp["connectivities"] = sp.random(50, 50, density=0.1, format="csr", random_state=rng)
    adata.uns["integration"] = {"method": "harmony"}
    path = io.write_h5ad(adata, tmp_path / "integrated.h5ad")

    with io.h5ad_on_disk(path, "integrated h5ad") as lazy:
        assert not sp.issparse(lazy.X) and lazy.shape == adata.shape and not lazy.obsp
        assert (lazy.layers["counts"][[3, 9]] != adata.layers["counts"][[3, 9]]).nnz == 0  # on disk, read when asked
        blocks = list(io.row_blocks(lazy.X, 20))
        assert [start for start, _ in blocks] == [0, 20, 40]
        assert (sp.vstack([block for _, block in blocks]) != adata.X).nnz == 0
        np.testing.assert_array_equal(lazy.obsm["X_umap"], adata.obsm["X_umap"])
        with io.h5ad_on_disk(path, "integrated h5ad", obsp_keys=("connectivities", "distances")) as graphs:
            assert list(graphs.obsp) == ["connectivities"]
        lazy.obs["cell_type"] = pd.Categorical(rng.choice(["T", "B"], 50))
        lazy.uns["annotate"] = {"version": "x"}
        copy = io.write_h5ad_copy(path, tmp_path / "annotated.h5ad", obs=lazy.obs, uns=lazy.uns)

    back = ad.read_h5ad(copy)
    pd.testing.assert_frame_equal(back.obs, lazy.obs)
    assert back.uns["integration"] == {"method": "harmony"} and back.uns["annotate"] == {"version": "x"}
    assert (back.X != adata.X).nnz == 0 and (back.layers["counts"] != adata.layers["counts"]).nnz == 0
    assert (back.obsp["connectivities"] != adata.obsp["connectivities"]).nnz == 0
    assert ad.read_h5ad(path).obs.columns.tolist() == []  # the source is not touched

    monkeypatch.setattr(io, "COPY_ELEMENTS", 7)  # several slices per dataset
    final = io.write_h5ad_copy(path, tmp_path / "subclustered.h5ad", final=True, obs=lazy.obs, uns=lazy.uns)
    with h5py.File(final) as handle:
        assert handle["X/data"].compression == "gzip" and handle["layers/counts/indices"].compression == "gzip"
    kept = ad.read_h5ad(final)
    pd.testing.assert_frame_equal(kept.obs, back.obs)
    assert (kept.X != adata.X).nnz == 0 and (kept.layers["counts"] != adata.layers["counts"]).nnz == 0
    assert (kept.obsp["connectivities"] != adata.obsp["connectivities"]).nnz == 0
    np.testing.assert_array_equal(kept.obsm["X_umap"], adata.obsm["X_umap"])

    dense = io.write_h5ad(ad.AnnData(np.ones((3, 2), dtype=np.float32)), tmp_path / "dense.h5ad")
    with io.h5ad_on_disk(dense, "integrated h5ad") as small:  # storage other than CSR is read
        np.testing.assert_array_equal(small.X, np.ones((3, 2)))
    with pytest.raises(KeyError), io.h5ad_on_disk(path, "integrated h5ad"):
        raise KeyError("an error of the caller's block stays itself, not a reading error")


def test_read_rows_in_blocks_equals_indexing(tmp_path, monkeypatch):
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(3)
    matrix = sp.random(60, 9, density=0.4, format="csr", random_state=rng, dtype=np.float32)
    path = io.write_h5ad(ad.AnnData(matrix), tmp_path / "cells.h5ad")
    monkeypatch.setattr(io, "ROW_BLOCK_CELLS", 7)
    rows, columns = np.array([1, 2, 8, 30, 31, 59]), np.array([4, 0, 8])
    with io.h5ad_on_disk(path, "cells") as lazy:
        for source in (matrix, matrix.toarray(), lazy.X):
            chosen = io.read_rows(source, rows, columns)
            np.testing.assert_array_equal(
                chosen.toarray() if sp.issparse(chosen) else chosen, matrix[rows][:, columns].toarray()
            )
            assert io.read_rows(source, rows).shape == (6, 9) and io.read_rows(source, np.array([], int)).shape == (
                0,
                9,
            )


def test_group_sums_in_blocks_equal_a_groupby(tmp_path, monkeypatch):
    """One pseudobulk helper for de, pathways, communication, deconvolve and Milo: block by block it sums what a
    pandas groupby sums, over all rows or chosen ones, skipping rows of no group (negative code)."""
    import anndata as ad
    import numpy as np
    import scipy.sparse as sp

    rng = np.random.default_rng(4)
    matrix = sp.random(50, 6, density=0.5, format="csr", random_state=rng, dtype=np.float32)
    path = io.write_h5ad(ad.AnnData(matrix), tmp_path / "cells.h5ad")
    monkeypatch.setattr(io, "ROW_BLOCK_CELLS", 8)
    codes = rng.integers(-1, 4, size=50)
    rows = np.flatnonzero(rng.random(50) < 0.6)
    dense = matrix.toarray()
    expected_all = pd.DataFrame(dense).groupby(codes).sum().reindex(range(4), fill_value=0.0).to_numpy()
    expected_rows = pd.DataFrame(dense[rows]).groupby(codes[rows]).sum().reindex(range(4), fill_value=0.0).to_numpy()
    with io.h5ad_on_disk(path, "cells") as lazy:
        for source in (matrix, dense, lazy.X):
            np.testing.assert_allclose(io.group_sums(source, codes, 4), expected_all, rtol=1e-6)
            np.testing.assert_allclose(io.group_sums(source, codes[rows], 4, rows=rows), expected_rows, rtol=1e-6)
