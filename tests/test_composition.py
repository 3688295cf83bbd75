"""Composition and propeller-style differential abundance (tmeflow composition)."""

from __future__ import annotations

import json

import anndata as ad
import numpy as np
import pandas as pd
import pytest

from tmeflow.cli import main
from tmeflow.composition import propeller, resolve_contrasts

N_NULL_COHORTS = 40


def _simulated_atlas_obs(tmp_path_factory) -> tuple:
    """A simulated cohort (6 patients x normal/primary/metastasis; obs only) and its truth."""
    base = tmp_path_factory.getbasetemp() / "composition_cohort"
    atlas = base / "atlas.h5ad"
    if not atlas.exists():
        assert (
            main(
                [
                    "simulate",
                    "--outdir",
                    str(base / "sim"),
                    "--n_cells",
                    "8000",
                    "--n_patients",
                    "6",
                    "--seed",
                    "3",
                    "--n_genes",
                    "1500",
                    "--n_sections",
                    "0",
                    "--n_bulk",
                    "0",
                ]
            )
            == 0
        )
        obs = pd.concat([ad.read_h5ad(path, backed="r").obs for path in sorted((base / "sim" / "sc").glob("*.h5ad"))])
        obs.index = [f"c{i}" for i in range(len(obs))]
        obs["cell_type"] = obs["true_cell_type"].astype(str).astype("category")
        obs["cell_type_fine"] = obs["cell_type"].astype(str) + "_" + np.where(np.arange(len(obs)) % 2, "a", "b")
        ad.AnnData(obs=obs).write_h5ad(atlas)
    return atlas, json.loads((base / "sim" / "truth.json").read_text())


def _obs_h5ad(path, conditions: list[str], patients: list[str] | None = None, n: int = 30):
    """A tiny obs-only atlas: one sample per entry of ``conditions``."""
    rng = np.random.default_rng(0)
    frames = []
    for i, condition in enumerate(conditions):
        frames.append(
            pd.DataFrame(
                {
                    "sample": f"S{i}",
                    "condition": condition,
                    "patient": patients[i] if patients else f"P{i}",
                    "cell_type": rng.choice(["T", "B", "myeloid"], size=n),
                }
            )
        )
    obs = pd.concat(frames, ignore_index=True)
    obs.index = obs.index.astype(str)
    ad.AnnData(obs=obs).write_h5ad(path)
    return path


@pytest.mark.slow
def test_planted_abundance_change_is_found(tmp_path_factory, tmp_path):
    atlas, truth = _simulated_atlas_obs(tmp_path_factory)
    assert main(["composition", "--input", str(atlas), "--outdir", str(tmp_path)]) == 0
    planted = truth["differential_abundance"]
    da = pd.read_csv(tmp_path / "da_major_metastasis_vs_primary.tsv", sep="\t").set_index("cell_type")
    row = da.loc[planted["cell_type"]]
    print(
        f"planted DA ({planted['cell_type']} x{planted['fold_change']}): FDR {row['fdr']:.3g}, "
        f"proportion ratio {row['prop_ratio']:.2f}, design {row['design']}"
    )
    assert row["fdr"] < 0.05 and row["prop_ratio"] > 1.5
    assert row["design"] == "~ 0 + condition + patient (all conditions)"  # every patient has both conditions: paired
    props = pd.read_csv(tmp_path / "composition_major_proportions.tsv", sep="\t")
    assert np.allclose(props.groupby("sample")["proportion"].sum(), 1.0)
    for name in (
        "composition_major_stacked.png",
        "composition_major_boxplot.png",
        "composition_mqc.tsv",
        "da_fine_metastasis_vs_primary.tsv",
        "composition_fine_counts.tsv",
    ):
        assert (tmp_path / name).stat().st_size > 0


def _null_cohort(rng, *, paired: bool, n_per_condition: int = 4, k: int = 8, concentration: float = 40.0):
    """Per-sample cell-type counts without any condition effect (Dirichlet-multinomial)."""
    base = rng.dirichlet(np.full(k, 2.0)) * 0.9 + 0.1 / k
    rows, meta = [], []
    for p in range(n_per_condition):
        patient_mean = rng.dirichlet(base * 200)  # patient effect shared by the patient's samples
        for condition in ("metastasis", "primary"):
            q = rng.dirichlet((patient_mean if paired else base) * concentration)
            rows.append(rng.multinomial(int(rng.integers(150, 800)), q))
            sample = f"S{len(meta)}"
            meta.append((sample, condition, f"P{p}" if paired else sample))
    counts = pd.DataFrame(rows, index=[m[0] for m in meta], columns=[f"type{i}" for i in range(k)])
    samples = pd.DataFrame({"condition": [m[1] for m in meta], "patient": [m[2] for m in meta]}, index=counts.index)
    return counts, samples


