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

    code = main(["simulate", "--outdir", str(outdir), "--n_cells", "2500", "--n_patients", "3", "--n_sections", "0",
                 "--n_bulk", "0", "--seed", "1", *extra])
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
    code = main(["communication", "--input", str(atlas), "--outdir", str(out), "--contrast", "metastasis,primary",
                 "--communication_n_perms", "50", "--communication_per_sample", "false"])
    assert code == 0
    return atlas, out


def test_planted_interaction_ranks_top(planted):
    _, out = planted
    truth = json.loads((out.parent / "sim" / "truth.json").read_text())["ligand_receptor"]
    table = pd.read_csv(out / "communication_diff_metastasis_vs_primary.tsv", sep="\t")
    assert len(table) > 100
    hit = table.index[(table["ligand"] == truth["ligand"]) & (table["receptor"] == truth["receptor"])
                      & (table["source"] == truth["source"]) & (table["target"] == truth["target"])]
    assert len(hit) == 1
    rank = int(hit[0]) + 1  # table is sorted by p-value
    assert rank <= 5, table.head(10)
    assert table.loc[hit[0], "logfc"] > 0
    assert table.loc[hit[0], "design"] == "~ condition + patient"  # every patient has both conditions


def test_outputs_and_summaries(planted):
    _, out = planted
    for name in ("communication_liana_by_condition.tsv.gz", "communication_counts.tsv", "communication_pathways.tsv",
                 "communication_counts_heatmap.png", "communication_strength_heatmap.png", "communication_proportion_tests.tsv",
                 "communication_diff_metastasis_vs_primary_dotplot.png", "communication_sample_scores_metastasis_vs_primary.tsv.gz",
                 "communication_skipped.tsv", "communication_summary.json", "communication_mqc.tsv"):
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
    met = liana[(liana["condition"] == "metastasis") & (liana["source"] == "malignant") & (liana["target"] == "fibroblast")]
    assert bool(met.loc[met["interaction"] == "MDK->NCL", "called"].iat[0])


def test_null_cohort_has_no_differential_interaction(tmp_path):
    """A cohort simulated without any condition effect: the simulator plants the LR (and every other) effect only
    in 'metastasis' samples, so primary vs recurrent is a null; one batch, so batch is not confounded with condition."""
    from tmeflow.communication import differential_interactions, load_resource, pathway_map
    from tmeflow.composition import sample_table
    from tmeflow.params import defaults

    adata = atlas_from_simulation(simulate(tmp_path / "sim", "--conditions", "primary,recurrent", "--n_batches", "1"))
    _, resource = load_resource("", "human", adata.var_names)
    pathways, _ = pathway_map(resource)
    cell_types = sorted(adata.obs["cell_type"].unique())
    table, _, reason = differential_interactions(adata, resource, pathways, sample_table(adata.obs), "recurrent", "primary",
                                                 cell_types, defaults())
    assert reason is None and len(table) > 100
    assert not (table["fdr"] < 0.05).any(), table.head()


