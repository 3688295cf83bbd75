"""tmeflow communication: planted MDK -> NCL recovery, a null cohort, real data, bad inputs."""

from __future__ import annotations

import json
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from _cohort import atlas_from_simulation


def simulate(outdir: Path, *extra: str) -> Path:
    from tmeflow.cli import main

    code = main(
        [
            "simulate",
            "--outdir",
            str(outdir),
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
            *extra,
        ]
    )
    assert code == 0
    return outdir


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> tuple[Path, Path]:
    """(atlas path, stage outdir) of one communication run on a simulated cohort."""
    from tmeflow.cli import main

    root = tmp_path_factory.mktemp("communication")
    sim = simulate(root / "sim")
    atlas = root / "atlas.h5ad"
    atlas_from_simulation(sim).write_h5ad(atlas)
    out = root / "out"
    code = main(
        [
            "communication",
            "--input",
            str(atlas),
            "--outdir",
            str(out),
            "--contrast",
            "metastasis,primary",
            "--communication_n_perms",
            "50",
            "--communication_per_sample",
            "false",
        ]
    )
    assert code == 0
    return atlas, out


@pytest.mark.slow
def test_planted_interaction_ranks_top(planted):
    _, out = planted
    truth = json.loads((out.parent / "sim" / "truth.json").read_text())["ligand_receptor"]
    table = pd.read_csv(out / "communication_diff_metastasis_vs_primary.tsv", sep="\t")
    assert len(table) > 100
    hit = table.index[
        (table["ligand"] == truth["ligand"])
        & (table["receptor"] == truth["receptor"])
        & (table["source"] == truth["source"])
        & (table["target"] == truth["target"])
    ]
    assert len(hit) == 1
    rank = int(hit[0]) + 1  # table is sorted by p-value
    assert rank <= 5, table.head(10)
    assert table.loc[hit[0], "logfc"] > 0
    assert table.loc[hit[0], "design"] == "~ condition + patient"  # every patient has both conditions


@pytest.mark.slow
def test_outputs_and_summaries(planted):
    _, out = planted
    for name in (
        "communication_liana_by_condition.tsv.gz",
        "communication_counts.tsv",
        "communication_pathways.tsv",
        "communication_counts_heatmap.png",
        "communication_strength_heatmap.png",
        "communication_proportion_tests.tsv",
        "communication_diff_metastasis_vs_primary_dotplot.png",
        "communication_sample_scores_metastasis_vs_primary.tsv.gz",
        "communication_skipped.tsv",
        "communication_summary.json",
        "communication_mqc.tsv",
        "communication_roles.tsv",
        "communication_pathway_diff_metastasis_vs_primary.tsv",
        "communication_roles_heatmap.png",
    ):
        assert (out / name).is_file(), name
    liana = pd.read_csv(out / "communication_liana_by_condition.tsv.gz", sep="\t")
    assert set(liana["condition"]) == {"normal", "primary", "metastasis"}
    counts = pd.read_csv(out / "communication_counts.tsv", sep="\t")
    assert (counts["n_interactions"] <= counts["n_tested"]).all() and counts["n_interactions"].sum() > 0
    tests = pd.read_csv(out / "communication_proportion_tests.tsv", sep="\t")
    # samples are the units of the proportion tests: without per-sample inference there are none
    from tmeflow.communication import PROPORTION_COLUMNS

    assert tests.empty and list(tests.columns) == PROPORTION_COLUMNS
    # the planted interaction is called (LIANA) in metastasis
    met = liana[
        (liana["condition"] == "metastasis") & (liana["source"] == "malignant") & (liana["target"] == "fibroblast")
    ]
    assert bool(met.loc[met["interaction"] == "MDK->NCL", "called"].iat[0])


