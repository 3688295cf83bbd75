"""tmeflow spatial_analysis on a simulated section (planted regions and the planted MDK -> NCL
interface interaction), with a pathologist annotation, bad annotations, and end to end on a real
breast-cancer section (MSTI DCIS) deconvolved with a real breast scRNA reference (Wu et al. 2021).
"""

from __future__ import annotations

import functools
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tiny
from test_deconvolve import nnls_output
from test_spatial_qc import section_dir, work_dir

from tmeflow.cli import main

ANALYSIS_ARGS = ["--spatial_n_perms", "100"]


@functools.cache
def analysis_output(cohort: Path) -> Path:
    deconvolved = nnls_output(cohort)
    outdir = work_dir(cohort, "spatial_analysis")
    assert main(["spatial_analysis", "--input", str(deconvolved), "--outdir", str(outdir), *ANALYSIS_ARGS]) == 0
    return outdir / deconvolved.name.replace(".deconvolved.h5ad", ".spatial_analysis.h5ad")


@pytest.fixture(scope="module")
def analysed(simulated_cohort) -> Path:
    return analysis_output(simulated_cohort)


def _truth(cohort: Path) -> pd.DataFrame:
    return pd.read_csv(section_dir(cohort) / "truth_spots.tsv", sep="\t", index_col=0)


@pytest.mark.slow
def test_derived_regions_match_planted(analysed, simulated_cohort):
    regions = pd.read_csv(
        analysed.parent / analysed.name.replace(".spatial_analysis.h5ad", ".regions.tsv"), sep="\t", index_col=0
    )
    truth = _truth(simulated_cohort).loc[regions.index, "true_region"]
    accuracy = float((regions["region"] == truth).mean())
    print(f"region accuracy {accuracy:.3f}\n{pd.crosstab(regions['region'], truth)}")
    assert accuracy >= 0.8
    assert set(regions["region"]) == {"tumour", "interface", "stroma"}
    # signed distance: negative inside tumour, positive outside
    assert (regions.loc[regions["region"] == "tumour", "signed_distance"] < 0).all()
    assert (regions.loc[regions["region"] != "tumour", "signed_distance"] > 0).all()


@pytest.mark.slow
def test_spot_cnv_map_finds_the_planted_tumour(analysed, simulated_cohort):
    """The spot-level CNV map (infercnvpy on spots, split stromal reference) agrees with the planted
    tumour region and with the deconvolved malignant proportion; planted stroma is rarely called.
    """
    import anndata as ad

    obs = ad.read_h5ad(analysed, backed="r").obs
    truth = _truth(simulated_cohort).loc[obs.index, "true_region"].to_numpy()
    called = obs["cnv_tumour"].to_numpy(dtype=bool)
    summary = pd.read_csv(
        analysed.parent / analysed.name.replace(".spatial_analysis.h5ad", ".spot_cnv.tsv"), sep="\t"
    ).iloc[0]
    accuracy = float(np.mean(called == (truth == "tumour")))
    stroma_called = float(called[truth == "stroma"].mean())
    print(
        f"spot CNV: accuracy vs planted tumour {accuracy:.3f}, planted stroma called {stroma_called:.3f}, "
        f"Spearman with malignant proportion {summary['spearman_cnv_vs_malignant_prop']:.2f}\n"
        f"{pd.crosstab(called, truth)}"
    )
    assert accuracy >= 0.85 and stroma_called <= 0.1
    assert summary["spearman_cnv_vs_malignant_prop"] > 0.5
    assert (analysed.parent / analysed.name.replace(".spatial_analysis.h5ad", ".spot_cnv.png")).stat().st_size > 0


@pytest.mark.slow
def test_planted_interface_interaction_detected(analysed):
    lr = pd.read_csv(analysed.parent / analysed.name.replace(".spatial_analysis.h5ad", ".lr_interface.tsv"), sep="\t")
    row = lr.set_index("interaction").loc["MDK^NCL"]
    print(
        f"MDK^NCL interface vs elsewhere: {row['mean_interface']:.3g} vs {row['mean_elsewhere']:.3g}, "
        f"FDR {row['fdr']:.3g}, rank {lr.index[lr['interaction'] == 'MDK^NCL'][0] + 1} of {len(lr)}"
    )
    # One 400-spot section, one contiguous interface: against a spatially constrained null (Moran spectral
    # randomisation) this is a handful of independent units, not 52 interface spots, so the planted pair is
    # the top pair (z 2.3, p 0.012, FDR 0.11) but cannot reach the FDR < 1e-3 a Mann-Whitney test over spots gave.
    assert lr.index[lr["interaction"] == "MDK^NCL"][0] == 0 and row["difference"] > 0
    assert row["z_msr"] > 2 and row["pval"] < 0.05


