"""``tmeflow simulate``: the cohort is reproducible, well-formed, and carries the truth it claims."""

from __future__ import annotations

import gzip
import json
import math
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tmeflow import simulate
from tmeflow.cli import main
from tmeflow.errors import TmeflowInputError
from tmeflow.samplesheet import read_samplesheet

pytestmark = pytest.mark.slow  # every test here simulates a cohort (see docs/developing.md)

SMALL = [
    "--n_cells",
    "1500",
    "--n_spots",
    "600",
    "--n_bulk",
    "200",
    "--doublet_rate",
    "0.05",
    "--low_quality_rate",
    "0.05",
]


@pytest.fixture(scope="module")
def cohort(tmp_path_factory) -> Path:
    outdir = tmp_path_factory.mktemp("cohort")
    assert main(["simulate", "--outdir", str(outdir), "--seed", "1", *SMALL]) == 0
    return outdir


@pytest.fixture(scope="module")
def truth(cohort) -> dict:
    return json.loads((cohort / "truth.json").read_text())


@pytest.fixture(scope="module")
def cells(cohort) -> ad.AnnData:
    """All scRNA samples, with CPM in layers['cpm'] and QC metrics in obs."""
    adata = ad.concat(
        [ad.read_h5ad(path) for path in sorted((cohort / "sc").glob("*.h5ad"))], index_unique="-", merge="same"
    )
    totals = np.asarray(adata.X.sum(axis=1)).ravel()
    adata.obs["total"] = totals
    mito = adata.var_names.str.startswith("MT-")
    adata.obs["mito_fraction"] = np.asarray(adata.X[:, mito].sum(axis=1)).ravel() / totals
    adata.layers["cpm"] = sp.diags(1e6 / totals) @ adata.X
    return adata


def _good(adata: ad.AnnData) -> ad.AnnData:
    return adata[adata.obs["true_qc"] == "good"]


def _mean_cpm(adata: ad.AnnData, mask, genes=None) -> np.ndarray:
    sub = adata[np.asarray(mask)]
    if genes is not None:
        sub = sub[:, genes]
    return np.asarray(sub.layers["cpm"].mean(axis=0)).ravel()


def _small_config(outdir: Path, **overrides) -> simulate.SimConfig:
    settings = dict(outdir=outdir, n_cells=300, n_spots=100, n_bulk=20, n_genes=2500)
    return simulate.SimConfig(**{**settings, **overrides})


def _read_mtx_gz(path: Path) -> sp.csr_matrix:
    import scipy.io

    with gzip.open(path) as handle:
        return sp.csr_matrix(scipy.io.mmread(handle))


# ---------------------------------------------------------------------------------------------- form


def test_cli_writes_truth_and_samplesheet(cohort, truth):
    rows = read_samplesheet(cohort / "samplesheet.csv")  # validates against the schema and checks paths
    modalities = pd.Series([row.modality for row in rows]).value_counts().to_dict()
    assert modalities == {"sc": 9, "spatial": 1, "bulk": 1}
    assert all(row.data.exists() for row in rows)
    sheet = pd.read_csv(cohort / "samplesheet.csv").fillna("")
    assert not any(
        Path(value).is_absolute()
        for column in ("data", "clinical", "region_annotation")
        for value in sheet[column]
        if value
    )
    bulk = next(row for row in rows if row.modality == "bulk")
    assert bulk.clinical is not None and bulk.clinical.exists()
    for key in ("seed", "parameters", "markers", "cnv", "differential_abundance", "differential_expression",
                "pathway", "ligand_receptor", "trajectory", "bulk", "spatial"):  # fmt: skip
        assert key in truth
    assert truth["seed"] == 1
    assert len(truth["differential_expression"]["up"]) == len(truth["differential_expression"]["down"]) == 15
    assert {len(genes) for genes in (truth["trajectory"][k] for k in ("early", "fate_A", "fate_B"))} == {20}


