//
// Pipeline initialisation (parameters, samplesheet) and completion (summary) for tmeflow
//

include { validateParameters; paramsSummaryLog; samplesheetToList } from 'plugin/nf-schema'

/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    SUBWORKFLOW: initialise the pipeline
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
*/

workflow PIPELINE_INITIALISATION {

    take:
    version         // boolean: print the version and exit
    validate_params // boolean: validate the parameters against nextflow_schema.json
    input           // string:  path to the samplesheet (CSV)

    main:
    if (version) {
        log.info "${workflow.manifest.name} ${workflow.manifest.version}"
        System.exit(0)
    }

    if (validate_params) {
        validateParameters()
    }
    log.info paramsSummaryLog(workflow)

    //
    // Samplesheet: validated by nf-schema against assets/schema_input.json; relative paths
    // resolved against the samplesheet's folder, as `tmeflow run` does.
    //
    def samplesheet = file(input, checkIfExists: true)
    def rows = samplesheetToList(input, "${projectDir}/assets/schema_input.json")
        .collect { row -> resolveRow(row, samplesheet) }
    checkUniqueSamples(rows)

    if (!rows.any { row -> row[0].modality == 'sc' }) {
        error("Samplesheet ${samplesheet}: no single-cell (modality sc) samples; the atlas needs at least one")
    }

    ch_rows = channel.fromList(rows)
        .branch { meta, data, clinical, region_annotation ->
            sc:      meta.modality == 'sc'
                return [ meta, data ]
            spatial: meta.modality == 'spatial'
                return [ meta, data, region_annotation ]
            bulk:    meta.modality == 'bulk'
                return [ meta, data, clinical ]
        }

    emit:
    sc      = ch_rows.sc      // channel: [ val(meta), path(counts) ]
    spatial = ch_rows.spatial // channel: [ val(meta), path(spaceranger_outs), path(region_annotation) or [] ]
    bulk    = ch_rows.bulk    // channel: [ val(meta), path(expression), path(clinical) ]
}

/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    SUBWORKFLOW: pipeline completion
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
*/

workflow PIPELINE_COMPLETION {

    take:
    outdir          // string: results folder

    main:
    workflow.onComplete {
        def status = workflow.success ? 'completed' : 'FAILED'
        log.info "-[tmeflow] ${status}: ${workflow.stats.succeedCount ?: 0} task(s) succeeded, " +
            "${workflow.stats.ignoredCount ?: 0} ignored, ${workflow.stats.failedCount ?: 0} failed, in ${workflow.duration}"
        if (workflow.success) {
            log.info "-[tmeflow] results in ${outdir}; report: ${outdir}/multiqc/multiqc_report.html"
        }
        else {
            log.info "-[tmeflow] see ${workflow.launchDir}/.nextflow.log and the failing task's .command.err"
        }
    }

    workflow.onError {
        log.error "-[tmeflow] pipeline stopped: ${workflow.errorMessage}"
    }
}

/*
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
    FUNCTIONS
~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~~
*/

//
// A samplesheet path: absolute or remote (s3://, gs://, https://) as given, relative ones against
// the samplesheet's folder; [] when the optional column is empty.
//
def resolvePath(value, samplesheet, column, sample) {
    if (value == null || value == [] || value.toString().trim() == '') {
        return []
    }
    def text = value.toString().trim()
    def isAbsolute = text.startsWith('/') || text.contains('://')
    def resolved = isAbsolute ? file(text) : samplesheet.parent.resolve(text)
    if (!resolved.exists()) {
        error("Samplesheet ${samplesheet}, sample '${sample}': ${column} path does not exist: ${text}")
    }
    return resolved
}

//
// One row of samplesheetToList, [ meta, data, clinical, region_annotation ], with resolved paths.
//
def resolveRow(row, samplesheet) {
    def (meta, data, clinical, region_annotation) = row
    return [
        meta,
        resolvePath(data, samplesheet, 'data', meta.id),
        resolvePath(clinical, samplesheet, 'clinical', meta.id),
        resolvePath(region_annotation, samplesheet, 'region_annotation', meta.id)
    ]
}

//
// A value as one POSIX shell word: single-quoted, each ' written as '\'' (the only character a
// single-quoted shell string cannot hold). For samplesheet metadata on a command line: spaces,
// parentheses, $, backticks, apostrophes and any Unicode reach the program unchanged.
// tests/nf_strict.py (shell_quote) is its Python twin; the static tests run both through bash.
//
def shellQuote(value) {
    return "'" + value.toString().replace("'", "'\\''") + "'"
}

//
// A user file given by a parameter, or [] (nf-core's "no file") when the parameter is unset
//
def optionalFile(path) {
    return path ? file(path, checkIfExists: true) : []
}

//
// User files given by a comma-separated parameter (e.g. several GMT files), or [] when unset
//
def optionalFiles(paths) {
    return paths ? paths.tokenize(',').collect { path -> file(path.trim(), checkIfExists: true) } : []
}

def checkUniqueSamples(rows) {
    def duplicated = rows.collect { row -> row[0].id }.countBy { id -> id }.findAll { id, count -> count > 1 }.keySet()
    if (duplicated) {
        error("Samplesheet: sample name(s) appear more than once: ${duplicated.join(', ')}")
    }
}

//
// Software versions of every process (versions.yml files), for MultiQC's "Software versions"
//
def processVersionsFromYAML(yaml_file) {
    def yaml = new org.yaml.snakeyaml.Yaml()
    def versions = yaml.load(yaml_file.text).collectEntries { process, tools -> [ process.tokenize(':')[-1], tools ] }
    return yaml.dumpAsMap(versions).trim()
}

def workflowVersionToYAML() {
    return """
    Workflow:
        ${workflow.manifest.name}: ${workflow.manifest.version}
        Nextflow: ${workflow.nextflow.version}
    """.stripIndent().trim()
}

def softwareVersionsToYAML(ch_versions) {
    return ch_versions
        .unique()
        .map { yaml_file -> processVersionsFromYAML(yaml_file) }
        .unique()
        .mix(channel.of(workflowVersionToYAML()))
}
