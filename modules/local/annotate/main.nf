process ANNOTATE {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(integrated)
    path markers            // optional marker table ([] when params.markers is unset)
    path celltypist_model   // optional local CellTypist .pkl ([] when unset; never downloaded)
    path overrides          // optional cluster -> cell_type table ([] when unset)

    output:
    tuple val(meta), path("annotated.h5ad")            , emit: h5ad
    tuple val(meta), path("annotation_markers.tsv")    , emit: markers
    tuple val(meta), path("annotation_scores.tsv")     , emit: scores
    tuple val(meta), path("annotation_dotplot_mqc.png"), emit: dotplot, optional: true
    tuple val(meta), path("annotation_umap_mqc.png")   , emit: umap   , optional: true
    path "annotation_clusters_mqc.tsv"                 , emit: mqc
    path "versions.yml"                                , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def markers_arg = markers ? "--markers ${markers}" : ''
    def celltypist_arg = celltypist_model ? "--celltypist_model ${celltypist_model}" : ''
    def overrides_arg = overrides ? "--annotation_overrides ${overrides}" : ''
    """
    tmeflow annotate \\
        --input ${integrated} \\
        --outdir . \\
        ${markers_arg} \\
        ${celltypist_arg} \\
        ${overrides_arg} \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        decoupler: \$(python -c 'import decoupler; print(decoupler.__version__)')
    END_VERSIONS
    """

    stub:
    """
    touch annotated.h5ad
    touch annotation_markers.tsv
    touch annotation_scores.tsv
    touch annotation_dotplot_mqc.png
    touch annotation_umap_mqc.png
    touch annotation_clusters_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
