/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    tmeflow: from a cohort's count matrices to a tumour-microenvironment atlas
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
*/

include { SC_QC                  } from '../subworkflows/local/sc_qc'
include { COHORT_ATLAS           } from '../subworkflows/local/cohort_atlas'
include { COMPARE_CONDITIONS     } from '../subworkflows/local/compare_conditions'
include { TRAJECTORY             } from '../modules/local/trajectory'
include { COMMUNICATION          } from '../modules/local/communication'
include { SPATIAL                } from '../subworkflows/local/spatial'
include { BULK_VALIDATION        } from '../subworkflows/local/bulk_validation'
include { ATLAS                  } from '../modules/local/atlas'
include { REPORT                 } from '../modules/local/report'
include { softwareVersionsToYAML; optionalFile; optionalFiles } from '../subworkflows/local/utils_tmeflow'

workflow TMEFLOW {

    take:
    ch_sc      // channel: [ val(meta), path(counts) ], the single-cell samples of the samplesheet
    ch_spatial // channel: [ val(meta), path(spaceranger_outs), path(region_annotation) or [] ]
    ch_bulk    // channel: [ val(meta), path(expression), path(clinical) ]

    main:
    ch_report_files  = channel.empty()

    //
    // Per-sample QC (fan-out: one task per sample)
    //
    SC_QC ( ch_sc )
    ch_report_files  = ch_report_files.mix(SC_QC.out.report)

    //
    // Cohort atlas (fan-in): integration, annotation, malignant cells, compartments
    //
    COHORT_ATLAS ( SC_QC.out.h5ad )
    ch_atlas         = COHORT_ATLAS.out.atlas
    ch_report_files  = ch_report_files.mix(COHORT_ATLAS.out.report)

    //
    // Conditions compared on the atlas
    //
    ch_signatures = channel.fromList(optionalFiles(params.signatures))
    COMPARE_CONDITIONS ( ch_atlas, ch_signatures )
    ch_report_files  = ch_report_files.mix(COMPARE_CONDITIONS.out.report)

    //
    // Trajectories and cell-cell communication on the atlas
    //
    TRAJECTORY ( ch_atlas )
    COMMUNICATION ( ch_atlas )
    ch_report_files  = ch_report_files.mix(
        TRAJECTORY.out.mqc, COMMUNICATION.out.mqc,
        TRAJECTORY.out.plots.mix(COMMUNICATION.out.plots).map { meta, pngs -> pngs }
    )

    //
    // Spatial sections (fan-out per section), with the atlas as deconvolution reference
    //
    SPATIAL ( ch_spatial, ch_atlas )
    ch_report_files  = ch_report_files.mix(SPATIAL.out.report)

    //
    // The explorable atlas: every stage's per-cell annotations in one h5ad (CELLxGENE), one per section,
    // and the sections' spatial statistics combined with patients as the units (fan-in of every section)
    //
    ATLAS (
        ch_atlas,
        COMPARE_CONDITIONS.out.pathways.map { meta, h5ad -> h5ad },
        TRAJECTORY.out.h5ad.map { meta, h5ad -> h5ad },
        SPATIAL.out.h5ad.map { meta, h5ad -> h5ad }.collect().ifEmpty([])
    )
    ch_report_files  = ch_report_files.mix(ATLAS.out.mqc, ATLAS.out.plots) // spatial statistics across patients

    //
    // Bulk cohort validation
    //
    BULK_VALIDATION ( ch_bulk, ch_atlas )
    ch_report_files  = ch_report_files.mix(BULK_VALIDATION.out.report)

    //
    // The report (fan-in): every stage's tables and figures, software versions and parameters,
    // gathered by `tmeflow report` into one MultiQC HTML
    //
    ch_collated_versions = softwareVersionsToYAML(channel.topic('versions'))
        .collectFile(
            storeDir: "${params.outdir}/pipeline_info",
            name: 'tmeflow_software_mqc_versions.yml',
            sort: true,
            newLine: true
        )
    ch_params_json = channel.value(groovy.json.JsonOutput.prettyPrint(groovy.json.JsonOutput.toJson(params)))
        .collectFile(storeDir: "${params.outdir}/pipeline_info", name: 'params.json')

    REPORT (
        ch_report_files.mix(ch_collated_versions, ch_params_json).collect(sort: true),
        optionalFile(params.multiqc_config)
    )

    emit:
    qc_h5ad        = SC_QC.out.h5ad       // channel: [ val(meta), path(h5ad) ]
    atlas          = ch_atlas             // channel: [ val(meta), path(h5ad) ]
    explorable     = ATLAS.out.h5ad       // channel: [ val(meta), path(atlas.h5ad) ]
    multiqc_report = REPORT.out.report    // channel: path(multiqc_report.html)
}
