"""Pan-cancer bulk analyses (``tmeflow.bulk.pancancer``): per-type survival and correlations, with BH
across types x endpoints; a one-type cohort gives the single-cohort numbers exactly (NKI).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tmeflow.bulk.pancancer import cancer_types, run_pancancer
from tmeflow.bulk.settings import BulkSettings
from tmeflow.cli import main
from tmeflow.errors import TmeflowInputError
from tmeflow.stats import bh_fdr

PROLIFERATION = "MKI67 CCNB1 BUB1 AURKA CENPF MCM2 CDC20 CCNE2 BIRC5 MYBL2 RRM2 TYMS".split()


def _typed_cohort(seed=0):
    """Three types: A (80 samples, score -> OS and PFI with HR 2.5 per SD), B (80, null), C (8, too few).
    Targets: an ESTIMATE immune score tracking the score in A only.
    """
    rng = np.random.default_rng(seed)
    sizes = {"A": 80, "B": 80, "C": 8}
    types = pd.Series(
        np.repeat(list(sizes), list(sizes.values())), index=[f"S{i:03d}" for i in range(sum(sizes.values()))]
    )
    score = pd.Series(rng.normal(size=len(types)), index=types.index)
    beta = np.where(types == "A", np.log(2.5), 0.0)
    survs = {}
    for endpoint in ("OS", "PFI"):
        t = rng.exponential(1000 * np.exp(-beta * score))
        c = rng.uniform(200, 3000, len(types))
        survs[endpoint] = pd.DataFrame({"time": np.minimum(t, c), "event": (t <= c).astype(int)}, index=types.index)
    immune = np.where(types == "A", score, 0) + 0.5 * rng.normal(size=len(types))
    features = pd.DataFrame(
        {"SIG": score, "noise": rng.normal(size=len(types)), "ESTIMATE:ImmuneScore": immune}, index=types.index
    )
    kinds = {"SIG": "user_signature", "noise": "hallmark", "ESTIMATE:ImmuneScore": "estimate"}
    return features, kinds, survs, types


def test_per_type_survival_finds_the_planted_type_and_skips_small_types(caplog):
    features, kinds, survs, types = _typed_cohort()
    settings = BulkSettings.defaults().replace(cutpoint_permutations=0, pancancer_min_samples=20)
    with caplog.at_level(logging.INFO, logger="tmeflow"):
        result = run_pancancer(features, kinds, survs, types, pd.DataFrame(index=types.index), settings)
    assert "cancer type C skipped: 8 samples < pancancer_min_samples=20" in caplog.text
    assert result["types"].set_index("cancer_type")["analysed"].to_dict() == {"A": True, "B": True, "C": False}
    surv = result["survival"]
    assert set(surv["cancer_type"]) == {"A", "B"} and set(surv["endpoint"]) == {"OS", "PFI"}
    sig = surv[surv["feature"] == "SIG"].set_index(["cancer_type", "endpoint"])
    assert (sig.loc["A", "pancancer_hr_fdr"] < 0.05).all() and (sig.loc["A", "hr_per_sd"] > 1.5).all()
    assert (sig.loc["B", "pancancer_hr_fdr"] > 0.05).all()
    # BH across the 2 types x 2 endpoints of each feature, not across features
    assert np.allclose(sig["pancancer_hr_fdr"], bh_fdr(sig["hr_per_sd_p"]))
    assert np.allclose(sig["pancancer_fdr"], bh_fdr(sig["p"]))
    assert set(result["cox"]["cancer_type"]) == {"A", "B"}
    corr = result["correlations"].set_index(["cancer_type", "feature"])
    assert corr.loc[("A", "SIG"), "rho"] > 0.6 and corr.loc[("A", "SIG"), "pancancer_fdr"] < 0.05
    assert abs(corr.loc[("B", "SIG"), "rho"]) < 0.3
    assert result["focus"] == ["SIG"]


def test_cancer_type_column_detection(tmp_path):
    clinical = pd.DataFrame({"Cancer_Type": ["BRCA", " LUAD ", None]}, index=["a", "b", "c"])
    types = cancer_types(clinical, "", tmp_path / "clin.tsv")
    assert types.tolist()[:2] == ["BRCA", "LUAD"] and pd.isna(types["c"])
    assert cancer_types(clinical.rename(columns={"Cancer_Type": "x"}), "", tmp_path / "clin.tsv") is None
    with pytest.raises(TmeflowInputError, match="cancer_type_column is not a clinical column") as info:
        cancer_types(clinical, "project", tmp_path / "clin.tsv")
    assert "project" in str(info.value) and "clin.tsv" in str(info.value)


@pytest.mark.slow
@pytest.mark.shared_data
def test_nki_as_one_cancer_type_gives_the_single_cohort_numbers(shared_data, tmp_path):
    """Acceptance: the NKI cohort run once as today and once with cancer_type = BRCA for every sample; the
    per-type survival and Cox tables equal the single-cohort ones exactly.
    """
    folder = shared_data / "nki_breast_bulk_survival"
    clinical = pd.read_csv(folder / "nkis_clinical.csv.gz", index_col=0)
    clinical.to_csv(tmp_path / "plain.csv")
    clinical.assign(cancer_type="BRCA").to_csv(tmp_path / "typed.csv")
    gmt = tmp_path / "prolif.gmt"
    gmt.write_text("PROLIFERATION\tproliferation genes\t" + "\t".join(PROLIFERATION) + "\n")
    outs = {}
    for name in ("plain", "typed"):
        outs[name] = tmp_path / name
        assert (
            main(
                [
                    "bulk",
                    "--expression",
                    str(folder / "nkis_expression_log10ratio.csv.gz"),
                    "--clinical",
                    str(tmp_path / f"{name}.csv"),
                    "--probe_annotation",
                    str(folder / "nkis_probe_annotation.csv.gz"),
                    "--bulk_values",
                    "log",
                    "--sample",
                    "NKI",
                    "--signatures",
                    str(gmt),
                    "--bulk_hallmark",
                    "false",
                    "--bulk_genes",
                    "ESR1,ERBB2",
                    "--cox_covariates",
                    "age,node",
                    "--cutpoint_permutations",
                    "200",
                    "--outdir",
                    str(outs[name]),
                ]
            )
            == 0
        )
    assert not (outs["plain"] / "NKI.bulk_pancancer_survival.tsv").exists()
    single = pd.read_csv(outs["plain"] / "NKI.bulk_survival.tsv", sep="\t")
    per_type = pd.read_csv(outs["typed"] / "NKI.bulk_pancancer_survival.tsv", sep="\t")
    assert set(single["endpoint"]) == {"DMFS", "OS", "RFS"} and set(per_type["cancer_type"]) == {"BRCA"}
    pd.testing.assert_frame_equal(per_type[single.columns], single)
    pd.testing.assert_frame_equal(pd.read_csv(outs["typed"] / "NKI.bulk_survival.tsv", sep="\t"), single)
    cox = pd.read_csv(outs["plain"] / "NKI.bulk_cox.tsv", sep="\t")
    pd.testing.assert_frame_equal(
        pd.read_csv(outs["typed"] / "NKI.bulk_pancancer_cox.tsv", sep="\t").drop(columns="cancer_type"), cox
    )
    # one type: BH across types x endpoints = BH over the feature's 3 endpoints
    for _feature, rows in per_type.groupby("feature"):
        assert np.allclose(rows["pancancer_hr_fdr"], bh_fdr(rows["hr_per_sd_p"]))
    for endpoint in ("DMFS", "OS", "RFS"):
        assert (outs["typed"] / f"NKI.bulk_pancancer_forest_{endpoint}.png").stat().st_size > 5000
    esr1 = single[(single["feature"] == "gene:ESR1") & (single["endpoint"] == "OS")].iloc[0]
    # ER expression is protective in breast cancer (van de Vijver 2002 cohort): the figures quoted in the notes
    assert esr1["n"] == 129 and esr1["events"] == 36 and esr1["hr_per_sd"] < 1 and esr1["hr_per_sd_p"] < 0.01


def test_cli_bad_cancer_type_column_is_one_line(tmp_path, capsys, small_bulk_args):
    rc = main([*small_bulk_args, "--cancer_type_column", "project"])
    err = capsys.readouterr().err.strip().splitlines()
    message = [line for line in err if line.startswith("tmeflow bulk: error:")]
    assert rc == 2 and len(message) == 1 and "Traceback" not in "\n".join(err)
    assert "cancer_type_column" in message[0] and "column project" in message[0] and "clin.csv" in message[0]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# Simulated pan-cancer cohorts (tmeflow simulate --bulk_cancer_types)


@pytest.mark.slow
def test_simulated_pancancer_planted_types_found_and_null_types_calibrated_over_20_seeds():
    """20 seeds of the simulator's pan-cancer bulk cohort (6 types x 100 samples, HR 2 per SD of the planted
    score in TYPE1-2 only): the pipeline's ssGSEA score and per-type analysis find every planted type at
    pan-cancer FDR < 0.05, and the 4 null types x 20 seeds reject at <= 5% (Cox HR-per-SD p, corrected
    cut-point p, and pan-cancer FDR). The same for the planted score-TMB correlation (Spearman, BH across types)
    of the simulated MAF.
    """
    from tmeflow.bulk.mutations import tmb_correlations, tumour_mutational_burden
    from tmeflow.signatures import ssgsea
    from tmeflow.simulate import (
        SimConfig,
        _bulk_expression,
        _survival,
        build_genes,
        build_model,
        cancer_type_labels,
        planted_types,
        sample_beta,
        signature_score,
        simulate_maf,
    )

    config = SimConfig(outdir=Path("unused"), n_genes=1500, n_bulk=600, bulk_cancer_types=6, bulk_planted_types=2)
    rng = np.random.default_rng(0)
    model = build_model(config, build_genes(config, rng), rng)
    genes = model.programmes["fate_A"]
    settings = BulkSettings.defaults().replace(cutpoint_permutations=0)
    tables, tmb_tables = [], []
    for seed in range(20):
        rng = np.random.default_rng(seed)
        expression, _ = _bulk_expression(model, config.n_bulk, rng)
        types = cancer_type_labels(config.n_bulk, config.bulk_cancer_types)
        z = signature_score(expression, genes)
        clinical = _survival(z, sample_beta(types, config), rng)
        maf = simulate_maf(z, types, config, rng)
        surv = pd.DataFrame(
            {"time": clinical["os_time"].to_numpy(), "event": clinical["os_event"].to_numpy()}, index=expression.columns
        )
        score = ssgsea(np.log2(expression + 1.0), {"SIG": genes}).T
        result = run_pancancer(
            score,
            {"SIG": "user_signature"},
            {"OS": surv},
            pd.Series(types, index=expression.columns),
            pd.DataFrame(index=expression.columns),
            settings,
        )
        tables.append(result["survival"].assign(seed=seed))
        tmb = tumour_mutational_burden(maf, expression.columns, 38.0, Path("simulated.maf"))
        tmb_tables.append(
            tmb_correlations(
                score, {"SIG": "user_signature"}, tmb["tmb"], pd.Series(types, index=expression.columns), 20
            ).assign(seed=seed)
        )
    table = pd.concat(tables, ignore_index=True)
    tmb_table = pd.concat(tmb_tables, ignore_index=True)
    tmb_planted = tmb_table["cancer_type"].isin(planted_types(config))
    assert (tmb_table.loc[tmb_planted, "pancancer_fdr"] < 0.05).all() and (
        tmb_table.loc[tmb_planted, "rho"] > 0.2
    ).all()
    assert (tmb_table.loc[~tmb_planted, "p"] < 0.05).mean() <= 0.05
    assert (tmb_table.loc[~tmb_planted, "pancancer_fdr"] < 0.05).mean() <= 0.05
    planted = table["cancer_type"].isin(planted_types(config))
    assert planted.sum() == 40 and (~planted).sum() == 80
    assert (table.loc[planted, "pancancer_hr_fdr"] < 0.05).all()
    assert 1.7 < table.loc[planted, "hr_per_sd"].mean() < 2.4 and 0.9 < table.loc[~planted, "hr_per_sd"].mean() < 1.1
    null = table[~planted]
    for column in ("hr_per_sd_p", "p", "pancancer_hr_fdr", "pancancer_fdr"):
        assert (null[column] < 0.05).mean() <= 0.05, column
    # the plain log-rank p at an optimised split is anti-conservative, as documented (not the primary p)
    assert (null["logrank_p"] < 0.05).mean() > 0.15


@pytest.fixture(scope="module")
def pancancer_run(tmp_path_factory):
    """`tmeflow simulate --bulk_cancer_types 4 --bulk_planted_types 1 --bulk_normals 10 --n_cell_lines 200`, then
    `tmeflow bulk` with its MAF, MSI, copy-number and methylation tables and its drug screen (with the ridge prediction;
    the 40 normals in the expression table are compared with the tumours, not analysed as tumours).
    """
    import json

    tmp_path = tmp_path_factory.mktemp("pancancer")
    sim = tmp_path / "sim"
    assert (
        main(
            [
                "simulate",
                "--outdir",
                str(sim),
                "--n_cells",
                "300",
                "--n_patients",
                "2",
                "--n_genes",
                "1500",
                "--n_sections",
                "0",
                "--n_bulk",
                "400",
                "--bulk_cancer_types",
                "4",
                "--bulk_planted_types",
                "1",
                "--bulk_normals",
                "10",
                "--n_cell_lines",
                "200",
                "--seed",
                "1",
            ]
        )
        == 0
    )
    truth = json.loads((sim / "truth.json").read_text())["bulk"]
    assert truth["cancer_types"]["planted"] == ["TYPE1"] and truth["cancer_types"]["null"] == [
        "TYPE2",
        "TYPE3",
        "TYPE4",
    ]
    clinical = pd.read_csv(sim / "bulk" / "clinical.tsv", sep="\t")
    assert clinical["cancer_type"].value_counts().to_dict() == {f"TYPE{k}": 110 for k in range(1, 5)}
    assert clinical["sample_type"].value_counts().to_dict() == {"tumour": 400, "normal": 40}
    assert clinical.loc[clinical["sample_type"] == "normal", "os_time"].isna().all()
    gmt = sim / "fate_a.gmt"
    gmt.write_text("FATE_A\tplanted\t" + "\t".join(truth["signature_genes"]) + "\n")
    # gene-level methylation of the signature genes: the 8th gene's beta falls with its expression, the others random
    expression = pd.read_csv(sim / "bulk" / "expression.tsv", sep="\t", index_col=0).filter(like="BULK")
    rng = np.random.default_rng(0)
    beta = pd.DataFrame(
        rng.uniform(0.1, 0.9, (len(truth["signature_genes"]), expression.shape[1])),
        index=pd.Index(truth["signature_genes"], name="gene"),
        columns=expression.columns,
    )
    level = np.log2(expression.loc[truth["signature_genes"][7]] + 1)
    beta.iloc[7] = 1 / (1 + np.exp((level - level.mean()) / level.std() + 0.5 * rng.normal(size=expression.shape[1])))
    beta.round(4).to_csv(tmp_path / "methylation.csv")
    out = tmp_path / "out"
    assert (
        main(
            [
                "bulk",
                "--expression",
                str(sim / "bulk" / "expression.tsv"),
                "--clinical",
                str(sim / "bulk" / "clinical.tsv"),
                "--signatures",
                str(gmt),
                "--sample",
                "PAN",
                "--outdir",
                str(out),
                "--bulk_values",
                "tpm",
                "--bulk_hallmark",
                "false",
                "--cutpoint_permutations",
                "0",
                "--maf",
                str(sim / "bulk" / "mutations.maf"),
                "--msi",
                str(sim / "bulk" / "msi.tsv"),
                "--copy_number",
                str(sim / "bulk" / "cnv_thresholded.tsv"),
                "--methylation",
                str(tmp_path / "methylation.csv"),
                "--drug_expression",
                str(sim / "drugs" / "cell_line_expression.tsv"),
                "--drug_response",
                str(sim / "drugs" / "drug_response.tsv"),
                "--drug_predict",
                "true",
            ]
        )
        == 0
    )
    return out


@pytest.mark.slow
def test_simulate_pancancer_cohort_end_to_end(pancancer_run):
    """`tmeflow simulate --bulk_cancer_types 4` then `tmeflow bulk` on its bulk row: a cancer_type column, the
    truth naming the planted type, and the per-type outputs find it (pan-cancer FDR < 0.05), for survival and,
    from the simulated MAF given as --maf, for the score-TMB correlation.
    """
    import json

    out = pancancer_run
    table = pd.read_csv(out / "PAN.bulk_pancancer_survival.tsv", sep="\t")
    fate = table[table["feature"] == "FATE_A"].set_index("cancer_type")
    assert fate.loc["TYPE1", "pancancer_hr_fdr"] < 0.05 and fate.loc["TYPE1", "hr_per_sd"] > 1.5
    for name in (
        "bulk_pancancer_types.tsv",
        "bulk_pancancer_cox.tsv",
        "bulk_pancancer_mqc.tsv",
        "bulk_pancancer_correlation.tsv",
        "bulk_pancancer_forest_OS.png",
        "bulk_pancancer_correlation.png",
    ):
        assert (out / f"PAN.{name}").stat().st_size > 0, name
    tmb = pd.read_csv(out / "PAN.bulk_tmb.tsv", sep="\t")
    assert tmb["tmb"].notna().all() and 1.4 < tmb["tmb"].median() < 2.6 and set(tmb["match_rule"]) == {"exact"}
    tmb_corr = pd.read_csv(out / "PAN.bulk_tmb_correlation.tsv", sep="\t")
    fate_tmb = tmb_corr[tmb_corr["feature"] == "FATE_A"].set_index("cancer_type")
    assert fate_tmb.loc["TYPE1", "pancancer_fdr"] < 0.05 and fate_tmb.loc["TYPE1", "rho"] > 0.2
    assert (out / "PAN.bulk_tmb_correlation.png").stat().st_size > 0
    summary = json.loads((out / "PAN.bulk_summary.json").read_text())
    assert summary["tmb"]["samples_with_tmb"] == 400 and summary["tmb"]["capture_mb"] == 38
    assert summary["cancer_types"] == {f"TYPE{k}": {"n": 100, "analysed": True} for k in range(1, 5)}


@pytest.mark.slow
def test_simulated_normals_compared_per_cancer_type_end_to_end(pancancer_run):
    """The simulated in-table normals (sample_type column): left out of the tumour analyses, compared per cancer
    type; the 6 planted genes are found in every type (FDR < 0.05, right sign) and no null signature gene is.
    """
    import json

    out = pancancer_run
    truth = json.loads((out.parent / "sim" / "truth.json").read_text())["bulk"]["normals"]
    planted = truth["genes_log2fc_tumour_vs_normal"]
    table = pd.read_csv(out / "PAN.bulk_tumour_normal.tsv", sep="\t")
    genes = table[table["kind"] == "gene"]
    assert set(genes["cancer_type"]) == {f"TYPE{k}" for k in range(1, 5)}
    assert (genes["n_tumour"] == 100).all() and (genes["n_normal"] == 10).all()
    hit = genes["feature"].isin(list(planted))
    assert hit.sum() == 6 * 4 and (genes.loc[hit, "fdr"] < 0.05).all()
    assert (np.sign(genes.loc[hit, "log2fc"]) == genes.loc[hit, "feature"].map(planted)).all()
    assert (genes.loc[~hit, "fdr"] < 0.05).mean() <= 0.05
    assert set(table.loc[table["kind"] == "score", "feature"]) == {"FATE_A"}
    summary = json.loads((out / "PAN.bulk_summary.json").read_text())
    assert summary["samples"] == 400 and summary["tumour_normal"]["normals"] == {f"TYPE{k}": 10 for k in range(1, 5)}
    assert summary["tumour_normal"]["caveat"] is None
    for name in ("bulk_tumour_normal_heatmap.png", "bulk_tumour_normal_scores.png"):
        assert (out / f"PAN.{name}").stat().st_size > 0


@pytest.mark.slow
def test_simulated_msi_cnv_and_methylation_end_to_end(pancancer_run):
    """`tmeflow bulk --msi --copy_number --methylation` on the simulated pan-cancer cohort: the planted score-MSI
    correlation (TYPE1), the CNV-driven gene (every type) and the methylation-silenced gene (every type) are found
    at pan-cancer FDR < 0.05; CNV frequencies follow the simulated GISTIC level probabilities.
    """
    import json

    out = pancancer_run
    truth = json.loads((out.parent / "sim" / "truth.json").read_text())["bulk"]
    msi = pd.read_csv(out / "PAN.bulk_msi_correlation.tsv", sep="\t")
    fate = msi[msi["feature"] == "FATE_A"].set_index("cancer_type")
    assert fate.loc["TYPE1", "pancancer_fdr"] < 0.05 and fate.loc["TYPE1", "rho"] > 0.2
    cnv = pd.read_csv(out / "PAN.bulk_cnv_expression.tsv", sep="\t")
    hit = cnv["feature"] == truth["cancer_types"]["cnv_gene"]
    assert (
        hit.sum() == 4
        and (cnv.loc[hit, "pancancer_fdr"] < 0.05).all()
        and (cnv.loc[~hit, "pancancer_fdr"] < 0.05).mean() <= 0.05
    )
    frequency = pd.read_csv(out / "PAN.bulk_cnv_frequency.tsv", sep="\t")
    assert (
        (frequency["n"] == 100).all()
        and abs(frequency["gain"].mean() - 0.2) < 0.02
        and abs(frequency["loss"].mean() - 0.2) < 0.02
    )
    methylation = pd.read_csv(out / "PAN.bulk_methylation_expression.tsv", sep="\t")
    silenced = methylation["feature"] == truth["signature_genes"][7]
    assert (methylation.loc[silenced, "pancancer_fdr"] < 0.05).all() and (methylation.loc[silenced, "rho"] < -0.5).all()
    assert (methylation.loc[~silenced, "pancancer_fdr"] < 0.05).mean() <= 0.05
    summary = json.loads((out / "PAN.bulk_summary.json").read_text())
    assert summary["samples_with"] == {"msi": 400, "cnv": 400, "methylation": 400}
    for name in (
        "bulk_msi_correlation.png",
        "bulk_tmb_msi_radar.png",
        "bulk_cnv_frequency.png",
        "bulk_molecular_correlation.png",
    ):
        assert (out / f"PAN.{name}").stat().st_size > 0


@pytest.mark.slow
def test_simulate_drug_screen_end_to_end(pancancer_run):
    """`tmeflow simulate --n_cell_lines 200` writes a GDSC-like screen with 3 planted drugs; `tmeflow bulk
    --drug_expression --drug_response --drug_predict true` finds exactly those at FDR < 0.05 for the user
    signature, draws the bubble plot, and predicts them for the tumours (CV rho >= drug_min_cv_rho).
    """
    import json

    out = pancancer_run
    truth = json.loads((out.parent / "sim" / "truth.json").read_text())["drugs"]
    assert truth["planted"] == ["DRUG01", "DRUG02", "DRUG03"] and len(truth["null"]) == 17
    table = pd.read_csv(out / "PAN.bulk_drug_correlation.tsv", sep="\t")
    fate = table[table["feature"] == "FATE_A"].set_index("drug")
    assert (
        set(fate.index[fate["fdr"] < 0.05]) == set(truth["planted"])
        and (fate.loc[truth["planted"], "rho"] < -0.3).all()
    )
    assert set(table["kind"]) == {"score", "gene"} and (table.loc[table["kind"] == "gene", "feature"].nunique() > 10)
    cv = pd.read_csv(out / "PAN.bulk_drug_cv.tsv", sep="\t").set_index("drug")
    assert cv.loc[truth["planted"], "predicted"].all() and (cv.loc[truth["planted"], "cv_rho"] > 0.3).all()
    predicted = pd.read_csv(out / "PAN.bulk_drug_predicted.tsv", sep="\t", index_col="sample")
    assert predicted.shape[0] == 400 and set(truth["planted"]) <= set(predicted.columns)
    assert set(predicted.columns) == set(cv.index[cv["predicted"]])
    assert (out / "PAN.bulk_drug_bubble.png").stat().st_size > 5000
    summary = json.loads((out / "PAN.bulk_summary.json").read_text())["drugs"]
    assert summary["cell_lines"] == 200 and summary["drugs"] == 20 and summary["measure"] == "LN_IC50"
    assert summary["lead_feature"] == "FATE_A" and summary["drugs_fdr_below_0.05"] == 3


@pytest.mark.slow
def test_simulate_pancancer_settings_are_checked():
    from tmeflow.simulate import SimConfig

    with pytest.raises(TmeflowInputError, match="fewer than 10 samples per cancer type"):
        SimConfig(outdir=Path("x"), n_bulk=50, bulk_cancer_types=6).check()
    with pytest.raises(TmeflowInputError, match="--bulk_planted_types between 0 and it"):
        SimConfig(outdir=Path("x"), bulk_cancer_types=2, bulk_planted_types=3).check()


@pytest.mark.slow
def test_report_has_a_pan_cancer_section_with_every_figure(pancancer_run, tmp_path):
    import re

    from tmeflow import report

    outdir = tmp_path / "multiqc"
    assert main(["report", "--input_dir", str(pancancer_run), "--outdir", str(outdir)]) == 0
    html = (outdir / "multiqc_report.html").read_text()
    assert 'id="tmeflow_step_pancancer"' in html
    figures = [
        p
        for p in pancancer_run.glob("*.png")
        if any(k in p.name for k in ("pancancer", "tmb", "tumour_normal", "msi", "cnv", "molecular", "drug"))
    ]
    assert len(figures) == 10
    for figure in figures:
        assert re.search("tmeflow_figure_" + re.escape(figure.stem.lower().replace(".", "_")), html), figure.name
    assert "tmeflow_bulk_pancancer_PAN" in html and "tmeflow_bulk_drug_PAN" in html
    patterns = [p for p, _ in next(s for s in report.SECTIONS if s.id == "tmeflow_step_pancancer").files]
    unused = [p for p in patterns if not any(f.match(p) for f in pancancer_run.iterdir())]
    # no response column here (tests/test_response.py, and the immunotherapy row of tests/test_runner.py)
    assert unused == ["*.bulk_response_roc.png", "*.bulk_immunotherapy_km.png"]
