"""MAF reading, TCGA barcode matching and tumour mutational burden (``tmeflow.bulk.mutations``)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tmeflow.bulk.mutations import match_barcodes, read_maf, tumour_mutational_burden
from tmeflow.cli import main
from tmeflow.errors import TmeflowInputError

REAL_MAF = Path(__file__).parent / "data" / "maf" / "gdc_luad_6_samples.maf"


def test_tmb_of_a_real_gdc_maf_equals_the_hand_count(caplog):
    """The real GDC MAF (tests/data/maf/SOURCE.md has the hand count): 47, 39 and 44 non-synonymous variants
    for three samples, matched from 28-character aliquot barcodes to 15-character sample identifiers.
    """
    samples = pd.Index(["TCGA-05-4244-01", "TCGA-05-4382-01", "TCGA-05-4384-01", "TCGA-99-0000-01"])
    with caplog.at_level(logging.INFO, logger="tmeflow"):
        tmb = tumour_mutational_burden(read_maf(REAL_MAF), samples, 38.0, REAL_MAF)
    assert tmb["n_nonsynonymous"].iloc[:3].tolist() == [47, 39, 44]
    assert tmb["n_variants"].iloc[:3].tolist() == [60, 60, 60]
    assert np.allclose(tmb["tmb"].iloc[:3], [47 / 38, 39 / 38, 44 / 38])
    assert np.isnan(tmb.loc["TCGA-99-0000-01", "tmb"])  # not in the MAF: unknown, not 0
    assert tmb.loc["TCGA-05-4244-01", "barcode"] == "TCGA-05-4244-01A-01D-1105-08"
    assert (
        "3 of 6 barcodes matched to 3 of 4 cohort samples by truncation to the TCGA sample (15 characters)"
        in caplog.text
    )
    assert "1 cohort sample(s) have no MAF barcode" in caplog.text


def _write_maf(path: Path, rows: list[tuple[str, str, str]]) -> Path:
    """A minimal MAF: (barcode, classification, start) rows on chromosome 1, with a version line."""
    frame = pd.DataFrame(rows, columns=["Tumor_Sample_Barcode", "Variant_Classification", "Start_Position"])
    frame.insert(0, "Hugo_Symbol", "GENE")
    frame["Chromosome"] = "chr1"
    frame["Reference_Allele"], frame["Tumor_Seq_Allele2"] = "A", "T"
    with path.open("w") as handle:
        handle.write("#version gdc-1.0.0\n")
        frame.to_csv(handle, sep="\t", index=False)
    return path


def test_tmb_hand_computation_on_a_small_maf(tmp_path):
    """Three samples; by hand with a 30 Mb capture: S1 missense + nonsense + frame shift (a repeated row counted
    once) = 3 -> 0.1; S2 silent + intron + missense = 1 -> 0.0333; S3 only silent = 0 -> 0 (in the MAF: 0, not NA).
    """
    maf = _write_maf(
        tmp_path / "small.maf",
        [
            ("S1", "Missense_Mutation", "100"),
            ("S1", "Nonsense_Mutation", "200"),
            ("S1", "Frame_Shift_Ins", "300"),
            ("S1", "Frame_Shift_Ins", "300"),
            ("S2", "Silent", "100"),
            ("S2", "Intron", "150"),
            ("S2", "Missense_Mutation", "400"),
            ("S3", "Silent", "500"),
        ],
    )
    tmb = tumour_mutational_burden(read_maf(maf), pd.Index(["S1", "S2", "S3"]), 30.0, maf)
    assert tmb["n_nonsynonymous"].tolist() == [3, 1, 0] and tmb["n_variants"].tolist() == [3, 3, 1]
    assert np.allclose(tmb["tmb"], [0.1, 1 / 30, 0.0])
    assert set(tmb["match_rule"]) == {"exact"}


def test_barcode_matching_levels_and_ambiguity(tmp_path):
    source = tmp_path / "m.maf"
    aliquots = pd.Index(["TCGA-AB-1234-01A-11D-A123-08", "TCGA-AB-5678-01A-11D-A123-08"])
    # R-style patient identifiers (make.names): patient level, logged as such
    mapping, rule = match_barcodes(aliquots, pd.Index(["TCGA.AB.1234", "TCGA.AB.5678"]), source)
    assert mapping == {"TCGA-AB-1234-01A-11D-A123-08": "TCGA.AB.1234", "TCGA-AB-5678-01A-11D-A123-08": "TCGA.AB.5678"}
    assert rule == "TCGA patient (12 characters)"
    # tumour and normal of one patient in the cohort: the patient level cannot tell them apart, the sample level can
    mapping, rule = match_barcodes(aliquots[:1], pd.Index(["TCGA-AB-1234-01A", "TCGA-AB-1234-11A"]), source)
    assert mapping == {"TCGA-AB-1234-01A-11D-A123-08": "TCGA-AB-1234-01A"} and rule.startswith("TCGA sample")
    # two aliquots of one sample: an error naming the sample, not a silent choice
    with pytest.raises(TmeflowInputError, match="all match cohort sample TCGA-AB-1234-01") as info:
        match_barcodes(
            pd.Index(["TCGA-AB-1234-01A-11D-A123-08", "TCGA-AB-1234-01B-21D-A999-08"]),
            pd.Index(["TCGA-AB-1234-01"]),
            source,
        )
    assert "m.maf" in str(info.value)


def test_maf_errors_are_one_line(tmp_path, capsys, small_bulk_args):
    bad = tmp_path / "bad.maf"
    pd.DataFrame({"Tumor_Sample_Barcode": ["S1"], "Hugo_Symbol": ["TP53"]}).to_csv(bad, sep="\t", index=False)
    with pytest.raises(TmeflowInputError, match="MAF lacks the column\\(s\\) Variant_Classification") as info:
        read_maf(bad)
    assert "bad.maf" in str(info.value) and "column Variant_Classification" in str(info.value)
    other = _write_maf(tmp_path / "other.maf", [("X1", "Missense_Mutation", "1")])
    with pytest.raises(TmeflowInputError, match="none of the 1 MAF barcodes \\(e.g. X1\\) matches a cohort sample"):
        tumour_mutational_burden(read_maf(other), pd.Index(["S1"]), 38.0, other)
    # through the CLI: exit 2, one line naming the file and the column, nothing written
    rc = main([*small_bulk_args, "--maf", str(bad)])
    message = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tmeflow bulk: error:")]
    assert rc == 2 and len(message) == 1 and "bad.maf" in message[0] and "Variant_Classification" in message[0]
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_tmb_of_three_samples_by_hand(tmp_path):
    from tmeflow.bulk.mutations import tumour_mutational_burden

    maf = pd.DataFrame(
        {
            "Tumor_Sample_Barcode": ["S1", "S1", "S1", "S1", "S2"],
            "Variant_Classification": [
                "Missense_Mutation",
                "Nonsense_Mutation",
                "Frame_Shift_Del",
                "Silent",
                "Missense_Mutation",
            ],
        }
    )
    table = tumour_mutational_burden(maf, pd.Index(["S1", "S2", "S3"]), 1.5, tmp_path / "cohort.maf")
    # S1: 4 variants, 3 non-synonymous (Silent is not) -> 3 / 1.5 Mb = 2.0; S2: 1 / 1.5 = 0.6667; S3: no row -> NA
    assert table.loc["S1", "n_variants"] == 4 and table.loc["S1", "n_nonsynonymous"] == 3
    assert table["tmb"].iloc[:2].tolist() == pytest.approx([2.0, 1 / 1.5])
    assert pd.isna(table.loc["S3", "tmb"]) and table.loc["S1", "match_rule"] == "exact"
