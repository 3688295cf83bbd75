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
    assert set(tests["comparison"]) == {"within_condition", "between_conditions"}
    assert tests["pvalue"].dropna().between(0, 1).all()
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
