"""Tumour vs normal expression of the signature genes and scores, per cancer type.

Where the normals come from (:func:`sample_states`, :func:`read_normal_cohort`):

* **the same expression table**: a clinical column (``sample_type``, or the column named by
  ``sample_type_column``) saying tumour or normal per sample (``tumour``/``tumor``/``primary``/
  ``metastatic``/``T`` vs ``normal``/``solid tissue normal``/``N``, or TCGA sample-type codes), or, without
  such a column, TCGA barcodes' sample-type code (characters 14-15 of ``TCGA-XX-XXXX-NN``: 01-09 tumour,
  10-19 normal, anything else -- e.g. 20 control, 50 cell line -- left out), reported in a log line. The
  normals (and samples of neither kind) are then left out of every other analysis of the cohort
  (scores, survival, correlations are of tumours only). Each normal belongs to its own row's cancer type.
* **a separate normal cohort** (``normal_expression`` + ``normal_clinical``, e.g. GTEx): read with the same
  identifier and value rules as the cohort (``bulk_values``), and matched to the cohort's cancer types by the
  normal clinical table's cancer-type column (``cancer_type``, or the ``cancer_type_column`` name): each
  normal sample names the cancer type(s) its tissue serves, comma-separated (e.g. GTEx colon ->
  ``COAD,READ``). Without a cancer-type column in the cohort, every normal is compared with all tumours.
  **Batch is confounded with tissue state**: every tumour-normal difference from separate cohorts also
  contains the study, protocol and processing differences between them (GTEx vs TCGA: Wang et al. 2018,
  Sci Data 5:180061, who re-processed both jointly to reduce it); it is logged as a warning and written in
  the summary. In-table normals (adjacent tissue of the same study) do not have this problem.

Tests (:func:`tumour_normal_table`), per cancer type with at least ``MIN_PER_GROUP`` tumours and normals:
two-sided Wilcoxon rank-sum (Mann-Whitney U; scipy, asymptotic with tie correction or exact for small
samples without ties) of each signature gene's log2 expression and of each focus score (ssGSEA on tumours
and normals together, so both are on one scale) between tumours and normals; ``log2fc`` = mean log2
tumour - mean log2 normal (genes); ``difference`` = mean tumour - mean normal (genes and scores).
``fdr``: Benjamini-Hochberg across all types x genes (gene rows) or types x scores (score rows).
Signature genes: those of the user's signatures when given, else of the bundled necroptosis sets, plus
``bulk_genes``.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..io import save_figure, write_table
from ..log import get_logger
from ..plotting import pyplot
from ..stats import bh_fdr
from ..text import split_list
from .mutations import TCGA_BARCODE, _normalise
from .reading import clinical_column

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__package__)

DEFAULT_COLUMN = "sample_type"
MIN_PER_GROUP = 3
ALL = "all"
NORMAL_WORDS = ("normal", "n", "healthy", "adjacent", "solid tissue normal", "blood derived normal", "nt")
TUMOUR_WORDS = ("tumour", "tumor", "t", "cancer", "primary", "metastatic", "metastasis", "recurrent", "tp", "tm")
BATCH_WARNING = (
    "normals from a separate cohort: batch (study, protocol, processing) is confounded with tissue state, "
    "so tumour-normal differences include batch effects (Wang et al. 2018, Sci Data 5:180061)"
)


# --------------------------------------------------------------------------------------------------
# Which samples are normals


def _state_of_code(code: int) -> str | float:
    """TCGA sample-type code -> tumour (01-09), normal (10-19) or NaN (controls, cell lines, ...)."""
    return "tumour" if 1 <= code <= 9 else "normal" if 10 <= code <= 19 else np.nan


def _state_of_value(value: Any, source: Path, column: str, sample: str) -> str | float:
    """One ``sample_type`` value read as tumour / normal / NaN (missing); anything else is an error."""
    if pd.isna(value) or str(value).strip() == "":
        return np.nan
    text = str(value).strip().lower().replace("_", " ")
    if text.isdigit():
        return _state_of_code(int(text))
    if text in NORMAL_WORDS or "normal" in text:
        return "normal"
    if text in TUMOUR_WORDS or any(word in text for word in ("tumour", "tumor", "metasta", "cancer", "carcinoma")):
        return "tumour"
    raise TmeflowInputError(
        f"sample type '{value}' is neither tumour nor normal (e.g. tumour, normal, TCGA code 01 or 11)",
        file=source,
        column=column,
        sample=sample,
    )


def sample_states(clinical: pd.DataFrame, column: str, source: Path) -> pd.Series | None:
    """Tell tumour from normal samples by the sample-type column or TCGA barcodes (module docstring).

    Parameters
    ----------
    clinical
        The clinical table, indexed by sample.
    column
        ``sample_type_column``; empty = the column ``sample_type`` if present, else TCGA barcodes.
    source
        The clinical table's path, for messages.

    Returns
    -------
    Series or None
        ``tumour`` / ``normal`` / NaN (other types) per sample; None when neither tells (every sample is then a
        tumour).
    """
    name = clinical_column(clinical, column, DEFAULT_COLUMN, "sample_type_column", source)
    if name is not None:
        states = pd.Series(
            [_state_of_value(v, source, name, s) for s, v in clinical[name].items()], index=clinical.index, dtype=object
        )
        rule = f"clinical column {name}"
    else:
        barcodes = [_normalise(s) for s in clinical.index]
        if not barcodes or not all(TCGA_BARCODE.match(b) and len(b) >= 15 and b[13:15].isdigit() for b in barcodes):
            return None
        states = pd.Series([_state_of_code(int(b[13:15])) for b in barcodes], index=clinical.index, dtype=object)
        rule = "TCGA barcodes' sample-type code (characters 14-15: 01-09 tumour, 10-19 normal)"
    counts = states.value_counts()
    logger.info(
        "sample types from %s: %d tumour, %d normal, %d neither (left out)",
        rule,
        int(counts.get("tumour", 0)),
        int(counts.get("normal", 0)),
        int(states.isna().sum()),
    )
    if counts.get("tumour", 0) == 0:
        raise TmeflowInputError(f"no tumour sample by {rule}", file=source, column=name)
    return states


def _type_lists(values: pd.Series) -> pd.Series:
    """Comma-separated cancer types per normal sample, as lists (empty list: none)."""
    return values.map(lambda v: split_list(str(v)) if pd.notna(v) else [])


def read_normal_cohort(
    expression: Path,
    clinical: Path,
    tumour_types: pd.Series | None,
    cancer_type_column: str,
    read_table: Callable[[Path, Path], tuple[pd.DataFrame, pd.DataFrame]],
) -> tuple[pd.DataFrame, dict[str, list[str]]]:
    """Read a separate normal cohort (e.g. GTEx) and assign its samples to the tumours' cancer types.

    Parameters
    ----------
    expression
        The ``normal_expression`` table.
    clinical
        The ``normal_clinical`` table: sample identifiers and a cancer-type column naming, comma-separated, the
        cancer type(s) each normal serves.
    tumour_types
        Cancer type per tumour (None: every normal serves all tumours).
    cancer_type_column
        The ``cancer_type_column`` parameter (empty = the column ``cancer_type``).
    read_table
        ``read_table(expression, clinical)`` reads an expression table with the cohort's rules and returns
        (clinical, log2 expression).

    Returns
    -------
    tuple of (DataFrame, dict)
        The normals' log2 expression (genes x samples) and, per cancer type of the tumours (``all`` without
        types), its normal samples.
    """
    clin, log_expr = read_table(expression, clinical)
    logger.warning("%s (%s: %d normal samples)", BATCH_WARNING, expression.name, log_expr.shape[1])
    if tumour_types is None:
        return log_expr, {ALL: list(log_expr.columns)}
    name = clinical_column(clin, cancer_type_column, "cancer_type", "cancer_type_column", clinical)
    if name is None:
        raise TmeflowInputError(
            "the normal cohort's clinical table needs a cancer_type column naming the cancer type(s) "
            "each normal serves (comma-separated), as the tumour cohort has cancer types",
            file=clinical,
            column=cancer_type_column or "cancer_type",
        )
    lists = _type_lists(clin.loc[log_expr.columns, name])
    known = set(tumour_types.dropna())
    by_type: dict[str, list[str]] = {}
    for sample, types in lists.items():
        for cancer_type in types:
            by_type.setdefault(cancer_type, []).append(sample)
    unknown = sorted(set(by_type) - known)
    if unknown:
        logger.info(
            "normal cohort %s: cancer type(s) %s not in the tumour cohort, ignored", clinical.name, ", ".join(unknown)
        )
    by_type = {t: s for t, s in by_type.items() if t in known}
    if not by_type:
        raise TmeflowInputError(
            f"no normal sample names a cancer type of the tumour cohort (e.g. {sorted(known)[0]})",
            file=clinical,
            column=name,
        )
    logger.info(
        "normal cohort %s: normals for %d of %d cancer types (%s)",
        clinical.name,
        len(by_type),
        len(known),
        ", ".join(f"{t}: {len(s)}" for t, s in sorted(by_type.items())),
    )
    return log_expr, by_type


def in_table_normals(states: pd.Series, types: pd.Series | None) -> dict[str, list[str]]:
    """Group the normals of the cohort's own table by cancer type.

    Parameters
    ----------
    states
        ``tumour`` / ``normal`` per sample (:func:`sample_states`).
    types
        Cancer type per sample (None: one group ``all``).

    Returns
    -------
    dict
        Cancer type -> its normal samples.
    """
    normals = states.index[states == "normal"]
    if types is None:
        return {ALL: list(normals)}
    assigned = types.reindex(normals).dropna()
    return {t: list(assigned.index[assigned == t]) for t in sorted(assigned.unique())}


# --------------------------------------------------------------------------------------------------
# Tests


def signature_genes(sets: dict[str, list[str]], kinds: dict[str, str], extra: list[str]) -> list[str]:
    """List the genes compared: the user signatures' genes (else the necroptosis sets'), then ``extra``, each once.

    Parameters
    ----------
    sets
        Gene sets by name.
    kinds
        Kind of each set (``user_signature``, ``necroptosis`` ...).
    extra
        Further genes (``bulk_genes``).

    Returns
    -------
    list of str
        The genes in that order, without repeats.
    """
    user = [n for n, k in kinds.items() if k == "user_signature" and n in sets]
    chosen = user or [n for n, k in kinds.items() if k == "necroptosis" and n in sets]
    return list(dict.fromkeys([g for n in chosen for g in sets[n]] + list(extra)))


def tumour_normal_table(
    values: pd.DataFrame, kinds: dict[str, str], tumour_types: pd.Series | None, normals: dict[str, list[str]]
) -> pd.DataFrame:
    """Test tumour vs normal per cancer type for every column of ``values`` (Wilcoxon rank-sum).

    Parameters
    ----------
    values
        Samples x features (tumours and normals together).
    kinds
        ``gene`` or ``score`` per column.
    tumour_types
        Cancer type per tumour (None: one type ``all``).
    normals
        Cancer type -> its normal samples.

    Returns
    -------
    DataFrame
        One row per cancer type and feature: ``kind``, ``n_tumour``, ``n_normal``, ``mean_tumour``, ``mean_normal``,
        ``difference`` (tumour - normal), ``log2fc`` (genes), ``p`` and ``fdr`` (BH across types x features of
        each kind).
    """
    from scipy.stats import mannwhitneyu

    tumour_types = (
        tumour_types
        if tumour_types is not None
        else pd.Series(ALL, index=values.index.difference([s for ss in normals.values() for s in ss]))
    )
    rows = []
    for cancer_type, normal_samples in sorted(normals.items()):
        tumours = tumour_types.index[tumour_types == cancer_type].intersection(values.index)
        normal_samples = pd.Index(normal_samples).intersection(values.index)
        if len(tumours) < MIN_PER_GROUP or len(normal_samples) < MIN_PER_GROUP:
            logger.info(
                "tumour vs normal: %s skipped: %d tumours, %d normals (< %d)",
                cancer_type,
                len(tumours),
                len(normal_samples),
                MIN_PER_GROUP,
            )
            continue
        for feature in values.columns:
            t, n = values.loc[tumours, feature].dropna(), values.loc[normal_samples, feature].dropna()
            p = mannwhitneyu(t, n, alternative="two-sided").pvalue if pd.concat([t, n]).nunique() > 1 else 1.0
            difference = float(t.mean() - n.mean())
            rows.append(
                {
                    "cancer_type": cancer_type,
                    "feature": feature,
                    "kind": kinds[feature],
                    "n_tumour": len(t),
                    "n_normal": len(n),
                    "mean_tumour": float(t.mean()),
                    "mean_normal": float(n.mean()),
                    "difference": difference,
                    "log2fc": difference if kinds[feature] == "gene" else np.nan,
                    "p": p,
                }
            )
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    table["fdr"] = np.nan
    for _, index in table.groupby("kind").groups.items():
        table.loc[index, "fdr"] = bh_fdr(table.loc[index, "p"])
    return table


def run_tumour_normal(
    tumour_expr: pd.DataFrame,
    normal_expr: pd.DataFrame,
    normals: dict[str, list[str]],
    tumour_types: pd.Series | None,
    sets: dict[str, list[str]],
    kinds: dict[str, str],
    extra_genes: list[str],
    focus: list[str],
    *,
    alpha: float,
    normalize: bool,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Compare the signature genes and the focus scores between tumours and normals per cancer type.

    The focus sets are scored by ssGSEA (Barbie et al. 2009, GSVA definition) on tumours and normals together,
    over the genes both tables have.

    Parameters
    ----------
    tumour_expr
        Tumour log2 expression, genes x samples.
    normal_expr
        Normal log2 expression, genes x samples.
    normals
        Cancer type -> its normal samples.
    tumour_types
        Cancer type per tumour (None: one type ``all``).
    sets
        Gene sets by name.
    kinds
        Kind of each set.
    extra_genes
        Further genes (``bulk_genes``).
    focus
        The focus features.
    alpha
        ssGSEA rank weight exponent (``ssgsea_alpha``).
    normalize
        Divide the scores by the range of the score matrix (``ssgsea_normalize``).

    Returns
    -------
    tuple of (DataFrame, DataFrame)
        The test table (:func:`tumour_normal_table`) and the tested values, samples x features.
    """
    from ..signatures import ssgsea

    common = tumour_expr.index.intersection(normal_expr.index)
    if len(common) < len(tumour_expr.index):
        logger.info("tumour vs normal: %d of %d cohort genes are in the normals' table", len(common), len(tumour_expr))
    combined = pd.concat(
        [tumour_expr.loc[common], normal_expr.loc[common, ~normal_expr.columns.isin(tumour_expr.columns)]], axis=1
    )
    genes = [g for g in signature_genes(sets, kinds, extra_genes) if g in common]
    score_sets = {f: [g for g in sets[f] if g in common] for f in focus if f in sets}
    scores = (
        ssgsea(
            combined,
            {f: g for f, g in score_sets.items() if g},
            alpha=alpha,
            normalize=normalize,
        ).T
        if score_sets
        else pd.DataFrame(index=combined.columns)
    )
    values = pd.concat([scores, combined.loc[genes].T], axis=1)
    value_kinds = {**{c: "score" for c in scores.columns}, **{g: "gene" for g in genes}}
    table = tumour_normal_table(values, value_kinds, tumour_types, normals)
    if len(table):
        significant = table[table["fdr"] < 0.05]
        logger.info(
            "tumour vs normal: %d genes and %d scores over %d cancer type(s); %d gene and %d score tests at FDR < 0.05",
            len(genes),
            scores.shape[1],
            table["cancer_type"].nunique(),
            int((significant["kind"] == "gene").sum()),
            int((significant["kind"] == "score").sum()),
        )
    return table, values


