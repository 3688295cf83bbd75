"""Differential expression per cell type between conditions (``tmeflow de``).

Input: the atlas h5ad (raw counts in ``layers['counts']``, log1p CP10k in ``X``; ``obs`` ``sample``,
``condition``, ``cell_type``, optionally ``patient`` and ``malignant``). Contrasts as in
:mod:`tmeflow.composition` (``contrast``: ``test,reference``; default rule documented there).

Groups tested: every ``cell_type`` (or those listed in ``de_cell_types``) and, when ``obs`` has a
boolean ``malignant`` column and no cell type is already the malignant label (``"Malignant"``,
:data:`tmeflow.cnv.MALIGNANT_LABEL`, written by ``tmeflow cnv``; compared case-insensitively), the
malignant cells as one more group with that label.

Guards (per group and contrast): a sample enters the test only with at least ``de_min_cells`` cells
of the group; the group is tested only when each condition keeps at least ``de_min_samples`` such
samples. Skipped groups are listed in ``de_skipped.tsv`` with the reason. A contrasted condition
with fewer than ``de_min_samples`` samples in the whole atlas is an input error (exit 2).

Methods (``de_method``)
    ``pseudobulk`` (default; Squair et al. 2021, *Nat Commun* 12:5692): raw counts summed per
    sample x group; genes with fewer than ``de_min_counts`` counts over the tested samples are
    dropped; PyDESeq2 (Muzellec et al. 2023, *Bioinformatics* 39:btad547; DESeq2 of Love et al. 2014)
    with design ``~ patient + condition`` when paired (every remaining patient has samples in both
    conditions, at least two patients), else ``~ condition``; Wald test of ``condition`` test vs
    reference, DESeq2's BH ``padj`` (independent filtering and Cooks outlier filtering as PyDESeq2
    defaults). ``stat`` is the Wald statistic, ``log2fc`` the MLE log2 fold change (not shrunk).
    ``wilcoxon``: scanpy ``rank_genes_groups`` (Wilcoxon rank-sum on the log-normalised ``X`` of the
    cells of the kept samples), Bonferroni ``padj``; ``stat`` is scanpy's z-score, ``log2fc``
    scanpy's log2 ratio of mean expression (from ``expm1(X)``). Cells are treated as independent
    replicates, so its p-values are anti-conservative (the studies' choice; pseudobulk is the sound
    default).

A gene is ``significant`` when ``padj < de_fdr`` and ``|log2fc| > de_lfc``.

Outputs (``<contrast>`` = ``<test>_vs_<reference>``): ``de_<contrast>.tsv`` (all groups; columns
``contrast, cell_type, gene, method, log2fc, stat, pvalue, padj, significant, ...``),
``pseudobulk_<contrast>.tsv.gz`` (summed counts of the samples tested per group, all genes, before the
``de_min_counts`` filter; pseudobulk only),
``de_<contrast>_volcano.png``, ``de_skipped.tsv``, ``de_summary_mqc.tsv``.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .cnv import MALIGNANT_LABEL
from .composition import (
    check_obs,
    check_samples_per_condition,
    contrast_name,
    resolve_contrasts,
    sample_table,
)
from .errors import TmeflowInputError
from .io import (
    atomic_path,
    group_sums,
    h5ad_on_disk,
    multiqc_header,
    save_figure,
    write_json,
    write_table,
)
from .log import get_logger, progress, timed
from .settings import StageSettings

if TYPE_CHECKING:
    from anndata import AnnData
    from matplotlib.figure import Figure

logger = get_logger(__name__)

MALIGNANT = MALIGNANT_LABEL  # one label for malignant cells, defined where CNV writes it
DE_COLUMNS = [
    "contrast",
    "cell_type",
    "gene",
    "method",
    "log2fc",
    "stat",
    "pvalue",
    "padj",
    "significant",
    "base_mean",
    "pct_test",
    "pct_reference",
    "n_samples_test",
    "n_samples_reference",
    "n_cells_test",
    "n_cells_reference",
    "design",
]
SKIP_COLUMNS = [
    "contrast",
    "cell_type",
    "reason",
    "n_samples_test",
    "n_samples_reference",
    "n_cells_test",
    "n_cells_reference",
]


# --------------------------------------------------------------------------------------------------
# Inputs


def check_counts(adata: AnnData, *, file: str | Path | None = None) -> None:
    """Fail with one line unless ``layers['counts']`` holds non-negative integers (checked on up to 2,000 cells).

    Parameters
    ----------
    adata
        The atlas.
    file
        Input file named in the error.
    """
    if "counts" not in adata.layers:
        raise TmeflowInputError("atlas has no layers['counts'] (raw counts are needed for pseudobulk DE)", file=file)
    block = adata.layers["counts"][: min(2000, adata.n_obs)]
    values = block.data if sp.issparse(block) else np.asarray(block).ravel()
    if values.size and (values.min() < 0 or not np.allclose(values, np.round(values))):
        raise TmeflowInputError("layers['counts'] is not raw counts (negative or non-integer values)", file=file)


def de_groups(obs: pd.DataFrame, cell_types: str | None = None) -> dict[str, np.ndarray]:
    """Mask the cells of every group to test: each cell type, and ``Malignant`` from ``obs['malignant']``.

    Parameters
    ----------
    obs
        Cell table (``cell_type``; optional boolean ``malignant``).
    cell_types
        ``de_cell_types``: comma list of the groups to keep (an unknown name is an input error); ``None``: all.

    Returns
    -------
    dict
        Group name -> boolean mask per cell, in category order.
    """
    labels = obs["cell_type"].astype(str).to_numpy()
    names = list(pd.unique(labels))
    if isinstance(obs["cell_type"].dtype, pd.CategoricalDtype):
        names = [str(c) for c in obs["cell_type"].cat.categories if str(c) in set(labels)]
    groups = {name: labels == name for name in names}
    if "malignant" in obs.columns and MALIGNANT.casefold() not in {name.casefold() for name in groups}:
        flag = obs["malignant"]
        if flag.dtype == bool or set(flag.dropna().unique()) <= {True, False}:
            mask = flag.fillna(False).astype(bool).to_numpy()
            if mask.any():
                groups[MALIGNANT] = mask
    wanted = [c.strip() for c in (cell_types or "").split(",") if c.strip()]
    if wanted:
        unknown = [c for c in wanted if c not in groups]
        if unknown:
            raise TmeflowInputError(
                f"de_cell_types names {', '.join(unknown)}, not found in obs 'cell_type' (groups: {', '.join(groups)})",
                column="cell_type",
            )
        groups = {name: groups[name] for name in wanted}
    return groups


# --------------------------------------------------------------------------------------------------
# Pseudobulk and guards


def pseudobulk(counts, sample_labels: np.ndarray, mask: np.ndarray, genes) -> tuple[pd.DataFrame, pd.Series]:
    """Sum the raw counts of the cells in ``mask`` per sample (pseudobulk; Squair et al. 2021).

    Parameters
    ----------
    counts
        Cells x genes raw counts (dense, sparse or an h5ad's backed CSR dataset), read ``ROW_BLOCK_CELLS`` of the
        group's rows at a time.
    sample_labels
        Sample per cell.
    mask
        Boolean per cell: the group's cells.
    genes
        Gene names (columns).

    Returns
    -------
    tuple
        ``(samples x genes int64 counts, cells per sample)``; only samples with cells in ``mask``.
    """
    labels = pd.Categorical(np.asarray(sample_labels)[mask])
    codes = labels.codes
    summed = group_sums(counts, codes, len(labels.categories), rows=np.flatnonzero(mask))
    frame = pd.DataFrame(
        np.rint(summed).astype(np.int64),
        index=pd.Index(labels.categories.astype(str), name="sample"),
        columns=pd.Index(genes, name=None),
    )
    n_cells = pd.Series(np.bincount(codes, minlength=len(labels.categories)), index=frame.index, name="n_cells")
    return frame, n_cells


def guard_samples(
    n_cells: pd.Series, samples: pd.DataFrame, test: str, reference: str, min_cells: int, min_samples: int
) -> tuple[list[str], str | None, dict[str, int]]:
    """Keep the samples with enough cells of the group and decide whether the group can be tested.

    Parameters
    ----------
    n_cells
        Cells of the group per sample.
    samples
        :func:`tmeflow.composition.sample_table`.
    test, reference
        The contrasted conditions.
    min_cells
        ``de_min_cells``: cells a sample needs in the group.
    min_samples
        ``de_min_samples``: kept samples each condition needs.

    Returns
    -------
    tuple
        ``(kept samples, reason to skip or None, counts of samples and cells per condition)``.
    """
    cells = n_cells.reindex(samples.index, fill_value=0)
    sub = samples[samples["condition"].isin([test, reference])]
    kept = [s for s in sub.index if cells[s] >= min_cells]
    info = {
        "n_samples_test": sum(samples.loc[s, "condition"] == test for s in kept),
        "n_samples_reference": sum(samples.loc[s, "condition"] == reference for s in kept),
        "n_cells_test": int(cells[sub.index[sub["condition"] == test]].sum()),
        "n_cells_reference": int(cells[sub.index[sub["condition"] == reference]].sum()),
    }
    short = [
        (c, info[key])
        for c, key in ((test, "n_samples_test"), (reference, "n_samples_reference"))
        if info[key] < min_samples
    ]
    if short:
        text = "; ".join(f"{c} has {n} sample(s) with >= {min_cells} cells" for c, n in short)
        return kept, f"{text} (needs {min_samples} per condition)", info
    return kept, None, info


def paired_design(samples: pd.DataFrame) -> bool:
    """Decide whether the design blocks on patient: every patient has both conditions, at least two patients.

    Parameters
    ----------
    samples
        The kept samples (``condition``, ``patient``).

    Returns
    -------
    bool
        True for ``~ patient + condition``.
    """
    per_patient = samples.groupby("patient")["condition"].nunique()
    return len(per_patient) >= 2 and bool((per_patient == 2).all()) and not (samples["patient"] == samples.index).all()


def run_pydeseq2(
    counts: pd.DataFrame, metadata: pd.DataFrame, test: str, reference: str, *, paired: bool, inference: Any = None
) -> pd.DataFrame:
    """Test ``condition`` test vs reference with PyDESeq2's Wald test (Love et al. 2014).

    Parameters
    ----------
    counts
        Samples x genes integer counts (pseudobulk).
    metadata
        ``condition`` (and ``patient`` when paired) per sample.
    test, reference
        The contrasted conditions.
    paired
        Design ``~ patient + condition``; else ``~ condition``.
    inference
        PyDESeq2's inference engine; default :class:`tmeflow.deseq.VectorizedInference` (PyDESeq2's routines
        vectorised over genes), ``pydeseq2.default_inference.DefaultInference(n_cpus=1)`` for its own per-gene loops.

    Returns
    -------
    pandas.DataFrame
        PyDESeq2's ``results_df`` (index gene; ``baseMean``, ``log2FoldChange``, ``lfcSE``, ``stat``, ``pvalue``,
        ``padj``).
    """
    from pydeseq2.dds import DeseqDataSet
    from pydeseq2.ds import DeseqStats

    from .deseq import VectorizedInference

    inference = inference if inference is not None else VectorizedInference()
    design = "~ patient + condition" if paired else "~ condition"
    meta = metadata[["condition", "patient"] if paired else ["condition"]].astype(str)
    dds = DeseqDataSet(counts=counts, metadata=meta, design=design, refit_cooks=True, inference=inference, quiet=True)
    dds.deseq2()
    stats = DeseqStats(dds, contrast=["condition", test, reference], inference=inference, quiet=True)
    stats.summary()
    return stats.results_df


def wilcoxon(adata: AnnData, test: str, reference: str) -> pd.DataFrame:
    """Test ``test`` vs ``reference`` cells by scanpy's Wilcoxon rank-sum test (log-normalised X), Bonferroni.

    Parameters
    ----------
    adata
        Cells of one group (``obs['condition']``; log-normalised ``X``).
    test, reference
        The contrasted conditions.

    Returns
    -------
    pandas.DataFrame
        Index gene; ``stat``, ``log2fc``, ``pvalue``, ``padj``, ``pct_test``, ``pct_reference``.

    Adds
    ----
    ``uns['tmeflow_de']``
        scanpy's ``rank_genes_groups`` result.
    """
    import scanpy as sc

    sc.tl.rank_genes_groups(
        adata,
        "condition",
        groups=[test],
        reference=reference,
        method="wilcoxon",
        corr_method="bonferroni",
        use_raw=False,
        pts=True,
        key_added="tmeflow_de",
    )
    frame = sc.get.rank_genes_groups_df(adata, group=test, key="tmeflow_de")
    frame = frame.rename(
        columns={
            "names": "gene",
            "scores": "stat",
            "logfoldchanges": "log2fc",
            "pvals": "pvalue",
            "pvals_adj": "padj",
            "pct_nz_group": "pct_test",
            "pct_nz_reference": "pct_reference",
        }
    )
    return frame.set_index("gene")


# --------------------------------------------------------------------------------------------------
# Plots


def plot_volcanoes(table: pd.DataFrame, title: str, lfc: float, fdr: float) -> Figure:
    """Draw one volcano per cell type of a contrast's DE table.

    Parameters
    ----------
    table
        DE results of one contrast (``cell_type``, ``gene``, ``log2fc``, ``padj``, ``significant``).
    title
        Figure title.
    lfc
        ``de_lfc``: the |log2 fold change| cut, drawn as dotted vertical lines.
    fdr
        ``de_fdr``: the adjusted-p cut, drawn as a dotted horizontal line at -log10(fdr).

    Returns
    -------
    Figure
        Up to 4 panels a row (significant genes red up, blue down; the 5 most significant named); the caller
        saves it.
    """
    from .plotting import pyplot

    plt = pyplot()

    groups = list(dict.fromkeys(table["cell_type"]))
    ncol = min(4, max(1, len(groups)))
    nrow = int(np.ceil(max(1, len(groups)) / ncol))
    fig, axes = plt.subplots(nrow, ncol, figsize=(3.2 * ncol, 3.0 * nrow), squeeze=False)
    for ax, group in zip(axes.ravel(), groups, strict=False):
        sub = table[table["cell_type"] == group]
        y = -np.log10(np.clip(sub["padj"].fillna(1.0).to_numpy(), 1e-300, 1.0))
        x = sub["log2fc"].to_numpy()
        sig = sub["significant"].to_numpy(dtype=bool)
        colour = np.where(sig & (x > 0), "#b2182b", np.where(sig & (x < 0), "#2166ac", "#bbbbbb"))
        ax.scatter(x, y, s=4, c=colour, linewidths=0)
        ax.axvline(lfc, color="k", lw=0.5, ls=":")
        ax.axvline(-lfc, color="k", lw=0.5, ls=":")
        ax.axhline(-np.log10(fdr), color="k", lw=0.5, ls=":")
        top = sub[sig].assign(y=y[sig]).nlargest(5, "y")
        for _, row in top.iterrows():
            ax.annotate(row["gene"], (row["log2fc"], row["y"]), fontsize=6)
        ax.set_title(f"{group} ({int(sig.sum())} genes)", fontsize=8)
        ax.set_xlabel("log2 fold change", fontsize=7)
        ax.set_ylabel("-log10 adjusted p", fontsize=7)
        ax.tick_params(labelsize=6)
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Stage


@dataclass(frozen=True)
class DeSettings(StageSettings):
    """The ``comparison_options`` and ``de_options`` of the schema."""

    SCHEMA_GROUPS = ("comparison_options", "de_options")

    contrast: str | None
    de_method: str
    de_min_cells: int
    de_min_samples: int
    de_min_counts: int
    de_lfc: float
    de_fdr: float
    de_cell_types: str | None


def _result_frame(
    res: pd.DataFrame, *, name: str, group: str, method: str, info: dict[str, int], design: str, fdr: float, lfc: float
) -> pd.DataFrame:
    out = pd.DataFrame(
        {
            "contrast": name,
            "cell_type": group,
            "gene": res.index.astype(str),
            "method": method,
            "log2fc": res["log2fc"].to_numpy(),
            "stat": res["stat"].to_numpy(),
            "pvalue": res["pvalue"].to_numpy(),
            "padj": res["padj"].to_numpy(),
            "base_mean": res["base_mean"].to_numpy() if "base_mean" in res else np.nan,
            "pct_test": res["pct_test"].to_numpy() if "pct_test" in res else np.nan,
            "pct_reference": res["pct_reference"].to_numpy() if "pct_reference" in res else np.nan,
            **info,
            "design": design,
        }
    )
    out["significant"] = (out["padj"] < fdr) & (out["log2fc"].abs() > lfc)
    return out[DE_COLUMNS].sort_values(["padj", "pvalue"], na_position="last", kind="stable")


def run_de(input_path: str | Path, outdir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Check the atlas, run DE for every contrast and group, write tables and plots.

    The atlas' matrices stay on disk (:func:`tmeflow.io.h5ad_on_disk`): each group's counts are summed per
    sample from its rows, a block at a time.
    """
    with h5ad_on_disk(input_path, "atlas h5ad") as adata:
        return _de_on(adata, Path(input_path), Path(outdir), DeSettings.from_params(params))