def test_counts_are_nonnegative_integers(cells):
    data = cells.X.data
    assert cells.X.dtype == np.float32 and sp.issparse(cells.X)
    assert (data >= 0).all() and np.array_equal(data, np.round(data))
    assert 1000 < np.median(cells.obs.loc[cells.obs["true_qc"] == "good", "total"]) < 6000
    for column in (
        "true_cell_type",
        "true_malignant",
        "true_pseudotime",
        "true_fate",
        "true_qc",
        "sample",
        "patient",
        "condition",
        "batch",
    ):
        assert column in cells.obs
    assert cells.n_vars == 4000 and {"MT-CO1", "HBB", "RPL13", "MDK", "NCL"} <= set(cells.var_names)


def test_truth_cells_table_matches_h5ad(cohort, cells):
    table = pd.read_csv(cohort / "truth_cells.tsv.gz", sep="\t")
    assert len(table) == cells.n_obs
    assert (table.groupby("sample").size() == cells.obs.groupby("sample", observed=True).size()).all()
    assert table["true_cell_type"].value_counts().to_dict() == cells.obs["true_cell_type"].value_counts().to_dict()


def test_same_seed_same_data_other_seed_differs(tmp_path):
    paths = {}
    for name, seed in (("a", 0), ("b", 0), ("c", 5)):
        simulate.run_simulate(_small_config(tmp_path / name, seed=seed))
        paths[name] = tmp_path / name

    def single_cell(name):
        return ad.read_h5ad(paths[name] / "sc" / "P2_metastasis.h5ad")

    def spatial(name):
        return _read_mtx_gz(next((paths[name] / "spatial").glob("*/outs/filtered_feature_bc_matrix/matrix.mtx.gz")))

    def bulk(name):
        return pd.read_csv(paths[name] / "bulk" / "expression.tsv", sep="\t", index_col=0)

    a, b, c = single_cell("a"), single_cell("b"), single_cell("c")
    assert (a.X != b.X).nnz == 0 and a.obs.equals(b.obs)
    assert a.shape != c.shape or (a.X != c.X).nnz > 0
    assert (spatial("a") != spatial("b")).nnz == 0 and (spatial("a") != spatial("c")).nnz > 0
    assert bulk("a").equals(bulk("b")) and not bulk("a").equals(bulk("c"))


def test_output_format_does_not_change_the_counts(tmp_path):
    import h5py

    simulate.run_simulate(_small_config(tmp_path / "h5ad", n_sections=0, n_bulk=0))
    simulate.run_simulate(_small_config(tmp_path / "h5", n_sections=0, n_bulk=0, sc_format="h5"))
    streamed = ad.read_h5ad(tmp_path / "h5ad" / "sc" / "P3_primary.h5ad")
    with h5py.File(tmp_path / "h5" / "sc" / "P3_primary.h5") as handle:
        group = handle["matrix"]
        shape = tuple(group["shape"][()])[::-1]
        tenx = sp.csr_matrix((group["data"][()], group["indices"][()], group["indptr"][()]), shape=shape)
        barcodes = [b.decode() for b in group["barcodes"][()]]
    assert (streamed.X != tenx).nnz == 0 and barcodes == streamed.obs_names.tolist()


# ---------------------------------------------------------------------------------------------- planted truth


def test_markers_are_higher_in_their_cell_type(cells, truth):
    good = _good(cells)
    types = good.obs["true_cell_type"].astype(str)
    for cell_type, markers in truth["markers"].items():
        if cell_type == "malignant":
            continue
        own = types.isin(["epithelial", "malignant"]) if cell_type == "epithelial" else types == cell_type
        others = ~own & (types != ("malignant" if cell_type == "epithelial" else "-"))
        fold = (_mean_cpm(good, own, markers) + 1) / (_mean_cpm(good, others, markers) + 1)
        assert np.mean(fold > 2) >= 0.9, (cell_type, dict(zip(markers, fold.round(1), strict=True)))
        assert np.exp(np.mean(np.log(fold))) > 4, cell_type


