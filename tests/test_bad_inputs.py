"""A corpus of bad inputs: each is one error line naming the file/sample/column, exit 2, nothing written.

Most cases go through ``tmeflow run``, whose input check (:mod:`tmeflow.validate`) opens every row
with the stages' own readers before any stage runs; a few go through a stage command. The cohort is a
tiny simulation, so the whole module runs in well under two minutes.
"""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tmeflow.cli import main

pytestmark = pytest.mark.slow  # every test here simulates a cohort (see docs/developing.md)

HEADER = "sample,patient,condition,tissue,species,batch,modality,data,clinical,region_annotation"
SC_ROW = "S1,P1,primary,t,human,b1,sc,{data},,"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    """A tiny cohort: 2 single-cell samples (h5ad), one Visium-like section, a 40-sample bulk cohort."""
    outdir = tmp_path_factory.mktemp("bad_inputs_cohort")
    assert (
        main(
            [
                "simulate",
                "--outdir",
                str(outdir),
                "--n_cells",
                "300",
                "--n_patients",
                "1",
                "--conditions",
                "normal,primary",
                "--n_genes",
                "1500",
                "--n_sections",
                "1",
                "--n_spots",
                "200",
                "--n_bulk",
                "40",
                "--seed",
                "5",
            ]
        )
        == 0
    )
    return outdir


@pytest.fixture(scope="module")
def good_sc(cohort) -> Path:
    return cohort / "sc" / "P1_primary.h5ad"


@pytest.fixture(scope="module")
def mtx_folder(cohort, good_sc, tmp_path_factory) -> Path:
    """The good sample as a 10x mtx folder (gzipped), to be copied and broken."""
    folder = tmp_path_factory.mktemp("mtx") / "good"
    folder.mkdir()
    adata = ad.read_h5ad(good_sc)
    _write_mtx(folder, sp.csr_matrix(adata.X), list(adata.obs_names), list(adata.var_names))
    return folder


def _write_mtx(folder: Path, matrix, barcodes, genes, ids=None) -> None:
    from scipy.io import mmwrite

    with gzip.open(folder / "matrix.mtx.gz", "wb") as handle:
        mmwrite(handle, sp.coo_matrix(matrix.T).astype(np.int64))
    with gzip.open(folder / "barcodes.tsv.gz", "wt") as handle:
        handle.write("".join(f"{b}\n" for b in barcodes))
    ids = ids or genes
    with gzip.open(folder / "features.tsv.gz", "wt") as handle:
        handle.write("".join(f"{i}\t{g}\tGene Expression\n" for i, g in zip(ids, genes, strict=True)))


def _sheet(tmp_path: Path, *rows: str) -> Path:
    sheet = tmp_path / "samplesheet.csv"
    sheet.write_text("\n".join([HEADER, *rows]) + "\n")
    return sheet


def _run(tmp_path: Path, sheet: Path | str, capsys, *extra: str) -> tuple[int, list[str], Path]:
    outdir = tmp_path / "results"
    code = main(["run", "--input", str(sheet), "--outdir", str(outdir), *extra])
    err = capsys.readouterr().err
    return code, err.splitlines(), outdir


def _one_error(code: int, lines: list[str], outdir: Path | None, *named: str) -> str:
    """Exit 2, exactly one error line (other stderr lines are timestamped log records), every ``named``
    text in it, no traceback, and no output folder.
    """
    assert code == 2, lines
    errors = [line for line in lines if ": error: " in line]
    assert len(errors) == 1, lines
    assert not [line for line in lines if "Traceback" in line or "Exception ignored" in line], lines
    strays = [line for line in lines if not (line.startswith("tmeflow ") or line[:2].isdigit())]
    assert not strays, strays
    for text in named:
        assert text in errors[0], (text, errors[0])
    if outdir is not None:
        assert not outdir.exists(), sorted(outdir.rglob("*"))
    return errors[0]


# ------------------------------------------------------------------------------------------------
# Samplesheets
# ------------------------------------------------------------------------------------------------

