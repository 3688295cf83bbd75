"""Immunotherapy cohorts: `tmeflow simulate --n_immunotherapy` (its own bulk row with response and OS/PFS
driven by the signature) and the bulk stage's response ROC and optimised-split KM figure; the planted
association is found and a null cohort is calibrated over 20 seeds."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tmeflow.cli import main
from tmeflow.errors import TmeflowInputError
from tmeflow.params import defaults


def _cohorts(log_or: float, seeds: range, n: int = 100):
    """Per seed: the pipeline's ssGSEA score of the planted signature, response status and OS/PFS frames."""
    from tmeflow.bulk.response import response_status
    from tmeflow.signatures import ssgsea
    from tmeflow.simulate import SimConfig, _bulk_expression, build_genes, build_model, immunotherapy_clinical, signature_score

    config = SimConfig(outdir=Path("unused"), n_genes=1500)
    rng = np.random.default_rng(0)
    model = build_model(config, build_genes(config, rng), rng)
    genes = model.programmes["fate_A"]
    for seed in seeds:
        rng = np.random.default_rng(seed)
        expression, _ = _bulk_expression(model, n, rng)
        clinical = immunotherapy_clinical(signature_score(expression, genes), log_or, rng).set_index("sample")
        score = ssgsea(np.log2(expression + 1.0), {"SIG": genes}).T
        status = response_status(clinical, "", Path("clinical.tsv"))
        survs = {name: pd.DataFrame({"time": clinical[f"{name.lower()}_time"], "event": clinical[f"{name.lower()}_event"]})
                 for name in ("OS", "PFS")}
        yield seed, score, status, survs


def _tests(log_or: float) -> pd.DataFrame:
    from tmeflow.bulk.endpoints import analyse_survival
    from tmeflow.bulk.response import response_table

    params = {**defaults(), "cutpoint_permutations": 0}
    rows = []
    for seed, score, status, survs in _cohorts(log_or, range(20)):
        response = response_table(score, {"SIG": "user_signature"}, status).iloc[0]
        row = {"seed": seed, "wilcoxon_p": response["wilcoxon_p"], "auc": response["auc"], "auc_lower": response["auc_lower"],
               "auc_upper": response["auc_upper"], "responders": int(status.sum())}
        for name, surv in survs.items():
            table, _, _ = analyse_survival(score, surv, name, pd.DataFrame(index=score.index), params)
            row |= {f"{name}_p": table["p"].iloc[0], f"{name}_hr_p": table["hr_per_sd_p"].iloc[0], f"{name}_hr": table["hr_per_sd"].iloc[0]}
        rows.append(row)
    return pd.DataFrame(rows)


def test_planted_immunotherapy_association_found_and_null_calibrated_over_20_seeds():
    """100 patients per cohort, 20 seeds. Planted (log OR 1 per SD of the signature score; OS/PFS hazards
    exp(-0.6 z)): the pipeline's score separates responders (Wilcoxon p < 0.05, AUC CI above 0.5) and the
    optimised-split KM (Lau92-corrected p) and Cox HR per SD find OS and PFS in every seed. Null (log OR 0):
    the 20 seeds x 5 tests (Wilcoxon, corrected cut-point p and Cox p for OS and PFS) reject at <= 5%, and the
    DeLong CI covers AUC 0.5 in >= 90% of seeds."""
    planted = _tests(1.0)
    assert (planted["wilcoxon_p"] < 0.05).all() and (planted["auc_lower"] > 0.5).all() and planted["auc"].mean() > 0.7
    for name in ("OS", "PFS"):
        assert (planted[f"{name}_p"] < 0.05).all() and (planted[f"{name}_hr_p"] < 0.05).all() and (planted[f"{name}_hr"] < 1).all()
    null = _tests(0.0)
    tests = null[["wilcoxon_p", "OS_p", "OS_hr_p", "PFS_p", "PFS_hr_p"]]
    assert (tests < 0.05).to_numpy().mean() <= 0.05
    assert ((null["auc_lower"] <= 0.5) & (null["auc_upper"] >= 0.5)).mean() >= 0.9
    assert 25 <= null["responders"].mean() <= 50  # logistic(-0.5): about 38% responders


