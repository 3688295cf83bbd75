"""Spatial statistics across sections and patients: patients are the units of replication.

``tmeflow spatial_analysis`` tests one section at a time (co-localisation with malignant cells,
interface ligand-receptor enrichment, tumour-to-stroma trajectory and distance correlations), each with
a spatially constrained null (Moran spectral randomisation), so every p-value is about that section:
n = 1. Pooling the spots of several sections into one test, or combining the sections' z-scores with
Stouffer's method, is pseudo-replication: one patient with a strong pattern (or several sections of
one patient) makes the pattern look cohort-wide.

Method (the summary-statistics approach of random-effects group analyses, Holmes & Friston 1998,
NeuroImage 7:S754; the second-level analysis of neuroimaging): per section, each feature's MSR z-score
(``z_msr``: its section-level test statistic, N(0, 1) under that section's null whatever the spot count
and autocorrelation) and effect size (correlation or interface difference); per patient, the mean over
that patient's sections (sections of one patient are not replicates); across patients, a one-sample
t-test of the patient values against 0 (``pval``: one-sided for interface enrichment, as the section
test, two-sided otherwise), and the exact sign-flip permutation p-value of their mean (``pval_signflip``:
all 2^P sign patterns for P <= 16 patients; Fisher 1935, it needs only symmetry under the null, and
with P patients it cannot fall below 2^(1-P) two-sided); Benjamini-Hochberg FDR over the features of
each analysis. A feature is ``cohort_wide`` at FDR < :data:`COHORT_FDR` in the tested direction. The
t-test weighs the between-patient spread of the effect, so an effect carried by one patient is not
declared cohort-wide. With one patient (one section, or several sections of one patient) the patient
values are written with no cohort p-value: there is nothing to replicate them against.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from . import io
from .errors import TmeflowInputError
from .log import get_logger
from .plotting import pyplot
from .stats import bh_fdr

if TYPE_CHECKING:
    from matplotlib.figure import Figure

logger = get_logger(__name__)

#: analysis: (results key of ``spatial_analysis``, feature column, effect column, alternative of its section test)
ANALYSES = {
    "colocalisation": ("colocalisation", "cell_type", "r_lagged_malignant", "two-sided"),
    "interface_lr": ("lr", "interaction", "difference", "greater"),
    "trajectory": ("trajectory_correlation", "feature", "spearman_rho", "two-sided"),
    "distance": ("distance", "gene", "spearman_rho", "two-sided"),
}
SECTION_COLUMNS = ["analysis", "feature", "effect", "z"]
#: the FDR below which a feature is called cohort-wide
COHORT_FDR = 0.05
#: exact sign-flip enumeration up to this many patients (2^16 patterns); Monte Carlo above
MAX_EXACT_PATIENTS = 16
UNS_KEY = "spatial_statistics"
COMBINED_FILE = "spatial_cohort.tsv"
PATIENTS_FILE = "spatial_cohort_patients.tsv"


def section_table(results: dict[str, Any]) -> pd.DataFrame:
    """Collect one section's statistics as a long table.

    Parameters
    ----------
    results
        :func:`tmeflow.spatial_analysis.analyse_section`'s results.

    Returns
    -------
    pandas.DataFrame
        ``analysis, feature, effect, z``; rows without a z-score are dropped.
    """
    parts = []
    for analysis, (key, feature, effect, _) in ANALYSES.items():
        frame = results.get(key)
        if frame is None or frame.empty or "z_msr" not in frame:
            continue
        parts.append(
            pd.DataFrame(
                {
                    "analysis": analysis,
                    "feature": frame[feature].astype(str).to_numpy(),
                    "effect": pd.to_numeric(frame[effect], errors="coerce").to_numpy(dtype=float),
                    "z": pd.to_numeric(frame["z_msr"], errors="coerce").to_numpy(dtype=float),
                }
            )
        )
    table = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=SECTION_COLUMNS)
    return table[np.isfinite(table["z"].to_numpy(dtype=float))].reset_index(drop=True)


def signflip_pvalue(
    values: np.ndarray, alternative: str = "two-sided", *, seed: int = 0, n_random: int = 2**16
) -> float:
    """Compute the sign-flip permutation p-value of the mean of ``values`` against 0 (one value per patient).

    Exact over all ``2^P`` sign patterns for ``P <=`` :data:`MAX_EXACT_PATIENTS`, else ``n_random`` random
    patterns (seeded) with the observed one counted (Phipson & Smyth 2010).

    Parameters
    ----------
    values
        One value per patient.
    alternative
        ``greater`` (one-sided: mean above 0); anything else is two-sided.
    seed
        Seed of the random patterns.
    n_random
        Random patterns above ``MAX_EXACT_PATIENTS`` patients.

    Returns
    -------
    float
        The p-value; NaN with fewer than two values.
    """
    values = np.asarray(values, dtype=float)
    p = len(values)
    if p < 2:
        return float("nan")
    if p <= MAX_EXACT_PATIENTS:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=p)))
    else:
        signs = np.random.default_rng(seed).choice((1.0, -1.0), size=(n_random, p))
    means = signs @ values / p
    observed = values.mean()
    tolerance = 1e-12 * max(1.0, abs(observed))
    hits = means >= observed - tolerance if alternative == "greater" else np.abs(means) >= abs(observed) - tolerance
    if p <= MAX_EXACT_PATIENTS:
        return float(hits.mean())
    return float((hits.sum() + 1) / (len(means) + 1))


def _ttest(values: np.ndarray, alternative: str) -> tuple[float, float]:
    from scipy.stats import t as t_dist

    n = len(values)
    sd = float(np.std(values, ddof=1)) if n > 1 else 0.0
    if n < 2 or sd == 0:
        return float("nan"), float("nan")
    t = float(values.mean() / (sd / np.sqrt(n)))
    p = t_dist.sf(t, n - 1) if alternative == "greater" else 2 * t_dist.sf(abs(t), n - 1)
    return t, float(p)


def combine_sections(sections: pd.DataFrame, *, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Test each feature across the cohort with patients as the units (see the module docstring).

    Parameters
    ----------
    sections
        One row per section and feature: ``analysis, feature, sample, patient, effect, z``.
    seed
        Seed of the sign-flip p-values.

    Returns
    -------
    tuple[pandas.DataFrame, pandas.DataFrame]
        Per analysis and feature: ``n_sections, n_patients, mean_effect, mean_z, sd_z, t, df, pval,
        pval_signflip, fdr, cohort_wide`` (p-values NaN with fewer than two patients); and the per-patient
        means (``analysis, feature, patient, n_sections, effect, z``).
    """
    missing = {"analysis", "feature", "sample", "patient", "effect", "z"} - set(sections.columns)
    if missing:
        raise ValueError(f"section statistics lack {sorted(missing)}")
    patients = (
        sections.groupby(["analysis", "feature", "patient"], sort=True, observed=True)
        .agg(n_sections=("sample", "nunique"), effect=("effect", "mean"), z=("z", "mean"))
        .reset_index()
    )
    rows = []
    for (analysis, feature), group in patients.groupby(["analysis", "feature"], sort=False):
        alternative = ANALYSES[analysis][3]
        z = group["z"].to_numpy(dtype=float)
        t, p = _ttest(z, alternative)
        rows.append(
            {
                "analysis": analysis,
                "feature": feature,
                "n_sections": int(group["n_sections"].sum()),
                "n_patients": len(group),
                "mean_effect": float(group["effect"].mean()),
                "mean_z": float(z.mean()),
                "sd_z": float(np.std(z, ddof=1)) if len(z) > 1 else np.nan,
                "t": t,
                "df": len(z) - 1 if len(z) > 1 else np.nan,
                "pval": p,
                "pval_signflip": signflip_pvalue(z, alternative, seed=seed),
            }
        )
    columns = [
        "analysis",
        "feature",
        "n_sections",
        "n_patients",
        "mean_effect",
        "mean_z",
        "sd_z",
        "t",
        "df",
        "pval",
        "pval_signflip",
        "fdr",
        "cohort_wide",
    ]
    if not rows:
        return pd.DataFrame(columns=columns), patients
    combined = pd.DataFrame(rows)
    combined["fdr"] = np.nan
    for _analysis, index in combined.groupby("analysis").groups.items():
        combined.loc[index, "fdr"] = bh_fdr(combined.loc[index, "pval"].to_numpy())
    greater = combined["analysis"].map(lambda a: ANALYSES[a][3] == "greater").to_numpy(dtype=bool)
    combined["cohort_wide"] = (combined["fdr"] < COHORT_FDR) & (~greater | (combined["mean_z"] > 0))
    combined = combined.sort_values(["analysis", "pval", "feature"], na_position="last").reset_index(drop=True)
    return combined[columns], patients


