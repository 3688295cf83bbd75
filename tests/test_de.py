"""Differential expression per cell type (tmeflow de): pseudobulk PyDESeq2 and Wilcoxon."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import tiny
from _cohort import atlas_from_simulation

from tmeflow.cli import main

AUPRC_FLOOR = 0.7


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    base = tmp_path_factory.mktemp("de_cohort")
    assert (
        main(
            [
                "simulate",
                "--outdir",
                str(base / "sim"),
                "--n_cells",
                "4000",
                "--n_patients",
                "6",
                "--seed",
                "5",
                "--conditions",
                "primary,metastasis",
                "--n_genes",
                "1500",
                "--n_sections",
                "0",
                "--n_bulk",
                "0",
            ]
        )
        == 0
    )
    truth = json.loads((base / "sim" / "truth.json").read_text())
    atlas_from_simulation(base / "sim", with_malignant=True).write_h5ad(base / "atlas.h5ad")
    return base / "atlas.h5ad", truth


def _auprc(table: pd.DataFrame, truth: dict) -> float:
    from sklearn.metrics import average_precision_score

    planted = truth["differential_expression"]
    sub = table[table["cell_type"] == planted["cell_type"]]
    labels = sub["gene"].isin(planted["up"] + planted["down"])
    assert labels.sum() >= 0.9 * (len(planted["up"]) + len(planted["down"]))  # planted genes were tested
    return float(average_precision_score(labels, sub["stat"].abs().fillna(0.0)))


@pytest.mark.slow
def test_pseudobulk_recovers_planted_genes_and_matches_pydeseq2(cohort, tmp_path):
    from tmeflow.de import run_pydeseq2

    atlas, truth = cohort
    assert main(["de", "--input", str(atlas), "--outdir", str(tmp_path), "--de_cell_types", "myeloid,mast"]) == 0
    table = pd.read_csv(tmp_path / "de_metastasis_vs_primary.tsv", sep="\t")
    auprc = _auprc(table, truth)
    print(f"pseudobulk AUPRC of planted DE genes: {auprc:.3f}")
    assert auprc >= AUPRC_FLOOR
    myeloid = table[table["cell_type"] == "myeloid"].set_index("gene")
    assert (myeloid["design"] == "~ patient + condition").all()
    up = myeloid.loc[myeloid.index.intersection(truth["differential_expression"]["up"])]
    assert (up["log2fc"] > 0).mean() > 0.9

    # mast cells are ~2% of cells: too few per sample, skipped with the reason
    skipped = pd.read_csv(tmp_path / "de_skipped.tsv", sep="\t")
    assert list(skipped["cell_type"]) == ["mast"] and "needs 2 per condition" in skipped["reason"].iat[0]

    # a direct PyDESeq2 run on the written pseudobulk matrix gives identical statistics (to the 6 significant
    # digits the tables are written with)
    pb = pd.read_csv(tmp_path / "pseudobulk_metastasis_vs_primary.tsv.gz", sep="\t")
    pb = pb[pb["cell_type"] == "myeloid"].set_index("sample")
    genes = list(myeloid.index)
    counts = pb[genes].astype(int)
    assert set(counts.columns[counts.sum() >= 10]) == set(genes)
    direct = run_pydeseq2(counts, pb[["condition", "patient"]], "metastasis", "primary", paired=True)
    np.testing.assert_allclose(myeloid.loc[direct.index, "stat"], direct["stat"], rtol=1e-5, atol=1e-12, equal_nan=True)
    np.testing.assert_allclose(
        myeloid.loc[direct.index, "log2fc"], direct["log2FoldChange"], rtol=1e-5, atol=1e-12, equal_nan=True
    )
    np.testing.assert_allclose(myeloid.loc[direct.index, "padj"], direct["padj"], rtol=1e-5, atol=1e-12, equal_nan=True)
    assert (tmp_path / "de_metastasis_vs_primary_volcano.png").stat().st_size > 0

    # tmeflow's vectorised engine against PyDESeq2's own per-gene routines (DefaultInference): the same
    # statistics to the precision of PyDESeq2's L-BFGS-B dispersion fits, and the same genes called
    from pydeseq2.default_inference import DefaultInference

    pydeseq2 = run_pydeseq2(
        counts, pb[["condition", "patient"]], "metastasis", "primary", paired=True, inference=DefaultInference(n_cpus=1)
    )
    ours = myeloid.loc[pydeseq2.index]
    # (a p-value's relative error is ~stat^2 times the statistic's, hence the looser bound on p-values)
    for column, name, bound in (
        ("stat", "stat", 1e-4),
        ("log2FoldChange", "log2fc", 1e-4),
        ("pvalue", "pvalue", 1e-3),
        ("padj", "padj", 1e-3),
    ):
        rel = ((ours[name] - pydeseq2[column]).abs() / pydeseq2[column].abs().clip(lower=1e-12)).to_numpy()
        print(
            f"{column}: relative difference to DefaultInference: median {np.nanmedian(rel):.1e}, "
            f"99% {np.nanquantile(rel, 0.99):.1e}, max {np.nanmax(rel):.1e}"
        )
        assert (ours[name].isna() == pydeseq2[column].isna()).all()
        assert np.nanquantile(rel, 0.99) < bound and np.nanmax(rel) < 1e-2
    called = pydeseq2.index[(pydeseq2["padj"] < 0.05) & (pydeseq2["log2FoldChange"].abs() > 0.5)]
    assert set(called) == set(ours.index[ours["significant"]])


@pytest.mark.slow
def test_wilcoxon_recovers_planted_genes(cohort, tmp_path, capsys):
    atlas, truth = cohort
    assert (
        main(
            [
                "de",
                "--input",
                str(atlas),
                "--outdir",
                str(tmp_path),
                "--de_method",
                "wilcoxon",
                "--de_cell_types",
                "myeloid",
            ]
        )
        == 0
    )
    # progress of the cell-type groups (tmeflow.log.progress): count, elapsed and ETA
    assert "metastasis_vs_primary: wilcoxon DE, cell-type group 1/1 (100%), elapsed " in capsys.readouterr().err
    table = pd.read_csv(tmp_path / "de_metastasis_vs_primary.tsv", sep="\t")
    auprc = _auprc(table, truth)
    print(f"Wilcoxon AUPRC of planted DE genes: {auprc:.3f}")
    assert auprc >= AUPRC_FLOOR
    called = table[table["significant"]]
    assert (called["padj"] < 0.05).all() and (called["log2fc"].abs() > 0.5).all()


def _tiny_atlas(path, conditions: list[str]):
    rng = np.random.default_rng(0)
    n = 20 * len(conditions)
    obs = pd.DataFrame(
        {
            "sample": np.repeat([f"S{i}" for i in range(len(conditions))], 20),
            "condition": np.repeat(conditions, 20),
            "patient": np.repeat([f"P{i}" for i in range(len(conditions))], 20),
            "cell_type": "T",
        },
        index=[f"c{i}" for i in range(n)],
    )
    counts = sp.csr_matrix(rng.poisson(2.0, size=(n, 30)).astype(np.float32))
    adata = ad.AnnData(X=counts.copy(), obs=obs, var=pd.DataFrame(index=[f"G{i}" for i in range(30)]))
    adata.layers["counts"] = counts
    adata.write_h5ad(path)
    return path


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    one = _tiny_atlas(tmp_path / "one.h5ad", ["primary", "primary"])
    assert main(["de", "--input", str(one), "--outdir", str(tmp_path / "o1")]) == 2
    assert "only one condition" in capsys.readouterr().err
    few = _tiny_atlas(tmp_path / "few.h5ad", ["primary", "primary", "metastasis"])
    assert main(["de", "--input", str(few), "--outdir", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip()
    assert (
        "'metastasis' has 1 sample(s)" in err
        and "at least 2 samples per condition" in err
        and len(err.splitlines()) == 1
    )
    assert main(["de", "--input", str(few), "--outdir", str(tmp_path / "o3"), "--contrast", "metastasis,normal"]) == 2
    err = capsys.readouterr().err.strip()
    assert "'normal'" in err and "not in the data" in err and len(err.splitlines()) == 1
    assert not any((tmp_path / name).exists() for name in ("o1", "o2", "o3"))


def test_malignant_cells_form_one_group_with_the_cnv_label():
    """CNV writes cell_type "Malignant" and obs['malignant']: DE must not test those cells twice."""
    from tmeflow.cnv import MALIGNANT_LABEL
    from tmeflow.de import de_groups

    obs = pd.DataFrame(
        {
            "cell_type": [MALIGNANT_LABEL, MALIGNANT_LABEL, "T", "Epithelial (normal)"],
            "malignant": [True, True, False, False],
        }
    )
    groups = de_groups(obs)
    assert sorted(groups) == sorted([MALIGNANT_LABEL, "T", "Epithelial (normal)"])
    # without a malignant cell type, the flag adds exactly one group, named with the same label
    obs["cell_type"] = ["Epithelial", "Epithelial", "T", "Epithelial"]
    groups = de_groups(obs)
    assert list(groups) == ["Epithelial", "T", MALIGNANT_LABEL]
    assert groups[MALIGNANT_LABEL].tolist() == [True, True, False, False]


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_pseudobulk_sums_of_six_cells_by_hand():
    import scipy.sparse as sp

    from tmeflow.de import pseudobulk

    counts = sp.csr_matrix(np.array([[1, 0, 2], [3, 1, 0], [0, 0, 5], [2, 2, 2], [4, 0, 1], [9, 9, 9]]))
    samples = np.array(["S2", "S1", "S2", "S1", "S1", "S2"])
    mask = np.array([True, True, True, True, True, False])  # cell 5 is not of the tested type
    frame, n_cells = pseudobulk(counts, samples, mask, ["g0", "g1", "g2"])
    # S1: cells 1, 3, 4 -> (3+2+4, 1+2+0, 0+2+1) = (9, 3, 3); S2: cells 0, 2 -> (1+0, 0+0, 2+5) = (1, 0, 7)
    assert frame.loc["S1"].tolist() == [9, 3, 3] and frame.loc["S2"].tolist() == [1, 0, 7]
    assert n_cells.to_dict() == {"S1": 3, "S2": 2}


def test_de_groups_add_the_malignant_cells_as_a_group():
    from tmeflow.de import MALIGNANT, de_groups

    obs = tiny.frame(
        {"cell_type": ["T cell", "epithelial", "epithelial", "T cell"], "malignant": [False, True, False, False]}
    )
    groups = de_groups(obs)
    assert list(groups) == ["T cell", "epithelial", MALIGNANT]
    assert groups[MALIGNANT].tolist() == [False, True, False, False]
    assert list(de_groups(obs, "epithelial")) == ["epithelial"]