@pytest.mark.slow
def test_neighbourhoods_colocalisation_trajectory(analysed):
    import anndata as ad

    prefix = analysed.parent / analysed.name.removesuffix(".spatial_analysis.h5ad")
    nhood = pd.read_csv(f"{prefix}.nhood_enrichment_region.tsv", sep="\t", index_col=0)
    assert nhood.loc["tumour", "interface"] > 0 and nhood.loc["tumour", "stroma"] < 0  # interface rings the tumour
    coloc = pd.read_csv(f"{prefix}.colocalisation.tsv", sep="\t").set_index("cell_type")
    assert coloc.loc["fibroblast", "r_lagged_malignant"] < 0  # fibroblasts sit away from tumour cells (planted)
    correlation = pd.read_csv(f"{prefix}.trajectory_correlation.tsv", sep="\t").set_index("feature")
    assert correlation.loc["prop_malignant", "spearman_rho"] < -0.3
    assert correlation.loc["prop_fibroblast", "spearman_rho"] > 0.2
    assert {"score_EMT", "score_necroptosis", "score_immune"} <= set(correlation.index)
    bins = pd.read_csv(f"{prefix}.trajectory_bins.tsv", sep="\t")
    assert bins["n_spots"].sum() > 0 and bins["signed_distance_mid"].is_monotonic_increasing
    distance = pd.read_csv(f"{prefix}.distance_association.tsv", sep="\t")
    assert {"gene", "spearman_rho", "fdr"} <= set(distance.columns) and len(distance)
    assert Path(f"{prefix}.tls.tsv").is_file() and Path(f"{prefix}.trajectory_mqc.png").stat().st_size > 0
    adata = ad.read_h5ad(analysed)
    assert {"region", "signed_distance", "malignant_prop", "tls_id"} <= set(adata.obs.columns)


@pytest.mark.slow
def test_pathologist_annotation_used(simulated_cohort, tmp_path):
    section = section_dir(simulated_cohort)
    code = main(
        [
            "spatial_analysis",
            "--input",
            str(nnls_output(simulated_cohort)),
            "--outdir",
            str(tmp_path),
            "--region_annotation",
            str(section / "region_annotation.csv"),
            *ANALYSIS_ARGS,
        ]
    )
    assert code == 0
    regions = pd.read_csv(next(tmp_path.glob("*.regions.tsv")), sep="\t", index_col=0)
    truth = _truth(simulated_cohort).loc[regions.index, "true_region"]
    assert (regions["region"] == truth).all()


@pytest.mark.slow
def test_annotation_barcodes_not_matching_exit_2(simulated_cohort, tmp_path, capsys):
    table = pd.read_csv(section_dir(simulated_cohort) / "region_annotation.csv")
    table["barcode"] = "NOPE_" + table["barcode"].astype(str)
    table.to_csv(tmp_path / "regions.csv", index=False)
    code = main(
        [
            "spatial_analysis",
            "--input",
            str(nnls_output(simulated_cohort)),
            "--outdir",
            str(tmp_path / "o"),
            "--region_annotation",
            str(tmp_path / "regions.csv"),
            *ANALYSIS_ARGS,
        ]
    )
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tmeflow spatial_analysis: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert "region annotation" in errors[0]
    assert not (tmp_path / "o").exists() or not any((tmp_path / "o").glob("*.h5ad"))


# ------------------------------------------------------------------------------------------------
# Real data: MSTI DCIS/IC breast section + Wu 2021 CID4465 reference (NNLS)

REAL_PLOT_DIR = Path(tempfile.gettempdir()) / "tmeflow_spatial_real"


