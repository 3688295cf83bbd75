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
include { MULTIQC                } from '../modules/local/multiqc'
include { softwareVersionsToYAML } from '../subworkflows/local/utils_tmeflow'

workflow TMEFLOW {

    take:
    ch_sc      // channel: [ val(meta), path(counts) ], the single-cell samples of the samplesheet
    ch_spatial // channel: [ val(meta), path(spaceranger_outs), path(region_annotation) or [] ]
    ch_bulk    // channel: [ val(meta), path(expression), path(clinical) ]

    main:
    ch_multiqc_files = Channel.empty()

    //
    // Per-sample QC (fan-out: one task per sample)
    //
    SC_QC ( ch_sc )
    ch_multiqc_files = ch_multiqc_files.mix(SC_QC.out.mqc)

    //
    // Cohort atlas (fan-in): integration, annotation, malignant cells, compartments
    //
    COHORT_ATLAS ( SC_QC.out.h5ad )
    ch_atlas         = COHORT_ATLAS.out.atlas
    ch_multiqc_files = ch_multiqc_files.mix(COHORT_ATLAS.out.mqc)

    //
    // Conditions compared on the atlas
    //
    ch_signatures = params.signatures
        ? Channel.fromPath(params.signatures.tokenize(','), checkIfExists: true)
        : Channel.empty()
    COMPARE_CONDITIONS ( ch_atlas, ch_signatures )
    ch_multiqc_files = ch_multiqc_files.mix(COMPARE_CONDITIONS.out.mqc)

    //
    // Trajectories and cell-cell communication on the atlas
    //
    TRAJECTORY ( ch_atlas )
    COMMUNICATION ( ch_atlas )
    ch_multiqc_files = ch_multiqc_files.mix(TRAJECTORY.out.mqc, COMMUNICATION.out.mqc)

    //
    // Spatial sections (fan-out per section), with the atlas as deconvolution reference
    //
    SPATIAL ( ch_spatial, ch_atlas )
    ch_multiqc_files = ch_multiqc_files.mix(SPATIAL.out.mqc)

    //
    // Bulk cohort validation
    //
    BULK_VALIDATION ( ch_bulk, ch_atlas )
    ch_multiqc_files = ch_multiqc_files.mix(BULK_VALIDATION.out.mqc)

    //
    // MultiQC (fan-in): every stage's *_mqc* custom content and the software versions
    //
    ch_collated_versions = softwareVersionsToYAML(channel.topic('versions'))
        .collectFile(
            storeDir: "${params.outdir}/pipeline_info",
            name: 'tmeflow_software_mqc_versions.yml',
            sort: true,
            newLine: true
        )

    ch_multiqc_config        = Channel.fromPath("${projectDir}/assets/multiqc_config.yml", checkIfExists: true)
    ch_multiqc_custom_config = params.multiqc_config
        ? Channel.fromPath(params.multiqc_config, checkIfExists: true)
        : Channel.empty()

    MULTIQC (
        ch_multiqc_files.mix(ch_collated_versions).collect(),
        ch_multiqc_config.toList(),
        ch_multiqc_custom_config.toList()
    )

    emit:
    qc_h5ad        = SC_QC.out.h5ad       // channel: [ val(meta), path(h5ad) ]
    atlas          = ch_atlas             // channel: [ val(meta), path(h5ad) ]
    multiqc_report = MULTIQC.out.report   // channel: path(multiqc_report.html)
}
