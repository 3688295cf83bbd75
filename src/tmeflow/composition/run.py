"""The composition stage: ``run_composition`` and the ``tmeflow composition`` entry."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import TmeflowInputError
from ..io import multiqc_header, read_h5ad_parts, save_figure, write_json, write_multiqc_table, write_table
from ..log import get_logger, timed
from ..settings import StageSettings
from .contrasts import (
    LEVELS,
    MIN_SAMPLES_DA,
    cell_counts,
    check_obs,
    check_samples_per_condition,
    condition_order,
    contrast_name,
    is_paired,
    resolve_contrasts,
    sample_table,
)
from .plots import plot_boxes, plot_stacked
from .propeller import propeller

logger = get_logger("tmeflow.composition")

DA_TABLE_COLUMNS = [
    "level",
    "contrast",
    "cell_type",
    "mean_prop_test",
    "mean_prop_reference",
    "prop_ratio",
    "pvalue",
    "fdr",
]


def write_da_table(da_tables: list[pd.DataFrame], path: Path) -> Path:
    """Write every level's and contrast's propeller results as one sortable MultiQC table, lowest FDR first."""
    table = pd.concat(da_tables, ignore_index=True) if da_tables else pd.DataFrame(columns=DA_TABLE_COLUMNS)
    table = table[DA_TABLE_COLUMNS].sort_values(["fdr", "pvalue"], kind="stable")
    table.insert(0, "test", table["level"] + ": " + table["contrast"] + ": " + table["cell_type"].astype(str))
    return write_multiqc_table(
        table,
        path,
        "tmeflow_composition_da",
        "Differential abundance",
        "propeller tests of cell-type proportions (samples as replicates), every level and contrast, lowest FDR first.",
    )


@dataclass(frozen=True)
class CompositionSettings(StageSettings):
    """The ``comparison_options`` and ``composition_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("comparison_options", "composition_options")

    contrast: str | None
    da_transform: str
    da_moderated: bool
    da_fdr: float
    da_nhood: bool
    da_nhood_prop: float
    da_max_nhoods: int
    seed: int


