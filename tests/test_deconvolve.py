"""tmeflow deconvolve: NNLS recovers the planted spot composition of a simulated section, the
cell2location path runs on the CPU (few epochs) and writes abundances, bad inputs exit 2."""

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
        keep = np.concatenate([rng.permutation(np.flatnonzero(ref.obs["cell_type"].to_numpy() == t))[:cells_per_type]
                               for t in ref.obs["cell_type"].unique()])
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
    code = main(["deconvolve", "--input", str(qc), "--reference", str(reference_h5ad(cohort)), "--outdir", str(outdir),
                 "--deconvolution_method", "nnls"])
    assert code == 0
    return outdir / qc.name.replace(".spatial.h5ad", ".deconvolved.h5ad")


def pearson_per_type(proportions: pd.DataFrame, truth: pd.DataFrame) -> pd.Series:
    truth = truth.loc[proportions.index]
    return pd.Series({t: float(np.corrcoef(proportions[t], truth[f"true_prop_{t}"])[0, 1]) for t in proportions.columns})


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
    sample = path.name.split(".")[0]
    table = pd.read_csv(path.parent / f"{sample}.deconvolution_proportions.tsv", sep="\t", index_col=0)
    assert table.shape == proportions.shape
    for name in ("deconvolution_proportions.png", "deconvolution_dominant.png", "deconvolution_mqc.tsv"):
        assert (path.parent / f"{sample}.{name}").stat().st_size > 0


def test_cell2location_runs_on_cpu(simulated_cohort, tmp_path, capsys):
    """The CPU path of cell2location with very few epochs: it runs, warns about the CPU and writes abundances."""
    import anndata as ad

    qc = spatial_qc_output(simulated_cohort)
    reference = reference_h5ad(simulated_cohort, cells_per_type=40)
    code = main(["deconvolve", "--input", str(qc), "--reference", str(reference), "--outdir", str(tmp_path),
                     "--deconvolution_method", "cell2location", "--c2l_ref_epochs", "2", "--c2l_epochs", "3",
                 "--c2l_posterior_samples", "4", "--c2l_n_cells_per_spot", "10"])
    assert code == 0
    import torch

    if not torch.cuda.is_available():
        assert "no CUDA GPU available, training on CPU" in capsys.readouterr().err
    sample = qc.name.split(".")[0]
    adata = ad.read_h5ad(tmp_path / f"{sample}.deconvolved.h5ad")
    abundance = adata.obsm["deconvolution_abundance"]
    assert abundance.shape[0] == adata.n_obs and "malignant" in abundance.columns
    assert np.isfinite(abundance.to_numpy()).all() and (abundance.to_numpy() >= 0).all()
    assert adata.uns["deconvolution"]["method"] == "cell2location"
    assert adata.uns["deconvolution"]["accelerator"] in ("cpu", "gpu")
    q05 = pd.read_csv(tmp_path / f"{sample}.deconvolution_abundance_q05.tsv", sep="\t", index_col=0)
    assert q05.shape == abundance.shape


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


def test_reference_without_counts_exit_2(simulated_cohort, small_reference, tmp_path, capsys):
    import scanpy as sc

    ref = small_reference
    del ref.layers["counts"]
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    ref.write_h5ad(tmp_path / "ref.h5ad")
    message = _expect_error(["--input", str(spatial_qc_output(simulated_cohort)), "--reference", str(tmp_path / "ref.h5ad")],
                            tmp_path / "out", capsys)
    assert "no raw counts" in message


def test_too_few_shared_genes_exit_2(simulated_cohort, small_reference, tmp_path, capsys):
    ref = small_reference
    ref.var_names = [f"ENSG{i:011d}" for i in range(ref.n_vars)]  # another identifier type
    ref.write_h5ad(tmp_path / "ref.h5ad")
    message = _expect_error(["--input", str(spatial_qc_output(simulated_cohort)), "--reference", str(tmp_path / "ref.h5ad")],
                            tmp_path / "out", capsys)
    assert "deconv_min_shared_genes" in message and "0 genes are shared" in message


def test_reference_without_cell_type_exit_2(simulated_cohort, small_reference, tmp_path, capsys):
    ref = small_reference
    del ref.obs["cell_type"]
    ref.write_h5ad(tmp_path / "ref.h5ad")
    message = _expect_error(["--input", str(spatial_qc_output(simulated_cohort)), "--reference", str(tmp_path / "ref.h5ad")],
                            tmp_path / "out", capsys)
    assert "cell_type" in message