# ----------------------------------------------------------------------------------------------
# Reading the sections
# ----------------------------------------------------------------------------------------------
def read_section(path: str | Path) -> pd.DataFrame | None:
    """Read a ``<sample>.spatial_analysis.h5ad``'s statistics with its sample and patient, without the matrices.

    Parameters
    ----------
    path
        The section h5ad.

    Returns
    -------
    pandas.DataFrame or None
        ``uns['spatial_statistics']`` with ``sample`` and ``patient`` columns (a section without
        ``obs['patient']`` is its own patient); None, with a warning, for a section written before the
        statistics were stored.

    Raises
    ------
    TmeflowInputError
        The file is missing or unreadable.
    """
    import h5py
    from anndata.io import read_elem

    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("spatial section not found", file=path)
    try:
        with h5py.File(path, "r") as handle:
            obs = read_elem(handle["obs"])
            table = read_elem(handle[f"uns/{UNS_KEY}"]) if f"uns/{UNS_KEY}" in handle else None
    except (OSError, KeyError, ValueError, TypeError) as error:
        raise TmeflowInputError(f"cannot read the spatial section ({str(error).splitlines()[0]})", file=path) from error
    if table is None:
        logger.warning(
            "%s has no section statistics (uns['%s']; written by an older tmeflow): rerun spatial_analysis "
            "to include it in the cohort statistics",
            path.name,
            UNS_KEY,
        )
        return None
    sample = str(obs["sample"].iloc[0]) if "sample" in obs and len(obs) else path.name.split(".")[0]
    if "patient" in obs and len(obs):
        patient = str(obs["patient"].iloc[0])
    else:
        logger.warning("%s has no obs['patient']: the section is its own patient", path.name)
        patient = sample
    table = pd.DataFrame(table)
    return table.assign(sample=sample, patient=patient)


