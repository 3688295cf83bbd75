"""The ``tmeflow bulk`` stage: read the cohort, score, deconvolve, test endpoints and write the outputs."""

from __future__ import annotations

import argparse
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import TmeflowInputError
from ..estimate import ESTIMATE_COLUMNS, estimate_scores
from ..genes import species_of
from ..io import h5ad_on_disk, multiqc_header, save_figure, write_json, write_table
from ..log import get_logger, timed
from ..signatures import filter_gene_sets, map_gene_sets, read_bundled_gmt, read_gmt, ssgsea
from ..stats import bh_fdr
from ..survival import logistic_regression
from ..text import slug
from .deconvolution import deconvolve_nnls, marker_genes, reference_profiles, spearman_table
from .drugs import read_drug_inputs, run_drugs, write_drugs
from .endpoints import (
    analyse_survival,
    covariate_matrix,
    detect_endpoints,
    node_status,
    survival_frame,
    survival_mqc_headers,
)
from .molecular import read_gene_table, read_msi, run_molecular, write_molecular
from .mutations import plot_tmb_correlation, read_maf, tmb_correlations, tumour_mutational_burden
from .normals import (
    BATCH_WARNING,
    in_table_normals,
    read_normal_cohort,
    run_tumour_normal,
    sample_states,
    signature_genes,
    write_tumour_normal,
)
from .pancancer import cancer_types, focus_features, lead_first, run_pancancer, write_pancancer
from .plots import plot_correlation_heatmap, write_survival_plots
from .reading import (
    MIN_MATCHED_SAMPLES,
    detect_id_type,
    map_identifiers,
    read_clinical,
    read_expression,
    read_probe_annotation,
    transform_values,
)
from .regulators import plot_regulator_heatmap, regulator_correlations
from .response import plot_immunotherapy_km, plot_response_roc, response_status, response_table
from .settings import BulkSettings

logger = get_logger(__package__)


# --------------------------------------------------------------------------------------------------
# Stage


def _gene_sets(settings: BulkSettings, signatures: list[Path], genes: pd.Index, markers: dict[str, list[str]]):
    """Collect every scored gene set with its kind: necroptosis, Hallmark, user GMTs, reference markers."""
    species = settings.bulk_species
    min_size = settings.signature_min_size
    kinds: dict[str, str] = {}
    sets: dict[str, list[str]] = {}

    def add(new: dict[str, list[str]], kind: str, source: str, required: bool) -> None:
        """Keep the sets of ``new`` with enough genes in the matrix, tagged with ``kind``."""
        kept = filter_gene_sets(new, genes, min_size=min_size, source=source, required=required)
        for name, members in kept.items():
            sets[name] = members
            kinds[name] = kind

    bundled = read_bundled_gmt("necroptosis")
    add(map_gene_sets(bundled, "human", species), "necroptosis", "bundled necroptosis sets", False)
    if settings.bulk_hallmark:
        add(map_gene_sets(read_bundled_gmt("hallmark"), "human", species), "hallmark", "bundled Hallmark", False)
    for path in signatures:
        add(read_gmt(path), "user_signature", str(path), True)
    if markers:
        add({f"REF_{t}": g for t, g in markers.items()}, "reference_signature", "reference markers", True)
    return sets, kinds


def _read_table(expression: Path, clinical_path: Path, settings: BulkSettings, probe_map: pd.Series | None):
    """Read an expression table and its clinical table with the cohort's rules.

    Used for the cohort and for a separate normal cohort; returns (clinical, log2 expression, linear expression,
    identifier summary).
    """
    clin = read_clinical(clinical_path)
    raw = read_expression(expression, clin.index)
    clin = clin.loc[raw.columns]
    id_type = detect_id_type(raw.index, settings.bulk_id_type, probe_map is not None)
    mapped, id_summary = map_identifiers(raw, id_type, settings.bulk_species, probe_map, expression)
    log_expr, linear = transform_values(mapped, settings.bulk_values, settings.bulk_max_missing, expression)
    return clin, log_expr, linear, id_summary