# --------------------------------------------------------------------------------------------------
# Figures


def _stars(fdr: float) -> str:
    """Significance marks: *** FDR < 0.001, ** < 0.01, * < 0.05."""
    return "***" if fdr < 0.001 else "**" if fdr < 0.01 else "*" if fdr < 0.05 else ""


def plot_tumour_normal_heatmap(table: pd.DataFrame) -> Figure:
    """Plot the log2 fold changes (tumour / normal) as a heatmap, signature genes x cancer types; stars: BH FDR.

    Parameters
    ----------
    table
        The table of :func:`tumour_normal_table` (its ``gene`` rows are shown).

    Returns
    -------
    Figure
        Diverging colour scale centred on 0, * FDR < 0.05, ** < 0.01, *** < 0.001.
    """
    plt = pyplot()
    genes = table[table["kind"] == "gene"]
    order = list(dict.fromkeys(genes["feature"]))
    types = sorted(genes["cancer_type"].unique())
    fc = genes.pivot(index="feature", columns="cancer_type", values="log2fc").reindex(index=order, columns=types)
    fdr = genes.pivot(index="feature", columns="cancer_type", values="fdr").reindex(index=order, columns=types)
    limit = max(0.5, float(np.nanmax(np.abs(fc.to_numpy(dtype=float)))) if fc.size else 1.0)
    fig, ax = plt.subplots(figsize=(0.5 * len(types) + 2.8, 0.22 * len(order) + 1.6))
    image = ax.imshow(fc.to_numpy(dtype=float), cmap="RdBu_r", vmin=-limit, vmax=limit, aspect="auto")
    ax.set_xticks(range(len(types)))
    ax.set_xticklabels(types, rotation=90, fontsize=7)
    ax.set_yticks(range(len(order)))
    ax.set_yticklabels(order, fontsize=6)
    for i, j in zip(*np.nonzero(fdr.notna().to_numpy()), strict=True):
        ax.text(j, i, _stars(fdr.iat[i, j]), ha="center", va="center", fontsize=6)
    fig.colorbar(image, ax=ax, label="log2 fold change, tumour / normal", shrink=0.7)
    fig.tight_layout()
    return fig