# ----------------------------------------------------------------------------------------------
# Figure and stage
# ----------------------------------------------------------------------------------------------
def plot_patients(combined: pd.DataFrame, patients: pd.DataFrame, analysis: str, *, top: int = 20) -> Figure:
    """Draw a forest-style dot plot of one analysis across patients.

    Parameters
    ----------
    combined
        :func:`combine_sections`'s cohort table.
    patients
        :func:`combine_sections`'s per-patient table.
    analysis
        The analysis drawn.
    top
        Rows: the ``top`` features with the smallest cohort p-values, else the largest ``|mean z|``.

    Returns
    -------
    Figure
        One row per feature, one dot per patient (its mean section z-score), the cohort mean as a black bar;
        FDR at right.
    """
    plt = pyplot()

    rows = combined[combined["analysis"] == analysis].copy()
    rows["order"] = rows["pval"].fillna(2.0) - rows["mean_z"].abs() * 1e-9
    rows = rows.sort_values("order").head(top).iloc[::-1]
    names = sorted(patients["patient"].unique())
    colours = {name: plt.get_cmap("tab10" if len(names) <= 10 else "tab20")(i % 20) for i, name in enumerate(names)}
    fig, ax = plt.subplots(figsize=(7.5, 0.32 * len(rows) + 1.6))
    values = patients[patients["analysis"] == analysis].set_index(["feature", "patient"])["z"]
    for y, (_, row) in enumerate(rows.iterrows()):
        for name in names:
            if (row["feature"], name) in values.index:
                ax.scatter(
                    values[(row["feature"], name)],
                    y,
                    color=colours[name],
                    s=22,
                    zorder=3,
                    label=name if y == 0 else None,
                )
        ax.plot([row["mean_z"]] * 2, [y - 0.35, y + 0.35], color="black", lw=2, zorder=4)
        label = (
            "n = 1 patient"
            if not np.isfinite(row["fdr"])
            else f"FDR {row['fdr']:.2g}" + (" *" if row["cohort_wide"] else "")
        )
        ax.annotate(label, (1.01, y), xycoords=("axes fraction", "data"), va="center", fontsize=7)
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(range(len(rows)), rows["feature"], fontsize=7)
    ax.set_xlabel("section z-score (Moran spectral randomisation), mean per patient")
    ax.set_title(f"{analysis.replace('_', ' ')}: one dot per patient, bar = cohort mean; * cohort-wide", fontsize=9)
    ax.legend(
        fontsize=7, frameon=False, loc="upper left", bbox_to_anchor=(1.12, 1.0), title="patient", title_fontsize=7
    )
    fig.tight_layout()
    return fig