def _spot_darkness(adata, sample: str) -> np.ndarray:
    """Mean darkness (255 - mean RGB) of the low-res H&E under each spot: haematoxylin-dense epithelium is darker."""
    library = adata.uns["spatial"][sample]
    image = np.asarray(library["images"]["lowres"], dtype=float)[..., :3]
    scale = library["scalefactors"]["tissue_lowres_scalef"]
    radius = max(1, int(library["scalefactors"]["spot_diameter_fullres"] * scale / 2))
    darkness = []
    for x, y in np.round(adata.obsm["spatial"] * scale).astype(int):
        patch = image[max(0, y - radius) : y + radius + 1, max(0, x - radius) : x + radius + 1]
        darkness.append(255.0 - patch.mean())
    return np.asarray(darkness)


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_breast_section_end_to_end(shared_data):
    import anndata as ad
    import scanpy as sc
    from _cohort import MSTI_SAMPLE, msti_and_cid4465_reference

    out = REAL_PLOT_DIR
    section, reference = msti_and_cid4465_reference(shared_data, out)
    sample = MSTI_SAMPLE
    assert (
        main(
            [
                "deconvolve",
                "--input",
                str(section),
                "--reference",
                str(reference),
                "--outdir",
                str(out),
                "--deconvolution_method",
                "nnls",
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "spatial_analysis",
                "--input",
                str(out / f"{sample}.deconvolved.h5ad"),
                "--outdir",
                str(out),
                "--malignant_cell_types",
                "Cancer_Epithelial",
                *ANALYSIS_ARGS,
            ]
        )
        == 0
    )

    adata = ad.read_h5ad(out / f"{sample}.spatial_analysis.h5ad")
    assert adata.n_obs > 2000
    cancer = adata.obsm["deconvolution_proportions"]["Cancer Epithelial"].to_numpy()
    darkness = _spot_darkness(adata, sample)
    sc.tl.score_genes(
        adata,
        ["EPCAM", "KRT8", "KRT18", "KRT19", "CDH1", "KRT7", "ELF3", "CLDN4"],
        score_name="epithelial",
        random_state=0,
    )
    r_dark = float(np.corrcoef(cancer, darkness)[0, 1])
    r_epi = float(np.corrcoef(cancer, adata.obs["epithelial"])[0, 1])
    cnv_score = adata.obs["cnv_score_spot"].to_numpy()
    r_cnv_dark = float(np.corrcoef(cnv_score, darkness)[0, 1])
    r_cnv_epi = float(np.corrcoef(cnv_score, adata.obs["epithelial"])[0, 1])
    print(
        f"Cancer Epithelial proportion vs H&E darkness r={r_dark:.3f}, vs epithelial marker score r={r_epi:.3f}; "
        f"spot CNV score vs darkness r={r_cnv_dark:.3f}, vs epithelial score r={r_cnv_epi:.3f}, "
        f"{int(adata.obs['cnv_tumour'].sum())} of {adata.n_obs} spots CNV-high; plots in {out}"
    )
    assert r_dark > 0.1 and r_epi > 0.3
    assert r_cnv_epi > 0.3  # the CNV map, made without the deconvolution's reference, finds the same epithelium
    assert {"tumour", "stroma"} <= set(adata.obs["region"])
    for name in (
        "spatial_qc.png",
        "deconvolution_proportions.png",
        "regions.png",
        "lr_interface.tsv",
        "colocalisation.tsv",
        "spot_cnv.png",
        "spot_cnv.tsv",
    ):
        assert (out / f"{sample}.{name}").stat().st_size > 0


def _grid_graph(side: int):
    import scipy.sparse as sp

    idx = np.arange(side * side).reshape(side, side)
    pairs = np.vstack([np.c_[idx[:, :-1].ravel(), idx[:, 1:].ravel()], np.c_[idx[:-1].ravel(), idx[1:].ravel()]])
    graph = sp.coo_matrix((np.ones(len(pairs)), (pairs[:, 0], pairs[:, 1])), shape=(side * side,) * 2)
    return (graph + graph.T).tocsr()


def test_tls_absolute_thresholds_and_minimum_size():
    """A 20 x 20 section with scattered lymphocytes and chemokine noise but no aggregate reports no TLS
    (per-section quantiles called several); a planted 3 x 3 aggregate is one TLS of 9 spots; one lone
    spot above both thresholds is not a TLS.
    """
    from tmeflow.spatial_analysis import SpatialAnalysisSettings, detect_tls

    rng = np.random.default_rng(0)
    side = 20
    graph = _grid_graph(side)
    n = side * side
    score = pd.Series(rng.normal(0.0, 0.1, n))
    props = pd.DataFrame({"B": rng.uniform(0, 0.08, n), "T": rng.uniform(0, 0.1, n)})
    props["tumour"] = 1 - props.sum(axis=1)
    regions, distance = np.array(["stroma"] * n), np.zeros(n)
    settings = SpatialAnalysisSettings.defaults()
    thresholds = {
        "lymphoid_types": settings.lymphoid_types,
        "min_score": settings.tls_min_score,
        "min_lymphoid": settings.tls_min_lymphoid,
        "min_spots": settings.tls_min_spots,
    }
    labels, table = detect_tls(score, props, graph, regions, distance, **thresholds)
    assert table.empty and (labels == -1).all()
    aggregate = (np.arange(n).reshape(side, side)[5:8, 5:8]).ravel()
    lone = 15 * side + 15
    for spots in (aggregate, [lone]):
        score[spots] = 0.8
        props.loc[spots, ["B", "T"]] = 0.35
    labels, table = detect_tls(score, props, graph, regions, distance, **thresholds)
    assert len(table) == 1 and table.loc[0, "n_spots"] == 9
    assert set(np.flatnonzero(labels >= 0)) == set(aggregate) and labels[lone] == -1