def read_cohort(expression: Path, clinical_path: Path, settings: BulkSettings) -> SimpleNamespace:
    """Read and check a bulk cohort's inputs before anything is written.

    Checks sample matching, identifiers, values, endpoints and their event coding, covariates, the node column and
    ``bulk_genes``; ``tmeflow run`` calls this (through :mod:`tmeflow.validate`) for every bulk row before its
    first stage.

    Parameters
    ----------
    expression
        The expression table.
    clinical_path
        The clinical table.
    settings
        The bulk settings (``bulk_species``: the samplesheet row's species when it has one).

    Returns
    -------
    SimpleNamespace
        ``clinical``, ``id_summary``, ``log_expr`` and ``linear`` (genes x tumour samples), ``endpoints``,
        ``survs``, ``covariates``, ``node``, ``genes``, ``types``, ``tmb``, ``response``, ``msi``, ``cnv``,
        ``methylation``, ``normal_expr``, ``normals``, ``normals_separate`` and ``drugs`` (None where not given).
    """
    if bool(settings.normal_expression) != bool(settings.normal_clinical):
        given, missing = (
            ("normal_expression", "normal_clinical")
            if settings.normal_expression
            else ("normal_clinical", "normal_expression")
        )
        raise TmeflowInputError(
            f"{given} needs {missing} (the normal cohort's expression and its sample table, with a "
            "cancer_type column when the cohort has cancer types)",
            file=getattr(settings, given),
        )
    probe_map = read_probe_annotation(settings.probe_annotation) if settings.probe_annotation else None
    clin, log_expr, linear, id_summary = _read_table(expression, clinical_path, settings, probe_map)
    types = cancer_types(clin, settings.cancer_type_column, clinical_path)
    states = sample_states(clin, settings.sample_type_column, clinical_path)
    normal_expr, normals = None, {}
    if states is not None:
        tumours = states.index[states == "tumour"]
        if (states == "normal").any():
            normal_expr, normals = log_expr.loc[:, states == "normal"], in_table_normals(states, types)
        if len(tumours) < len(states):
            logger.info(
                "%d normal and %d other non-tumour sample(s) left out of the tumour analyses",
                int((states == "normal").sum()),
                int(states.isna().sum()),
            )
            if len(tumours) < MIN_MATCHED_SAMPLES:
                raise TmeflowInputError(
                    f"only {len(tumours)} tumour samples (at least {MIN_MATCHED_SAMPLES} are needed)",
                    file=clinical_path,
                )
            clin, log_expr, linear = clin.loc[tumours], log_expr[tumours], linear[tumours]
            types = None if types is None else types.loc[tumours]
    if settings.normal_expression and settings.normal_clinical:
        if normals:
            logger.info(
                "the %d normals of the expression table are not compared: the separate normal cohort is",
                sum(len(s) for s in normals.values()),
            )
        normal_expr, normals = read_normal_cohort(
            Path(settings.normal_expression),
            Path(settings.normal_clinical),
            types,
            settings.cancer_type_column,
            lambda path, clinical: _read_table(path, clinical, settings, probe_map)[:2],
        )

    endpoints = detect_endpoints(clin, settings.survival_columns, settings.survival_endpoints)
    survs = {name: survival_frame(clin, name, cols, clinical_path) for name, cols in endpoints.items()}
    covariates = covariate_matrix(clin, settings.cox_covariates, clinical_path)
    if settings.node_column and settings.node_column not in clin.columns:
        raise TmeflowInputError("node_column is not a clinical column", file=clinical_path, column=settings.node_column)
    node = node_status(clin[settings.node_column], clinical_path) if settings.node_column else None
    genes = settings.genes
    absent = [g for g in genes if g not in log_expr.index]
    if absent:
        raise TmeflowInputError(
            f"gene(s) {', '.join(absent)} from bulk_genes not in the expression matrix", file=expression
        )
    tmb = None
    if settings.maf:
        maf_path = Path(settings.maf)
        tmb = tumour_mutational_burden(read_maf(maf_path), clin.index, settings.tmb_capture_mb, maf_path)
    msi = read_msi(settings.msi, clin.index) if settings.msi else None
    cnv = read_gene_table(settings.copy_number, clin.index, "CNV") if settings.copy_number else None
    methylation = read_gene_table(settings.methylation, clin.index, "methylation") if settings.methylation else None
    response = response_status(clin, settings.response_column, clinical_path)
    drugs = read_drug_inputs(settings)
    return SimpleNamespace(
        clinical=clin,
        id_summary=id_summary,
        log_expr=log_expr,
        linear=linear,
        endpoints=endpoints,
        survs=survs,
        covariates=covariates,
        node=node,
        genes=genes,
        types=types,
        tmb=tmb,
        response=response,
        msi=msi,
        cnv=cnv,
        methylation=methylation,
        normal_expr=normal_expr,
        normals=normals,
        normals_separate=bool(settings.normal_expression),
        drugs=drugs,
    )