@pytest.mark.parametrize("transform", ["logit", "asin"])
def test_false_positive_rate_over_null_cohorts(transform):
    rng = np.random.default_rng(7)
    called = tested = 0
    for i in range(N_NULL_COHORTS):
        counts, samples = _null_cohort(rng, paired=bool(i % 2))
        result = propeller(counts, samples, "metastasis", "primary", transform=transform)
        called += int((result["fdr"] < 0.05).sum())
        tested += len(result)
    rate = called / tested
    print(f"{transform}: {called} of {tested} cell types called over {N_NULL_COHORTS} null cohorts (rate {rate:.4f})")
    assert rate < 0.05


def test_ordinary_t_matches_statsmodels_ols():
    import statsmodels.api as sm

    from tmeflow.composition import transform_proportions

    counts, samples = _null_cohort(np.random.default_rng(3), paired=True)
    result = propeller(counts, samples, "metastasis", "primary", moderated=False).set_index("cell_type")
    design = pd.get_dummies(samples[["patient"]], drop_first=True, dtype=float)
    design.insert(0, "test", (samples["condition"] == "metastasis").astype(float))
    design = sm.add_constant(design)
    y = transform_proportions(counts, "logit")
    for cell_type in counts.columns:
        fit = sm.OLS(y[cell_type], design).fit()
        assert result.loc[cell_type, "t"] == pytest.approx(fit.tvalues["test"], rel=1e-8)
        assert result.loc[cell_type, "pvalue"] == pytest.approx(fit.pvalues["test"], rel=1e-6)


def test_all_conditions_fitted_as_limma_contrasts_fit():
    """speckle/limma fit ``~ 0 + group`` to every sample and test the contrast: the third condition's
    samples add residual degrees of freedom (the old fit used only the two contrasted conditions).
    """
    import statsmodels.api as sm

    from tmeflow.composition import transform_proportions

    rng = np.random.default_rng(5)
    counts, samples = _null_cohort(rng, paired=False)
    normal = pd.DataFrame(
        [rng.multinomial(400, rng.dirichlet(np.full(counts.shape[1], 5.0))) for _ in range(3)],
        index=["N0", "N1", "N2"],
        columns=counts.columns,
    )
    counts = pd.concat([counts, normal])
    samples = pd.concat([samples, pd.DataFrame({"condition": "normal", "patient": normal.index}, index=normal.index)])
    result = propeller(counts, samples, "metastasis", "primary", moderated=False).set_index("cell_type")
    design = pd.get_dummies(samples["condition"], dtype=float)
    y = transform_proportions(counts, "logit")
    for cell_type in counts.columns:
        fit = sm.OLS(y[cell_type], design).fit()
        contrast = fit.t_test(
            np.array([[1.0 if c == "metastasis" else -1.0 if c == "primary" else 0.0 for c in design.columns]])
        )
        assert result.loc[cell_type, "t"] == pytest.approx(float(contrast.tvalue[0][0]), rel=1e-8)
        assert result.loc[cell_type, "pvalue"] == pytest.approx(float(contrast.pvalue), rel=1e-6)
    assert (result["df"] == len(samples) - 3).all() and (result["n_samples_test"] == 4).all()
    assert result["design"].iat[0] == "~ 0 + condition (all conditions)"


def test_default_contrast_rule():
    obs = pd.DataFrame(
        {
            "sample": ["a", "b", "c", "d", "e", "f"],
            "condition": pd.Categorical(["metastasis", "normal", "primary", "metastasis", "primary", "normal"]),
        }
    )
    assert resolve_contrasts(obs, "") == [("metastasis", "primary")]
    assert resolve_contrasts(obs[obs["condition"] != "metastasis"], None) == [("primary", "normal")]
    assert resolve_contrasts(obs, "normal,primary") == [("normal", "primary")]
    assert len(resolve_contrasts(obs, "all")) == 3


