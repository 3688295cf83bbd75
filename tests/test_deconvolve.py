"""tmeflow deconvolve: the CPU default (``auto`` -> ``poisson``) recovers the planted spot composition of
a simulated section with platform effects and a patient absent from the reference, at major and fine
level; NNLS recovers it on the default cohort; the marker-score baseline is written and flags types that
disagree; the cell2location path runs on the CPU (few epochs) and logs its progress; bad inputs exit 2.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from test_spatial_qc import section_dir, spatial_qc_output, work_dir

from tmeflow.cli import main

MAJOR_MIN_PROPORTION = 0.05  # "major" cell types: mean planted proportion over spots >= 5%


@functools.cache
def reference_h5ad(cohort: Path, cells_per_type: int | None = None) -> Path:
    """Concatenated simulated scRNA samples: ``cell_type`` = planted type, raw counts in ``layers['counts']``."""
    import anndata as ad

    parts = []
    for path in sorted((cohort / "sc").glob("*.h5ad")):
        part = ad.read_h5ad(path)
        part.obs["sample"] = path.stem
        parts.append(part)
    ref = ad.concat(parts, index_unique="-")
    ref.obs["cell_type"] = ref.obs["true_cell_type"].astype(str)
    if cells_per_type:
        rng = np.random.default_rng(0)
        keep = np.concatenate(
            [
                rng.permutation(np.flatnonzero(ref.obs["cell_type"].to_numpy() == t))[:cells_per_type]
                for t in ref.obs["cell_type"].unique()
            ]
        )
        ref = ref[np.sort(keep)].copy()
    ref.layers["counts"] = ref.X.copy()
    path = work_dir(cohort, f"reference_{cells_per_type or 'all'}") / "reference.h5ad"
    ref.write_h5ad(path)
    return path


@functools.cache
def nnls_output(cohort: Path) -> Path:
    """``tmeflow deconvolve --deconvolution_method nnls`` once per cohort; the deconvolved h5ad."""
    qc = spatial_qc_output(cohort)
    outdir = work_dir(cohort, "deconvolve_nnls")
    code = main(
        [
            "deconvolve",
            "--input",
            str(qc),
            "--reference",
            str(reference_h5ad(cohort)),
            "--outdir",
            str(outdir),
            "--deconvolution_method",
            "nnls",
        ]
    )
    assert code == 0
    return outdir / qc.name.replace(".spatial.h5ad", ".deconvolved.h5ad")


def pearson_per_type(proportions: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    truth = truth.loc[proportions.index]
    return pd.Series(
        {t: float(np.corrcoef(proportions[t], truth[f"true_prop_{t}"])[0, 1]) for t in proportions.columns}
    )


@pytest.mark.slow
def test_nnls_recovers_planted_proportions(simulated_cohort):
    import anndata as ad

    path = nnls_output(simulated_cohort)
    adata = ad.read_h5ad(path)
    truth = pd.read_csv(section_dir(simulated_cohort) / "truth_spots.tsv", sep="\t", index_col=0)
    proportions = adata.obsm["deconvolution_proportions"]
    assert np.allclose(proportions.sum(axis=1), 1.0)
    assert (adata.obsm["deconvolution_abundance"].to_numpy() >= 0).all()
    r = pearson_per_type(proportions, truth)
    major = [t for t in proportions.columns if truth[f"true_prop_{t}"].mean() >= MAJOR_MIN_PROPORTION]
    print("NNLS Pearson r per cell type:", r.round(3).to_dict())
    assert {"malignant", "fibroblast", "T", "myeloid", "endothelial"} <= set(major)
    assert (r[major] >= 0.8).all(), r[major]
    assert adata.obs["dominant_type"].isin(proportions.columns).all()
    assert "prop_malignant" in adata.obs and adata.uns["deconvolution"]["method"] == "nnls"
    # the marker-score baseline agrees with every major type of this section
    agreement = pd.read_csv(
        path.parent / f"{path.name.split('.')[0]}.deconvolution_agreement_mqc.tsv", sep="\t", index_col=0, comment="#"
    )
    agreement.index = agreement.index.str.split(": ").str[-1]
    assert agreement.loc[major, "agrees"].all(), agreement
    sample = path.name.split(".")[0]
    table = pd.read_csv(path.parent / f"{sample}.deconvolution_proportions.tsv", sep="\t", index_col=0)
    assert table.shape == proportions.shape
    for name in ("deconvolution_proportions.png", "deconvolution_dominant.png", "deconvolution_mqc.tsv"):
        assert (path.parent / f"{sample}.{name}").stat().st_size > 0


@pytest.mark.slow
def test_cell2location_runs_on_cpu(simulated_cohort, tmp_path, capsys):
    """The CPU path of cell2location with very few epochs: it runs, warns about the CPU and writes abundances."""
    import anndata as ad

    qc = spatial_qc_output(simulated_cohort)
    reference = reference_h5ad(simulated_cohort, cells_per_type=40)
    code = main(
        [
            "deconvolve",
            "--input",
            str(qc),
            "--reference",
            str(reference),
            "--outdir",
            str(tmp_path),
            "--deconvolution_method",
            "cell2location",
            "--c2l_ref_epochs",
            "2",
            "--c2l_epochs",
            "3",
            "--c2l_posterior_samples",
            "4",
            "--c2l_n_cells_per_spot",
            "10",
        ]
    )
    assert code == 0
    import torch

    err = capsys.readouterr().err
    if not torch.cuda.is_available():
        assert "no CUDA GPU available, training on CPU" in err
    sample = qc.name.split(".")[0]
    adata = ad.read_h5ad(tmp_path / f"{sample}.deconvolved.h5ad")
    abundance = adata.obsm["deconvolution_abundance"]
    assert abundance.shape[0] == adata.n_obs and "malignant" in abundance.columns
    assert np.isfinite(abundance.to_numpy()).all() and (abundance.to_numpy() >= 0).all()
    assert adata.uns["deconvolution"]["method"] == "cell2location"
    assert adata.uns["deconvolution"]["accelerator"] in ("cpu", "gpu")
    assert "cell2location spatial model: epoch 3/3" in err and "ETA" in err
    q05 = pd.read_csv(tmp_path / f"{sample}.deconvolution_abundance_q05.tsv", sep="\t", index_col=0)
    assert q05.shape == abundance.shape


# ------------------------------------------------------------------------------------------------
# The CPU default on sections that carry what real tissue has


@pytest.fixture(scope="module")
def realistic_cohort(tmp_path_factory) -> Path:
    """Platform effects (SD 0.7) between the scRNA samples and the section, whose patient is not in them."""
    outdir = tmp_path_factory.mktemp("realistic")
    assert (
        main(
            [
                "simulate",
                "--outdir",
                str(outdir),
                "--n_cells",
                "2400",
                "--n_patients",
                "2",
                "--n_genes",
                "3000",
                "--n_sections",
                "1",
                "--n_spots",
                "600",
                "--n_bulk",
                "0",
                "--seed",
                "3",
                "--spatial_platform_sd",
                "0.7",
                "--heldout_sections",
                "true",
            ]
        )
        == 0
    )
    return outdir


@pytest.mark.slow
def test_default_cpu_method_recovers_planted_proportions_under_platform_effects(realistic_cohort, tmp_path, capsys):
    import anndata as ad
    import torch

    truth_json = pd.read_json(realistic_cohort / "truth.json", typ="series")
    section = truth_json["spatial"]["sections"][0]
    assert section["patient"] not in {s["patient"] for s in truth_json["samples"]}  # held out of the reference
    assert truth_json["spatial"]["platform_sd"] == pytest.approx(0.7)
    qc = spatial_qc_output(realistic_cohort)
    reference = ad.read_h5ad(reference_h5ad(realistic_cohort))
    reference.obs["cell_type_fine"] = reference.obs["cell_type"]
    reference.obs["cell_type"] = reference.obs["true_compartment"].astype(str)
    reference.write_h5ad(tmp_path / "reference.h5ad")
    code = main(
        ["deconvolve", "--input", str(qc), "--reference", str(tmp_path / "reference.h5ad"), "--outdir", str(tmp_path)]
    )
    assert code == 0
    if not torch.cuda.is_available():
        assert "deconvolution_method auto: no CUDA GPU, using poisson" in capsys.readouterr().err
    sample = qc.name.split(".")[0]
    adata = ad.read_h5ad(tmp_path / f"{sample}.deconvolved.h5ad")
    assert adata.uns["deconvolution"]["method"] == "poisson"
    truth = pd.read_csv(section_dir(realistic_cohort) / "truth_spots.tsv", sep="\t", index_col=0)
    fine = pd.read_csv(tmp_path / f"{sample}.deconvolution_proportions_fine.tsv", sep="\t", index_col=0)
    assert np.allclose(fine.sum(axis=1), 1.0)
    r = pearson_per_type(fine, truth)
    major = [t for t in fine.columns if truth[f"true_prop_{t}"].mean() >= MAJOR_MIN_PROPORTION]
    print("poisson Pearson r per cell type (platform SD 0.7, held-out patient):", r.round(3).to_dict())
    assert {"malignant", "fibroblast", "T", "myeloid", "endothelial"} <= set(major)
    assert (r[major] >= 0.8).all(), r[major]
    # the major level (compartments) is the sum of its planted types
    compartments = reference.obs.groupby("cell_type_fine", observed=True)["cell_type"].first()
    planted = pd.DataFrame(
        {
            c: truth[[f"true_prop_{t}" for t in compartments.index[compartments == c]]].sum(axis=1)
            for c in compartments.unique()
        }
    )
    proportions = adata.obsm["deconvolution_proportions"]
    for compartment in proportions.columns:
        if planted[compartment].mean() >= MAJOR_MIN_PROPORTION:
            assert np.corrcoef(proportions[compartment], planted.loc[proportions.index, compartment])[0, 1] >= 0.8, (
                compartment
            )
    # the marker-score baseline is written per type; the tumour compartment agrees with its markers
    # (a mixed compartment such as "immune" need not: its top markers are those of one of its types)
    agreement = pd.read_csv(tmp_path / f"{sample}.deconvolution_agreement_mqc.tsv", sep="\t", index_col=0, comment="#")
    scores = pd.read_csv(tmp_path / f"{sample}.deconvolution_marker_scores.tsv", sep="\t", index_col=0)
    assert list(scores.columns) == list(proportions.columns) and len(scores) == adata.n_obs
    assert agreement.loc[f"{sample}: epithelial", "agrees"]


def test_marker_agreement_flags_a_type_that_disagrees(caplog):
    from tmeflow.deconvolve import marker_agreement

    rng = np.random.default_rng(0)
    scores = pd.DataFrame(rng.normal(size=(200, 2)), columns=["tumour", "stroma"])
    proportions = pd.DataFrame({"tumour": scores["tumour"].rank() / 200, "stroma": rng.uniform(size=200)})
    table = marker_agreement(proportions, scores, 0.3)
    assert table.loc["tumour", "agrees"] and table.loc["tumour", "spearman_vs_marker_score"] > 0.99
    assert not table.loc["stroma", "agrees"]
    assert "disagrees with the marker score" in caplog.text and "stroma" in caplog.text


def test_auto_method_is_cell2location_on_a_gpu_else_poisson(monkeypatch):
    from tmeflow import deconvolve

    monkeypatch.setattr(deconvolve, "cuda_available", lambda: True)
    assert deconvolve.resolve_method("auto") == "cell2location"
    monkeypatch.setattr(deconvolve, "cuda_available", lambda: False)
    assert deconvolve.resolve_method("auto") == "poisson"
    assert deconvolve.resolve_method("nnls") == "nnls"


def test_cuda_check_imports_torch_only_where_a_cuda_driver_loads():
    """``deconvolution_method auto`` on a machine without the CUDA driver: poisson, torch not imported."""
    import ctypes
    import subprocess
    import sys

    try:
        ctypes.CDLL("libcuda.so.1")
        pytest.skip("a CUDA driver is present")
    except OSError:
        pass
    code = (
        "import sys; from tmeflow import deconvolve; print(deconvolve.resolve_method('auto'), 'torch' in sys.modules)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["poisson", "False"]


def test_poisson_weights_and_platform_effects_recover_planted_values():
    from tmeflow.deconvolve import platform_effects, poisson_weights

    rng = np.random.default_rng(1)
    signatures = rng.gamma(0.5, 2.0, size=(400, 5))
    weights = rng.gamma(1.0, 1.0, size=(300, 5))
    gamma = rng.normal(0.0, 0.7, size=400)
    expected = weights @ (signatures * np.exp(gamma)[:, None]).T
    exact = poisson_weights(expected, signatures * np.exp(gamma)[:, None], max_iterations=5000, tolerance=1e-12)
    assert np.corrcoef(exact.ravel(), weights.ravel())[0, 1] > 0.99
    counts = rng.poisson(expected * 20)
    estimated, _ = platform_effects(counts.sum(axis=0).astype(float), signatures)
    assert np.corrcoef(estimated, gamma)[0, 1] > 0.9


# ------------------------------------------------------------------------------------------------
# Bad inputs: one line, exit 2, nothing written


def _expect_error(args: list[str], outdir: Path, capsys) -> str:
    code = main(["deconvolve", *args, "--outdir", str(outdir), "--deconvolution_method", "nnls"])
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("tmeflow deconvolve: error:")]
    assert code == 2 and len(errors) == 1 and "Traceback" not in err
    assert not any(outdir.glob("*.h5ad")) if outdir.exists() else True
    return errors[0]


@pytest.fixture()
def small_reference(simulated_cohort):
    import anndata as ad

    return ad.read_h5ad(reference_h5ad(simulated_cohort, cells_per_type=20))


@pytest.mark.slow
def test_reference_without_counts_exit_2(simulated_cohort, small_reference, tmp_path, capsys):
    import scanpy as sc

    ref = small_reference
    del ref.layers["counts"]
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    ref.write_h5ad(tmp_path / "ref.h5ad")
    message = _expect_error(
        ["--input", str(spatial_qc_output(simulated_cohort)), "--reference", str(tmp_path / "ref.h5ad")],
        tmp_path / "out",
        capsys,
    )
    assert "no raw counts" in message


@pytest.mark.slow
def test_too_few_shared_genes_exit_2(simulated_cohort, small_reference, tmp_path, capsys):
    ref = small_reference
    ref.var_names = [f"ENSG{i:011d}" for i in range(ref.n_vars)]  # another identifier type
    ref.write_h5ad(tmp_path / "ref.h5ad")
    message = _expect_error(
        ["--input", str(spatial_qc_output(simulated_cohort)), "--reference", str(tmp_path / "ref.h5ad")],
        tmp_path / "out",
        capsys,
    )
    assert "deconv_min_shared_genes" in message and "0 genes are shared" in message


@pytest.mark.slow
def test_reference_without_cell_type_exit_2(simulated_cohort, small_reference, tmp_path, capsys):
    ref = small_reference
    del ref.obs["cell_type"]
    ref.write_h5ad(tmp_path / "ref.h5ad")
    message = _expect_error(
        ["--input", str(spatial_qc_output(simulated_cohort)), "--reference", str(tmp_path / "ref.h5ad")],
        tmp_path / "out",
        capsys,
    )
    assert "cell_type" in message


@pytest.mark.slow
@pytest.mark.shared_data
def test_real_section_abundance_follows_the_histology(shared_data, tmp_path):
    """MSTI DCIS section with the CID4465 reference: the CPU default's epithelial abundance (cells per spot)
    separates the H&E's strongly stained epithelium from pale stroma better than the stage's own marker-score
    baseline does; proportions lose the spot's cellularity and separate them less well.
    """
    import anndata as ad
    from _cohort import MSTI_SAMPLE, msti_and_cid4465_reference
    from scipy.stats import spearmanr
    from sklearn.metrics import roc_auc_score

    from tmeflow.spatial_qc import stained_fraction

    section, reference = msti_and_cid4465_reference(shared_data, tmp_path)
    sample = MSTI_SAMPLE
    assert main(["deconvolve", "--input", str(section), "--reference", str(reference), "--outdir", str(tmp_path)]) == 0
    assert (tmp_path / f"{sample}.deconvolution_abundance.png").stat().st_size > 0
    adata = ad.read_h5ad(tmp_path / f"{sample}.deconvolved.h5ad")
    assert adata.uns["deconvolution"]["method"] == "poisson"
    stained = stained_fraction(adata, sample)
    epithelium, stroma = stained >= 0.3, stained <= 0.1  # strongly stained nests vs pale stroma
    assert epithelium.sum() > 300 and stroma.sum() > 300
    keep = epithelium | stroma
    abundance = adata.obsm["deconvolution_abundance"]
    proportions = adata.obsm["deconvolution_proportions"]
    maps = {
        "abundance Cancer Epithelial": abundance["Cancer Epithelial"],
        "abundance epithelial": abundance["Cancer Epithelial"] + abundance["Normal Epithelial"],
        "proportion Cancer Epithelial": proportions["Cancer Epithelial"],
        "marker score Cancer Epithelial": adata.obsm["deconvolution_marker_scores"]["Cancer Epithelial"],
    }
    auroc = {name: roc_auc_score(epithelium[keep], np.asarray(values)[keep]) for name, values in maps.items()}
    rho = {name: spearmanr(values, stained).statistic for name, values in maps.items()}
    print(
        "AUROC stained epithelium vs stroma:",
        {k: round(v, 3) for k, v in auroc.items()},
        "Spearman with stained fraction:",
        {k: round(v, 3) for k, v in rho.items()},
    )
    assert auroc["abundance Cancer Epithelial"] > auroc["marker score Cancer Epithelial"]
    assert auroc["abundance Cancer Epithelial"] > auroc["proportion Cancer Epithelial"]
    assert auroc["abundance epithelial"] >= 0.9 and rho["abundance epithelial"] >= 0.6


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_poisson_weights_recover_an_exact_two_type_three_gene_mixture():
    """Signatures (genes x types) A = (10, 0, 5), B = (0, 10, 5); spot 1 = 2 A + 3 B = (20, 30, 25),
    spot 2 = 1 A + 0 B = (10, 0, 5). Counts equal the rates exactly, the maximum of the Poisson likelihood,
    so the weights are (2, 3) and (1, 0).
    """
    from tmeflow.deconvolve import poisson_weights

    signatures = np.array([[10.0, 0.0], [0.0, 10.0], [5.0, 5.0]])
    counts = np.array([[20.0, 30.0, 25.0], [10.0, 0.0, 5.0]])
    weights = poisson_weights(counts, signatures, max_iterations=5000, tolerance=1e-12)
    np.testing.assert_allclose(weights, [[2.0, 3.0], [1.0, 0.0]], atol=1e-3)


def test_read_reference_reads_at_most_max_cells_per_label_from_disk(tmp_path, caplog):
    """Issue 23: a section's process reads the chosen reference cells' counts, not the whole atlas."""
    import anndata as ad
    import scipy.sparse as sp

    from tmeflow import io
    from tmeflow.deconvolve import read_reference

    rng = np.random.default_rng(5)
    coarse = np.repeat(["T", "T", "malignant"], [300, 40, 100])
    fine = np.repeat(["CD8", "Treg", "malignant"], [300, 40, 100])
    counts = sp.random(len(coarse), 30, density=0.3, format="csr", random_state=rng, dtype=np.float32)
    counts.data = np.ceil(counts.data * 10)
    atlas = ad.AnnData(
        counts.copy(),
        obs=pd.DataFrame({"cell_type": coarse, "cell_type_fine": fine}, index=[f"c{i}" for i in range(len(coarse))]),
        var=pd.DataFrame(index=[f"g{j}" for j in range(30)]),
    )
    atlas.X.data = np.log1p(atlas.X.data)  # log-normalised X; the counts are in the layer
    atlas.layers["counts"] = counts
    path = io.write_h5ad(atlas, tmp_path / "atlas.h5ad")
    with caplog.at_level("INFO", logger="tmeflow"):
        reference = read_reference(path, 50, seed=0)
    assert reference.obs["cell_type_fine"].value_counts().to_dict() == {"CD8": 50, "Treg": 40, "malignant": 50}
    assert reference.X is None and "reference: 140 of 440 cells read" in caplog.text
    rows = atlas.obs_names.get_indexer(reference.obs_names)
    assert np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(reference.layers["counts"].toarray(), counts[rows].toarray())
    assert read_reference(path, 0, seed=0).n_obs == 440
    assert np.array_equal(read_reference(path, 50, seed=0).obs_names, reference.obs_names)  # seeded


@pytest.mark.slow
def test_a_capped_reference_still_recovers_the_planted_proportions(realistic_cohort, tmp_path, capsys):
    """``deconv_max_cells_per_type``: signatures are per-type means, so 40 cells per type recover the section's
    planted composition as well as the whole reference (issue 23)."""
    import anndata as ad

    qc = spatial_qc_output(realistic_cohort)
    reference = reference_h5ad(realistic_cohort)
    truth = pd.read_csv(section_dir(realistic_cohort) / "truth_spots.tsv", sep="\t", index_col=0)
    r = {}
    for cap in ("0", "40"):
        outdir = tmp_path / cap
        args = ["--input", str(qc), "--reference", str(reference), "--outdir", str(outdir)]
        assert main(["deconvolve", *args, "--deconvolution_method", "poisson", "--deconv_max_cells_per_type", cap]) == 0
        log = capsys.readouterr().err
        assert ("at most 40 per cell type (deconv_max_cells_per_type)" in log) == (cap == "40")
        adata = ad.read_h5ad(next(outdir.glob("*.deconvolved.h5ad")))
        r[cap] = pearson_per_type(adata.obsm["deconvolution_proportions"], truth)
    major = [t for t in r["0"].index if truth[f"true_prop_{t}"].mean() >= MAJOR_MIN_PROPORTION]
    print(
        "Pearson r, whole reference / 40 cells per type:",
        r["0"][major].round(3).to_dict(),
        r["40"][major].round(3).to_dict(),
    )
    assert (r["40"][major] >= 0.8).all() and (r["40"][major] >= r["0"][major] - 0.05).all()
