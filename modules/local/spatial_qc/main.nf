include { shellQuote } from '../../../subworkflows/local/utils_tmeflow'

process SPATIAL_QC {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(outs)

    output:
    tuple val(meta), path("${meta.id}.spatial.h5ad")                   , emit: h5ad
    tuple val(meta), path("${meta.id}.spatial_spots.tsv.gz")           , emit: spots
    tuple val(meta), path("${meta.id}.spatially_variable_genes.tsv")   , emit: svg
    tuple val(meta), path("${meta.id}.spatial_qc.png")                 , emit: plot
    tuple val(meta), path("${meta.id}.spatial_svg.png")                , emit: svg_plot, optional: true
    path "${meta.id}.spatial_qc_stats_mqc.tsv"                         , emit: mqc
    path "versions.yml"                                                , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    tmeflow spatial_qc \\
        --input ${outs} \\
        --sample ${meta.id} \\
        --patient ${shellQuote(meta.patient)} \\
        --condition ${shellQuote(meta.condition)} \\
        --tissue ${shellQuote(meta.tissue)} \\
        --species ${meta.species} \\
        --batch ${shellQuote(meta.batch)} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """

    stub:
    """
    touch ${meta.id}.spatial.h5ad
    echo "" | gzip > ${meta.id}.spatial_spots.tsv.gz
    touch ${meta.id}.spatially_variable_genes.tsv
    touch ${meta.id}.spatial_qc.png
    touch ${meta.id}.spatial_svg.png
    touch ${meta.id}.spatial_qc_stats_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
