"""Sample-level tests of ``tmeflow communication``.

Source -> target proportion tests and differential interactions between conditions (the method is described in
:mod:`tmeflow.communication.core`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp
from anndata import AnnData

from ..composition import (
    contrast_name,
)
from ..io import group_sums, read_rows
from ..log import get_logger
from ..stats import bh_fdr, condition_contrast, moderated_by_pattern

logger = get_logger(__name__)


PSEUDO = 0.1  # added to the sample-level expr_prod (log1p CP10k units squared) before log2
MIN_SAMPLES = 2  # per condition, for the differential test
DIFF_COLUMNS = [
    "contrast", "source", "target", "ligand", "receptor", "interaction", "pathway", "logfc", "t", "df", "pvalue", "fdr",
    "significant", "mean_score_test", "mean_score_reference", "n_samples_test", "n_samples_reference", "design",
]  # fmt: skip


PROPORTION_COLUMNS = [
    "comparison",
    "condition",
    "contrast",
    "source",
    "target",
    "fraction",
    "fraction_other",
    "other",
    "estimate",
    "t",
    "df",
    "pvalue",
    "fdr",
    "n_samples",
    "design",
]


def sample_call_counts(per_sample: pd.DataFrame, cutoff: float) -> pd.DataFrame:
    """Count the interactions LIANA tested and called per sample and source -> target.

    Parameters
    ----------
    per_sample
        Per-sample LIANA results (``sample``, ``condition``, ``source``, ``target``, ``magnitude_rank``).
    cutoff
        An interaction is called when ``magnitude_rank <= cutoff``.

    Returns
    -------
    pandas.DataFrame
        Columns ``sample, condition, source, target, n_tested, n_interactions``.
    """
    called = (per_sample["magnitude_rank"] <= cutoff).astype(int)
    grouped = per_sample.assign(called=called).groupby(["sample", "condition", "source", "target"], observed=True)[
        "called"
    ]
    return pd.concat([grouped.size().rename("n_tested"), grouped.sum().rename("n_interactions")], axis=1).reset_index()


def proportion_tests(counts: pd.DataFrame, samples: pd.DataFrame, pairs: list[tuple[str, str]]) -> pd.DataFrame:
    """Test source -> target called fractions with samples as the units.

    Interactions of one sample are not independent trials (they share cells, genes and pathways), so
    the unit is the sample: per sample the called fraction ``k / n`` of a source -> target pair is
    arcsine-square-root transformed (propeller's ``asin`` transform, Phipson et al. 2022) and
    ``within_condition``: the per-sample difference to the fraction of every other source -> the same
    target is tested against 0 over the samples of the condition (moderated one-sample t-test);
    ``between_conditions``: the transformed fractions are compared between the contrasted conditions
    (moderated t-test, paired by patient when every patient has both; :func:`tmeflow.stats.condition_contrast`).
    At least two samples (per condition) are needed. BH FDR per condition / contrast.

    Parameters
    ----------
    counts
        Per-sample tested and called counts (:func:`sample_call_counts`); empty: no test.
    samples
        One row per sample (index: sample) with ``condition`` (and ``patient``)
        (:func:`tmeflow.composition.sample_table`).
    pairs
        The (test, reference) condition pairs to contrast.

    Returns
    -------
    pandas.DataFrame
        ``PROPORTION_COLUMNS``: comparison, condition, contrast, source, target, ``fraction`` /
        ``fraction_other`` (mean per-sample fractions), other, estimate, t, df, pvalue, fdr, n_samples, design.
    """
    if not len(counts):
        return pd.DataFrame(columns=PROPORTION_COLUMNS)
    frac = counts.assign(fraction=counts["n_interactions"] / counts["n_tested"])
    totals = counts.groupby(["sample", "target"], observed=True)[["n_interactions", "n_tested"]].transform("sum")
    other_n = totals["n_tested"] - counts["n_tested"]
    frac["fraction_other"] = np.where(
        other_n > 0, (totals["n_interactions"] - counts["n_interactions"]) / other_n.clip(lower=1), np.nan
    )
    wide = frac.pivot_table(index="sample", columns=["source", "target"], values="fraction", observed=True)
    wide_other = frac.pivot_table(index="sample", columns=["source", "target"], values="fraction_other", observed=True)
    asin = np.arcsin(np.sqrt(wide))
    parts = []
    for condition, block in samples.groupby("condition", sort=False):
        keep = [s for s in block.index if s in wide.index]
        if len(keep) < 2:
            continue
        diff = asin.loc[keep] - np.arcsin(np.sqrt(wide_other.loc[keep]))
        diff = diff.loc[:, diff.notna().sum() >= 2]
        fit = moderated_by_pattern(diff, lambda k: (np.ones((len(k), 1)), 0, "~ 1") if len(k) >= 2 else None)
        fit["fraction"] = wide.loc[keep].mean().reindex(fit.index)
        fit["fraction_other"] = wide_other.loc[keep].mean().reindex(fit.index)
        fit = fit.assign(
            comparison="within_condition", condition=condition, contrast="", other="other sources -> same target"
        )
        fit["fdr"] = bh_fdr(fit["pvalue"])
        parts.append(fit)
    for test, reference in pairs:
        fit = condition_contrast(asin, samples, test, reference, min_samples=MIN_SAMPLES)
        is_test = samples.loc[asin.index, "condition"].to_numpy() == test
        is_ref = samples.loc[asin.index, "condition"].to_numpy() == reference
        fit["fraction"] = wide[is_test].mean().reindex(fit.index)
        fit["fraction_other"] = wide[is_ref].mean().reindex(fit.index)
        fit = fit.assign(
            comparison="between_conditions", condition=test, contrast=contrast_name(test, reference), other=reference
        )
        fit["fdr"] = bh_fdr(fit["pvalue"])
        parts.append(fit.drop(columns=["n_samples_test", "n_samples_reference"]))
    parts = [p for p in parts if len(p)]
    if not parts:
        return pd.DataFrame(columns=PROPORTION_COLUMNS)
    table = pd.concat(parts)
    table.index = pd.MultiIndex.from_tuples(list(table.index), names=["source", "target"])
    return table.reset_index()[PROPORTION_COLUMNS]


# --------------------------------------------------------------------------------------------------
# Sample-level differential interactions


def group_means(X, labels: np.ndarray) -> tuple[list[str], np.ndarray, np.ndarray, np.ndarray]:
    """Average a matrix and count its non-zero fraction per label.

    Parameters
    ----------
    X
        Cells x genes, dense or sparse.
    labels
        One label per cell.

    Returns
    -------
    tuple[list[str], numpy.ndarray, numpy.ndarray, numpy.ndarray]
        The labels in category order, their means (labels x genes), non-zero fractions (labels x genes)
        and cell counts.
    """
    cat = pd.Categorical(labels)
    n = np.bincount(cat.codes, minlength=len(cat.categories))
    sums = group_sums(X, cat.codes, len(cat.categories))
    nonzero = group_sums((X != 0).astype(np.float32), cat.codes, len(cat.categories))
    with np.errstate(invalid="ignore", divide="ignore"):
        return [str(c) for c in cat.categories], sums / n[:, None], nonzero / n[:, None], n


def complex_values(values: np.ndarray, gene_index: dict[str, int], entries: list[str]) -> np.ndarray:
    """Take each complex's value as the minimum over its subunits (LIANA's convention).

    Parameters
    ----------
    values
        Groups x genes.
    gene_index
        Gene -> column of ``values``.
    entries
        Ligands or receptors; complexes are ``A_B``.

    Returns
    -------
    numpy.ndarray
        Groups x entries; NaN where a subunit is missing from ``gene_index``.
    """
    out = np.full((values.shape[0], len(entries)), np.nan)
    for j, entry in enumerate(entries):
        idx = [gene_index.get(g) for g in entry.split("_")]
        if all(i is not None for i in idx):
            out[:, j] = values[:, idx].min(axis=1)
    return out


def differential_interactions(
    adata: AnnData,
    resource: pd.DataFrame,
    pathways: dict,
    samples: pd.DataFrame,
    test: str,
    reference: str,
    cell_types: list[str],
    *,
    min_cells: int,
    expr_prop: float,
    fdr: float,
) -> tuple[pd.DataFrame, pd.DataFrame, str | None]:
    """Test the interactions of one contrast at the sample level (moderated linear model on sample scores).

    The method is described in :mod:`tmeflow.communication.core` (sample-level differential interactions).

    Parameters
    ----------
    adata
        The atlas (log-normalised ``X``; ``obs`` ``sample``, ``condition``, ``cell_type``); not modified.
    resource
        The ligand-receptor resource (:func:`tmeflow.communication.load_resource`).
    pathways
        (ligand, receptor) -> pathway, for the ``pathway`` column.
    samples
        One row per sample with ``condition`` (and ``patient``).
    test, reference
        The contrasted conditions.
    cell_types
        The source and target cell types (those with enough cells in both conditions).
    min_cells
        Cells a cell type needs in a sample to give that sample a value (``communication_min_cells``).
    expr_prop
        Fraction of a cell type's cells (pooled per condition) that must express the ligand (source) and
        receptor (target) for a candidate (``communication_expr_prop``).
    fdr
        ``significant`` is ``fdr < fdr`` (``communication_fdr``).

    Returns
    -------
    tuple[pandas.DataFrame, pandas.DataFrame, str or None]
        The results (``DIFF_COLUMNS``, smallest p-value first), the long table of sample scores
        (contrast, source, target, ligand, receptor, sample, score, condition), and the reason the
        contrast was skipped (None when tested).
    """
    name = contrast_name(test, reference)
    obs = adata.obs
    in_contrast = (
        obs["condition"].astype(str).isin([test, reference]).to_numpy()
        & obs["cell_type"].astype(str).isin(cell_types).to_numpy()
    )
    genes = [g for g in adata.var_names.astype(str)]
    wanted = sorted({g for col in ("ligand", "receptor") for e in resource[col] for g in e.split("_")} & set(genes))
    gene_pos = pd.Index(genes).get_indexer(wanted)
    X = read_rows(adata.X, np.flatnonzero(in_contrast), gene_pos)  # the ligand and receptor genes only
    X = sp.csr_matrix(X) if sp.issparse(X) else np.asarray(X)
    gene_index = {g: i for i, g in enumerate(wanted)}
    sub_obs = obs.iloc[np.flatnonzero(in_contrast)]
    ct = sub_obs["cell_type"].astype(str).to_numpy()
    ligands = sorted(set(resource["ligand"]))
    receptors = sorted(set(resource["receptor"]))
    lig_pos = {lig: i for i, lig in enumerate(ligands)}
    rec_pos = {r: i for i, r in enumerate(receptors)}
    # Pooled per condition x cell type: expression fractions (candidate filter).
    keys = sub_obs["condition"].astype(str).to_numpy() + "\x1f" + ct
    labels, _, fracs, _ = group_means(X, keys)
    frac_l = complex_values(fracs, gene_index, ligands)
    frac_r = complex_values(fracs, gene_index, receptors)
    label_pos = {label: i for i, label in enumerate(labels)}
    # Per sample x cell type: means (NaN when the cell type has too few cells in the sample).
    skeys = sub_obs["sample"].astype(str).to_numpy() + "\x1f" + ct
    slabels, smeans, _, sn = group_means(X, skeys)
    smeans[sn < min_cells] = np.nan
    mean_l = complex_values(smeans, gene_index, ligands)
    mean_r = complex_values(smeans, gene_index, receptors)
    spos = {label: i for i, label in enumerate(slabels)}
    used = samples[samples["condition"].isin([test, reference])]
    lr = resource[["ligand", "receptor"]].drop_duplicates().reset_index(drop=True)
    li_idx = lr["ligand"].map(lig_pos).to_numpy()
    ri_idx = lr["receptor"].map(rec_pos).to_numpy()
    score_blocks = []
    for source in cell_types:
        for target in cell_types:
            ok: np.ndarray = np.zeros(len(lr), dtype=bool)
            for condition in (test, reference):
                a, b = label_pos.get(f"{condition}\x1f{source}"), label_pos.get(f"{condition}\x1f{target}")
                if a is None or b is None:
                    continue
                ok |= (frac_l[a, li_idx] >= expr_prop) & (frac_r[b, ri_idx] >= expr_prop)
            if not ok.any():
                continue
            scores = np.full((len(used), int(ok.sum())), np.nan)
            for i, sample in enumerate(used.index):
                a, b = spos.get(f"{sample}\x1f{source}"), spos.get(f"{sample}\x1f{target}")
                if a is None or b is None:
                    continue
                scores[i] = mean_l[a, li_idx[ok]] * mean_r[b, ri_idx[ok]]
            frame = pd.DataFrame(
                scores,
                index=used.index,
                columns=pd.MultiIndex.from_arrays(
                    [
                        [source] * ok.sum(),
                        [target] * ok.sum(),
                        lr["ligand"][ok].to_numpy(),
                        lr["receptor"][ok].to_numpy(),
                    ],
                    names=["source", "target", "ligand", "receptor"],
                ),
            )
            score_blocks.append(frame)
    if not score_blocks:
        return (
            pd.DataFrame(columns=DIFF_COLUMNS),
            pd.DataFrame(),
            "no candidate interaction passes communication_expr_prop",
        )
    scores = pd.concat(score_blocks, axis=1)
    long = scores.T.stack().rename("score").reset_index()
    long.insert(0, "contrast", name)
    long["condition"] = long["sample"].map(used["condition"])
    # One moderated linear model per set of samples with values (tmeflow.stats.condition_contrast).
    fit = condition_contrast(np.log2(scores + PSEUDO), used, test, reference, min_samples=MIN_SAMPLES)
    if not len(fit):
        return (
            pd.DataFrame(columns=DIFF_COLUMNS),
            long,
            f"fewer than {MIN_SAMPLES} samples per condition with >= {min_cells} cells of the cell types",
        )
    is_test = (used["condition"] == test).to_numpy()
    results = [
        fit.rename(columns={"estimate": "logfc"}).assign(
            mean_score_test=scores[is_test].mean().reindex(fit.index),
            mean_score_reference=scores[~is_test].mean().reindex(fit.index),
        )
    ]
    table = pd.concat(results)
    table.index = pd.MultiIndex.from_tuples(list(table.index), names=scores.columns.names)
    table = table.reset_index()
    table.insert(0, "contrast", name)
    table["interaction"] = table["ligand"] + "->" + table["receptor"]
    table["pathway"] = [
        pathways.get((lig, rec), "") for lig, rec in zip(table["ligand"], table["receptor"], strict=True)
    ]
    table["fdr"] = bh_fdr(table["pvalue"])
    table["significant"] = table["fdr"] < fdr
    table = table.sort_values(
        ["pvalue", "logfc"], key=lambda s: s if s.name == "pvalue" else -s.abs(), na_position="last", kind="stable"
    )
    return table[DIFF_COLUMNS].reset_index(drop=True), long, None


# --------------------------------------------------------------------------------------------------
