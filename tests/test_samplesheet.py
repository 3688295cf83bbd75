"""Samplesheet validation: errors name the row and the column."""

from __future__ import annotations

import pytest

from tmeflow.errors import TmeflowInputError
from tmeflow.samplesheet import read_samplesheet

HEADER = "sample,patient,condition,tissue,species,batch,modality,data,clinical"


def _sheet(tmp_path, *rows: str):
    (tmp_path / "counts.h5ad").write_text("x")
    (tmp_path / "expr.tsv").write_text("x")
    (tmp_path / "clin.tsv").write_text("x")
    path = tmp_path / "samplesheet.csv"
    path.write_text("\n".join([HEADER, *rows]) + "\n")
    return path


def test_valid_sheet_resolves_paths_against_its_folder(tmp_path):
    path = _sheet(
        tmp_path,
        "S1,P1,primary,breast,human,b1,sc,counts.h5ad,",
        "B1,cohort,primary,breast,human,array,bulk,expr.tsv,clin.tsv",
    )
    rows = read_samplesheet(path)
    assert [row.sample for row in rows] == ["S1", "B1"]
    assert rows[0].data == (tmp_path / "counts.h5ad").resolve()
    assert rows[0].clinical is None and rows[1].clinical == (tmp_path / "clin.tsv").resolve()
    assert rows[0].meta()["species"] == "human"


@pytest.mark.parametrize(
    ("row", "pattern"),
    [
        (
            "S1,P1,primary,breast,dog,b1,sc,counts.h5ad,",
            r"species must be human or mouse \[file .*row 2, column species\]",
        ),
        ("S1,P1,primary,breast,human,b1,rna,counts.h5ad,", r"modality must be .*column modality"),
        ("S 1,P1,primary,breast,human,b1,sc,counts.h5ad,", r"sample must be .*column sample"),
        ("S1,,primary,breast,human,b1,sc,counts.h5ad,", r"'patient'.*row 2, column patient"),
        ("S1,P1,primary,breast,human,b1,sc,missing.h5ad,", r"data path does not exist: missing.h5ad.*column data"),
        ("B1,P1,primary,breast,human,b1,bulk,expr.tsv,", r"'clinical'.*column clinical"),
    ],
)
def test_bad_rows_name_row_and_column(tmp_path, row, pattern):
    with pytest.raises(TmeflowInputError, match=pattern) as caught:
        read_samplesheet(_sheet(tmp_path, row))
    assert "\n" not in str(caught.value)


def test_duplicate_samples_and_empty_sheets(tmp_path):
    with pytest.raises(TmeflowInputError, match="appears twice.*row 3"):
        read_samplesheet(
            _sheet(tmp_path, "S1,P1,primary,t,human,b1,sc,counts.h5ad,", "S1,P2,primary,t,human,b1,sc,counts.h5ad,")
        )
    with pytest.raises(TmeflowInputError, match="no samples"):
        read_samplesheet(_sheet(tmp_path))
    with pytest.raises(TmeflowInputError, match="not found"):
        read_samplesheet(tmp_path / "absent.csv")
