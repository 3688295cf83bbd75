//
// Per-sample QC of the single-cell samples, in parallel (one QC task per sample)
//

include { QC } from '../../../modules/local/qc'

workflow SC_QC {

    take:
    ch_counts // channel: [ val(meta), path(counts) ]

    main:
    QC ( ch_counts )

    emit:
    h5ad     = QC.out.h5ad     // channel: [ val(meta), path(h5ad) ], samples kept by QC only
    cells    = QC.out.cells    // channel: [ val(meta), path(tsv.gz) ]
    plots    = QC.out.violin.mix(QC.out.scatter) // channel: [ val(meta), path(png) ]
    report   = QC.out.mqc.mix(QC.out.violin.mix(QC.out.scatter).map { meta, png -> png }) // channel: path(tables, figures)
}
