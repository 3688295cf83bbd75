"""The ``tmeflow spatial_analysis`` stage: every analysis of one section, then its outputs."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from anndata import AnnData

from .. import io, spatial_cohort
from ..errors import TmeflowInputError
from ..genes import species_of
from ..log import get_logger, timed
from ..spatial_cnv import agreement, spot_cnv
from ..spatial_qc import plot_on_tissue, spatial_graph, spot_spacing
from .common import REGIONS, SpatialAnalysisSettings, _dense
from .ligand_receptor import spatial_lr
from .neighbourhoods import colocalisation, neighbourhood, section_eigenvectors
from .plots import plot_nhood_enrichment, plot_trajectory
from .regions import derive_regions, malignant_proportion, read_region_annotation, signed_distance
from .scores import detect_tls, distance_association, score_signatures, species_genes, trajectory

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Stage
# ----------------------------------------------------------------------------------------------
def analyse_section(adata: AnnData, settings: SpatialAnalysisSettings, *, region_annotation=None) -> dict[str, Any]:
    """Run every analysis on a deconvolved section; annotate ``adata`` and return the result tables.

    Parameters
    ----------
    adata
        The deconvolved section (``tmeflow deconvolve`` output); modified in place (see Adds).
    settings
        ``SpatialAnalysisSettings.from_params(params)``, or ``SpatialAnalysisSettings.defaults()``.
    region_annotation
        A barcode -> region table (:func:`read_region_annotation`); None: regions derived from the
        deconvolution (:func:`derive_regions`).

    Returns
    -------
    dict
        ``sample``, ``region_source``, ``malignant_types``, ``nhood_*`` / ``cooc_*`` (per grouping),
        ``colocalisation``, ``lr`` (and ``lrdata``), ``scores``, ``trajectory_bins``, ``trajectory_correlation``,
        ``distance``, ``tls``, ``spot_cnv`` (when the CNV map ran) and ``region_counts``.

    Adds
    ----
    ``obs['malignant_prop']``, ``obs['region']``, ``obs['signed_distance']``
        Malignant proportion, region (categorical) and signed distance to the tumour boundary (spot spacings).
    ``obs['score_<signature>']``
        Signature scores (:func:`score_signatures`).
    ``obs['tls_id']``
        TLS number per spot, -1 outside a TLS (:func:`detect_tls`).
    ``obs['cnv_score_spot']``, ``obs['cnv_tumour']``, ``obs['cnv_reference_spot']``
        The spot-level CNV map (:func:`tmeflow.spatial_cnv.spot_cnv`), when it ran.
    ``uns['region_nhood_enrichment']``, ``uns['region_co_occurrence']`` (and ``dominant_type_*``)
        From :func:`neighbourhood`, which also makes ``obs['region']`` and ``obs['dominant_type']`` categorical.
    """
    sample = str(adata.obs["sample"].iloc[0]) if "sample" in adata.obs else "section"
    species = species_of(adata)
    malignant, malignant_types = malignant_proportion(adata, settings.malignant_types)
    graph = spatial_graph(adata)
    if region_annotation is not None:
        regions = read_region_annotation(region_annotation, adata)
        source = "annotation"
    else:
        regions = derive_regions(
            malignant,
            graph,
            threshold=settings.tumour_threshold,
            rings=settings.interface_rings,
            smoothing=settings.region_smoothing,
        )
        source = "derived"
    adata.obs["malignant_prop"] = malignant
    adata.obs["region"] = pd.Categorical(regions)
    tumour = regions == "tumour"
    spacing = spot_spacing(adata.obsm["spatial"])
    distance = signed_distance(np.asarray(adata.obsm["spatial"], dtype=float), tumour, spacing)
    adata.obs["signed_distance"] = distance
    counts = pd.Series(regions).value_counts()
    logger.info("%s: regions (%s) %s", sample, source, ", ".join(f"{k} {v}" for k, v in counts.items()))
    results: dict[str, Any] = {"sample": sample, "region_source": source, "malignant_types": malignant_types}
    proportions = adata.obsm["deconvolution_proportions"]

    with timed(logger, f"{sample}: neighbourhood enrichment and co-occurrence"):
        for key, name in (("region", "region"), ("dominant_type", "type")):
            results[f"nhood_{name}"], results[f"cooc_{name}"] = neighbourhood(
                adata, key, n_perms=settings.spatial_n_perms, seed=settings.seed
            )
    with timed(logger, f"{sample}: Moran eigenvectors of {graph.shape[0]} spots (spatially constrained nulls)"):
        vectors = section_eigenvectors(graph)
    results["colocalisation"] = colocalisation(proportions, malignant, graph, malignant_types, vectors)
    if (regions == "interface").sum() >= 3:
        with timed(logger, f"{sample}: spatial ligand-receptor (liana bivariate {settings.lr_local_metric})"):
            results["lr"], lrdata = spatial_lr(
                adata,
                regions,
                vectors,
                species=species,
                local_metric=settings.lr_local_metric,
                min_prop=settings.lr_min_prop,
                fdr=settings.lr_fdr,
            )
        results["lrdata"] = lrdata
    else:
        logger.warning("%s: fewer than 3 interface spots; interface ligand-receptor test skipped", sample)
        results["lr"] = pd.DataFrame(
            columns=[
                "interaction",
                "ligand",
                "receptor",
                "mean_interface",
                "mean_elsewhere",
                "z_msr",
                "pval",
                "difference",
                "fdr",
                "interface_enriched",
            ]
        )
    with timed(logger, f"{sample}: signature scores, trajectory, distances, TLS"):
        scores = score_signatures(adata, species, settings.seed, sample)
        for column in scores.columns:
            adata.obs[f"score_{column}"] = scores[column].to_numpy()
        results["scores"] = scores
        results["trajectory_bins"], results["trajectory_correlation"] = trajectory(
            distance, scores, proportions, settings.trajectory_n_bins, vectors
        )
        distance_to_tumour = np.where(tumour, 0.0, distance)
        distance_genes = species_genes(settings.distance_gene_names, species, adata.var_names)
        results["distance"] = distance_association(adata, distance_to_tumour, tumour, distance_genes, vectors)
        tls_labels, results["tls"] = detect_tls(
            scores["TLS_chemokines"] if "TLS_chemokines" in scores else None,
            proportions,
            graph,
            regions,
            distance,
            lymphoid_types=settings.lymphoid_types,
            min_score=settings.tls_min_score,
            min_lymphoid=settings.tls_min_lymphoid,
            min_spots=settings.tls_min_spots,
        )
        adata.obs["tls_id"] = tls_labels
    with timed(logger, f"{sample}: spot-level CNV map"):
        calls = spot_cnv(
            adata,
            malignant,
            graph,
            reference_quantile=settings.spot_cnv_reference_quantile,
            seed=settings.seed,
            species=species,
        )
    if calls is not None:
        for column in calls.columns:
            adata.obs[column] = calls[column].to_numpy()
        results["spot_cnv"] = agreement(calls, malignant, regions, sample, source)
        row = results["spot_cnv"].iloc[0]
        logger.info(
            "%s: %d CNV-high spots; Spearman with the malignant proportion %.2f; agreement with the %s tumour "
            "region %.2f",
            sample,
            row["n_cnv_tumour"],
            row["spearman_cnv_vs_malignant_prop"],
            source,
            row["agreement_with_regions"],
        )
    results["region_counts"] = counts
    return results


def write_outputs(adata: AnnData, results: dict[str, Any], outdir: Path, params: dict[str, Any]) -> Path:
    """Write the section's tables, MultiQC sections, figures and ``<sample>.spatial_analysis.h5ad``.

    Parameters
    ----------
    adata
        The analysed section (:func:`analyse_section`); modified in place (see Adds).
    results
        The result tables of :func:`analyse_section`.
    outdir
        The output folder.
    params
        The parameters, recorded as provenance.

    Returns
    -------
    pathlib.Path
        The written h5ad.

    Adds
    ----
    ``uns['spatial_analysis']``
        Region source, malignant types and up to 200 interface-enriched interactions.
    ``uns['spatial_statistics']``
        The section's z-scores and effects for the statistics across sections
        (:func:`tmeflow.spatial_cohort.section_table`).
    ``uns['tmeflow']['spatial_analysis']``
        Provenance (version, parameters); squidpy's ``uns`` entries are removed.
    """
    sample = results["sample"]
    prefix = outdir / sample
    regions_table = adata.obs[["region", "malignant_prop", "signed_distance", "dominant_type", "tls_id"]].copy()
    for column in [c for c in adata.obs.columns if c.startswith("score_")]:
        regions_table[column] = adata.obs[column]
    io.write_table(regions_table.rename_axis("barcode"), f"{prefix}.regions.tsv", index=True)
    names = sorted(set(results["region_counts"].index) | set(REGIONS))
    summary = pd.DataFrame(
        [{r: int(results["region_counts"].get(r, 0)) for r in names}], index=pd.Index([sample], name="Sample")
    )
    header = io.multiqc_header(
        "tmeflow_spatial_regions",
        "Spatial regions",
        f"Spots per region ({results['region_source']}; tmeflow spatial_analysis).",
        "bargraph",
    )
    io.write_table(summary, f"{prefix}.regions_mqc.tsv", index=True, header_lines=header)
    for key, name in (("nhood_region", "nhood_enrichment_region"), ("nhood_type", "nhood_enrichment_celltype")):
        if not results[key].empty:
            io.write_table(results[key].rename_axis("cluster"), f"{prefix}.{name}.tsv", index=True)
    cooc = pd.concat([results["cooc_region"].assign(key="region"), results["cooc_type"].assign(key="dominant_type")])
    io.write_table(cooc, f"{prefix}.co_occurrence.tsv")
    io.write_table(results["colocalisation"], f"{prefix}.colocalisation.tsv")
    coloc_header = io.multiqc_header(
        f"tmeflow_spatial_colocalisation_{sample}",
        f"Co-localisation with malignant cells: {sample}",
        "Correlation of each cell type's spot proportion with the neighbours' malignant proportion "
        "(tmeflow spatial_analysis).",
        "table",
    )
    io.write_table(
        results["colocalisation"].set_index("cell_type")[["r_same_spot", "r_lagged_malignant", "fdr"]],
        f"{prefix}.colocalisation_mqc.tsv",
        index=True,
        header_lines=coloc_header,
    )
    io.write_table(results["lr"], f"{prefix}.lr_interface.tsv")
    io.write_table(results["trajectory_bins"], f"{prefix}.trajectory_bins.tsv")
    io.write_table(results["trajectory_correlation"], f"{prefix}.trajectory_correlation.tsv")
    io.write_table(results["distance"], f"{prefix}.distance_association.tsv")
    io.write_table(results["tls"], f"{prefix}.tls.tsv")
    if "spot_cnv" in results:
        io.write_table(results["spot_cnv"], f"{prefix}.spot_cnv.tsv")
        io.save_figure(
            plot_on_tissue(
                adata,
                {
                    "tissue": None,
                    "spot CNV score": adata.obs["cnv_score_spot"].to_numpy(),
                    "CNV tumour spots": adata.obs["cnv_tumour"].astype(str).astype("category"),
                    "malignant proportion (deconvolution)": adata.obs["malignant_prop"].to_numpy(),
                },
                sample=sample,
                title=f"{sample}: spot-level CNV map vs deconvolution",
            ),
            Path(f"{prefix}.spot_cnv.png"),
        )

    panels = {
        "region": adata.obs["region"],
        "malignant proportion": adata.obs["malignant_prop"].to_numpy(),
        "signed distance to tumour": adata.obs["signed_distance"].to_numpy(),
    }
    if "score_TLS_chemokines" in adata.obs:
        panels["TLS chemokine score"] = adata.obs["score_TLS_chemokines"].to_numpy()
    io.save_figure(
        plot_on_tissue(
            adata,
            panels,
            sample=sample,
            title=f"{sample}: regions ({results['region_source']})",
        ),
        Path(f"{prefix}.regions.png"),
    )
    nhood = {"regions": results["nhood_region"], "dominant cell types": results["nhood_type"]}
    io.save_figure(
        plot_nhood_enrichment(nhood, title=f"{sample}: neighbourhood enrichment"),
        Path(f"{prefix}.nhood_enrichment.png"),
    )
    if "lrdata" in results and len(results["lr"]):
        top = [i for i in results["lr"]["interaction"].head(4) if i in results["lrdata"].var_names]
        lrdata = results["lrdata"]
        io.save_figure(
            plot_on_tissue(
                adata,
                {f"{i} (local)": _dense(lrdata[:, i].X).ravel() for i in top},
                sample=sample,
                cmap="magma",
                title=f"{sample}: top interface-enriched ligand-receptor pairs",
            ),
            Path(f"{prefix}.lr_interface.png"),
        )
    if not results["trajectory_bins"].empty:
        io.save_figure(
            plot_trajectory(results["trajectory_bins"], title=f"{sample}: tumour -> stroma"),
            Path(f"{prefix}.trajectory_mqc.png"),
        )
    adata.uns["spatial_analysis"] = {
        "region_source": results["region_source"],
        "malignant_types": results["malignant_types"],
        "lr_interface_enriched": results["lr"]
        .loc[results["lr"]["interface_enriched"].astype(bool), "interaction"]
        .tolist()[:200],
    }
    # the section's z-scores and effects, for the statistics across sections and patients (tmeflow.spatial_cohort)
    adata.uns[spatial_cohort.UNS_KEY] = spatial_cohort.section_table(results)
    adata.uns.setdefault("tmeflow", {})["spatial_analysis"] = io.provenance("spatial_analysis", params)
    for key in list(adata.uns):
        if key.endswith("_co_occurrence") or key.endswith("_nhood_enrichment"):
            adata.uns.pop(key)
    return io.write_h5ad(adata, f"{prefix}.spatial_analysis.h5ad", final=True)


def run_spatial_analysis(input_path, outdir, params: dict[str, Any], *, region_annotation=None) -> Path:
    """Read a deconvolved section, analyse it and write the outputs.

    Parameters
    ----------
    input_path
        The deconvolved section h5ad (``tmeflow deconvolve`` output).
    outdir
        The output folder.
    params
        The ``spatial_analysis_options`` parameters and ``seed`` (read once into :class:`SpatialAnalysisSettings`).
    region_annotation
        A barcode -> region table, or None.

    Returns
    -------
    pathlib.Path
        ``<sample>.spatial_analysis.h5ad``.

    Raises
    ------
    TmeflowInputError
        No ``obsm['spatial']``, or an input error of the analysis (naming the file).
    """
    input_path = Path(input_path)
    adata = io.read_h5ad(input_path, "deconvolved section")
    if "spatial" not in adata.obsm:
        raise TmeflowInputError("section has no obsm['spatial'] coordinates", file=input_path)
    try:
        results = analyse_section(
            adata, SpatialAnalysisSettings.from_params(params), region_annotation=region_annotation
        )
    except TmeflowInputError as error:
        raise TmeflowInputError(error.message, file=error.file or input_path, column=error.column) from error
    lr = results["lr"]
    logger.info(
        "%s: %d of %d ligand-receptor pairs interface-enriched (FDR < %g); %d TLS",
        results["sample"],
        int(lr["interface_enriched"].sum()) if len(lr) else 0,
        len(lr),
        params["lr_fdr"],
        len(results["tls"]),
    )
    return write_outputs(adata, results, Path(outdir), params)


def cli(args: argparse.Namespace, params: dict[str, Any]) -> None:
    """Run ``tmeflow spatial_analysis``.

    Parameters
    ----------
    args
        The parsed command line (``input``, ``outdir``, ``region_annotation``).
    params
        The parameters (:func:`run_spatial_analysis`).
    """
    run_spatial_analysis(args.input, args.outdir, params, region_annotation=args.region_annotation)
