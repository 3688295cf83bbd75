"""Spatial statistics across sections and patients (tmeflow.spatial_cohort): patients are the units.

Null cohorts (no planted effect, with and without between-patient spread) reject at the nominal 5%;
an effect shared by every patient is found; an effect carried by one patient is not called cohort-wide
(Stouffer over sections, i.e. pooling the sections as replicates, calls it); one patient gives no
p-value. End to end: real section tests (co-localisation with Moran spectral randomisation on grid
sections) stored in section h5ads, combined by the fan-in.
"""

from __future__ import annotations

import logging

import anndata as ad
import numpy as np
import pandas as pd
from scipy.stats import norm

from tmeflow import io
from tmeflow.spatial_cohort import (
    COMBINED_FILE,
    PATIENTS_FILE,
    UNS_KEY,
    combine_sections,
    run_spatial_cohort,
    section_table,
    signflip_pvalue,
)

LIMIT = lambda p: 0.05 + 1.645 * np.sqrt(0.05 * 0.95 / len(p))  # noqa: E731 (one-sided 95% binomial bound)


def _cohort(rng, *, n_patients: int, n_features: int, tau: float = 0.0, shift=None, analysis: str = "colocalisation"):
    """Per-section z-scores: 1-3 sections per patient, z = patient effect + N(0, 1); patient effect =
    ``shift[feature, patient]`` (default 0) + N(0, tau^2), i.e. effects that vary between patients around
    a cohort mean.
    """
    rows = []
    for p in range(n_patients):
        mu = (np.zeros(n_features) if shift is None else shift[:, p]) + tau * rng.normal(size=n_features)
        for s in range(rng.integers(1, 4)):
            for f in range(n_features):
                z = mu[f] + rng.normal()
                rows.append((analysis, f"f{f}", f"P{p}_S{s}", f"P{p}", z / 10, z))
    return pd.DataFrame(rows, columns=["analysis", "feature", "sample", "patient", "effect", "z"])


def _stouffer_over_sections(sections: pd.DataFrame) -> pd.Series:
    """What pooling sections as replicates gives: Stouffer's z over every section, two-sided p."""
    grouped = sections.groupby("feature")["z"]
    stouffer = grouped.sum() / np.sqrt(grouped.size())
    return pd.Series(2 * norm.sf(stouffer.abs().to_numpy()), index=stouffer.index)


def test_null_cohorts_reject_at_nominal_level_and_pooling_does_not():
    """40 null cohorts x 25 features, 6 patients of 1-3 sections: without between-patient spread and with
    it (patient effects N(0, 1.5^2) around 0), the patient-level t-test and the exact sign-flip test
    reject at <= 5%; Stouffer over sections rejects far more with spread (pseudo-replication).
    """
    rates = {}
    for tau in (0.0, 1.5):
        p_t, p_flip, p_pooled = [], [], []
        for seed in range(40):
            sections = _cohort(np.random.default_rng(seed), n_patients=6, n_features=25, tau=tau)
            combined, _ = combine_sections(sections)
            p_t += combined["pval"].tolist()
            p_flip += combined["pval_signflip"].tolist()
            p_pooled += _stouffer_over_sections(sections).tolist()
        rates[tau] = [float(np.mean(np.array(p) < 0.05)) for p in (p_t, p_flip, p_pooled)]
        print(
            f"tau {tau}: null rejection at 5%: patient t-test {rates[tau][0]:.3f}, sign-flip {rates[tau][1]:.3f}, "
            f"Stouffer over sections {rates[tau][2]:.3f} (n = {len(p_t)})"
        )
        assert rates[tau][0] <= LIMIT(p_t) and rates[tau][1] <= LIMIT(p_flip)
    assert rates[1.5][2] > 0.3


