"""A mouse cohort (the colorectal liver-metastasis study's shape: control, pre-metastatic and metastatic
liver, one Visium section, a human bulk cohort) through ``tmeflow run`` with the study's neutrophil-rooted
trajectory: every stage runs on the mouse resources, planted neutrophil states are sub-clustered, the
trajectory orders planted maturation and the human bulk is deconvolved with the mouse atlas. Kept small
(3,000 cells, ~140 neutrophils) so it runs in every CI job.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from tmeflow.annotate import bundled_markers, read_marker_table
from tmeflow.cli import main
from tmeflow.genes import species_of
from tmeflow.stages import pipeline_stage_names

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def mouse_run(tmp_path_factory) -> Path:
    cohort = tmp_path_factory.mktemp("mouse_cohort")
    assert main([
        "simulate", "--species", "mouse", "--n_cells", "3000", "--n_patients", "2",
        "--conditions", "control,pre-metastatic,metastasis", "--n_genes", "3000", "--n_sections", "1",
        "--n_spots", "300", "--n_bulk", "60", "--bulk_species", "human", "--seed", "3", "--outdir", str(cohort),
    ]) == 0  # fmt: skip
    outdir = tmp_path_factory.mktemp("mouse_results")
    (outdir / "cohort").symlink_to(cohort, target_is_directory=True)
    params_file = REPO / "assets" / "test" / "params.yaml"
    assert main([
        "run", "--params-file", str(params_file), "--input", str(cohort / "samplesheet.csv"),
        "--outdir", str(outdir), "--deconvolution_method", "poisson", "--subcluster_min_cells", "50",
        "--trajectory_subset", "neutrophil", "--trajectory_root_genes", "Camp,Ltf", "--trajectory_batch_key", "batch",
    ]) == 0  # fmt: skip
    return outdir


@pytest.mark.slow
def test_every_stage_runs_on_a_mouse_cohort_and_writes_the_report(mouse_run):
    summary = json.loads((mouse_run / "pipeline_info" / "run_summary.json").read_text())
    assert sorted(summary["stages"]) == sorted(pipeline_stage_names())
    reports = list(mouse_run.rglob("*report*.html"))
    assert reports and all(path.stat().st_size > 10_000 for path in reports)


# the atlas's annotation labels -> the simulator's cell types
ATLAS_TO_SIMULATED = {
    "B": "B",
    "NK": "NK",
    "T": "T",
    "plasma": "plasma",
    "mast": "mast",
    "neutrophil": "neutrophil",
    "fibroblast": "fibroblast",
    "endothelial": "endothelial",
    "monocyte/macrophage": "myeloid",
    "Malignant": "malignant",
    "Epithelial (normal)": "epithelial",
}


@pytest.mark.slow
def test_human_bulk_deconvolved_with_the_mouse_atlas_through_orthologs(mouse_run):
    """The study's cross-species validation: a human bulk cohort (the mouse model's genes as their human
    one-to-one orthologs) deconvolved with the mouse atlas as reference recovers the planted fractions.
    """
    import numpy as np

    fractions = pd.read_csv(next(mouse_run.rglob("*.bulk_deconvolution.tsv")), sep="\t", index_col=0)
    truth = pd.read_csv(mouse_run / "cohort" / "bulk" / "true_proportions.tsv", sep="\t", index_col=0).loc[
        fractions.index
    ]
    r = pd.Series(
        {
            label: float(np.corrcoef(fractions[label], truth[planted])[0, 1])
            for label, planted in ATLAS_TO_SIMULATED.items()
            if label in fractions.columns
        }
    )
    print(f"human bulk vs planted fractions (mouse reference): {r.round(2).to_dict()}")
    assert len(r) >= 9 and r.median() >= 0.8
    assert json.loads(next(mouse_run.rglob("*.bulk_summary.json")).read_text())["reference_species"] == "mouse"


@pytest.mark.slow
def test_mouse_subtypes_are_scored(mouse_run):
    """Sub-clustering scores the bundled mouse subtypes (before, none had 3 markers in the simulated genes)."""
    subtypes = set(
        read_marker_table(bundled_markers("subtypes", "mouse"), type_column="cell_type_fine")["cell_type_fine"]
    )
    calls = pd.read_csv(next(mouse_run.rglob("subcluster_calls_mqc.tsv")), sep="\t", comment="#")
    assert "best_type" in calls.columns and calls["best_type"].isin(subtypes).any()


@pytest.mark.slow
def test_planted_neutrophil_states_are_sub_clustered(mouse_run):
    """Neutrophils re-clustered and named from the bundled mouse subtypes recover the planted states: immature,
    mature and PROK2-high.
    """
    import anndata as ad

    obs = ad.read_h5ad(next(mouse_run.rglob("subclustered.h5ad")), backed="r").obs
    neutrophils = obs[(obs["cell_type"] == "neutrophil") & (obs["true_cell_type"] == "neutrophil")]
    called_immature = neutrophils["cell_type_fine"] == "immature neutrophil"
    planted_immature = neutrophils["true_state"] == "immature neutrophil"
    print(pd.crosstab(neutrophils["cell_type_fine"], neutrophils["true_state"]).to_string())
    accuracy = (neutrophils["cell_type_fine"].astype(str) == neutrophils["true_state"].astype(str)).mean()
    prok2 = neutrophils["true_state"] == "PROK2-high neutrophil"
    assert len(neutrophils) >= 100 and accuracy >= 0.7 and (called_immature == planted_immature).mean() >= 0.75
    assert neutrophils.loc[prok2, "cell_type_fine"].eq("PROK2-high neutrophil").mean() >= 0.8


@pytest.mark.slow
def test_neutrophil_rooted_trajectory_orders_planted_maturation(mouse_run):
    """The mouse study's trajectory: rooted at early neutrophils (Camp, Ltf), pseudotime follows maturation."""
    import anndata as ad
    from scipy.stats import spearmanr

    obs = ad.read_h5ad(mouse_run / "trajectory" / "trajectory.h5ad", backed="r").obs
    obs = obs[obs["true_cell_type"] == "neutrophil"]
    rho = spearmanr(obs["pseudotime"], obs["true_maturation"])[0]
    print(f"neutrophil pseudotime vs planted maturation: Spearman {rho:.3f} over {len(obs)} cells")
    assert len(obs) >= 100 and rho >= 0.8