def test_cnv_arms_shift_malignant_expression(cells, truth):
    good = _good(cells)
    types = good.obs["true_cell_type"].astype(str)
    reference = _mean_cpm(good, types == "epithelial")
    arms = good.var["chr_arm"].astype(str).to_numpy()
    for patient, events in truth["cnv"]["events"].items():
        malignant = _mean_cpm(good, (types == "malignant") & (good.obs["patient"] == patient))
        diff = np.log2(malignant + 1) - np.log2(reference + 1)
        expressed = (malignant + reference) > 20
        centre = np.median(diff[expressed])
        assert 3 <= len(events) <= 5 and {e["type"] for e in events} == {"gain", "loss"}
        for event in events:
            assert not event["arm"].startswith(("X", "Y"))
            shift = diff[(arms == event["arm"]) & expressed].mean() - centre
            if event["type"] == "gain":
                assert shift > 0.3, (patient, event, shift)
            else:
                assert shift < -0.4, (patient, event, shift)


def test_malignant_cells_only_in_tumour_samples(cells):
    normal = cells.obs["condition"] == "normal"
    assert not cells.obs.loc[normal, "true_malignant"].any()
    assert cells.obs.loc[~normal, "true_malignant"].mean() > 0.15
    assert (cells.obs["true_malignant"] == (cells.obs["true_cell_type"] == "malignant")).all()


def test_ligand_up_in_metastasis_malignant_and_receptor_in_fibroblasts(cells, truth):
    good = _good(cells)
    lr = truth["ligand_receptor"]
    types, condition = good.obs["true_cell_type"], good.obs["condition"]
    for cell_type, gene in ((lr["source"], lr["ligand"]), (lr["target"], lr["receptor"])):
        met = _mean_cpm(good, (types == cell_type) & (condition == "metastasis"), [gene])[0]
        primary = _mean_cpm(good, (types == cell_type) & (condition == "primary"), [gene])[0]
        assert met > 2.5 * primary, (gene, met, primary)


def test_differential_abundance_in_metastasis(cells, truth):
    da = truth["differential_abundance"]
    fraction = (
        (cells.obs["true_cell_type"] == da["cell_type"])
        .groupby([cells.obs["patient"], cells.obs["condition"]], observed=True)
        .mean()
        .unstack()
    )
    assert (fraction["metastasis"] > fraction["primary"]).all()
    assert fraction["metastasis"].mean() > 1.8 * fraction["primary"].mean()


def test_differential_expression_and_pathway(cells, truth):
    good = _good(cells)
    de = truth["differential_expression"]
    types, condition = good.obs["true_cell_type"], good.obs["condition"]
    in_type = types == de["cell_type"]

    def log2fc(mask_a, mask_b, genes):
        return np.log2(_mean_cpm(good, mask_a, genes) + 5) - np.log2(_mean_cpm(good, mask_b, genes) + 5)

    met, primary = in_type & (condition == "metastasis"), in_type & (condition == "primary")
    assert np.median(log2fc(met, primary, de["up"])) > 0.6
    assert np.median(log2fc(met, primary, de["down"])) < -0.6
    pathway = truth["pathway"]
    malignant = types == pathway["cell_type"]
    shift = log2fc(malignant & (condition == "metastasis"), malignant & (condition == "primary"), pathway["genes"])
    assert 0.25 < np.median(shift) < 1.0


def test_trajectory_programmes_follow_pseudotime(cells, truth):
    good = _good(cells)
    malignant = good[good.obs["true_malignant"].to_numpy()]
    obs = malignant.obs
    assert obs["true_pseudotime"].between(0, 1).all()
    assert (obs.loc[obs["true_pseudotime"] < truth["trajectory"]["branch_point"], "true_fate"] == "root").all()
    cpm = malignant.layers["cpm"]
    score = lambda genes: np.log1p(np.asarray(cpm[:, malignant.var_names.get_indexer(genes)].mean(axis=1)).ravel())  # noqa: E731
    t = obs["true_pseudotime"].to_numpy()
    assert np.corrcoef(score(truth["trajectory"]["early"]), t)[0, 1] < -0.5
    late = t > 0.7
    fate = obs["true_fate"].to_numpy()
    for name, other in (("A", "B"), ("B", "A")):
        genes = truth["trajectory"][f"fate_{name}"]
        assert score(genes)[late & (fate == name)].mean() > score(genes)[late & (fate == other)].mean() + 1.0
    branched = obs[obs["true_fate"].isin(["A", "B"])]
    share_a = (branched["true_fate"] == "A").groupby(branched["condition"], observed=True).mean()
    assert share_a["metastasis"] > 0.6 > 0.4 > share_a["primary"]


