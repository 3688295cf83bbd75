"""tmeflow.readers: one known count matrix written in every supported format reads back identically;
bad inputs give one-line TmeflowInputErrors naming file and sample; the shared real data sets read
with their documented shapes.
"""

from __future__ import annotations

import gzip
import io
import json
import logging
from pathlib import Path

import anndata as ad
import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from PIL import Image
from scipy.io import mmwrite

from tmeflow.errors import TmeflowInputError
from tmeflow.readers import detect_format, read_counts, read_spatial

SAMPLE = "S1"
N_CELLS = 50
# 30 genes with real symbols: MT- genes and one duplicated symbol (TBCE, as in GRCh38)
GENES = [
    "ACTB",
    "GAPDH",
    "CD3E",
    "CD8A",
    "MS4A1",
    "CD14",
    "LYZ",
    "EPCAM",
    "KRT18",
    "KRT8",
    "PTPRC",
    "COL1A1",
    "DCN",
    "PECAM1",
    "VWF",
    "MKI67",
    "TOP2A",
    "ESR1",
    "ERBB2",
    "CD68",
    "MT-CO1",
    "MT-ND1",
    "MT-ATP6",
    "RPS6",
    "RPL13",
    "HBB",
    "MALAT1",
    "TBCE",
    "TBCE",
    "XIST",
]
UNIQUE_GENES = GENES[:28] + ["TBCE-1", "XIST"]
GENE_IDS = [f"ENSG{i:011d}" for i in range(1, len(GENES) + 1)]


def _make_counts() -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(7)
    counts = rng.negative_binomial(2, 0.4, size=(N_CELLS, len(GENES))) * (rng.random((N_CELLS, len(GENES))) < 0.4)
    counts[:, 0] += 1  # every cell has counts
    barcodes = ["".join(rng.choice(list("ACGT"), 16)) + "-1" for _ in range(N_CELLS)]
    return counts.astype(np.int64), barcodes


COUNTS, BARCODES = _make_counts()


