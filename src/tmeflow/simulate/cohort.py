"""The simulated bulk cohort: expression of mixed samples and survival driven by a planted signature."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pandas as pd

from ..io import atomic_path, write_table
from ..log import get_logger
from .model import Model
from .settings import (
    BULK_CAPTURE_MB,
    BULK_CENSORING_RATIO,
    BULK_CNV_LOG2_PER_LEVEL,
    BULK_CNV_PROBABILITIES,
    BULK_MEDIAN_SURVIVAL_DAYS,
    BULK_MSI_LOG_PER_SD,
    BULK_MSI_LOG_SD,
    BULK_MSI_MEDIAN,
    BULK_NOISE_SD,
    BULK_NORMAL_DE_GENES,
    BULK_NORMAL_LOG2FC,
    BULK_PLATFORM_SD,
    BULK_SIGNATURE_LOG2FC,
    BULK_TMB_LOG_PER_SD,
    BULK_TMB_LOG_SD,
    BULK_TMB_PER_MB,
    CELL_TYPES,
    DRUG_BASE_LN_IC50,
    DRUG_SLOPE_PER_SD,
    IO_BASE_LOGIT,
    IO_CENSORING_HAZARD,
    IO_LOG_HR_PER_LOG_OR,
    IO_MEDIAN_PFS_DAYS,
    IO_MEDIAN_POST_PROGRESSION_DAYS,
    MALIGNANT,
    SimConfig,
)
from .singlecell import _composition

logger = get_logger(__package__)


# ----------------------------------------------------------------------------------------------
# Bulk cohort with survival
# ----------------------------------------------------------------------------------------------
def signature_score(expression: pd.DataFrame, genes: list[str]) -> pd.Series:
    """Compute the planted survival score: mean log2(TPM + 1) over ``genes``, z-scored across samples.

    Parameters
    ----------
    expression
        TPM, genes x samples.
    genes
        The signature genes (rows of ``expression``), the fate-A programme in the simulator.

    Returns
    -------
    pandas.Series
        The z-scored score per sample (mean 0, population SD 1), indexed like ``expression``'s columns.
    """
    score = np.log2(expression.loc[genes] + 1.0).mean(axis=0)
    return (score - score.mean()) / score.std(ddof=0)


def _bulk_expression(
    model: Model, n: int, rng: np.random.Generator, platform: np.ndarray | None = None, prefix: str = "BULK"
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw the TPM of ``n`` mixed samples and their truth.

    TPM of ``n`` mixed samples and their truth; ``platform`` (gene-wise assay factors, drawn when None) is
    kept in ``truth.attrs["platform"]`` so that more samples of the same assay (normals) can share it.
    """
    ids = [f"{prefix}{i + 1:04d}" for i in range(n)]
    proportions = rng.dirichlet(_composition("primary") * 10.0 + 0.05, size=n)
    fate_a = rng.beta(2.0, 2.0, size=n)
    malignant = model.type_index(MALIGNANT)
    if platform is None:
        platform = rng.lognormal(0.0, BULK_PLATFORM_SD, size=model.profiles.shape[1])
    tpm = np.empty((n, model.profiles.shape[1]))
    for i in range(n):
        profiles = model.profiles.copy()
        profiles[malignant, model.idx["fate_A"]] *= 2.0 ** (BULK_SIGNATURE_LOG2FC * fate_a[i])
        profiles[malignant, model.idx["fate_B"]] *= 2.0 ** (BULK_SIGNATURE_LOG2FC * (1 - fate_a[i]))
        mix = proportions[i] @ profiles * platform * rng.lognormal(0.0, BULK_NOISE_SD, size=profiles.shape[1])
        tpm[i] = 1e6 * mix / mix.sum()
    expression = pd.DataFrame(np.round(tpm.T, 3), index=model.genes.var.index, columns=ids)
    expression.index.name = "gene"
    truth = pd.DataFrame(proportions, index=ids, columns=CELL_TYPES)
    truth.index.name = "sample"
    truth["true_fate_A_fraction"] = fate_a
    truth.attrs["platform"] = platform
    return expression, truth


