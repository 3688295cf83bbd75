//
// Bulk cohort validation: signature scores, survival, Cox, logistic regression, immune context
// and deconvolution with the atlas as reference
//

include { BULK         } from '../../../modules/local/bulk'
include { optionalFile; optionalFiles } from '../utils_tmeflow'

workflow BULK_VALIDATION {

    take:
    ch_bulk  // channel: [ val(meta), path(expression), path(clinical) ]
    ch_atlas // channel: [ val(meta), path(h5ad) ], reference profiles and signatures

    main:
    BULK (
        ch_bulk,
        ch_atlas.map { meta, h5ad -> h5ad }.first(),
        optionalFiles(params.signatures),       // user GMT file(s), comma-separated
        optionalFile(params.probe_annotation),  // probe -> gene symbol table; [] when unset
        optionalFile(params.maf),               // somatic mutations (GDC MAF) for TMB; [] when unset
        optionalFile(params.normal_expression), // separate normal cohort (e.g. GTEx); [] when unset
        optionalFile(params.normal_clinical),   // its sample table (cancer-type mapping); [] when unset
        optionalFile(params.msi),               // MSI scores; [] when unset
        optionalFile(params.copy_number),       // gene-level thresholded copy number; [] when unset
        optionalFile(params.methylation),       // gene-level methylation beta values; [] when unset
        optionalFile(params.drug_expression),   // drug-screened cell lines' expression; [] when unset
        optionalFile(params.drug_response)      // their IC50/AUC per drug; [] when unset
    )

    emit:
    tables   = BULK.out.tables   // channel: [ val(meta), path(tsv) ]
    report   = BULK.out.mqc.mix(BULK.out.plots.map { meta, pngs -> pngs }) // channel: path(tables, figures)
}
