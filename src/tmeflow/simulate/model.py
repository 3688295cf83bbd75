"""The cohort model drawn once (profiles, dispersion, batches, CNVs, programmes) and per-cell means and counts."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .genes import Genes
from .settings import (
    BASELINE_SHAPE,
    BRANCH_POINT,
    CELL_TYPES,
    CNV_EVENTS_RANGE,
    CNV_GAIN,
    CNV_LOSS,
    DE_CELL_TYPE,
    DE_LOG2FC,
    DE_N_GENES,
    DISPERSION_RANGE,
    HB_WEIGHT,
    LOW_QUALITY_MITO,
    LOW_QUALITY_UMI,
    LR_FOLD,
    LR_TARGET,
    MALIGNANT,
    MALIGNANT_NOISE_SD,
    MARKER_OFF_QUANTILES,
    MARKER_QUANTILES,
    METASTASIS,
    MIN_CNV_ARM_GENES,
    MITO_FRACTION,
    NEUTROPHIL_LOG2FC,
    NEUTROPHIL_PROGRAMME_GENES,
    NEUTROPHIL_STREAM,
    PATHWAY_FOLD,
    PATIENT_NOISE_SD,
    PROGRAMME_QUANTILES,
    RIBO_FRACTION,
    TRAJECTORY_LOG2FC,
    TRAJECTORY_N_GENES,
    TYPE_NOISE_SD,
    SimConfig,
)


# ----------------------------------------------------------------------------------------------
# Model: profiles and planted effects
# ----------------------------------------------------------------------------------------------
@dataclass
class Model:
    """Everything drawn once for the cohort: profiles, dispersion, batches, CNVs, programmes."""

    genes: Genes
    profiles: np.ndarray  # cell types x genes, each row sums to 1
    dispersion: np.ndarray  # per gene
    batch_factors: dict[str, np.ndarray]
    patient_factors: dict[str, np.ndarray]  # malignant-cell factor per patient (CNV x patient noise)
    cnv_events: dict[str, list[dict[str, str]]]
    programmes: dict[str, list[str]]  # early, fate_A, fate_B, de_up, de_down
    neutrophil_states: dict[str, list[str]] = field(default_factory=dict)  # mouse only: state -> its genes
    idx: dict[str, np.ndarray] = field(default_factory=dict)

    def type_index(self, cell_type: str) -> int:
        """Return the position of ``cell_type`` in the model's cell types."""
        return CELL_TYPES.index(cell_type)


