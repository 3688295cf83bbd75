process REPORT {
    label 'process_single'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    path report_files, stageAs: "?/*"
    path multiqc_config

    output:
    path "*multiqc_report.html", emit: report
    path "*_data"              , emit: data
    path "*_plots"             , emit: plots, optional: true
    path "*_figures"           , emit: figures, optional: true // per-sample figures linked from a cohort's report
    path "versions.yml"        , emit: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def config = multiqc_config ? "--multiqc_config ${multiqc_config}" : ''
    """
    tmeflow report \\
        --input_dir . \\
        --outdir . \\
        ${config} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        multiqc: \$(python -c 'import multiqc; print(multiqc.__version__)')
    END_VERSIONS
    """

    stub:
    """
    mkdir multiqc_data
    touch multiqc_report.html

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
