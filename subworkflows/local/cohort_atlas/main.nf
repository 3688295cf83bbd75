//
// Cohort atlas (fan-in): integrate every QC'd sample, annotate cell types, call malignant cells
// from inferred CNV, sub-cluster compartments into fine subtypes
//

include { INTEGRATE   } from '../../../modules/local/integrate'
include { ANNOTATE    } from '../../../modules/local/annotate'
include { CNV         } from '../../../modules/local/cnv'
include { SUBCLUSTER  } from '../../../modules/local/subcluster'
include { optionalFile } from '../utils_tmeflow'

workflow COHORT_ATLAS {

    take:
    ch_qc_h5ad // channel: [ val(meta), path(h5ad) ], one per sample kept by QC

    main:
    // One cohort task; inputs sorted by name so that -resume sees the same task
    ch_cohort = ch_qc_h5ad
        .map { meta, h5ad -> h5ad }
        .collect(sort: { a, b -> a.name <=> b.name })
        .map { h5ads -> [ [ id: 'cohort' ], h5ads ] }

    INTEGRATE ( ch_cohort )
    ANNOTATE (
        INTEGRATE.out.h5ad,
        optionalFile(params.markers),
        optionalFile(params.celltypist_model),
        optionalFile(params.annotation_overrides)
    )
    CNV (
        ANNOTATE.out.h5ad,
        optionalFile(params.gene_positions)   // [] when unset: the bundled GRCh38/mm10 table
    )
    SUBCLUSTER ( CNV.out.h5ad, optionalFile(params.subtype_markers) )

    ch_figures = INTEGRATE.out.umap_uncorrected.mix(
        INTEGRATE.out.umap_corrected, ANNOTATE.out.umap, ANNOTATE.out.dotplot, CNV.out.heatmaps, SUBCLUSTER.out.umaps
    )
    ch_report = INTEGRATE.out.mqc
        .mix(ANNOTATE.out.mqc, CNV.out.mqc, CNV.out.mqc_plots, CNV.out.mqc_heatmap, SUBCLUSTER.out.mqc)
        .mix(ch_figures.mix(CNV.out.cells).map { meta, files -> files }) // cells: % malignant, dominant type per sample

    emit:
    atlas    = SUBCLUSTER.out.h5ad // channel: [ val(meta), path(h5ad) ], the annotated atlas
    report   = ch_report           // channel: path(tables, figures), for the report
}
