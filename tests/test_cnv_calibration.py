"""Calibration of the malignant call (issue 15 item 9).

Null cohorts (no malignant cell) must give CNV-high cells at most at the nominal rate
(``cnv_score_quantile`` 0.95 -> 5%), planted tumours are still found (tests/test_cnv.py keeps its
thresholds), and a cell's CNV profile does not depend on the cells it is processed with.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from tmeflow import cnv
from tmeflow.params import group_properties


def cnv_settings(**overrides):
    params = {name: spec.get("default") for name, spec in group_properties("cnv_options").items()}
    params.update(seed=0, cnv_window=51, cnv_step=5, cnv_min_gene_fraction=0.0)
    params.update(overrides)
    return cnv.CnvSettings.from_params(params)


def exchangeable_atlas(seed: int, n_genes: int = 1500, n_t: int = 25, n_normal: int = 120, n_candidates: int = 60):
    """One patient, a normal and a primary sample, no CNV anywhere: the candidates (epithelium of the
    primary sample) are drawn from exactly the distribution of the normal-tissue epithelium that is
    the reference; each sample has T cells. Log1p CP10k in X, counts in layers['counts'].
    """
    import anndata as ad

    rng = np.random.default_rng(seed)
    genes = cnv.bundled_positions("human")
    genes = np.sort(rng.choice(genes[~genes["chromosome"].isin(["X", "Y"])].index.to_numpy(), n_genes, replace=False))
    means = {"T": rng.lognormal(0.0, 1.0, n_genes), "epithelial": rng.lognormal(0.0, 1.0, n_genes)}
    rows = (
        [("T", "P1_normal", "normal")] * n_t
        + [("epithelial", "P1_normal", "normal")] * n_normal
        + [("T", "P1_primary", "primary")] * n_t
        + [("epithelial", "P1_primary", "primary")] * n_candidates
    )
    obs = pd.DataFrame(rows, columns=["cell_type", "sample", "condition"], index=[f"c{i}" for i in range(len(rows))])
    obs["compartment"] = np.where(obs["cell_type"] == "T", "immune", "epithelial")
    obs["patient"], obs["species"] = "P1", "human"
    counts = rng.poisson(np.vstack([means[t] for t in obs["cell_type"]]) * rng.lognormal(0, 0.2, (len(obs), 1))).astype(
        np.float32
    )
    adata = ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(counts * 1e4 / counts.sum(axis=1, keepdims=True)).astype(np.float32))
    return adata


@pytest.mark.slow
def test_exchangeable_normal_candidates_are_cnv_high_at_the_nominal_rate():
    """Candidates drawn like the reference cells are CNV-high at <= 5% (mean of 8 seeds; 1.7% now).
    This guards the design (held-out null, neighbourhood left out of both means): averaging
    correlations with means that contained the cell's neighbours gave 8-16% here during development.
    The old threshold (reference cells scored against the baseline they built, unsmoothed) was
    over-conservative in this clean case (0.2%) and anti-conservative on simulated cohorts (below).
    """
    rates = []
    for seed in range(8):
        adata = exchangeable_atlas(seed)
        settings = cnv_settings(seed=seed)
        cnv.prepare(adata, settings)
        cnv.call_malignant(adata, settings)
        candidates = adata.obs["cnv_candidate"].to_numpy(dtype=bool)
        assert candidates.sum() == 60
        rates.append(float(adata.obs["cnv_high"].to_numpy(dtype=bool)[candidates].mean()))
    print("CNV-high rate of exchangeable candidates per seed:", np.round(rates, 3), f"mean {np.mean(rates):.3f}")
    assert np.mean(rates) <= 0.05


@pytest.mark.slow
def test_simulated_normal_only_cohorts_reject_at_the_nominal_rate(tmp_path):
    """Simulated cohorts (3 patients x normal/primary/metastasis, two batches) with the malignant
    cells removed: the normal epithelium of the tumour samples is CNV-high at <= 5% and called
    malignant at <= 5% (mean of seeds 1-10: 3.2% and 0.8%; before 8.8% and 6.1%; 40 seeds in the
    CHANGELOG).
    """
    import anndata as ad
    import scanpy as sc

    from tmeflow.cli import main

    high, malignant = [], []
    for seed in range(1, 11):
        out = tmp_path / f"sim{seed}"
        assert (
            main(
                [
                    "simulate",
                    "--outdir",
                    str(out),
                    "--n_cells",
                    "3000",
                    "--n_patients",
                    "3",
                    "--seed",
                    str(seed),
                    "--n_bulk",
                    "0",
                    "--n_spots",
                    "50",
                ]
            )
            == 0
        )
        adata = ad.concat(
            [ad.read_h5ad(path) for path in sorted((out / "sc").glob("*.h5ad"))], index_unique="-", merge="same"
        )
        adata = adata[~adata.obs["true_malignant"].astype(bool).to_numpy()].copy()
        adata.obs["cell_type"] = adata.obs["true_cell_type"].astype(str)
        adata.obs["compartment"] = adata.obs["true_compartment"].astype(str)
        adata.layers["counts"] = adata.X.copy()
        sc.pp.normalize_total(adata, target_sum=1e4)
        sc.pp.log1p(adata)
        settings = cnv_settings(cnv_min_gene_fraction=0.02, cnv_arm_threshold=0.04)
        cnv.prepare(adata, settings)
        cnv.call_malignant(adata, settings)
        candidates = adata.obs["cnv_candidate"].to_numpy(dtype=bool)
        high.append(float(adata.obs["cnv_high"].to_numpy(dtype=bool)[candidates].mean()))
        malignant.append(float(adata.obs["malignant"].to_numpy(dtype=bool)[candidates].mean()))
    print(
        f"normal-only cohorts: CNV-high {np.mean(high):.3f}, malignant {np.mean(malignant):.3f} "
        f"(per seed {np.round(malignant, 3)})"
    )
    assert np.mean(high) <= 0.05
    assert np.mean(malignant) <= 0.05


def atlas_with_gain(seed: int = 0, n_genes: int = 1500, n_t: int = 60, n_normal: int = 60, n_tumour: int = 120):
    """T cells, normal epithelium and tumour epithelium with a 3x gain of chromosome 1, tumour cells
    first (so that chunks of cells differ in their CNV spread). Log1p CP10k in X, counts in layers.
    """
    import anndata as ad

    rng = np.random.default_rng(seed)
    positions = cnv.bundled_positions("human")
    positions = positions[~positions["chromosome"].isin(["X", "Y"])]
    genes = np.sort(rng.choice(positions.index.to_numpy(), n_genes, replace=False))
    means = rng.lognormal(0.0, 1.0, n_genes)
    gain = np.where(positions.loc[genes, "chromosome"].astype(str).to_numpy() == "1", 3.0, 1.0)
    types = ["epithelial"] * (n_tumour + n_normal) + ["T"] * n_t
    mu = np.vstack([means * gain] * n_tumour + [means] * (n_normal + n_t))
    obs = pd.DataFrame(
        {
            "cell_type": types,
            "compartment": ["epithelial" if t != "T" else "immune" for t in types],
            "patient": "P1",
            "sample": "P1",
            "species": "human",
        },
        index=[f"c{i}" for i in range(len(types))],
    )
    counts = rng.poisson(mu).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = adata.X.copy()
    total = counts.sum(axis=1, keepdims=True)
    adata.X = sp.csr_matrix(np.log1p(counts * 1e4 / total).astype(np.float32))
    return adata


@pytest.mark.slow
def test_cnv_profile_does_not_depend_on_chunking(monkeypatch):
    """The same cells give the same CNV rows in one chunk or in chunks of 40 cells (before: the noise
    filter used each chunk's SD, so the tumour-only first chunk zeroed more of its cells' signal).
    """
    adata = atlas_with_gain()
    settings = cnv_settings()
    cnv.prepare(adata, settings)
    whole = adata.copy()
    cnv.call_malignant(whole, settings)
    import infercnvpy

    original = infercnvpy.tl.infercnv
    monkeypatch.setattr(
        infercnvpy.tl, "infercnv", lambda *args, **kwargs: original(*args, **{**kwargs, "chunksize": 40})
    )
    if hasattr(cnv.infer, "chunk_cells"):
        monkeypatch.setattr(cnv.infer, "chunk_cells", lambda n_genes: 40)
    chunked = adata.copy()
    cnv.call_malignant(chunked, settings)
    a, b = whole.obsm["X_cnv"].toarray(), chunked.obsm["X_cnv"].toarray()
    assert np.count_nonzero(a) > 0.05 * a.size
    np.testing.assert_allclose(a, b, atol=1e-5)


def immune_reference_atlas(
    seed: int,
    n_genes: int = 1500,
    n_t: int = 40,
    n_epithelial: int = 80,
    n_patients: int = 4,
    gain_patient: str | None = None,
):
    """Patients with T cells and epithelium, no normal-tissue sample (the reference is the T cells only).
    Epithelium has its own expression programme (gene means differ from T cells'), shared by every
    patient; each patient has its own mild expression shifts. ``gain_patient``: that patient's epithelium
    carries a 2x gain of chromosome 1 (its tumour). Log1p CP10k in X, counts in layers['counts'].
    """
    import anndata as ad

    rng = np.random.default_rng(seed)
    positions = cnv.bundled_positions("human")
    positions = positions[~positions["chromosome"].isin(["X", "Y"])]
    genes = np.sort(rng.choice(positions.index.to_numpy(), n_genes, replace=False))
    t_means = rng.lognormal(0.0, 1.0, n_genes)
    epithelial_means = t_means * rng.lognormal(0.0, 1.0, n_genes)  # the epithelial programme
    chr1 = positions.loc[genes, "chromosome"].astype(str).to_numpy() == "1"
    rows, mu = [], []
    for p in range(n_patients):
        patient = f"P{p + 1}"
        shift = rng.lognormal(0.0, 0.1, n_genes)  # the patient's own expression differences
        gain = np.where(chr1, 2.0, 1.0) if patient == gain_patient else 1.0
        rows += [("T", patient)] * n_t + [("epithelial", patient)] * n_epithelial
        mu += [t_means * shift] * n_t + [epithelial_means * shift * gain] * n_epithelial
    obs = pd.DataFrame(rows, columns=["cell_type", "patient"], index=[f"c{i}" for i in range(len(rows))])
    obs["compartment"] = np.where(obs["cell_type"] == "T", "immune", "epithelial")
    obs["sample"], obs["condition"], obs["species"] = obs["patient"], "primary", "human"
    counts = rng.poisson(np.vstack(mu) * rng.lognormal(0, 0.2, (len(obs), 1))).astype(np.float32)
    adata = ad.AnnData(sp.csr_matrix(counts), obs=obs, var=pd.DataFrame(index=genes))
    adata.layers["counts"] = adata.X.copy()
    adata.X = sp.csr_matrix(np.log1p(counts * 1e4 / counts.sum(axis=1, keepdims=True)).astype(np.float32))
    return adata


def test_immune_only_reference_normal_epithelium_is_not_malignant():
    """Immune-only reference (no normal-tissue sample): the epithelial expression programme is shared by
    every patient, so it is the candidates' cross-patient consensus, not a CNV. Patient P2's epithelium
    carries a chromosome-1 gain (its tumour): it is called malignant with a 1q gain, while the normal
    epithelium of the 3 other patients is CNV-high at <= 10% and never malignant (now 0% and 0%; before
    the consensus: 53% CNV-high and 51% malignant here, 46% and 46% on simulated normal-only cohorts).
    """
    adata = immune_reference_atlas(0, gain_patient="P2")
    settings = cnv_settings(cnv_normal_conditions="")
    cnv.prepare(adata, settings)
    result = cnv.call_malignant(adata, settings)
    obs = adata.obs
    candidates, tumour = obs["cnv_candidate"].to_numpy(dtype=bool), (obs["patient"] == "P2").to_numpy()
    high, malignant = obs["cnv_high"].to_numpy(dtype=bool), obs["malignant"].to_numpy(dtype=bool)
    normal = candidates & ~tumour
    print(
        f"normal epithelium CNV-high {high[normal].mean():.3f}, malignant {malignant[normal].mean():.3f}; "
        f"tumour malignant {malignant[candidates & tumour].mean():.3f}"
    )
    assert high[normal].mean() <= 0.10 and malignant[normal].mean() == 0
    assert malignant[candidates & tumour].mean() >= 0.9
    calls = result.arms[(result.arms["patient"] == "P2") & (result.arms["cnv_cluster"] == "all")].set_index("chr_arm")
    assert calls.loc["1q", "call"] == "gain"
