"""Outputs are written atomically: a failure leaves no file that looks complete."""

from __future__ import annotations

import pandas as pd
import pytest

from tmeflow import io
from tmeflow.errors import TmeflowInputError


def test_failed_write_leaves_nothing(tmp_path):
    target = tmp_path / "table.tsv"
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []


def test_failed_write_keeps_the_previous_complete_file(tmp_path):
    target = io.write_text("complete\n", tmp_path / "a.txt")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("partial")
            raise RuntimeError
    assert target.read_text() == "complete\n"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_table_with_multiqc_header_round_trips(tmp_path):
    header = io.multiqc_header("x", "X", "desc", "table")
    path = io.write_table(pd.DataFrame({"Sample": ["a"], "v": [1.5]}), tmp_path / "x_mqc.tsv", header_lines=header)
    lines = path.read_text().splitlines()
    assert lines[0] == "# id: x" and "plot_type: table" in path.read_text()
    assert pd.read_csv(path, sep="\t", comment="#").to_dict("list") == {"Sample": ["a"], "v": [1.5]}


def test_errors_are_one_line_and_name_where():
    error = TmeflowInputError("bad\nthing", file="f.csv", sample="S1", column="data", row=3)
    assert str(error) == "bad thing [file f.csv, sample S1, row 3, column data]"


def test_gz_tables_are_gzipped(tmp_path):
    path = io.write_table(pd.DataFrame({"a": [1, 2]}), tmp_path / "t.tsv.gz")
    assert path.read_bytes()[:2] == b"\x1f\x8b"
    assert pd.read_csv(path, sep="\t")["a"].tolist() == [1, 2]


def test_outputs_get_normal_permissions(tmp_path):
    path = io.write_text("x", tmp_path / "a.txt")
    assert path.stat().st_mode & 0o044 == 0o044  # readable by group and others under the usual umask
