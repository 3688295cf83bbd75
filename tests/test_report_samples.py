"""The report of a cohort: per-sample content as native MultiQC plots, per-sample figures linked above a
sample count, and no AI-metadata copy of the page (issue 18).
"""

from __future__ import annotations

import base64
import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from tmeflow import io, report, report_samples
from tmeflow.cli import main

N_SAMPLES = report_samples.INLINE_SAMPLE_LIMIT + 2
REASONS = ["", "", "", "", "", "min_genes", "max_pct_mito", "doublet"]


def _png(path: Path, seed: int) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(24, 32, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _qc_cells(path: Path, rng: np.random.Generator, n: int = 80) -> pd.DataFrame:
    cells = pd.DataFrame(
        {
            "barcode": [f"C{i}" for i in range(n)],
            "n_genes_by_counts": rng.integers(200, 3000, n),
            "total_counts": rng.integers(500, 20000, n),
            "pct_counts_mito": rng.uniform(0, 20, n).round(3),
            "pct_counts_ribo": rng.uniform(0, 20, n).round(3),
            "pct_counts_hb": np.zeros(n),
            "doublet_score": rng.uniform(0, 1, n).round(3),
            "qc_fail_reason": [REASONS[i % len(REASONS)] for i in range(n)],
        },
        index=pd.Index([f"{path.name.split('.')[0]}_C{i}" for i in range(n)]),
    )
    cells.loc[cells["qc_fail_reason"] == "min_genes", "doublet_score"] = np.nan  # not scored
    io.write_table(cells, path, index=True)
    return cells


def _stats_table(path: Path, sample: str) -> None:
    header = io.multiqc_header("tmeflow_qc_general_stats", "Per-sample QC", "test", "generalstats")
    path.write_text(header + f"Sample\tcells_kept\n{sample}\t50\n")


@pytest.fixture(scope="module")
def cohort_results(tmp_path_factory) -> Path:
    """A results folder of a cohort over the inline limit, built from files (no pipeline run)."""
    root = tmp_path_factory.mktemp("cohort_results")
    rng = np.random.default_rng(0)
    qc = root / "qc"
    qc.mkdir()
    samples = [f"S{i:02d}" for i in range(N_SAMPLES)]
    for seed, sample in enumerate(samples):
        _qc_cells(qc / f"{sample}.qc_cells.tsv.gz", rng)
        _stats_table(qc / f"{sample}.qc_stats_mqc.tsv", sample)
        _png(qc / f"{sample}.qc_violin.png", seed)
        _png(qc / f"{sample}.qc_scatter.png", seed + 100)
    cnv = root / "cnv"
    cnv.mkdir()
    cell_types = np.where(np.arange(N_SAMPLES * 20) % 4 == 0, "T cell", "Epithelial")
    io.write_table(
        pd.DataFrame(
            {
                "sample": np.repeat(samples, 20),
                "cell_type": cell_types,
                "malignant": (np.arange(N_SAMPLES * 20) % 5 == 0),
            }
        ),
        cnv / "cnv_cells.tsv.gz",
    )
    _png(cnv / "cnv_heatmap_P1.png", 7)
    spatial = root / "spatial"
    spatial.mkdir()
    for section in ("V1", "V2"):
        spots = _qc_cells(spatial / f"{section}.spatial_spots.tsv.gz", rng, n=60).drop(columns=["doublet_score"])
        spots["in_tissue"] = (np.arange(60) % 6 != 0).astype(int)
        spots["qc_fail_reason"] = np.where(
            spots["in_tissue"] == 0, "not_in_tissue", np.where(np.arange(60) % 7 == 0, "spatial_min_counts", "")
        )
        io.write_table(spots, spatial / f"{section}.spatial_spots.tsv.gz", index=True)
        _png(spatial / f"{section}.spatial_qc.png", 3)
    (root / "pipeline_info").mkdir()
    (root / "pipeline_info" / "params.json").write_text(json.dumps({"seed": 0}))
    return root


@pytest.fixture(scope="module")
def cohort_report(cohort_results, tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("cohort_report")
    assert main(["report", "--input_dir", str(cohort_results), "--outdir", str(outdir)]) == 0
    return outdir


def _header(path: Path) -> dict:
    return yaml.safe_load("\n".join(line[2:] for line in path.read_text().splitlines() if line.startswith("# ")))


# ------------------------------------------------------------------------------------------------
# Helpers
# ------------------------------------------------------------------------------------------------


def test_box_summary_whiskers_stop_at_the_last_value_within_1_5_iqr():
    values = np.array([1, 2, 3, 4, 5, 6, 7, 8, 9, 100.0])
    box = report_samples.box_summary(values)
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    assert (box["q1"], box["median"], box["q3"]) == (round(q1, 4), round(median, 4), round(q3, 4))
    assert box["min"] == 1 and box["max"] == 9  # 100 is an outlier: beyond q3 + 1.5 IQR
    assert box["mean"] == pytest.approx(14.5)
    assert report_samples.box_summary([np.nan]) == {}


def test_reason_counts_put_kept_first_then_reasons_in_filter_order():
    tables = {
        "B": pd.DataFrame({"qc_fail_reason": ["", "doublet", "min_genes", ""]}),
        "A": pd.DataFrame({"qc_fail_reason": ["", "", "", "max_pct_hb"]}),
    }
    counts = report_samples.reason_counts(tables, ["min_genes", "max_pct_hb", "doublet"])
    assert list(counts.columns) == ["kept", "min_genes", "max_pct_hb", "doublet"]
    assert counts.loc["A"].tolist() == [3, 0, 1, 0] and counts.loc["B"].tolist() == [2, 1, 0, 1]


def test_malignant_fraction_and_dominant_cell_type_per_sample():
    cells = pd.DataFrame(
        {
            "sample": ["A"] * 4 + ["B"] * 2,
            "cell_type": ["T", "T", "B", "Epi", "Epi", "B"],
            "malignant": [False, False, False, True, True, False],
        }
    )
    table = report_samples.malignant_and_dominant(cells)
    assert table.loc["A", "pct_malignant"] == 25.0 and table.loc["B", "pct_malignant"] == 50.0
    assert table.loc["A", "dominant_cell_type"] == "T" and table.loc["A", "pct_dominant"] == 50.0
    assert table.loc["B", "dominant_cell_type"] == "B"  # a tie goes to the first name


def test_per_sample_plots_and_links_list_samples_in_natural_order(tmp_path):
    """P2 before P10 (plain sorting put P10..P19 before P1_ in a 102-sample report's bars and boxes)."""
    samples = ["P10_normal", "P1_primary", "P2_normal", "P1_normal"]
    rng = np.random.default_rng(1)
    for seed, sample in enumerate(samples):
        _qc_cells(tmp_path / f"{sample}.qc_cells.tsv.gz", rng, n=16)
        _png(tmp_path / f"{sample}.qc_violin.png", seed)
    natural = ["P1_normal", "P1_primary", "P2_normal", "P10_normal"]
    staged = {
        path.name: path
        for path in report_samples.stage_cell_qc(
            sorted(tmp_path.glob("*.qc_cells.tsv.gz")), {"parent_id": "tmeflow_step_qc"}, tmp_path
        )
    }
    bar = pd.read_csv(staged["tmeflow_qc_cells_by_reason_mqc.tsv"], sep="\t", comment="#", index_col=0)
    rates = pd.read_csv(staged["tmeflow_qc_doublet_rate_mqc.tsv"], sep="\t", comment="#", index_col=0)
    box = yaml.safe_load(staged["tmeflow_qc_distributions_mqc.yaml"].read_text())
    assert list(bar.index) == list(rates.index) == list(box["data"][0]) == natural
    figures = report.collect(tmp_path)["content"]
    page = report_samples.link_figures(
        [f for f in figures if f.path.suffix == ".png"],
        "tmeflow_step_qc",
        {},
        tmp_path / "figs",
        tmp_path,
        lambda path: path.read_bytes(),
    ).read_text()
    assert [page.index(f"<tr><td>{sample}</td>") for sample in natural] == sorted(
        page.index(f"<tr><td>{sample}</td>") for sample in natural
    )


def test_per_sample_figures_are_linked_only_above_the_limit(cohort_results):
    found = report.collect(cohort_results)
    linked = report_samples.figures_to_link(found["content"])
    assert list(linked) == ["tmeflow_step_qc"]  # 2 spatial sections and the cohort heatmap stay inline
    assert len(linked["tmeflow_step_qc"]) == 2 * N_SAMPLES
    assert report_samples.figures_to_link(found["content"], limit=N_SAMPLES) == {}


def test_per_patient_cnv_heatmaps_are_linked_above_the_limit_and_cohort_figures_stay(tmp_path):
    for seed in range(report_samples.INLINE_SAMPLE_LIMIT + 1):
        _png(tmp_path / f"cnv_heatmap_P{seed}.png", seed)
    _png(tmp_path / "cnv_score_violin_mqc.png", 99)
    found = report.collect(tmp_path)
    linked = report_samples.figures_to_link(found["content"])
    assert sorted(f.path.name for f in linked["tmeflow_step_cnv"]) == sorted(
        f"cnv_heatmap_P{seed}.png" for seed in range(report_samples.INLINE_SAMPLE_LIMIT + 1)
    )
    page = report_samples.link_figures(
        linked["tmeflow_step_cnv"], "tmeflow_step_cnv", {}, tmp_path / "figs", tmp_path, lambda path: path.read_bytes()
    ).read_text()
    assert "<th>Patient</th>" in page and 'href="figs/cnv_heatmap_P12.png"' in page
    assert (tmp_path / "figs" / "cnv_heatmap_P0.png").read_bytes() == (tmp_path / "cnv_heatmap_P0.png").read_bytes()


def test_staged_custom_content_has_the_right_headers(cohort_results, tmp_path):
    found = report.collect(cohort_results)
    staged = {path.name: path for path in report.stage_report_files(found, tmp_path, tmp_path / "figures")}

    bar = staged["tmeflow_qc_cells_by_reason_mqc.tsv"]
    header = _header(bar)
    assert header["id"] == "tmeflow_qc_cells_by_reason" and header["plot_type"] == "bargraph"
    assert header["parent_id"] == "tmeflow_step_qc" and header["parent_name"] == "Cell QC"
    counts = pd.read_csv(bar, sep="\t", comment="#", index_col=0)
    assert counts.index.name == "Sample" and len(counts) == N_SAMPLES
    assert list(counts.columns) == ["kept", "min_genes", "max_pct_mito", "doublet"] == list(header["categories"])
    assert counts.loc["S00"].tolist() == [50, 10, 10, 10]  # 80 cells, reasons cycling over 8 slots

    rates = pd.read_csv(staged["tmeflow_qc_doublet_rate_mqc.tsv"], sep="\t", comment="#", index_col=0)
    assert rates.loc["S00", "doublets"] == pytest.approx(100 * 10 / 70, abs=1e-3)  # min_genes cells not scored

    box = yaml.safe_load(staged["tmeflow_qc_distributions_mqc.yaml"].read_text())
    assert box["plot_type"] == "box" and box["parent_id"] == "tmeflow_step_qc"
    assert box["pconfig"]["data_labels"] == ["Total counts", "Detected genes", "% mitochondrial"]
    assert len(box["data"]) == 3 and set(box["data"][0]) == {f"S{i:02d}" for i in range(N_SAMPLES)}
    assert set(box["data"][0]["S00"]) == {"min", "q1", "median", "q3", "max", "mean"}

    spots = pd.read_csv(staged["tmeflow_spatial_spots_by_reason_mqc.tsv"], sep="\t", comment="#", index_col=0)
    assert _header(staged["tmeflow_spatial_spots_by_reason_mqc.tsv"])["parent_id"] == "tmeflow_step_spatial_qc"
    assert "not_in_tissue" not in spots.columns and spots.sum(axis=1).tolist() == [50, 50]  # spots under tissue

    general = staged["tmeflow_cell_types_general_stats_mqc.tsv"]
    assert _header(general)["plot_type"] == "generalstats"
    table = pd.read_csv(general, sep="\t", comment="#", index_col=0)
    assert table.loc["S00", "pct_malignant"] == 20.0 and table.loc["S00", "dominant_cell_type"] == "Epithelial"

    assert "tmeflow_figure_s00_qc_violin_mqc.html" not in staged and "tmeflow_step_qc_figure_links_mqc.html" in staged
    assert sorted(p.name for p in (tmp_path / "figures").iterdir())[:2] == ["S00.qc_scatter.png", "S00.qc_violin.png"]


@pytest.mark.slow
def test_cohort_report_links_per_sample_figures_and_draws_native_plots(cohort_report):
    page = (cohort_report / "multiqc_report.html").read_text()
    sections = re.findall(r'<h2[^>]*id="(tmeflow_step_[a-z_]+)"', page)
    assert sections == ["tmeflow_step_qc", "tmeflow_step_cnv", "tmeflow_step_spatial_qc"]
    # per-sample QC figures: files next to the report, linked, not in the page
    figures = cohort_report / "multiqc_report_figures"
    assert len(list(figures.glob("*.png"))) == 2 * N_SAMPLES
    assert 'href="multiqc_report_figures/S13.qc_violin.png"' in page
    assert "tmeflow_figure_s00_qc_violin" not in page
    assert page.count("data:image/png;base64") == 3  # the cohort heatmap and 2 spatial sections stay inline
    # native MultiQC plots and general-statistics columns
    for plot_id in (
        "tmeflow_qc_cells_by_reason_plot",
        "tmeflow_qc_doublet_rate_plot",
        "tmeflow_qc_distributions_plot",
        "tmeflow_spatial_spots_by_reason_plot",
        "tmeflow_spatial_distributions_plot",
    ):
        assert f'id="{plot_id}"' in page, plot_id
    assert "% malignant" in page and "Dominant cell type" in page


@pytest.mark.slow
def test_cohort_report_carries_no_ai_copy_of_the_sections(cohort_report):
    page = (cohort_report / "multiqc_report.html").read_text()
    encoded = re.search(r'aiReportMetadataBase64 = "([^"]*)"', page).group(1)
    metadata = json.loads(base64.b64decode(encoded))
    assert metadata["sections"], "the page's scripts parse this object: it must stay"
    assert all(section["content"] is None for section in metadata["sections"].values())
    assert "data:image" not in base64.b64decode(encoded).decode()


@pytest.mark.slow
def test_a_report_of_fewer_samples_in_the_same_outdir_embeds_them_and_drops_the_old_links(
    cohort_results, tmp_path, monkeypatch
):
    outdir = tmp_path / "multiqc"
    assert main(["report", "--input_dir", str(cohort_results), "--outdir", str(outdir)]) == 0
    assert (outdir / "multiqc_report_figures").is_dir()
    monkeypatch.setattr(report_samples, "INLINE_SAMPLE_LIMIT", N_SAMPLES)
    assert main(["report", "--input_dir", str(cohort_results), "--outdir", str(outdir)]) == 0
    assert not (outdir / "multiqc_report_figures").exists()
    page = (outdir / "multiqc_report.html").read_text()
    assert "tmeflow_figure_s13_qc_violin" in page and "multiqc_report_figures/" not in page


def test_bundled_config_draws_cohort_plots_without_a_click():
    config = yaml.safe_load(report.bundled_config().read_text())
    assert config["plots_defer_loading_numseries"] >= 100 * 3 and config["num_datasets_plot_limit"] >= 100 * 3
