process DE {
    tag "$meta.id"
    label 'process_high'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(atlas)

    output:
    tuple val(meta), path("de_*_vs_*.tsv")               , emit: tables
    tuple val(meta), path("pseudobulk_*.tsv.gz")         , emit: pseudobulk, optional: true
    tuple val(meta), path("de_*_volcano.png")            , emit: volcano   , optional: true
    tuple val(meta), path("de_skipped.tsv")              , emit: skipped
    tuple val(meta), path("de_summary.json")             , emit: summary
    path "de_summary_mqc.tsv"                            , emit: mqc
    path "versions.yml"                                  , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    tmeflow de \\
        --input ${atlas} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        pydeseq2: \$(python -c 'import pydeseq2; print(pydeseq2.__version__)')
        scanpy: \$(python -c 'import scanpy; print(scanpy.__version__)')
    END_VERSIONS
    """

    stub:
    """
    touch de_metastasis_vs_primary.tsv
    echo "" | gzip > pseudobulk_metastasis_vs_primary.tsv.gz
    touch de_metastasis_vs_primary_volcano.png
    touch de_skipped.tsv
    echo '{}' > de_summary.json
    touch de_summary_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