@pytest.fixture
def tme_log(caplog):
    """Capture tmeflow's records even when a CLI test has turned propagation off."""
    logger = logging.getLogger("tmeflow")
    logger.addHandler(caplog.handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    yield caplog
    logger.removeHandler(caplog.handler)
    logger.setLevel(old_level)


def assert_same(adata: ad.AnnData, *, barcodes=BARCODES, genes=UNIQUE_GENES, counts=COUNTS) -> None:
    assert isinstance(adata.X, sp.csr_matrix)
    assert adata.X.dtype == np.float32
    assert list(adata.obs_names) == list(barcodes)
    assert list(adata.var_names) == list(genes)
    assert adata.var_names.is_unique
    np.testing.assert_array_equal(adata.X.toarray(), counts)


def assert_input_error(excinfo, path, sample=SAMPLE) -> str:
    text = str(excinfo.value)
    assert "\n" not in text
    assert str(path) in text
    assert f"sample {sample}" in text
    return text


# ---------------------------------------------------------------------------------------------
# Writers: the same matrix in every format
# ---------------------------------------------------------------------------------------------


def _write_h5_matrix(handle, name: str, matrix, barcodes):
    """The genes x barcodes CSC matrix of a Cell Ranger h5 (v2 genome group or v3 'matrix' group)."""
    csc = sp.csc_matrix(matrix)
    group = handle.create_group(name)
    group["barcodes"] = np.array(barcodes, dtype="S")
    group["data"] = csc.data.astype(np.int32)
    group["indices"] = csc.indices.astype(np.int64)
    group["indptr"] = csc.indptr.astype(np.int64)
    group["shape"] = np.array(csc.shape, dtype=np.int32)
    return group


def write_h5_v3(path: Path, *, counts=COUNTS, barcodes=BARCODES, extra_antibodies: bool = True) -> Path:
    """Cell Ranger 3+ feature-barcode h5 (genes x cells CSC), optionally with Antibody Capture rows."""
    ids, names, types = list(GENE_IDS), list(GENES), ["Gene Expression"] * len(GENES)
    matrix = counts.T
    if extra_antibodies:
        ids += ["CD3_TotalSeqB", "CD4_TotalSeqB"]
        names += ["CD3", "CD4"]
        types += ["Antibody Capture"] * 2
        matrix = np.vstack([matrix, np.full((2, counts.shape[0]), 5)])
    with h5py.File(path, "w") as handle:
        group = _write_h5_matrix(handle, "matrix", matrix, barcodes)
        features = group.create_group("features")
        features["id"] = np.array(ids, dtype="S")
        features["name"] = np.array(names, dtype="S")
        features["feature_type"] = np.array(types, dtype="S")
        features["genome"] = np.array(["GRCh38"] * len(ids), dtype="S")
        features["_all_tag_keys"] = np.array([b"genome"])
    return path


def write_h5_v2(path: Path) -> Path:
    with h5py.File(path, "w") as handle:
        group = _write_h5_matrix(handle, "GRCh38", COUNTS.T, BARCODES)
        group["genes"] = np.array(GENE_IDS, dtype="S")
        group["gene_names"] = np.array(GENES, dtype="S")
    return path


def _write_text(path: Path, text: str, gz: bool) -> None:
    if gz:
        with gzip.open(path, "wt") as handle:
            handle.write(text)
    else:
        path.write_text(text)


def write_mtx(
    folder: Path,
    *,
    version: int = 3,
    gz: bool = True,
    prefix: str = "",
    counts=COUNTS,
    barcodes=BARCODES,
    feature_lines=None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    suffix = ".gz" if gz else ""
    buffer = io.BytesIO()
    mmwrite(buffer, sp.coo_matrix(counts.T), field="integer")
    if gz:
        (folder / f"{prefix}matrix.mtx.gz").write_bytes(gzip.compress(buffer.getvalue()))
    else:
        (folder / f"{prefix}matrix.mtx").write_bytes(buffer.getvalue())
    _write_text(folder / f"{prefix}barcodes.tsv{suffix}", "".join(f"{b}\n" for b in barcodes), gz)
    if feature_lines is None:
        if version == 3:
            feature_lines = [f"{i}\t{g}\tGene Expression" for i, g in zip(GENE_IDS, GENES, strict=True)]
        else:
            feature_lines = [f"{i}\t{g}" for i, g in zip(GENE_IDS, GENES, strict=True)]
    name = "features.tsv" if version == 3 else "genes.tsv"
    _write_text(folder / f"{prefix}{name}{suffix}", "".join(f"{line}\n" for line in feature_lines), gz)
    return folder


def write_dense(
    path: Path,
    *,
    genes_in_rows: bool,
    sep: str,
    corner: str | None,
    comments: str = "",
    counts=COUNTS,
    cells=BARCODES,
    genes=GENES,
) -> Path:
    matrix = counts.T if genes_in_rows else counts
    rows, columns = (genes, cells) if genes_in_rows else (cells, genes)
    header = ([corner] if corner is not None else []) + list(columns)
    lines = [sep.join(header)] + [
        sep.join([r] + [str(v) for v in values]) for r, values in zip(rows, matrix, strict=True)
    ]
    _write_text(path, comments + "\n".join(lines) + "\n", path.name.endswith(".gz"))
    return path


def write_spaceranger(
    outs: Path,
    *,
    positions_version: int = 1,
    counts_as: str = "h5",
    barcodes=BARCODES,
    in_tissue=None,
    drop_positions: int = 0,
) -> Path:
    """Space Ranger outs/: counts, positions (with 2 extra spots lacking counts), scale factors, a PNG."""
    outs.mkdir(parents=True)
    if counts_as == "h5":
        write_h5_v3(outs / "filtered_feature_bc_matrix.h5", barcodes=barcodes)
    else:
        write_mtx(outs / "filtered_feature_bc_matrix", barcodes=barcodes)
    spatial = outs / "spatial"
    spatial.mkdir()
    all_barcodes = list(barcodes) + ["TTTTTTTTTTTTTTTT-1", "GGGGGGGGGGGGGGGG-1"]
    in_tissue = [1] * N_CELLS + [0, 0] if in_tissue is None else in_tissue
    table = pd.DataFrame(
        {
            "barcode": all_barcodes,
            "in_tissue": in_tissue,
            "array_row": [i // 10 for i in range(len(all_barcodes))],
            "array_col": [i % 10 for i in range(len(all_barcodes))],
            "pxl_row_in_fullres": [100.0 + 10 * (i // 10) for i in range(len(all_barcodes))],
            "pxl_col_in_fullres": [200.5 + 10 * (i % 10) for i in range(len(all_barcodes))],
        }
    ).iloc[drop_positions:]
    if positions_version == 1:
        table.to_csv(spatial / "tissue_positions_list.csv", header=False, index=False)
    else:
        table.to_csv(spatial / "tissue_positions.csv", header=True, index=False)
    (spatial / "scalefactors_json.json").write_text(
        json.dumps(
            {
                "tissue_hires_scalef": 0.2,
                "tissue_lowres_scalef": 0.05,
                "fiducial_diameter_fullres": 20.0,
                "spot_diameter_fullres": 8.0,
            }
        )
    )
    image = (np.arange(20 * 24 * 3) % 255).astype(np.uint8).reshape(20, 24, 3)
    Image.fromarray(image).save(spatial / "tissue_lowres_image.png")
    return outs


# ---------------------------------------------------------------------------------------------
# Every format gives the same matrix
# ---------------------------------------------------------------------------------------------


def test_h5_v3_multimodal_keeps_gene_expression_only(tmp_path):
    path = write_h5_v3(tmp_path / "filtered_feature_bc_matrix.h5")
    assert detect_format(path) == "10x_h5"
    adata = read_counts(path, sample=SAMPLE)
    assert_same(adata)
    assert list(adata.var["gene_ids"]) == GENE_IDS


def test_h5_v2_genome_group(tmp_path):
    path = write_h5_v2(tmp_path / "v2.h5")
    assert detect_format(path) == "10x_h5"
    adata = read_counts(path, sample=SAMPLE)
    assert_same(adata)
    assert list(adata.var["gene_ids"]) == GENE_IDS


@pytest.mark.parametrize(
    ("version", "gz", "prefix"), [(3, True, ""), (3, False, ""), (2, True, ""), (2, False, ""), (3, True, "GSM123_S1_")]
)
def test_mtx_folders(tmp_path, version, gz, prefix):
    folder = write_mtx(tmp_path / "mtx", version=version, gz=gz, prefix=prefix)
    assert detect_format(folder) == "10x_mtx"
    adata = read_counts(folder, sample=SAMPLE)
    assert_same(adata)
    assert list(adata.var["gene_ids"]) == GENE_IDS
    # the matrix file itself also works
    matrix_file = next(folder.glob("*matrix.mtx*"))
    assert detect_format(matrix_file) == "10x_mtx"
    assert_same(read_counts(matrix_file, sample=SAMPLE))


def test_mtx_in_filtered_feature_bc_matrix_subfolder(tmp_path):
    write_mtx(tmp_path / "run" / "filtered_feature_bc_matrix")
    assert detect_format(tmp_path / "run") == "10x_mtx"
    assert_same(read_counts(tmp_path / "run", sample=SAMPLE))


def test_mtx_symbol_in_both_columns_has_no_gene_ids(tmp_path):
    folder = write_mtx(tmp_path / "mtx", feature_lines=[f"{g}\t{g}\tGene Expression" for g in GENES])
    adata = read_counts(folder, sample=SAMPLE)
    assert_same(adata)
    assert "gene_ids" not in adata.var


def test_mtx_keeps_only_gene_expression_features(tmp_path):
    feature_lines = [f"{i}\t{g}\tGene Expression" for i, g in zip(GENE_IDS, GENES, strict=True)]
    feature_lines[-2:] = [f"{i}\t{g}\tAntibody Capture" for i, g in zip(GENE_IDS[-2:], GENES[-2:], strict=True)]
    adata = read_counts(write_mtx(tmp_path / "mtx", feature_lines=feature_lines), sample=SAMPLE)
    assert list(adata.var_names) == list(GENES[:-2])
    np.testing.assert_array_equal(adata.X.toarray(), COUNTS[:, :-2])


def test_mtx_ensembl_ids_only_are_kept_with_warning(tmp_path, tme_log):
    folder = write_mtx(tmp_path / "mtx", feature_lines=GENE_IDS)
    adata = read_counts(folder, sample=SAMPLE)
    assert_same(adata, genes=GENE_IDS)
    assert any(r.levelno == logging.WARNING and "Ensembl ids only" in r.getMessage() for r in tme_log.records)


def _h5ad(tmp_path, name, *, where: str) -> Path:
    counts = sp.csr_matrix(COUNTS.astype(np.float32))
    lognorm = sp.csr_matrix(np.log1p(COUNTS / COUNTS.sum(1, keepdims=True) * 1e4).astype(np.float32))
    obs = pd.DataFrame({"true_cell_type": ["T"] * 25 + ["B"] * 25}, index=BARCODES)
    var = pd.DataFrame(index=GENES)
    with pytest.warns(UserWarning):  # anndata warns about the duplicated symbol
        adata = ad.AnnData(X=counts if where == "X" else lognorm, obs=obs, var=var)
        if where == "layers":
            adata.layers["counts"] = counts
        elif where == "raw":
            adata.raw = ad.AnnData(X=counts, obs=obs, var=var)
    path = tmp_path / name
    adata.write_h5ad(path)
    return path


@pytest.mark.parametrize("where", ["X", "layers", "raw"])
def test_h5ad_counts_location_and_truth_columns(tmp_path, where):
    path = _h5ad(tmp_path, f"{where}.h5ad", where=where)
    assert detect_format(path) == "h5ad"
    adata = read_counts(path, sample=SAMPLE)
    assert_same(adata)
    assert list(adata.obs["true_cell_type"]) == ["T"] * 25 + ["B"] * 25


def test_h5ad_ensembl_names_with_symbol_column(tmp_path):
    adata = ad.AnnData(
        X=sp.csr_matrix(COUNTS.astype(np.float32)),
        obs=pd.DataFrame(index=BARCODES),
        var=pd.DataFrame({"gene_symbols": GENES}, index=GENE_IDS),
    )
    adata.write_h5ad(tmp_path / "ens.h5ad")
    result = read_counts(tmp_path / "ens.h5ad", sample=SAMPLE)
    assert_same(result)
    assert list(result.var["gene_ids"]) == GENE_IDS


def test_h5ad_log_normalised_without_counts_is_an_error(tmp_path):
    path = _h5ad(tmp_path, "lognorm.h5ad", where="none")
    with pytest.raises(TmeflowInputError, match="log-normalised") as excinfo:
        read_counts(path, sample=SAMPLE)
    assert_input_error(excinfo, path)


@pytest.mark.parametrize(
    ("name", "genes_in_rows", "sep", "corner"),
    [
        ("cells_by_genes.csv", False, ",", ""),  # empty corner cell, orientation from the labels
        ("cells_by_genes.tsv", False, "\t", "barcode"),
        ("genes_by_cells.tsv", True, "\t", None),  # inferCNV style: header without corner cell
        ("genes_by_cells.csv.gz", True, ",", "gene"),
        ("genes_by_cells.counts.matrix.gz", True, "\t", None),
        ("genes_by_cells_nocorner.txt", True, " ", None),
        ("cells_by_genes_nocorner.txt.gz", False, "\t", None),
    ],
)
def test_dense_tables_both_orientations(tmp_path, name, genes_in_rows, sep, corner):
    path = write_dense(tmp_path / name, genes_in_rows=genes_in_rows, sep=sep, corner=corner)
    assert detect_format(path) == "dense"
    adata = read_counts(path, sample=SAMPLE)
    assert_same(adata)
    assert "gene_ids" not in adata.var


def test_dense_r_write_table_quoted(tmp_path):
    """R write.table(quote=TRUE): quoted labels, header without corner cell."""
    for sep in ("\t", " "):
        path = tmp_path / f"quoted{len(sep)}.txt"
        lines = [sep.join(f'"{c}"' for c in BARCODES)]
        lines += [sep.join([f'"{g}"'] + [str(v) for v in row]) for g, row in zip(GENES, COUNTS.T, strict=True)]
        path.write_text("\n".join(lines) + "\n")
        assert_same(read_counts(path, sample=SAMPLE))


def test_dense_bd_rhapsody_with_comment_lines(tmp_path):
    comments = "##########\n## BD Targeted Multiplex Rhapsody Analysis Pipeline Version 1.11\n## Analysis Date: x\n"
    cells = [str(i + 1) for i in range(N_CELLS)]
    path = write_dense(
        tmp_path / "Sample_RSEC_MolsPerCell.csv",
        genes_in_rows=False,
        sep=",",
        corner="Cell_Index",
        comments=comments,
        cells=cells,
    )
    assert_same(read_counts(path, sample=SAMPLE), barcodes=cells)


@pytest.mark.filterwarnings("ignore:Observation names are not unique")
def test_dense_orientation_uses_gene_list(tmp_path, monkeypatch, tme_log):
    """Cell names that look like symbols (C1, C2...): the bundled gene list decides; without it, genes in rows."""
    import tmeflow.readers as readers
    import tmeflow.readers.dense  # noqa: F401  (the module that reads the patched names)

    cells = [f"C{i}" for i in range(N_CELLS)]
    path = write_dense(tmp_path / "ambiguous.csv", genes_in_rows=False, sep=",", corner="", cells=cells)
    monkeypatch.setattr(readers.dense, "_known_genes", lambda: frozenset(GENES))
    assert_same(read_counts(path, sample=SAMPLE), barcodes=cells)
    monkeypatch.setattr(readers.dense, "_known_genes", lambda: None)
    # the documented fallback (genes in rows), with a warning; here it makes the duplicated symbol
    # TBCE a duplicated barcode, which is an error naming file and sample
    with pytest.raises(TmeflowInputError, match="duplicated barcodes .first: TBCE"):
        read_counts(path, sample=SAMPLE)
    assert any("cannot tell whether genes are rows or columns" in r.getMessage() for r in tme_log.records)


def test_known_genes_list_when_bundled():
    import tmeflow.readers as readers
    import tmeflow.readers.dense  # noqa: F401  (the module that reads the patched names)

    known = readers._known_genes()
    if known is None:
        pytest.skip("resources/gene_positions is not bundled in this checkout")
    assert "ACTB" in known and "ENSG00000075624" in known and "MGH54_P16_F12" not in known


def test_dense_read_in_chunks(tmp_path, monkeypatch):
    import tmeflow.readers as readers
    import tmeflow.readers.dense  # noqa: F401  (the module that reads the patched names)

    monkeypatch.setattr(readers.dense, "_DENSE_CHUNK_VALUES", 7 * len(GENES))  # several chunks per file
    path = write_dense(tmp_path / "chunks.csv", genes_in_rows=False, sep=",", corner="cell")
    assert_same(read_counts(path, sample=SAMPLE))
    path = write_dense(tmp_path / "chunks.tsv", genes_in_rows=True, sep="\t", corner=None)
    assert_same(read_counts(path, sample=SAMPLE))


def test_non_integer_counts_warn_or_raise(tmp_path, tme_log):
    counts = COUNTS.astype(float)
    counts[0, 0] = 1.5
    path = write_dense(tmp_path / "frac.tsv", genes_in_rows=True, sep="\t", corner=None, counts=counts)
    adata = read_counts(path, sample=SAMPLE)
    assert adata.X[0, 0] == pytest.approx(1.5)
    assert any(r.levelno == logging.WARNING and "not integers" in r.getMessage() for r in tme_log.records)
    with pytest.raises(TmeflowInputError, match="not integers") as excinfo:
        read_counts(path, sample=SAMPLE, strict_counts=True)
    assert_input_error(excinfo, path)


# ---------------------------------------------------------------------------------------------
# Spatial
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("positions_version", "counts_as"), [(1, "h5"), (2, "mtx")])
def test_spaceranger_outs(tmp_path, positions_version, counts_as):
    outs = write_spaceranger(tmp_path / "outs", positions_version=positions_version, counts_as=counts_as)
    assert detect_format(outs) == "spaceranger"
    assert detect_format(tmp_path) == "spaceranger"  # the folder holding outs/
    adata = read_spatial(tmp_path, sample=SAMPLE)
    assert_same(adata)
    assert adata.obs["in_tissue"].dtype.kind == "i"
    assert (adata.obs["in_tissue"] == 1).all()  # the 2 positions without counts are dropped
    np.testing.assert_array_equal(adata.obs["array_row"], [i // 10 for i in range(N_CELLS)])
    np.testing.assert_array_equal(adata.obsm["spatial"][:, 0], [200.5 + 10 * (i % 10) for i in range(N_CELLS)])
    np.testing.assert_array_equal(adata.obsm["spatial"][:, 1], [100.0 + 10 * (i // 10) for i in range(N_CELLS)])
    entry = adata.uns["spatial"][SAMPLE]
    assert entry["scalefactors"]["tissue_lowres_scalef"] == 0.05
    assert entry["metadata"] == {}
    assert set(entry["images"]) == {"lowres"}
    expected = (np.arange(20 * 24 * 3) % 255).astype(np.uint8).reshape(20, 24, 3)
    np.testing.assert_array_equal(entry["images"]["lowres"], expected)
    # read_counts on the same folder gives the counts only
    assert_same(read_counts(outs, sample=SAMPLE))


def test_spaceranger_keeps_spots_outside_tissue(tmp_path):
    in_tissue = [1] * 10 + [0] * (N_CELLS - 10) + [1, 1]
    write_spaceranger(tmp_path / "outs", in_tissue=in_tissue)
    adata = read_spatial(tmp_path / "outs", sample=SAMPLE)
    assert adata.n_obs == N_CELLS
    assert int(adata.obs["in_tissue"].sum()) == 10


def test_spaceranger_barcodes_missing_from_positions(tmp_path):
    outs = write_spaceranger(tmp_path / "outs", drop_positions=3)
    with pytest.raises(TmeflowInputError) as excinfo:
        read_spatial(outs, sample=SAMPLE)
    text = assert_input_error(excinfo, outs / "spatial" / "tissue_positions_list.csv")
    assert "3 of 50" in text and BARCODES[0] in text


def test_spaceranger_no_spot_in_tissue(tmp_path):
    outs = write_spaceranger(tmp_path / "outs", positions_version=2, in_tissue=[0] * (N_CELLS + 2))
    with pytest.raises(TmeflowInputError, match="in tissue") as excinfo:
        read_spatial(outs, sample=SAMPLE)
    assert_input_error(excinfo, outs / "spatial" / "tissue_positions.csv")


def test_spatial_without_spatial_folder(tmp_path):
    write_h5_v3(tmp_path / "filtered_feature_bc_matrix.h5")
    with pytest.raises(TmeflowInputError, match="spatial/") as excinfo:
        read_spatial(tmp_path, sample=SAMPLE)
    assert_input_error(excinfo, tmp_path)


# ---------------------------------------------------------------------------------------------
# Bad inputs: one line, naming file and sample
# ---------------------------------------------------------------------------------------------


def test_missing_file(tmp_path):
    path = tmp_path / "nope.h5"
    for reader in (read_counts, read_spatial):
        with pytest.raises(TmeflowInputError, match="not found") as excinfo:
            reader(path, sample=SAMPLE)
        assert_input_error(excinfo, path)


@pytest.mark.parametrize(
    ("name", "content"),
    [
        ("data.bin", bytes(range(256)) * 4),
        ("notes.json", b'{"a": 1, "b": 2}\n'),
    ],
)
def test_unknown_format(tmp_path, name, content):
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(TmeflowInputError, match="unknown") as excinfo:
        detect_format(path)
    with pytest.raises(TmeflowInputError, match="unknown") as excinfo:
        read_counts(path, sample=SAMPLE)
    assert_input_error(excinfo, path)


def test_folder_without_counts(tmp_path):
    (tmp_path / "readme.txt").write_text("nothing here\n")
    with pytest.raises(TmeflowInputError, match="no count data") as excinfo:
        read_counts(tmp_path, sample=SAMPLE)
    assert_input_error(excinfo, tmp_path)


def test_corrupt_h5(tmp_path):
    good = write_h5_v3(tmp_path / "good.h5")
    for name, content in (("garbage.h5", b"not an hdf5 file at all\n" * 10), ("truncated.h5", good.read_bytes()[:600])):
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(TmeflowInputError) as excinfo:
            read_counts(path, sample=SAMPLE)
        assert_input_error(excinfo, path)


def test_hdf5_of_unknown_layout(tmp_path):
    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as handle:
        handle["values"] = np.arange(3)
    with pytest.raises(TmeflowInputError, match="neither") as excinfo:
        read_counts(path, sample=SAMPLE)
    assert_input_error(excinfo, path)


def test_empty_matrices(tmp_path):
    header_only = tmp_path / "header_only.csv"
    header_only.write_text("cell," + ",".join(GENES) + "\n")
    no_cells = write_mtx(tmp_path / "no_cells", counts=np.zeros((0, len(GENES)), dtype=int), barcodes=[])
    h5ad_path = tmp_path / "no_genes.h5ad"
    ad.AnnData(X=sp.csr_matrix((N_CELLS, 0), dtype=np.float32), obs=pd.DataFrame(index=BARCODES)).write_h5ad(h5ad_path)
    for path in (header_only, no_cells, h5ad_path):
        with pytest.raises(TmeflowInputError, match="empty matrix") as excinfo:
            read_counts(path, sample=SAMPLE)
        assert_input_error(excinfo, path)


def test_negative_counts(tmp_path):
    counts = COUNTS.copy()
    counts[3, 4] = -2
    path = write_dense(tmp_path / "neg.csv", genes_in_rows=False, sep=",", corner="cell", counts=counts)
    with pytest.raises(TmeflowInputError, match="negative") as excinfo:
        read_counts(path, sample=SAMPLE)
    assert_input_error(excinfo, path)


def test_all_zero_matrix(tmp_path):
    path = write_h5_v3(tmp_path / "zero.h5", counts=np.zeros_like(COUNTS), extra_antibodies=False)
    with pytest.raises(TmeflowInputError, match="all zero") as excinfo:
        read_counts(path, sample=SAMPLE)
    assert_input_error(excinfo, path)


def test_nan_and_non_numeric_values(tmp_path):
    text = "gene\tc1\tc2\nACTB\t1\t\nGAPDH\t2\t3\n"
    nan = tmp_path / "nan.tsv"
    nan.write_text(text)
    with pytest.raises(TmeflowInputError, match="NaN") as excinfo:
        read_counts(nan, sample=SAMPLE)
    assert_input_error(excinfo, nan)
    words = tmp_path / "words.tsv"
    words.write_text(text.replace("\t3", "\tthree"))
    with pytest.raises(TmeflowInputError, match="cannot parse") as excinfo:
        read_counts(words, sample=SAMPLE)
    assert_input_error(excinfo, words)


def test_mtx_with_mismatched_barcodes(tmp_path):
    folder = write_mtx(tmp_path / "mtx", gz=False)
    (folder / "barcodes.tsv").write_text("".join(f"{b}\n" for b in BARCODES[:-1]))
    with pytest.raises(TmeflowInputError, match="49 lines") as excinfo:
        read_counts(folder, sample=SAMPLE)
    assert_input_error(excinfo, folder / "barcodes.tsv")


# ---------------------------------------------------------------------------------------------
# Real data (../shared/data)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
@pytest.mark.shared_data
def test_infercnv_oligodendroglioma_dense(shared_data, tme_log):
    path = shared_data / "infercnv_oligodendroglioma" / "oligodendroglioma_expression_downsampled.counts.matrix.gz"
    assert detect_format(path) == "dense"
    adata = read_counts(path, sample="oligo")
    assert adata.shape == (184, 10338)
    assert adata.obs_names[0] == "MGH54_P16_F12"
    assert adata.var_names[0] == "A2M"
    assert any(r.levelno == logging.WARNING and "not integers" in r.getMessage() for r in tme_log.records)
    with pytest.raises(TmeflowInputError, match="not integers") as excinfo:
        read_counts(path, sample="oligo", strict_counts=True)
    assert_input_error(excinfo, path, sample="oligo")


@pytest.mark.slow
@pytest.mark.shared_data
def test_wu2021_mtx(shared_data, tme_log):
    adata = read_counts(shared_data / "wu2021_CID4465_scRNA", sample="CID4465")
    assert adata.shape == (1564, 29733)
    assert adata.var_names.is_unique
    assert adata.obs_names[0] == "CID4465_AAACGGGTCATCGATG"
    assert np.all(adata.X.data == np.round(adata.X.data))
    assert not any("not integers" in r.getMessage() for r in tme_log.records)


@pytest.mark.slow
@pytest.mark.shared_data
def test_msti_spatial_square_grid(shared_data):
    folder = shared_data / "msti_breast_DCIS_IC_spatial"
    assert detect_format(folder) == "spaceranger"
    adata = read_spatial(folder, sample="DCIS")
    assert adata.shape == (2172, 36601)
    assert adata.var_names.is_unique
    assert adata.var["gene_ids"].str.startswith("ENSG").all()
    assert adata.obsm["spatial"].shape == (2172, 2)
    assert int(adata.obs["in_tissue"].sum()) == 2172
    assert adata.obs["array_row"].between(1, 50).all() and adata.obs["array_col"].between(1, 50).all()
    entry = adata.uns["spatial"]["DCIS"]
    image = entry["images"]["lowres"]
    assert image.shape[:2] == (600, 600) and image.shape[2] in (3, 4)
    assert entry["scalefactors"]["tissue_lowres_scalef"] == 0.1
    # spots map inside the low-res image
    xy = adata.obsm["spatial"] * entry["scalefactors"]["tissue_lowres_scalef"]
    assert (xy >= 0).all() and (xy < 600).all()
