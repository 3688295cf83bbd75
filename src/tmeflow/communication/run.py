"""The ``tmeflow communication`` stage.

Runs the inference and the tests and writes every output (listed in :mod:`tmeflow.communication.core`).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import pandas as pd

from ..composition import (
    check_obs,
    condition_order,
    contrast_name,
    resolve_contrasts,
    sample_table,
)
from ..errors import TmeflowInputError
from ..genes import species_of
from ..io import atomic_path, h5ad_on_disk, multiqc_header, save_figure, write_json, write_multiqc_table, write_table
from ..log import get_logger, progress, timed
from ..text import slug, split_list
from .core import (
    SKIP_COLUMNS,
    CommunicationSettings,
    check_lognorm,
    count_strength,
    liana_on,
    load_resource,
    pathway_map,
    pathway_table,
)
from .differential import differential_interactions, proportion_tests, sample_call_counts
from .plots import (
    plot_diff_dots,
    plot_pair_heatmaps,
    plot_pathway_circles,
    plot_pathway_diff_heatmap,
    plot_roles_heatmap,
)
from .signalling import pathway_tests, signalling_roles

logger = get_logger(__name__)


# Stage


def _write_gz(frame: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        frame.to_csv(tmp, sep="\t", index=False, compression="gzip", float_format="%.6g")


TOP_PATHWAYS_IN_REPORT = 15
PATHWAY_TABLE_COLUMNS = ["contrast", "pathway", "logfc", "pvalue", "fdr"]


def write_pathway_table(top_pathways: list[pd.DataFrame], path: Path) -> Path:
    """Write the top differential signalling pathways of every contrast as one sortable MultiQC table.

    Parameters
    ----------
    top_pathways
        Per contrast, its top pathway-level tests (``PATHWAY_TABLE_COLUMNS``).
    path
        The ``*_mqc.tsv`` file written.

    Returns
    -------
    pathlib.Path
        ``path``.
    """
    table = pd.concat(top_pathways, ignore_index=True) if top_pathways else pd.DataFrame(columns=PATHWAY_TABLE_COLUMNS)
    table = table[PATHWAY_TABLE_COLUMNS].copy()
    table.insert(0, "test", table["contrast"].astype(str) + ": " + table["pathway"].astype(str))
    return write_multiqc_table(
        table,
        path,
        "tmeflow_communication_pathways",
        "Differential signalling pathways",
        f"Top {TOP_PATHWAYS_IN_REPORT} pathways per contrast by p (Simes over the sample-level interaction "
        "tests of the pathway, BH); logfc = log2 summed strength, test over reference (descriptive).",
    )


def run_communication(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Check the atlas, infer interactions per condition and sample, test differences and write the outputs.

    Parameters
    ----------
    input_path
        The atlas h5ad (log1p CP10k ``X``; ``obs`` ``sample``, ``condition``, ``cell_type``).
    outdir
        The output folder (files listed in :mod:`tmeflow.communication.core`).
    params
        Parameters of the schema's ``comparison_options`` and ``communication_options`` groups and ``seed``
        (read once into :class:`CommunicationSettings`).

    Returns
    -------
    dict
        The summary written to ``communication_summary.json`` (resource, conditions, contrasts, called and
        differential counts, plotted pathways, skipped cases, cell types LIANA saw a subsample of).
    """
    settings = CommunicationSettings.from_params(params)
    outdir = Path(outdir)
    with h5ad_on_disk(input_path, "atlas h5ad") as adata:  # each inference reads its cells' rows
        check_obs(adata.obs, ("sample", "condition", "cell_type"), file=input_path)
        check_lognorm(adata, file=input_path)
        obs = adata.obs
        samples = sample_table(obs)
        conditions = condition_order(obs)
        contrast = (settings.contrast or "").strip()
        pairs = resolve_contrasts(obs, contrast, file=input_path) if (contrast or len(conditions) > 1) else []
        resource_name, resource = load_resource(
            settings.communication_resource,
            species_of(obs=obs, var_names=adata.var_names),
            adata.var_names,
            file=input_path,
        )
        pathways, pathway_source = pathway_map(resource)
        chosen = split_list(settings.communication_plot_pathways)
        unknown = [p for p in chosen if p not in set(pathways.values())]
        if unknown:
            known = sorted(set(pathways.values()) - {"other"})
            raise TmeflowInputError(
                f"communication_plot_pathways: unknown pathway(s) {', '.join(unknown)} (known: {', '.join(known[:40])}"
                f"{' ...' if len(known) > 40 else ''})",
                file=input_path,
            )
        cutoff = settings.communication_rank_cutoff
        skipped: list[dict[str, Any]] = []
        subsampled: list[dict[str, Any]] = []
        condition_labels = obs["condition"].astype(str).to_numpy()
        results = []
        for condition in conditions:
            with timed(
                logger,
                f"LIANA rank_aggregate, condition {condition} ({int((condition_labels == condition).sum())} cells)",
            ):
                res = liana_on(
                    adata,
                    condition_labels == condition,
                    resource,
                    settings,
                    scope="condition",
                    condition=condition,
                    sample="",
                    skipped=skipped,
                    subsampled=subsampled,
                )
            if res is not None:
                results.append(res)
        if not results:
            raise TmeflowInputError(
                "no condition has two cell types with at least communication_min_cells cells", file=input_path
            )
        liana = pd.concat(results, ignore_index=True)
        liana["interaction"] = liana["ligand"] + "->" + liana["receptor"]
        liana["called"] = liana["magnitude_rank"] <= cutoff
        _write_gz(liana, outdir / "communication_liana_by_condition.tsv.gz")
        summary: dict[str, Any] = {
            "resource": resource_name,
            "pathways_from": pathway_source,
            "conditions": conditions,
            "contrasts": [contrast_name(*p) for p in pairs],
            "called": {},
            "differential": {},
            "pathway_differential": {},
        }
        sample_counts = None
        if settings.communication_per_sample:
            sample_labels = obs["sample"].astype(str).to_numpy()
            per_sample = []
            with timed(logger, f"LIANA rank_aggregate per sample ({len(samples)} samples)"):
                what = f"LIANA ({settings.communication_n_perms} permutations), sample"
                for sample in progress(samples.index, len(samples), what, logger):
                    res = liana_on(
                        adata,
                        sample_labels == sample,
                        resource,
                        settings,
                        scope="sample",
                        condition=str(samples.at[sample, "condition"]),
                        sample=sample,
                        skipped=skipped,
                        subsampled=subsampled,
                    )
                    if res is not None:
                        per_sample.append(res)
            if per_sample:
                table = pd.concat(per_sample, ignore_index=True)
                table["called"] = table["magnitude_rank"] <= cutoff
                _write_gz(table, outdir / "communication_liana_by_sample.tsv.gz")
                sample_counts = sample_call_counts(table, cutoff)
        counts = count_strength(liana, cutoff)
        write_table(counts, outdir / "communication_counts.tsv")
        strength = pathway_table(liana, pathways, cutoff)
        write_table(strength.assign(pathway_source=pathway_source), outdir / "communication_pathways.tsv")
        roles = signalling_roles(strength)
        write_table(roles, outdir / "communication_roles.tsv")
        present = [c for c in conditions if c in set(counts["condition"])]
        save_figure(
            plot_pair_heatmaps(
                counts, "n_interactions", present, pairs, f"Number of interactions (magnitude_rank <= {cutoff:g})"
            ),
            outdir / "communication_counts_heatmap.png",
        )
        save_figure(
            plot_pair_heatmaps(
                counts, "strength", present, pairs, "Interaction strength (sum of lr_means of called interactions)"
            ),
            outdir / "communication_strength_heatmap.png",
        )
        if sample_counts is None:
            logger.warning(
                "source -> target proportion tests need per-sample inference (communication_per_sample); not done"
            )
        write_table(
            proportion_tests(sample_counts if sample_counts is not None else pd.DataFrame(), samples, pairs),
            outdir / "communication_proportion_tests.tsv",
        )
        for condition in present:
            summary["called"][condition] = int(liana.loc[liana["condition"] == condition, "called"].sum())
        min_cells = settings.communication_min_cells
        top_pathways: list[pd.DataFrame] = []
        for test, reference in pairs:
            name = contrast_name(test, reference)
            in_pair = obs["condition"].astype(str).isin([test, reference])
            per_condition = pd.crosstab(
                obs.loc[in_pair, "cell_type"].astype(str), obs.loc[in_pair, "condition"].astype(str)
            )
            cell_types = sorted(
                per_condition.index[
                    (per_condition.reindex(columns=[test, reference], fill_value=0) >= min_cells).all(axis=1)
                ]
            )
            with timed(logger, f"{name}: sample-level differential interactions over {len(cell_types)} cell types"):
                table, long, reason = differential_interactions(
                    adata,
                    resource,
                    pathways,
                    samples,
                    test,
                    reference,
                    cell_types,
                    min_cells=min_cells,
                    expr_prop=settings.communication_expr_prop,
                    fdr=settings.communication_fdr,
                )
            if reason:
                logger.warning("%s: differential interactions skipped: %s", name, reason)
                skipped.append(
                    {
                        "scope": "contrast",
                        "condition": name,
                        "sample": "",
                        "cell_type": "",
                        "n_cells": 0,
                        "reason": reason,
                    }
                )
            write_table(table, outdir / f"communication_diff_{name}.tsv")
            if len(long):
                _write_gz(long, outdir / f"communication_sample_scores_{name}.tsv.gz")
            if len(table):
                save_figure(
                    plot_diff_dots(table, settings.communication_top_n, f"Top differential interactions, {name}"),
                    outdir / f"communication_diff_{name}_dotplot.png",
                )
            path_table = pathway_tests(table, pathways, name, fdr=settings.communication_fdr)
            write_table(path_table, outdir / f"communication_pathway_diff_{name}.tsv")
            overall = path_table[path_table["level"] == "pathway"]
            top_pathways.append(overall.sort_values("pvalue", kind="stable").head(TOP_PATHWAYS_IN_REPORT))
            if len(overall):
                save_figure(
                    plot_pathway_diff_heatmap(
                        path_table, settings.communication_top_n, f"Differential signalling pathways, {name}"
                    ),
                    outdir / f"communication_pathway_diff_{name}_heatmap.png",
                )
            summary["pathway_differential"][name] = overall.head(10)[["pathway", "logfc", "pvalue", "fdr"]].to_dict(
                "records"
            )
            n_sig = int(table["significant"].sum()) if len(table) else 0
            logger.info(
                "%s: %d candidate interactions tested, %d with FDR < %g",
                name,
                len(table),
                n_sig,
                settings.communication_fdr,
            )
            summary["differential"][name] = {
                "tested": int(len(table)),
                "significant": n_sig,
                "top": table.head(10)[["source", "target", "interaction", "logfc", "pvalue", "fdr"]].to_dict("records")
                if len(table)
                else [],
            }
        selected, rule = choose_pathways(
            strength, summary["pathway_differential"], chosen=chosen, n_plots=settings.communication_n_pathway_plots
        )
        summary["plotted_pathways"] = {"pathways": selected, "rule": rule}
        summary["top_pathways_by_strength"] = top_pathways_by_strength(strength, present)
        _save_pathway_figures(strength, roles, selected, present, outdir)
        write_table(pd.DataFrame(skipped, columns=SKIP_COLUMNS), outdir / "communication_skipped.tsv")
        write_pathway_table(top_pathways, outdir / "communication_pathways_mqc.tsv")
        mqc = counts.groupby("condition", observed=True)[["n_interactions"]].sum()
        header = multiqc_header(
            "tmeflow_communication",
            "Cell-cell communication",
            f"Ligand-receptor interactions called by LIANA (magnitude_rank <= {cutoff:g}) per condition.",
            "bargraph",
            pconfig={"id": "tmeflow_communication_plot", "title": "Called interactions per condition"},
        )
        write_table(mqc, outdir / "communication_mqc.tsv", index=True, header_lines=header)
        summary["skipped"] = skipped
        summary["liana_subsampled"] = subsampled
        write_json(summary, outdir / "communication_summary.json")
        return summary


