"""Drug sensitivity (``tmeflow.bulk.drugs``): GDSC/CTRP tables read long or wide with one-line errors, the
signature's Spearman correlation with each drug's IC50 (planted drugs found, null drugs calibrated over 20
simulated screens) and the oncoPredict-style ridge model (cross-validated, predicting the tumours).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tmeflow.bulk.drugs import (
    cell_line_features,
    drug_correlations,
    predict_drug_response,
    read_drug_inputs,
    read_drug_response,
    spearman_columns,
)
from tmeflow.bulk.settings import BulkSettings
from tmeflow.cli import main
from tmeflow.errors import TmeflowInputError

# --------------------------------------------------------------------------------------------------
# Reading


def test_drug_response_long_gdsc_ctrp_and_wide_tables(tmp_path):
    """GDSC long (LN_IC50 chosen over AUC, a repeated pair averaged), CTRP long (area_under_curve), wide."""
    gdsc = tmp_path / "gdsc.csv"
    pd.DataFrame(
        {
            "COSMIC_ID": ["1", "1", "2", "1"],
            "CELL_LINE_NAME": ["A", "A", "B", "A"],
            "DRUG_NAME": ["x", "y", "x", "x"],
            "LN_IC50": [1.0, 2.0, 3.0, 2.0],
            "AUC": [0.9, 0.8, 0.7, 0.6],
        }
    ).to_csv(gdsc, index=False)
    matrix, measure = read_drug_response(gdsc)
    assert measure == "LN_IC50" and matrix.loc["A", "x"] == 1.5 and np.isnan(matrix.loc["B", "y"])
    matrix, measure = read_drug_response(gdsc, "AUC")
    assert measure == "AUC" and matrix.loc["A", "x"] == pytest.approx(0.75)
    ctrp = tmp_path / "ctrp.tsv"
    pd.DataFrame({"ccl_name": ["A", "B"], "cpd_name": ["z", "z"], "area_under_curve": [10.0, 12.0]}).to_csv(
        ctrp, sep="\t", index=False
    )
    matrix, measure = read_drug_response(ctrp)
    assert measure == "area_under_curve" and matrix["z"].to_dict() == {"A": 10.0, "B": 12.0}
    wide = tmp_path / "wide.tsv"
    pd.DataFrame({"line": ["A", "B"], "d1": [1.0, "NA"], "d2": [3.0, 4.0]}).to_csv(wide, sep="\t", index=False)
    matrix, measure = read_drug_response(wide)
    assert measure == "response" and list(matrix.columns) == ["d1", "d2"] and np.isnan(matrix.loc["B", "d1"])


def test_drug_input_errors_name_file_and_column(tmp_path, capsys, small_bulk_args):
    def error(frame, name, column="", **kwargs):
        path = tmp_path / name
        frame.to_csv(path, sep="\t", index=False)
        with pytest.raises(TmeflowInputError) as info:
            read_drug_response(path, column)
        return str(info.value)

    message = error(pd.DataFrame({"CELL_LINE_NAME": ["A"], "DRUG_NAME": ["x"], "RMSE": [1.0]}), "novalue.tsv")
    assert "no value column" in message and "novalue.tsv" in message
    message = error(pd.DataFrame({"CELL_LINE_NAME": ["A"], "DRUG_NAME": ["x"], "AUC": [1.0]}), "named.tsv", "IC50")
    assert "drug_response_column is not a column" in message and "column IC50" in message
    message = error(
        pd.DataFrame({"CELL_LINE_NAME": ["A", "B"], "DRUG_NAME": ["x", "x"], "AUC": ["1", "high"]}), "text.tsv"
    )
    assert "non-numeric drug response 'high'" in message and "row 3" in message and "column AUC" in message
    message = error(pd.DataFrame({"line": ["A"], "d1": ["high"]}), "widetext.tsv")
    assert "wide drug_response" in message and "column d1" in message
    message = error(pd.DataFrame({"name": ["A"], "DRUG_NAME": ["x"], "AUC": [1.0]}), "nocell.tsv")
    assert "no cell-line column" in message
    with pytest.raises(TmeflowInputError, match="drug_expression needs drug_response as well"):
        read_drug_inputs(BulkSettings.defaults().replace(drug_expression=str(tmp_path / "e.tsv")))
    assert read_drug_inputs(BulkSettings.defaults()) is None
    # cell lines that do not match the expression: one line through the CLI, before anything is written
    response = tmp_path / "response.tsv"
    pd.DataFrame({"CELL_LINE_NAME": [f"L{i}" for i in range(12)], "DRUG_NAME": "x", "LN_IC50": 1.0}).to_csv(
        response, sep="\t", index=False
    )
    expression = tmp_path / "lines.tsv"
    pd.DataFrame(np.ones((3, 12)), index=["A", "B", "C"], columns=[f"M{i}" for i in range(12)]).rename_axis(
        "gene"
    ).to_csv(expression, sep="\t")
    rc = main([*small_bulk_args, "--drug_expression", str(expression), "--drug_response", str(response)])
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tmeflow bulk: error:")]
    assert (
        rc == 2
        and len(lines) == 1
        and "only 0 of 12 drug_response cell lines match" in lines[0]
        and "lines.tsv" in lines[0]
    )
    assert not (tmp_path / "out").exists()


def test_spearman_columns_equals_scipy():
    from scipy.stats import spearmanr

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(30, 3)), rng.normal(size=30)
    x[:, 1] = np.round(x[:, 1])  # ties
    rho, p = spearman_columns(x, y)
    for j in range(3):
        ref = spearmanr(x[:, j], y)
        assert rho[j] == pytest.approx(ref[0], abs=1e-12) and p[j] == pytest.approx(ref[1], rel=1e-9)


# --------------------------------------------------------------------------------------------------
# Simulated screens


@pytest.fixture(scope="module")
def model():
    from tmeflow.simulate import SimConfig, build_genes, build_model

    config = SimConfig(outdir=Path("unused"), n_genes=1500, n_cell_lines=60, n_drugs=20, planted_drugs=3)
    rng = np.random.default_rng(0)
    return config, build_model(config, build_genes(config, rng), rng)


def _screen(config, model, seed):
    from tmeflow.simulate import simulate_cell_lines

    expression, response, z = simulate_cell_lines(model, config, np.random.default_rng(seed))
    return expression, response.pivot(index="CELL_LINE_NAME", columns="DRUG_NAME", values="LN_IC50"), z


def test_simulated_planted_drugs_found_and_null_drugs_calibrated_over_20_seeds(model):
    """20 simulated screens (60 cell lines, 3 planted drugs with ln IC50 falling 0.8 per SD of the score, 17
    null): the signature scored on the cell lines by ssGSEA (as on tumours) finds every planted drug at
    FDR < 0.05 with rho < 0, and the 340 null drug tests reject at <= 5% (p and FDR).
    """
    from tmeflow.simulate import drug_names

    config, model = model
    genes = model.programmes["fate_A"]
    settings = BulkSettings.defaults()
    planted, null = drug_names(config)
    tables = []
    for seed in range(20):
        expression, response, _ = _screen(config, model, seed)
        features, kinds = cell_line_features(expression, {"FATE_A": genes}, ["FATE_A"], settings)
        tables.append(drug_correlations(features, kinds, response).assign(seed=seed))
    table = pd.concat(tables, ignore_index=True)
    score = table[table["feature"] == "FATE_A"]
    hits = score[score["drug"].isin(planted)]
    nulls = score[score["drug"].isin(null)]
    assert len(hits) == 60 and len(nulls) == 340
    assert (hits["fdr"] < 0.05).all() and (hits["rho"] < -0.3).all()
    assert (nulls["p"] < 0.05).mean() <= 0.05 and (nulls["fdr"] < 0.05).mean() <= 0.05
    # the signature's genes: each a weaker but mostly significant marker of the planted drugs only
    gene_rows = table[table["feature"].str.startswith("gene:")]
    assert gene_rows.loc[gene_rows["drug"].isin(planted), "rho"].mean() < -0.15
    assert (gene_rows.loc[gene_rows["drug"].isin(null), "p"] < 0.05).mean() <= 0.06


def test_ridge_cross_validates_planted_drugs_and_predicts_tumours(model):
    """oncoPredict-style ridge on 200 simulated cell lines x 1500 genes: planted drugs reach CV rho > 0.3 and
    are predicted, null drugs average CV rho about 0; tumours (another platform) get a predicted IC50 of each
    planted drug that falls with their true signature score.
    """
    from dataclasses import replace

    from tmeflow.simulate import _bulk_expression, drug_names, signature_score

    config, model = model
    config = replace(config, n_cell_lines=200)
    planted, null = drug_names(config)
    expression, response, _ = _screen(config, model, 7)
    tumours, _ = _bulk_expression(model, 80, np.random.default_rng(99))
    z = signature_score(tumours, model.programmes["fate_A"])
    tumour_log = (
        np.log2(tumours * 1.7 + 1.0) + 0.5
    )  # another platform: scale and offset removed by per-set standardisation
    cv, predicted = predict_drug_response(expression, tumour_log, response, min_cv_rho=0.3, seed=0)
    cv = cv.set_index("drug")
    assert (cv.loc[planted, "cv_rho"] > 0.3).all() and cv.loc[planted, "predicted"].all()
    assert abs(cv.loc[null, "cv_rho"].mean()) < 0.1 and cv.loc[null, "predicted"].mean() <= 0.2
    assert list(predicted.columns) == list(cv.index[cv["predicted"]]) and list(predicted.index) == list(tumours.columns)
    for drug in planted:
        assert predicted[drug].corr(z, method="spearman") < -0.5


def test_simulate_drug_options_are_checked():
    from tmeflow.simulate import SimConfig

    for bad in (
        {"n_cell_lines": 10},
        {"n_cell_lines": 30, "n_drugs": 0},
        {"n_cell_lines": 30, "n_drugs": 2, "planted_drugs": 3},
    ):
        with pytest.raises(TmeflowInputError, match="--n_cell_lines must be 0 or at least 20"):
            SimConfig(outdir=Path("x"), **bad).check()
    SimConfig(outdir=Path("x"), n_cell_lines=0, n_drugs=0).check()  # no screen: the drug options are not used
