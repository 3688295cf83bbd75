"""``tmeflow bulk`` on a synthetic cohort with planted truth, and its input errors."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from tmeflow.bulk import (
    collapse_duplicates,
    deconvolve_nnls,
    detect_endpoints,
    marker_genes,
    read_clinical,
)
from tmeflow.cli import main
from tmeflow.signatures import load_orthologs, read_bundled_gmt, ssgsea

BETA = np.log(2.0)  # planted log hazard ratio per SD of the planted signature's ssGSEA score
LOG_OR = np.log(3.0)  # planted log odds ratio of node metastasis per SD
N = 160
COHORT = "TCGA-X_1"  # the samplesheet row: every output file starts with it


def _write_cohort(folder, seed=0):
    """Synthetic bulk cohort (TPM, human symbols) with planted truth.

    Genes: ESTIMATE stromal + immune genes, bundled necroptosis genes, a 20-gene planted signature
    (written as a user GMT) and 300 filler genes. Latent per sample: z (planted programme), u (immune
    infiltration), v (stroma). log2(TPM + 1) = gene mean + 0.5 N(0, 1) noise + z on the planted genes,
    + u on immune genes, + v on stromal genes. The planted signature's ssGSEA score s (computed with
    tmeflow.signatures.ssgsea on the same log2(TPM + 1) matrix, standardised) drives OS with hazard
    0.03 exp(log 2 * s) (uniform censoring) and N stage with logit -0.3 + log 3 * s; PFS is independent.
    """
    rng = np.random.default_rng(seed)
    estimate = read_bundled_gmt("estimate")
    necro = read_bundled_gmt("necroptosis")
    stromal, immune = estimate["StromalSignature"], estimate["ImmuneSignature"]
    necro_genes = sorted({g for genes in necro.values() for g in genes} | {"CHMP3"})
    used = set(stromal) | set(immune) | set(necro_genes)
    pool = [g for g in load_orthologs()["human_symbol"] if g not in used and g.isalnum()]
    pool = list(rng.choice(pool, 320 + 40, replace=False))
    planted, filler, tumour = pool[:20], pool[20:340], pool[340:]
    genes = list(dict.fromkeys(stromal + immune + necro_genes + planted + filler + tumour))
    samples = [f"P{i:03d}" for i in range(N)]
    z, u, v = rng.normal(size=N), rng.normal(size=N), rng.normal(size=N)
    mean = rng.uniform(1, 8, size=len(genes))
    log = mean[:, None] + 0.5 * rng.normal(size=(len(genes), N))
    idx = {g: i for i, g in enumerate(genes)}
    log[[idx[g] for g in planted]] += z
    log[[idx[g] for g in immune]] += u
    log[[idx[g] for g in stromal]] += 0.7 * v
    tpm = pd.DataFrame(np.clip(2.0**log - 1.0, 0, None), index=genes, columns=samples)
    score = ssgsea(np.log2(tpm + 1.0), {"PLANTED": planted}, normalize=False).loc["PLANTED"]
    s = ((score - score.mean()) / score.std()).to_numpy()
    t_os = rng.exponential(1 / (0.03 * np.exp(BETA * s)))
    c_os = rng.uniform(10, 80, N)
    t_pfs, c_pfs = rng.exponential(30, N), rng.uniform(10, 80, N)
    node = rng.random(N) < 1 / (1 + np.exp(-(-0.3 + LOG_OR * s)))
    clinical = pd.DataFrame(
        {
            "sample": samples,
            "OS_time": np.round(np.minimum(t_os, c_os), 2),
            "OS_event": (t_os <= c_os).astype(int),
            "PFS_months": np.round(np.minimum(t_pfs, c_pfs), 2),
            "PFS_status": np.where(t_pfs <= c_pfs, "1:Progressed", "0:Censored"),
            "age": np.round(rng.normal(60, 10, N)),
            "stage": rng.choice(["I", "II", "III"], N),
            "N_stage": np.where(node, rng.choice(["N1", "N2"], N), "N0"),
        }
    )
    expression = folder / "expression.csv"
    tpm.index.name = "gene"
    tpm.to_csv(expression)
    clinical_path = folder / "clinical.tsv"
    clinical.to_csv(clinical_path, sep="\t", index=False)
    gmt = folder / "planted.gmt"
    gmt.write_text("PLANTED\tplanted signature\t" + "\t".join(planted) + "\n")
    truth = pd.DataFrame({"z": z, "u": u, "v": v, "s": s}, index=samples)
    return {
        "expression": expression,
        "clinical": clinical_path,
        "gmt": gmt,
        "truth": truth,
        "immune": immune,
        "stromal": stromal,
        "tumour": tumour,
        "tpm": tpm,
    }


def _write_reference(folder, cohort, seed=1):
    """Single-cell reference: T cells express the ESTIMATE immune genes, fibroblasts the stromal genes,
    tumour cells 40 tumour genes; raw counts in layers['counts'].
    """
    import anndata as ad
    import scipy.sparse as sp

    rng = np.random.default_rng(seed)
    genes = list(cohort["tpm"].index)
    types = {"T cell": cohort["immune"], "Fibroblast": cohort["stromal"], "Tumour": cohort["tumour"]}
    base = rng.uniform(0.05, 0.5, size=len(genes))
    blocks, labels = [], []
    for cell_type, markers in types.items():
        rate = base.copy()
        rate[np.isin(genes, markers)] += 3.0
        blocks.append(rng.poisson(rate, size=(100, len(genes))))
        labels += [cell_type] * 100
    counts = sp.csr_matrix(np.vstack(blocks).astype(np.float32))
    adata = ad.AnnData(
        X=counts.copy(),
        obs=pd.DataFrame({"cell_type": labels, "species": "human"}, index=[f"c{i}" for i in range(len(labels))]),
        var=pd.DataFrame(index=genes),
    )
    adata.layers["counts"] = counts
    path = folder / "reference.h5ad"
    adata.write_h5ad(path)
    return path


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bulk_cohort")
    data = _write_cohort(folder)
    data["reference"] = _write_reference(folder, data)
    return data


@pytest.fixture(scope="module")
def run(cohort, tmp_path_factory):
    out = tmp_path_factory.mktemp("bulk_out")
    rc = main(
        [
            "bulk",
            "--expression",
            str(cohort["expression"]),
            "--clinical",
            str(cohort["clinical"]),
            "--reference",
            str(cohort["reference"]),
            "--signatures",
            str(cohort["gmt"]),
            "--outdir",
            str(out),
            "--sample",
            COHORT,
            "--bulk_values",
            "tpm",
            "--bulk_genes",
            "CHMP3",
            "--bulk_hallmark",
            "false",
            "--cox_covariates",
            "age,stage",
            "--node_column",
            "N_stage",
            "--cutpoint_permutations",
            "200",
        ]
    )
    return rc, out


def _read(out, name):
    return pd.read_csv(out / f"{COHORT}.{name}", sep="\t", comment="#")


@pytest.mark.slow
def test_cli_writes_tables_and_plots(run):
    rc, out = run
    assert rc == 0
    for name in (
        "bulk_scores.tsv",
        "bulk_features.tsv",
        "bulk_survival.tsv",
        "bulk_cox.tsv",
        "bulk_logistic.tsv",
        "bulk_estimate.tsv",
        "bulk_estimate_correlation.tsv",
        "bulk_estimate_correlation.png",
        "bulk_deconvolution.tsv",
        "bulk_signature_matrix.tsv",
        "bulk_gene_sets.tsv",
        "bulk_summary.json",
        "bulk_survival_mqc.tsv",
        "bulk_estimate_mqc.tsv",
        "bulk_km_OS_mqc.png",
        "bulk_km_PFS_mqc.png",
        "bulk_forest_OS.png",
        "bulk_km_OS_PLANTED.png",
        "bulk_km_OS_gene_CHMP3.png",
    ):
        assert (out / f"{COHORT}.{name}").is_file() and (out / f"{COHORT}.{name}").stat().st_size > 0, name
    assert not list(out.glob("bulk_*")), "every file starts with the cohort's name"
    mqc = (out / f"{COHORT}.bulk_survival_mqc.tsv").read_text()
    assert mqc.startswith(f"# id: tmeflow_bulk_survival_{COHORT}\n") and f"Bulk cohort {COHORT}: survival" in mqc
    summary = json.loads((out / f"{COHORT}.bulk_summary.json").read_text())
    assert summary["cohort"] == COHORT
    assert set(summary["endpoints"]) == {"OS", "PFS"}
    assert summary["endpoints"]["PFS"]["time"] == "PFS_months"
    assert summary["samples"] == N and summary["reference_species"] == "human"


@pytest.mark.slow
def test_planted_hazard_and_odds_ratio_recovered(run):
    """The planted signature's HR per SD (2) lies in its 95% CI; its corrected cut-point p is small;
    the unrelated PFS endpoint shows no effect; node OR per SD (3) lies in its CI.
    """
    _, out = run
    cox = _read(out, "bulk_cox.tsv")
    row = cox[(cox.feature == "PLANTED") & (cox.endpoint == "OS") & (cox.model == "univariate_continuous")].iloc[0]
    print(f"planted HR per SD {row.hr:.3f} [{row.hr_lower:.3f}, {row.hr_upper:.3f}] (truth 2)")
    assert row.hr_lower <= 2.0 <= row.hr_upper and row.p < 1e-4
    multi = cox[(cox.feature == "PLANTED") & (cox.endpoint == "OS") & (cox.model == "multivariate_group")]
    assert set(multi.term) == {"high", "age", "stage_II", "stage_III"}
    assert multi.set_index("term").loc["high", "hr"] > 1
    surv = _read(out, "bulk_survival.tsv")
    planted = surv[(surv.feature == "PLANTED")].set_index("endpoint")
    assert planted.loc["OS", "cut_p_corrected"] < 0.01
    assert planted.loc["OS", "cut_p_lau92"] >= planted.loc["OS", "logrank_p"]  # correction only raises p
    assert planted.loc["OS", "n_high"] + planted.loc["OS", "n_low"] == N
    # PFS is independent of the signature: its effect is much weaker than the planted OS effect
    assert abs(np.log(planted.loc["PFS", "hr_per_sd"])) < 0.5 * abs(np.log(planted.loc["OS", "hr_per_sd"]))
    assert {"ph_fail", "logrank_fdr", "cut_fdr"} <= set(surv.columns)
    logit = _read(out, "bulk_logistic.tsv")
    lrow = logit[(logit.feature == "PLANTED") & (logit.model == "univariate")].iloc[0]
    print(f"planted OR per SD {lrow.odds_ratio:.3f} [{lrow.or_lower:.3f}, {lrow.or_upper:.3f}] (truth 3)")
    assert lrow.or_lower <= 3.0 <= lrow.or_upper


@pytest.mark.slow
def test_primary_p_is_the_corrected_cut_point_p(run):
    """The maxstat split is optimised, so its plain log-rank p is not the result: the primary p (and FDR)
    is the corrected cut-point p, the report table is sorted by it, HRs come from the continuous score,
    and the group-Cox rows say their split was optimised.
    """
    _, out = run
    surv = _read(out, "bulk_survival.tsv")
    np.testing.assert_allclose(surv["p"], surv["cut_p_corrected"])
    assert (surv["p"] >= surv["logrank_p"]).all() and (surv["split"] == "optimised (maxstat)").all()
    from tmeflow.stats import bh_fdr

    for _, sub in surv.groupby("endpoint"):
        np.testing.assert_allclose(sub["fdr"], bh_fdr(sub["p"]), rtol=1e-4)  # TSV keeps 6 digits
    mqc = _read(out, "bulk_survival_mqc.tsv")
    assert mqc["p"].is_monotonic_increasing
    assert {"p", "fdr", "hr_per_sd", "split", "logrank_p"} <= set(mqc.columns)
    assert "corrected for the cut-point search" in (out / f"{COHORT}.bulk_survival_mqc.tsv").read_text()
    cox = _read(out, "bulk_cox.tsv")
    assert set(cox.loc[cox.model.str.endswith("_group"), "split"]) == {"optimised (maxstat)"}
    assert set(cox.loc[cox.model == "univariate_continuous", "split"]) == {"continuous"}


@pytest.mark.slow
def test_estimate_and_deconvolution_track_planted_infiltration(run, cohort):
    _, out = run
    truth = cohort["truth"]
    est = _read(out, "bulk_estimate.tsv").set_index("sample")
    assert "TumorPurity" not in est.columns  # see test_estimate_reports_no_purity_off_the_common_genes
    np.testing.assert_allclose(est["ESTIMATEScore"], est["StromalScore"] + est["ImmuneScore"], atol=1e-3)
    assert est["ImmuneScore"].corr(truth["u"], method="spearman") > 0.8
    assert est["StromalScore"].corr(truth["v"], method="spearman") > 0.6
    corr = _read(out, "bulk_estimate_correlation.tsv")
    row = corr[(corr.feature == "fraction:T cell") & (corr.target == "ImmuneScore")].iloc[0]
    assert row.rho > 0.5 and row.fdr < 0.05
    fractions = _read(out, "bulk_deconvolution.tsv").set_index("sample")
    np.testing.assert_allclose(fractions.sum(axis=1), 1.0, atol=1e-6)
    assert (fractions.to_numpy() >= 0).all()
    assert fractions["T cell"].corr(truth["u"], method="spearman") > 0.6


def test_estimate_reports_no_purity_off_the_common_genes():
    """ESTIMATE's purity formula was fitted on scores over its 10,412 common genes; on a TCGA-sized
    matrix (20,000 genes) it gave purity < 0. The common-genes list is not bundled, so no purity is
    reported; the scores still order samples by planted immune infiltration.
    """
    from tmeflow.bulk import estimate_scores

    rng = np.random.default_rng(3)
    sets = read_bundled_gmt("estimate")
    signature = [g for genes in sets.values() for g in genes]
    genes = signature + [f"FILLER{i}" for i in range(20000 - len(signature))]
    expr = pd.DataFrame(rng.normal(6, 2, (len(genes), 12)), index=genes, columns=[f"s{i}" for i in range(12)])
    immune = np.linspace(0, 3, 12)
    expr.loc[sets["ImmuneSignature"]] += immune
    est = estimate_scores(expr, "human")
    assert list(est.columns) == ["StromalScore", "ImmuneScore", "ESTIMATEScore"]
    assert est["ImmuneScore"].corr(pd.Series(immune, index=est.index), method="spearman") > 0.95


def test_nnls_recovers_mixture_fractions():
    """Bulk = S f exactly for known f: NNLS on the marker signature matrix returns f."""
    rng = np.random.default_rng(0)
    genes = [f"G{i}" for i in range(60)]
    profiles = pd.DataFrame(rng.uniform(0, 5, (60, 3)), index=genes, columns=["a", "b", "c"])
    for j in range(profiles.shape[1]):
        profiles.iloc[j * 20 : (j + 1) * 20, j] += 100
    truth = rng.dirichlet(np.ones(3), size=8)
    bulk = pd.DataFrame(profiles.to_numpy() @ truth.T * 3.0, index=genes, columns=[f"s{i}" for i in range(8)])
    markers = marker_genes(profiles, 10)
    assert all(len(m) == 10 for m in markers.values())
    fractions, fit = deconvolve_nnls(bulk, profiles, markers)
    np.testing.assert_allclose(fractions.to_numpy(), truth, atol=1e-6)
    assert (fit["pearson_r"] > 0.999).all()


def test_identifier_rules(tmp_path):
    frame = pd.DataFrame({"s1": [1.0, 5.0, 2.0], "s2": [1.0, 7.0, 2.0]}, index=["TP53", "TP53", "MYC"])
    collapsed = collapse_duplicates(frame)
    assert collapsed.loc["TP53", "s1"] == 5.0 and len(collapsed) == 2
    clin = pd.DataFrame(
        {
            "t.dmfs": [1],
            "e.dmfs": [0],
            "OS.time": [1],
            "OS": [1],
            "dss_days": [2],
            "DSS_status": [1],
            "pfi_time": [3],
            "pfi_event": [0],
        },
        index=["a"],
    )
    found = detect_endpoints(clin)
    assert found == {
        "DMFS": ("t.dmfs", "e.dmfs"),
        "OS": ("OS.time", "OS"),
        "DSS": ("dss_days", "DSS_status"),
        "PFI": ("pfi_time", "pfi_event"),
    }
    assert detect_endpoints(clin, "X:pfi_time:OS") == {"X": ("pfi_time", "OS")}
    path = tmp_path / "c.csv"
    pd.DataFrame({"id": ["a", "b"], "sample_id": ["S1", "S2"]}).to_csv(path, index=False)
    assert list(read_clinical(path).index) == ["S1", "S2"]


def test_mouse_reference_maps_to_human_bulk_and_ensembl_ids():
    """A mouse atlas (obs species) is translated to human symbols with the one-to-one orthologs;
    Ensembl IDs (with version suffix) map to symbols.
    """
    import anndata as ad

    from tmeflow.bulk import reference_profiles, reference_species
    from tmeflow.signatures import ensembl_to_symbol

    counts = np.array([[10, 0, 5, 1], [0, 8, 5, 1], [12, 1, 4, 0], [1, 9, 6, 2]], dtype=float)
    adata = ad.AnnData(
        X=counts,
        obs=pd.DataFrame({"cell_type": ["T", "Neu", "T", "Neu"], "species": "mouse"}, index=list("abcd")),
        var=pd.DataFrame(index=["Cd3e", "S100a8", "Actb", "Gm12345"]),
    )
    assert reference_species(adata) == "mouse"
    profiles = reference_profiles(adata, "human", "mouse", "ref.h5ad")
    assert set(profiles.index) == {"CD3E", "S100A8", "ACTB"} and list(profiles.columns) == ["Neu", "T"]
    assert profiles.loc["CD3E", "T"] > profiles.loc["CD3E", "Neu"]
    np.testing.assert_allclose(profiles.loc["CD3E", "T"], np.mean([10 / 16 * 1e6, 12 / 17 * 1e6]))
    mapped = ensembl_to_symbol(["ENSG00000141510.17", "ENSMUSG00000059552", "ENSG99999999999"])
    assert mapped == {"ENSG00000141510.17": "TP53", "ENSMUSG00000059552": "Trp53"}


def test_reference_profiles_read_on_disk_in_row_blocks_match_the_cpm_means(tmp_path, monkeypatch):
    """The bulk stage reads the reference atlas's counts in row blocks (issue 23: the whole atlas was read into
    memory, ~28 GB at a million cells); the profiles are the per-type means of each cell's CPM."""
    import anndata as ad
    import scipy.sparse as sp

    from tmeflow import io
    from tmeflow.bulk import reference_profiles

    rng = np.random.default_rng(0)
    counts = rng.poisson(1.5, size=(50, 12)).astype(np.float32)
    counts[4] = 0  # a cell without counts adds nothing
    types = np.array(["T", "B", "Mac"])[rng.integers(0, 3, size=50)]
    adata = ad.AnnData(
        X=sp.csr_matrix(np.log1p(counts)),
        layers={"counts": sp.csr_matrix(counts)},
        obs=pd.DataFrame({"cell_type": types}, index=[f"c{i}" for i in range(50)]),
        var=pd.DataFrame(index=[f"GENE{i}" for i in range(12)]),
    )
    adata.write_h5ad(tmp_path / "ref.h5ad")
    monkeypatch.setattr(io, "ROW_BLOCK_CELLS", 7)
    with io.h5ad_on_disk(tmp_path / "ref.h5ad", "reference h5ad") as on_disk:
        assert not isinstance(on_disk.layers["counts"], np.ndarray | sp.spmatrix)  # still on disk
        profiles = reference_profiles(on_disk, "human", "human", tmp_path / "ref.h5ad")
    cpm = counts / np.maximum(counts.sum(axis=1, keepdims=True), 1) * 1e6
    expected = pd.DataFrame({t: cpm[types == t].mean(axis=0) for t in ["B", "Mac", "T"]}, index=adata.var_names)
    pd.testing.assert_frame_equal(profiles, expected, check_dtype=False, rtol=1e-6)