@pytest.mark.slow
def test_null_cohort_has_no_differential_interaction(tmp_path):
    """A cohort simulated without any condition effect: the simulator plants the LR (and every other) effect only
    in 'metastasis' samples, so primary vs recurrent is a null; one batch, so batch is not confounded with condition.
    """
    from tmeflow.communication import CommunicationSettings, differential_interactions, load_resource, pathway_map
    from tmeflow.composition import sample_table

    adata = atlas_from_simulation(simulate(tmp_path / "sim", "--conditions", "primary,recurrent", "--n_batches", "1"))
    _, resource = load_resource("", "human", adata.var_names)
    pathways, _ = pathway_map(resource)
    cell_types = sorted(adata.obs["cell_type"].unique())
    settings = CommunicationSettings.defaults()
    table, _, reason = differential_interactions(
        adata,
        resource,
        pathways,
        sample_table(adata.obs),
        "recurrent",
        "primary",
        cell_types,
        min_cells=settings.communication_min_cells,
        expr_prop=settings.communication_expr_prop,
        fdr=settings.communication_fdr,
    )
    assert reason is None and len(table) > 100
    assert not (table["fdr"] < 0.05).any(), table.head()
    from tmeflow.communication import pathway_tests

    paths = pathway_tests(table, pathways, "recurrent_vs_primary", fdr=0.05)
    overall = paths[paths["level"] == "pathway"]
    print(f"null cohort: {len(overall)} pathways, {np.mean(overall['pvalue'] < 0.05):.3f} with p < 0.05")
    assert len(overall) > 10
    assert not (paths["fdr"] < 0.05).any(), paths.head()