def _de_on(adata: AnnData, input_path: Path, outdir: Path, settings: DeSettings) -> dict[str, Any]:
    method = settings.de_method
    min_cells, min_samples = settings.de_min_cells, settings.de_min_samples
    check_obs(adata.obs, ("sample", "condition", "cell_type"), file=input_path)
    if method == "pseudobulk":
        check_counts(adata, file=input_path)
    samples = sample_table(adata.obs)
    pairs = resolve_contrasts(adata.obs, settings.contrast, file=input_path)
    check_samples_per_condition(samples, pairs, min_samples, f"{method} DE (de_min_samples)", file=input_path)
    groups = de_groups(adata.obs, settings.de_cell_types)
    sample_labels = adata.obs["sample"].astype(str).to_numpy()
    counts = adata.layers["counts"] if method == "pseudobulk" else None
    genes = adata.var_names.astype(str)
    skipped: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"method": method, "contrasts": {}}
    mqc_rows = []
    for test, reference in pairs:
        name = contrast_name(test, reference)
        tables, pb_tables = [], []
        for group, mask in progress(
            groups.items(), len(groups), f"{name}: {method} DE, cell-type group", logger, every_s=0
        ):
            n_cells = pd.Series(sample_labels[mask]).value_counts()
            kept, reason, info = guard_samples(n_cells, samples, test, reference, min_cells, min_samples)
            if reason:
                logger.warning("%s, %s: skipped: %s", name, group, reason)
                skipped.append({"contrast": name, "cell_type": group, "reason": reason, **info})
                continue
            kept_samples = samples.loc[kept]
            paired = paired_design(kept_samples)
            with timed(
                logger, f"{name}, {group}: {method} DE on {len(kept)} samples ({'paired' if paired else 'unpaired'})"
            ):
                if method == "pseudobulk":
                    cell_mask = mask & np.isin(sample_labels, kept)
                    pb, pb_cells = pseudobulk(counts, sample_labels, cell_mask, genes)
                    pb_full = pb.loc[kept]
                    pb = pb_full.loc[:, pb_full.sum(axis=0) >= max(1, settings.de_min_counts)]
                    if pb.shape[1] == 0:
                        skipped.append(
                            {"contrast": name, "cell_type": group, "reason": "no gene passes de_min_counts", **info}
                        )
                        continue
                    res = run_pydeseq2(pb, kept_samples, test, reference, paired=paired)
                    res = res.rename(columns={"log2FoldChange": "log2fc", "baseMean": "base_mean"})
                    design = "~ patient + condition" if paired else "~ condition"
                    meta = kept_samples.assign(n_cells=pb_cells.reindex(kept).to_numpy()).reset_index()
                    meta.insert(0, "cell_type", group)
                    pb_tables.append(pd.concat([meta.reset_index(drop=True), pb_full.reset_index(drop=True)], axis=1))
                else:
                    cell_mask = mask & np.isin(sample_labels, kept)
                    sub = adata[cell_mask].copy()
                    sub.obs["condition"] = sub.obs["condition"].astype(str).astype("category")
                    res = wilcoxon(sub, test, reference)
                    design = "cells (Wilcoxon rank-sum)"
                tables.append(
                    _result_frame(
                        res,
                        name=name,
                        group=group,
                        method=method,
                        info=info,
                        design=design,
                        fdr=settings.de_fdr,
                        lfc=settings.de_lfc,
                    )
                )
            n_up = int((tables[-1]["significant"] & (tables[-1]["log2fc"] > 0)).sum())
            n_down = int((tables[-1]["significant"] & (tables[-1]["log2fc"] < 0)).sum())
            logger.info(
                "%s, %s: %d up, %d down (padj < %g, |log2FC| > %g)",
                name,
                group,
                n_up,
                n_down,
                settings.de_fdr,
                settings.de_lfc,
            )
            mqc_rows.append({"group": f"{group} ({name})", "up": n_up, "down": n_down})
        table = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame(columns=DE_COLUMNS)
        write_table(table, outdir / f"de_{name}.tsv")
        if pb_tables:
            with atomic_path(outdir / f"pseudobulk_{name}.tsv.gz") as tmp:
                pd.concat(pb_tables, ignore_index=True).to_csv(tmp, sep="\t", index=False, compression="gzip")
        if len(table):
            save_figure(
                plot_volcanoes(table, f"{name} ({method})", settings.de_lfc, settings.de_fdr),
                outdir / f"de_{name}_volcano.png",
            )
        summary["contrasts"][name] = {
            "tested": sorted(set(table["cell_type"])),
            "significant_genes": {g: int(n) for g, n in table.groupby("cell_type")["significant"].sum().items()},
        }
    write_table(pd.DataFrame(skipped, columns=SKIP_COLUMNS), outdir / "de_skipped.tsv")
    header = multiqc_header(
        "tmeflow_de",
        "Differential expression",
        f"Genes called per cell type ({method}).",
        "bargraph",
        pconfig={"id": "tmeflow_de_plot", "title": "DE genes per cell type"},
    )
    write_table(
        pd.DataFrame(mqc_rows, columns=["group", "up", "down"]), outdir / "de_summary_mqc.tsv", header_lines=header
    )
    summary["skipped"] = skipped
    write_json(summary, outdir / "de_summary.json")
    return summary


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow de``."""
    run_de(args.input, args.outdir, params)