@pytest.mark.slow
@pytest.mark.shared_data
def test_nki_probe_annotation_and_endpoints(shared_data):
    from tmeflow.bulk import map_identifiers, read_expression, read_probe_annotation

    folder = shared_data / "nki_breast_bulk_survival"
    clin = read_clinical(folder / "nkis_clinical.csv.gz")
    expr = read_expression(folder / "nkis_expression_log10ratio.csv.gz", clin.index)  # samples x probes: transposed
    assert expr.shape == (922, 150)
    mapped, summary = map_identifiers(
        expr, "probe", "human", read_probe_annotation(folder / "nkis_probe_annotation.csv.gz"), folder
    )
    assert "ESR1" in mapped.index and summary["genes"] < 922 and not mapped.index.duplicated().any()
    assert set(detect_endpoints(clin)) == {"DMFS", "OS", "RFS"}


def _probe_matrix(cohort, folder):
    """The cohort's matrix on probe IDs, with a GEO-platform-like annotation table (ID, Gene Symbol):
    a second, weaker probe of the first gene and a control probe without a symbol.
    """
    expr = pd.read_csv(cohort["expression"], index_col=0)
    probes = [f"{1000 + i}_at" for i in range(len(expr))]
    annotation = pd.DataFrame(
        {"ID": probes + ["9999_x_at", "AFFX-ctrl"], "Gene Symbol": list(expr.index) + [expr.index[0], ""]}
    )
    weaker, control = expr.iloc[[0]] * 0.5, expr.iloc[[1]]
    expr.index = probes
    weaker.index, control.index = ["9999_x_at"], ["AFFX-ctrl"]
    expr = pd.concat([expr, weaker, control])
    expr.index.name = "ID_REF"
    expression, table = folder / "probes.csv", folder / "platform.tsv"
    expr.to_csv(expression)
    annotation.to_csv(table, sep="\t", index=False)
    return expression, table


