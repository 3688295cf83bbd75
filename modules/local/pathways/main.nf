process PATHWAYS {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(atlas), path(de_tables)
    path signatures   // user GMT file(s); [] for none

    output:
    tuple val(meta), path("pathways.h5ad")                 , emit: h5ad
    tuple val(meta), path("gsea_*_vs_*.tsv")               , emit: gsea      , optional: true
    tuple val(meta), path("ora_*_vs_*.tsv")                , emit: ora       , optional: true
    tuple val(meta), path("gsea_*.png")                    , emit: gsea_plots, optional: true
    tuple val(meta), path("ssgsea_samples.tsv")            , emit: ssgsea_samples
    tuple val(meta), path("ssgsea_cell_types.tsv")         , emit: ssgsea_cell_types
    tuple val(meta), path("ssgsea_*_heatmap.png")          , emit: heatmaps
    tuple val(meta), path("cell_scores.tsv.gz")            , emit: cell_scores
    tuple val(meta), path("scores_by_cell_type.tsv")       , emit: scores
    tuple val(meta), path("module_scores_bubble.png")      , emit: bubble
    tuple val(meta), path("stemness_samples.tsv")          , emit: stemness_samples
    tuple val(meta), path("stemness_tests.tsv")            , emit: stemness_tests
    tuple val(meta), path("stemness_by_condition.png")     , emit: stemness_plot
    tuple val(meta), path("pathways_summary.json")         , emit: summary
    path "pathways_gsea_mqc.tsv"                           , emit: mqc
    path "versions.yml"                                    , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def de = de_tables ? "--de ${de_tables}" : ''
    def gmts = signatures ? "--signatures ${signatures}" : ''
    """
    tmeflow pathways \\
        --input ${atlas} \\
        ${de} \\
        ${gmts} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        gseapy: \$(python -c 'import gseapy; print(gseapy.__version__)')
        decoupler: \$(python -c 'import decoupler; print(decoupler.__version__)')
    END_VERSIONS
    """

    stub:
    """
    touch pathways.h5ad
    touch gsea_metastasis_vs_primary.tsv
    touch ora_metastasis_vs_primary.tsv
    touch gsea_metastasis_vs_primary_bubble.png
    touch ssgsea_samples.tsv
    touch ssgsea_cell_types.tsv
    touch ssgsea_by_condition_heatmap.png
    echo "" | gzip > cell_scores.tsv.gz
    touch scores_by_cell_type.tsv
    touch module_scores_bubble.png
    touch stemness_samples.tsv
    touch stemness_tests.tsv
    touch stemness_by_condition.png
    touch pathways_gsea_mqc.tsv
    echo '{}' > pathways_summary.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
