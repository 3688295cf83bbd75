"""Somatic mutations of a bulk cohort: the MAF reader, TCGA barcode matching and tumour mutational burden.

MAF (GDC Mutation Annotation Format): tab-separated, ``#`` comment lines (e.g. ``#version gdc-1.0.0``)
skipped; the columns ``Tumor_Sample_Barcode`` and ``Variant_Classification`` are required. Rows that
repeat a variant of a sample (same ``Chromosome``, ``Start_Position``, ``Reference_Allele``,
``Tumor_Seq_Allele2`` when those columns exist) are counted once.

Barcode matching (:func:`match_barcodes`): MAF barcodes are matched to the cohort's sample identifiers
exactly; when that matches fewer samples than a TCGA truncation does, both sides are truncated to the
TCGA sample (15 characters, ``TCGA-XX-XXXX-NN``) or patient (12 characters, ``TCGA-XX-XXXX``) level --
the level that matches the most samples, the finer one on a tie -- and the rule used is logged with
the number of samples matched; ``.`` separators (R's ``make.names``) read as ``-``. Two MAF aliquots
falling on one cohort sample, or two cohort samples on one truncated barcode, is an input error (not
guessed). A cohort sample with no MAF row has no TMB (NA, not 0): it may not have been sequenced.

TMB (:func:`tumour_mutational_burden`): non-synonymous coding variants per megabase of captured
sequence, ``tmb_capture_mb`` Mb (default 38 Mb, the exome size used for TCGA whole-exome TMB, e.g.
Chalmers et al. 2017, Genome Med 9:34). Non-synonymous classes are maftools' default ``vc_nonSyn``
(Mayakonda et al. 2018, Genome Res 28:1747): Frame_Shift_Del, Frame_Shift_Ins, Splice_Site,
Translation_Start_Site, Nonsense_Mutation, Nonstop_Mutation, In_Frame_Del, In_Frame_Ins,
Missense_Mutation.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..log import get_logger
from .pancancer import plot_value_correlation, value_correlations

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__package__)

REQUIRED_COLUMNS = ("Tumor_Sample_Barcode", "Variant_Classification")
VARIANT_KEY = ("Chromosome", "Start_Position", "Reference_Allele", "Tumor_Seq_Allele2")
NON_SYNONYMOUS = (
    "Frame_Shift_Del",
    "Frame_Shift_Ins",
    "Splice_Site",
    "Translation_Start_Site",
    "Nonsense_Mutation",
    "Nonstop_Mutation",
    "In_Frame_Del",
    "In_Frame_Ins",
    "Missense_Mutation",
)
TCGA_BARCODE = re.compile(r"^TCGA-[A-Z0-9]{2}-[A-Z0-9]{4}")
LEVELS = ((15, "TCGA sample (15 characters)"), (12, "TCGA patient (12 characters)"))


def read_maf(path: str | Path) -> pd.DataFrame:
    """Read a MAF (GDC mutation annotation format), every column as text.

    Parameters
    ----------
    path
        The ``maf`` file (tab-separated, ``#`` comment lines, optionally gzipped); needs
        :data:`REQUIRED_COLUMNS`.

    Returns
    -------
    DataFrame
        The MAF's rows, duplicated variants of a sample dropped (logged).
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("MAF file not found", file=path)
    try:
        maf = pd.read_csv(path, sep="\t", comment="#", dtype=str, low_memory=False)
    except Exception as exc:  # parser errors, empty files
        raise TmeflowInputError(f"cannot read MAF ({str(exc).splitlines()[0]})", file=path) from exc
    missing = [c for c in REQUIRED_COLUMNS if c not in maf.columns]
    if missing:
        raise TmeflowInputError(
            f"MAF lacks the column(s) {', '.join(missing)} (a tab-separated GDC MAF is expected)",
            file=path,
            column=missing[0],
        )
    maf = maf.dropna(subset=["Tumor_Sample_Barcode"])
    maf["Tumor_Sample_Barcode"] = maf["Tumor_Sample_Barcode"].str.strip()
    if maf.empty:
        raise TmeflowInputError("MAF has no variant rows", file=path)
    key = ["Tumor_Sample_Barcode", *[c for c in VARIANT_KEY if c in maf.columns]]
    if len(key) > 1:
        duplicated = maf.duplicated(subset=key)
        if duplicated.any():
            logger.info("MAF %s: %d repeated variant row(s) of a sample counted once", path.name, int(duplicated.sum()))
            maf = maf[~duplicated]
    logger.info("MAF %s: %d variants, %d tumour barcodes", path.name, len(maf), maf["Tumor_Sample_Barcode"].nunique())
    return maf.reset_index(drop=True)


def _normalise(barcode: str) -> str:
    """TCGA barcodes compared in upper case with ``-`` separators (R writes ``.``); others unchanged."""
    text = str(barcode).strip()
    dashed = text.upper().replace(".", "-")
    return dashed if TCGA_BARCODE.match(dashed) else text


def match_barcodes(
    barcodes: pd.Index, samples: pd.Index, source: Path, what: str = "MAF"
) -> tuple[dict[str, str], str]:
    """Match a table's sample barcodes to the cohort's samples (TCGA barcode levels, module docstring).

    Parameters
    ----------
    barcodes
        The table's sample identifiers.
    samples
        The cohort's samples.
    source
        The table's path, for messages.
    what
        Name of the table in messages (MAF, CNV, methylation, MSI).

    Returns
    -------
    tuple of (dict, str)
        Table barcode -> cohort sample, and the matching rule used (``exact`` or a barcode level). Raises
        :class:`TmeflowInputError` when the match is ambiguous.
    """
    barcodes = pd.Index(pd.unique(barcodes))
    candidates = [(None, "exact")] + list(LEVELS)
    best, best_rule, best_n = {}, "exact", -1
    for width, rule in candidates:

        def key(value: str, width: int | None = width) -> str:
            """Return the compared form of an identifier at this level."""
            norm = _normalise(value)
            return norm[:width] if width and TCGA_BARCODE.match(norm) else norm

        targets: dict[str, str] = {}
        for sample in samples:
            targets.setdefault(key(sample), str(sample))
        if len(targets) < len(
            samples
        ):  # two cohort samples are one TCGA sample/patient: this level cannot tell them apart
            continue
        mapping = {str(b): targets[key(b)] for b in barcodes if key(b) in targets}
        if len(set(mapping.values())) > best_n:
            best, best_rule, best_n = mapping, rule, len(set(mapping.values()))
    by_sample: dict[str, list[str]] = {}
    for barcode, sample in best.items():
        by_sample.setdefault(sample, []).append(barcode)
    for sample, found in by_sample.items():
        if len(found) > 1:
            raise TmeflowInputError(
                f"{what} barcodes {', '.join(sorted(found)[:3])} all match cohort sample {sample} "
                f"({best_rule}); keep one aliquot per sample",
                file=source,
                sample=sample,
            )
    return best, best_rule


def tumour_mutational_burden(maf: pd.DataFrame, samples: pd.Index, capture_mb: float, source: Path) -> pd.DataFrame:
    """Count each cohort sample's variants and its tumour mutational burden.

    Non-synonymous coding variants (:data:`NON_SYNONYMOUS`, maftools ``vc_nonSyn``) per Mb of capture (Chalmers
    et al. 2017, Genome Med). Samples without a MAF barcode get NA; the matching rule and counts are logged.

    Parameters
    ----------
    maf
        The MAF of :func:`read_maf`.
    samples
        The cohort's samples.
    capture_mb
        Captured sequence in Mb (``tmb_capture_mb``, 38 for a TCGA whole exome).
    source
        The MAF's path, for messages.

    Returns
    -------
    DataFrame
        Per cohort sample: ``barcode`` (matched MAF barcode), ``match_rule``, ``n_variants``, ``n_nonsynonymous``
        and ``tmb``.
    """
    if capture_mb <= 0:
        raise TmeflowInputError(f"tmb_capture_mb must be positive, got {capture_mb}")
    mapping, rule = match_barcodes(pd.Index(maf["Tumor_Sample_Barcode"]), samples, source)
    n_barcodes = maf["Tumor_Sample_Barcode"].nunique()
    if not mapping:
        raise TmeflowInputError(
            f"none of the {n_barcodes} MAF barcodes (e.g. {maf['Tumor_Sample_Barcode'].iloc[0]}) "
            f"matches a cohort sample (e.g. {samples[0]}), exactly or as TCGA sample/patient barcodes",
            file=source,
            column="Tumor_Sample_Barcode",
        )
    logger.info(
        "MAF %s: %d of %d barcodes matched to %d of %d cohort samples by %s",
        source.name,
        len(mapping),
        n_barcodes,
        len(set(mapping.values())),
        len(samples),
        "exact identifiers" if rule == "exact" else f"truncation to the {rule}",
    )
    kept = maf[maf["Tumor_Sample_Barcode"].isin(list(mapping))]
    nonsyn = kept["Variant_Classification"].isin(NON_SYNONYMOUS)
    counts = pd.DataFrame({"barcode": kept["Tumor_Sample_Barcode"], "nonsyn": nonsyn.astype(int)}).groupby("barcode")
    table = pd.DataFrame({"n_variants": counts.size(), "n_nonsynonymous": counts["nonsyn"].sum()})
    table["sample"] = table.index.map(mapping)
    table = table.reset_index().set_index("sample").reindex(samples)
    table.index.name = "sample"
    table["tmb"] = table["n_nonsynonymous"] / capture_mb
    unmatched = int(table["barcode"].isna().sum())
    if unmatched:
        logger.info("MAF %s: %d cohort sample(s) have no MAF barcode: TMB left NA", source.name, unmatched)
    table["match_rule"] = np.where(table["barcode"].notna(), rule, "")
    return table[["barcode", "match_rule", "n_variants", "n_nonsynonymous", "tmb"]]


# --------------------------------------------------------------------------------------------------
# Score vs TMB


def tmb_correlations(
    features: pd.DataFrame, kinds: dict[str, str], tmb: pd.Series, types: pd.Series | None, min_samples: int
) -> pd.DataFrame:
    """Correlate every score with TMB per cancer type (:func:`tmeflow.bulk.pancancer.value_correlations`).

    Parameters
    ----------
    features
        Samples x features.
    kinds
        Kind of each feature.
    tmb
        TMB per sample.
    types
        Cancer type per sample (None: the whole cohort as one type).
    min_samples
        Smallest cancer type analysed (``pancancer_min_samples``).

    Returns
    -------
    DataFrame
        One row per cancer type and feature: ``rho``, ``p``, ``n``, ``fdr`` and ``pancancer_fdr``.
    """
    return value_correlations(features, kinds, tmb, types, min_samples, "TMB")


def plot_tmb_correlation(table: pd.DataFrame, features: list[str]) -> Figure:
    """Plot the Spearman rho of each focus score with TMB per cancer type as bars; * marks pan-cancer FDR < 0.05.

    Parameters
    ----------
    table
        The table of :func:`tmb_correlations`.
    features
        The focus scores shown.

    Returns
    -------
    Figure
        Grouped bars, cancer types on the x axis.
    """
    return plot_value_correlation(table, features, "TMB")
