"""tmeflow trajectory: planted pseudotime and fates recovered on a simulated cohort; bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _cohort import atlas_from_simulation
from scipy.stats import spearmanr

# two thirds of the planted subset's 519 cells: the fates below are recovered from a subsample (trajectory_max_cells)
MAX_CELLS = 350


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, dict]:
    from tmeflow.cli import main

    root = tmp_path_factory.mktemp("trajectory")
    assert (
        main(
            [
                "simulate",
                "--outdir",
                str(root / "sim"),
                "--n_cells",
                "2500",
                "--n_patients",
                "3",
                "--n_sections",
                "0",
                "--n_bulk",
                "0",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    truth = json.loads((root / "sim" / "truth.json").read_text())["trajectory"]
    atlas = root / "atlas.h5ad"
    atlas_from_simulation(root / "sim").write_h5ad(atlas)
    out = root / "out"
    # malignant cells separate by patient (CNV) and batch: regress both out; one branching: 3 diffusion components
    code = main(
        [
            "trajectory",
            "--input",
            str(atlas),
            "--outdir",
            str(out),
            "--trajectory_subset",
            truth["cell_type"],
            "--trajectory_root_genes",
            ",".join(truth["early"]),
            "--trajectory_batch_key",
            "patient,batch",
            "--trajectory_n_pcs",
            "10",
            "--trajectory_n_dcs",
            "3",
            "--trajectory_n_states",
            "3",
            "--trajectory_max_cells",
            str(MAX_CELLS),
        ]
    )
    assert code == 0
    return out, truth


@pytest.mark.slow
def test_pseudotime_and_fates_recover_planted_truth(planted):
    out, truth = planted
    adata = ad.read_h5ad(out / "trajectory.h5ad")
    assert set(adata.obs["true_cell_type"]) == {truth["cell_type"]}
    rho = spearmanr(adata.obs["pseudotime"], adata.obs["true_pseudotime"])[0]
    assert rho >= 0.9, rho
    fates = [c.removeprefix("fate_probability_") for c in adata.obs.columns if c.startswith("fate_probability_")]
    assert len(fates) == 2
    # each fate is the planted branch most of its terminal cells follow
    terminal = adata.obs["terminal_state"].astype(str)
    planted_of = {f: adata.obs.loc[terminal == f, "true_fate"].value_counts().idxmax() for f in fates}
    assert sorted(planted_of.values()) == ["A", "B"]
    branched = (adata.obs["true_pseudotime"] > truth["branch_point"]).to_numpy()
    predicted = adata.obs["fate"].astype(str).map(planted_of).to_numpy()
    accuracy = float((predicted[branched] == adata.obs["true_fate"].to_numpy()[branched]).mean())
    assert accuracy >= 0.85, accuracy
    # fate A is planted as enriched in metastasis: it is labelled the metastasis branch
    fate_a = next(f for f, p in planted_of.items() if p == "A")
    table = pd.read_csv(out / "trajectory_fates.tsv", sep="\t").set_index("fate")
    assert table.loc[fate_a, "label"] == "metastasis branch"
    assert fate_a == "metastasis_branch"


@pytest.mark.slow
def test_fate_genes_and_outputs(planted):
    out, truth = planted
    genes = pd.read_csv(out / "trajectory_fate_genes.tsv", sep="\t")
    adata = ad.read_h5ad(out / "trajectory.h5ad")
    terminal = adata.obs["terminal_state"].astype(str)
    for fate in genes["fate"].unique():
        branch = adata.obs.loc[terminal == fate, "true_fate"].value_counts().idxmax()
        called = set(genes.loc[(genes["fate"] == fate) & genes["fate_gene"], "gene"])
        planted_genes = set(truth[f"fate_{branch}"])
        assert len(called & planted_genes) >= 10, (fate, called & planted_genes)
        other = set(truth["fate_B" if branch == "A" else "fate_A"])
        assert len(called & other) <= 2
    enrichment = pd.read_csv(out / "trajectory_fate_enrichment.tsv", sep="\t")
    assert {"fate", "gene_set", "overlap", "pvalue", "fdr"} <= set(enrichment.columns) and len(enrichment)
    for name in (
        "trajectory_cells.tsv",
        "trajectory_fate_conditions.tsv",
        "trajectory_embedding.png",
        "trajectory_trends.png",
        "trajectory_summary.json",
        "trajectory_mqc.tsv",
    ):
        assert (out / name).is_file(), name
    probs = adata.obs[[c for c in adata.obs.columns if c.startswith("fate_probability_")]].to_numpy()
    assert np.allclose(probs.sum(axis=1), 1.0, atol=1e-3)
    summary = json.loads((out / "trajectory_summary.json").read_text())
    assert summary["n_cells_subset"] > MAX_CELLS >= summary["n_cells"] - 10 * 3 and summary["n_cells"] == adata.n_obs


def _tiny_atlas(path: Path) -> Path:
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(40)]
    counts = rng.poisson(1.0, size=(90, len(genes))).astype(np.float32)
    counts[:, 0] = 0  # G0 is never expressed
    obs = pd.DataFrame(
        {"sample": "s1", "condition": "primary", "cell_type": np.repeat(["epithelial", "malignant", "T"], 30)},
        index=[f"c{i}" for i in range(90)],
    )
    adata = ad.AnnData(np.log1p(counts), obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = counts
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--trajectory_root_type", "T"], "trajectory_root_type 'T' is not a cell type of the trajectory subset"),
        (["--trajectory_root_genes", "G0"], "not expressed in the trajectory subset"),
        (["--trajectory_root_genes", "Camp,Ltf"], "none of the trajectory_root_genes"),
        (["--trajectory_subset", "hepatocyte"], "neither a compartment nor a cell type"),
        (["--trajectory_batch_key", "nosuch"], "trajectory_batch_key 'nosuch'"),
        (["--trajectory_trend_sets", "DAMPS,necrosis"], "trajectory_trend_sets names unknown gene sets: necrosis"),
    ],
)
def test_bad_inputs_exit_2_one_line(tmp_path, capsys, args, fragment):
    from tmeflow.cli import main

    atlas = _tiny_atlas(tmp_path / "atlas.h5ad")
    code = main(
        [
            "trajectory",
            "--input",
            str(atlas),
            "--outdir",
            str(tmp_path / "out"),
            "--trajectory_n_neighbors",
            "10",
            *args,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and fragment in err[0] and err[0].startswith("tmeflow trajectory: error:")
    assert not (tmp_path / "out").exists()


def _fate_cells(seed: int, effect: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Fate probabilities of 60 cells per sample, 5 patients x (primary, metastasis). Each sample has its own
    propensity for fate A (samples vary, as real ones do); ``effect`` raises it in metastasis.
    """
    rng = np.random.default_rng(seed)
    obs, probs = [], []
    for patient in range(5):
        for condition in ("primary", "metastasis"):
            propensity = rng.normal(0.0, 0.6) + (effect if condition == "metastasis" else 0.0)
            a = 1 / (1 + np.exp(-(propensity + rng.normal(0, 1.0, 60))))
            probs.append(np.c_[a, 1 - a])
            obs += [{"sample": f"p{patient}_{condition}", "patient": f"p{patient}", "condition": condition}] * 60
    obs = pd.DataFrame(obs, index=[f"c{i}" for i in range(len(obs))])
    return pd.DataFrame(np.vstack(probs), index=obs.index, columns=["fate_A", "fate_B"]), obs


