"""Marker tables, the marker network and the clusters' Wilcoxon marker genes."""

from __future__ import annotations

import warnings
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
from anndata import AnnData

from ..errors import TmeflowInputError
from ..log import get_logger

logger = get_logger(__name__)

UNKNOWN = "Unknown"
FLAG_TYPES = ("proliferating",)
PROLIFERATING_SCORE = 3.0
MAX_CELLS_PER_CLUSTER_FOR_MARKERS = 1000
MIN_GENES_PER_TYPE = 3


# ----------------------------------------------------------------------------------------------
# Marker tables
# ----------------------------------------------------------------------------------------------
def bundled_markers(kind: str, species: str) -> Path:
    """Locate a bundled marker table.

    Parameters
    ----------
    kind
        ``major`` (cell types) or ``subtypes``.
    species
        ``human`` or ``mouse``.

    Returns
    -------
    pathlib.Path
        ``resources/markers/<kind>_<species>.tsv``.
    """
    return Path(str(resources.files("tmeflow").joinpath("resources", "markers", f"{kind}_{species}.tsv")))


def read_marker_table(path: str | Path, *, type_column: str = "cell_type", required=("gene",)) -> pd.DataFrame:
    """Read a marker table (TSV: ``cell_type``/``cell_type_fine``, ``compartment``, ``gene``[, ``source``]).

    Parameters
    ----------
    path
        The table; a missing file or column is a one-line input error naming it.
    type_column
        Column of the cell-type names.
    required
        Other columns that must be present.

    Returns
    -------
    pandas.DataFrame
        Rows with a type and a gene (names stripped); ``compartment`` defaults to the type.
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("marker table not found", file=path)
    try:
        table = pd.read_csv(path, sep="\t", comment="#", dtype=str)
    except Exception as exc:  # noqa: BLE001
        raise TmeflowInputError(f"cannot read marker table ({exc})", file=path) from exc
    for column in (type_column, *required):
        if column not in table.columns:
            raise TmeflowInputError(
                f"marker table lacks column '{column}' (has: {', '.join(table.columns)})", file=path, column=column
            )
    table = table.dropna(subset=[type_column, "gene"])
    table[type_column] = table[type_column].str.strip()
    table["gene"] = table["gene"].str.strip()
    if "compartment" not in table:
        table["compartment"] = table[type_column]
    table["compartment"] = table["compartment"].fillna(table[type_column])
    return table


def marker_network(
    table: pd.DataFrame,
    genes: pd.Index,
    *,
    type_column: str = "cell_type",
    file=None,
    stage: str = "annotate",
    species: str | None = None,
) -> pd.DataFrame:
    """Build the decoupler network (source, target, weight) of the marker genes present in ``genes``.

    Types with fewer than 3 genes present are dropped (warning); no gene present at all fails, in one line
    naming the stage and the species of the marker table (a species mismatch is the usual cause).

    Parameters
    ----------
    table
        Marker table (:func:`read_marker_table`).
    genes
        Genes of the data.
    type_column
        Column of the cell-type names (the network's ``source``).
    file
        The marker file named in errors (``None``: the bundled table).
    stage
        Stage named in errors.
    species
        Species of the bundled table named in errors.

    Returns
    -------
    pandas.DataFrame
        ``source`` (type), ``target`` (gene), ``weight`` (1.0), one row per type and gene.
    """
    present = table[table["gene"].isin(set(genes))]
    if present.empty:
        which = f"{species} " if species else ""
        raise TmeflowInputError(
            f"{stage}: none of the {table['gene'].nunique()} {which}marker genes is in the data "
            f"(e.g. {', '.join(table['gene'].head(3))}); check the species and gene naming",
            file=file,
        )
    counts = present.groupby(type_column)["gene"].nunique()
    dropped = sorted(
        counts.index[counts < MIN_GENES_PER_TYPE].tolist() + sorted(set(table[type_column]) - set(counts.index))
    )
    if dropped:
        logger.warning(
            "cell types with fewer than %d marker genes in the data are not scored: %s",
            MIN_GENES_PER_TYPE,
            ", ".join(dropped),
        )
    present = present[present[type_column].isin(counts.index[counts >= MIN_GENES_PER_TYPE])]
    if present.empty:
        raise TmeflowInputError(f"no cell type has {MIN_GENES_PER_TYPE} or more marker genes in the data", file=file)
    present = present.drop_duplicates([type_column, "gene"])
    return pd.DataFrame(
        {"source": present[type_column].to_numpy(), "target": present["gene"].to_numpy(), "weight": 1.0}
    )


def marker_cells(adata: AnnData, cluster_key: str, seed: int) -> AnnData:
    """Read the cells the markers are found on and the dot plot is drawn from: at most 1,000 per cluster (seeded).

    Parameters
    ----------
    adata
        Cells with log-normalised ``X`` (in memory or on disk).
    cluster_key
        ``obs`` column of the clusters.
    seed
        Seed of the per-cluster subsample.

    Returns
    -------
    AnnData
        The subsample in cell order: its ``X`` rows in memory, its ``obs``; no other element.
    """
    rng = np.random.default_rng(seed)
    codes = adata.obs[cluster_key].astype(str).to_numpy()
    keep = []
    for cluster in np.unique(codes):
        members = np.flatnonzero(codes == cluster)
        if len(members) > MAX_CELLS_PER_CLUSTER_FOR_MARKERS:
            members = rng.choice(members, MAX_CELLS_PER_CLUSTER_FOR_MARKERS, replace=False)
        keep.append(members)
    rows = np.sort(np.concatenate(keep))
    return adata.__class__(X=adata.X[rows], obs=adata.obs.iloc[rows].copy(), var=pd.DataFrame(index=adata.var_names))


def find_markers(adata: AnnData, cluster_key: str, n_genes: int, seed: int) -> pd.DataFrame:
    """Find marker genes per cluster by scanpy's Wilcoxon test, on at most 1,000 cells per cluster (seeded).

    Parameters
    ----------
    adata
        Cells with log-normalised ``X``.
    cluster_key
        ``obs`` column of the clusters.
    n_genes
        ``n_marker_genes`` kept per cluster (positive log fold change only).
    seed
        Seed of the per-cluster subsample.

    Returns
    -------
    pandas.DataFrame
        ``cluster``, ``gene``, ``score``, ``logfoldchange``, ``pval``, ``pval_adj``, ``pct_in``, ``pct_out``; best
        first within each cluster.
    """
    import scanpy as sc

    sub = marker_cells(adata, cluster_key, seed)
    sub = sub.__class__(
        X=sub.X,
        obs=pd.DataFrame({cluster_key: pd.Categorical(sub.obs[cluster_key].astype(str))}, index=sub.obs_names),
        var=pd.DataFrame(index=sub.var_names),
    )
    groups = sub.obs[cluster_key].value_counts()
    testable = groups.index[groups >= 2].tolist()
    if len(testable) < 2:
        return pd.DataFrame(
            columns=["cluster", "gene", "score", "logfoldchange", "pval", "pval_adj", "pct_in", "pct_out"]
        )
    with warnings.catch_warnings():  # scanpy adds 5 columns per cluster one by one: noise from ~20 clusters on
        warnings.filterwarnings(
            "ignore", message="DataFrame is highly fragmented", category=pd.errors.PerformanceWarning
        )
        sc.tl.rank_genes_groups(sub, cluster_key, groups=testable, method="wilcoxon", use_raw=False, pts=True)
    table = sc.get.rank_genes_groups_df(sub, group=None)
    if "group" not in table:
        table.insert(0, "group", testable[0])
    table = table.rename(
        columns={
            "group": "cluster",
            "names": "gene",
            "scores": "score",
            "logfoldchanges": "logfoldchange",
            "pvals": "pval",
            "pvals_adj": "pval_adj",
            "pct_nz_group": "pct_in",
            "pct_nz_reference": "pct_out",
        }
    )
    table = table[table["logfoldchange"] > 0]
    return table.groupby("cluster", observed=True, sort=False).head(n_genes).reset_index(drop=True)
