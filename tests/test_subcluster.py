"""tmeflow subcluster: compartments re-clustered into fine subtypes; small compartments keep their
major type; CAF subtypes agree with Wu et al. 2021 on CID4465.
"""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import tiny
from _cohort import annotated, cid4465_annotated, qc_params

from tmeflow import subcluster


@pytest.fixture(scope="module")
def simulated(tmp_path_factory):
    params = qc_params()
    params.update(subcluster_min_cells=100, subcluster_n_top_genes=1000)
    out = tmp_path_factory.mktemp("subcluster")
    return ad.read_h5ad(subcluster.run_subcluster(annotated(tmp_path_factory), out, params)), out


@pytest.mark.slow
def test_fine_types_on_simulated_cohort(simulated):
    adata, out = simulated
    obs = adata.obs
    sizes = obs["compartment"].astype(str).value_counts()
    small = sizes.index[sizes < 100]
    for compartment in small:  # e.g. neutrophils (~90 cells), mast cells: not re-clustered
        cells = obs["compartment"].astype(str) == compartment
        assert (obs.loc[cells, "cell_type_fine"].astype(str) == obs.loc[cells, "cell_type"].astype(str)).all()
    calls = pd.read_csv(out / "subcluster_calls_mqc.tsv", sep="\t", comment="#")
    assert {"T/NK", "B/plasma", "epithelial"} <= set(calls["compartment"])
    # planted NK and plasma programmes are recovered as the NK and plasma subtypes
    for true_type, fine in (("NK", "NK"), ("plasma", "plasma")):
        cells = obs["true_cell_type"].astype(str) == true_type
        assert (obs.loc[cells, "cell_type_fine"].astype(str) == fine).mean() > 0.8, true_type
    tnk = obs["compartment"].astype(str) == "T/NK"
    assert obs.loc[tnk, "subcluster"].astype(str).str.startswith("T/NK:").all()
    assert np.isfinite(adata.obsm["X_umap_subcluster"][tnk.to_numpy()]).all()
    assert (out / "subcluster_umap_T_NK.png").stat().st_size > 0
    assert len(pd.read_csv(out / "subcluster_markers.tsv", sep="\t"))


@pytest.mark.slow
@pytest.mark.shared_data
def test_cid4465_caf_subtypes_agree_with_authors(shared_data, tmp_path_factory, tmp_path):
    adata = ad.read_h5ad(
        subcluster.run_subcluster(cid4465_annotated(tmp_path_factory, shared_data), tmp_path, qc_params())
    )
    minor = pd.read_csv(shared_data / "wu2021_CID4465_scRNA" / "cell_metadata.csv.gz", index_col=0).loc[
        adata.obs["barcode"].to_numpy(), "celltype_minor"
    ]
    fine = pd.Series(adata.obs["cell_type_fine"].astype(str).to_numpy(), index=minor.index)
    cafs = minor.isin(["CAFs MSC iCAF-like", "CAFs myCAF-like"]) & fine.isin(["iCAF", "myCAF"])
    table = pd.crosstab(minor[cafs], fine[cafs])
    print(table)
    expected = minor[cafs].map({"CAFs MSC iCAF-like": "iCAF", "CAFs myCAF-like": "myCAF"})
    agreement = (expected == fine[cafs]).mean()
    print(f"CAF subtype agreement with Wu et al. 2021: {agreement:.3f} over {cafs.sum()} cells")
    assert cafs.sum() > 300 and agreement >= 0.75
    macrophages = minor == "Macrophage"
    assert fine[macrophages].isin(["C1Q+ macrophage", "SPP1+ macrophage", "monocyte/macrophage"]).mean() > 0.8


@pytest.mark.parametrize("species", ["human", "mouse"])
def test_bundled_epithelial_states_are_not_breast_specific(species):
    """The epithelial states apply to carcinomas of any organ: no hormone-receptor (ESR1/PGR/AR) state,
    which called gastric, nasopharyngeal and colorectal cells 'luminal'.
    """
    from tmeflow.signatures import resource_path

    table = pd.read_csv(resource_path(f"markers/subtypes_{species}.tsv"), sep="\t")
    epithelial = table[table["compartment"] == "epithelial"]
    assert not {"ESR1", "PGR", "AR"} & set(epithelial["gene"].str.upper())
    assert set(epithelial["cell_type_fine"]) == {
        "basal epithelial",
        "simple (glandular) epithelial",
        "cycling epithelial",
    }


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_compartments_below_the_minimum_keep_their_major_type():
    """12 cells in 2 compartments of 6, below subcluster_min_cells = 7: nothing is re-clustered, so
    cell_type_fine = cell_type, subcluster = compartment, the UMAP is NaN and no call is made.
    """
    from tmeflow.subcluster import SubclusterSettings

    types = ["T cell"] * 3 + ["NK"] * 3 + ["iCAF"] * 2 + ["fibroblast"] * 4
    compartments = ["T/NK"] * 6 + ["fibroblast"] * 6
    data = tiny.adata(
        np.arange(12 * 4).reshape(12, 4) % 5,
        {"cell_type": types, "compartment": compartments, "species": ["human"] * 12},
        genes=["CD3E", "NKG7", "DCN", "COL1A1"],
    )
    result = subcluster.subcluster(data, SubclusterSettings.defaults().replace(subcluster_min_cells=7))
    assert data.obs["cell_type_fine"].astype(str).tolist() == types
    assert data.obs["subcluster"].astype(str).tolist() == compartments
    assert np.isnan(data.obsm["X_umap_subcluster"]).all() and data.obsm["X_umap_subcluster"].shape == (12, 2)
    assert result["calls"].empty and result["figures"] == {}
