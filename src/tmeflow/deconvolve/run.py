"""The ``tmeflow deconvolve`` stage: one section and label level, the results added to the section, the outputs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import io
from ..log import get_logger, timed
from ..spatial_qc import plot_on_tissue
from .baseline import marker_agreement, marker_scores
from .cell2location import cell2location_deconvolve, resolve_method
from .inputs import FINE_LABEL_KEY, LABEL_KEY, DeconvolutionSettings, prepare_inputs, read_reference
from .nnls import nnls_deconvolve
from .poisson import poisson_deconvolve

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Stage
# ----------------------------------------------------------------------------------------------
def proportions_from(abundance: pd.DataFrame) -> pd.DataFrame:
    """Normalise abundances to proportions summing to 1 per spot.

    Parameters
    ----------
    abundance
        Spots x types, non-negative.

    Returns
    -------
    pandas.DataFrame
        Spots x types; a spot with no abundance gets equal proportions.
    """
    total = abundance.sum(axis=1)
    proportions = abundance.div(total.where(total > 0, 1.0), axis=0)
    proportions[total <= 0] = 1.0 / abundance.shape[1]
    return proportions


METHODS = {"nnls": nnls_deconvolve, "poisson": poisson_deconvolve, "cell2location": cell2location_deconvolve}


def deconvolve_level(
    section: AnnData,
    reference: AnnData,
    settings: DeconvolutionSettings,
    method: str,
    *,
    label_key: str = LABEL_KEY,
    section_file: str | None = None,
    reference_file: str | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any], Any]:
    """Deconvolve one label level (``cell_type`` or ``cell_type_fine``).

    Parameters
    ----------
    section, reference
        The inputs (:func:`tmeflow.deconvolve.prepare_inputs`); not modified.
    settings
        The stage settings.
    method
        ``poisson``, ``nnls`` or ``cell2location`` (resolved, not ``auto``).
    label_key
        The reference label column.
    section_file, reference_file
        The input files, named in the errors.

    Returns
    -------
    tuple[pandas.DataFrame, pandas.DataFrame, dict, tuple[AnnData, AnnData]]
        Abundances and proportions (spots x types), the method's summary, and the prepared (spots, reference)
        for the marker baseline.
    """
    spots, ref = prepare_inputs(
        section,
        reference,
        min_shared_genes=settings.deconv_min_shared_genes,
        min_cells_per_type=settings.deconv_min_cells_per_type,
        section_file=section_file,
        reference_file=reference_file,
        label_key=label_key,
    )
    with timed(
        logger,
        f"deconvolution ({method}, {label_key}) of {spots.n_obs} spots into {ref.obs[LABEL_KEY].nunique()} types",
    ):
        abundance, info = METHODS[method](spots, ref, settings)
    return abundance, proportions_from(abundance), info, (spots, ref)


def deconvolve(
    section: AnnData,
    reference: AnnData,
    settings: DeconvolutionSettings,
    *,
    section_file: str | None = None,
    reference_file: str | None = None,
):
    """Deconvolve ``section`` with ``reference`` and add the results to ``section``.

    Parameters
    ----------
    section
        The spatial section (``tmeflow spatial_qc`` output); modified in place.
    reference
        The reference atlas (raw counts; ``obs['cell_type']``, optionally ``cell_type_fine``).
    settings
        ``DeconvolutionSettings.from_params(params)``, or ``DeconvolutionSettings.defaults()``.
    section_file, reference_file
        The input files, named in the errors.

    Returns
    -------
    tuple[pandas.DataFrame, pandas.DataFrame, dict]
        Abundances and proportions (spots x types) and the summary ``info``, which also holds the marker-score
        baseline (``marker_scores``, ``agreement``) and, when the reference has ``cell_type_fine``, the subtype
        proportions (``proportions_fine``).

    Adds
    ----
    ``obsm['deconvolution_abundance']``, ``obsm['deconvolution_proportions']``
        Spots x types estimated cells and proportions.
    ``obsm['deconvolution_marker_scores']``
        Spots x types marker scores (:func:`marker_scores`).
    ``obsm['deconvolution_proportions_fine']``
        Spots x subtypes proportions, when the reference has ``cell_type_fine``.
    ``obs['prop_<type>']``
        Proportion of each type.
    ``obs['dominant_type']``
        The type of largest proportion (categorical).
    """
    method = resolve_method(settings.deconvolution_method)
    abundance, proportions, info, (spots, ref) = deconvolve_level(
        section, reference, settings, method, section_file=section_file, reference_file=reference_file
    )
    info["marker_scores"] = marker_scores(spots, ref)
    info["agreement"] = marker_agreement(proportions, info["marker_scores"], settings.deconv_min_agreement)
    section.obsm["deconvolution_abundance"] = abundance
    section.obsm["deconvolution_proportions"] = proportions
    section.obsm["deconvolution_marker_scores"] = info["marker_scores"]
    for cell_type in proportions.columns:
        section.obs[f"prop_{cell_type}"] = proportions[cell_type].to_numpy()
    section.obs["dominant_type"] = pd.Categorical(
        proportions.idxmax(axis=1).to_numpy(), categories=list(proportions.columns)
    )
    if FINE_LABEL_KEY in reference.obs.columns and reference.obs[FINE_LABEL_KEY].nunique() > 1:
        _, fine, _, _ = deconvolve_level(
            section,
            reference,
            settings,
            method,
            label_key=FINE_LABEL_KEY,
            section_file=section_file,
            reference_file=reference_file,
        )
        section.obsm["deconvolution_proportions_fine"] = fine
        info["proportions_fine"] = fine
    return abundance, proportions, info


def write_outputs(section, abundance, proportions, info, sample: str, outdir: Path, params: dict[str, Any]) -> Path:
    """Write the tables, MultiQC sections, tissue maps and ``<sample>.deconvolved.h5ad``.

    Parameters
    ----------
    section
        The deconvolved section (:func:`deconvolve`); modified in place.
    abundance, proportions
        Spots x types.
    info
        The summary of :func:`deconvolve`.
    sample
        The section's sample name (file prefix).
    outdir
        The output folder.
    params
        The parameters, recorded as provenance (``deconv_min_agreement`` is named in the agreement table).

    Returns
    -------
    pathlib.Path
        The written h5ad.

    Adds
    ----
    ``uns['deconvolution']``
        Method, cell types, genes and the method's scalar summary.
    ``uns['tmeflow']['deconvolve']``
        Provenance (version, parameters) and the same summary.
    """
    io.write_table(abundance.rename_axis("barcode"), outdir / f"{sample}.deconvolution_abundance.tsv", index=True)
    io.write_table(proportions.rename_axis("barcode"), outdir / f"{sample}.deconvolution_proportions.tsv", index=True)
    if "q05_abundance" in info:
        io.write_table(
            info["q05_abundance"].rename_axis("barcode"),
            outdir / f"{sample}.deconvolution_abundance_q05.tsv",
            index=True,
        )
    if "proportions_fine" in info:
        io.write_table(
            info["proportions_fine"].rename_axis("barcode"),
            outdir / f"{sample}.deconvolution_proportions_fine.tsv",
            index=True,
        )
    io.write_table(
        info["marker_scores"].rename_axis("barcode"), outdir / f"{sample}.deconvolution_marker_scores.tsv", index=True
    )
    agreement = (
        info["agreement"]
        .set_axis([f"{sample}: {t}" for t in info["agreement"].index])
        .rename_axis("Section: cell type")
    )
    agreement_header = io.multiqc_header(
        "tmeflow_deconvolution_agreement",
        "Deconvolution vs marker scores",
        f"Spearman's rho between each type's proportion ({info['method']}) and its reference-marker score over the "
        f"spots; 'agrees' is false below deconv_min_agreement {params['deconv_min_agreement']}, a reason to check "
        "that type (tmeflow deconvolve).",
        "table",
    )
    io.write_table(
        agreement, outdir / f"{sample}.deconvolution_agreement_mqc.tsv", index=True, header_lines=agreement_header
    )
    summary = proportions.mean(axis=0).to_frame(sample).T
    summary.index.name = "Sample"
    header = io.multiqc_header(
        "tmeflow_deconvolution",
        "Spatial deconvolution",
        f"Mean cell-type proportion over the spots of each section ({info['method']}; tmeflow deconvolve).",
        "bargraph",
        pconfig={"id": "tmeflow_deconvolution_bar", "title": "Mean spot composition", "stacking": "normal"},
    )
    io.write_table(summary, outdir / f"{sample}.deconvolution_mqc.tsv", index=True, header_lines=header)
    types = list(proportions.columns)
    method = info["method"]
    per_type_maps = {
        "proportions": (proportions, f"cell-type proportions ({method})"),
        "abundance": (abundance, f"estimated cells per spot ({method}; follows cellularity, unlike proportions)"),
    }
    for name, (table, title) in per_type_maps.items():
        values = {t: table[t].to_numpy() for t in types}
        figure = plot_on_tissue(section, values, sample=sample, ncols=4, cmap="magma", title=f"{sample}: {title}")
        io.save_figure(figure, outdir / f"{sample}.deconvolution_{name}.png")
    io.save_figure(
        plot_on_tissue(
            section,
            {"dominant cell type": section.obs["dominant_type"]},
            sample=sample,
            ncols=1,
            title=f"{sample}: dominant cell type per spot",
        ),
        outdir / f"{sample}.deconvolution_dominant.png",
    )
    record = {
        k: v
        for k, v in info.items()
        if k
        not in (
            "q05_abundance",
            "signatures",
            "genes",
            "platform_effects",
            "marker_scores",
            "agreement",
            "proportions_fine",
        )
    }
    section.uns["deconvolution"] = {**record, "cell_types": types}
    if "genes" in info:
        section.uns["deconvolution"]["genes"] = np.asarray(info["genes"], dtype=object)
    section.uns.setdefault("tmeflow", {})["deconvolve"] = {**io.provenance("deconvolve", params), **record}
    return io.write_h5ad(section, outdir / f"{sample}.deconvolved.h5ad")


def run_deconvolve(input_path, reference_path, outdir, params: dict[str, Any], *, sample: str | None = None) -> Path:
    """Read a ``spatial_qc`` section and a reference atlas, deconvolve, and write the outputs.

    Parameters
    ----------
    input_path
        The section h5ad (``tmeflow spatial_qc`` output).
    reference_path
        The reference atlas h5ad.
    outdir
        The output folder.
    params
        The ``deconvolution_options`` parameters and ``seed`` (read once into :class:`DeconvolutionSettings`).
    sample
        The sample name; None: ``obs['sample']`` or the file name.

    Returns
    -------
    pathlib.Path
        ``<sample>.deconvolved.h5ad``.
    """
    settings = DeconvolutionSettings.from_params(params)
    section = io.read_h5ad(input_path, "spatial section")
    reference = read_reference(reference_path, settings.deconv_max_cells_per_type, settings.seed)
    if sample is None:
        sample = str(section.obs["sample"].iloc[0]) if "sample" in section.obs else Path(input_path).name.split(".")[0]
    abundance, proportions, info = deconvolve(
        section,
        reference,
        settings,
        section_file=str(input_path),
        reference_file=str(reference_path),
    )
    means = proportions.mean().sort_values(ascending=False)
    logger.info("%s: mean proportions %s", sample, ", ".join(f"{k} {v:.2f}" for k, v in means.items()))
    return write_outputs(section, abundance, proportions, info, sample, Path(outdir), params)


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Run ``tmeflow deconvolve``.

    Parameters
    ----------
    args
        The parsed command line (``input``, ``reference``, ``outdir``, ``sample``).
    params
        The parameters (:func:`run_deconvolve`).
    """
    run_deconvolve(args.input, args.reference, args.outdir, params, sample=args.sample)