@pytest.mark.slow
def test_fate_labels_are_calibrated_at_sample_level():
    """Null cohorts (fate propensity varies between samples, not with condition): fates get a condition label
    at the nominal 5% (within Monte Carlo error; 200 cohorts, as 40 seeds alone cannot tell 5% from 10%;
    cell-level Fisher tests labelled most); a planted metastasis shift is labelled.
    """
    from tmeflow.trajectory import condition_enrichment, label_fates

    labelled = 0
    n_cohorts = 200
    for seed in range(n_cohorts):
        probs, obs = _fate_cells(seed)
        table = condition_enrichment(probs, obs, ["primary", "metastasis"])
        labelled += any(v["label"] != "shared" for v in label_fates(table).values())
    print(f"null: {labelled}/{n_cohorts} cohorts with a labelled fate")
    assert labelled / n_cohorts <= 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / n_cohorts)
    probs, obs = _fate_cells(0, effect=1.5)
    table = condition_enrichment(probs, obs, ["primary", "metastasis"])
    labels = label_fates(table)
    assert labels["fate_A"]["label"] == "metastasis branch" and labels["fate_B"]["label"] == "primary branch"
    assert set(table["design"]) == {"~ condition + patient"}


@pytest.mark.slow
def test_branch_genes_recover_planted_fates(planted):
    """tradeSeq-style branch test (sample-level) on the simulated two-fate cohort: the planted fate_A / fate_B
    genes rank first among the tested genes (AUPRC >= 0.8); clusters, enrichment, heatmap and set trends written.
    """
    from sklearn.metrics import average_precision_score

    out, truth = planted
    table = pd.read_csv(out / "trajectory_branch_genes.tsv", sep="\t")
    planted_genes = set(truth["fate_A"]) | set(truth["fate_B"])
    is_planted = table["gene"].isin(planted_genes).to_numpy()
    assert is_planted.sum() >= 0.8 * len(planted_genes)  # the planted genes are among the tested HVGs
    auprc = average_precision_score(is_planted, -np.log10(table["pvalue_branch"].to_numpy() + 1e-300))
    called = table["branch_gene"].to_numpy()
    fdp = float((called & ~is_planted).sum() / max(called.sum(), 1))
    early = table["gene"].isin(truth["early"]).to_numpy()
    print(
        f"planted cohort: AUPRC {auprc:.3f}; {called.sum()} branch genes, {int((called & is_planted).sum())} planted, "
        f"false discovery proportion {fdp:.3f}; "
        f"early (not branch-dependent) genes called {int((called & early).sum())}/{int(early.sum())}"
    )
    assert auprc >= 0.8
    assert (table["n_samples"] >= 3).all()
    clusters = pd.read_csv(out / "trajectory_branch_clusters.tsv", sep="\t")
    assert set(clusters["gene"]) == set(table.loc[called, "gene"]) and clusters["cluster"].between(1, 4).all()
    # fate_A and fate_B genes rise on different fates: k-means keeps them apart
    of = clusters.set_index("gene")["cluster"]
    a = of.reindex(truth["fate_A"]).dropna().mode()[0]
    b = of.reindex(truth["fate_B"]).dropna().mode()[0]
    assert a != b
    enrichment = pd.read_csv(out / "trajectory_branch_enrichment.tsv", sep="\t")
    assert {"cluster", "term", "overlap", "pvalue", "fdr"} <= set(enrichment.columns)
    trends = pd.read_csv(out / "trajectory_set_trends.tsv", sep="\t")
    assert set(trends["gene_set"]) == {"GO_0070266_NECROPTOTIC_PROCESS", "DAMPS"}
    for name in ("trajectory_branch_heatmap.png", "trajectory_set_trends.png"):
        assert (out / name).stat().st_size > 5000, name
    summary = json.loads((out / "trajectory_summary.json").read_text())
    assert summary["branch_genes"]["n_branch_genes"] == int(called.sum())