def _smooth_field(rng, graph, n_passes: int = 4) -> np.ndarray:
    """Spatially autocorrelated noise: white noise averaged over first-ring neighbours ``n_passes`` times."""
    from tmeflow.spatial_qc import smooth

    values = rng.normal(size=graph.shape[0])
    for _ in range(n_passes):
        values = smooth(values, graph)
    return values


def test_spatial_nulls_are_calibrated():
    """40 null sections (20 x 20 spots; smooth, mutually independent patterns): co-localisation and interface
    tests reject at the nominal 5% (i.i.d. spot permutation and Mann-Whitney over spots rejected far more);
    a planted co-localisation and a planted interface interaction are found.
    """
    from tmeflow.spatial_analysis import colocalisation, interface_test, section_eigenvectors

    side = 20
    graph = _grid_graph(side)
    vectors = section_eigenvectors(graph)
    regions = np.full((side, side), "stroma", dtype=object)
    regions[:, :6] = "tumour"
    regions[:, 6:8] = "interface"
    regions = regions.ravel().astype(str)
    p_coloc, p_interface = [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        malignant = _smooth_field(rng, graph)
        props = pd.DataFrame({f"type{i}": _smooth_field(rng, graph) for i in range(5)})
        p_coloc += colocalisation(props, malignant, graph, [], vectors)["pval_msr"].tolist()
        scores = np.column_stack([_smooth_field(rng, graph) for _ in range(10)])
        p_interface += interface_test(scores, [f"L{i}^R{i}" for i in range(10)], regions, vectors, 0.05)[
            "pval"
        ].tolist()
    rate_coloc, rate_interface = np.mean(np.array(p_coloc) < 0.05), np.mean(np.array(p_interface) < 0.05)
    print(
        f"null rejection: co-localisation {rate_coloc:.3f} of {len(p_coloc)}, "
        f"interface {rate_interface:.3f} of {len(p_interface)}"
    )
    assert rate_coloc <= 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / len(p_coloc))
    assert rate_interface <= 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / len(p_interface))
    rng = np.random.default_rng(99)
    malignant = _smooth_field(rng, graph)
    props = pd.DataFrame({"near": malignant + 0.3 * _smooth_field(rng, graph), "far": _smooth_field(rng, graph)})
    coloc = colocalisation(props, malignant, graph, [], vectors).set_index("cell_type")
    assert coloc.loc["near", "fdr"] < 0.01 and coloc.loc["near", "r_lagged_malignant"] > 0.5
    scores = np.column_stack(
        [_smooth_field(rng, graph), _smooth_field(rng, graph) + 3 * np.std(scores) * (regions == "interface")]
    )
    table = interface_test(scores, ["A^B", "MDK^NCL"], regions, vectors, 0.05).set_index("interaction")
    assert table.loc["MDK^NCL", "interface_enriched"] and table.loc["MDK^NCL", "fdr"] < 1e-3
    assert not table.loc["A^B", "interface_enriched"]


