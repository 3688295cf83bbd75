"""Pathways and signature scores (tmeflow pathways): GSEA, ORA, ssGSEA, module scores, PROGENy."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _cohort import atlas_from_simulation

from tmeflow.cli import main


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    """Simulated cohort -> pseudobulk DE of malignant cells -> pathways."""
    base = tmp_path_factory.mktemp("pathways")
    assert (
        main(
            [
                "simulate",
                "--outdir",
                str(base / "sim"),
                "--n_cells",
                "2400",
                "--n_patients",
                "3",
                "--seed",
                "11",
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
    atlas = base / "atlas.h5ad"
    atlas_from_simulation(base / "sim").write_h5ad(atlas)
    assert main(["de", "--input", str(atlas), "--outdir", str(base / "de"), "--de_cell_types", "malignant"]) == 0
    gmt = base / "user.gmt"
    gmt.write_text(
        "MY_HYPOXIA\tuser set\t"
        + "\t".join(json.loads((base / "sim" / "truth.json").read_text())["pathway"]["genes"][:30])
        + "\n"
    )
    out = base / "out"
    assert (
        main(
            [
                "pathways",
                "--input",
                str(atlas),
                "--de",
                str(base / "de" / "de_metastasis_vs_primary.tsv"),
                "--signatures",
                str(gmt),
                "--outdir",
                str(out),
                "--gsea_permutations",
                "100",
            ]
        )
        == 0
    )
    return atlas, out, json.loads((base / "sim" / "truth.json").read_text())


@pytest.mark.slow
def test_gsea_ranks_planted_pathway_first(run):
    _, out, truth = run
    gsea = pd.read_csv(out / "gsea_metastasis_vs_primary.tsv", sep="\t")
    malignant = gsea[gsea["cell_type"] == truth["pathway"]["cell_type"]].sort_values("rank")
    top = malignant.iloc[0]
    print(
        f"GSEA top set in malignant cells: {top['term']} (rank 1, NES {top['nes']:.2f}, FDR {top['fdr']:.3g}); "
        f"planted {truth['pathway']['name']}"
    )
    assert top["term"] == truth["pathway"]["name"] and top["nes"] > 0
    ora = pd.read_csv(out / "ora_metastasis_vs_primary.tsv", sep="\t")
    up = ora[(ora["direction"] == "up") & (ora["cell_type"] == "malignant")].sort_values("pvalue")
    assert up.iloc[0]["term"] == truth["pathway"]["name"] and up.iloc[0]["fdr"] < 0.05
    for name in (
        "gsea_metastasis_vs_primary_bubble.png",
        "gsea_metastasis_vs_primary_enrichment.png",
        "ssgsea_by_condition_heatmap.png",
        "ssgsea_cell_types_heatmap.png",
        "module_scores_bubble.png",
    ):
        assert (out / name).stat().st_size > 0


@pytest.mark.slow
def test_scores_are_named_consistently(run):
    _, out, _ = run
    scored = ad.read_h5ad(out / "pathways.h5ad", backed="r")
    assert scored.shape[1] == 0 and not scored.layers  # the cell table and its scores, not a copy of the matrices
    obs_scores = [c for c in scored.obs.columns if c.startswith(("score_", "progeny_"))]
    cells = pd.read_csv(out / "cell_scores.tsv.gz", sep="\t", index_col=0)
    by_type = pd.read_csv(out / "scores_by_cell_type.tsv", sep="\t")
    assert [c for c in cells.columns if c.startswith(("score_", "progeny_"))] == obs_scores
    assert [c for c in by_type.columns if c.startswith(("score_", "progeny_"))] == obs_scores
    assert {"score_MY_HYPOXIA", "score_EMT", "score_cytotrace", "progeny_Hypoxia"} <= set(obs_scores)
    np.testing.assert_allclose(cells.loc[scored.obs_names, "score_EMT"], scored.obs["score_EMT"], rtol=1e-5)
    ssgsea = pd.read_csv(out / "ssgsea_samples.tsv", sep="\t")
    signature_scores = {c.removeprefix("score_") for c in obs_scores if c.startswith("score_")} - {"cytotrace"}
    assert {c.removeprefix("ssgsea_") for c in ssgsea.columns if c.startswith("ssgsea_")} == signature_scores
    # the planted hypoxia programme (metastasis malignant cells) shows in the user's set
    malignant = by_type[by_type["cell_type"] == "malignant"].set_index("condition")
    assert malignant.loc["metastasis", "score_MY_HYPOXIA"] > malignant.loc["primary", "score_MY_HYPOXIA"]


@pytest.mark.slow
def test_scores_are_reproducible(run):
    from tmeflow.pathways import gsea_prerank, module_scores, pathway_collection, signature_sets

    atlas, out, _ = run
    adata = ad.read_h5ad(atlas)
    sets = signature_sets("human", [], adata.var_names)
    first, second = adata.copy(), adata.copy()
    columns = module_scores(first, sets, ctrl_size=50, seed=0)
    module_scores(second, sets, ctrl_size=50, seed=0)
    pd.testing.assert_frame_equal(first.obs[columns], second.obs[columns])
    cells = pd.read_csv(out / "cell_scores.tsv.gz", sep="\t", index_col=0)
    np.testing.assert_allclose(
        cells.loc[first.obs_names, columns].to_numpy(), first.obs[columns].to_numpy(), rtol=1e-5, atol=1e-6
    )
    de = pd.read_csv(out.parent / "de" / "de_metastasis_vs_primary.tsv", sep="\t")
    ranking = pd.Series(de["stat"].to_numpy(), index=de["gene"])
    options = {"permutations": 50, "seed": 3, "min_size": 10, "max_size": 500}
    hallmark = {k: v for k, v in pathway_collection("human").items() if k.startswith(("HALLMARK_H", "HALLMARK_G"))}
    one, _ = gsea_prerank(ranking, hallmark, **options)
    two, _ = gsea_prerank(ranking, hallmark, **options)
    pd.testing.assert_frame_equal(one, two)


@pytest.mark.slow
def test_gmt_without_genes_in_data_exits_2(run, tmp_path, capsys):
    atlas, _, _ = run
    gmt = tmp_path / "foreign.gmt"
    gmt.write_text("MOUSE_SET\tmouse symbols\tCd3e\tCd8a\tGzmb\n")
    assert main(["pathways", "--input", str(atlas), "--signatures", str(gmt), "--outdir", str(tmp_path / "o")]) == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "none of the 1 gene set(s)" in errors[0] and "foreign.gmt" in errors[0]
    assert not (tmp_path / "o").exists()


@pytest.mark.slow
def test_stemness_is_cytotrace_compared_per_sample(run):
    """Issue 20: stemness is CytoTRACE (ranks in (0, 1], with the gene counts signature beside it), summarised
    per sample and cell type and tested between the two conditions with samples as units (3 patients,
    paired where every patient has the cell type in both). The simulator plants no potency difference:
    malignant cells (depth balanced) show none; B cells of two metastasis samples have ~35% fewer UMIs
    and score lower (measured FDR 0.012), CytoTRACE's known dependence on depth, shown beside the score.
    """
    atlas, out, _ = run
    scored = ad.read_h5ad(out / "pathways.h5ad", backed="r")
    score = scored.obs["score_cytotrace"]
    assert score.between(0, 1).all() and score.max() == 1.0 and "gene_counts_signature" in scored.obs.columns
    samples = pd.read_csv(out / "stemness_samples.tsv", sep="\t")
    assert set(samples["sample"]) == set(scored.obs["sample"].astype(str)) and (samples["n_cells"] >= 10).all()
    tests = pd.read_csv(out / "stemness_tests.tsv", sep="\t")
    assert set(tests["contrast"]) == {"metastasis_vs_primary"} and "malignant" in set(tests["cell_type"])
    malignant = tests.set_index("cell_type").loc["malignant"]
    assert (
        malignant["design"] == "~ condition + patient"
        and malignant["n_samples_test"] == malignant["n_samples_reference"] == 3
    )
    assert malignant["fdr"] > 0.05, tests
    assert "median_genes_detected" in samples.columns
    b_cells = samples[samples["cell_type"] == "B"].set_index("sample")
    assert (
        b_cells.loc[["P2_metastasis", "P3_metastasis"], "median_genes_detected"].max()
        < b_cells.loc[["P2_primary", "P3_primary"], "median_genes_detected"].min()
    )
    assert (out / "stemness_by_condition.png").stat().st_size > 5000


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_over_representation_of_a_ten_gene_universe_by_hand():
    from tmeflow.pathways import over_representation

    universe = [f"G{i}" for i in range(10)]
    sets = {"A": ["G0", "G1", "G2", "G3", "OTHER"], "B": ["G7", "G8", "G9"], "tiny": ["G5"]}
    table = over_representation(["G0", "G1", "G5"], universe, sets, min_size=2, max_size=50).set_index("term")
    # "tiny" has 1 gene in the universe < min_size 2: left out; OTHER is outside the universe: A has 4
    assert sorted(table.index) == ["A", "B"]
    a = table.loc["A"]
    assert (a["n_universe"], a["n_set"], a["n_list"], a["overlap"], a["genes"]) == (10, 4, 3, 2, "G0,G1")
    # P(X >= 2), X ~ hypergeometric(N=10, K=4, n=3): [C(4,2) C(6,1) + C(4,3) C(6,0)] / C(10,3) = (36 + 4) / 120 = 1/3
    assert a["pvalue"] == pytest.approx(1 / 3)
    assert a["expected"] == pytest.approx(3 * 4 / 10)  # 1.2
    assert a["odds_ratio"] == pytest.approx(2 * (10 - 4 - 3 + 2) / ((4 - 2) * (3 - 2)))  # 2 x 5 / 2 = 5
    assert table.loc["B", "pvalue"] == 1.0  # no overlap: P(X >= 0) = 1
    # BH of (1/3, 1): 1/3 x 2/1 = 2/3; 1 x 2/2 = 1
    assert table["fdr"].tolist() == pytest.approx([2 / 3, 1.0])


def test_log_cpm_by_hand():
    from tmeflow.pathways import log_cpm

    counts = pd.DataFrame({"g0": [1, 0], "g1": [3, 0]}, index=["S1", "S2"])
    # S1: 1/4 and 3/4 of 10^6 -> log2(250001) = 17.931574, log2(750001) = 19.516535; S2 all zero -> log2(1) = 0
    np.testing.assert_allclose(log_cpm(counts).to_numpy(), [[17.931574, 0.0], [19.516535, 0.0]], atol=1e-6)


def test_module_scores_in_row_blocks_equal_scanpys_score_genes(monkeypatch):
    """Same control genes and scores as scanpy's score_genes, X read a few rows at a time."""
    import scanpy as sc
    import scipy.sparse as sp

    from tmeflow import io
    from tmeflow.pathways import module_scores

    rng = np.random.default_rng(0)
    matrix = sp.random(1500, 1200, density=0.08, format="csr", random_state=rng, dtype=np.float32)
    matrix.data = np.log1p(20 * matrix.data)
    cells = ad.AnnData(matrix, var=pd.DataFrame(index=[f"G{i}" for i in range(1200)]))
    sets = {
        "low": [f"G{i}" for i in range(40)],
        "random": [f"G{i}" for i in rng.choice(1200, 80, replace=False)],
        "with_absent": [f"G{i}" for i in range(600, 620)] + ["ABSENT"],
    }
    expected = cells.copy()
    for name, genes in sets.items():
        sc.tl.score_genes(expected, genes, ctrl_size=30, n_bins=25, score_name=f"score_{name}", random_state=4)
    monkeypatch.setattr(io, "ROW_BLOCK_CELLS", 400)
    columns = module_scores(cells, sets, ctrl_size=30, seed=4)
    assert columns == ["score_low", "score_random", "score_with_absent"]
    np.testing.assert_allclose(cells.obs[columns].to_numpy(), expected.obs[columns].to_numpy(), atol=1e-6)
    assert cells.obs[columns].std().min() > 0.01  # not all zeros by accident