def cancer_type_labels(n: int, n_types: int) -> np.ndarray:
    """Deal cancer types to samples.

    Cancer type of each of ``n`` samples: ``TYPE1`` ... ``TYPE<n_types>`` dealt round-robin (no random draw,
    so the rest of the cohort is the one a single-cohort simulation with the same seed makes).

    Parameters
    ----------
    n
        Number of samples.
    n_types
        Number of cancer types (at least 1).

    Returns
    -------
    numpy.ndarray
        ``n`` strings, ``TYPE1`` ... ``TYPE<n_types>``.
    """
    return np.array([f"TYPE{i % n_types + 1}" for i in range(n)])


def planted_types(config: SimConfig) -> list[str]:
    """Return the cancer types with a score-survival effect: the first ``bulk_planted_types``.

    Parameters
    ----------
    config
        The simulation settings (``bulk_planted_types``, capped at ``bulk_cancer_types``).

    Returns
    -------
    list of str
        ``["TYPE1", ..., "TYPE<k>"]``.
    """
    return [f"TYPE{k + 1}" for k in range(min(config.bulk_planted_types, config.bulk_cancer_types))]


def sample_beta(types: np.ndarray | None, config: SimConfig) -> float | np.ndarray:
    """Log hazard ratio per SD of each sample: ``bulk_beta`` (in the planted types of a pan-cancer cohort), else 0.

    Parameters
    ----------
    types
        Cancer type of each sample (:func:`cancer_type_labels`), or None for a single-cohort simulation.
    config
        The simulation settings (``bulk_beta``, the log hazard ratio per SD of the score).

    Returns
    -------
    float or numpy.ndarray
        ``bulk_beta`` when ``types`` is None, else one log hazard ratio per sample (``bulk_beta`` or 0).
    """
    if types is None:
        return config.bulk_beta
    return np.where(np.isin(types, planted_types(config)), config.bulk_beta, 0.0)


NONSYN_CLASSES = (
    ("Missense_Mutation", 0.85),
    ("Nonsense_Mutation", 0.07),
    ("Frame_Shift_Del", 0.04),
    ("Splice_Site", 0.04),
)