def test_shared_effect_found_one_patient_effect_not_cohort_wide():
    rng = np.random.default_rng(3)
    shift = np.zeros((3, 5))
    shift[0, :] = 3.0  # f0: in every patient
    shift[1, 2] = 12.0  # f1: a strong pattern in patient P2 only (its 1-3 sections)
    sections = _cohort(rng, n_patients=5, n_features=3, shift=shift)
    combined, patients = combine_sections(sections)
    combined = combined.set_index("feature")
    assert combined.loc["f0", "cohort_wide"] and combined.loc["f0", "fdr"] < 0.01 and combined.loc["f0", "mean_z"] > 2
    assert not combined.loc["f1", "cohort_wide"] and not combined.loc["f2", "cohort_wide"]
    assert _stouffer_over_sections(sections)["f1"] < 1e-4  # pooling the sections calls the one-patient effect
    assert set(patients["patient"]) == {f"P{p}" for p in range(5)}
    assert (combined["n_patients"] == 5).all()
    assert combined.loc["f0", "pval_signflip"] == 2 / 2**5  # exact: the most extreme of the 2^5 sign patterns


def test_interface_enrichment_is_one_sided():
    """Interface enrichment is tested one-sided (as in each section): a shared depletion is not enriched."""
    rng = np.random.default_rng(4)
    shift = np.zeros((2, 6))
    shift[0, :], shift[1, :] = 3.0, -3.0
    combined, _ = combine_sections(_cohort(rng, n_patients=6, n_features=2, shift=shift, analysis="interface_lr"))
    combined = combined.set_index("feature")
    assert combined.loc["f0", "cohort_wide"] and not combined.loc["f1", "cohort_wide"]
    assert combined.loc["f1", "pval"] > 0.9 and combined.loc["f1", "pval_signflip"] > 0.9


def test_signflip_exact_and_monte_carlo():
    assert signflip_pvalue(np.array([1.0, 2.0, 3.0])) == 2 / 8
    assert signflip_pvalue(np.array([1.0, 2.0, 3.0]), "greater") == 1 / 8
    assert np.isnan(signflip_pvalue(np.array([1.0])))
    values = np.random.default_rng(0).normal(size=20)
    p = signflip_pvalue(values, seed=1)
    assert 0 < p <= 1 and p == signflip_pvalue(values, seed=1)


def _grid_graph(side: int):
    import scipy.sparse as sp

    index = np.arange(side * side).reshape(side, side)
    pairs = [
        (index[i, j], index[i + di, j + dj])
        for i in range(side)
        for j in range(side)
        for di, dj in ((0, 1), (1, 0))
        if i + di < side and j + dj < side
    ]
    rows, cols = zip(*pairs, strict=True)
    graph = sp.coo_matrix((np.ones(len(rows)), (rows, cols)), shape=(side * side,) * 2)
    return sp.csr_matrix(graph + graph.T)


def _smooth(rng, graph, n_passes: int = 4) -> np.ndarray:
    from tmeflow.spatial_qc import smooth

    values = rng.normal(size=graph.shape[0])
    for _ in range(n_passes):
        values = smooth(values, graph)
    return values


def _write_section(path, table: pd.DataFrame, sample: str, patient: str):
    adata = ad.AnnData(
        np.zeros((3, 1), dtype=np.float32),
        obs=pd.DataFrame({"sample": [sample] * 3, "patient": [patient] * 3}, index=[f"{sample}_{i}" for i in range(3)]),
    )
    adata.uns[UNS_KEY] = table
    return io.write_h5ad(adata, path)