@pytest.mark.slow
def test_cli_probe_annotation_parameter(cohort, tmp_path):
    """--probe_annotation, a bulk_options parameter (probe_annotation in a params file, staged by the
    Nextflow BULK process), maps probe IDs: bulk_id_type auto becomes probe, the weaker probe of a
    gene and the probe without a symbol are dropped, and the scores are those of the symbol matrix.
    """
    expression, table = _probe_matrix(cohort, tmp_path)
    out = tmp_path / "out"
    rc = main(
        [
            "bulk",
            "--expression",
            str(expression),
            "--clinical",
            str(cohort["clinical"]),
            "--probe_annotation",
            str(table),
            "--signatures",
            str(cohort["gmt"]),
            "--outdir",
            str(out),
            "--sample",
            COHORT,
            "--bulk_hallmark",
            "false",
            "--cutpoint_permutations",
            "0",
            "--survival_endpoints",
            "OS",
        ]
    )
    assert rc == 0
    n_genes = len(cohort["tpm"])
    identifiers = json.loads((out / f"{COHORT}.bulk_summary.json").read_text())["identifiers"]
    assert identifiers["id_type"] == "probe"
    assert (identifiers["rows_in"], identifiers["rows_mapped"], identifiers["genes"]) == (
        n_genes + 2,
        n_genes + 1,
        n_genes,
    )
    scores = _read(out, "bulk_scores.tsv").set_index("sample")
    assert np.corrcoef(scores.loc[cohort["truth"].index, "PLANTED"], cohort["truth"]["s"])[0, 1] > 0.999