def choose_pathways(
    strength: pd.DataFrame, pathway_differential: dict[str, list[dict[str, Any]]], *, chosen: list[str], n_plots: int
) -> tuple[list[str], str]:
    """Choose the pathways drawn as circle plots and in the role heatmap, and say by which rule.

    Parameters
    ----------
    strength
        Per condition, pathway and source -> target strength (:func:`tmeflow.communication.pathway_table`);
        the ``other`` pathway is never chosen by rank.
    pathway_differential
        Contrast name -> its pathway-level test records, smallest p-value first (the summary's
        ``pathway_differential``); the first contrast ranks the pathways when it has any.
    chosen
        The pathways of ``communication_plot_pathways`` (kept as given when not empty).
    n_plots
        How many top pathways to choose otherwise (``communication_n_pathway_plots``).

    Returns
    -------
    tuple[list[str], str]
        The pathways, and the rule that chose them (recorded in ``communication_summary.json``):
        ``communication_plot_pathways``, else the ``n_plots`` top pathways of the first contrast's
        pathway-level test (by p-value), else, without a contrast, the ``n_plots`` strongest pathways
        (summed strength of called interactions).
    """
    ranked = strength[strength["pathway"] != "other"]
    if chosen:
        return list(chosen), "communication_plot_pathways"
    first = next(iter(pathway_differential.values()), None) if pathway_differential else None
    if first:
        return [r["pathway"] for r in first][
            :n_plots
        ], f"top {n_plots} differential pathways of {next(iter(pathway_differential))}"
    selected = list(ranked.groupby("pathway")["strength"].sum().sort_values(ascending=False).index[:n_plots])
    return selected, f"top {n_plots} pathways by strength"


