process TRAJECTORY {
    tag "$meta.id"
    label 'process_high'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(atlas)

    output:
    tuple val(meta), path("trajectory.h5ad")                 , emit: h5ad
    tuple val(meta), path("trajectory_cells.tsv")            , emit: cells
    tuple val(meta), path("trajectory_fates.tsv")            , emit: fates
    tuple val(meta), path("trajectory_fate_conditions.tsv")  , emit: fate_conditions
    tuple val(meta), path("trajectory_fate_genes.tsv")       , emit: fate_genes
    tuple val(meta), path("trajectory_fate_enrichment.tsv")  , emit: enrichment
    tuple val(meta), path("trajectory_branch_genes.tsv")     , emit: branch_genes
    tuple val(meta), path("trajectory_branch_clusters.tsv")  , emit: branch_clusters
    tuple val(meta), path("trajectory_branch_enrichment.tsv"), emit: branch_enrichment
    tuple val(meta), path("trajectory_set_trends.tsv")       , emit: set_trends
    tuple val(meta), path("trajectory_*.png")                , emit: plots
    tuple val(meta), path("trajectory_summary.json")         , emit: summary
    path "trajectory_mqc.tsv"                                , emit: mqc
    path "versions.yml"                                      , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    tmeflow trajectory \\
        --input ${atlas} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        cellrank: \$(python -c 'import cellrank; print(cellrank.__version__)')
        scanpy: \$(python -c 'import scanpy; print(scanpy.__version__)')
    END_VERSIONS
    """

    stub:
    """
    touch trajectory.h5ad
    touch trajectory_cells.tsv
    touch trajectory_fates.tsv
    touch trajectory_fate_conditions.tsv
    touch trajectory_fate_genes.tsv
    touch trajectory_fate_enrichment.tsv
    touch trajectory_branch_genes.tsv
    touch trajectory_branch_clusters.tsv
    touch trajectory_branch_enrichment.tsv
    touch trajectory_set_trends.tsv
    touch trajectory_branch_heatmap.png
    touch trajectory_set_trends.png
    touch trajectory_embedding.png
    touch trajectory_trends.png
    echo '{}' > trajectory_summary.json
    touch trajectory_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