@pytest.mark.slow
def test_branch_genes_null_by_permuting_fates_within_sample(planted):
    """Fate probabilities permuted among cells of the same sample and pseudotime decile (fates then carry no
    gene's expression; per-sample fate proportions and pseudotime kept): the stage's branch test on the
    simulated cohort makes no or very few calls.
    """
    from tmeflow.trajectory.branch import branch_analysis

    out, _ = planted
    adata = ad.read_h5ad(out / "trajectory.h5ad")
    columns = [c for c in adata.obs.columns if c.startswith("fate_probability_")]
    probs = adata.obs[columns].rename(columns=lambda c: c.removeprefix("fate_probability_"))
    decile = pd.qcut(adata.obs["pseudotime"].rank(method="first"), 10, labels=False).to_numpy()
    strata = adata.obs["sample"].astype(str).to_numpy() + "_" + decile.astype(str)
    options = {"trend_sets": [], "knots": 5, "n_clusters": 4, "fdr": 0.05, "seed": 0}
    rng = np.random.default_rng(0)
    calls, with_call, n_perm = [], 0, 10
    for _ in range(n_perm):
        order = np.arange(adata.n_obs)
        for stratum in np.unique(strata):
            idx = np.flatnonzero(strata == stratum)
            order[idx] = rng.permutation(idx)
        permuted = pd.DataFrame(probs.to_numpy()[order], index=probs.index, columns=probs.columns)
        table = branch_analysis(adata, permuted, "human", min_expressed=0.05, **options)["genes"]
        calls.append(int(table["branch_gene"].sum()))
        with_call += calls[-1] > 0
    n_tested = len(table)
    print(f"within-sample permutations: branch genes called {calls} of {n_tested} tested")
    assert with_call <= 2 and max(calls) <= 0.01 * n_tested


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_pseudotime_scaling_of_eleven_cells_by_hand():
    from tmeflow.trajectory.branch import knots_at_quantiles, scale_pseudotime

    t = np.arange(11.0)  # 0, 1, ..., 10
    # linear quantiles: 1 % at 0.01 x 10 = 0.1, 99 % at 9.9; scaled (t - 0.1) / 9.8, clipped to [0, 1]
    scaled = scale_pseudotime(t)
    assert scaled[0] == 0.0 and scaled[10] == 1.0
    assert scaled[5] == pytest.approx(0.5)  # (5 - 0.1) / 9.8
    assert scaled[1] == pytest.approx(0.9 / 9.8)  # 0.091837
    # 5 knots at the 0, 25, 50, 75, 100 % quantiles of 0..10: 0, 2.5, 5, 7.5, 10
    np.testing.assert_allclose(knots_at_quantiles(t, 5), [0.0, 2.5, 5.0, 7.5, 10.0])