def top_pathways_by_strength(
    strength: pd.DataFrame, conditions: list[str], *, top: int = 10
) -> dict[str, dict[str, float]]:
    """Rank each condition's pathways by summed strength.

    Parameters
    ----------
    strength
        Per condition, pathway and source -> target strength (:func:`tmeflow.communication.pathway_table`).
    conditions
        The conditions to report, in order.
    top
        How many pathways per condition (10 in ``communication_summary.json``).

    Returns
    -------
    dict[str, dict[str, float]]
        Condition -> pathway -> summed strength (rounded to 4 decimals), strongest first; ``other`` left out.
    """
    ranked = strength[strength["pathway"] != "other"]
    return {
        c: ranked[ranked["condition"] == c]
        .groupby("pathway")["strength"]
        .sum()
        .sort_values(ascending=False)
        .head(top)
        .round(4)
        .to_dict()
        for c in conditions
    }


def _save_pathway_figures(
    strength: pd.DataFrame, roles: pd.DataFrame, selected: list[str], conditions: list[str], outdir: Path
) -> None:
    """Save the circle plot of each selected pathway with a called interaction, and the role heatmap."""
    ranked = strength[strength["pathway"] != "other"]
    for pathway in selected:
        if pathway in set(ranked["pathway"]):
            save_figure(
                plot_pathway_circles(ranked, pathway, conditions),
                outdir / f"communication_pathway_circle_{slug(pathway)}.png",
            )
        else:
            logger.warning("pathway %s has no called interaction in any condition; no circle plot", pathway)
    shown = [p for p in selected if p in set(roles["pathway"])]
    if len(roles):
        save_figure(plot_roles_heatmap(roles, shown + ["all"], conditions), outdir / "communication_roles_heatmap.png")


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Run ``tmeflow communication``.

    Parameters
    ----------
    args
        The parsed command line (``input``, ``outdir``).
    params
        The parameters (:func:`run_communication`).
    """
    run_communication(args.input, args.outdir, params)
