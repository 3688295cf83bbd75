"""Inputs shared by composition, de and pathways: obs checks, the sample table, contrasts, cell counts."""

from __future__ import annotations

from itertools import combinations
from pathlib import Path

import pandas as pd

from ..errors import TmeflowInputError

NORMAL = "normal"
PREFERRED_REFERENCE = "primary"
LEVELS = {"major": "cell_type", "fine": "cell_type_fine"}
MIN_SAMPLES_DA = 2  # per condition: with fewer, no residual variance can be estimated without pairing


# --------------------------------------------------------------------------------------------------
# Inputs shared by composition, de and pathways


def check_obs(obs: pd.DataFrame, required: tuple[str, ...], *, file: str | Path | None = None) -> None:
    """Fail with one line when ``obs`` lacks a required column or a sample has several conditions or patients.

    Parameters
    ----------
    obs
        Cell table of the atlas (``sample``, ``condition``, optionally ``patient``).
    required
        Columns that must be present and complete.
    file
        Input file named in the error.
    """
    for column in required:
        if column not in obs.columns:
            raise TmeflowInputError(f"atlas obs has no column '{column}'", file=file, column=column)
        if obs[column].isna().any():
            raise TmeflowInputError(f"atlas obs column '{column}' has missing values", file=file, column=column)
    per_sample = obs.groupby(obs["sample"].astype(str), observed=True)["condition"].nunique()
    mixed = per_sample[per_sample > 1]
    if len(mixed):
        raise TmeflowInputError(
            f"sample {mixed.index[0]} has cells of several conditions; each sample must have one condition",
            file=file,
            column="condition",
        )
    if "patient" in obs.columns:
        patients = obs.groupby(obs["sample"].astype(str), observed=True)["patient"].nunique()
        if (patients > 1).any():
            raise TmeflowInputError(
                f"sample {patients[patients > 1].index[0]} has cells of several patients", file=file, column="patient"
            )


def sample_table(obs: pd.DataFrame) -> pd.DataFrame:
    """Tabulate the samples: one row per sample with its condition and patient.

    Parameters
    ----------
    obs
        Cell table of the atlas (``sample``, ``condition``, optionally ``patient``).

    Returns
    -------
    pandas.DataFrame
        Index ``sample`` (sorted); ``condition``, ``patient`` (the sample itself without an obs ``patient``).
    """
    frame = pd.DataFrame({"sample": obs["sample"].astype(str), "condition": obs["condition"].astype(str)})
    frame["patient"] = obs["patient"].astype(str).to_numpy() if "patient" in obs.columns else frame["sample"]
    return frame.drop_duplicates("sample").set_index("sample").sort_index()


def condition_order(obs: pd.DataFrame) -> list[str]:
    """List the conditions present, in category order (or order of first appearance).

    Parameters
    ----------
    obs
        Cell table of the atlas (``sample``, ``condition``, optionally ``patient``).

    Returns
    -------
    list of str
        Condition names.
    """
    column = obs["condition"]
    present = set(column.astype(str))
    if isinstance(column.dtype, pd.CategoricalDtype):
        return [str(c) for c in column.cat.categories if str(c) in present]
    return list(dict.fromkeys(column.astype(str)))


