#!/usr/bin/env nextflow
/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    tmeflow
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    Tumour-microenvironment atlas from scRNA-seq, spatial and bulk cancer cohorts.
    Parameters: nextflow_schema.json. Usage:

        nextflow run . -profile docker --input samplesheet.csv --outdir results
----------------------------------------------------------------------------------------
*/

include { TMEFLOW                 } from './workflows/tmeflow'
include { PIPELINE_INITIALISATION } from './subworkflows/local/utils_tmeflow'
include { PIPELINE_COMPLETION     } from './subworkflows/local/utils_tmeflow'

workflow {

    main:
    //
    // Validate the parameters, read the samplesheet, split it by modality
    //
    PIPELINE_INITIALISATION (
        params.version,
        params.validate_params,
        params.input
    )

    //
    // The analysis
    //
    TMEFLOW (
        PIPELINE_INITIALISATION.out.sc,
        PIPELINE_INITIALISATION.out.spatial,
        PIPELINE_INITIALISATION.out.bulk
    )

    //
    // Summary when the run ends
    //
    PIPELINE_COMPLETION (
        params.outdir
    )
}