def test_sections_end_to_end_patients_as_units(tmp_path, caplog):
    """Grid sections (20 x 20 spots) tested by spatial_analysis's co-localisation (MSR null), their tables
    stored in section h5ads and combined by the fan-in: 4 patients x 2 sections. 'shared' is co-localised
    with the malignant pattern in every section, 'one' only in patient P0's sections, the rest are smooth
    independent patterns. Over 10 null cohorts the null types reject at <= 5% across patients.
    """
    from tmeflow.spatial_analysis import colocalisation, section_eigenvectors

    graph = _grid_graph(20)
    vectors = section_eigenvectors(graph)
    null_p = []
    for cohort in range(10):
        paths = []
        for patient in range(4):
            for s in range(2):
                rng = np.random.default_rng(1000 * cohort + 10 * patient + s)
                malignant = _smooth(rng, graph)
                props = pd.DataFrame({f"null{i}": _smooth(rng, graph) for i in range(4)})
                if cohort == 0:
                    props["shared"] = malignant + 0.5 * _smooth(rng, graph)
                    props["one"] = malignant + 0.3 * _smooth(rng, graph) if patient == 0 else _smooth(rng, graph)
                coloc = colocalisation(props, malignant, graph, [], vectors)
                table = section_table({"colocalisation": coloc})
                paths.append(
                    _write_section(
                        tmp_path / f"c{cohort}" / f"P{patient}_S{s}.spatial_analysis.h5ad",
                        table,
                        f"P{patient}_S{s}",
                        f"P{patient}",
                    )
                )
        with caplog.at_level(logging.INFO, logger="tmeflow"):
            summary = run_spatial_cohort(paths, tmp_path / f"c{cohort}")
        assert summary["n_sections"] == 8 and summary["n_patients"] == 4
        combined = pd.read_csv(tmp_path / f"c{cohort}" / COMBINED_FILE, sep="\t").set_index("feature")
        null_p += combined.loc[[f"null{i}" for i in range(4)], "pval"].tolist()
        if cohort == 0:
            assert combined.loc["shared", "cohort_wide"] and combined.loc["shared", "mean_effect"] > 0.5
            assert not combined.loc["one", "cohort_wide"]
            patients = pd.read_csv(tmp_path / "c0" / PATIENTS_FILE, sep="\t")
            assert (patients.loc[patients["feature"] == "shared", "n_sections"] == 2).all()
            assert (tmp_path / "c0" / "spatial_cohort_colocalisation.png").stat().st_size > 10_000
            assert "colocalisation: shared" in (tmp_path / "c0" / "spatial_cohort_mqc.tsv").read_text()
    rate = float(np.mean(np.array(null_p) < 0.05))
    print(f"end to end: null co-localisation rejection across patients {rate:.3f} of {len(null_p)}")
    assert rate <= LIMIT(null_p)


def test_one_patient_gets_no_pvalue(tmp_path, caplog):
    """Two sections of one patient (and one section alone): patient values written, no cohort p-value."""
    rng = np.random.default_rng(0)
    table = pd.DataFrame({"analysis": "colocalisation", "feature": ["A", "B"], "effect": [0.8, 0.1], "z": [9.0, 0.5]})
    paths = [
        _write_section(
            tmp_path / f"S{s}.spatial_analysis.h5ad", table.assign(z=table["z"] + rng.normal(size=2)), f"S{s}", "P1"
        )
        for s in range(2)
    ]
    for used in (paths, paths[:1]):
        with caplog.at_level(logging.INFO, logger="tmeflow"):
            summary = run_spatial_cohort(used, tmp_path)
        combined = pd.read_csv(tmp_path / COMBINED_FILE, sep="\t")
        assert summary["n_patients"] == 1 and combined["pval"].isna().all() and combined["fdr"].isna().all()
        assert not combined["cohort_wide"].any() and (combined["n_sections"] == len(used)).all()
        assert "no cohort p-value" in caplog.text
        assert (tmp_path / PATIENTS_FILE).is_file()


def test_section_without_statistics_is_skipped(tmp_path, caplog):
    adata = ad.AnnData(np.zeros((2, 1), dtype=np.float32), obs=pd.DataFrame({"sample": ["S"] * 2}, index=["a", "b"]))
    path = io.write_h5ad(adata, tmp_path / "S.spatial_analysis.h5ad")
    with caplog.at_level(logging.WARNING, logger="tmeflow"):
        assert run_spatial_cohort([path], tmp_path / "out") is None
    assert "rerun spatial_analysis" in caplog.text
