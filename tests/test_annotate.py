"""tmeflow annotate: major types recovered on the simulated cohort and on real breast-cancer data
(Wu et al. 2021, CID4465); marker tables, overrides and CellTypist inputs checked.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import tiny
from _cohort import MAJOR_TO_SIM, SIM_TO_MAJOR, annotated, cid4465_annotated, integrated, qc_params

from tmeflow import annotate
from tmeflow.cli import main

# Wu et al. 2021 celltype_major -> tmeflow major types. T-cells include their NK/NKT cells; PVL are
# perivascular-like cells (smooth muscle/pericyte); cancer and normal epithelium are both epithelial.
WU_TO_TMEFLOW = {
    "CAFs": "fibroblast", "PVL": "smooth muscle/pericyte", "Endothelial": "endothelial", "Myeloid": "myeloid",
    "Cancer Epithelial": "epithelial", "Normal Epithelial": "epithelial", "T-cells": "T/NK", "Plasmablasts": "plasma",
    "B-cells": "B",
}  # fmt: skip
TMEFLOW_TO_WU_LEVEL = {"monocyte/macrophage": "myeloid", "DC": "myeloid", "T": "T/NK", "NK": "T/NK"}


@pytest.mark.slow
def test_simulated_major_types_recovered(tmp_path_factory):
    adata = ad.read_h5ad(annotated(tmp_path_factory))
    truth = adata.obs["true_cell_type"].astype(str).replace(SIM_TO_MAJOR)
    called = adata.obs["cell_type"].astype(str).replace(MAJOR_TO_SIM)
    with pd.option_context("display.width", 200, "display.max_columns", 30):
        print(pd.crosstab(truth, called))
    accuracy = (truth == called).mean()
    print(f"simulated major-type accuracy: {accuracy:.3f}")
    assert accuracy >= 0.90
    compartments = {"T/NK", "B/plasma", "myeloid", "neutrophil", "mast", "epithelial", "fibroblast", "endothelial"}
    assert set(adata.obs["compartment"].astype(str)) <= compartments | {"perivascular", "unknown"}
    out = annotated(tmp_path_factory).parent
    markers = pd.read_csv(out / "annotation_markers.tsv", sep="\t")
    # the top Wilcoxon markers of the T-cell clusters include the planted T markers
    t_markers = set(markers.loc[markers["cell_type"] == "T"].groupby("cluster").head(25)["gene"])
    assert {"CD3D", "CD3E", "CD2"} & t_markers
    calls = pd.read_csv(out / "annotation_clusters_mqc.tsv", sep="\t", comment="#")
    assert (calls["confidence"] > 0).all()
    assert (out / "annotation_dotplot_mqc.png").stat().st_size > 0


@pytest.mark.slow
@pytest.mark.shared_data
def test_cid4465_major_types_agree_with_authors(shared_data, tmp_path_factory):
    result = ad.read_h5ad(cid4465_annotated(tmp_path_factory, shared_data))
    folder = shared_data / "wu2021_CID4465_scRNA"
    authors = pd.read_csv(folder / "cell_metadata.csv.gz", index_col=0).loc[
        result.obs["barcode"].to_numpy(), "celltype_major"
    ]
    table = pd.crosstab(
        pd.Series(authors.to_numpy(), name="Wu et al. 2021"),
        pd.Series(result.obs["cell_type"].astype(str).to_numpy(), name="tmeflow"),
    )
    with pd.option_context("display.width", 250, "display.max_columns", 30):
        print(table)
    expected = authors.map(WU_TO_TMEFLOW).to_numpy()
    called = result.obs["cell_type"].astype(str).replace(TMEFLOW_TO_WU_LEVEL).to_numpy()
    accuracy = float(np.mean(expected == called))
    print(f"CID4465 major-type accuracy: {accuracy:.3f} over {len(called)} cells")
    assert accuracy >= 0.80


def _one_line_error(capsys, argv):
    code = main(argv)
    logging.getLogger("tmeflow").handlers.clear()  # main() bound a handler to this test's captured stderr
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "Traceback" not in err
    return err


@pytest.mark.slow
def test_marker_table_without_present_genes_fails(tmp_path, tmp_path_factory, capsys):
    path = integrated(tmp_path_factory)
    table = tmp_path / "markers.tsv"
    table.write_text("cell_type\tcompartment\tgene\nalien\talien\tNOPE1\nalien\talien\tNOPE2\n")
    err = _one_line_error(
        capsys, ["annotate", "--input", str(path), "--outdir", str(tmp_path / "o"), "--markers", str(table)]
    )
    assert "none of the 2 marker genes is in the data" in err
    err = _one_line_error(
        capsys,
        [
            "annotate",
            "--input",
            str(path),
            "--outdir",
            str(tmp_path / "o"),
            "--celltypist_model",
            str(tmp_path / "no.pkl"),
        ],
    )
    assert "celltypist_model" in err and "not found" in err
    assert not (tmp_path / "o" / "annotated.h5ad").exists()


@pytest.mark.slow
def test_user_markers_and_overrides(tmp_path, tmp_path_factory, capsys):
    path = integrated(tmp_path_factory)
    adata = ad.read_h5ad(path)
    # user markers: only two types; everything else must then be one of them or Unknown
    table = tmp_path / "markers.tsv"
    t_cells = "".join(f"Tcell\tT/NK\t{g}\n" for g in ("CD3D", "CD3E", "CD2", "TRAC"))
    b_cells = "".join(f"Bcell\tB/plasma\t{g}\n" for g in ("MS4A1", "CD79A", "CD79B", "CD19"))
    table.write_text("cell_type\tcompartment\tgene\n" + t_cells + b_cells)
    first = adata.obs["leiden"].astype(str).iloc[0]
    overrides = tmp_path / "overrides.tsv"
    overrides.write_text(f"cluster\tcell_type\tcompartment\n{first}\tmy type\tmy compartment\n")
    settings = annotate.AnnotationSettings.from_params(qc_params()).replace(
        markers=str(table), annotation_overrides=str(overrides)
    )
    result = annotate.annotate(adata, settings)
    assert set(adata.obs["cell_type"].astype(str)) <= {"Tcell", "Bcell", annotate.UNKNOWN, "my type"}
    is_first = adata.obs["leiden"].astype(str) == first
    assert (adata.obs.loc[is_first, "cell_type"] == "my type").all()
    assert (adata.obs.loc[is_first, "compartment"] == "my compartment").all()
    true_t = adata.obs["true_cell_type"].astype(str) == "T"
    assert (adata.obs.loc[true_t & ~is_first, "cell_type"] == "Tcell").mean() > 0.9
    assert result["calls"].set_index("cluster").loc[first, "call"] == "override"
    bad = tmp_path / "bad_overrides.tsv"
    bad.write_text("cluster\tcell_type\n999\tX\n")
    err = _one_line_error(
        capsys, ["annotate", "--input", str(path), "--outdir", str(tmp_path / "o"), "--annotation_overrides", str(bad)]
    )
    assert "999" in err


@pytest.mark.slow
def test_celltypist_with_a_local_model(tmp_path, tmp_path_factory):
    celltypist = pytest.importorskip("celltypist")
    adata = ad.read_h5ad(integrated(tmp_path_factory))
    train = adata[::4, adata.var["highly_variable"].to_numpy()].copy()
    labels = train.obs["true_cell_type"].astype(str)
    model = celltypist.train(
        train, labels=labels, feature_selection=False, max_iter=30, check_expression=False, n_jobs=1
    )
    model.write(str(tmp_path / "tiny.pkl"))
    settings = annotate.AnnotationSettings.from_params(qc_params()).replace(celltypist_model=str(tmp_path / "tiny.pkl"))
    result = annotate.annotate(adata, settings)
    agreement = (adata.obs["celltypist_majority"].astype(str) == adata.obs["true_cell_type"].astype(str)).mean()
    assert agreement > 0.9
    assert "celltypist" in result["calls"] and adata.obs["celltypist_conf"].between(0, 1).all()
    assert adata.obs["cell_type"].astype(str).str.len().gt(0).all()  # marker-based call kept as cell_type


def test_label_conservation_recomputed_after_annotation_shows_over_correction():
    """Integration had no labels (cLISI, label ASW NaN). After annotation they are computed on the uncorrected
    and the corrected embedding: an over-corrected embedding that merges cell types scores lower.
    """
    import anndata as ad

    from tmeflow.annotate import label_conservation

    rng = np.random.default_rng(0)
    types = np.repeat(["T", "B", "myeloid"], 200)
    centres = {"T": [0, 0], "B": [8, 0], "myeloid": [0, 8]}
    separated = np.array([centres[t] for t in types]) + rng.normal(0, 1, (600, 2))
    adata = ad.AnnData(
        obs=pd.DataFrame(
            {"cell_type": types, "sample": np.tile(["s1", "s2"], 300)}, index=[f"c{i}" for i in range(600)]
        )
    )
    adata.obsm["X_pca"] = np.c_[separated, rng.normal(0, 1, (600, 3))]
    adata.obsm["X_pca_harmony"] = rng.normal(0, 1, (600, 5))  # cell types merged
    adata.uns["integration"] = {"use_rep": "X_pca_harmony", "method": "harmony", "n_pcs": 5}
    table = label_conservation(adata, seed=0).set_index("embedding")
    assert list(table.index) == ["uncorrected", "harmony"] and set(table["label_key"]) == {"cell_type"}
    assert table.loc["uncorrected", "label_asw"] > table.loc["harmony", "label_asw"] + 0.1
    assert table.loc["uncorrected", "clisi"] > 0.9 > table.loc["harmony", "clisi"] + 0.3


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_cluster_calls_of_six_cells_by_hand():
    from tmeflow.annotate import UNKNOWN, call_clusters

    scores = tiny.frame({"T cell": [3.0, 1.0, 0.0, 0.0, 1.0, 1.0], "B cell": [0.0, 0.0, 4.0, 2.0, 0.8, 1.0]})
    clusters = pd.Series(["0", "0", "1", "1", "2", "2"], index=scores.index)
    calls, means = call_clusters(scores, clusters, min_score=0.5, min_margin=0.5)
    # cluster means: 0 -> T (3+1)/2 = 2, B 0; 1 -> T 0, B (4+2)/2 = 3; 2 -> T (1+1)/2 = 1, B (0.8+1)/2 = 0.9
    assert means.loc["2"].tolist() == pytest.approx([1.0, 0.9])
    # margins (best - second): 2, 3 and 1 - 0.9 = 0.1 < 0.5, so cluster 2 is Unknown
    assert calls["confidence"].tolist() == pytest.approx([2.0, 3.0, 0.1])
    assert calls["cell_type"].tolist() == ["T cell", "B cell", UNKNOWN]
    assert calls["second_type"].tolist() == ["B cell", "T cell", "B cell"]
    assert calls["n_cells"].tolist() == [2, 2, 2]


def test_markers_of_many_clusters_do_not_warn_about_scanpy_s_fragmented_frame():
    """scanpy's Wilcoxon adds 5 columns per cluster one by one; from ~20 clusters pandas warned once per cluster
    into the logs of a large atlas (annotate, subcluster). The markers are still found."""
    import warnings

    import scipy.sparse as sp

    from tmeflow.annotate.markers import find_markers

    rng = np.random.default_rng(0)
    clusters = (np.arange(1500) % 30).astype(str)
    counts = rng.poisson(0.5, size=(1500, 60)).astype(np.float32)
    counts[clusters == "7", 5] += 6  # a planted marker of cluster 7
    adata = ad.AnnData(
        sp.csr_matrix(np.log1p(counts)),
        obs=pd.DataFrame({"leiden": pd.Categorical(clusters)}, index=[f"c{i}" for i in range(1500)]),
        var=pd.DataFrame(index=[f"G{i}" for i in range(60)]),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error", pd.errors.PerformanceWarning)
        table = find_markers(adata, "leiden", 5, 0)
    assert table["cluster"].nunique() == 30
    assert table[table["cluster"] == "7"].iloc[0]["gene"] == "G5"