def _tiny_atlas(path: Path, *, raw: bool = False) -> Path:
    rng = np.random.default_rng(0)
    genes = ["MDK", "NCL", "CD47", "SIRPA", "MIF", "CD74", "CXCR4", "CD44", "COL1A1", "ITGB1", "APP", "CD4"] + [f"G{i}" for i in range(20)]
    counts = rng.poisson(2.0, size=(120, len(genes))).astype(np.float32)
    obs = pd.DataFrame({"sample": np.repeat(["s1", "s2", "s3", "s4"], 30), "patient": np.repeat(["p1", "p2", "p1", "p2"], 30),
                        "condition": np.repeat(["primary", "primary", "metastasis", "metastasis"], 30),
                        "cell_type": np.tile(["a", "b", "c"], 40)}, index=[f"c{i}" for i in range(120)])
    adata = ad.AnnData(counts if raw else np.log1p(counts / counts.sum(1, keepdims=True) * 1e4), obs=obs,
                       var=pd.DataFrame(index=genes))
    adata.layers["counts"] = counts
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize("args, fragment", [
    (["--contrast", "metastasis,recurrent"], "recurrent"),
    (["--communication_resource", "nosuch"], "unknown communication_resource"),
])
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
    code = main(["communication", "--input", str(atlas), "--outdir", str(out), "--communication_n_perms", "50",
                 "--communication_min_cells", "20"])
    assert code == 0
    skipped = pd.read_csv(out / "communication_skipped.tsv", sep="\t")
    assert "Normal Epithelial" in set(skipped["cell_type"])  # 10 cells < 20
    liana = pd.read_csv(out / "communication_liana_by_condition.tsv.gz", sep="\t")
    assert "Normal Epithelial" not in set(liana["source"]) | set(liana["target"])
    assert (out / "communication_liana_by_sample.tsv.gz").is_file()
    caf = liana[(liana["source"] == "CAFs") & (liana["target"] == "Cancer Epithelial")].sort_values("magnitude_rank")
    assert len(caf) > 10 and caf["called"].any()
    print(caf.head(15)[["interaction", "lr_means", "magnitude_rank", "specificity_rank"]].to_string())


def _sample_counts(seed: int, effect: float = 0.0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Per-sample called/tested interaction counts of 4 cell types x 4 (16 source -> target pairs), 4 patients
    with one primary and one metastasis sample each. The called fraction varies between samples (beta,
    overdispersed as real per-sample LIANA calls); ``effect`` raises a -> b in metastasis only."""
    rng = np.random.default_rng(seed)
    types = ["a", "b", "c", "d"]
    rows, samples = [], []
    for patient in range(4):
        for condition in ("primary", "metastasis"):
            sample = f"p{patient}_{condition}"
            samples.append({"sample": sample, "condition": condition, "patient": f"p{patient}"})
            for source in types:
                for target in types:
                    base = 0.2 + (0.3 if effect and condition == "metastasis" and (source, target) == ("a", "b") else 0.0)
                    fraction = rng.beta(base * 20, (1 - base) * 20)
                    n = int(rng.integers(150, 400))
                    rows.append({"sample": sample, "condition": condition, "source": source, "target": target,
                                 "n_tested": n, "n_interactions": int(rng.binomial(n, fraction))})
    return pd.DataFrame(rows), pd.DataFrame(samples).set_index("sample")


def test_proportion_tests_are_calibrated_at_sample_level():
    """40 null cohorts (no condition or source effect): within- and between-condition proportion tests reject
    at the nominal 5% at p < 0.05 (measured: 5.2% of 1,280 and 4.1% of 640; the old z-tests on pooled
    interaction counts treated interactions as independent trials); a planted +0.3 fraction
    of a -> b in metastasis is found at FDR < 0.05."""
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
    hit = table[(table["comparison"] == "between_conditions") & (table["source"] == "a") & (table["target"] == "b")].iloc[0]
    assert hit["fdr"] < 0.05 and hit["estimate"] > 0 and hit["design"] == "~ condition + patient"


def test_no_ligand_name_pathways():
    """Without a pathway annotation in the resource, no pathway is invented from ligand names (IL1B, IL6 and
    IL10 used to become one 'IL' pathway)."""
    from tmeflow.communication import pathway_map, pathway_table

    resource = pd.DataFrame({"ligand": ["IL1B", "IL6", "IL10"], "receptor": ["IL1R1", "IL6R", "IL10RA"]})
    pathways, source = pathway_map(resource)
    assert pathways == {} and "no pathway annotation" in source
    liana = pd.DataFrame({"condition": "c", "source": "a", "target": "b", "ligand": ["IL1B", "IL6"],
                          "receptor": ["IL1R1", "IL6R"], "magnitude_rank": 0.001, "lr_means": 1.0})
    assert pathway_table(liana, pathways, 0.05).empty
    annotated, _ = pathway_map(resource.assign(pathway=["IL1", "IL6", "IL10"]))
    assert annotated[("IL6", "IL6R")] == "IL6"
    assert set(pathway_table(liana, annotated, 0.05)["pathway"]) == {"IL1", "IL6"}