SHEETS = {
    "missing_column": (
        "sample,patient,condition,tissue,batch,modality,data\nS1,P1,primary,t,b1,sc,{good}\n",
        "species",
    ),
    "bad_modality": (HEADER + "\nS1,P1,primary,t,human,b1,rna,{good},,\n", "column modality"),
    "bad_species": (HEADER + "\nS1,P1,primary,t,dog,b1,sc,{good},,\n", "column species"),
    "duplicate_sample": (
        HEADER + "\nS1,P1,primary,t,human,b1,sc,{good},,\nS1,P1,normal,t,human,b1,sc,{good},,\n",
        "row 3, column sample",
    ),
    "missing_data": (HEADER + "\nS1,P1,primary,t,human,b1,sc,nope.h5ad,,\n", "row 2, column data"),
    "no_sc_rows": (HEADER + "\nB1,bulk,primary,t,human,b1,bulk,{expr},{clin},\n", "column modality"),
    "header_only": (HEADER + "\n", "no samples"),
    "empty_file": ("", "empty"),
    "missing_clinical_path": (
        HEADER + "\nS1,P1,primary,t,human,b1,sc,{good},,\nB1,bulk,primary,t,human,b1,bulk,{expr},nope.tsv,\n",
        "column clinical",
    ),
}


@pytest.mark.parametrize("case", sorted(SHEETS))
def test_bad_samplesheet(case, cohort, good_sc, tmp_path, capsys):
    text, named = SHEETS[case]
    sheet = tmp_path / "sheet.csv"
    sheet.write_text(
        text.format(good=good_sc, expr=cohort / "bulk" / "expression.tsv", clin=cohort / "bulk" / "clinical.tsv")
    )
    _one_error(*_run(tmp_path, sheet, capsys), named, "sheet.csv")


def test_missing_samplesheet(tmp_path, capsys):
    _one_error(*_run(tmp_path, tmp_path / "nope.csv", capsys), "samplesheet not found", "nope.csv")


# ------------------------------------------------------------------------------------------------
# Count matrices (one sc row; tmeflow run checks it before any stage)
# ------------------------------------------------------------------------------------------------


def _h5ad_variant(good_sc: Path, path: Path, change) -> Path:
    adata = ad.read_h5ad(good_sc)
    changed = change(adata)
    adata = adata if changed is None else changed
    adata.write_h5ad(path)
    return path


def _dense(adata) -> np.ndarray:
    return np.asarray(adata.X.todense() if sp.issparse(adata.X) else adata.X)


def _negative(adata):
    matrix = _dense(adata).copy()
    matrix[0, 0] = -3
    adata.X = matrix


def _nan(adata):
    matrix = _dense(adata).astype(float)
    matrix[1, 1] = np.nan
    adata.X = matrix


def _fraction(adata):
    adata.X = _dense(adata) * 0.5 + 0.25


def _duplicate_barcodes(adata):
    names = list(adata.obs_names)
    names[1] = names[0]
    adata.obs_names = names


def _mouse_genes(adata):
    adata.var_names = [
        name.replace("MT-", "mt-").capitalize() if name.startswith("MT-") else name for name in adata.var_names
    ]
    adata.var_names = [f"mt-{n[3:]}" if n.lower().startswith("mt-") else n for n in adata.var_names]


H5AD_CASES = {
    "negative": (_negative, "negative values"),
    "nan": (_nan, "NaN"),
    "all_zero": (lambda a: setattr(a, "X", sp.csr_matrix(a.shape, dtype=np.float32)), "all zero"),
    "duplicate_barcodes": (_duplicate_barcodes, "duplicated barcodes"),
    "wrong_species": (_mouse_genes, "column species"),
    "no_cells": (lambda a: a[:0].copy(), "empty matrix"),
}


@pytest.mark.parametrize("case", sorted(H5AD_CASES))
def test_bad_h5ad(case, good_sc, tmp_path, capsys):
    change, named = H5AD_CASES[case]
    data = _h5ad_variant(good_sc, tmp_path / "S1.h5ad", change)
    sheet = _sheet(tmp_path, SC_ROW.format(data=data))
    _one_error(*_run(tmp_path, sheet, capsys), named, "S1.h5ad", "sample S1")


def test_non_integer_counts_with_strict_counts(good_sc, tmp_path, capsys):
    data = _h5ad_variant(good_sc, tmp_path / "S1.h5ad", _fraction)
    sheet = _sheet(tmp_path, SC_ROW.format(data=data))
    _one_error(*_run(tmp_path, sheet, capsys, "--strict_counts", "true"), "not integers", "sample S1")


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