def simulate_maf(z: pd.Series, types: np.ndarray, config: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Draw the somatic mutations of a pan-cancer cohort.

    Somatic mutations of a pan-cancer cohort (MAF columns): non-synonymous variants per sample
    Poisson(``BULK_TMB_PER_MB`` x 38 Mb x exp(``BULK_TMB_LOG_PER_SD`` x z + ``BULK_TMB_LOG_SD`` x N(0, 1))) in the
    planted types, without the z term elsewhere, plus Poisson(30% of that mean) silent variants; barcodes are
    the sample identifiers.

    Parameters
    ----------
    z
        The signature score per sample (:func:`signature_score`), indexed by sample.
    types
        Cancer type of each sample, aligned with ``z``.
    config
        The simulation settings (which types are planted).
    rng
        The random generator.

    Returns
    -------
    pandas.DataFrame
        One row per variant: ``Hugo_Symbol``, ``Chromosome``, ``Tumor_Sample_Barcode``, ``Variant_Classification``,
        ``Start_Position``.
    """
    planted = np.isin(types, planted_types(config))
    log_mean = np.where(planted, BULK_TMB_LOG_PER_SD * z.to_numpy(), 0.0) + BULK_TMB_LOG_SD * rng.normal(size=len(z))
    mean = BULK_TMB_PER_MB * BULK_CAPTURE_MB * np.exp(log_mean)
    n_nonsyn, n_silent = np.asarray(rng.poisson(mean)), np.asarray(rng.poisson(0.3 * mean))
    names, weights = zip(*NONSYN_CLASSES, strict=True)
    rows = []
    for sample, k, m in zip(z.index, n_nonsyn, n_silent, strict=True):
        classes = list(rng.choice(names, size=k, p=weights)) + ["Silent"] * m
        starts = rng.integers(1, 248_000_000, size=len(classes))
        rows += [(sample, c, int(p)) for c, p in zip(classes, starts, strict=True)]
    maf = pd.DataFrame(rows, columns=["Tumor_Sample_Barcode", "Variant_Classification", "Start_Position"])
    maf.insert(0, "Hugo_Symbol", "SIMGENE")
    maf.insert(1, "Chromosome", "chr1")
    maf["Reference_Allele"], maf["Tumor_Seq_Allele2"] = "C", "T"
    return maf


def simulate_msi(z: pd.Series, types: np.ndarray, config: SimConfig, rng: np.random.Generator) -> pd.DataFrame:
    """Draw the MSI score of each tumour.

    MSI score per tumour (``sample``, ``msi_score``): ``BULK_MSI_MEDIAN`` x exp(``BULK_MSI_LOG_PER_SD`` x z in the
    planted types + ``BULK_MSI_LOG_SD`` x N(0, 1)): a score-MSI correlation in the planted types only.

    Parameters
    ----------
    z
        The signature score per sample, indexed by sample.
    types
        Cancer type of each sample, aligned with ``z``.
    config
        The simulation settings (which types are planted).
    rng
        The random generator.

    Returns
    -------
    pandas.DataFrame
        ``sample``, ``msi_score`` (positive, median ``BULK_MSI_MEDIAN`` at z = 0), one row per sample.
    """
    planted = np.isin(types, planted_types(config))
    log_score = np.where(planted, BULK_MSI_LOG_PER_SD * z.to_numpy(), 0.0) + BULK_MSI_LOG_SD * rng.normal(size=len(z))
    return pd.DataFrame({"sample": z.index, "msi_score": np.round(BULK_MSI_MEDIAN * np.exp(log_score), 4)})


def cnv_gene(model: Model) -> str:
    """Return the signature gene whose copy number drives its expression.

    The first signature gene without a tumour-normal difference.

    Parameters
    ----------
    model
        The simulation model (its ``fate_A`` programme).

    Returns
    -------
    str
        The gene symbol.
    """
    return model.programmes["fate_A"][BULK_NORMAL_DE_GENES]


def simulate_cnv(expression: pd.DataFrame, model: Model, rng: np.random.Generator) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Draw GISTIC-style thresholded copy numbers.

    GISTIC-style thresholded copy number (-2..2, probabilities ``BULK_CNV_PROBABILITIES``, independent per gene and
    tumour) of the signature genes, as GISTIC2's ``all_thresholded.by_genes`` (Gene Symbol, Locus ID, Cytoband,
    samples); returns (table, expression with :func:`cnv_gene`'s TPM x 2^(``BULK_CNV_LOG2_PER_LEVEL`` x level)).

    Parameters
    ----------
    expression
        TPM, genes x samples; not changed.
    model
        The simulation model (its ``fate_A`` programme).
    rng
        The random generator.

    Returns
    -------
    table : pandas.DataFrame
        Levels -2..2, signature genes (index ``Gene Symbol``) x samples, after ``Locus ID`` and ``Cytoband`` columns.
    expression : pandas.DataFrame
        A copy of ``expression`` with :func:`cnv_gene`'s TPM scaled by its copy number.
    """
    genes = model.programmes["fate_A"]
    levels = rng.choice(np.arange(-2, 3), size=(len(genes), expression.shape[1]), p=BULK_CNV_PROBABILITIES)
    table = pd.DataFrame(levels, index=pd.Index(genes, name="Gene Symbol"), columns=expression.columns)
    expression = expression.copy()
    gene = cnv_gene(model)
    expression.loc[gene] = np.round(expression.loc[gene] * 2.0 ** (BULK_CNV_LOG2_PER_LEVEL * table.loc[gene]), 3)
    table.insert(0, "Locus ID", np.arange(1, len(genes) + 1))
    table.insert(1, "Cytoband", "1p36.33")
    return table, expression


def normal_de_genes(model: Model) -> dict[str, float]:
    """Return the planted tumour-normal differences.

    The planted tumour-normal differences: the first ``BULK_NORMAL_DE_GENES`` signature (fate-A) genes, log2
    fold change tumour / normal ``+BULK_NORMAL_LOG2FC`` (even positions) or ``-BULK_NORMAL_LOG2FC`` (odd).

    Parameters
    ----------
    model
        The simulation model (its ``fate_A`` programme).

    Returns
    -------
    dict of str to float
        ``{gene: log2 fold change tumour / normal}``.
    """
    genes = model.programmes["fate_A"][:BULK_NORMAL_DE_GENES]
    return {gene: BULK_NORMAL_LOG2FC * (1.0 if k % 2 == 0 else -1.0) for k, gene in enumerate(genes)}


def simulate_normals(model: Model, n: int, platform: np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    """Draw normal samples.

    ``n`` normal samples (TPM, genes x samples, ``NORMAL0001``...): drawn from the tumours' mixture model on
    the tumours' assay (``platform``), then each gene of :func:`normal_de_genes` divided by 2^log2fc (not
    renormalised); every other gene has the tumours' distribution: a null gene of the tumour-normal test.

    Parameters
    ----------
    model
        The simulation model.
    n
        Number of normal samples.
    platform
        The tumours' gene-wise assay factors (``truth.attrs["platform"]`` of the tumour draw), one per gene.
    rng
        The random generator.

    Returns
    -------
    pandas.DataFrame
        TPM, genes (index ``gene``) x ``n`` samples ``NORMAL0001`` ...
    """
    expression, _ = _bulk_expression(model, n, rng, platform=platform, prefix="NORMAL")
    for gene, log2fc in normal_de_genes(model).items():
        expression.loc[gene] = np.round(expression.loc[gene] * 2.0**-log2fc, 3)
    return expression


def _survival(z: pd.Series, beta: float | np.ndarray, rng: np.random.Generator) -> pd.DataFrame:
    n = len(z)
    baseline = math.log(2) / BULK_MEDIAN_SURVIVAL_DAYS
    event_time = rng.exponential(1.0 / (baseline * np.exp(beta * z.to_numpy())))
    censor_time = rng.exponential(1.0 / (BULK_CENSORING_RATIO * baseline), size=n)
    os_time = np.maximum(1, np.ceil(np.minimum(event_time, censor_time))).astype(int)
    n_stage = (rng.uniform(size=n) < 1 / (1 + np.exp(-(0.8 * z.to_numpy() - 0.3)))).astype(int)
    return pd.DataFrame(
        {"sample": z.index, "os_time": os_time, "os_event": (event_time <= censor_time).astype(int),
         "age": np.clip(np.round(rng.normal(62, 10, size=n)), 25, 95).astype(int), "n_stage": n_stage,
         "sex": rng.choice(["female", "male"], size=n)}
    )  # fmt: skip


def to_species(expression: pd.DataFrame, from_species: str, to_species: str) -> pd.DataFrame:
    """Rename the expression table to the one-to-one orthologs of ``to_species`` (genes without one dropped).

    Parameters
    ----------
    expression
        Genes (symbols of ``from_species``) x samples.
    from_species, to_species
        Species names known to :func:`tmeflow.signatures.ortholog_map` (e.g. ``"human"``, ``"mouse"``).

    Returns
    -------
    pandas.DataFrame
        ``expression`` itself when the species are equal, else the mapped rows (first of duplicated targets kept).
    """
    from ..signatures import ortholog_map

    if from_species == to_species:
        return expression
    mapping = ortholog_map(from_species, to_species)
    mapped = expression.loc[expression.index.isin(list(mapping))]
    mapped.index = pd.Index([mapping[g] for g in mapped.index], name=expression.index.name)
    logger.info(
        "bulk: %d of %d %s genes written as their %s one-to-one orthologs",
        len(mapped),
        len(expression),
        from_species,
        to_species,
    )
    return mapped[~mapped.index.duplicated()]


def simulate_bulk(model: Model, config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Write the bulk cohort and its companions (mutations, MSI, copy number, normals); return the truth.

    Parameters
    ----------
    model, config, rng
        The simulation model (profiles, programmes), the settings and the random generator (one cohort per seed).

    Returns
    -------
    dict
        The truth written to ``truth.json``: censored fraction, species, gene count and, when drawn, the normals'
        planted tumour-normal differences and the pan-cancer planted types, TMB, MSI and CNV models.
    """
    expression, proportions = _bulk_expression(model, config.n_bulk, rng)
    z = signature_score(expression, model.programmes["fate_A"])
    types = cancer_type_labels(config.n_bulk, config.bulk_cancer_types) if config.bulk_cancer_types else None
    clinical = _survival(z, sample_beta(types, config), rng)
    maf = msi = cnv = None
    if types is not None:
        clinical.insert(1, "cancer_type", types)
        maf = simulate_maf(z, types, config, rng)
    if types is not None:  # drawn after everything else, so the rest of the cohort is unchanged
        msi = simulate_msi(z, types, config, rng)
        cnv, expression = simulate_cnv(expression, model, rng)
    normal_summary: dict[str, Any] | None = None
    if config.bulk_normals:
        groups = sorted(set(types), key=lambda t: int(str(t)[4:])) if types is not None else [None]
        normals = simulate_normals(model, config.bulk_normals * len(groups), proportions.attrs["platform"], rng)
        expression = pd.concat([expression, normals], axis=1)
        extra = pd.DataFrame({"sample": normals.columns, "sample_type": "normal"})
        if types is not None:
            extra.insert(1, "cancer_type", np.repeat(groups, config.bulk_normals))
        clinical.insert(1, "sample_type", "tumour")
        clinical = pd.concat(
            [clinical.astype({c: "Int64" for c in ("os_time", "os_event", "age", "n_stage")}), extra], ignore_index=True
        )[clinical.columns]
        normal_summary = {
            "column": "sample_type",
            "per_type": config.bulk_normals,
            "samples": len(normals.columns),
            "genes_log2fc_tumour_vs_normal": normal_de_genes(model),
            "model": "normals drawn from the tumours' mixture model, the planted genes' TPM divided by 2^log2fc; "
            "every other gene is null (no tumour-normal difference); no survival",
        }
        logger.info(
            "bulk: %d normal samples, tumour-normal difference planted in %d genes",
            len(normals.columns),
            len(normal_summary["genes_log2fc_tumour_vs_normal"]),
        )
    bulk_species = config.bulk_species or config.species
    expression = to_species(expression, config.species, bulk_species)
    bulk_dir = config.outdir / "bulk"
    with atomic_path(bulk_dir / "expression.tsv") as tmp:  # values are already rounded: skip slow float formatting
        expression.to_csv(tmp, sep="\t")
    write_table(clinical, bulk_dir / "clinical.tsv")
    if maf is not None:
        write_table(maf, bulk_dir / "mutations.maf")
        write_table(msi, bulk_dir / "msi.tsv")
        write_table(to_species(cnv, config.species, bulk_species).reset_index(), bulk_dir / "cnv_thresholded.tsv")
    proportions["true_signature_z"] = z
    write_table(proportions, bulk_dir / "true_proportions.tsv", index=True)
    censored = float(1 - clinical["os_event"].dropna().astype(float).mean())
    logger.info("bulk: %d samples, %.0f%% censored", config.n_bulk, 100 * censored)
    summary = {"censored_fraction": censored, "species": bulk_species, "n_genes": len(expression)}
    if normal_summary is not None:
        summary["normals"] = normal_summary
    if types is not None:
        planted = planted_types(config)
        summary["cancer_types"] = {
            "column": "cancer_type",
            "planted": planted,
            "null": sorted(set(types) - set(planted), key=lambda t: int(t[4:])),
            "hazard": "exp(beta * z) in the planted types, no effect of z in the others",
            "maf": "bulk/mutations.maf",
            "tmb_capture_mb": BULK_CAPTURE_MB,
            "msi": f"bulk/msi.tsv: msi_score = {BULK_MSI_MEDIAN:g} x exp({BULK_MSI_LOG_PER_SD:g} z in the planted types"
            f" + {BULK_MSI_LOG_SD:g} N(0,1))",
            "cnv": "bulk/cnv_thresholded.tsv: GISTIC levels -2..2 of the signature genes, independent",
            "cnv_gene": cnv_gene(model),
            "cnv_log2_per_level": BULK_CNV_LOG2_PER_LEVEL,
            "tmb": f"non-synonymous variants Poisson({BULK_TMB_PER_MB:g}/Mb x {BULK_CAPTURE_MB:g} Mb x "
            f"exp({BULK_TMB_LOG_PER_SD:g} z + {BULK_TMB_LOG_SD:g} N(0,1))) in the planted types, "
            "without the z term in the others",
        }
        logger.info(
            "bulk: %d cancer types, score-survival effect planted in %s",
            config.bulk_cancer_types,
            ", ".join(planted) or "none",
        )
    return summary


# ----------------------------------------------------------------------------------------------
# Drug-screened cell lines
# ----------------------------------------------------------------------------------------------
def drug_names(config: SimConfig) -> tuple[list[str], list[str]]:
    """Name the drugs ``DRUG01`` ...; the first ``planted_drugs`` are planted.

    Parameters
    ----------
    config
        The simulation settings (``n_drugs``, ``planted_drugs``).

    Returns
    -------
    planted, null : list of str
        The planted drugs (IC50 depends on the score) and the null drugs.
    """
    names = [f"DRUG{k + 1:02d}" for k in range(config.n_drugs)]
    return names[: config.planted_drugs], names[config.planted_drugs :]


def simulate_cell_lines(
    model: Model, config: SimConfig, rng: np.random.Generator
) -> tuple[pd.DataFrame, pd.DataFrame, pd.Series]:
    """Draw cell lines and their drug responses.

    Cell lines drawn like bulk samples (log2(TPM + 1), genes x lines ``CL0001`` ...) and a long GDSC-like
    response table (``CELL_LINE_NAME``, ``DRUG_NAME``, ``LN_IC50``): ln IC50 = ``DRUG_BASE_LN_IC50`` + N(0, 1)
    - ``DRUG_SLOPE_PER_SD`` x z for the planted drugs (z: the signature score), without the z term for the others.

    Parameters
    ----------
    model, config, rng
        The simulation model (profiles, programmes), the settings and the random generator (one cohort per seed).

    Returns
    -------
    expression : pandas.DataFrame
        log2(TPM + 1), genes x ``n_cell_lines`` lines.
    response : pandas.DataFrame
        ``CELL_LINE_NAME``, ``DRUG_NAME``, ``LN_IC50``, one row per line and drug.
    z : pandas.Series
        The signature score of each line.
    """
    expression, _ = _bulk_expression(model, config.n_cell_lines, rng)
    expression.columns = [f"CL{i + 1:04d}" for i in range(config.n_cell_lines)]
    z = signature_score(expression, model.programmes["fate_A"])
    planted, null = drug_names(config)
    rows = []
    for drug in planted + null:
        slope = DRUG_SLOPE_PER_SD if drug in planted else 0.0
        ic50 = DRUG_BASE_LN_IC50 + rng.normal(0.0, 1.0, size=len(z)) - slope * z.to_numpy()
        rows.append(pd.DataFrame({"CELL_LINE_NAME": z.index, "DRUG_NAME": drug, "LN_IC50": np.round(ic50, 4)}))
    return np.log2(expression + 1.0).round(3), pd.concat(rows, ignore_index=True), z


def write_cell_lines(model: Model, config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    """``drugs/cell_line_expression.tsv`` and ``drugs/drug_response.tsv`` (species: the bulk cohort's); the truth."""
    expression, response, _ = simulate_cell_lines(model, config, rng)
    expression = to_species(expression, config.species, config.bulk_species or config.species)
    with atomic_path(config.outdir / "drugs" / "cell_line_expression.tsv") as tmp:
        expression.to_csv(tmp, sep="\t")
    write_table(response, config.outdir / "drugs" / "drug_response.tsv")
    planted, null = drug_names(config)
    logger.info("drugs: %d cell lines, %d drugs (%d planted)", config.n_cell_lines, config.n_drugs, len(planted))
    return {
        "n_cell_lines": config.n_cell_lines,
        "expression": "drugs/cell_line_expression.tsv (log2(TPM+1); drug_values log)",
        "response": "drugs/drug_response.tsv",
        "planted": planted,
        "null": null,
        "ln_ic50": f"{DRUG_BASE_LN_IC50:g} + N(0,1) - {DRUG_SLOPE_PER_SD:g} z for the planted drugs, without the z "
        f"term for the others "
        "(z: the bulk signature score of the cell line)",
    }


# ----------------------------------------------------------------------------------------------
# Immunotherapy cohort
# ----------------------------------------------------------------------------------------------
def immunotherapy_clinical(z: pd.Series, log_or: float, rng: np.random.Generator) -> pd.DataFrame:
    """Draw the response and survival of an immunotherapy cohort.

    Best response and survival of an immunotherapy cohort driven by the signature score z: P(CR/PR) =
    logistic(``IO_BASE_LOGIT`` + log_or z) (responders CR 30% / PR, the others SD 40% / PD); time to
    progression and death after progression exponential with hazards exp(-``IO_LOG_HR_PER_LOG_OR`` log_or z)
    (OS = progression + post-progression time, so PFS <= OS); one exponential censoring time for both.

    Parameters
    ----------
    z
        The signature score per sample, indexed by sample.
    log_or
        Log odds ratio of response per SD of the score (``immunotherapy_log_or``).
    rng
        The random generator.

    Returns
    -------
    pandas.DataFrame
        ``sample``, ``response`` (CR/PR/SD/PD), ``os_time``, ``os_event``, ``pfs_time``, ``pfs_event`` (days, events 1).
    """
    n, x = len(z), z.to_numpy()
    responder = rng.uniform(size=n) < 1 / (1 + np.exp(-(IO_BASE_LOGIT + log_or * x)))
    best = np.where(
        responder, np.where(rng.uniform(size=n) < 0.3, "CR", "PR"), np.where(rng.uniform(size=n) < 0.4, "SD", "PD")
    )
    hazard = np.exp(-IO_LOG_HR_PER_LOG_OR * log_or * x)
    progression = rng.exponential(IO_MEDIAN_PFS_DAYS / math.log(2) / hazard)
    death = progression + rng.exponential(IO_MEDIAN_POST_PROGRESSION_DAYS / math.log(2) / hazard)
    censor = rng.exponential(1 / IO_CENSORING_HAZARD, size=n)
    days = lambda t: np.maximum(1, np.ceil(np.minimum(t, censor))).astype(int)  # noqa: E731
    return pd.DataFrame(
        {
            "sample": z.index,
            "response": best,
            "os_time": days(death),
            "os_event": (death <= censor).astype(int),
            "pfs_time": days(progression),
            "pfs_event": (progression <= censor).astype(int),
        }
    )


def write_bulk_cohort(
    model: Model,
    config: SimConfig,
    n: int,
    prefix: str,
    folder: str,
    clinical_of: Callable[[pd.Series], pd.DataFrame],
    rng: np.random.Generator,
) -> pd.DataFrame:
    """Write more bulk samples drawn like the bulk cohort.

    ``n`` more bulk samples drawn like the bulk cohort (``<prefix>0001`` ...): ``<folder>/expression.tsv``
    (TPM, in the bulk species) and ``<folder>/clinical.tsv`` = ``clinical_of(z)`` of their signature score;
    returns the clinical table.
    """
    expression, _ = _bulk_expression(model, n, rng)
    expression.columns = [f"{prefix}{i + 1:04d}" for i in range(n)]
    clinical = clinical_of(signature_score(expression, model.programmes["fate_A"]))
    with atomic_path(config.outdir / folder / "expression.tsv") as tmp:
        to_species(expression, config.species, config.bulk_species or config.species).to_csv(tmp, sep="\t")
    write_table(clinical, config.outdir / folder / "clinical.tsv")
    return clinical


def simulate_immunotherapy(model: Model, config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Write the immunotherapy cohort.

    ``immunotherapy/expression.tsv`` (TPM, samples ``IO0001`` ...) and ``immunotherapy/clinical.tsv``
    (:func:`immunotherapy_clinical`); returns the truth.

    Parameters
    ----------
    model, config, rng
        The simulation model (profiles, programmes), the settings and the random generator (one cohort per seed).

    Returns
    -------
    dict
        The truth: sample count, log odds ratio, responders, the response and hazard models and the file names.
    """
    clinical = write_bulk_cohort(
        model,
        config,
        config.n_immunotherapy,
        "IO",
        "immunotherapy",
        lambda z: immunotherapy_clinical(z, config.immunotherapy_log_or, rng),
        rng,
    )
    responders = int(clinical["response"].isin(["CR", "PR"]).sum())
    logger.info("immunotherapy: %d samples, %d responders (CR/PR)", config.n_immunotherapy, responders)
    return {
        "n_samples": config.n_immunotherapy,
        "log_or_per_sd": config.immunotherapy_log_or,
        "responders": responders,
        "response": f"P(CR/PR) = logistic({IO_BASE_LOGIT:g} + {config.immunotherapy_log_or:g} z)",
        "hazard": f"progression and post-progression hazards x "
        f"exp(-{IO_LOG_HR_PER_LOG_OR * config.immunotherapy_log_or:g} z); "
        f"median PFS {IO_MEDIAN_PFS_DAYS:g} days at z = 0; OS = PFS + post-progression time",
        "files": {"expression": "immunotherapy/expression.tsv", "clinical": "immunotherapy/clinical.tsv"},
    }


def simulate_validation_cohort(model: Model, config: SimConfig, rng: np.random.Generator) -> dict[str, Any]:
    """Write a validation bulk cohort.

    A second bulk cohort (``bulk_validation/``: samples ``VAL0001`` ..., one cancer type) drawn like the first,
    with the same hazard ``exp(bulk_beta * z)``: a validation set; returns the truth.

    Parameters
    ----------
    model, config, rng
        The simulation model (profiles, programmes), the settings and the random generator (one cohort per seed).

    Returns
    -------
    dict
        The truth: sample count, ``bulk_beta``, the hazard model and the file names.
    """
    clinical = write_bulk_cohort(
        model,
        config,
        config.n_bulk_validation,
        "VAL",
        "bulk_validation",
        lambda z: _survival(z, config.bulk_beta, rng),
        rng,
    )
    logger.info(
        "bulk validation cohort: %d samples, %.0f%% censored",
        config.n_bulk_validation,
        100 * (1 - clinical["os_event"].mean()),
    )
    return {
        "n_samples": config.n_bulk_validation,
        "beta": config.bulk_beta,
        "hazard": "as the bulk cohort: exp(beta * z)",
        "files": {"expression": "bulk_validation/expression.tsv", "clinical": "bulk_validation/clinical.tsv"},
    }