def test_trajectory_and_distance_nulls_are_calibrated():
    """40 null sections (20 x 20 spots): smooth scores independent of a smooth tumour region's signed
    distance axis. The trajectory and distance correlations reject at <= 5% (Spearman's test over spots
    rejected far more: printed); a score planted to fall with the distance is found.
    """
    from scipy.stats import spearmanr

    from tmeflow.spatial_analysis import section_eigenvectors, signed_distance, trajectory
    from tmeflow.stats import msr_rank_correlation

    side = 20
    graph = _grid_graph(side)
    vectors = section_eigenvectors(graph)
    coords = np.array([(i, j) for i in range(side) for j in range(side)], dtype=float)
    p_msr, p_spots, p_distance = [], [], []
    for seed in range(40):
        rng = np.random.default_rng(seed)
        field = _smooth_field(rng, graph)
        tumour = field > np.quantile(field, 0.7)
        axis = signed_distance(coords, tumour, 1.0)
        scores = pd.DataFrame({f"s{i}": _smooth_field(rng, graph) for i in range(5)})
        props = pd.DataFrame({f"t{i}": _smooth_field(rng, graph) for i in range(5)})
        _, correlation = trajectory(axis, scores, props, 5, vectors)
        p_msr += correlation["pval"].tolist()
        p_spots += [spearmanr(axis, scores[c])[1] for c in scores]
        outside = ~tumour
        p_distance += [
            msr_rank_correlation(np.where(tumour, 0.0, axis), _smooth_field(rng, graph), vectors, outside)[2]
            for _ in range(5)
        ]
    limit = lambda p: 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / len(p))  # noqa: E731
    rates = [np.mean(np.array(p) < 0.05) for p in (p_msr, p_distance, p_spots)]
    print(
        f"null rejection at 5%: trajectory {rates[0]:.3f} of {len(p_msr)}, distance {rates[1]:.3f} of "
        f"{len(p_distance)}; Spearman over spots {rates[2]:.3f}"
    )
    assert rates[0] <= limit(p_msr) and rates[1] <= limit(p_distance)
    rng = np.random.default_rng(99)
    field = _smooth_field(rng, graph)
    tumour = field > np.quantile(field, 0.7)
    axis = signed_distance(coords, tumour, 1.0)
    noise = _smooth_field(rng, graph)
    planted = -axis / axis.std() + 0.5 * noise / noise.std()
    rho, z, p = msr_rank_correlation(axis, planted, vectors)
    # A smooth axis on 400 spots has few effective degrees of freedom: rho -0.9 is p ~ 0.002, not 1e-10.
    assert rho < -0.8 and p < 0.01


def _lr_section(genes: list[str], seed: int = 0):
    """A 15 x 15 square-grid section of log-normalised counts over ``genes``, interface in the middle rows."""
    import anndata as ad

    rng = np.random.default_rng(seed)
    rows, cols = np.divmod(np.arange(225), 15)
    adata = ad.AnnData(
        np.log1p(rng.poisson(2.0, size=(225, len(genes))).astype(np.float32)), var=pd.DataFrame(index=genes)
    )
    adata.obsm["spatial"] = np.column_stack([cols * 100.0, rows * 100.0])
    regions = np.where(np.abs(rows - 7) <= 1, "interface", np.where(rows < 7, "tumour", "stroma"))
    return adata, regions


@pytest.mark.slow
def test_spatial_lr_uses_the_species_resource_and_refuses_a_mismatch():
    """A mouse section is scored with liana's mouseconsensus (it crashed with the human resource); human
    genes against the mouse resource are one line naming the stage and species.
    """
    import liana as li

    from tmeflow.errors import TmeflowInputError
    from tmeflow.spatial_analysis import spatial_lr

    mouse = li.rs.select_resource("mouseconsensus")
    genes = sorted(
        {
            g
            for entry in mouse["ligand"].head(150).tolist() + mouse["receptor"].head(150).tolist()
            for g in entry.split("_")
        }
    )
    adata, regions = _lr_section(genes)
    table, lrdata = spatial_lr(adata, regions, species="mouse", min_prop=0.05)
    assert len(table) > 0 and lrdata.n_vars == len(table)
    assert set(table["ligand"]) <= set(genes)
    with pytest.raises(TmeflowInputError, match=r"spatial_analysis: only \d+ genes .*'consensus'.*species human"):
        spatial_lr(adata, regions, species="human", min_prop=0.05)


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_signed_distance_and_rings_on_a_chain_of_five_spots():
    from tmeflow.spatial_analysis import rings_graph, signed_distance

    coords = tiny.line(5, 100.0)
    tumour = np.array([True, True, False, False, False])
    # tumour spots: minus the distance to the nearest non-tumour spot (x=200): s0 -200/100 = -2, s1 -1;
    # others: distance to the nearest tumour spot (x=100): s2 1, s3 2, s4 3
    np.testing.assert_allclose(signed_distance(coords, tumour, 100.0), [-2.0, -1.0, 1.0, 2.0, 3.0])
    reach = rings_graph(tiny.chain_graph(5), 2).toarray().astype(bool)
    # within 2 steps on the chain, self excluded: s0 -> s1, s2; s2 -> s0, s1, s3, s4
    assert np.flatnonzero(reach[0]).tolist() == [1, 2]
    assert np.flatnonzero(reach[2]).tolist() == [0, 1, 3, 4]
    assert (reach == reach.T).all() and not reach.diagonal().any()