def test_qc_truth(cells):
    obs = cells.obs
    good = obs[obs["true_qc"] == "good"]
    doublets = obs[obs["true_qc"] == "doublet"]
    low = obs[obs["true_qc"] == "low_quality"]
    assert len(doublets) > 20 and len(low) > 20
    assert doublets["total"].median() > 1.4 * good["total"].median()
    assert (doublets["true_doublet_partner"].astype(str) != doublets["true_cell_type"].astype(str)).all()
    assert low["total"].max() < 700 and low["mito_fraction"].min() > 0.2
    assert low["mito_fraction"].median() > 0.3 > 0.1 > good["mito_fraction"].median()


# ---------------------------------------------------------------------------------------------- spatial and bulk


def test_spatial_section_is_spaceranger_like(cohort, truth):
    from PIL import Image

    section = truth["spatial"]["sections"][0]["sample"]
    outs = cohort / "spatial" / section / "outs"
    positions = pd.read_csv(outs / "spatial" / "tissue_positions.csv")
    assert list(positions.columns) == [
        "barcode",
        "in_tissue",
        "array_row",
        "array_col",
        "pxl_row_in_fullres",
        "pxl_col_in_fullres",
    ]
    assert len(positions) == 600
    assert ((positions["array_row"] + positions["array_col"]) % 2 == 0).all()  # Visium hexagonal offset
    matrix = _read_mtx_gz(outs / "filtered_feature_bc_matrix" / "matrix.mtx.gz")
    with gzip.open(outs / "filtered_feature_bc_matrix" / "barcodes.tsv.gz", "rt") as handle:
        barcodes = handle.read().split()
    assert matrix.shape == (4000, 600) and barcodes == positions["barcode"].tolist()
    assert (outs / "filtered_feature_bc_matrix.h5").is_file()  # what squidpy.read.visium reads by default
    scalefactors = json.loads((outs / "spatial" / "scalefactors_json.json").read_text())
    image = np.asarray(Image.open(outs / "spatial" / "tissue_lowres_image.png"))
    assert (
        image.ndim == 3
        and image.shape[0] >= positions["pxl_row_in_fullres"].max() * scalefactors["tissue_lowres_scalef"]
    )


def test_spatial_truth(cohort, truth):
    section = truth["spatial"]["sections"][0]["sample"]
    spots = pd.read_csv(cohort / "spatial" / section / "truth_spots.tsv", sep="\t")
    props = spots.filter(like="true_prop_")
    assert np.allclose(props.sum(axis=1), 1.0)
    assert spots["true_n_cells"].between(5, 15).all()
    assert set(spots["true_region"]) == {"tumour", "interface", "stroma"}
    malignant = spots.groupby("true_region")["true_prop_malignant"].mean()
    assert malignant.idxmax() == "tumour" and malignant["tumour"] > 0.5 > malignant["stroma"]
    # the planted interface interaction: MDK and NCL relative to the malignant and fibroblast content
    matrix = _read_mtx_gz(
        cohort / "spatial" / section / "outs" / "filtered_feature_bc_matrix" / "matrix.mtx.gz"
    ).T.tocsr()
    genes = pd.read_csv(
        cohort / "spatial" / section / "outs" / "filtered_feature_bc_matrix" / "features.tsv.gz", sep="\t", header=None
    )[1]
    mdk = np.asarray(matrix[:, genes.tolist().index("MDK")].todense()).ravel() / np.maximum(
        spots["true_n_malignant"], 1
    )
    with_tumour = spots["true_n_malignant"] > 0
    per_cell = pd.Series(mdk[with_tumour]).groupby(spots.loc[with_tumour, "true_region"].to_numpy()).mean()
    assert per_cell["interface"] > 1.8 * per_cell["tumour"]