def test_simulate_immunotherapy_options_are_checked():
    from tmeflow.simulate import SimConfig

    with pytest.raises(TmeflowInputError, match="--n_immunotherapy must be 0 or at least 30"):
        SimConfig(outdir=Path("x"), n_immunotherapy=10).check()


@pytest.fixture(scope="module")
def immunotherapy_run(tmp_path_factory):
    """`tmeflow simulate --n_immunotherapy 120`, then `tmeflow bulk` on its immunotherapy row."""
    tmp_path = tmp_path_factory.mktemp("immunotherapy")
    sim = tmp_path / "sim"
    assert main(["simulate", "--outdir", str(sim), "--n_cells", "300", "--n_patients", "2", "--n_genes", "1500",
                 "--n_sections", "0", "--n_bulk", "0", "--n_immunotherapy", "120", "--seed", "3"]) == 0
    truth = json.loads((sim / "truth.json").read_text())
    gmt = sim / "fate_a.gmt"
    gmt.write_text("FATE_A\tplanted\t" + "\t".join(truth["bulk"]["signature_genes"]) + "\n")
    out = tmp_path / "out"
    assert main(["bulk", "--expression", str(sim / "immunotherapy" / "expression.tsv"),
                 "--clinical", str(sim / "immunotherapy" / "clinical.tsv"), "--signatures", str(gmt), "--sample", "IO",
                 "--outdir", str(out), "--bulk_values", "tpm", "--bulk_hallmark", "false", "--cutpoint_permutations", "0"]) == 0
    return sim, out


def test_simulated_immunotherapy_row_and_its_bulk_outputs(immunotherapy_run, tmp_path):
    """The simulator's immunotherapy row (samplesheet, truth, clinical columns) and the bulk stage on it: the
    planted signature separates responders (ROC) and OS/PFS at an optimised split with a corrected p, drawn
    in <sample>.bulk_immunotherapy_km.png, which the report shows in its Pan-cancer section."""
    import re

    from tmeflow.samplesheet import read_samplesheet

    sim, out = immunotherapy_run
    rows = [row for row in read_samplesheet(sim / "samplesheet.csv") if row.modality == "bulk"]
    assert [(row.sample, Path(row.data).name, Path(row.clinical).name) for row in rows] == [
        ("immunotherapy", "expression.tsv", "clinical.tsv")]
    clinical = pd.read_csv(sim / "immunotherapy" / "clinical.tsv", sep="\t")
    assert set(clinical["response"]) == {"CR", "PR", "SD", "PD"} and len(clinical) == 120
    assert (clinical["pfs_time"] <= clinical["os_time"]).all()
    truth = json.loads((sim / "truth.json").read_text())["immunotherapy"]
    assert truth["n_samples"] == 120 and truth["responders"] == int(clinical["response"].isin(["CR", "PR"]).sum())
    response = pd.read_csv(out / "IO.bulk_response.tsv", sep="\t").set_index("feature")
    assert response.loc["FATE_A", "fdr"] < 0.05 and response.loc["FATE_A", "auc_lower"] > 0.5
    survival = pd.read_csv(out / "IO.bulk_survival.tsv", sep="\t")
    fate = survival[survival["feature"] == "FATE_A"].set_index("endpoint")
    assert set(fate.index) == {"OS", "PFS"} and fate["split"].str.startswith("optimised").all() and (fate["p"] < 0.05).all()
    assert (fate["hr_per_sd"] < 1).all()
    assert (out / "IO.bulk_immunotherapy_km.png").stat().st_size > 10000
    assert (out / "IO.bulk_response_roc.png").stat().st_size > 5000
    summary = json.loads((out / "IO.bulk_summary.json").read_text())
    assert summary["response"]["responders"] == truth["responders"]
    outdir = tmp_path / "multiqc"
    assert main(["report", "--input_dir", str(out), "--outdir", str(outdir)]) == 0
    html = (outdir / "multiqc_report.html").read_text()
    for name in ("IO.bulk_immunotherapy_km", "IO.bulk_response_roc"):
        assert re.search("tmeflow_figure_" + re.escape(name.lower().replace(".", "_")), html), name