def run_bulk(
    expression: str | Path,
    clinical: str | Path,
    outdir: str | Path,
    params: dict[str, Any],
    *,
    reference: str | Path | None = None,
    signatures: list[str | Path] | None = None,
    sample: str,
    species: str | None = None,
) -> dict[str, Any]:
    """Read the cohort, compute every score and test, then write tables, plots and MultiQC content.

    The stage entry: builds :class:`BulkSettings` once from ``params``. Probe IDs are mapped with the
    ``probe_annotation`` parameter's table when set. Every file starts with ``<sample>.`` (the samplesheet row),
    so that several cohorts share ``bulk/``; the report shows each cohort as its own tables (MultiQC ids carry
    the name).

    Parameters
    ----------
    expression
        The expression table.
    clinical
        The clinical table.
    outdir
        Output folder (``bulk/``).
    params
        The pipeline parameters (``tmeflow.params``).
    reference
        Annotated single-cell reference (h5ad) for reference signatures and NNLS deconvolution.
    signatures
        User gene-set GMT files.
    sample
        The samplesheet row's name (file prefix).
    species
        The samplesheet row's species; overrides the ``bulk_species`` parameter.

    Returns
    -------
    dict
        The run summary written to ``<sample>.bulk_summary.json``.
    """
    expression, clinical_path, outdir = Path(expression), Path(clinical), Path(outdir)
    prefix = f"{sample}."
    cohort_id = slug(sample) or "cohort"
    gmt_paths = [Path(s) for s in (signatures or [])]
    for path in gmt_paths:
        if not path.is_file():
            raise TmeflowInputError("signature GMT not found", file=path)
    species = species or params["bulk_species"]
    params = {**params, "bulk_species": species}
    settings = BulkSettings.from_params(params)
    cohort = read_cohort(expression, clinical_path, settings)
    id_summary, log_expr, linear = cohort.id_summary, cohort.log_expr, cohort.linear
    endpoints, survs, covariates, node, genes = (
        cohort.endpoints,
        cohort.survs,
        cohort.covariates,
        cohort.node,
        cohort.genes,
    )
    if not endpoints and node is None:
        logger.warning("no survival endpoint and no node_column: only scores and correlations are computed")

    profiles, markers, ref_species = None, {}, None
    if reference:
        with timed(logger, "reading reference and building the signature matrix"):
            with h5ad_on_disk(reference, "reference h5ad") as adata:  # the counts are summed in row blocks
                ref_species = species_of(adata)
                profiles = reference_profiles(adata, species, ref_species, Path(reference))
            markers = marker_genes(profiles, settings.reference_markers, log_expr.index)

    # ---- scores
    with timed(logger, f"ssGSEA on {log_expr.shape[0]} genes x {log_expr.shape[1]} samples"):
        sets, kinds = _gene_sets(settings, gmt_paths, log_expr.index, markers)
        scores = ssgsea(log_expr, sets, alpha=settings.ssgsea_alpha, normalize=settings.ssgsea_normalize).T
        estimate = estimate_scores(log_expr, species, settings.ssgsea_alpha, settings.signature_min_size)
    features = scores.copy()
    feature_kind = dict(kinds)
    for gene in genes:
        features[f"gene:{gene}"] = log_expr.loc[gene]
        feature_kind[f"gene:{gene}"] = "gene"
    if estimate is not None:
        for column in ESTIMATE_COLUMNS:
            features[f"ESTIMATE:{column}"] = estimate[column]
            feature_kind[f"ESTIMATE:{column}"] = "estimate"
    fractions = fit = None
    if profiles is not None:
        fractions, fit = deconvolve_nnls(linear, profiles, markers)
        for column in fractions.columns:
            features[f"fraction:{column}"] = fractions[column]
            feature_kind[f"fraction:{column}"] = "fraction"
    features.index.name = "sample"

    # ---- survival and node status
    surv_tables, cox_tables, all_groups = [], [], {}
    for name, surv in survs.items():
        with timed(
            logger,
            f"survival {name}: {features.shape[1]} features, {len(surv)} samples, {int(surv['event'].sum())} events",
        ):
            table, cox, groups = analyse_survival(
                features, surv, name, covariates, settings, required=tuple(f"gene:{gene}" for gene in genes)
            )
        table.insert(1, "kind", table["feature"].map(feature_kind))
        surv_tables.append(table)
        cox_tables.append(cox)
        all_groups[name] = groups
    logistic_rows = []
    if node is not None:
        for feature in features.columns:
            data = pd.DataFrame({"node": node, "score_per_sd": features[feature]})
            data["score_per_sd"] = (data["score_per_sd"] - data["score_per_sd"].mean()) / data["score_per_sd"].std()
            for model, terms in (("univariate", ["score_per_sd"]),) + (
                (("multivariate", ["score_per_sd", *covariates.columns]),) if covariates.shape[1] else ()
            ):
                res = logistic_regression(data.join(covariates), "node", terms)
                for term, trow in res.table.iterrows():
                    logistic_rows.append(
                        {
                            "feature": feature,
                            "kind": feature_kind[feature],
                            "model": model,
                            "term": term,
                            **trow.to_dict(),
                            "n": res.n,
                            "n_node_positive": res.n_positive,
                        }
                    )
    logistic = pd.DataFrame(logistic_rows)
    if len(logistic):
        focus = logistic["term"] == "score_per_sd"
        logistic["fdr"] = np.nan
        for model in logistic["model"].unique():
            sel = focus & (logistic["model"] == model)
            logistic.loc[sel, "fdr"] = bh_fdr(logistic.loc[sel, "p"])

    pancancer = None
    if cohort.types is not None:
        with timed(logger, f"pan-cancer analyses over {cohort.types.nunique()} cancer type(s)"):
            pancancer = run_pancancer(features, feature_kind, survs, cohort.types, covariates, settings)

    tmb_corr = None
    if cohort.tmb is not None:
        tmb_corr = tmb_correlations(
            features, feature_kind, cohort.tmb["tmb"], cohort.types, settings.pancancer_min_samples
        )

    molecular = {}
    if cohort.msi is not None or cohort.cnv is not None or cohort.methylation is not None:
        with timed(logger, "MSI, CNV and methylation analyses"):
            molecular = run_molecular(
                cohort, features, feature_kind, signature_genes(sets, kinds, genes), settings.pancancer_min_samples
            )

    response = None
    if cohort.response is not None:
        response = response_table(features, feature_kind, cohort.response)

    focus = focus_features({f: k for f, k in feature_kind.items() if k not in ("estimate", "fraction")})
    regulators = regulator_correlations(
        features, focus, log_expr, cohort.types, settings.pancancer_min_samples, species
    )
    drugs = None
    if cohort.drugs is not None:
        with timed(
            logger,
            f"drug sensitivity: {cohort.drugs.response.shape[1]} drugs on {cohort.drugs.response.shape[0]} cell lines",
        ):
            drugs = run_drugs(cohort.drugs, sets, lead_first(focus, feature_kind), log_expr, settings)

    tumour_normal = None
    if cohort.normals:
        with timed(logger, "tumour vs normal per cancer type"):
            tumour_normal = run_tumour_normal(
                log_expr,
                cohort.normal_expr,
                cohort.normals,
                cohort.types,
                sets,
                kinds,
                genes,
                focus,
                alpha=settings.ssgsea_alpha,
                normalize=settings.ssgsea_normalize,
            )

    correlations = None
    if estimate is not None:
        corr_features = features[[c for c in features.columns if feature_kind[c] != "estimate"]]
        correlations = spearman_table(corr_features, estimate[list(ESTIMATE_COLUMNS)])

    # ---- outputs
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    written.append(write_table(scores.reset_index(), outdir / f"{prefix}bulk_scores.tsv"))
    written.append(write_table(features.reset_index(), outdir / f"{prefix}bulk_features.tsv"))
    gene_set_table = pd.DataFrame(
        [{"gene_set": n, "kind": kinds[n], "n_genes": len(g), "genes": ",".join(g)} for n, g in sets.items()]
    )
    written.append(write_table(gene_set_table, outdir / f"{prefix}bulk_gene_sets.tsv"))
    if fractions is not None and profiles is not None:
        written.append(write_table(fractions.reset_index(), outdir / f"{prefix}bulk_deconvolution.tsv"))
        written.append(write_table(fit, outdir / f"{prefix}bulk_deconvolution_fit.tsv"))
        sig = profiles.loc[[g for g in dict.fromkeys(g for m in markers.values() for g in m)]]
        sig.index.name = "gene"
        written.append(write_table(sig.reset_index(), outdir / f"{prefix}bulk_signature_matrix.tsv"))
    if surv_tables:
        survival_table = pd.concat(surv_tables, ignore_index=True)
        cox_table = pd.concat(cox_tables, ignore_index=True)
        written.append(write_table(survival_table, outdir / f"{prefix}bulk_survival.tsv"))
        written.append(write_table(cox_table, outdir / f"{prefix}bulk_cox.tsv"))
        mqc = survival_table[
            [
                "feature",
                "endpoint",
                "kind",
                "p",
                "fdr",
                "hr_per_sd",
                "hr_per_sd_p",
                "split",
                "n_high",
                "n_low",
                "logrank_p",
                "ph_fail",
            ]
        ].copy()
        mqc.insert(0, "id", mqc["feature"] + " | " + mqc["endpoint"])
        mqc = mqc.drop(columns=["feature", "endpoint"]).sort_values(["p", "hr_per_sd_p"], kind="stable")
        p_values = ("p", "fdr", "logrank_p", "hr_per_sd_p")
        headers = survival_mqc_headers(mqc.columns[1:], p_values)
        written.append(
            write_table(
                mqc,
                outdir / f"{prefix}bulk_survival_mqc.tsv",
                header_lines=multiqc_header(
                    f"tmeflow_bulk_survival_{cohort_id}",
                    f"Bulk cohort {sample}: survival",
                    f"Per feature and endpoint, by primary p: p/fdr = {settings.cutpoint_method} high/low cut-point p "
                    "(corrected for the cut-point search when maxstat); HR per SD of the continuous score "
                    "(univariate Cox); "
                    "logrank_p = plain log-rank p at the split (not corrected for an optimised split); "
                    "ph_fail = Schoenfeld test p < ph_alpha.",
                    "table",
                    headers=headers,
                    pconfig={"id": f"tmeflow_bulk_survival_{cohort_id}_table", "sort_rows": False},
                ),
            )
        )
        with timed(logger, "survival plots"):
            written += write_survival_plots(survival_table, survs, all_groups, outdir, prefix)
        lead = lead_first(focus, feature_kind)[0]
        if cohort.response is not None and (survival_table["feature"] == lead).any():
            written.append(
                save_figure(
                    plot_immunotherapy_km(survival_table, survs, all_groups, lead),
                    outdir / f"{prefix}bulk_immunotherapy_km.png",
                )
            )
    if len(logistic):
        written.append(write_table(logistic, outdir / f"{prefix}bulk_logistic.tsv"))
    if estimate is not None:
        written.append(write_table(estimate.reset_index(), outdir / f"{prefix}bulk_estimate.tsv"))
        written.append(write_table(correlations, outdir / f"{prefix}bulk_estimate_correlation.tsv"))
        written.append(
            write_table(
                estimate.reset_index(),
                outdir / f"{prefix}bulk_estimate_mqc.tsv",
                header_lines=multiqc_header(
                    f"tmeflow_bulk_estimate_{cohort_id}",
                    f"Bulk cohort {sample}: ESTIMATE",
                    "ESTIMATE stromal/immune scores (un-normalised ssGSEA; compare samples within the cohort). Tumour "
                    "purity is not reported: its formula needs ESTIMATE's 10,412 common genes.",
                    "table",
                ),
            )
        )
        written.append(
            save_figure(plot_correlation_heatmap(correlations), outdir / f"{prefix}bulk_estimate_correlation.png")
        )
    if pancancer is not None:
        written += write_pancancer(pancancer, outdir, prefix, sample, cohort_id)
    if tumour_normal is not None and len(tumour_normal[0]):
        written += write_tumour_normal(*tumour_normal, cohort.types, cohort.normals, outdir, prefix)
    if len(regulators):
        written.append(write_table(regulators, outdir / f"{prefix}bulk_immunomodulators.tsv"))
        written.append(
            save_figure(plot_regulator_heatmap(regulators, focus), outdir / f"{prefix}bulk_immunomodulators.png")
        )
    if response is not None:
        written.append(write_table(response, outdir / f"{prefix}bulk_response.tsv"))
        written.append(
            save_figure(
                plot_response_roc(features, cohort.response, response, focus), outdir / f"{prefix}bulk_response_roc.png"
            )
        )
    if drugs is not None:
        written += write_drugs(drugs, outdir, prefix, sample, cohort_id)
    if cohort.tmb is not None:
        written.append(write_table(cohort.tmb.reset_index(), outdir / f"{prefix}bulk_tmb.tsv"))
        if tmb_corr is not None and len(tmb_corr):
            written.append(write_table(tmb_corr, outdir / f"{prefix}bulk_tmb_correlation.tsv"))
            written.append(
                save_figure(plot_tmb_correlation(tmb_corr, focus), outdir / f"{prefix}bulk_tmb_correlation.png")
            )

    if molecular or (tmb_corr is not None and len(tmb_corr)):
        written += write_molecular(molecular, tmb_corr, focus, outdir, prefix)

    summary = {
        "version": __version__,
        "cohort": sample,
        "samples": int(features.shape[0]),
        "identifiers": id_summary,
        "bulk_values": settings.bulk_values,
        "bulk_species": species,
        "reference_species": ref_species,
        "gene_sets_scored": len(sets),
        "features": int(features.shape[1]),
        "endpoints": {
            name: {
                "time": cols[0],
                "event": cols[1],
                "n": int(len(survs[name])),
                "events": int(survs[name]["event"].sum()),
            }
            for name, cols in endpoints.items()
        },
        "cox_covariates": list(covariates.columns),
        "node_column": settings.node_column or None,
        "tmb": None
        if cohort.tmb is None
        else {
            "maf": str(settings.maf),
            "capture_mb": settings.tmb_capture_mb,
            "samples_with_tmb": int(cohort.tmb["tmb"].notna().sum()),
            "match_rule": next((r for r in cohort.tmb["match_rule"] if r), ""),
            "method": "non-synonymous coding variants (maftools vc_nonSyn) per Mb of capture",
        },
        "response": None
        if cohort.response is None
        else {
            "responders": int((cohort.response == 1).sum()),
            "non_responders": int((cohort.response == 0).sum()),
            "method": "Wilcoxon rank-sum, ROC AUC with DeLong 95% CI, BH across features",
        },
        "tumour_normal": None
        if not cohort.normals
        else {
            "normals": {t: len(s) for t, s in sorted(cohort.normals.items())},
            "source": "separate normal cohort (normal_expression)"
            if cohort.normals_separate
            else "the cohort's expression table",
            "caveat": BATCH_WARNING if cohort.normals_separate else None,
            "method": "Wilcoxon rank-sum tumour vs normal per cancer type, BH across types x genes (or scores)",
        },
        "samples_with": {
            name: None
            if table is None
            else int(table.notna().to_frame().any(axis=1).sum() if table.ndim == 1 else table.notna().any(axis=1).sum())
            for name, table in (("msi", cohort.msi), ("cnv", cohort.cnv), ("methylation", cohort.methylation))
        },
        "drugs": None
        if not drugs
        else {
            "expression": str(cohort.drugs.expression),
            "response": str(cohort.drugs.source),
            "measure": drugs["measure"],
            "cell_lines": int(cohort.drugs.response.shape[0]),
            "drugs": int(cohort.drugs.response.shape[1]),
            "lead_feature": drugs["lead"],
            "drugs_fdr_below_0.05": int(
                ((drugs["correlations"]["feature"] == drugs["lead"]) & (drugs["correlations"]["fdr"] < 0.05)).sum()
            ),
            "predicted_drugs": int(drugs["predicted"].shape[1]) if "predicted" in drugs else None,
            "method": "Spearman per drug, BH across drugs; ridge (RidgeCV, per-set gene standardisation, 5-fold CV) "
            "with drug_predict",
        },
        "cancer_types": None
        if pancancer is None
        else {
            row["cancer_type"]: {"n": int(row["n"]), "analysed": bool(row["analysed"])}
            for _, row in pancancer["types"].iterrows()
        },
        "methods": {
            "ssgsea": f"GSVA ssgsea definition, alpha={settings.ssgsea_alpha}, normalize={settings.ssgsea_normalize}",
            "cutpoint": (
                f"maxstat log-rank, min_prop={settings.cutpoint_min_prop}, p corrected by "
                + (
                    f"{settings.cutpoint_permutations} permutations (seed {settings.seed}); Lau92 also reported"
                    if settings.cutpoint_permutations
                    else "Lausen & Schumacher 1992 (Lau92)"
                )
            )
            if settings.cutpoint_method == "maxstat"
            else "median split",
            "cox": "lifelines CoxPHFitter, Efron ties (one-term models by tmeflow.coxph, a numpy port of its fit that "
            "gives the same numbers); PH by Grambsch-Therneau test on scaled Schoenfeld residuals (km transform)",
            "deconvolution": "NNLS on mean-CPM signature matrix of reference marker genes"
            if profiles is not None
            else None,
        },
        "params": params,
    }
    written.append(write_json(summary, outdir / f"{prefix}bulk_summary.json"))
    logger.info(
        "bulk: %d samples, %d features, %d endpoints; %d files written",
        features.shape[0],
        features.shape[1],
        len(endpoints),
        len(written),
    )
    return summary


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow bulk`` (declared in :mod:`tmeflow.stages`)."""
    run_bulk(
        args.expression,
        args.clinical,
        args.outdir,
        params,
        reference=args.reference,
        signatures=args.signatures or [],
        sample=args.sample,
    )