def test_bulk_survival_recovers_beta(cohort, truth):
    from lifelines import CoxPHFitter

    expression = pd.read_csv(cohort / "bulk" / "expression.tsv", sep="\t", index_col=0)
    clinical = pd.read_csv(cohort / "bulk" / "clinical.tsv", sep="\t")
    assert expression.shape == (4000, 200) and list(expression.columns) == clinical["sample"].tolist()
    assert 0.25 < 1 - clinical["os_event"].mean() < 0.45
    z = simulate.signature_score(expression, truth["bulk"]["signature_genes"])
    frame = clinical[["os_time", "os_event"]].assign(z=z.to_numpy())
    fit = CoxPHFitter().fit(frame, duration_col="os_time", event_col="os_event")
    low, high = fit.confidence_intervals_.loc["z"]
    assert low < truth["bulk"]["beta"] < high and low > 0
    proportions = pd.read_csv(cohort / "bulk" / "true_proportions.tsv", sep="\t", index_col=0)
    assert np.allclose(proportions[list(truth["cell_types"])].sum(axis=1), 1.0)


# ---------------------------------------------------------------------------------------------- options


def test_mouse_and_10x_formats(tmp_path):
    import scanpy as sc

    simulate.run_simulate(_small_config(tmp_path / "mtx", species="mouse", sc_format="mtx", n_sections=0, n_bulk=0))
    adata = sc.read_10x_mtx(tmp_path / "mtx" / "sc" / "P1_primary")
    assert adata.var_names.str.startswith("mt-").sum() == 13 and {"Cd3e", "Epcam", "Mdk", "Hbb-bs"} <= set(
        adata.var_names
    )
    rows = read_samplesheet(tmp_path / "mtx" / "samplesheet.csv")
    assert {row.modality for row in rows} == {"sc"} and all(row.species == "mouse" for row in rows)
    truth = json.loads((tmp_path / "mtx" / "truth.json").read_text())
    assert all(not e["arm"].startswith("X") for events in truth["cnv"]["events"].values() for e in events)
    markers = {t: genes for t, genes in truth["markers"].items() if t != "malignant"}
    assert all(len(genes) >= 8 for genes in markers.values())
    assert sum(map(len, markers.values())) == len(set().union(*markers.values()))  # each marker in one cell type

    simulate.run_simulate(_small_config(tmp_path / "h5", sc_format="h5", n_sections=1, grid="square", n_bulk=0))
    h5 = sc.read_10x_h5(tmp_path / "h5" / "sc" / "P1_primary.h5")
    cells = pd.read_csv(tmp_path / "h5" / "truth_cells.tsv.gz", sep="\t")
    assert h5.n_obs == (cells["sample"] == "P1_primary").sum() and h5.n_vars == 2500
    positions = pd.read_csv(next((tmp_path / "h5" / "spatial").glob("*/outs/spatial/tissue_positions.csv")))
    assert len(positions) == 100 and positions["array_col"].max() < 15  # square grid: consecutive columns