FILE_CASES = {
    "empty_h5ad": ("S1.h5ad", lambda p, good: p.write_bytes(b""), "S1.h5ad"),
    "truncated_h5ad": ("S1.h5ad", lambda p, good: (shutil.copy(good, p), _truncate(p)), "S1.h5ad"),
    "text_named_h5": ("S1.h5", lambda p, good: p.write_text("not hdf5\n"), "not an HDF5 file"),
    "json_file": ("S1.json", lambda p, good: p.write_text("{}"), "unknown count-data format"),
    "dense_non_numeric": ("S1.csv", lambda p, good: p.write_text("gene,c1,c2\nCD3E,1,x\nMT-CO1,2,3\n"), "S1.csv"),
    "dense_ragged": ("S1.tsv", lambda p, good: p.write_text("gene\tc1\tc2\nCD3E\t1\t2\t4\t5\nMT-CO1\t2\n"), "S1.tsv"),
    "empty_folder": ("S1", lambda p, good: p.mkdir(), "folder holds no count data"),
}


@pytest.mark.parametrize("case", sorted(FILE_CASES))
def test_bad_count_file(case, good_sc, tmp_path, capsys):
    name, make, named = FILE_CASES[case]
    path = tmp_path / name
    make(path, good_sc)
    sheet = _sheet(tmp_path, SC_ROW.format(data=path))
    _one_error(*_run(tmp_path, sheet, capsys), named, "sample S1")


def _mtx_case(mtx_folder: Path, tmp_path: Path, change) -> Path:
    folder = tmp_path / "S1_mtx"
    shutil.copytree(mtx_folder, folder)
    change(folder)
    return folder


def _lines_gz(path: Path, keep) -> None:
    with gzip.open(path, "rt") as handle:
        lines = handle.readlines()
    with gzip.open(path, "wt") as handle:
        handle.writelines(keep(lines))


MTX_CASES = {
    "missing_features": (lambda f: (f / "features.tsv.gz").unlink(), "features.tsv.gz"),
    "missing_barcodes": (lambda f: (f / "barcodes.tsv.gz").unlink(), "barcodes.tsv.gz"),
    "mtx_not_gzip": (lambda f: (f / "matrix.mtx.gz").write_bytes(b"this is not gzip at all\n" * 10), "matrix.mtx.gz"),
    "mtx_truncated": (lambda f: _truncate(f / "matrix.mtx.gz"), "matrix.mtx.gz"),
    "barcodes_short": (lambda f: _lines_gz(f / "barcodes.tsv.gz", lambda lines: lines[:-1]), "barcodes.tsv.gz"),
    "features_short": (lambda f: _lines_gz(f / "features.tsv.gz", lambda lines: lines[:-1]), "features.tsv.gz"),
    "duplicate_barcodes": (
        lambda f: _lines_gz(f / "barcodes.tsv.gz", lambda lines: [lines[0], *lines[:-1]]),
        "duplicated barcodes",
    ),
    "no_gene_expression": (
        lambda f: _lines_gz(
            f / "features.tsv.gz", lambda lines: [line.replace("Gene Expression", "Antibody Capture") for line in lines]
        ),
        "no 'Gene Expression' features",
    ),
}


@pytest.mark.parametrize("case", sorted(MTX_CASES))
def test_bad_mtx_folder(case, mtx_folder, tmp_path, capsys):
    change, named = MTX_CASES[case]
    folder = _mtx_case(mtx_folder, tmp_path, change)
    sheet = _sheet(tmp_path, SC_ROW.format(data=folder))
    _one_error(*_run(tmp_path, sheet, capsys), named, "sample S1")


@pytest.mark.parametrize("case", ["mtx_not_gzip", "mtx_truncated"])
def test_broken_gzip_in_a_subprocess_prints_one_line(case, mtx_folder, tmp_path):
    """The 'Exception ignored ... I/O operation on closed file' noise appears at interpreter exit,
    so only a real process shows it.
    """
    folder = _mtx_case(mtx_folder, tmp_path, MTX_CASES[case][0])
    outdir = tmp_path / "qc"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "tmeflow.cli",
            "qc",
            "--input",
            str(folder),
            "--sample",
            "S1",
            "--patient",
            "P1",
            "--condition",
            "primary",
            "--species",
            "human",
            "--outdir",
            str(outdir),
        ],
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(REPO / "src"), "PATH": "/usr/bin:/bin"},
    )
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "matrix.mtx.gz" in lines[0] and "sample S1" in lines[0], result.stderr
    assert not outdir.exists()