def test_bad_inputs_exit_2_with_one_line(tmp_path, capsys):
    one = _obs_h5ad(tmp_path / "one.h5ad", ["primary", "primary", "primary"])
    assert main(["composition", "--input", str(one), "--outdir", str(tmp_path / "o1")]) == 2
    assert "only one condition" in capsys.readouterr().err
    few = _obs_h5ad(tmp_path / "few.h5ad", ["primary", "primary", "metastasis"])
    assert main(["composition", "--input", str(few), "--outdir", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert "'metastasis' has 1 sample(s)" in err and "at least 2" in err and len(err.strip().splitlines()) == 1
    assert (
        main(["composition", "--input", str(few), "--outdir", str(tmp_path / "o3"), "--contrast", "recurrent,primary"])
        == 2
    )
    err = capsys.readouterr().err
    assert "recurrent" in err and "not in the data" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o1").exists() and not (tmp_path / "o2").exists()


# ------------------------------------------------------------------------------------------------
# Robust empirical Bayes (speckle: eBayes(robust = TRUE); limma fitFDistRobustly, Phipson et al. 2016)
# ------------------------------------------------------------------------------------------------
def _scaled_f(seed: int, n: int = 200, df1: int = 4, d0: int = 10, s0: float = 0.3) -> np.ndarray:
    from scipy import stats

    return s0 * stats.f.rvs(df1, d0, size=n, random_state=np.random.default_rng(seed))


def test_robust_fit_is_the_non_robust_fit_below_ten_features():
    from tmeflow.composition import fit_f_dist, fit_f_dist_robust

    s2 = _scaled_f(0, n=9)
    scale, df_prior = fit_f_dist_robust(s2, 4)
    assert (scale, df_prior[0]) == fit_f_dist(s2, 4) and len(set(df_prior)) == 1


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_robust_fit_gives_outlier_variances_their_own_smaller_prior_df(seed):
    """Five variances at 30x the median among 200 scaled-F draws: they get a prior df near 0 (hardly
    shrunk), the others keep a prior df above the non-robust one, which the outliers drag down, and the
    prior scale stays near the clean fit's.
    """
    from tmeflow.composition import fit_f_dist, fit_f_dist_robust

    clean = _scaled_f(seed)
    s2 = clean.copy()
    s2[:5] = 30 * np.median(clean)
    scale_nr, df_nr = fit_f_dist(s2, 4)
    scale, df_prior = fit_f_dist_robust(s2, 4)
    assert np.all(df_prior[:5] < 1.0)
    assert np.median(df_prior[5:]) > 1.5 * df_nr
    assert abs(scale / fit_f_dist(clean, 4)[0] - 1) < 0.1
    # the outliers' posterior variances stay near their own, not pulled towards the prior
    from tmeflow.composition import linear_model_test

    design = np.column_stack([np.ones(6), [0, 0, 0, 1, 1, 1]])
    rng = np.random.default_rng(seed)
    y = pd.DataFrame(rng.normal(size=(6, 200)) * np.sqrt(np.where(np.arange(200) < 5, 100 * s2, s2)))
    robust = linear_model_test(y, design, coef=1, robust=True)
    plain = linear_model_test(y, design, coef=1, robust=False)
    outliers = robust.index[:5]
    assert (robust.loc[outliers, "s2_post"] > plain.loc[outliers, "s2_post"]).all()
    assert (robust.loc[outliers, "s2_post"] / robust.loc[outliers, "s2"]).min() > 0.8


def test_robust_fit_without_outliers_is_close_to_the_non_robust_fit():
    """Without outliers the robust moderated t-test gives nearly the non-robust p-values."""
    from tmeflow.composition import linear_model_test

    rng = np.random.default_rng(3)
    s2 = _scaled_f(3)
    design = np.column_stack([np.ones(8), [0, 0, 0, 0, 1, 1, 1, 1]])
    y = pd.DataFrame(rng.normal(size=(8, 200)) * np.sqrt(s2))
    robust = linear_model_test(y, design, coef=1, robust=True)
    plain = linear_model_test(y, design, coef=1, robust=False)
    assert np.corrcoef(np.log10(robust["pvalue"]), np.log10(plain["pvalue"]))[0, 1] > 0.99
    assert np.max(np.abs(np.log10(robust["pvalue"]) - np.log10(plain["pvalue"]))) < 0.3


def test_propeller_moderates_robustly_by_default():
    """Propeller uses speckle's eBayes(robust = TRUE): per-cell-type prior df."""
    import inspect

    assert inspect.signature(propeller).parameters["robust"].default is True


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_logit_and_asin_transforms_of_a_three_sample_table_by_hand():
    """Speckle's getTransformedProps: logit of (count + 0.5) proportions; asin(sqrt(p)) of raw proportions."""
    from tmeflow.composition import transform_proportions

    counts = pd.DataFrame({"T": [1, 1, 3], "B": [1, 7, 0]}, index=["S1", "S2", "S3"])
    logit = transform_proportions(counts, "logit")
    # S1: (1.5, 1.5) / 3 = (0.5, 0.5) -> log(1) = 0
    # S2: (1.5, 7.5) / 9 = (1/6, 5/6) -> log((1/6)/(5/6)) = log(1/5) = -1.609438, +1.609438
    # S3: (3.5, 0.5) / 4 = (0.875, 0.125) -> log(7) = 1.945910, -1.945910
    np.testing.assert_allclose(logit.to_numpy(), [[0.0, 0.0], [-1.609438, 1.609438], [1.945910, -1.945910]], atol=1e-6)
    asin = transform_proportions(counts, "asin")
    # S2: asin(sqrt(1/8)) = 0.361367, asin(sqrt(7/8)) = 1.209429; S3: asin(1) = pi/2, asin(0) = 0
    np.testing.assert_allclose(asin.loc["S2"], [0.361367, 1.209429], atol=1e-6)
    np.testing.assert_allclose(asin.loc["S3"], [np.pi / 2, 0.0], atol=1e-12)