def run_composition(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Read the atlas obs, check it, compute proportions and DA for every contrast; write outputs."""
    outdir = Path(outdir)
    settings = CompositionSettings.from_params(params)
    obs = read_h5ad_parts(input_path, "atlas h5ad").obs
    check_obs(obs, ("sample", "condition", "cell_type"), file=input_path)
    samples = sample_table(obs)
    pairs = resolve_contrasts(obs, settings.contrast, file=input_path)
    for test, reference in pairs:
        if not is_paired(samples, test, reference):
            check_samples_per_condition(
                samples,
                [(test, reference)],
                MIN_SAMPLES_DA,
                "the differential-abundance test (unpaired)",
                file=input_path,
            )
        else:
            check_samples_per_condition(
                samples,
                [(test, reference)],
                MIN_SAMPLES_DA,
                "the differential-abundance test (paired)",
                file=input_path,
            )
    conditions = condition_order(obs)
    transform, moderated, fdr_cut = settings.da_transform, settings.da_moderated, settings.da_fdr
    levels = {level: key for level, key in LEVELS.items() if key in obs.columns and obs[key].notna().all()}
    if LEVELS["fine"] in obs.columns and "fine" not in levels:
        logger.warning("obs '%s' has missing values; fine-level composition skipped", LEVELS["fine"])
    summary: dict[str, Any] = {
        "contrasts": [contrast_name(*p) for p in pairs],
        "levels": list(levels),
        "significant": {},
    }
    da_tables: list[pd.DataFrame] = []
    for level, key in levels.items():
        with timed(logger, f"composition ({level}: {key})"):
            counts = cell_counts(obs, key)
            props = counts.div(counts.sum(axis=1), axis=0)
            table = counts.copy()
            table.insert(0, "condition", samples.loc[table.index, "condition"])
            table.insert(1, "patient", samples.loc[table.index, "patient"])
            write_table(table, outdir / f"composition_{level}_counts.tsv", index=True)
            long = counts.stack().rename("n_cells").reset_index().rename(columns={"level_1": "cell_type"})
            long.columns = ["sample", "cell_type", "n_cells"]
            long["n_total"] = long["sample"].map(counts.sum(axis=1))
            long["proportion"] = long["n_cells"] / long["n_total"]
            long["condition"] = long["sample"].map(samples["condition"])
            long["patient"] = long["sample"].map(samples["patient"])
            write_table(
                long[["sample", "patient", "condition", "cell_type", "n_cells", "n_total", "proportion"]],
                outdir / f"composition_{level}_proportions.tsv",
            )
            first_da = None
            for test, reference in pairs:
                da = propeller(counts, samples, test, reference, transform=transform, moderated=moderated)
                da["significant"] = da["fdr"] < fdr_cut
                name = contrast_name(test, reference)
                write_table(da, outdir / f"da_{level}_{name}.tsv")
                da_tables.append(da.assign(level=level))
                called = da.loc[da["significant"], "cell_type"].tolist()
                summary["significant"][f"{level}:{name}"] = called
                logger.info(
                    "%s %s: %d of %d cell types differ (FDR < %g; %s, %s)%s",
                    level,
                    name,
                    len(called),
                    len(da),
                    fdr_cut,
                    da["design"].iat[0],
                    "moderated" if moderated else "ordinary t",
                    f": {', '.join(called)}" if called else "",
                )
                first_da = da if first_da is None else first_da
            save_figure(
                plot_stacked(props, samples, conditions, f"Cell-type composition ({key})"),
                outdir / f"composition_{level}_stacked.png",
            )
            save_figure(
                plot_boxes(
                    props,
                    samples,
                    conditions,
                    first_da,
                    f"Proportions per sample ({key}); FDR: {summary['contrasts'][0]}",
                ),
                outdir / f"composition_{level}_boxplot.png",
            )
            if level == "major":
                header = multiqc_header(
                    "tmeflow_composition",
                    "Cell-type composition",
                    "Proportion of each major cell type per sample.",
                    "bargraph",
                    pconfig={
                        "id": "tmeflow_composition_plot",
                        "title": "Cell-type composition",
                        "cpswitch_c_active": False,
                    },
                )
                write_table(counts, outdir / "composition_mqc.tsv", index=True, header_lines=header)
    write_da_table(da_tables, outdir / "composition_da_mqc.tsv")
    if settings.da_nhood:
        summary["significant_neighbourhoods"] = _neighbourhood_da(input_path, obs, samples, pairs, outdir, settings)
    write_json(summary, outdir / "composition_summary.json")
    return summary


def _neighbourhood_da(
    input_path: str | Path,
    obs: pd.DataFrame,
    samples: pd.DataFrame,
    pairs: list[tuple[str, str]],
    outdir: Path,
    settings: CompositionSettings,
) -> dict[str, int]:
    """Milo-style neighbourhood DA (:mod:`tmeflow.neighbourhood_da`); tables and beeswarms per contrast."""
    from ..neighbourhood_da import EMBEDDINGS, neighbourhood_da, plot_beeswarm

    embeddings = read_h5ad_parts(input_path, "atlas h5ad", obsm_keys=EMBEDDINGS).obsm
    if not embeddings:
        logger.warning(
            "atlas has no integrated embedding (%s, written by tmeflow integrate); neighbourhood DA skipped",
            ", ".join(EMBEDDINGS),
        )
        return {}
    try:
        with timed(logger, "neighbourhood DA (Milo-style)"):
            import anndata as ad

            embedding = ad.AnnData(obs=obs[["sample", "cell_type"]], obsm=dict(embeddings))
            tables = neighbourhood_da(
                embedding,
                samples,
                pairs,
                prop=settings.da_nhood_prop,
                max_nhoods=settings.da_max_nhoods,
                fdr=settings.da_fdr,
                moderated=settings.da_moderated,
                seed=settings.seed,
            )
    except TmeflowInputError as error:
        raise TmeflowInputError(error.message, file=input_path, column=error.column) from error
    for name, table in tables.items():
        write_table(table, outdir / f"da_nhood_{name}.tsv")
        save_figure(
            plot_beeswarm(
                table, settings.da_fdr, f"Neighbourhood DA {name} (spatial FDR < {settings.da_fdr:g} coloured)"
            ),
            outdir / f"da_nhood_{name}.png",
        )
    return {name: int((table["spatial_fdr"] < settings.da_fdr).sum()) for name, table in tables.items()}


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow composition``."""
    run_composition(args.input, args.outdir, params)
