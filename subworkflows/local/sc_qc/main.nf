//
// Per-sample QC of the single-cell samples, in parallel (one QC task per sample)
//

include { QC } from '../../../modules/local/qc'

workflow SC_QC {

    take:
    ch_counts // channel: [ val(meta), path(counts) ]

    main:
    QC ( ch_counts )
    // As `tmeflow run`: an atlas of no sample is an error, not a QC-only report
    ch_kept = QC.out.h5ad.ifEmpty {
        error("No single-cell sample passed QC (see qc/*.qc_stats_mqc.tsv); relax the QC filters (--min_genes, --min_counts, --max_pct_mito, --qc_mode) or drop_failed_samples")
    }

    emit:
    h5ad     = ch_kept         // channel: [ val(meta), path(h5ad) ], samples kept by QC only
    cells    = QC.out.cells    // channel: [ val(meta), path(tsv.gz) ]
    plots    = QC.out.violin.mix(QC.out.scatter) // channel: [ val(meta), path(png) ]
    // the per-cell tables feed the report's per-sample MultiQC plots (cells by reason, QC distributions)
    report   = QC.out.mqc.mix(QC.out.violin.mix(QC.out.scatter, QC.out.cells).map { meta, file -> file }) // channel: path(tables, figures)
}
