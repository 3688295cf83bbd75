"""MSI, copy-number and methylation tables of a bulk cohort, and their relation to the signature.

Inputs (each optional, one table serving every bulk row of the samplesheet, like ``maf``):

* ``msi``: samples x value, first column the sample barcode, the value column ``msi_score`` or ``msi`` (any
  case), or the table's only other column (e.g. MANTIS or MSIsensor scores, Bonneville et al. 2017, JCO
  Precis Oncol 1:1).
* ``copy_number``: gene-level copy number thresholded GISTIC-style (-2 deep deletion, -1 loss, 0, 1 gain, 2
  amplification; GISTIC2 ``all_thresholded.by_genes.txt``, Mermel et al. 2011, Genome Biol 12:R41), genes x
  samples (or samples x genes); annotation columns ``Locus ID``/``Cytoband``/``Entrez_Gene_Id`` are dropped.
* ``methylation``: gene-level beta values (0-1, e.g. mean promoter beta per gene), genes x samples (or
  samples x genes).

Every table's sample barcodes are matched to the cohort with :func:`tmeflow.bulk.mutations.match_barcodes`
(exact, or TCGA barcodes truncated to 15 or 12 characters, the rule logged); a table matching no sample,
non-numeric values, CNV values outside -2..2 or betas outside 0-1 are one-line errors naming the file and
column.

Analyses, per cancer type (``all`` without a cancer-type column; types with fewer than
``pancancer_min_samples`` samples with the table skipped, logged):

* MSI: Spearman rho of every score with the MSI score (:func:`tmeflow.bulk.pancancer.value_correlations`;
  ``fdr`` within the type, ``pancancer_fdr`` across types of each feature), as for TMB;
* CNV, per signature gene: frequency of amplification (2), gain (>= 1), loss (<= -1) and deep deletion
  (-2), and the Spearman rho of the gene's copy number with its expression;
* methylation, per signature gene: Spearman rho of its beta value with its expression.
Gene-wise correlations: ``fdr`` = BH within the type across genes, ``pancancer_fdr`` = BH across types x genes.
Spearman p values use the t approximation (as R's ``cor.test``); with the 5 tied CNV levels it is slightly
liberal (5.5% of null p < 0.05 for n = 50, measured over 20,000 draws), the BH FDRs stay under 5% on nulls.

Figures: MSI correlation bars; radar plots of each score's rho with TMB and MSI per type (with at least 3
types); CNV gain/loss frequency heatmaps; a heatmap of the CNV- and methylation-expression rho.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..io import save_figure, write_table
from ..log import get_logger
from ..plotting import pyplot
from ..stats import bh_fdr
from .deconvolution import spearman_pair
from .mutations import match_barcodes
from .pancancer import plot_radar, plot_rho_panels, plot_value_correlation, value_correlations
from .reading import _read_delimited

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__package__)

ANNOTATION_COLUMNS = ("locus id", "locus_id", "cytoband", "entrez_gene_id", "entrez gene id", "gene id", "gene_id")
MSI_COLUMNS = ("msi_score", "msi")
CNV_LEVELS = (-2, -1, 0, 1, 2)


# --------------------------------------------------------------------------------------------------
# Reading


def _numeric(frame: pd.DataFrame, path: Path, what: str) -> pd.DataFrame:
    """Return the table as floats; a non-numeric value is an error naming its column."""
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & frame.notna()
    if bad.to_numpy().any():
        column = bad.any(axis=0).idxmax()
        raise TmeflowInputError(
            f"{what} table has non-numeric values (e.g. '{frame.loc[bad[column], column].iloc[0]}')",
            file=path,
            column=str(column),
        )
    return numeric.astype(float)


def _to_cohort(frame: pd.DataFrame, samples: pd.Index, path: Path, what: str) -> pd.DataFrame:
    """Rename the table's sample rows to the cohort's samples and reindex to them.

    Barcodes are matched by :func:`match_barcodes` (logged); NaN rows are samples absent from the table.
    """
    mapping, rule = match_barcodes(pd.Index(frame.index), samples, path, what)
    if not mapping:
        raise TmeflowInputError(
            f"none of the {len(frame)} {what} samples (e.g. {frame.index[0]}) matches a cohort sample "
            f"(e.g. {samples[0]}), exactly or as TCGA sample/patient barcodes",
            file=path,
        )
    logger.info(
        "%s %s: %d of %d cohort samples matched by %s",
        what,
        path.name,
        len(mapping),
        len(samples),
        "exact identifiers" if rule == "exact" else f"truncation to the {rule}",
    )
    kept = frame.loc[list(mapping)]
    kept.index = [mapping[b] for b in kept.index]
    return kept.reindex(samples)


def read_msi(path: str | Path, samples: pd.Index) -> pd.Series:
    """Read an MSI score table (first column the sample, then the score; module docstring).

    Parameters
    ----------
    path
        The ``msi`` table.
    samples
        The cohort's samples (TCGA barcodes matched at the best level).

    Returns
    -------
    Series
        MSI score per cohort sample (NaN: absent from the table).
    """
    path = Path(path)
    frame = _read_delimited(path, "MSI")
    lowered = {c.lower(): c for c in frame.columns}
    column = next((lowered[c] for c in MSI_COLUMNS if c in lowered), None)
    if column is None:
        if frame.shape[1] != 1:
            raise TmeflowInputError(
                f"MSI table needs a column msi_score (or one value column), has {', '.join(frame.columns[:4])}",
                file=path,
                column="msi_score",
            )
        column = frame.columns[0]
    values = _numeric(frame[[column]], path, "MSI")[column]
    return _to_cohort(values.to_frame(), samples, path, "MSI")[column].rename("MSI")


def read_gene_table(path: str | Path, samples: pd.Index, what: str) -> pd.DataFrame:
    """Read and validate a gene-level copy-number or methylation table (module docstring).

    Genes x samples and samples x genes are told apart by which axis matches the cohort.

    Parameters
    ----------
    path
        The ``copy_number`` (GISTIC thresholded, -2..2) or ``methylation`` (beta, 0..1) table.
    samples
        The cohort's samples.
    what
        ``"CNV"`` or ``"methylation"``: which value checks apply, and the name in messages.

    Returns
    -------
    DataFrame
        Cohort samples x genes (NaN rows: samples absent from the table).
    """
    path = Path(path)
    frame = _read_delimited(path, what)
    frame = frame.drop(columns=[c for c in frame.columns if c.lower() in ANNOTATION_COLUMNS])
    by_columns = len(match_barcodes(pd.Index(frame.columns), samples, path, what)[0])
    by_rows = len(match_barcodes(pd.Index(frame.index), samples, path, what)[0])
    if by_columns >= by_rows:
        frame = frame.T  # genes x samples (GISTIC's layout): samples in rows from here on
    frame = frame.loc[:, ~frame.columns.duplicated()]
    values = _numeric(frame.T, path, what).T  # error names the sample column of the file's layout
    observed = values.stack()
    if what == "CNV":
        bad = observed[~observed.isin(CNV_LEVELS)]
        if len(bad):
            raise TmeflowInputError(
                f"CNV values must be GISTIC thresholded levels -2, -1, 0, 1, 2 (found {bad.iloc[0]:g}); "
                "give all_thresholded.by_genes, not segment means",
                file=path,
                column=str(bad.index[0][0]),
            )
    else:
        bad = observed[(observed < 0) | (observed > 1)]
        if len(bad):
            raise TmeflowInputError(
                f"methylation values must be beta values in [0, 1] (found {bad.iloc[0]:g}; for M-values "
                "use beta = 2^M / (2^M + 1))",
                file=path,
                column=str(bad.index[0][0]),
            )
    return _to_cohort(values, samples, path, what)


# --------------------------------------------------------------------------------------------------
# Analyses


def _groups(index: pd.Index, types: pd.Series | None, min_samples: int, what: str) -> pd.Series:
    """Return the cancer type (``all`` without types) of the samples of ``index``, small types dropped (logged)."""
    groups = (types if types is not None else pd.Series("all", index=index)).reindex(index).dropna()
    sizes = groups.value_counts()
    for skipped in sorted(sizes.index[sizes < min_samples]):
        logger.info(
            "%s: %s skipped: %d samples with the table < pancancer_min_samples=%d",
            what,
            skipped,
            sizes[skipped],
            min_samples,
        )
    return groups[groups.isin(sizes.index[sizes >= min_samples])]


def cnv_frequency(cnv: pd.DataFrame, genes: list[str], groups: pd.Series) -> pd.DataFrame:
    """Count copy-number changes of the signature genes per cancer type.

    Parameters
    ----------
    cnv
        Samples x genes, GISTIC thresholded (-2..2).
    genes
        The signature genes (those absent from ``cnv`` are skipped).
    groups
        Cancer type per sample (:func:`_groups`).

    Returns
    -------
    DataFrame
        One row per cancer type and gene: ``n`` samples and the fractions amplified (2), gained (>= 1), lost
        (<= -1) and deeply deleted (-2).
    """
    rows = []
    for cancer_type in sorted(groups.unique()):
        part = cnv.loc[groups.index[groups == cancer_type], genes]
        for gene in genes:
            values = part[gene].dropna()
            rows.append(
                {
                    "cancer_type": cancer_type,
                    "feature": gene,
                    "n": len(values),
                    "amplification": float((values == 2).mean()),
                    "gain": float((values >= 1).mean()),
                    "loss": float((values <= -1).mean()),
                    "deep_deletion": float((values == -2).mean()),
                }
            )
    return pd.DataFrame(rows)


def gene_correlations(
    values: pd.DataFrame, expression: pd.DataFrame, genes: list[str], groups: pd.Series, label: str
) -> pd.DataFrame:
    """Correlate each gene's copy number or methylation with its own expression per cancer type (Spearman).

    Parameters
    ----------
    values
        Samples x genes (copy number or beta).
    expression
        Log2 expression, genes x samples.
    genes
        The signature genes tested.
    groups
        Cancer type per sample.
    label
        Name of the values (``CNV``, ``methylation``), written in the ``target`` column.

    Returns
    -------
    DataFrame
        One row per cancer type and gene (``feature``): ``target``, ``rho``, ``p``, ``n``, ``fdr`` (BH within the type)
        and ``pancancer_fdr`` (BH across types x genes).
    """
    rows = []
    for cancer_type in sorted(groups.unique()):
        members = groups.index[groups == cancer_type]
        for gene in genes:
            rho, p, n = spearman_pair(values.loc[members, gene], expression.loc[gene, members])
            rows.append({"cancer_type": cancer_type, "feature": gene, "target": label, "rho": rho, "p": p, "n": n})
    table = pd.DataFrame(rows)
    table["fdr"] = np.nan
    for _, index in table.groupby("cancer_type").groups.items():
        table.loc[index, "fdr"] = bh_fdr(table.loc[index, "p"])
    table["pancancer_fdr"] = bh_fdr(table["p"])
    return table


def run_molecular(
    cohort: Any, features: pd.DataFrame, kinds: dict[str, str], genes: list[str], min_samples: int
) -> dict[str, Any]:
    """Run every analysis of the MSI, copy-number and methylation tables the cohort has.

    Parameters
    ----------
    cohort
        The cohort of :func:`tmeflow.bulk.read_cohort` (``msi``, ``cnv``, ``methylation``: None when not given).
    features
        Samples x features (scores, genes, ESTIMATE, fractions).
    kinds
        Kind of each feature.
    genes
        The signature genes (:func:`tmeflow.bulk.normals.signature_genes`).
    min_samples
        Smallest cancer type analysed (``pancancer_min_samples``).

    Returns
    -------
    dict
        ``msi`` (score-MSI correlations), ``cnv_frequency``, ``cnv`` and ``methylation`` (gene correlations) tables, for
        the inputs given.
    """
    result: dict[str, Any] = {}
    if cohort.msi is not None:
        result["msi"] = value_correlations(features, kinds, cohort.msi, cohort.types, min_samples, "MSI")
    for name, table in (("cnv", cohort.cnv), ("methylation", cohort.methylation)):
        if table is None:
            continue
        shown = [g for g in genes if g in table.columns and g in cohort.log_expr.index]
        if not shown:
            logger.info("%s table: none of the %d signature genes is in it (and the expression)", name, len(genes))
            continue
        groups = _groups(table.dropna(how="all").index, cohort.types, min_samples, f"{name} analyses")
        if groups.empty:
            continue
        if name == "cnv":
            result["cnv_frequency"] = cnv_frequency(table, shown, groups)
        result[name] = gene_correlations(
            table, cohort.log_expr, shown, groups, "CNV" if name == "cnv" else "methylation"
        )
        significant = result[name][result[name]["pancancer_fdr"] < 0.05]
        logger.info(
            "%s vs expression: %d signature genes x %d cancer type(s), %d at pan-cancer FDR < 0.05",
            name,
            len(shown),
            groups.nunique(),
            len(significant),
        )
    return result


# --------------------------------------------------------------------------------------------------
# Figures and outputs


def plot_cnv_frequency(table: pd.DataFrame) -> Figure:
    """Plot the gain (>= 1) and loss (<= -1) frequencies as heatmaps, signature genes x cancer types.

    Parameters
    ----------
    table
        The table of :func:`cnv_frequency`.

    Returns
    -------
    Figure
        Two panels (gain in reds, loss in blues).
    """
    plt = pyplot()
    genes = list(dict.fromkeys(table["feature"]))
    types = sorted(table["cancer_type"].unique())
    fig, axes = plt.subplots(1, 2, figsize=(2 * (0.45 * len(types) + 2.2), 0.22 * len(genes) + 1.8), squeeze=False)
    for ax, (column, cmap) in zip(axes[0], (("gain", "Reds"), ("loss", "Blues")), strict=True):
        values = table.pivot(index="feature", columns="cancer_type", values=column).reindex(index=genes, columns=types)
        image = ax.imshow(
            values.to_numpy(dtype=float),
            cmap=cmap,
            vmin=0,
            vmax=max(0.05, float(np.nanmax(values.to_numpy()))),
            aspect="auto",
        )
        ax.set_xticks(range(len(types)))
        ax.set_xticklabels(types, rotation=90, fontsize=7)
        ax.set_yticks(range(len(genes)))
        ax.set_yticklabels(genes if ax is axes[0][0] else [], fontsize=6)
        ax.set_title(f"copy-number {column} frequency", fontsize=8)
        fig.colorbar(image, ax=ax, shrink=0.7)
    fig.tight_layout()
    return fig


def plot_gene_correlations(tables: list[pd.DataFrame]) -> Figure:
    """Plot the CNV- and methylation-expression rho as heatmaps, signature genes x cancer types.

    Parameters
    ----------
    tables
        Tables of :func:`gene_correlations`, one panel each.

    Returns
    -------
    Figure
        One panel per table, * where the pan-cancer FDR < 0.05, one shared colour bar.
    """
    genes = list(dict.fromkeys(g for t in tables for g in t["feature"]))
    types = sorted(set().union(*(set(t["cancer_type"]) for t in tables)))
    titles = {"CNV": "copy number vs expression", "methylation": "methylation vs expression"}
    return plot_rho_panels(
        [(titles[t["target"].iloc[0]], t) for t in tables],
        ("feature", genes),
        ("cancer_type", types),
        figsize=(len(tables) * (0.45 * len(types) + 1.6) + 2.5, 0.22 * len(genes) + 2.2),
        fontsizes=(6, 8, 7),
        shrink=0.7,
    )


def write_molecular(
    result: dict[str, Any], tmb_corr: pd.DataFrame | None, focus: list[str], outdir: Path, prefix: str
) -> list[Path]:
    """Write the tables and figures of :func:`run_molecular` and the TMB/MSI radar plot (names in docs/output.md)."""
    written = []
    msi = result.get("msi")
    if msi is not None and len(msi):
        written.append(write_table(msi, outdir / f"{prefix}bulk_msi_correlation.tsv"))
        written.append(
            save_figure(plot_value_correlation(msi, focus, "MSI"), outdir / f"{prefix}bulk_msi_correlation.png")
        )
    radar = {label: t for label, t in (("TMB", tmb_corr), ("MSI", msi)) if t is not None and len(t)}
    if radar and len(set().union(*(set(t["cancer_type"]) for t in radar.values()))) >= 3:
        written.append(save_figure(plot_radar(radar, focus), outdir / f"{prefix}bulk_tmb_msi_radar.png"))
    if "cnv_frequency" in result:
        written.append(write_table(result["cnv_frequency"], outdir / f"{prefix}bulk_cnv_frequency.tsv"))
        written.append(
            save_figure(plot_cnv_frequency(result["cnv_frequency"]), outdir / f"{prefix}bulk_cnv_frequency.png")
        )
    correlations = [result[name] for name in ("cnv", "methylation") if name in result]
    for name in ("cnv", "methylation"):
        if name in result:
            written.append(write_table(result[name], outdir / f"{prefix}bulk_{name}_expression.tsv"))
    if correlations:
        written.append(
            save_figure(plot_gene_correlations(correlations), outdir / f"{prefix}bulk_molecular_correlation.png")
        )
    return written