def plot_tumour_normal_scores(
    table: pd.DataFrame, values: pd.DataFrame, tumour_types: pd.Series | None, normals: dict[str, list[str]]
) -> Figure:
    """Plot each focus score by cancer type as box plots, tumour (red) vs normal (blue); stars: BH FDR.

    Parameters
    ----------
    table
        The table of :func:`tumour_normal_table` (its ``score`` rows give the stars).
    values
        Samples x features (tumours and normals).
    tumour_types
        Cancer type per tumour.
    normals
        Cancer type -> its normal samples.

    Returns
    -------
    Figure
        One row of panels per score.
    """
    plt = pyplot()
    scores = list(dict.fromkeys(table.loc[table["kind"] == "score", "feature"]))
    types = sorted(table["cancer_type"].unique())
    fig, axes = plt.subplots(
        len(scores) or 1, 1, figsize=(max(4.0, 0.8 * len(types) + 2), 2.6 * max(1, len(scores))), squeeze=False
    )
    for ax, score in zip(axes[:, 0], scores, strict=False):
        fdr = table[(table["kind"] == "score") & (table["feature"] == score)].set_index("cancer_type")["fdr"]
        for k, cancer_type in enumerate(types):
            tumours = (
                tumour_types.index[tumour_types == cancer_type]
                if tumour_types is not None
                else values.index.difference([s for ss in normals.values() for s in ss])
            )
            groups = [
                values.loc[values.index.intersection(tumours), score].dropna(),
                values.loc[values.index.intersection(normals.get(cancer_type, [])), score].dropna(),
            ]
            parts = ax.boxplot(groups, positions=[3 * k, 3 * k + 1], widths=0.8, patch_artist=True, showfliers=False)
            for patch, colour in zip(parts["boxes"], ("#d6604d", "#4393c3"), strict=False):
                patch.set_facecolor(colour)
            if cancer_type in fdr.index:
                top = max(float(g.max()) for g in groups if len(g))
                ax.text(3 * k + 0.5, top, _stars(fdr[cancer_type]), ha="center", va="bottom", fontsize=8)
        ax.set_xticks([3 * k + 0.5 for k in range(len(types))])
        ax.set_xticklabels(types, rotation=45, ha="right", fontsize=7)
        ax.set_ylabel(score, fontsize=7)
    axes[0, 0].set_title("tumour (red) vs normal (blue)", fontsize=8)
    fig.tight_layout()
    return fig


def write_tumour_normal(
    table: pd.DataFrame,
    values: pd.DataFrame,
    tumour_types: pd.Series | None,
    normals: dict[str, list[str]],
    outdir: Path,
    prefix: str,
) -> list[Path]:
    """Write the test table and its two figures (file names in docs/output.md)."""
    written = [write_table(table, outdir / f"{prefix}bulk_tumour_normal.tsv")]
    if (table["kind"] == "gene").any():
        written.append(
            save_figure(plot_tumour_normal_heatmap(table), outdir / f"{prefix}bulk_tumour_normal_heatmap.png")
        )
    if (table["kind"] == "score").any():
        written.append(
            save_figure(
                plot_tumour_normal_scores(table, values, tumour_types, normals),
                outdir / f"{prefix}bulk_tumour_normal_scores.png",
            )
        )
    return written