def test_species_comes_from_obs_or_the_gene_symbols_never_assumed_human():
    assert species_of(obs=pd.DataFrame({"species": ["mouse", None]}), var_names=["CD3E"]) == "mouse"
    assert (
        species_of(obs=pd.DataFrame(index=range(2)), var_names=["Cd3e", "Epcam", "mt-Co1"]) == "mouse"
    )  # a section without obs species
    assert species_of(obs=pd.DataFrame(index=range(2)), var_names=["Cd3e", "Epcam", "Hbb-bs", "Ptprc"]) == "mouse"
    assert species_of(obs=pd.DataFrame(index=range(2)), var_names=["CD3E", "EPCAM", "MT-CO1", "Mdk"]) == "human"


def test_a_marker_table_of_the_other_species_is_one_line_naming_stage_and_species():
    from tmeflow.annotate import marker_network
    from tmeflow.errors import TmeflowInputError

    human = read_marker_table(bundled_markers("major", "human"))
    with pytest.raises(
        TmeflowInputError, match=r"^annotate: none of the \d+ human marker genes is in the data"
    ) as error:
        marker_network(human, pd.Index(["Cd3e", "Epcam", "Ptprc", "mt-Co1"]), species="human")
    assert "\n" not in str(error.value)


def test_distance_genes_follow_the_section_species():
    """The default ``distance_genes`` are human symbols; a mouse section takes their mouse orthologs."""
    from tmeflow.spatial_analysis import species_genes

    section = pd.Index(["S100a8", "Cd68", "Spp1", "Epcam"])
    assert species_genes(["S100A8", "CD68", "SPP1", "Epcam"], "mouse", section) == ["S100a8", "Cd68", "Spp1", "Epcam"]
    assert species_genes(["S100A8", "CD68"], "human", section) == ["S100A8", "CD68"]


def test_a_section_that_covers_no_signature_of_its_species_is_one_line():
    """Human symbols scored as a mouse section (a species mismatch): one line naming stage, species and section."""
    import anndata as ad
    import numpy as np

    from tmeflow.errors import TmeflowInputError
    from tmeflow.spatial_analysis import score_signatures

    section = ad.AnnData(np.ones((5, 3), dtype=np.float32), var=pd.DataFrame(index=["CD3E", "EPCAM", "PTPRC"]))
    with pytest.raises(
        TmeflowInputError, match=r"^spatial_analysis: none of the \d+ bundled mouse signatures .*sample S1"
    ) as error:
        score_signatures(section, "mouse", seed=0, section="S1")
    assert "\n" not in str(error.value)