def resolve_contrasts(
    obs: pd.DataFrame, contrast: str | None, *, file: str | Path | None = None
) -> list[tuple[str, str]]:
    """Resolve the ``(test, reference)`` pairs to compare (the default rule is in :mod:`tmeflow.composition`).

    Parameters
    ----------
    obs
        Cell table of the atlas (``sample``, ``condition``, optionally ``patient``).
    contrast
        ``contrast`` parameter: ``test,reference`` pairs separated by ``;``, ``all`` (every pair), or empty
        (default rule).
    file
        Input file named in errors.

    Returns
    -------
    list of tuple
        ``(test, reference)`` condition pairs.
    """
    conditions = condition_order(obs)
    if len(conditions) < 2:
        raise TmeflowInputError(
            f"only one condition ({conditions[0] if conditions else 'none'}) in obs 'condition'; "
            "comparing conditions needs at least two",
            file=file,
            column="condition",
        )
    text = (contrast or "").strip()
    if text.lower() == "all":
        return [(test, ref) for ref, test in combinations(conditions, 2)]
    if text:
        pairs = []
        for part in text.split(";"):
            names = [name.strip() for name in part.split(",")]
            if len(names) != 2 or not all(names) or names[0] == names[1]:
                raise TmeflowInputError(f"contrast '{part}' must be 'test,reference' with two different conditions")
            for name in names:
                if name not in conditions:
                    raise TmeflowInputError(
                        f"contrast names condition '{name}', which is not in the data "
                        f"(conditions: {', '.join(conditions)})",
                        file=file,
                        column="condition",
                    )
            pairs.append((names[0], names[1]))
        return pairs
    n_samples = obs.groupby(obs["condition"].astype(str), observed=True)["sample"].nunique()
    tumour = [c for c in conditions if c != NORMAL]
    if len(tumour) >= 2:
        ranked = sorted(tumour, key=lambda c: (-int(n_samples.get(c, 0)), conditions.index(c)))[:2]
        reference = PREFERRED_REFERENCE if PREFERRED_REFERENCE in ranked else ranked[1]
        test = next(c for c in ranked if c != reference)
        return [(test, reference)]
    reference = NORMAL if NORMAL in conditions else conditions[0]
    test = next(c for c in conditions if c != reference)
    return [(test, reference)]


def contrast_name(test: str, reference: str) -> str:
    """Name a contrast ``<test>_vs_<reference>`` (file names and table columns).

    Parameters
    ----------
    test, reference
        The condition levels compared (the test level and the baseline).

    Returns
    -------
    str
        ``"<test>_vs_<reference>"``.
    """
    return f"{test}_vs_{reference}"


def is_paired(samples: pd.DataFrame, test: str, reference: str) -> bool:
    """Decide whether a contrast is paired: every patient has samples in both conditions, at least two patients.

    Parameters
    ----------
    samples
        :func:`sample_table`.
    test, reference
        The contrasted conditions.

    Returns
    -------
    bool
        True when the design can block on patient.
    """
    sub = samples[samples["condition"].isin([test, reference])]
    per_patient = sub.groupby("patient")["condition"].nunique()
    return len(per_patient) >= 2 and bool((per_patient == 2).all()) and not (sub["patient"] == sub.index).all()


def check_samples_per_condition(
    samples: pd.DataFrame, pairs: list[tuple[str, str]], minimum: int, what: str, *, file: str | Path | None = None
) -> None:
    """Fail when a contrasted condition has fewer than ``minimum`` samples.

    Parameters
    ----------
    samples
        :func:`sample_table`.
    pairs
        ``(test, reference)`` pairs.
    minimum
        Samples needed per condition.
    what
        The analysis, named in the error.
    file
        Input file named in the error.
    """
    counts = samples["condition"].value_counts()
    for pair in pairs:
        for condition in pair:
            n = int(counts.get(condition, 0))
            if n < minimum:
                raise TmeflowInputError(
                    f"condition '{condition}' has {n} sample(s); {what} needs at least {minimum} samples per condition",
                    file=file,
                    column="condition",
                )


def cell_counts(obs: pd.DataFrame, key: str) -> pd.DataFrame:
    """Count the cells of every sample and cell type (all categories, zeros included).

    Parameters
    ----------
    obs
        Cell table (``sample`` and ``key``).
    key
        Cell-type column (``cell_type`` or ``cell_type_fine``).

    Returns
    -------
    pandas.DataFrame
        Samples (index ``sample``, sorted) x cell types.
    """
    table = pd.crosstab(obs["sample"].astype(str), obs[key].astype(str))
    table.columns.name = None
    table.index.name = "sample"
    return table.sort_index()