def test_cli_probe_annotation_missing_file(cohort, tmp_path, capsys):
    expression, _ = _probe_matrix(cohort, tmp_path)
    msg = _bad_run(
        capsys, cohort, tmp_path, expression=expression, extra=("--probe_annotation", str(tmp_path / "nope.tsv"))
    )
    assert "probe annotation file not found" in msg
    msg = _bad_run(capsys, cohort, tmp_path, expression=expression, extra=("--bulk_id_type", "probe"))
    assert "bulk_id_type probe needs --probe_annotation" in msg


def _bad_run(capsys, cohort, tmp_path, clinical=None, expression=None, extra=()):
    rc = main(
        [
            "bulk",
            "--expression",
            str(expression or cohort["expression"]),
            "--clinical",
            str(clinical or cohort["clinical"]),
            "--outdir",
            str(tmp_path / "out"),
            "--sample",
            COHORT,
            "--bulk_hallmark",
            "false",
            "--cutpoint_permutations",
            "0",
            *extra,
        ]
    )
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    message = [line for line in err if line.startswith("tmeflow bulk: error:")]
    assert len(message) == 1 and "Traceback" not in "\n".join(err)
    assert not (tmp_path / "out").exists()
    return message[0]


def _clinical(cohort, tmp_path, change):
    clin = pd.read_csv(cohort["clinical"], sep="\t")
    change(clin)
    path = tmp_path / "bad_clinical.tsv"
    clin.to_csv(path, sep="\t", index=False)
    return path


