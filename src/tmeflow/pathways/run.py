"""The pathways stage: settings, ``run_pathways`` and the ``tmeflow pathways`` entry."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .. import io
from ..composition import check_obs, condition_order, resolve_contrasts, sample_table
from ..errors import TmeflowInputError
from ..genes import species_of
from ..log import get_logger, progress, timed
from ..settings import StageSettings
from ..signatures import ssgsea
from ..stemness import compare_conditions, cytotrace, plot_by_condition, sample_means
from .enrichment import gsea_prerank, over_representation, read_de_tables
from .gene_sets import (
    GSEA_COLUMNS,
    MIN_PSEUDOBULK_CELLS,
    ORA_COLUMNS,
    STEMNESS,
    column_name,
    pathway_collection,
    signature_sets,
)
from .plots import plot_bubbles, plot_enrichment, plot_heatmap
from .scores import log_cpm, module_scores, progeny_activities, pseudobulk_profiles

if TYPE_CHECKING:
    pass

logger = get_logger("tmeflow.pathways")


@dataclass(frozen=True)
class PathwaysSettings(StageSettings):
    """The ``comparison_options`` and ``pathways_options`` of the schema, and the seed."""

    SCHEMA_GROUPS = ("comparison_options", "pathways_options")

    contrast: str | None
    gsea_permutations: int
    gsea_min_size: int
    gsea_max_size: int
    ora_fdr: float
    ora_lfc: float
    score_ctrl_size: int
    progeny_method: str
    progeny_top: int
    seed: int


TOP_SETS_IN_REPORT = 3
GSEA_TABLE_COLUMNS = ["contrast", "cell_type", "term", "nes", "pvalue", "fdr"]


def write_gsea_table(gsea_tables: list[pd.DataFrame], path: Path) -> Path:
    """Write the top GSEA sets of each cell type and contrast as one sortable MultiQC table, lowest FDR first."""
    gsea = (
        pd.concat(gsea_tables, ignore_index=True)
        if gsea_tables
        else pd.DataFrame(columns=[*GSEA_TABLE_COLUMNS, "rank"])
    )
    table = gsea[gsea["rank"] <= TOP_SETS_IN_REPORT][GSEA_TABLE_COLUMNS].sort_values(["fdr", "pvalue"], kind="stable")
    table.insert(
        0,
        "test",
        table["contrast"].astype(str) + ": " + table["cell_type"].astype(str) + ": " + table["term"].astype(str),
    )
    return io.write_multiqc_table(
        table,
        path,
        "tmeflow_pathways_gsea",
        "Top gene sets (GSEA)",
        f"Pre-ranked GSEA of the differential-expression statistics: the {TOP_SETS_IN_REPORT} top sets "
        "per cell type and contrast, lowest FDR first (NES > 0: up in the test condition).",
    )


def run_pathways(
    input_path: str | Path, de_paths: list[str], user_gmts: list[str], outdir: str | Path, params: dict[str, Any]
) -> dict[str, Any]:
    """Run GSEA/ORA on the DE tables and ssGSEA, module scores, CytoTRACE and PROGENy on the atlas; write outputs."""
    outdir = Path(outdir)
    input_path = Path(input_path)
    settings = PathwaysSettings.from_params(params)
    # the matrices stay on disk: every per-cell score reads X (and the counts) in row blocks
    with io.h5ad_on_disk(input_path, "atlas h5ad", obsp_keys=("connectivities",)) as adata:
        check_obs(adata.obs, ("sample", "condition", "cell_type"), file=input_path)
        if "counts" not in adata.layers:
            raise TmeflowInputError(
                "atlas has no layers['counts'] (raw counts are needed for pseudobulk ssGSEA)", file=input_path
            )
        contrast = (settings.contrast or "").strip()
        pairs = (
            resolve_contrasts(adata.obs, contrast, file=input_path)
            if (contrast or len(condition_order(adata.obs)) > 1)
            else []
        )
        species = species_of(adata)
        genes = adata.var_names.astype(str)
        signatures = signature_sets(species, list(user_gmts or []), genes)
        if not signatures:
            raise TmeflowInputError(
                "no signature has at least 2 genes in the atlas; check gene identifiers and species", file=input_path
            )
        de = read_de_tables(list(de_paths or []))
        collection = pathway_collection(species)
        seed = settings.seed
        summary: dict[str, Any] = {
            "species": species,
            "signatures": {k: len(v) for k, v in signatures.items()},
            "gsea_top": {},
        }

        # ---------------------------------------------------------------- GSEA + ORA per DE table
        gsea_tables: list[pd.DataFrame] = []
        for contrast, frame in de.groupby("contrast", sort=False) if len(de) else []:
            gsea_rows, ora_rows, curves = [], [], []
            for group, sub in progress(
                frame.groupby("cell_type", sort=False),
                frame["cell_type"].nunique(),
                f"GSEA {contrast} ({settings.gsea_permutations} permutations), cell type",
                logger,
            ):
                ranking = pd.Series(sub["stat"].to_numpy(dtype=float), index=sub["gene"].astype(str))
                with timed(logger, f"GSEA {contrast}, {group} ({ranking.notna().sum()} ranked genes)"):
                    try:
                        table, result = gsea_prerank(
                            ranking,
                            collection,
                            permutations=settings.gsea_permutations,
                            min_size=settings.gsea_min_size,
                            max_size=settings.gsea_max_size,
                            seed=seed,
                        )
                    except (LookupError, ValueError) as error:  # gseapy: no set of the allowed size
                        logger.warning("GSEA %s, %s skipped: %s", contrast, group, error)
                        continue
                table.insert(0, "cell_type", group)
                table.insert(0, "contrast", contrast)
                gsea_rows.append(table[GSEA_COLUMNS])
                top = table.iloc[0]
                summary["gsea_top"][f"{contrast}:{group}"] = top["term"]
                detail = result.results.get(top["term"], {})
                if "RES" in detail:
                    curves.append(
                        (group, top["term"], float(top["nes"]), np.asarray(detail["RES"]), np.asarray(detail["hits"]))
                    )
                universe = sub.loc[sub["padj"].notna(), "gene"].astype(str).tolist()
                tested = sub[sub["padj"].notna()]
                for direction, chosen in (
                    ("up", tested["log2fc"] > settings.ora_lfc),
                    ("down", tested["log2fc"] < -settings.ora_lfc),
                ):
                    genes_list = tested.loc[chosen & (tested["padj"] < settings.ora_fdr), "gene"].astype(str).tolist()
                    ora = over_representation(
                        genes_list,
                        universe,
                        collection,
                        min_size=settings.gsea_min_size,
                        max_size=settings.gsea_max_size,
                    )
                    ora.insert(0, "direction", direction)
                    ora.insert(0, "cell_type", group)
                    ora.insert(0, "contrast", contrast)
                    ora_rows.append(ora[ORA_COLUMNS])
            gsea = pd.concat(gsea_rows, ignore_index=True) if gsea_rows else pd.DataFrame(columns=GSEA_COLUMNS)
            io.write_table(gsea, outdir / f"gsea_{contrast}.tsv")
            gsea_tables.append(gsea)
            io.write_table(
                pd.concat(ora_rows, ignore_index=True) if ora_rows else pd.DataFrame(columns=ORA_COLUMNS),
                outdir / f"ora_{contrast}.tsv",
            )
            if len(gsea):
                top_terms = gsea[gsea["rank"] <= 5]["term"].unique()
                shown = gsea[gsea["term"].isin(top_terms)].assign(
                    mlog10fdr=lambda f: -np.log10(f["fdr"].clip(lower=1e-4))
                )
                io.save_figure(
                    plot_bubbles(
                        shown, "cell_type", "term", "nes", "mlog10fdr", f"GSEA {contrast}", "NES", "-log10 FDR"
                    ),
                    outdir / f"gsea_{contrast}_bubble.png",
                )
            if curves:
                io.save_figure(
                    plot_enrichment(curves, f"GSEA {contrast}: top set per cell type"),
                    outdir / f"gsea_{contrast}_enrichment.png",
                )
        write_gsea_table(gsea_tables, outdir / "pathways_gsea_mqc.tsv")

        # ---------------------------------------------------------------- ssGSEA on pseudobulk
        conditions = condition_order(adata.obs)
        with timed(logger, f"ssGSEA of {len(signatures)} signatures on pseudobulk profiles"):
            per_sample, sample_meta = pseudobulk_profiles(adata, ["sample", "condition"], 1)
            scores = ssgsea(log_cpm(per_sample), signatures).T
            scores.columns = [column_name("ssgsea", c) for c in scores.columns]
            samples_table = pd.concat([sample_meta.reset_index(drop=True), scores.reset_index(drop=True)], axis=1)
            io.write_table(samples_table, outdir / "ssgsea_samples.tsv")
            by_condition = samples_table.groupby("condition")[list(scores.columns)].mean().T
            by_condition = by_condition[[c for c in conditions if c in by_condition.columns]]
            io.save_figure(
                plot_heatmap(by_condition, "ssGSEA (pseudobulk per sample), mean by condition"),
                outdir / "ssgsea_by_condition_heatmap.png",
            )
            per_type, type_meta = pseudobulk_profiles(adata, ["sample", "condition", "cell_type"], MIN_PSEUDOBULK_CELLS)
            type_scores = ssgsea(log_cpm(per_type), signatures).T
            type_scores.columns = [column_name("ssgsea", c) for c in type_scores.columns]
            types_table = pd.concat([type_meta.reset_index(drop=True), type_scores.reset_index(drop=True)], axis=1)
            io.write_table(types_table, outdir / "ssgsea_cell_types.tsv")
            means = types_table.groupby(["cell_type", "condition"])[list(type_scores.columns)].mean()
            means.index = [f"{t} | {c}" for t, c in means.index]
            io.save_figure(
                plot_heatmap(means.T, "ssGSEA (pseudobulk per sample x cell type), mean by cell type and condition"),
                outdir / "ssgsea_cell_types_heatmap.png",
            )

        # ---------------------------------------------------------------- per-cell scores
        with timed(logger, f"module scores of {len(signatures)} signatures on {adata.n_obs} cells"):
            score_columns = module_scores(adata, signatures, ctrl_size=settings.score_ctrl_size, seed=seed)
        with timed(logger, f"CytoTRACE on {adata.n_obs} cells"):
            stem = cytotrace(adata, seed=seed)
            for column in ("n_genes_detected", "gene_counts_signature"):
                adata.obs[column] = stem[column].to_numpy()
            adata.obs[STEMNESS] = stem["cytotrace"].to_numpy()
            score_columns.append(STEMNESS)
        stem_means = sample_means(adata.obs, STEMNESS, min_cells=MIN_PSEUDOBULK_CELLS)
        io.write_table(stem_means, outdir / "stemness_samples.tsv")
        stem_tests = compare_conditions(stem_means, sample_table(adata.obs), pairs)
        io.write_table(stem_tests, outdir / "stemness_tests.tsv")
        io.save_figure(plot_by_condition(stem_means, conditions), outdir / "stemness_by_condition.png")
        summary["stemness"] = {
            "method": "CytoTRACE (Gulati et al. 2020)",
            "tests": stem_tests.head(20).to_dict("records"),
        }
        with timed(logger, f"PROGENy activities ({settings.progeny_method}, top {settings.progeny_top})"):
            progeny_columns = progeny_activities(
                adata, species, method=settings.progeny_method, top=settings.progeny_top
            )
        meta_columns = [c for c in ("sample", "patient", "condition", "cell_type") if c in adata.obs.columns]
        cell_table = adata.obs[meta_columns + score_columns + progeny_columns].copy()
        cell_table.index.name = "cell"
        with io.atomic_path(outdir / "cell_scores.tsv.gz") as tmp:
            cell_table.to_csv(tmp, sep="\t", float_format="%.6g", compression="gzip")
        grouped = cell_table.groupby(["cell_type", "condition"], observed=True)
        means = grouped[score_columns + progeny_columns].mean()
        means.insert(0, "n_cells", grouped.size())
        io.write_table(means.reset_index(), outdir / "scores_by_cell_type.tsv")
        long = []
        for column in score_columns:
            values = cell_table.groupby(["cell_type", "condition"], observed=True)[column]
            zmean = values.mean()
            long.append(
                pd.DataFrame(
                    {
                        "group": [f"{t} | {c}" for t, c in zmean.index],
                        "score": column,
                        "mean": zmean.to_numpy(),
                        "fraction_positive": values.apply(lambda v: float((v > 0).mean())).to_numpy(),
                    }
                )
            )
        long = pd.concat(long, ignore_index=True)
        long["mean_z"] = long.groupby("score")["mean"].transform(
            lambda v: (v - v.mean()) / (v.std() if v.std() > 0 else 1.0)
        )
        io.save_figure(
            plot_bubbles(
                long,
                "score",
                "group",
                "mean_z",
                "fraction_positive",
                "Module scores by cell type and condition",
                "mean (z across groups)",
                "fraction of cells > 0",
            ),
            outdir / "module_scores_bubble.png",
        )
        adata.uns.setdefault("tmeflow", {})["pathways"] = io.provenance("pathways", params)
        # the cell table with its scores, embeddings and uns, zero genes wide: the expression matrices stay in the atlas
        # (~30 GB at 1M cells); an empty X keeps the file readable by anndata's backed mode
        cells = type(adata)(sp.csr_matrix((adata.n_obs, 0), dtype=np.float32), obs=adata.obs, obsm=dict(adata.obsm))
        cells.uns = adata.uns
        io.write_h5ad(cells, outdir / "pathways.h5ad")
        summary["cell_scores"] = score_columns + progeny_columns
        io.write_json(summary, outdir / "pathways_summary.json")
        return summary


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow pathways``."""
    run_pathways(args.input, args.de, args.signatures, args.outdir, params)