def test_ensembl_only_genes_are_named_by_symbol(mtx_folder, good_sc, tmp_path):
    """Ensembl ids without symbols: QC names them by symbol (bundled table) so % mito is computed."""
    from tmeflow.params import defaults
    from tmeflow.qc import run_qc
    from tmeflow.signatures import ensembl_symbol_table

    to_id = {symbol: gene_id for gene_id, symbol in ensembl_symbol_table().items() if gene_id.startswith("ENSG")}
    adata = ad.read_h5ad(good_sc)
    ids = [to_id.get(name, f"ENSG9{index:010d}") for index, name in enumerate(adata.var_names)]
    folder = tmp_path / "ids"
    folder.mkdir()
    _write_mtx(folder, sp.csr_matrix(adata.X), list(adata.obs_names), ids, ids)
    meta = {"sample": "S1", "patient": "P1", "condition": "primary", "tissue": "t", "species": "human", "batch": "b"}
    result = run_qc(folder, meta, tmp_path / "out", {**defaults(), "doublet_method": "none"})
    kept = ad.read_h5ad(result.h5ad)
    assert "MT-CO1" in kept.var_names and kept.var["gene_ids"].str.startswith("ENSG").all()
    assert result.stats["median_pct_mito"] > 0


def test_ensembl_ids_of_the_other_species_fail_clearly(mtx_folder, good_sc, tmp_path, capsys):
    adata = ad.read_h5ad(good_sc)
    ids = [f"ENSMUSG{index:011d}" for index in range(adata.n_vars)]
    folder = tmp_path / "ids"
    folder.mkdir()
    _write_mtx(folder, sp.csr_matrix(adata.X), list(adata.obs_names), ids, ids)
    sheet = _sheet(tmp_path, SC_ROW.format(data=folder))
    _one_error(*_run(tmp_path, sheet, capsys), "Ensembl ids", "% mito", "sample S1")


# ------------------------------------------------------------------------------------------------
# QC outcomes
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("drop", [False, True])
def test_every_cell_failing_qc_is_one_line_or_a_dropped_sample(drop, good_sc, tmp_path, capsys):
    outdir = tmp_path / "qc"
    code = main(
        [
            "qc",
            "--input",
            str(good_sc),
            "--sample",
            "S1",
            "--patient",
            "P1",
            "--condition",
            "primary",
            "--species",
            "human",
            "--outdir",
            str(outdir),
            "--min_genes",
            "100000",
            "--drop_failed_samples",
            str(drop).lower(),
        ]
    )
    lines = capsys.readouterr().err.splitlines()
    if drop:
        assert code == 0 and not (outdir / "S1.qc.h5ad").exists() and (outdir / "S1.qc_stats_mqc.tsv").exists()
        assert not [line for line in lines if "Traceback" in line]
    else:
        _one_error(code, lines, outdir, "only 0 of", "sample S1", "min_genes")


# ------------------------------------------------------------------------------------------------
# Spatial sections
# ------------------------------------------------------------------------------------------------


def _section(cohort: Path, tmp_path: Path, change) -> Path:
    section = tmp_path / "section"
    shutil.copytree(cohort / "spatial" / "P1_primary_visium1" / "outs", section)
    change(section)
    return section


def _positions(section: Path, edit) -> None:
    path = section / "spatial" / "tissue_positions.csv"
    table = pd.read_csv(path)
    edit(table).to_csv(path, index=False)


def _regions(section: Path) -> Path:
    path = section.parent / "regions.csv"
    path.write_text("barcode,region\nNOPE-1,tumour\nNOPE-2,stroma\n")
    return path


SPATIAL_CASES = {
    "no_spatial_folder": (lambda s: shutil.rmtree(s / "spatial"), "no spatial/ folder"),
    "no_positions": (lambda s: (s / "spatial" / "tissue_positions.csv").unlink(), "tissue_positions"),
    "nothing_in_tissue": (lambda s: _positions(s, lambda t: t.assign(in_tissue=0)), "in tissue"),
    "bad_scalefactors": (lambda s: (s / "spatial" / "scalefactors_json.json").write_text("{not json"), "scale factors"),
    "non_numeric_positions": (lambda s: _positions(s, lambda t: t.assign(array_row="x")), "non-numeric"),
    "no_counts": (
        lambda s: ((s / "filtered_feature_bc_matrix.h5").unlink(), shutil.rmtree(s / "filtered_feature_bc_matrix")),
        "filtered_feature_bc_matrix",
    ),
}


