"""Species-aware gene classes used by QC and scoring (mitochondrial, ribosomal, haemoglobin)."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from anndata import AnnData

SPECIES = ("human", "mouse")

# Globin genes only: a plain "^HB" prefix would also catch HBEGF, HBP1, HBS1L.
_PATTERNS = {
    "human": {
        "mito": r"^MT-",
        "ribo": r"^RP[SL]\d",
        "hb": r"^HB(A1|A2|B|D|E1|G1|G2|M|Q1|Z)$",
    },
    "mouse": {
        "mito": r"^mt-",
        "ribo": r"^Rp[sl]\d",
        "hb": r"^Hb[ab]-",
    },
}


def gene_class_mask(var_names: pd.Index | list[str], species: str, gene_class: str) -> np.ndarray:
    """Mark the genes of a class by their symbol: mitochondrial, ribosomal protein or haemoglobin.

    Parameters
    ----------
    var_names
        Gene symbols.
    species
        ``human`` (``MT-``, ``RPS``/``RPL``, the haemoglobin genes ``HBA1`` ... ``HBZ``) or ``mouse`` (``mt-``,
        ``Rps``/``Rpl``, ``Hba-``/``Hbb-``).
    gene_class
        ``mito``, ``ribo`` or ``hb``.

    Returns
    -------
    numpy.ndarray
        Boolean mask over ``var_names``.
    """
    pattern = re.compile(_PATTERNS[species][gene_class])
    return np.fromiter((bool(pattern.match(name)) for name in var_names), dtype=bool, count=len(var_names))


ENSEMBL_ID = re.compile(r"^ENS[A-Z]*G\d{6,}(\.\d+)?$")
_ENSEMBL_PREFIX = {"human": "ENSG", "mouse": "ENSMUSG"}


def mostly_ensembl(names) -> bool:
    """Tell whether most of (the first 2,000) gene names are Ensembl gene ids.

    Parameters
    ----------
    names
        Gene names.

    Returns
    -------
    bool
        True when more than half are Ensembl gene ids (``ENSG...``, ``ENSMUSG...``, version suffix allowed).
    """
    names = [str(name) for name in list(names)[:2000]]
    return bool(names) and bool(np.mean([bool(ENSEMBL_ID.match(name)) for name in names]) > 0.5)


def symbols_from_ensembl(names, species: str) -> tuple[pd.Index, int]:
    """Map the ``species``' Ensembl gene ids to gene symbols; other names are kept.

    Versions are ignored; the table is that of :func:`tmeflow.signatures.ensembl_to_symbol`.

    Parameters
    ----------
    names
        Gene names or ids.
    species
        ``human`` (``ENSG`` ids) or ``mouse`` (``ENSMUSG`` ids).

    Returns
    -------
    tuple
        ``(new names as a pandas.Index, number of names mapped)``.
    """
    from .signatures import ensembl_to_symbol

    names = [str(name) for name in names]
    mapping = ensembl_to_symbol([name for name in names if name.startswith(_ENSEMBL_PREFIX[species])])
    symbols = [mapping.get(name, name) for name in names]
    mapped = sum(new != str(old) for new, old in zip(symbols, names, strict=True))
    return pd.Index(symbols), mapped


def species_of(adata: AnnData | None = None, *, obs: pd.DataFrame | None = None, var_names=None) -> str:
    """Return the species of a dataset (``human`` or ``mouse``): the one place every stage asks.

    The obs ``species`` column (from the samplesheet) when it names one, else inferred from the gene symbols
    (mouse mitochondrial ``mt-`` genes and no human ``MT-``, or mostly capitalised symbols such as ``Cd3e``);
    ``human`` only when there are no genes to look at.

    Parameters
    ----------
    adata
        The dataset (its ``obs`` and ``var_names`` are used unless given separately).
    obs
        Cell or sample metadata with an optional ``species`` column.
    var_names
        Gene symbols.

    Returns
    -------
    str
        ``human`` or ``mouse``.
    """
    obs = adata.obs if obs is None and adata is not None else obs
    var_names = adata.var_names if var_names is None and adata is not None else var_names
    if obs is not None and "species" in obs.columns:
        values = obs["species"].dropna().astype(str).str.lower()
        values = values[values.isin(SPECIES)]
        if len(values):
            return str(values.mode().iat[0])
    if var_names is None or not len(var_names):
        return "human"
    names = pd.Index(var_names).astype(str)
    if gene_class_mask(names, "mouse", "mito").any() and not gene_class_mask(names, "human", "mito").any():
        return "mouse"
    letters = [g for g in names[:2000] if g[:1].isalpha() and len(g) > 1]
    mouse_like = np.mean([g[0].isupper() and g[1:] != g[1:].upper() for g in letters]) if letters else 0.0
    return "mouse" if mouse_like > 0.5 else "human"