def test_bad_inputs_exit_2_with_one_line(cohort, tmp_path, capsys):
    def rename(c):
        c["sample"] = "X" + c["sample"]

    msg = _bad_run(capsys, cohort, tmp_path, clinical=_clinical(cohort, tmp_path, rename))
    assert "only 0 of 160 clinical samples match expression columns" in msg

    def negative(c):
        c.loc[3, "OS_time"] = -5

    assert "negative survival time" in _bad_run(
        capsys, cohort, tmp_path, clinical=_clinical(cohort, tmp_path, negative)
    )

    def no_events(c):
        c["PFS_status"] = "0:Censored"

    assert "endpoint PFS has no events" in _bad_run(
        capsys, cohort, tmp_path, clinical=_clinical(cohort, tmp_path, no_events)
    )

    expr = pd.read_csv(cohort["expression"], index_col=0)
    expr.index = [f"FOO{i}X" for i in range(len(expr))]
    bad_expr = tmp_path / "bad_expr.csv"
    expr.to_csv(bad_expr)
    assert "known human gene symbols" in _bad_run(capsys, cohort, tmp_path, expression=bad_expr)

    assert "NOTAGENE" in _bad_run(capsys, cohort, tmp_path, extra=("--bulk_genes", "NOTAGENE"))

    expr = pd.read_csv(cohort["expression"], index_col=0)
    expr.loc["CHMP3"] = 0.0  # constant gene: every sample in the low group at the median
    const_expr = tmp_path / "const_expr.csv"
    expr.to_csv(const_expr)
    msg = _bad_run(
        capsys, cohort, tmp_path, expression=const_expr, extra=("--bulk_genes", "CHMP3", "--cutpoint_method", "median")
    )
    assert "all 160 samples fall in one cut-point group" in msg

    gmt = tmp_path / "mouse.gmt"
    gmt.write_text("MOUSE\td\tCd3e\tCd8a\tGzmb\tPrf1\tNkg7\n")
    assert "check gene identifiers and species" in _bad_run(capsys, cohort, tmp_path, extra=("--signatures", str(gmt)))
    assert "negative values" in _bad_run(
        capsys, cohort, tmp_path, expression=_negative(cohort, tmp_path), extra=("--bulk_values", "tpm")
    )


