"""tmeflow atlas: the explorable atlas (CELLxGENE-style conventions, every stage's obs columns)."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tmeflow.atlas import build_atlas, build_section, clean_obs, h5_key, merge_obs, run_atlas
from tmeflow.errors import TmeflowInputError

# The stage files whose obs the cohort atlas gathers, and the spatial one each section atlas comes from.
CELL_STAGE_FILES = (
    "integrate/integrated.h5ad",
    "annotate/annotated.h5ad",
    "cnv/cnv.h5ad",
    "subcluster/subclustered.h5ad",
    "pathways/pathways.h5ad",
    "trajectory/trajectory.h5ad",
)


def assert_cellxgene_conventions(adata: ad.AnnData, embedding_prefix: str = "X_") -> None:
    """What CELLxGENE (and the schema it follows) needs of an h5ad."""
    assert adata.var_names.is_unique and adata.obs_names.is_unique
    for column, dtype in adata.obs.dtypes.items():
        assert "/" not in column, column
        assert not pd.api.types.is_object_dtype(dtype), f"obs column {column} is object"
        assert (
            pd.api.types.is_numeric_dtype(dtype)
            or pd.api.types.is_bool_dtype(dtype)
            or isinstance(dtype, pd.CategoricalDtype)
        ), (column, dtype)
        if isinstance(dtype, pd.CategoricalDtype):
            assert all(isinstance(c, str) for c in dtype.categories), column
        assert dtype != np.float64, f"obs column {column} is float64 (CELLxGENE converts it with a warning)"
    counts = adata.layers["counts"]
    assert sp.issparse(counts) and sp.issparse(adata.X)
    assert np.allclose(counts.data, np.round(counts.data)) and counts.data.min() >= 0  # raw counts
    # X is log1p(counts per 10,000): expm1 of each cell's X sums to 1e4 where it has counts
    sums = np.asarray(np.expm1(adata.X.astype(np.float64)).sum(axis=1)).ravel()
    with_counts = np.asarray(counts.sum(axis=1)).ravel() > 0
    assert np.allclose(sums[with_counts], 1e4, rtol=1e-3)
    embeddings = [key for key in adata.obsm if key.startswith(embedding_prefix)]
    assert embeddings
    for key in embeddings:
        value = np.asarray(adata.obsm[key])
        assert value.ndim == 2 and value.shape == (adata.n_obs, 2) and np.issubdtype(value.dtype, np.floating), key
        assert not np.isinf(value).any() and np.isfinite(value).all(axis=1).any(), key
    assert adata.uns["default_embedding"] in adata.obsm
    # uns small: no graphs or matrices (those stay in the stage files)
    assert sum(np.asarray(v).nbytes for v in adata.uns.values() if isinstance(v, np.ndarray)) < 1e6


def _counts_adata(n_cells: int, n_genes: int, seed: int = 0) -> ad.AnnData:
    rng = np.random.default_rng(seed)
    counts = sp.csr_matrix(rng.poisson(1.0, (n_cells, n_genes)).astype(np.float32))
    adata = ad.AnnData(
        counts.copy(),
        obs=pd.DataFrame(index=[f"S1_cell{i}" for i in range(n_cells)]),
        var=pd.DataFrame(index=[f"G{i % (n_genes - 2)}" for i in range(n_genes)]),
    )  # two duplicated names
    adata.layers["counts"] = counts
    scale = 1e4 / np.asarray(counts.sum(axis=1)).ravel()
    adata.X = sp.csr_matrix(sp.diags(scale) @ counts).log1p().astype(np.float32)
    adata.uns["log1p"] = {"base": None}
    return adata


@pytest.fixture()
def stage_files(tmp_path):
    """Small subclustered / pathways / trajectory / section files with the awkward cases of the real ones."""
    n = 30
    cells = _counts_adata(n, 12)
    rng = np.random.default_rng(1)
    cells.obs["cell_type"] = pd.Categorical(np.where(np.arange(n) < 15, "T", "epithelial"))
    cells.obs["malignant"] = np.arange(n) >= 20
    cells.obs["barcode"] = [f"cell{i}" for i in range(n)]  # object
    cells.obs["leiden"] = pd.Categorical(np.arange(n) % 3)  # integer categories
    cells.uns["cell_type_colors"] = np.array(["#ff0000", "#00ff00"])
    cells.uns["neighbors"] = {"params": {"n_neighbors": 5}}
    cells.obsm["X_umap"] = rng.normal(size=(n, 2)).astype(np.float32)
    sub = rng.normal(size=(n, 2)).astype(np.float32)
    sub[:5] = np.nan  # cells outside any compartment
    cells.obsm["X_umap_subcluster"] = sub
    cells.obsm["X_pca"] = rng.normal(size=(n, 10)).astype(np.float32)
    cells.obsp["connectivities"] = sp.identity(n, format="csr")
    paths = {"subcluster": tmp_path / "subclustered.h5ad"}
    cells.write_h5ad(paths["subcluster"])
    pathways = cells.copy()
    pathways.obs["score_EMT"] = rng.normal(size=n)
    paths["pathways"] = tmp_path / "pathways.h5ad"
    pathways.write_h5ad(paths["pathways"])
    trajectory = cells[cells.obs["cell_type"] == "epithelial"].copy()  # a subset, in another order
    trajectory = trajectory[::-1].copy()
    trajectory.obs["pseudotime"] = np.linspace(0, 1, trajectory.n_obs)
    trajectory.obs["fate"] = pd.Categorical(np.where(np.arange(trajectory.n_obs) < 8, "metastasis_branch", "shared"))
    trajectory.obs["root"] = np.arange(trajectory.n_obs) == 0
    paths["trajectory"] = tmp_path / "trajectory.h5ad"
    trajectory.write_h5ad(paths["trajectory"])
    spots = _counts_adata(20, 12, seed=2)
    spots.obs_names = [f"spot{i}" for i in range(20)]
    spots.obs["prop_monocyte/macrophage"] = rng.uniform(size=20)
    spots.obs["region"] = pd.Categorical(np.where(np.arange(20) < 10, "tumour", "stroma"))
    spots.obs["cnv_score_spot"] = rng.uniform(size=20)
    spots.obsm["spatial"] = rng.uniform(0, 100, size=(20, 2))
    spots.obsm["deconvolution_proportions"] = pd.DataFrame(
        rng.uniform(size=(20, 2)), index=spots.obs_names, columns=["T", "monocyte/macrophage"]
    )
    spots.uns["spatial"] = {
        "S1": {
            "images": {"lowres": np.zeros((8, 8, 3), dtype=np.float32)},
            "scalefactors": {"tissue_lowres_scalef": 0.1, "spot_diameter_fullres": 5.0},
        }
    }
    spots.uns["pca"] = {"variance": np.ones(5)}
    paths["section"] = tmp_path / "S1.spatial_analysis.h5ad"
    spots.write_h5ad(paths["section"])
    return paths


def test_atlas_merges_every_stage_column_by_barcode_with_cellxgene_conventions(stage_files, tmp_path):
    summary = run_atlas(
        stage_files["subcluster"],
        tmp_path / "out",
        {},
        pathways=stage_files["pathways"],
        trajectory=stage_files["trajectory"],
        sections=[stage_files["section"]],
    )
    atlas = ad.read_h5ad(tmp_path / "out" / "atlas.h5ad")
    assert_cellxgene_conventions(atlas)
    trajectory = ad.read_h5ad(stage_files["trajectory"])
    # every obs column of every stage file is in the atlas
    for path in (stage_files["subcluster"], stage_files["pathways"], stage_files["trajectory"]):
        assert set(ad.read_h5ad(path).obs.columns) <= set(atlas.obs.columns), path
    # by barcode: the subset's values land on its cells, the others are missing
    assert np.allclose(atlas.obs.loc[trajectory.obs_names, "pseudotime"], trajectory.obs["pseudotime"])
    others = atlas.obs_names.difference(trajectory.obs_names)
    assert atlas.obs.loc[others, "pseudotime"].isna().all() and atlas.obs.loc[others, "fate"].isna().all()
    assert list(atlas.obs.loc[trajectory.obs_names, "fate"]) == list(trajectory.obs["fate"])
    # a boolean of a subset becomes a categorical with missing values, not an object column
    assert list(atlas.obs["root"].cat.categories) == ["False", "True"] and atlas.obs["root"].isna().sum() == len(others)
    assert atlas.obs["malignant"].dtype == bool and atlas.obs["barcode"].dtype == "category"
    assert list(atlas.obs["leiden"].cat.categories) == ["0", "1", "2"]
    assert set(atlas.obsm) == {"X_umap", "X_umap_subcluster"} and np.isnan(atlas.obsm["X_umap_subcluster"][:5]).all()
    assert not atlas.obsp and "neighbors" not in atlas.uns and len(atlas.uns["cell_type_colors"]) == 2
    assert (
        sp.issparse(atlas.layers["counts"])
        and atlas.layers["counts"].nnz == ad.read_h5ad(stage_files["subcluster"]).layers["counts"].nnz
    )
    columns = pd.read_csv(tmp_path / "out" / "atlas_columns.tsv", sep="\t").set_index("column")
    assert columns.loc["pseudotime", "stage"] == "trajectory" and columns.loc["score_EMT", "stage"] == "pathways"
    assert columns.loc["pseudotime", "missing_fraction"] == pytest.approx(len(others) / atlas.n_obs, abs=1e-3)
    assert summary["sections"] == ["S1.atlas.h5ad"]
    assert json.loads((tmp_path / "out" / "atlas_summary.json").read_text())["n_cells"] == 30


def test_section_atlas_keeps_image_proportions_and_regions(stage_files):
    section = build_section(stage_files["section"])
    assert_cellxgene_conventions(section, embedding_prefix="X_spatial")
    assert "prop_monocyte_macrophage" in section.obs and list(section.obsm["deconvolution_proportions"].columns) == [
        "T",
        "monocyte_macrophage",
    ]
    assert section.obs["region"].dtype == "category" and "cnv_score_spot" in section.obs
    assert np.allclose(section.obsm["X_spatial"][:, 1], -section.obsm["spatial"][:, 1])
    assert "images" in section.uns["spatial"]["S1"] and "pca" not in section.uns


def test_atlas_rejects_cells_of_another_run(stage_files, tmp_path):
    other = ad.read_h5ad(stage_files["trajectory"])
    other.obs_names = [f"other_{name}" for name in other.obs_names]
    other.write_h5ad(tmp_path / "other.h5ad")
    with pytest.raises(TmeflowInputError, match="cells of trajectory are not in the atlas.*other.h5ad"):
        build_atlas(stage_files["subcluster"], {"trajectory": tmp_path / "other.h5ad"})
    with pytest.raises(TmeflowInputError, match="section has no 'spatial'"):
        build_section(stage_files["subcluster"])


def test_merge_and_clean_obs_units():
    obs = pd.DataFrame(index=["a", "b", "c"])
    extra = pd.DataFrame({"flag": [True, False], "n": pd.array([1, 2], dtype="Int64")}, index=["c", "a"])
    assert merge_obs(obs, extra, "x", "x.h5ad") == ["flag", "n"]
    cleaned = clean_obs(obs)
    assert (
        cleaned["flag"].dtype == "category"
        and cleaned.loc["a", "flag"] == "False"
        and cleaned.loc["c", "flag"] == "True"
    )
    assert pd.isna(cleaned.loc["b", "flag"])
    assert cleaned["n"].dtype == np.float32 and np.isnan(cleaned.loc["b", "n"])
    assert h5_key("prop_monocyte/macrophage") == "prop_monocyte_macrophage"


@pytest.mark.slow
def test_pipeline_atlas_holds_every_obs_key_the_stages_write(pipeline_results):
    outdir = Path(pipeline_results)
    atlas = ad.read_h5ad(outdir / "atlas" / "atlas.h5ad")
    assert_cellxgene_conventions(atlas)
    written = set()
    for name in CELL_STAGE_FILES:
        stage_obs = ad.read_h5ad(outdir / name, backed="r").obs
        written |= set(stage_obs.columns)
    assert len(written) > 60  # the stages' columns were read (not an empty list that cannot fail)
    assert written - set(atlas.obs.columns) == set()
    for column in (
        "cell_type",
        "cell_type_fine",
        "malignant",
        "cnv_score",
        "pseudotime",
        "fate",
        "subcluster",
        "score_EMT",
    ):
        assert column in atlas.obs, column
    assert (
        atlas.obs["pseudotime"].notna().sum()
        == ad.read_h5ad(outdir / "trajectory" / "trajectory.h5ad", backed="r").n_obs
    )
    sections = sorted((outdir / "spatial_analysis").glob("*.spatial_analysis.h5ad"))
    assert sections
    for path in sections:
        section = ad.read_h5ad(outdir / "atlas" / path.name.replace(".spatial_analysis.h5ad", ".atlas.h5ad"))
        assert_cellxgene_conventions(section, embedding_prefix="X_spatial")
        assert {h5_key(c) for c in ad.read_h5ad(path, backed="r").obs.columns} <= set(section.obs.columns)
        assert {"region", "cnv_score_spot", "dominant_type"} <= set(section.obs.columns)
        assert "deconvolution_proportions" in section.obsm and section.obsm["spatial"].shape == (section.n_obs, 2)
        library = next(iter(section.uns["spatial"].values()))
        assert {"images", "scalefactors"} <= set(library)


@pytest.mark.slow
def test_pipeline_spatial_cohort_one_section_has_no_pvalue(pipeline_results):
    """The pipeline's fan-in combines the sections' statistics (both runners run it in the atlas stage); the
    simulated cohort has one section, so per-patient values and no cohort p-value.
    """
    outdir = Path(pipeline_results)
    combined = pd.read_csv(outdir / "atlas" / "spatial_cohort.tsv", sep="\t")
    assert {"colocalisation", "trajectory"} <= set(combined["analysis"])
    assert (combined["n_patients"] == 1).all() and combined["pval"].isna().all() and not combined["cohort_wide"].any()
    section = pd.read_csv(next((outdir / "spatial_analysis").glob("*.colocalisation.tsv")), sep="\t").set_index(
        "cell_type"
    )
    coloc = combined[combined["analysis"] == "colocalisation"].set_index("feature")
    assert np.allclose(coloc["mean_z"], section.loc[coloc.index, "z_msr"])
    summary = json.loads((outdir / "atlas" / "atlas_summary.json").read_text())
    assert summary["spatial_cohort"]["n_sections"] == 1
