"""Species-aware gene classes used by QC and scoring (mitochondrial, ribosomal, haemoglobin)."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd

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
    """Boolean mask of genes of ``gene_class`` (``mito``, ``ribo`` or ``hb``) for ``species``."""
    pattern = re.compile(_PATTERNS[species][gene_class])
    return np.fromiter((bool(pattern.match(name)) for name in var_names), dtype=bool, count=len(var_names))
