include { shellQuote } from '../../../subworkflows/local/utils_tmeflow'

process QC {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(counts)

    output:
    tuple val(meta), path("${meta.id}.qc.h5ad")    , emit: h5ad   , optional: true
    tuple val(meta), path("${meta.id}.qc_cells.tsv.gz"), emit: cells
    tuple val(meta), path("${meta.id}.qc_violin.png")  , emit: violin
    tuple val(meta), path("${meta.id}.qc_scatter.png") , emit: scatter
    path "${meta.id}.qc_stats_mqc.tsv"                 , emit: mqc
    path "versions.yml"                                , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    tmeflow qc \\
        --input ${counts} \\
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
    touch ${meta.id}.qc.h5ad
    echo "" | gzip > ${meta.id}.qc_cells.tsv.gz
    touch ${meta.id}.qc_violin.png
    touch ${meta.id}.qc_scatter.png
    touch ${meta.id}.qc_stats_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