def run_spatial_cohort(sections: list[str | Path], outdir: str | Path, *, seed: int = 0) -> dict[str, Any] | None:
    """Combine the sections' statistics (patients as units) and write the cohort tables and figures.

    Parameters
    ----------
    sections
        The ``<sample>.spatial_analysis.h5ad`` files.
    outdir
        The output folder: ``spatial_cohort.tsv``, ``spatial_cohort_patients.tsv``, ``spatial_cohort_mqc.tsv``
        and ``spatial_cohort_<analysis>.png``.
    seed
        Seed of the sign-flip p-values.

    Returns
    -------
    dict or None
        ``n_sections``, ``n_patients``, ``n_features``, ``n_cohort_wide``; None when no section carries
        statistics.
    """
    outdir = Path(outdir)
    tables = [table for table in (read_section(path) for path in sorted(sections, key=str)) if table is not None]
    if not tables:
        return None
    per_section = pd.concat(tables, ignore_index=True)
    n_sections, n_patients = per_section["sample"].nunique(), per_section["patient"].nunique()
    if n_patients < 2:
        logger.info(
            "spatial cohort statistics: %d section(s) of one patient (%s): per-patient values written, no "
            "cohort p-value (a p-value needs at least two patients)",
            n_sections,
            per_section["patient"].iloc[0],
        )
    combined, patients = combine_sections(per_section, seed=seed)
    io.write_table(combined, outdir / COMBINED_FILE)
    io.write_table(patients, outdir / PATIENTS_FILE)
    shown = combined.assign(row=combined["analysis"] + ": " + combined["feature"]).set_index("row")
    header = io.multiqc_header(
        "tmeflow_spatial_cohort",
        "Spatial statistics across patients",
        f"Section z-scores (spatially constrained nulls) averaged per patient, one-sample t-test across {n_patients} "
        f"patient(s) ({n_sections} sections); BH per analysis; cohort-wide at FDR < {COHORT_FDR}. No p-value with one "
        "patient (tmeflow atlas).",
        "table",
    )
    io.write_table(
        shown[["n_patients", "n_sections", "mean_effect", "mean_z", "pval", "pval_signflip", "fdr"]],
        outdir / "spatial_cohort_mqc.tsv",
        index=True,
        header_lines=header,
    )
    for analysis in combined["analysis"].unique():
        io.save_figure(plot_patients(combined, patients, analysis), outdir / f"spatial_cohort_{analysis}.png")
    wide = combined[combined["cohort_wide"].astype(bool)]
    logger.info(
        "spatial cohort statistics: %d sections, %d patients, %d features; %d cohort-wide (%s)",
        n_sections,
        n_patients,
        len(combined),
        len(wide),
        ", ".join((wide["analysis"] + ":" + wide["feature"]).head(10)) or "none",
    )
    return {
        "n_sections": int(n_sections),
        "n_patients": int(n_patients),
        "n_features": len(combined),
        "n_cohort_wide": len(wide),
    }