def test_bad_options_exit_2(tmp_path, capsys):
    assert main(["simulate", "--outdir", str(tmp_path / "x"), "--n_genes", "100"]) == 2
    assert "--n_genes" in capsys.readouterr().err
    assert main(["simulate", "--outdir", str(tmp_path / "y"), "--doublet_rate", "0.7"]) == 2
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_small_gene_counts_hold_the_planted_cnvs_or_fail_in_one_line(tmp_path, capsys):
    """Issue 21: ``--n_genes 1300`` crashed in ``_draw_cnv_events`` (too few arms of 40 genes for 5 events).

    Below the minimum the user gets one line naming it; at the minimum every seed draws its CNV arms.
    """
    assert main(["simulate", "--outdir", str(tmp_path / "x"), "--n_genes", "1300", "--n_cells", "100"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line or "Traceback" in line]
    assert len(err) == 1 and "--n_genes must be at least 1322 for human" in err[0] and "got 1300" in err[0]
    assert not (tmp_path / "x").exists()
    genes = simulate.build_genes(_small_config(Path("unused"), n_genes=1322), np.random.default_rng(0))
    for seed in range(20):
        events = simulate._draw_cnv_events(genes, np.random.default_rng(seed))
        assert 3 <= len(events) <= 5 and len({e["arm"] for e in events}) == len(events)
    with pytest.raises(TmeflowInputError, match="at least 1322"):
        simulate.build_genes(_small_config(Path("unused"), n_genes=1321), np.random.default_rng(0))


def test_blocks_do_not_change_the_distribution(monkeypatch, tmp_path):
    """Generating in small blocks gives a cohort of the same shape (memory bound, not a different model)."""
    for module in (simulate.singlecell, simulate.spatial):  # the two modules that generate in blocks
        monkeypatch.setattr(module, "BLOCK_ELEMENTS", 2500 * 7)
    simulate.run_simulate(_small_config(tmp_path / "blocks", n_sections=1, n_bulk=0))
    adata = ad.read_h5ad(tmp_path / "blocks" / "sc" / "P1_normal.h5ad")
    assert math.isclose(np.median(np.asarray(adata.X.sum(axis=1))), 2500, rel_tol=0.4)


def test_spatial_realism_options_change_only_the_section(tmp_path):
    """Platform effects, a held-out patient and low depth touch the section and nothing else."""
    import anndata as ad

    base = [
        "--n_cells",
        "300",
        "--n_patients",
        "1",
        "--n_genes",
        "3000",
        "--n_sections",
        "1",
        "--n_spots",
        "100",
        "--n_bulk",
        "0",
        "--seed",
        "4",
    ]
    assert main(["simulate", "--outdir", str(tmp_path / "plain"), *base, "--spatial_platform_sd", "0"]) == 0
    assert (
        main(
            [
                "simulate",
                "--outdir",
                str(tmp_path / "real"),
                *base,
                "--spatial_platform_sd",
                "0.7",
                "--heldout_sections",
                "true",
                "--spot_umi_per_cell",
                "100",
            ]
        )
        == 0
    )
    for sample in (tmp_path / "plain" / "sc").glob("*.h5ad"):
        other = tmp_path / "real" / "sc" / sample.name
        assert (ad.read_h5ad(sample).X != ad.read_h5ad(other).X).nnz == 0
    truth = json.loads((tmp_path / "real" / "truth.json").read_text())
    assert truth["spatial"]["sections"][0]["patient"] == "P2" and truth["spatial"]["heldout_patients"]
    sheet = pd.read_csv(tmp_path / "real" / "samplesheet.csv")
    assert set(sheet.loc[sheet["modality"] == "spatial", "patient"]) == {"P2"}
    depth = {name: np.median(_section_totals(tmp_path / name)) for name in ("plain", "real")}
    assert depth["real"] < depth["plain"] / 4


def _section_totals(cohort):
    from tmeflow.readers import read_spatial

    section = next((cohort / "spatial").iterdir())
    return np.asarray(read_spatial(section / "outs", sample=section.name).X.sum(axis=1)).ravel()


def test_mouse_gene_model_holds_the_bundled_mouse_marker_tables():
    """Every bundled mouse major type and subtype has >= 3 of its markers in a simulated mouse cohort (so
    annotation and sub-clustering score them); the human gene list is drawn as before.
    """
    from tmeflow.annotate import MIN_GENES_PER_TYPE, bundled_markers, read_marker_table

    mouse = set(
        simulate.build_genes(
            _small_config(Path("unused"), species="mouse", n_genes=3000), np.random.default_rng(0)
        ).var.index
    )
    for kind, column in (("major", "cell_type"), ("subtypes", "cell_type_fine")):
        table = read_marker_table(bundled_markers(kind, "mouse"), type_column=column)
        covered = table[table["gene"].isin(mouse)].groupby(column).size()
        assert set(table[column]) == set(covered.index[covered >= MIN_GENES_PER_TYPE]), kind
    assert {"Prok2", "Camp", "Ltf"} <= mouse  # the study's neutrophil sub-cluster and trajectory-root genes
    assert simulate._marker_table_genes("human", mouse) == []  # human gene lists (and bytes) unchanged
