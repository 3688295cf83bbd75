"""Treatment response of a bulk cohort (``tmeflow.bulk.response``): Wilcoxon, ROC AUC with DeLong CI."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tmeflow.bulk.response import delong_auc, response_status, response_table
from tmeflow.cli import main
from tmeflow.errors import TmeflowInputError


def test_delong_auc_and_standard_error_by_hand():
    """Responders 3, 4, 5 vs others 1, 2, 4. Pairs won (ties 1/2): 3 -> 2/3, 4 -> 5/6, 5 -> 1, AUC = 15/18.
    Per other: 1 -> 1, 2 -> 1, 4 -> 1/2. DeLong: var(2/3, 5/6, 1)/3 + var(1, 1, 1/2)/3 = (1/36)/3 + (1/12)/3 = 1/27.
    """
    auc, se = delong_auc(np.array([3, 4, 5]), np.array([1, 2, 4]))
    assert auc == pytest.approx(15 / 18)
    assert se == pytest.approx(np.sqrt(1 / 27))


def test_response_values(tmp_path):
    clinical = pd.DataFrame(
        {"Response": ["CR", "PR", "SD", "PD", "NE", None, "pd", "Partial Response", "NR", "R"]},
        index=[f"S{i}" for i in range(10)],
    )
    status = response_status(clinical, "", tmp_path / "clin.tsv")
    assert (
        status.tolist()[:4] == [1, 1, 0, 0]
        and status.iloc[4:6].isna().all()
        and status.iloc[6:].tolist() == [0, 1, 0, 1]
    )
    assert response_status(clinical.rename(columns={"Response": "x"}), "", tmp_path / "clin.tsv") is None
    with pytest.raises(TmeflowInputError, match="response value 'MR' is not CR/PR/SD/PD") as info:
        response_status(pd.DataFrame({"Response": ["CR", "MR"]}, index=["a", "b"]), "", tmp_path / "clin.tsv")
    assert "column Response" in str(info.value) and "clin.tsv" in str(info.value)
    with pytest.raises(TmeflowInputError, match="at least 3 responders"):
        response_status(pd.DataFrame({"r": ["CR", "SD", "SD", "PD"]}, index=list("abcd")), "r", tmp_path / "clin.tsv")
    with pytest.raises(TmeflowInputError, match="response_column is not a clinical column"):
        response_status(clinical, "best_response", tmp_path / "clin.tsv")


def test_planted_response_found_and_null_calibrated():
    """A score shifted by 1 SD in responders (40 vs 60 samples): AUC ~0.76, FDR < 0.05; over 300 null cohorts
    the Wilcoxon rejects at ~5% and the DeLong 95% CI covers 0.5 in ~95%.
    """
    rng = np.random.default_rng(0)
    status = pd.Series([1.0] * 40 + [0.0] * 60, index=[f"S{i}" for i in range(100)])
    features = pd.DataFrame(
        {"SIG": rng.normal(size=100) + status.to_numpy(), "null": rng.normal(size=100)}, index=status.index
    )
    table = response_table(features, {"SIG": "user_signature", "null": "hallmark"}, status).set_index("feature")
    assert 0.65 < table.loc["SIG", "auc"] and table.loc["SIG", "fdr"] < 0.05 and table.loc["SIG", "auc_lower"] > 0.5
    rejected, covered = [], []
    for _ in range(300):
        x = rng.normal(size=100)
        auc, se = delong_auc(x[:40], x[40:])
        covered.append(abs(auc - 0.5) <= 1.959964 * se)
        rejected.append(
            response_table(pd.DataFrame({"x": x}, index=status.index), {"x": "gene"}, status)["wilcoxon_p"].iloc[0]
            < 0.05
        )
    assert 0.02 <= np.mean(rejected) <= 0.08 and 0.92 <= np.mean(covered) <= 0.98


def test_cli_writes_the_response_table_and_roc(tmp_path):
    from tmeflow.signatures import read_bundled_gmt

    rng = np.random.default_rng(1)
    genes = read_bundled_gmt("estimate")["ImmuneSignature"][:40]
    n = 60
    status = np.array(["CR", "PR", "SD", "PD"] * (n // 4))
    responder = np.isin(status, ["CR", "PR"])
    log = rng.normal(5, 0.5, (len(genes), n))
    log[:10] += 1.0 * responder  # the first 10 genes (the user signature) up in responders
    expression = pd.DataFrame(2**log, index=genes, columns=[f"S{i}" for i in range(n)])
    expression.index.name = "gene"
    expression.to_csv(tmp_path / "expr.csv")
    pd.DataFrame({"sample": expression.columns, "response": status}).to_csv(tmp_path / "clin.csv", index=False)
    (tmp_path / "sig.gmt").write_text("IO_SIG\tplanted\t" + "\t".join(genes[:10]) + "\n")
    out = tmp_path / "out"
    assert (
        main(
            [
                "bulk",
                "--expression",
                str(tmp_path / "expr.csv"),
                "--clinical",
                str(tmp_path / "clin.csv"),
                "--signatures",
                str(tmp_path / "sig.gmt"),
                "--sample",
                "IO",
                "--outdir",
                str(out),
                "--bulk_values",
                "tpm",
                "--bulk_hallmark",
                "false",
                "--bulk_genes",
                genes[0],
            ]
        )
        == 0
    )
    table = pd.read_csv(out / "IO.bulk_response.tsv", sep="\t").set_index("feature")
    assert table.loc["IO_SIG", "auc"] > 0.85 and table.loc["IO_SIG", "fdr"] < 0.05
    assert table.loc["IO_SIG", "n_responders"] == 30 and table.loc["IO_SIG", "n_non_responders"] == 30
    assert (out / "IO.bulk_response_roc.png").stat().st_size > 5000
    # the report files the ROC figure under the Pan-cancer section
    import fnmatch

    from tmeflow import report

    section = next(s for s in report.SECTIONS if s.id == "tmeflow_step_pancancer")
    assert any(fnmatch.fnmatchcase("IO.bulk_response_roc.png", p) for p, _ in section.files)
