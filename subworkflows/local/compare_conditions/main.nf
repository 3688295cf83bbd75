//
// Compare conditions on the atlas: composition and differential abundance, differential
// expression per cell type, then pathways and signature scores on the DE results
//

include { COMPOSITION } from '../../../modules/local/composition'
include { DE          } from '../../../modules/local/de'
include { PATHWAYS    } from '../../../modules/local/pathways'

workflow COMPARE_CONDITIONS {

    take:
    ch_atlas      // channel: [ val(meta), path(h5ad) ]
    ch_signatures // channel: path(gmt), user gene sets (may be empty)

    main:
    COMPOSITION ( ch_atlas )
    DE ( ch_atlas )
    PATHWAYS (
        ch_atlas.join(DE.out.tables),
        ch_signatures.collect().ifEmpty([])
    )

    ch_figures  = COMPOSITION.out.stacked.mix(
        COMPOSITION.out.boxplot, COMPOSITION.out.nhood_plots, DE.out.volcano, PATHWAYS.out.gsea_plots, PATHWAYS.out.heatmaps,
        PATHWAYS.out.bubble, PATHWAYS.out.stemness_plot
    )
    ch_report   = COMPOSITION.out.mqc.mix(DE.out.mqc, PATHWAYS.out.mqc, ch_figures.map { meta, pngs -> pngs })

    emit:
    de       = DE.out.tables     // channel: [ val(meta), path(tsv) ]
    pathways = PATHWAYS.out.h5ad // channel: [ val(meta), path(h5ad) ], per-cell scores for the atlas
    report   = ch_report         // channel: path(tables, figures), for the report
}