def _tiny_atlas(path: Path, *, raw: bool = False) -> Path:
    rng = np.random.default_rng(0)
    genes = ["MDK", "NCL", "CD47", "SIRPA", "MIF", "CD74", "CXCR4", "CD44", "COL1A1", "ITGB1", "APP", "CD4"] + [
        f"G{i}" for i in range(20)
    ]
    counts = rng.poisson(2.0, size=(120, len(genes))).astype(np.float32)
    obs = pd.DataFrame(
        {
            "sample": np.repeat(["s1", "s2", "s3", "s4"], 30),
            "patient": np.repeat(["p1", "p2", "p1", "p2"], 30),
            "condition": np.repeat(["primary", "primary", "metastasis", "metastasis"], 30),
            "cell_type": np.tile(["a", "b", "c"], 40),
        },
        index=[f"c{i}" for i in range(120)],
    )
    adata = ad.AnnData(
        counts if raw else np.log1p(counts / counts.sum(1, keepdims=True) * 1e4), obs=obs, var=pd.DataFrame(index=genes)
    )
    adata.layers["counts"] = counts
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["--contrast", "metastasis,recurrent"], "recurrent"),
        (["--communication_resource", "nosuch"], "unknown communication_resource"),
        (["--communication_plot_pathways", "MK,NOSUCH"], "communication_plot_pathways: unknown pathway(s) NOSUCH"),
    ],
)
def test_bad_inputs_exit_2_one_line(tmp_path, capsys, args, fragment):
    from tmeflow.cli import main

    atlas = _tiny_atlas(tmp_path / "atlas.h5ad")
    code = main(["communication", "--input", str(atlas), "--outdir", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and fragment in err[0] and err[0].startswith("tmeflow communication: error:")
    assert not (tmp_path / "out").exists()


def test_raw_counts_in_x_exit_2(tmp_path, capsys):
    from tmeflow.cli import main

    atlas = _tiny_atlas(tmp_path / "atlas.h5ad", raw=True)
    adata = ad.read_h5ad(atlas)
    adata.X = adata.X * 30  # clearly counts
    adata.write_h5ad(atlas)
    assert main(["communication", "--input", str(atlas), "--outdir", str(tmp_path / "out")]) == 2
    assert "raw counts" in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.shared_data
def test_cid4465_end_to_end(shared_data, tmp_path):
    """Wu et al. 2021 CID4465 (TNBC): one sample, one condition; too-small cell types are skipped and listed."""
    import scanpy as sc

    from tmeflow.cli import main
    from tmeflow.readers import read_counts

    folder = shared_data / "wu2021_CID4465_scRNA"
    if not folder.is_dir():
        pytest.skip("wu2021_CID4465_scRNA not in shared data")
    adata = read_counts(folder, sample="CID4465")
    meta = pd.read_csv(folder / "cell_metadata.csv.gz", index_col=0)
    adata = adata[adata.obs_names.isin(meta.index)].copy()
    adata.obs["cell_type"] = meta.loc[adata.obs_names, "celltype_major"].astype(str).to_numpy()
    adata.obs["sample"], adata.obs["patient"], adata.obs["condition"] = "CID4465", "CID4465", "primary"
    adata.layers["counts"] = adata.X.copy()
    sc.pp.normalize_total(adata, target_sum=1e4)
    sc.pp.log1p(adata)
    atlas = tmp_path / "cid4465.h5ad"
    adata.write_h5ad(atlas)
    out = tmp_path / "out"
    code = main(
        [
            "communication",
            "--input",
            str(atlas),
            "--outdir",
            str(out),
            "--communication_n_perms",
            "50",
            "--communication_min_cells",
            "20",
        ]
    )
    assert code == 0
    skipped = pd.read_csv(out / "communication_skipped.tsv", sep="\t")
    assert "Normal Epithelial" in set(skipped["cell_type"])  # 10 cells < 20
    liana = pd.read_csv(out / "communication_liana_by_condition.tsv.gz", sep="\t")
    assert "Normal Epithelial" not in set(liana["source"]) | set(liana["target"])
    assert (out / "communication_liana_by_sample.tsv.gz").is_file()
    caf = liana[(liana["source"] == "CAFs") & (liana["target"] == "Cancer Epithelial")].sort_values("magnitude_rank")
    assert len(caf) > 10 and caf["called"].any()
    print(caf.head(15)[["interaction", "lr_means", "magnitude_rank", "specificity_rank"]].to_string())
    # issue 20: pathway communication and signalling roles run on real data (one condition: no pathway test;
    # the strongest pathways are plotted and their roles given)
    strength = pd.read_csv(out / "communication_pathways.tsv", sep="\t")
    top = strength[strength["pathway"] != "other"].groupby("pathway")["strength"].sum().sort_values(ascending=False)
    print(top.head(10).round(2).to_string())
    assert len(top) >= 5 and "COLLAGEN" in set(
        top.index[:3]
    )  # measured: COLLAGEN, MHC-I, FN1, APP, MK, ... (9 pathways)
    summary = json.loads((out / "communication_summary.json").read_text())
    assert summary["plotted_pathways"]["pathways"] == list(top.index[:3])
    roles = pd.read_csv(out / "communication_roles.tsv", sep="\t")
    for pathway in top.index[:3]:
        assert (out / f"communication_pathway_circle_{pathway}.png").is_file()
        block = roles[roles["pathway"] == pathway].set_index("cell_type")
        print(
            pathway,
            *(
                f"{role} {block[role].idxmax() if block[role].max() > 0 else '-'}"
                for role in ("sender", "receiver", "mediator", "influencer")
            ),
        )
    coll = roles[roles["pathway"] == "COLLAGEN"].set_index("cell_type")
    assert coll["sender"].idxmax() == "CAFs"  # collagens come from the fibroblasts


def _sample_counts(seed: int, effect: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-sample called/tested interaction counts of 4 cell types x 4 (16 source -> target pairs), 4 patients
    with one primary and one metastasis sample each. The called fraction varies between samples (beta,
    overdispersed as real per-sample LIANA calls); ``effect`` raises a -> b in metastasis only.
    """
    rng = np.random.default_rng(seed)
    types = ["a", "b", "c", "d"]
    rows, samples = [], []
    for patient in range(4):
        for condition in ("primary", "metastasis"):
            sample = f"p{patient}_{condition}"
            samples.append({"sample": sample, "condition": condition, "patient": f"p{patient}"})
            for source in types:
                for target in types:
                    base = 0.2 + (
                        0.3 if effect and condition == "metastasis" and (source, target) == ("a", "b") else 0.0
                    )
                    fraction = rng.beta(base * 20, (1 - base) * 20)
                    n = int(rng.integers(150, 400))
                    rows.append(
                        {
                            "sample": sample,
                            "condition": condition,
                            "source": source,
                            "target": target,
                            "n_tested": n,
                            "n_interactions": int(rng.binomial(n, fraction)),
                        }
                    )
    return pd.DataFrame(rows), pd.DataFrame(samples).set_index("sample")


@pytest.mark.slow
def test_proportion_tests_are_calibrated_at_sample_level():
    """40 null cohorts (no condition or source effect): within- and between-condition proportion tests reject
    at the nominal 5% at p < 0.05 (measured: 5.2% of 1,280 and 4.1% of 640; the old z-tests on pooled
    interaction counts treated interactions as independent trials); a planted +0.3 fraction
    of a -> b in metastasis is found at FDR < 0.05.
    """
    from tmeflow.communication import proportion_tests

    p_within, p_between = [], []
    for seed in range(40):
        counts, samples = _sample_counts(seed)
        table = proportion_tests(counts, samples, [("metastasis", "primary")])
        p_within += table.loc[table["comparison"] == "within_condition", "pvalue"].tolist()
        p_between += table.loc[table["comparison"] == "between_conditions", "pvalue"].tolist()
    assert len(p_within) == 40 * 2 * 16 and len(p_between) == 40 * 16
    rate_within, rate_between = np.mean(np.array(p_within) < 0.05), np.mean(np.array(p_between) < 0.05)
    print(f"null rejection rate: within {rate_within:.3f}, between {rate_between:.3f}")
    # nominal 5% within Monte Carlo error (one-sided 95% binomial bound on the rejection rate)
    assert rate_within <= 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / len(p_within))
    assert rate_between <= 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / len(p_between))
    counts, samples = _sample_counts(0, effect=0.3)
    table = proportion_tests(counts, samples, [("metastasis", "primary")])
    hit = table[
        (table["comparison"] == "between_conditions") & (table["source"] == "a") & (table["target"] == "b")
    ].iloc[0]
    assert hit["fdr"] < 0.05 and hit["estimate"] > 0 and hit["design"] == "~ condition + patient"


@pytest.mark.slow
def test_pathways_are_cellchatdb_names_not_ligand_prefixes():
    """Without a pathway column the bundled ligand -> CellChatDB pathway table names the pathways: IL1B,
    IL6 and IL10 stay three pathways (a ligand-name prefix made them one 'IL'); collagen chains are one
    COLLAGEN, MDK is MK, mouse symbols and complex ligands map; a resource's own column wins.
    """
    from tmeflow.communication import pathway_map, pathway_of, pathway_table

    resource = pd.DataFrame(
        {
            "ligand": ["IL1B", "IL6", "IL10", "COL1A1", "COL4A2", "MDK", "NOSUCHGENE"],
            "receptor": ["IL1R1", "IL6R", "IL10RA", "CD44", "ITGA1_ITGB1", "NCL", "X"],
        }
    )
    pathways, source = pathway_map(resource)
    assert "CellChatDB" in source
    assert (
        pathways[("IL1B", "IL1R1")] == "IL1"
        and pathways[("IL6", "IL6R")] == "IL6"
        and pathways[("IL10", "IL10RA")] == "IL10"
    )
    assert pathways[("COL1A1", "CD44")] == pathways[("COL4A2", "ITGA1_ITGB1")] == "COLLAGEN"
    assert pathways[("MDK", "NCL")] == "MK" and ("NOSUCHGENE", "X") not in pathways
    assert pathway_of("Mdk") == "MK" and pathway_of("Mif") == "MIF" and pathway_of("IL12A_IL12B") == "IL12"
    liana = pd.DataFrame(
        {
            "condition": "c",
            "source": "a",
            "target": "b",
            "ligand": ["IL1B", "IL6", "NOSUCHGENE"],
            "receptor": ["IL1R1", "IL6R", "X"],
            "magnitude_rank": 0.001,
            "lr_means": 1.0,
        }
    )
    assert set(pathway_table(liana, pathways, 0.05)["pathway"]) == {"IL1", "IL6", "other"}
    annotated, source = pathway_map(resource.assign(pathway=["a", "b", "c", "d", "e", "f", "g"]))
    assert annotated[("IL6", "IL6R")] == "b" and source == "resource column 'pathway'"


@pytest.mark.slow
def test_planted_mdk_ncl_makes_mk_the_top_differential_pathway(planted):
    """Issue 20 acceptance: on the simulated cohort (MDK x4 in malignant cells, NCL x4 in fibroblasts of
    metastasis samples) MK is the top differential pathway (measured: Simes p 0.0014, FDR 0.018; next VEGF,
    p 0.031), carried by malignant -> fibroblast MDK->NCL; it is plotted first; in metastasis the
    malignant cells are MK's main sender and fibroblasts its main receiver.
    """
    _, out = planted
    table = pd.read_csv(out / "communication_pathway_diff_metastasis_vs_primary.tsv", sep="\t")
    overall = table[table["level"] == "pathway"].reset_index(drop=True)
    assert overall.loc[0, "pathway"] == "MK", overall.head()
    assert overall.loc[0, "fdr"] < 0.05 and overall.loc[0, "top_interaction"] == "malignant -> fibroblast: MDK->NCL"
    assert overall.loc[0, "design"] == "~ condition + patient"
    pairs = table[(table["level"] == "pair") & (table["pathway"] == "MK")]
    best = pairs.sort_values("pvalue").iloc[0]
    assert (best["source"], best["target"]) == ("malignant", "fibroblast") and best["logfc"] > 0
    summary = json.loads((out / "communication_summary.json").read_text())
    assert summary["plotted_pathways"]["pathways"][0] == "MK" and len(summary["plotted_pathways"]["pathways"]) == 3
    assert summary["pathway_differential"]["metastasis_vs_primary"][0]["pathway"] == "MK"
    for name in (
        "communication_pathway_circle_MK.png",
        "communication_roles_heatmap.png",
        "communication_pathway_diff_metastasis_vs_primary_heatmap.png",
    ):
        assert (out / name).stat().st_size > 5000, name
    roles = pd.read_csv(out / "communication_roles.tsv", sep="\t")
    mk = roles[(roles["condition"] == "metastasis") & (roles["pathway"] == "MK")].set_index("cell_type")
    assert mk["sender_scaled"].idxmax() == "malignant" and mk["receiver_scaled"].idxmax() == "fibroblast"
    assert (
        set(roles["pathway"]) >= {"MK", "all"}
        and (roles[["sender", "receiver", "mediator", "influencer"]] >= 0).all().all()
    )
    strength = pd.read_csv(out / "communication_pathways.tsv", sep="\t")
    assert "MK" in set(strength["pathway"]) and strength["pathway_source"].str.contains("CellChatDB").all()


def test_centralities_on_known_networks():
    """Flow betweenness (Freeman et al. 1991) and information centrality (Stephenson & Zelen 1989) on graphs
    with known answers: on a chain a -> b -> c only b mediates, carrying the a -> c max-flow (the smaller
    capacity, 2); a star's centre is the top influencer and leaves tie.
    """
    from tmeflow.communication import flow_betweenness, information_centrality, network_roles

    chain = np.array([[0, 3.0, 0], [0, 0, 2.0], [0, 0, 0]])
    assert np.allclose(flow_betweenness(chain), [0, 2.0, 0])
    star = np.zeros((4, 4))
    star[1:, 0] = 1.0  # leaves -> centre
    info = information_centrality(star)
    assert info[0] > info[1] and np.allclose(info[1:], info[1]) and np.isclose(info.sum(), 1.0)
    # the order of the cell types does not matter (CellChat's cmode = "lower" made it matter)
    assert np.allclose(information_centrality(star.T), info)
    isolated = np.zeros((3, 3))
    isolated[1, 0] = 1.0
    assert information_centrality(isolated)[2] == 0.0
    roles = network_roles(pd.DataFrame(chain, index=list("abc"), columns=list("abc")))
    assert roles.set_index("cell_type")["sender"].to_dict() == {"a": 3.0, "b": 2.0, "c": 0.0}
    assert roles.set_index("cell_type")["mediator_scaled"].to_dict() == {"a": 0.0, "b": 1.0, "c": 0.0}


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_simes_combination_by_hand():
    from tmeflow.communication.signalling import simes

    # sorted finite p = (0.01, 0.03, 0.04), m = 3: m p_(i) / i = 0.03, 0.045, 0.04 -> min 0.03 (NaN ignored)
    assert simes([0.04, np.nan, 0.01, 0.03]) == pytest.approx(0.03)
    # (0.5, 0.6): 2 x 0.5 / 1 = 1.0, 2 x 0.6 / 2 = 0.6 -> 0.6
    assert simes([0.6, 0.5]) == pytest.approx(0.6)
    assert np.isnan(simes([np.nan]))


@pytest.mark.slow  # LIANA's import alone is ~9 s
def test_liana_on_hands_liana_only_x_and_the_groups_with_the_same_result(monkeypatch):
    """LIANA copies obs and obsp into every per-cell-type view, so ``liana_on`` passes it X and ``cell_type``
    only (issue 23); the interactions equal those of the whole subset (every obs column, graphs, layers).
    """
    import scipy.sparse as sp

    from tmeflow.communication import core

    lr_genes = ["MDK", "NCL", "CD47", "SIRPA", "MIF", "CD74", "CXCR4", "CD44", "COL1A1", "ITGB1", "ITGA1", "APP"]
    resource = core.load_resource(None, "human", lr_genes)[1]
    resource = resource.iloc[:300]
    genes = sorted({g for col in ("ligand", "receptor") for entry in resource[col] for g in entry.split("_")})
    genes += [f"G{i}" for i in range(20)]
    rng = np.random.default_rng(1)
    counts = rng.poisson(2.0, size=(90, len(genes))).astype(np.float32)
    cell_types = np.where(np.arange(90) % 10 == 0, "rare", np.tile(["a", "b", "c"], 30))
    adata = ad.AnnData(
        sp.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)),
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical(cell_types), "sample": np.repeat(["s1", "s2", "s3"], 30)},
            index=[f"c{i}" for i in range(90)],
        ),
        var=pd.DataFrame(index=genes),
    )
    adata.obs["score"] = np.arange(90.0)
    adata.obsp["connectivities"] = sp.random(90, 90, density=0.1, format="csr", random_state=0)
    adata.layers["counts"] = adata.X.copy()
    settings = core.CommunicationSettings.defaults().replace(
        communication_n_perms=20, communication_min_cells=7, seed=3
    )
    mask = adata.obs["sample"].isin(["s1", "s2"]).to_numpy()
    seen = []
    run_liana = core.run_liana

    def recording(sub, resource, settings):
        seen.append(sub)
        return run_liana(sub, resource, settings)

    monkeypatch.setattr(core, "run_liana", recording)
    skipped: list[dict] = []
    got = core.liana_on(adata, mask, resource, settings, scope="condition", condition="c", sample="", skipped=skipped)
    (sub,) = seen
    assert list(sub.obs.columns) == ["cell_type"] and not sub.obsp and not sub.layers and not sub.obsm
    assert [s["cell_type"] for s in skipped] == ["rare"]  # 6 cells < 7

    full = adata[mask & (cell_types != "rare")].copy()  # the whole subset, as before, without the rare type
    full.obs["cell_type"] = pd.Categorical(full.obs["cell_type"].astype(str), categories=["a", "b", "c"])
    expected = run_liana(full, resource, settings)
    expected.insert(0, "condition", "c")
    assert got is not None and len(got) > 0
    pd.testing.assert_frame_equal(got, expected)


def test_liana_sees_at_most_max_cells_per_cell_type_with_the_same_ranking(monkeypatch):
    """``communication_max_cells`` (issue 23): a large cell type enters LIANA as a seeded subsample, which is
    listed; the scores are group means, so the subsample ranks the interactions as all cells do.
    """
    from scipy.stats import spearmanr

    from tmeflow.communication import core
    from tmeflow.stats import cap_cells_per_group

    lr_genes = ["MDK", "NCL", "CD47", "SIRPA", "MIF", "CD74", "CXCR4", "CD44", "COL1A1", "ITGB1", "ITGA1", "APP"]
    resource = core.load_resource(None, "human", lr_genes)[1].iloc[:300]
    genes = sorted({g for col in ("ligand", "receptor") for entry in resource[col] for g in entry.split("_")})
    rng = np.random.default_rng(2)
    sizes = {"big": 3000, "small": 200, "other": 150}
    labels = np.repeat(list(sizes), list(sizes.values()))
    rates = rng.gamma(1.0, 1.0, size=(len(sizes), len(genes)))  # each type its own expression profile
    counts = rng.poisson(rates[pd.Categorical(labels, categories=list(sizes)).codes]).astype(np.float32)
    adata = ad.AnnData(
        np.log1p(counts / counts.sum(1, keepdims=True).clip(1) * 1e4),
        obs=pd.DataFrame({"cell_type": pd.Categorical(labels)}, index=[f"c{i}" for i in range(len(labels))]),
        var=pd.DataFrame(index=genes),
    )
    mask = np.ones(len(labels), dtype=bool)
    settings = core.CommunicationSettings.defaults().replace(communication_n_perms=20, seed=3)
    kept = cap_cells_per_group(labels, 250, seed=3)
    assert (pd.Series(labels[kept]).value_counts().to_dict()) == {"big": 250, "small": 200, "other": 150}
    assert np.array_equal(kept, cap_cells_per_group(labels, 250, seed=3))  # seeded
    assert np.array_equal(cap_cells_per_group(labels, 0, seed=3), np.arange(len(labels)))

    seen = []
    run_liana = core.run_liana
    monkeypatch.setattr(core, "run_liana", lambda sub, res, s: seen.append(sub.n_obs) or run_liana(sub, res, s))
    runs = {}
    for cap in (0, 250):
        subsampled: list[dict] = []
        runs[cap] = core.liana_on(
            adata,
            mask,
            resource,
            settings.replace(communication_max_cells=cap),
            scope="condition",
            condition="c",
            sample="",
            skipped=[],
            subsampled=subsampled,
        )
        expected = [] if cap == 0 else [{"cell_type": "big", "n_cells": 3000, "n_used": 250}]
        assert [{k: s[k] for k in ("cell_type", "n_cells", "n_used")} for s in subsampled] == expected
    assert seen == [3350, 600]
    keys = ["source", "target", "ligand", "receptor"]
    both = runs[0].merge(runs[250], on=keys, suffixes=("_all", "_cap"))
    assert len(both) >= 0.9 * len(runs[0])
    assert spearmanr(both["lr_means_all"], both["lr_means_cap"]).statistic > 0.99
    assert spearmanr(both["magnitude_rank_all"], both["magnitude_rank_cap"]).statistic > 0.95


def test_interactions_in_keeps_only_interactions_with_every_subunit_present():
    from tmeflow.communication.core import interactions_in

    resource = pd.DataFrame(
        {
            "ligand": ["MDK", "MDK", "COL1A1", "TGFB1", "CD47"],
            "receptor": ["NCL", "LRP1", "ITGA1_ITGB1", "TGFBR1_TGFBR2", "SIRPA"],
        }
    )
    genes = pd.Index(["MDK", "NCL", "COL1A1", "ITGA1", "ITGB1", "TGFB1", "TGFBR1", "CD47"])
    kept = interactions_in(resource, genes)
    assert kept.index.tolist() == [0, 2]  # LRP1, TGFBR2 and SIRPA are missing
    assert interactions_in(resource, []).empty


@pytest.mark.slow
def test_run_liana_on_the_covered_interactions_equals_liana_on_the_whole_resource(monkeypatch):
    """``run_liana`` hands LIANA only the interactions the data covers (issue 23); LIANA's own filter left the
    same ones, so every score is the same as with the whole resource."""
    import scipy.sparse as sp

    from tmeflow.communication import core

    rng = np.random.default_rng(2)
    all_genes = ["MDK", "NCL", "CD47", "SIRPA", "MIF", "CD74", "CXCR4", "CD44", "COL1A1", "ITGB1", "ITGA1", "APP"]
    resource = core.load_resource(None, "human", all_genes)[1]
    all_genes = sorted({g for col in ("ligand", "receptor") for entry in resource[col] for g in entry.split("_")})
    # a third of the resource's genes (above LIANA's 2% coverage check), so complexes are often half-covered
    genes = list(rng.choice(all_genes, size=len(all_genes) // 3, replace=False)) + [f"G{i}" for i in range(20)]
    counts = rng.poisson(2.0, size=(60, len(genes))).astype(np.float32)
    adata = ad.AnnData(
        sp.csr_matrix(np.log1p(counts / counts.sum(1, keepdims=True) * 1e4)),
        obs=pd.DataFrame(
            {"cell_type": pd.Categorical(np.tile(["a", "b", "c"], 20))}, index=[f"c{i}" for i in range(60)]
        ),
        var=pd.DataFrame(index=genes),
    )
    settings = core.CommunicationSettings.defaults().replace(communication_n_perms=20, seed=3)
    assert len(core.interactions_in(resource, genes)) < len(resource) / 4
    got = core.run_liana(adata, resource, settings)
    monkeypatch.setattr(core, "interactions_in", lambda resource, genes: resource)  # LIANA on the whole resource
    expected = core.run_liana(adata, resource, settings)
    assert len(got) > 0
    pd.testing.assert_frame_equal(got, expected)
