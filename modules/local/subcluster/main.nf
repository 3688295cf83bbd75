process SUBCLUSTER {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(annotated)
    path subtype_markers    // optional subtype marker table ([] when params.subtype_markers is unset)

    output:
    tuple val(meta), path("subclustered.h5ad")        , emit: h5ad
    tuple val(meta), path("subcluster_markers.tsv")   , emit: markers
    tuple val(meta), path("subcluster_counts.tsv")    , emit: counts
    tuple val(meta), path("subcluster_umap_*.png")    , emit: umaps, optional: true
    path "subcluster_calls_mqc.tsv"                   , emit: mqc
    path "versions.yml"                               , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def markers_arg = subtype_markers ? "--subtype_markers ${subtype_markers}" : ''
    """
    tmeflow subcluster \\
        --input ${annotated} \\
        --outdir . \\
        ${markers_arg} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """

    stub:
    """
    touch subclustered.h5ad
    touch subcluster_markers.tsv
    touch subcluster_counts.tsv
    touch subcluster_umap_T_NK.png
    touch subcluster_calls_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
