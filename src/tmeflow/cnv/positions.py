"""CNV constants and gene positions: the bundled tables, a user table, chromosome arms on ``var``."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError

if TYPE_CHECKING:
    from anndata import AnnData

MIN_POSITIONED_GENES = 1000
MIN_CELLS_PER_REFERENCE_TYPE = 5
N_PCS = 30
SCORE_NEIGHBOURS = 15
HEATMAP_MAX_CELLS = 1500
BUNDLED_POSITIONS = {"human": "genes_hg38_xclone.tsv", "mouse": "genes_mm10_xclone.tsv"}
REQUIRED_OBS = ("cell_type", "patient")
MALIGNANT_LABEL = "Malignant"
NORMAL_EPITHELIAL_LABEL = "Epithelial (normal)"


# ----------------------------------------------------------------------------------------------
# Parameters
# ----------------------------------------------------------------------------------------------
def _chrom(name: Any) -> str:
    """Chromosome name without a ``chr`` prefix (``chr1`` -> ``1``, ``chrX`` -> ``X``)."""
    text = str(name).strip()
    return re.sub(r"^chr", "", text, flags=re.IGNORECASE)


# ----------------------------------------------------------------------------------------------
# Gene positions
# ----------------------------------------------------------------------------------------------
def bundled_positions(species: str) -> pd.DataFrame:
    """Read the bundled gene-position table of ``species`` (XClone 0.4.0: GRCh38 human, mm10 mouse).

    Parameters
    ----------
    species
        ``human`` or ``mouse`` (a key of ``BUNDLED_POSITIONS``).

    Returns
    -------
    pandas.DataFrame
        Index gene symbol; ``chromosome`` (no ``chr`` prefix), ``start``, ``end``, ``chr_arm``, ``gene_id``.
    """
    if species not in BUNDLED_POSITIONS:
        raise TmeflowInputError(
            f"no bundled gene-position table for species {species!r} (have: {', '.join(BUNDLED_POSITIONS)}); "
            "give one with --gene_positions (gene, chromosome, start, end)",
            column="species",
        )
    ref = resources.files("tmeflow").joinpath("resources", "gene_positions", BUNDLED_POSITIONS[species])
    with ref.open("r") as handle:
        table = pd.read_csv(handle, sep="\t", dtype={"chromosome": str, "band": str})
    table = table.drop_duplicates("gene_symbol", keep="first").set_index("gene_symbol")
    table["chromosome"] = table["chromosome"].map(_chrom)
    return table[["gene_id", "chromosome", "start", "end", "chr_arm"]]


_GENE_COLUMNS = ("gene", "gene_symbol", "symbol", "gene_name", "name")
_CHROM_COLUMNS = ("chromosome", "chr", "chrom", "seqnames", "seqname")


def read_gene_positions(path: str | Path, species: str | None = None) -> pd.DataFrame:
    """Read a user gene-position table (gene, chromosome, start, end[, arm]; TSV/CSV, header optional).

    Arms come from a ``chr_arm``/``arm`` column, else from the bundled table of ``species``,
    else from the nearest gene with a known arm on the same chromosome.

    Parameters
    ----------
    path
        The user table (``--gene_positions``); unreadable or malformed tables are one-line input errors.
    species
        Species whose bundled table supplies missing arms; ``None``: nearest-gene rule only.

    Returns
    -------
    pandas.DataFrame
        Index gene symbol; ``chromosome`` (no ``chr`` prefix), ``start``, ``end``, ``chr_arm``, ``gene_id``.
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("gene-position table not found", file=path)
    try:
        raw = pd.read_csv(path, sep=None, engine="python", header=None, dtype=str, comment="#")
    except Exception as exc:  # pandas raises many types for malformed text
        raise TmeflowInputError(f"cannot read gene-position table ({str(exc).splitlines()[0]})", file=path) from exc
    if raw.shape[1] < 4 or raw.empty:
        raise TmeflowInputError("gene-position table needs 4 columns: gene, chromosome, start, end", file=path)
    first = raw.iloc[0].astype(str).str.strip().str.lower().tolist()
    if not first[2].lstrip("-").isdigit() and not first[3].lstrip("-").isdigit():  # a header row
        raw.columns = first
        raw = raw.iloc[1:]
        gene_col = next((c for c in _GENE_COLUMNS if c in raw.columns), raw.columns[0])
        chrom_col = next((c for c in _CHROM_COLUMNS if c in raw.columns), raw.columns[1])
        start_col = "start" if "start" in raw.columns else raw.columns[2]
        end_col = next((c for c in ("end", "stop") if c in raw.columns), raw.columns[3])
        arm_col = next((c for c in ("chr_arm", "arm") if c in raw.columns), None)
    else:
        raw.columns = [f"c{i}" for i in range(raw.shape[1])]
        gene_col, chrom_col, start_col, end_col = "c0", "c1", "c2", "c3"
        arm_col = None
    table = pd.DataFrame(
        {
            "gene": raw[gene_col].str.strip(),
            "chromosome": raw[chrom_col].map(_chrom),
            "start": pd.to_numeric(raw[start_col], errors="coerce"),
            "end": pd.to_numeric(raw[end_col], errors="coerce"),
        }
    )
    bad = table["start"].isna() | table["end"].isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0]) + 1
        raise TmeflowInputError(
            f"gene-position table has {int(bad.sum())} non-numeric start/end values", file=path, row=row
        )
    table = table.drop_duplicates("gene", keep="first").set_index("gene")
    table["start"] = table["start"].astype(np.int64)
    table["end"] = table["end"].astype(np.int64)
    if arm_col is not None:
        arms = raw.drop_duplicates(gene_col, keep="first").set_index(raw[gene_col].drop_duplicates().str.strip())[
            arm_col
        ]
        arms = arms.reindex(table.index).astype(str).str.strip()
        # an arm column holding only "p"/"q" is prefixed with the chromosome
        short = arms.str.fullmatch(r"[pq]")
        arms[short] = table.loc[short, "chromosome"] + arms[short]
        table["chr_arm"] = arms
    else:
        table["chr_arm"] = _arms_from_bundled(table, species)
    table["gene_id"] = np.nan
    return table[["gene_id", "chromosome", "start", "end", "chr_arm"]]