@pytest.mark.parametrize("case", sorted(SPATIAL_CASES))
def test_bad_spatial_section(case, cohort, good_sc, tmp_path, capsys):
    change, named = SPATIAL_CASES[case]
    section = _section(cohort, tmp_path, change)
    sheet = _sheet(tmp_path, SC_ROW.format(data=good_sc), f"V1,P1,primary,t,human,v,spatial,{section},,")
    _one_error(*_run(tmp_path, sheet, capsys), named, "sample V1")


def test_region_annotation_not_matching_the_section(cohort, good_sc, tmp_path, capsys):
    section = _section(cohort, tmp_path, lambda s: None)
    sheet = _sheet(
        tmp_path, SC_ROW.format(data=good_sc), f"V1,P1,primary,t,human,v,spatial,{section},,{_regions(section)}"
    )
    _one_error(*_run(tmp_path, sheet, capsys), "region annotation", "regions.csv", "sample V1")


# ------------------------------------------------------------------------------------------------
# Bulk cohorts
# ------------------------------------------------------------------------------------------------


def _bulk(cohort: Path, tmp_path: Path, clinical=None, expression=None) -> tuple[Path, Path]:
    clin = pd.read_csv(cohort / "bulk" / "clinical.tsv", sep="\t")
    expr = pd.read_csv(cohort / "bulk" / "expression.tsv", sep="\t")
    clin = clinical(clin) if clinical else clin
    expr = expression(expr) if expression else expr
    clin_path, expr_path = tmp_path / "clinical.tsv", tmp_path / "expression.tsv"
    clin.to_csv(clin_path, sep="\t", index=False)
    expr.to_csv(expr_path, sep="\t", index=False)
    return expr_path, clin_path


def _set(column, row, value):
    def edit(frame):
        frame = frame.copy()
        frame[column] = frame[column].astype(object)
        frame.loc[row, column] = value
        return frame

    return edit


BULK_CASES = {
    "event_coded_2": (dict(clinical=_set("os_event", 3, 2)), ("event value '2'", "column os_event", "clinical.tsv")),
    "negative_time": (dict(clinical=_set("os_time", 0, -5)), ("negative survival time", "column os_time")),
    "no_matching_samples": (
        dict(clinical=lambda c: c.assign(sample=[f"X{i}" for i in range(len(c))])),
        ("match", "expression.tsv"),
    ),
    "duplicate_clinical_sample": (dict(clinical=_set("sample", 1, "BULK0001")), ("more than once", "clinical.tsv")),
    "non_numeric_expression": (dict(expression=_set("BULK0002", 4, "high")), ("non-numeric", "expression.tsv")),
    "response_value": (
        dict(clinical=lambda c: c.assign(response=(["CR", "SD"] * len(c))[: len(c)]).pipe(_set("response", 2, "MR"))),
        ("response value 'MR'", "column response", "clinical.tsv"),
    ),
}


@pytest.mark.parametrize("case", sorted(BULK_CASES))
def test_bad_bulk_cohort(case, cohort, good_sc, tmp_path, capsys):
    edits, named = BULK_CASES[case]
    expr, clin = _bulk(cohort, tmp_path, **edits)
    sheet = _sheet(tmp_path, SC_ROW.format(data=good_sc), f"B1,bulk,primary,t,human,b,bulk,{expr},{clin},")
    line = _one_error(*_run(tmp_path, sheet, capsys), *named, "B1")
    assert "np." not in line


def test_maf_without_its_columns_fails_before_any_stage(cohort, good_sc, tmp_path, capsys):
    expr, clin = _bulk(cohort, tmp_path)
    maf = tmp_path / "mutations.maf"
    maf.write_text("Hugo_Symbol\tTumor_Sample_Barcode\nTP53\tBULK0001\n")
    sheet = _sheet(tmp_path, SC_ROW.format(data=good_sc), f"B1,bulk,primary,t,human,b,bulk,{expr},{clin},")
    _one_error(*_run(tmp_path, sheet, capsys, "--maf", str(maf)), "Variant_Classification", "mutations.maf")


def test_drug_response_without_a_value_column_fails_before_any_stage(cohort, good_sc, tmp_path, capsys):
    expr, clin = _bulk(cohort, tmp_path)
    response = tmp_path / "gdsc_response.tsv"
    response.write_text("CELL_LINE_NAME\tDRUG_NAME\tRMSE\nCL1\tx\t0.1\n")
    sheet = _sheet(tmp_path, SC_ROW.format(data=good_sc), f"B1,bulk,primary,t,human,b,bulk,{expr},{clin},")
    _one_error(
        *_run(tmp_path, sheet, capsys, "--drug_expression", str(expr), "--drug_response", str(response)),
        "no value column",
        "gdsc_response.tsv",
    )


