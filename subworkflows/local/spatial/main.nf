//
// Spatial sections, in parallel (one task per section): QC and clustering, deconvolution with
// the atlas as reference, then regions, co-localisation, spatial ligand-receptor and trajectories
//

include { SPATIAL_QC       } from '../../../modules/local/spatial_qc'
include { DECONVOLVE       } from '../../../modules/local/deconvolve'
include { SPATIAL_ANALYSIS } from '../../../modules/local/spatial_analysis'

workflow SPATIAL {

    take:
    ch_sections // channel: [ val(meta), path(spaceranger_outs), path(region_annotation) or [] ]
    ch_atlas    // channel: [ val(meta), path(h5ad) ], the deconvolution reference

    main:
    SPATIAL_QC ( ch_sections.map { meta, outs, regions -> [ meta, outs ] } )
    DECONVOLVE (
        SPATIAL_QC.out.h5ad,
        ch_atlas.map { meta, h5ad -> h5ad }.first()
    )
    SPATIAL_ANALYSIS (
        DECONVOLVE.out.h5ad.join(ch_sections.map { meta, outs, regions -> [ meta, regions ] })
    )

    ch_figures  = SPATIAL_QC.out.plot.mix(
        SPATIAL_QC.out.svg_plot, DECONVOLVE.out.plot, DECONVOLVE.out.abundance_plot, DECONVOLVE.out.dominant_plot, SPATIAL_ANALYSIS.out.plots
    )
    ch_report   = SPATIAL_QC.out.mqc
        .mix(DECONVOLVE.out.mqc, SPATIAL_ANALYSIS.out.mqc)
        .mix(ch_figures.mix(SPATIAL_QC.out.spots).map { meta, files -> files }) // spots: the report's per-section plots

    emit:
    h5ad     = SPATIAL_ANALYSIS.out.h5ad // channel: [ val(meta), path(h5ad) ]
    report   = ch_report                 // channel: path(tables, figures), for the report
}
