//
// Cohort atlas (fan-in): integrate every QC'd sample, annotate cell types, call malignant cells
// from inferred CNV, sub-cluster compartments into fine subtypes
//

include { INTEGRATE  } from '../../../modules/local/integrate'
include { ANNOTATE   } from '../../../modules/local/annotate'
include { CNV        } from '../../../modules/local/cnv'
include { SUBCLUSTER } from '../../../modules/local/subcluster'

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
        []   // gene-position table: none (no parameter yet), the bundled GRCh38/mm10 one
    )
    SUBCLUSTER ( CNV.out.h5ad, optionalFile(params.subtype_markers) )

    ch_mqc = INTEGRATE.out.mqc.mix(ANNOTATE.out.mqc, CNV.out.mqc, CNV.out.mqc_plots, SUBCLUSTER.out.mqc)

    emit:
    atlas    = SUBCLUSTER.out.h5ad // channel: [ val(meta), path(h5ad) ], the annotated atlas
    mqc      = ch_mqc              // channel: path(*_mqc.*)
}

//
// A user file given by a parameter, or [] (nf-core's "no file") when the parameter is unset
//
def optionalFile(path) {
    return path ? file(path, checkIfExists: true) : []
}
