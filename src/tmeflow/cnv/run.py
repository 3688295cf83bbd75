"""The ``tmeflow cnv`` stage: check the input, prepare positions, call malignant cells, write the outputs."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import scipy.sparse as sp
import yaml

from .. import io
from ..errors import TmeflowInputError
from ..log import get_logger, timed
from .call import CnvResult, call_malignant
from .plots import arms_heatmap, plot_heatmap, plot_violin
from .positions import MIN_POSITIONED_GENES, REQUIRED_OBS, annotate_positions, bundled_positions, read_gene_positions
from .reference import reference_mask
from .settings import CnvSettings

if TYPE_CHECKING:
    from anndata import AnnData

logger = get_logger(__package__)


# ----------------------------------------------------------------------------------------------
# Stage
# ----------------------------------------------------------------------------------------------
def check_inputs(adata: AnnData, settings: CnvSettings, *, file: str | None = None) -> None:
    """Check everything that can be wrong with the input before any work is done.

    Parameters
    ----------
    adata
        The annotated cells; ``obs`` must hold ``cell_type`` and ``patient``. Not changed.
    settings
        The stage settings: ``reference_types`` (the normal cell types used as the CNV reference; at least one
        cell must have one of them), ``cnv_window`` and ``cnv_step`` (genes; at least 1).
    file
        The input file, named in the errors.

    Raises
    ------
    TmeflowInputError
        Naming the missing column, the empty reference or the invalid window.
    """
    missing = [c for c in REQUIRED_OBS if c not in adata.obs.columns]
    if missing:
        raise TmeflowInputError(
            f"obs lacks column(s) {', '.join(missing)} needed for CNV inference", file=file, column=missing[0]
        )
    ref_types = settings.reference_types
    if not ref_types:
        raise TmeflowInputError(
            "cnv_reference_types is empty; name the normal cell types to use as reference", column="cnv_reference_types"
        )
    n_ref = int(reference_mask(adata.obs, settings).sum())
    if n_ref == 0:
        present = ", ".join(sorted(map(str, pd.unique(adata.obs["cell_type"].astype(str))))[:15])
        raise TmeflowInputError(
            f"no reference cells: no cell_type in cnv_reference_types ({', '.join(ref_types)}); "
            f"cell types present: {present}",
            file=file,
            column="cell_type",
        )
    if settings.cnv_window < 1 or settings.cnv_step < 1:
        raise TmeflowInputError("cnv_window and cnv_step must be at least 1", column="cnv_window")


def detected_fraction(counts) -> np.ndarray:
    """Compute the fraction of cells with a count > 0 of every gene, reading ``counts`` in row blocks.

    Parameters
    ----------
    counts
        Cells x genes counts: an array, a sparse matrix or an h5ad's backed CSR dataset.

    Returns
    -------
    numpy.ndarray
        One fraction per gene.
    """
    cells_with_count = np.zeros(counts.shape[1])
    for _, block in io.row_blocks(counts):
        if sp.issparse(block):
            block = sp.csr_matrix(block)
            cells_with_count += np.bincount(block.indices[block.data > 0], minlength=counts.shape[1])
        else:
            cells_with_count += (np.asarray(block) > 0).sum(axis=0)
    return cells_with_count / max(counts.shape[0], 1)


def prepare(adata: AnnData, settings: CnvSettings, *, species: str | None = None, file: str | None = None) -> int:
    """Check the inputs and place the genes on the genome.

    Parameters
    ----------
    adata
        Annotated atlas cells (``obs`` ``patient``, ``cell_type``; raw counts in ``layers['counts']`` or ``X``).
    settings
        ``cnv_options`` (``gene_positions``: a user table, else the bundled one of the species).
    species
        ``human`` or ``mouse``; ``None``: from ``obs['species']``.
    file
        Input file named in error messages.

    Returns
    -------
    int
        Number of positioned genes used (outside the excluded chromosomes, detected in enough cells).

    Adds
    ----
    ``var['chromosome']``, ``var['start']``, ``var['end']``, ``var['chr_arm']``
        Gene positions (:func:`tmeflow.cnv.annotate_positions`).
    ``var['cnv_detected_fraction']``
        Fraction of cells with a count > 0.
    ``var['cnv_gene']``
        Genes used for CNV inference.
    """
    check_inputs(adata, settings, file=file)
    gene_positions = settings.gene_positions
    if species is None and "species" in adata.obs.columns:
        values = pd.unique(adata.obs["species"].astype(str))
        species = str(values[0]) if len(values) else None
    if gene_positions is not None:
        positions = read_gene_positions(gene_positions, species)
    else:
        if species is None:
            raise TmeflowInputError("species unknown (no obs 'species'); give --species or --gene_positions", file=file)
        positions = bundled_positions(species)
    n_placed = annotate_positions(adata, positions)
    excluded = settings.excluded_chromosomes
    positioned = (adata.var["chromosome"].notna() & ~adata.var["chromosome"].isin(excluded)).to_numpy()
    n_positioned = int(positioned.sum())
    if n_positioned < MIN_POSITIONED_GENES:
        raise TmeflowInputError(
            f"only {n_positioned} genes have a known genomic position outside "
            f"{', '.join(excluded) or 'no excluded chromosomes'} "
            f"(of {adata.n_vars}; {n_placed} placed); CNV inference needs at least {MIN_POSITIONED_GENES}; "
            "check the species or give --gene_positions",
            file=file,
        )
    detected = detected_fraction(adata.layers["counts"] if "counts" in adata.layers else adata.X)
    used = positioned & (detected >= settings.cnv_min_gene_fraction)
    adata.var["cnv_detected_fraction"] = detected.astype(np.float32)
    adata.var["cnv_gene"] = used
    n_used = int(used.sum())
    if n_used < MIN_POSITIONED_GENES:
        raise TmeflowInputError(
            f"only {n_used} positioned genes are detected in at least {settings.cnv_min_gene_fraction:.1%} of cells; "
            f"CNV inference needs at least {MIN_POSITIONED_GENES}; lower cnv_min_gene_fraction",
            file=file,
        )
    logger.info(
        "%d of %d genes placed on the genome; %d used (outside %s, detected in >= %.1f%% of cells)",
        n_placed,
        adata.n_vars,
        n_used,
        ", ".join(excluded) or "nothing",
        100 * settings.cnv_min_gene_fraction,
    )
    return n_used


def write_outputs(
    adata: AnnData, result: CnvResult, outdir: Path, params: dict[str, Any], source: Path
) -> dict[str, Path]:
    """Write the CNV tables, figures (saved here with :func:`tmeflow.io.save_figure`) and ``cnv.h5ad``.

    ``cnv.h5ad`` is a copy of the input h5ad ``source`` with the new ``obs``, ``var``, ``obsm`` and ``uns``: its
    matrices are never read whole.
    """
    outdir.mkdir(parents=True, exist_ok=True)
    paths: dict[str, Path] = {}
    header = io.multiqc_header(
        "tmeflow_cnv_summary",
        "CNV and malignant cells",
        "Per patient: candidate cells, cells called malignant from inferred copy-number profiles (infercnvpy), "
        "the reference used and arm-level gains/losses of malignant cells "
        f"(|mean CNV| > {params['cnv_arm_threshold']}).",
        "table",
    )
    paths["summary"] = io.write_table(result.summary, outdir / "cnv_summary_mqc.tsv", header_lines=header)
    paths["reference"] = io.write_table(result.plan, outdir / "cnv_reference.tsv")
    paths["clusters"] = io.write_table(result.clusters, outdir / "cnv_clusters.tsv")
    paths["arms"] = io.write_table(result.arms, outdir / "cnv_arms.tsv")
    cell_columns = [
        "patient",
        "cell_type_pre_cnv",
        "cell_type",
        "cnv_reference",
        "cnv_candidate",
        "cnv_group",
        "cnv_cluster",
        "cnv_score",
        "cnv_score_cell",
        "cnv_correlation",
        "cnv_threshold",
        "cnv_high",
        "malignant",
    ]
    if "sample" in adata.obs.columns:
        cell_columns.insert(0, "sample")
    with timed(logger, "writing cnv_cells.tsv.gz"):
        paths["cells"] = io.write_table(adata.obs[cell_columns], outdir / "cnv_cells.tsv.gz", index=True)
    with timed(logger, "plots"):
        paths["violin"] = io.save_figure(plot_violin(adata, seed=params["seed"]), outdir / "cnv_score_violin_mqc.png")
        paths["arms_heatmap"] = io.write_text(
            yaml.safe_dump(arms_heatmap(result.arms, params["cnv_arm_threshold"]), sort_keys=False),
            outdir / "cnv_arms_mqc.yaml",
        )
        for patient in pd.unique(adata.obs["patient"].astype(str)):
            safe = re.sub(r"[^A-Za-z0-9_.-]", "_", patient)
            paths[f"heatmap_{patient}"] = io.save_figure(
                plot_heatmap(adata, patient, seed=params["seed"]), outdir / f"cnv_heatmap_{safe}.png"
            )
    adata.uns.setdefault("tmeflow", {})
    adata.uns["tmeflow"]["cnv"] = {**io.provenance("cnv", params), "reference": result.plan.to_dict(orient="list")}
    with timed(logger, "writing cnv.h5ad"):
        paths["h5ad"] = io.write_h5ad_copy(
            source, outdir / "cnv.h5ad", obs=adata.obs, var=adata.var, obsm=dict(adata.obsm), uns=adata.uns
        )
    return paths


def run_cnv(
    input_path: str | Path, outdir: str | Path, params: dict[str, Any], *, species: str | None = None, n_jobs: int = 1
) -> dict[str, Path]:
    """Infer CNV on the annotated atlas, call malignant cells and write every output to ``outdir``.

    Genes are placed with the ``gene_positions`` parameter's table when set, else the bundled one. The atlas'
    matrices stay on disk (:func:`tmeflow.io.h5ad_on_disk`): the cells of each chunk are read when inferred.
    """
    input_path, outdir = Path(input_path), Path(outdir)
    settings = CnvSettings.from_params(params)
    with io.h5ad_on_disk(input_path, "annotated h5ad") as adata:
        prepare(adata, settings, species=species, file=str(input_path))
        result = call_malignant(adata, settings, n_jobs=n_jobs)
        return write_outputs(adata, result, outdir, params, input_path)


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow cnv``."""
    run_cnv(args.input, args.outdir, params, species=args.species, n_jobs=args.n_jobs)