def _arms_from_bundled(table: pd.DataFrame, species: str | None) -> pd.Series:
    """Arm of each gene from the bundled table by symbol; gaps filled from neighbours on the chromosome."""
    arms = pd.Series(np.nan, index=table.index, dtype=object)
    if species in BUNDLED_POSITIONS:
        bundled = bundled_positions(species)
        known = bundled["chr_arm"].reindex(table.index)
        same_chrom = bundled["chromosome"].reindex(table.index) == table["chromosome"]
        arms[same_chrom] = known[same_chrom]
    ordered = table.assign(arm=arms).sort_values(["chromosome", "start"])
    filled = ordered.groupby("chromosome", sort=False)["arm"].transform(lambda s: s.ffill().bfill())
    filled = filled.fillna(ordered["chromosome"])  # no arm known on the chromosome: the whole chromosome
    return filled.reindex(table.index)


def annotate_positions(adata: AnnData, positions: pd.DataFrame) -> int:
    """Place the genes of ``adata`` on the genome, by gene symbol and then by ``var['gene_ids']``.

    Parameters
    ----------
    adata
        Cells x genes (``var`` index gene symbols; optional ``var['gene_ids']``).
    positions
        Gene-position table (:func:`bundled_positions` or :func:`read_gene_positions`).

    Returns
    -------
    int
        Number of genes placed.

    Adds
    ----
    ``var['chromosome']``
        ``chr``-prefixed chromosome, as infercnvpy expects (``None`` when not placed).
    ``var['start']``, ``var['end']``, ``var['chr_arm']``
        Gene start and end (bp) and chromosome arm.
    """
    var = adata.var
    matched = positions.reindex(var.index)
    if "gene_ids" in var.columns and positions["gene_id"].notna().any():
        by_id = positions.reset_index().dropna(subset=["gene_id"]).drop_duplicates("gene_id").set_index("gene_id")
        missing = matched["chromosome"].isna().to_numpy()
        if missing.any():
            fill = by_id.reindex(var["gene_ids"].astype(str).to_numpy()[missing])
            for column in ("chromosome", "start", "end", "chr_arm"):
                values = matched[column].to_numpy(dtype=object)
                values[missing] = fill[column].to_numpy(dtype=object)
                matched[column] = values
    placed = matched["chromosome"].notna().to_numpy()
    var["chromosome"] = pd.Series(
        np.where(placed, "chr" + matched["chromosome"].astype(str), None), index=var.index, dtype=object
    )
    var["start"] = pd.to_numeric(matched["start"]).to_numpy()
    var["end"] = pd.to_numeric(matched["end"]).to_numpy()
    var["chr_arm"] = pd.Series(np.where(placed, matched["chr_arm"].astype(str), None), index=var.index, dtype=object)
    return int(placed.sum())