def test_subsample_keeps_each_sample_and_cell_type_share_and_rare_types():
    from tmeflow.trajectory.inputs import MIN_CELLS_PER_GROUP, subsample_cells

    sizes = {("s1", "tumour"): 5990, ("s2", "tumour"): 3000, ("s2", "stem"): 12, ("s3", "tumour"): 991, ("s3", "x"): 7}
    obs = pd.DataFrame(
        [(sample, cell_type) for (sample, cell_type), n in sizes.items() for _ in range(n)],
        columns=["sample", "cell_type"],
    ).sample(frac=1.0, random_state=0)  # groups interleaved
    obs.index = [f"c{i}" for i in range(len(obs))]
    kept = subsample_cells(obs, 1000, seed=0)
    assert np.array_equal(kept, np.unique(kept)) and np.array_equal(kept, subsample_cells(obs, 1000, seed=0))
    counts = obs.iloc[kept].groupby(["sample", "cell_type"]).size().to_dict()
    # a tenth of each group, rare groups floored at MIN_CELLS_PER_GROUP (10) or kept whole
    assert MIN_CELLS_PER_GROUP == 10
    assert counts == {
        ("s1", "tumour"): 599,
        ("s2", "tumour"): 300,
        ("s2", "stem"): 10,
        ("s3", "tumour"): 99,
        ("s3", "x"): 7,
    }
    assert not np.array_equal(kept, subsample_cells(obs, 1000, seed=1))
    assert np.array_equal(subsample_cells(obs, 0, seed=0), np.arange(len(obs)))
    assert np.array_equal(subsample_cells(obs, len(obs), seed=0), np.arange(len(obs)))