def test_missing_covariate_column(cohort, good_sc, tmp_path, capsys):
    expr, clin = _bulk(cohort, tmp_path)
    sheet = _sheet(tmp_path, SC_ROW.format(data=good_sc), f"B1,bulk,primary,t,human,b,bulk,{expr},{clin},")
    _one_error(*_run(tmp_path, sheet, capsys, "--cox_covariates", "grade"), "grade", "clinical.tsv")


# ------------------------------------------------------------------------------------------------
# Parameters
# ------------------------------------------------------------------------------------------------


def test_wrong_type_on_the_command_line_is_one_line(good_sc, tmp_path, capsys):
    sheet = _sheet(tmp_path, SC_ROW.format(data=good_sc))
    with pytest.raises(SystemExit) as exit_info:
        main(["run", "--input", str(sheet), "--outdir", str(tmp_path / "results"), "--min_genes", "lots"])
    err = capsys.readouterr().err.strip().splitlines()
    assert exit_info.value.code == 2 and len(err) == 1, err
    assert "--min_genes" in err[0] and "'lots'" in err[0]
    assert not (tmp_path / "results").exists()


PARAMS_FILES = {
    "unknown_parameter": ("min_genez: 10\n", "min_genez"),
    "invalid_yaml": ("min_genes: [1,\n", "params.yaml"),
    "out_of_range": ("min_cells_per_sample: 0\n", "min_cells_per_sample"),
    "wrong_type": ("max_pct_mito: lots\n", "max_pct_mito"),
    "not_a_mapping": ("- a\n- b\n", "params.yaml"),
}


@pytest.mark.parametrize("case", sorted(PARAMS_FILES))
def test_bad_params_file(case, good_sc, tmp_path, capsys):
    text, named = PARAMS_FILES[case]
    (tmp_path / "params.yaml").write_text(text)
    sheet = _sheet(tmp_path, SC_ROW.format(data=good_sc))
    _one_error(*_run(tmp_path, sheet, capsys, "--params-file", str(tmp_path / "params.yaml")), named)


@pytest.mark.parametrize("option", ["--signatures", "--markers"])
def test_missing_user_file(option, good_sc, tmp_path, capsys):
    sheet = _sheet(tmp_path, SC_ROW.format(data=good_sc))
    _one_error(
        *_run(tmp_path, sheet, capsys, option, str(tmp_path / "nope.gmt")), f"{option[2:]} file not found", "nope.gmt"
    )


# ------------------------------------------------------------------------------------------------
# Everything at once, and fast
# ------------------------------------------------------------------------------------------------


def test_every_problem_of_every_row_is_reported_at_once_before_any_stage(cohort, good_sc, tmp_path, capsys):
    """Problems in several rows (the last one a bulk cohort) are listed together, one line each, in
    seconds, before anything is written.
    """
    bad_sc = _h5ad_variant(good_sc, tmp_path / "S2.h5ad", _negative)
    section = _section(cohort, tmp_path, lambda s: _positions(s, lambda t: t.assign(in_tissue=0)))
    expr, clin = _bulk(cohort, tmp_path, clinical=_set("os_event", 3, 2))
    sheet = _sheet(
        tmp_path,
        SC_ROW.format(data=good_sc),
        f"S2,P1,normal,t,human,b1,sc,{bad_sc},,",
        f"V1,P1,primary,t,human,v,spatial,{section},,",
        f"B1,bulk,primary,t,human,b,bulk,{expr},{clin},",
    )
    started = time.perf_counter()
    code, lines, outdir = _run(tmp_path, sheet, capsys)
    seconds = time.perf_counter() - started
    errors = [line for line in lines if ": error: " in line]
    print(f"3 problems in 4 rows reported in {seconds:.1f} s")
    assert code == 2 and len(errors) == 3, lines
    assert "sample S2" in errors[0] and "sample V1" in errors[1] and "sample B1" in errors[2]
    assert not outdir.exists() and seconds < 30


def test_scalefactors_json_written(cohort):  # sanity of the corpus itself: the good section is valid
    assert json.loads(
        (cohort / "spatial" / "P1_primary_visium1" / "outs" / "spatial" / "scalefactors_json.json").read_text()
    )