def _quantile_values(baseline: np.ndarray, low: float, high: float, n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` values of ``baseline`` at random quantiles between ``low`` and ``high``."""
    return np.quantile(baseline, rng.uniform(low, high, size=n))


def _pick_programme_genes(genes: Genes, taken: set[str], n: int, rng: np.random.Generator) -> list[str]:
    """``n`` random autosomal/X genes not yet used by any programme."""
    pool = [g for g in genes.var.index if g not in taken and genes.var.at[g, "chromosome"] != "MT"]
    picked = rng.choice(np.array(pool), size=n, replace=False).tolist()
    taken.update(picked)
    return picked


def _draw_programmes(genes: Genes, rng: np.random.Generator) -> dict[str, list[str]]:
    taken = set().union(
        *genes.markers.values(), genes.ribo, genes.haemoglobin, genes.pathway, {genes.ligand, genes.receptor}
    )
    programmes = {
        name: _pick_programme_genes(genes, taken, TRAJECTORY_N_GENES, rng) for name in ("early", "fate_A", "fate_B")
    }
    de = _pick_programme_genes(genes, taken, DE_N_GENES, rng)
    programmes["de_up"], programmes["de_down"] = sorted(de[: DE_N_GENES // 2]), sorted(de[DE_N_GENES // 2 :])
    return programmes


def _cnv_factor(genes: Genes, events: list[dict[str, str]]) -> np.ndarray:
    factor: np.ndarray = np.ones(len(genes.var), dtype=np.float32)
    for event in events:
        factor[(genes.var["chr_arm"] == event["arm"]).to_numpy()] = CNV_GAIN if event["type"] == "gain" else CNV_LOSS
    return factor


def _draw_cnv_events(genes: Genes, rng: np.random.Generator) -> list[dict[str, str]]:
    """3-5 distinct autosomal arms; the first is a gain and the second a loss, the rest random."""
    counts = genes.var.loc[~genes.var["chromosome"].isin(["X", "Y", "MT"]), "chr_arm"].value_counts()
    arms = sorted(counts.index[counts >= MIN_CNV_ARM_GENES])
    n = int(rng.integers(CNV_EVENTS_RANGE[0], CNV_EVENTS_RANGE[1] + 1))
    chosen = rng.choice(np.array(arms), size=n, replace=False)
    kinds = ["gain", "loss"] + rng.choice(["gain", "loss"], size=n - 2).tolist()
    order = {arm: i for i, arm in enumerate(genes.var["chr_arm"].unique())}
    events = [{"arm": str(arm), "type": kind} for arm, kind in zip(chosen, kinds, strict=True)]
    return sorted(events, key=lambda e: order[e["arm"]])


def _base_profiles(genes: Genes, programmes: dict[str, list[str]], rng: np.random.Generator) -> np.ndarray:
    n_genes = len(genes.var)
    baseline = rng.gamma(BASELINE_SHAPE, 1.0, size=n_genes)
    marker_genes = sorted(set().union(*genes.markers.values()))
    mid = sorted(set().union(*programmes.values(), genes.pathway, {genes.ligand, genes.receptor}))
    marker_levels = np.quantile(baseline, MARKER_QUANTILES)  # before pinning, from the raw baseline
    baseline[genes.index(mid)] = _quantile_values(baseline, *PROGRAMME_QUANTILES, len(mid), rng)
    baseline[genes.index(marker_genes)] = _quantile_values(baseline, *MARKER_OFF_QUANTILES, len(marker_genes), rng)
    mito, ribo, hb = genes.index(genes.mito), genes.index(genes.ribo), genes.index(genes.haemoglobin)
    fixed: np.ndarray = np.zeros(n_genes, dtype=bool)
    fixed[np.concatenate([mito, ribo, hb])] = True

    marker_low, marker_high = np.log(marker_levels)
    profiles = np.empty((len(CELL_TYPES), n_genes))
    for t, cell_type in enumerate(CELL_TYPES):
        if cell_type == MALIGNANT:  # malignant = epithelial with extra noise, below
            continue
        profiles[t] = baseline * rng.lognormal(0.0, TYPE_NOISE_SD, size=n_genes)
        markers = genes.index(genes.markers[cell_type])
        profiles[t, markers] = np.exp(rng.uniform(marker_low, marker_high, size=len(markers)))
    malignant = CELL_TYPES.index(MALIGNANT)
    profiles[malignant] = profiles[CELL_TYPES.index("epithelial")] * rng.lognormal(
        0.0, MALIGNANT_NOISE_SD, size=n_genes
    )
    # markers of other types stay at their (low) baseline in every type
    for t, cell_type in enumerate(CELL_TYPES):
        own = set(genes.markers[cell_type])
        others = [g for g in marker_genes if g not in own]
        profiles[t, genes.index(others)] = baseline[genes.index(others)]
    ribo_weights = rng.gamma(4.0, 1.0, size=len(ribo))
    mito_weights = rng.gamma(4.0, 1.0, size=len(mito))
    for t in range(len(CELL_TYPES)):
        profiles[t, ~fixed] *= (1.0 - MITO_FRACTION - RIBO_FRACTION - HB_WEIGHT * len(hb)) / profiles[t, ~fixed].sum()
        profiles[t, ribo] = RIBO_FRACTION * ribo_weights / ribo_weights.sum()
        profiles[t, mito] = MITO_FRACTION * mito_weights / mito_weights.sum()
        profiles[t, hb] = HB_WEIGHT
    return profiles


def _draw_patient(genes: Genes, rng: np.random.Generator) -> tuple[list[dict[str, str]], np.ndarray]:
    """Draw a patient's CNV events and malignant-cell factor (CNV x patient-specific programme noise)."""
    events = _draw_cnv_events(genes, rng)
    noise = rng.lognormal(0.0, PATIENT_NOISE_SD, size=len(genes.var)).astype(np.float32)
    noise[genes.index(genes.markers[MALIGNANT] + genes.mito + genes.ribo)] = 1.0
    return events, _cnv_factor(genes, events) * noise


def build_model(config: SimConfig, genes: Genes, rng: np.random.Generator) -> Model:
    """Draw the cohort's expression model: cell-type profiles, programmes, dispersions, batch and patient factors.

    Parameters
    ----------
    config
        The simulation settings (``n_patients``, ``n_batches``, ``batch_effect``).
    genes
        The simulated genes (:func:`tmeflow.simulate.genes.build_genes`).
    rng
        The random generator (consumed in a fixed order, so a seed gives one cohort).

    Returns
    -------
    Model
        Cell-type profiles (types x genes, rows summing to 1), per-gene dispersions, batch and per-patient factors,
        the patients' CNV events and the gene programmes.
    """
    programmes = _draw_programmes(genes, rng)
    profiles = _base_profiles(genes, programmes, rng)
    n_genes = len(genes.var)
    dispersion = rng.uniform(*DISPERSION_RANGE, size=n_genes).astype(np.float32)
    batch_factors = {
        f"batch{b + 1}": rng.lognormal(0.0, config.batch_effect, size=n_genes).astype(np.float32)
        for b in range(config.n_batches)
    }
    cnv_events, patient_factors = {}, {}
    for p in range(config.n_patients):
        patient = f"P{p + 1}"
        cnv_events[patient], patient_factors[patient] = _draw_patient(genes, rng)
    model = Model(genes, profiles, dispersion, batch_factors, patient_factors, cnv_events, programmes)
    model.neutrophil_states = _neutrophil_state_genes(genes, programmes, config.seed)
    names = {
        **programmes,
        "pathway": genes.pathway,
        "ligand": [genes.ligand],
        "receptor": [genes.receptor],
        "mito": genes.mito,
    }
    names.update({f"neutrophil:{state}": symbols for state, symbols in model.neutrophil_states.items()})
    model.idx = {name: genes.index(symbols) for name, symbols in names.items()}
    _raise_neutrophil_state_genes(model)
    return model


def _neutrophil_state_genes(genes: Genes, programmes: dict[str, list[str]], seed: int) -> dict[str, list[str]]:
    """Choose the genes of each planted neutrophil state.

    The genes of each planted neutrophil state (mouse only): the bundled subtype markers plus
    ``NEUTROPHIL_PROGRAMME_GENES`` random genes each (a state moves hundreds of genes in real neutrophils, not
    a handful of markers). Drawn from a stream of its own.
    """
    if not genes.neutrophil_states:
        return {}
    rng = np.random.default_rng([seed, NEUTROPHIL_STREAM])
    taken = set().union(*genes.markers.values(), *genes.neutrophil_states.values(), *programmes.values(), genes.ribo,
                        genes.haemoglobin, genes.pathway, {genes.ligand, genes.receptor})  # fmt: skip
    states = {state: list(symbols) for state, symbols in genes.neutrophil_states.items()}
    for state in states:
        states[state] += _pick_programme_genes(genes, taken, NEUTROPHIL_PROGRAMME_GENES, rng)
    return states


def _raise_neutrophil_state_genes(model: Model) -> None:
    """Raise the neutrophil state genes.

    Neutrophil state genes at the level of the neutrophil's highest marker for the bundled markers
    (granule-protein genes such as Camp, Ltf, Ngp are among immature neutrophils' most abundant transcripts) and
    at the 95th percentile of the neutrophil profile for the random programme genes; the state factors of
    :func:`_neutrophil_factors` then lower them outside their state. No random draw.
    """
    neutrophil = model.type_index("neutrophil")
    profile = model.profiles[neutrophil]
    marker_level = float(np.max(profile[model.genes.index(model.genes.markers["neutrophil"])]))
    programme_level = np.quantile(profile, 0.95)
    for state, symbols in model.neutrophil_states.items():
        markers = set(model.genes.neutrophil_states[state])
        profile[model.genes.index(symbols)] = [marker_level if g in markers else programme_level for g in symbols]


# ----------------------------------------------------------------------------------------------
# Cell means and counts
# ----------------------------------------------------------------------------------------------
def _trajectory_factor(model: Model, pseudotime: np.ndarray, fate: np.ndarray) -> np.ndarray:
    """Multiplicative factors (cells x genes of early, fate_A, fate_B) for malignant cells."""
    early = 2.0 ** (TRAJECTORY_LOG2FC * (1.0 - pseudotime))
    progress = np.clip((pseudotime - BRANCH_POINT) / (1.0 - BRANCH_POINT), 0.0, 1.0)
    fate_a = 2.0 ** (TRAJECTORY_LOG2FC * progress * (fate == "A"))
    fate_b = 2.0 ** (TRAJECTORY_LOG2FC * progress * (fate == "B"))
    n = TRAJECTORY_N_GENES
    return np.concatenate(
        [np.repeat(early[:, None], n, 1), np.repeat(fate_a[:, None], n, 1), np.repeat(fate_b[:, None], n, 1)], axis=1
    )


def _neutrophil_factors(maturation: np.ndarray, state: np.ndarray) -> dict[str, np.ndarray]:
    """Return per-cell factors of each neutrophil state's genes.

    Per-cell factors of each state's genes: immature genes fall and mature genes rise with maturation
    (``NEUTROPHIL_LOG2FC`` over the path); PROK2-high cells switch their state's genes on and the mature
    state's genes off (a distinct state, as in Xue et al. 2022, not a mature cell with extra genes).
    """
    low = 2.0**-NEUTROPHIL_LOG2FC
    prok2 = state == "PROK2-high neutrophil"
    return {
        "immature neutrophil": 2.0 ** (-NEUTROPHIL_LOG2FC * maturation),
        "mature neutrophil": np.where(prok2, low, 2.0 ** (-NEUTROPHIL_LOG2FC * (1.0 - maturation))),
        "PROK2-high neutrophil": np.where(prok2, 1.0, low),
    }


def _scale_columns(mu: np.ndarray, rows: np.ndarray, cols: np.ndarray, factor) -> None:
    if rows.any():
        sub = mu[np.ix_(rows, cols)]
        mu[np.ix_(rows, cols)] = sub * factor


def cell_means(model: Model, cells: pd.DataFrame, *, patient: str, condition: str, batch: str | None) -> np.ndarray:
    """Compute expected counts (cells x genes, float32) of cells with columns type_code, library, pseudotime, fate.

    ``batch`` None: no batch factor (spatial sections are their own platform).

    Parameters
    ----------
    model
        The simulation model.
    cells
        One row per cell: ``type_code`` (index into the cell types), ``library`` (expected UMIs), ``pseudotime``
        (0-1) and ``fate`` (the malignant cells' fate).
    patient
        The cells' patient (its CNV factors apply to malignant cells).
    condition
        The cells' condition; in the metastasis condition the planted ligand-receptor, pathway and myeloid DE
        effects apply.
    batch
        The cells' batch, or None for no batch factor.

    Returns
    -------
    numpy.ndarray
        Expected counts, cells x genes, float32.
    """
    type_codes = cells["type_code"].to_numpy()
    mu = model.profiles[type_codes].astype(np.float32)
    if batch is not None:
        mu *= model.batch_factors[batch][None, :]
    mu *= cells["library"].to_numpy(np.float32)[:, None]
    malignant = type_codes == model.type_index(MALIGNANT)
    if malignant.any():
        mu[malignant] *= model.patient_factors[patient][None, :]
        traj_cols = np.concatenate([model.idx["early"], model.idx["fate_A"], model.idx["fate_B"]])
        factor = _trajectory_factor(
            model, cells["pseudotime"].to_numpy()[malignant], cells["fate"].to_numpy()[malignant]
        )
        mu[np.ix_(malignant, traj_cols)] *= factor.astype(np.float32)
    neutrophil = type_codes == model.type_index("neutrophil")
    if model.genes.neutrophil_states and neutrophil.any():
        # cells without a drawn maturation (spot cells, doublet partners) sit mid-path, mature
        maturation = cells.get("maturation", pd.Series(0.5, index=cells.index)).fillna(0.5).to_numpy()[neutrophil]
        state = cells.get("state", pd.Series("mature neutrophil", index=cells.index)).to_numpy()[neutrophil]
        for name, factor in _neutrophil_factors(maturation, state).items():
            mu[np.ix_(neutrophil, model.idx[f"neutrophil:{name}"])] *= factor.astype(np.float32)[:, None]
    if condition == METASTASIS:
        _scale_columns(mu, malignant, model.idx["ligand"], LR_FOLD)
        _scale_columns(mu, malignant, model.idx["pathway"], PATHWAY_FOLD)
        _scale_columns(mu, type_codes == model.type_index(LR_TARGET), model.idx["receptor"], LR_FOLD)
        myeloid = type_codes == model.type_index(DE_CELL_TYPE)
        _scale_columns(mu, myeloid, model.idx["de_up"], 2.0**DE_LOG2FC)
        _scale_columns(mu, myeloid, model.idx["de_down"], 2.0**-DE_LOG2FC)
    return mu


def _make_low_quality(mu: np.ndarray, rows: np.ndarray, mito: np.ndarray, rng: np.random.Generator) -> None:
    """Rescale rows to 200-400 expected UMI with 30-60% mitochondrial reads."""
    n = int(rows.sum())
    if not n:
        return
    total = rng.uniform(*LOW_QUALITY_UMI, size=n)
    fraction = rng.uniform(*LOW_QUALITY_MITO, size=n)
    sub = mu[rows]
    is_mito = np.zeros(mu.shape[1], dtype=bool)
    is_mito[mito] = True
    nonmito_sum = sub[:, ~is_mito].sum(axis=1)
    mito_sum = sub[:, is_mito].sum(axis=1)
    sub[:, ~is_mito] *= (total * (1 - fraction) / nonmito_sum)[:, None].astype(np.float32)
    sub[:, is_mito] *= (total * fraction / mito_sum)[:, None].astype(np.float32)
    mu[rows] = sub


def draw_counts(mu: np.ndarray, dispersion: np.ndarray, rng: np.random.Generator) -> sp.csr_matrix:
    """Draw negative-binomial counts (gamma-Poisson, variance mu + dispersion * mu^2) as CSR float32.

    Parameters
    ----------
    mu
        Expected counts, cells x genes.
    dispersion
        Per-gene negative-binomial dispersion (variance mu + dispersion * mu^2), length genes.
    rng
        The random generator.

    Returns
    -------
    scipy.sparse.csr_matrix
        Counts, cells x genes, float32.
    """
    shape = 1.0 / dispersion
    gamma = rng.standard_gamma(np.broadcast_to(shape[None, :], mu.shape), dtype=np.float32)
    gamma *= dispersion[None, :]
    gamma *= mu
    counts = np.asarray(rng.poisson(gamma))
    rows, cols = np.nonzero(counts)
    indptr = np.concatenate([[0], np.cumsum(np.bincount(rows, minlength=mu.shape[0]))])
    return sp.csr_matrix((counts[rows, cols].astype(np.float32), cols.astype(np.int32), indptr), shape=mu.shape)