def _negative(cohort, tmp_path):
    expr = pd.read_csv(cohort["expression"], index_col=0)
    expr.iloc[0, 0] = -1.0
    path = tmp_path / "neg_expr.csv"
    expr.to_csv(path)
    return path


@pytest.mark.slow
def test_a_feature_that_cannot_be_split_is_left_out_unless_the_user_named_it(caplog):
    """A deconvolution fraction that is 0 in every sample (a cell type the bulk cohort lacks) used to stop
    the whole bulk stage; it is now left out with a warning. A gene the user named still fails clearly.
    """
    from tmeflow.bulk import BulkSettings
    from tmeflow.bulk.endpoints import analyse_survival
    from tmeflow.errors import TmeflowInputError

    rng = np.random.default_rng(0)
    n = 60
    samples = [f"S{i}" for i in range(n)]
    score = rng.normal(size=n)
    surv = pd.DataFrame(
        {"time": rng.exponential(1000 * np.exp(-0.7 * score)), "event": rng.uniform(size=n) < 0.7}, index=samples
    ).astype({"event": int})
    features = pd.DataFrame({"signature": score, "fraction:neutrophil": 0.0, "gene:CHMP3": 1.0}, index=samples)
    settings = BulkSettings.defaults().replace(cutpoint_permutations=20)
    table, _, groups = analyse_survival(
        features[["signature", "fraction:neutrophil"]], surv, "OS", pd.DataFrame(index=samples), settings
    )
    assert list(table["feature"]) == ["signature"] and set(groups) == {"signature"}
    assert "fraction:neutrophil" in caplog.text and "cannot be split" in caplog.text
    with pytest.raises(TmeflowInputError, match="gene:CHMP3, endpoint OS: all 60 samples fall in one cut-point group"):
        analyse_survival(features, surv, "OS", pd.DataFrame(index=samples), settings, required=("gene:CHMP3",))
    with pytest.raises(TmeflowInputError, match="no feature can be split"):
        analyse_survival(features[["fraction:neutrophil"]], surv, "OS", pd.DataFrame(index=samples), settings)


# --------------------------------------------------------------------------------------------------
# Fast tier: hand-built tiny inputs, hand-computed expectations


def test_nnls_fractions_of_an_exact_two_type_three_gene_mixture():
    from tmeflow.bulk import deconvolve_nnls

    profiles = pd.DataFrame({"A": [10.0, 0.0, 5.0], "B": [0.0, 10.0, 5.0]}, index=["g1", "g2", "g3"])
    # S1 = 0.25 A + 0.75 B = (2.5, 7.5, 5.0); S2 = 4 A = (40, 0, 20): fractions normalised to sum 1
    bulk = pd.DataFrame({"S1": [2.5, 7.5, 5.0], "S2": [40.0, 0.0, 20.0]}, index=["g1", "g2", "g3"])
    fractions, fit = deconvolve_nnls(bulk, profiles, {"A": ["g1"], "B": ["g2", "g3"]})
    np.testing.assert_allclose(fractions.to_numpy(), [[0.25, 0.75], [1.0, 0.0]], atol=1e-9)
    np.testing.assert_allclose(fit["residual_norm"], [0.0, 0.0], atol=1e-9)
    assert fit["n_genes"].tolist() == [3, 3]
