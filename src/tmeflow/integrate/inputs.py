"""Integration inputs: read the samples' metadata, check them, and concatenate their counts on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import scipy.sparse as sp

from ..errors import TmeflowInputError
from ..io import write_csr_blocks, write_h5ad_elements


def _sample_name(path: Path, obs: pd.DataFrame) -> str:
    if "sample" in obs and obs["sample"].nunique() == 1:
        return str(obs["sample"].iloc[0])
    return path.name.removesuffix(".h5ad").removesuffix(".qc")


def inspect_inputs(paths: list[Path]) -> list[dict[str, Any]]:
    """Read the gene names, obs columns, cell count and sample name of every input without reading counts.

    Parameters
    ----------
    paths
        ``<sample>.qc.h5ad`` files.

    Returns
    -------
    list of dict
        Per input: ``path, sample, genes, columns, n_obs, has_counts, species``.

    Raises
    ------
    TmeflowInputError
        A file is missing or unreadable.
    """
    import anndata as ad

    infos = []
    for path in paths:
        if not path.is_file():
            raise TmeflowInputError("input h5ad not found", file=path)
        try:
            backed = ad.read_h5ad(path, backed="r")
        except Exception as exc:  # noqa: BLE001 - anything unreadable is a user input problem
            raise TmeflowInputError(f"cannot read h5ad ({type(exc).__name__}: {exc})", file=path) from exc
        try:
            obs = backed.obs.copy()
            infos.append(
                {
                    "path": path,
                    "sample": _sample_name(path, obs),
                    "genes": pd.Index(backed.var_names.astype(str)),
                    "columns": list(obs.columns),
                    "n_obs": backed.n_obs,
                    "has_counts": "counts" in backed.layers.keys(),
                    "species": sorted(obs["species"].astype(str).unique()) if "species" in obs else [],
                }
            )
        finally:
            backed.file.close()
    return infos


def shared_genes(infos: list[dict[str, Any]], min_shared: int) -> pd.Index:
    """Return the genes in every sample (in the first sample's order).

    Parameters
    ----------
    infos
        :func:`inspect_inputs`'s records.
    min_shared
        Fewest shared genes accepted (``min_shared_genes``).

    Returns
    -------
    pandas.Index
        The shared genes.

    Raises
    ------
    TmeflowInputError
        Duplicate sample names, or fewer than ``min_shared`` shared genes (naming the samples that share too few).
    """
    names = [info["sample"] for info in infos]
    duplicated = sorted({n for n in names if names.count(n) > 1})
    if duplicated:
        raise TmeflowInputError(f"sample(s) {', '.join(duplicated)} given more than once", sample=duplicated[0])
    common = infos[0]["genes"]
    for info in infos[1:]:
        common = common.intersection(info["genes"])
    if len(common) >= min_shared:
        keep = set(common)
        return pd.Index([g for g in infos[0]["genes"] if g in keep])
    culprits = []
    for i, info in enumerate(infos):
        others = [other["genes"] for j, other in enumerate(infos) if j != i]
        if others:
            rest = others[0]
            for genes in others[1:]:
                rest = rest.intersection(genes)
            if len(rest) >= min_shared:
                culprits.append(
                    f"{info['sample']} ({len(info['genes'].intersection(rest))} of {len(info['genes'])} genes shared)"
                )
    named = ", ".join(culprits) if culprits else ", ".join(f"{i['sample']} ({len(i['genes'])} genes)" for i in infos)
    raise TmeflowInputError(
        f"the samples share only {len(common)} genes (min_shared_genes {min_shared}): {named}; "
        "are they the same species and gene naming (symbols vs Ensembl IDs)?"
    )


def check_inputs(infos: list[dict[str, Any]], *, batch_key: str, min_shared_genes: int) -> pd.Index:
    """Check the integration inputs before anything is computed; return the shared genes.

    Parameters
    ----------
    infos
        :func:`inspect_inputs`'s records.
    batch_key
        The obs column every sample must have.
    min_shared_genes
        Fewest genes every sample must share.

    Returns
    -------
    pandas.Index
        The genes shared by every sample.

    Raises
    ------
    TmeflowInputError
        Several species, a missing ``batch_key``, fewer than 3 cells in a sample, or too few shared genes.
    """
    species = sorted({s for info in infos for s in info["species"]})
    if len(species) > 1:
        raise TmeflowInputError(f"the samples mix species ({', '.join(species)}); integrate each species separately")
    for info in infos:
        if batch_key not in info["columns"]:
            raise TmeflowInputError(
                f"batch_key '{batch_key}' is not an obs column",
                file=info["path"],
                sample=info["sample"],
                column=batch_key,
            )
        if info["n_obs"] < 3:
            raise TmeflowInputError(f"only {info['n_obs']} cells", file=info["path"], sample=info["sample"])
    return shared_genes(infos, min_shared_genes)


def _sample_counts(path: Path, genes: pd.Index, columns: list[str]) -> tuple[sp.csr_matrix, pd.DataFrame]:
    """One sample's raw counts (float32 CSR) on ``genes`` and the ``columns`` of its obs."""
    import anndata as ad

    full = ad.read_h5ad(path)
    counts = full.layers["counts"] if "counts" in full.layers else full.X
    counts = sp.csr_matrix(counts, dtype=np.float32)[:, full.var_names.get_indexer(genes)]
    obs = full.obs[columns].copy()
    for column in obs.columns:
        if obs[column].dtype == object or isinstance(obs[column].dtype, pd.CategoricalDtype):
            obs[column] = obs[column].astype(str)
    return counts, obs


def concatenate(infos: list[dict[str, Any]], genes: pd.Index, path: Path) -> None:
    """Write the counts of every sample on the shared genes into one h5ad, one sample in memory at a time.

    Parameters
    ----------
    infos
        :func:`inspect_inputs`'s records.
    genes
        The shared genes (:func:`check_inputs`).
    path
        The h5ad to write: raw counts of the cells of every sample, in the order of ``infos``, in ``X`` (float32
        CSR, appended sample by sample), the obs columns all samples share in ``obs``, ``genes`` in ``var``.
    """
    import h5py

    columns = [c for c in infos[0]["columns"] if all(c in info["columns"] for info in infos)]
    obs_parts: list[pd.DataFrame] = []

    def sample_blocks():
        for info in infos:
            counts, obs = _sample_counts(info["path"], genes, columns)
            obs_parts.append(obs)
            yield counts

    with h5py.File(path, "w") as handle:
        write_csr_blocks(handle, "X", sample_blocks())
        obs = pd.concat(obs_parts)
        if not obs.index.is_unique:
            raise TmeflowInputError("cell names repeat across samples; run QC (it prefixes barcodes with the sample)")
        for column in obs.columns:
            if obs[column].dtype == object:
                obs[column] = pd.Categorical(obs[column])
        write_h5ad_elements(handle, obs=obs, var=pd.DataFrame(index=genes))
