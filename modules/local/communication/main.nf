process COMMUNICATION {
    tag "$meta.id"
    label 'process_high'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(atlas)

    output:
    tuple val(meta), path("communication_liana_by_condition.tsv.gz")   , emit: liana
    tuple val(meta), path("communication_liana_by_sample.tsv.gz")      , emit: liana_by_sample, optional: true
    tuple val(meta), path("communication_counts.tsv")                  , emit: counts
    tuple val(meta), path("communication_pathways.tsv")                , emit: pathways
    tuple val(meta), path("communication_roles.tsv")                   , emit: roles
    tuple val(meta), path("communication_pathway_diff_*_vs_*.tsv")     , emit: pathway_diff, optional: true
    tuple val(meta), path("communication_proportion_tests.tsv")        , emit: proportion_tests
    tuple val(meta), path("communication_diff_*_vs_*.tsv")             , emit: diff      , optional: true
    tuple val(meta), path("communication_sample_scores_*.tsv.gz")      , emit: scores    , optional: true
    tuple val(meta), path("communication_*.png")                       , emit: plots
    tuple val(meta), path("communication_skipped.tsv")                 , emit: skipped
    tuple val(meta), path("communication_summary.json")                , emit: summary
    path "communication*_mqc.tsv"                                      , emit: mqc // interactions bar graph, pathway table
    path "versions.yml"                                                , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    tmeflow communication \\
        --input ${atlas} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        liana: \$(python -c 'import liana; print(liana.__version__)')
        scanpy: \$(python -c 'import scanpy; print(scanpy.__version__)')
    END_VERSIONS
    """

    stub:
    """
    echo "" | gzip > communication_liana_by_condition.tsv.gz
    echo "" | gzip > communication_liana_by_sample.tsv.gz
    touch communication_counts.tsv
    touch communication_pathways.tsv
    touch communication_roles.tsv
    touch communication_pathway_diff_metastasis_vs_primary.tsv
    touch communication_pathway_diff_metastasis_vs_primary_heatmap.png
    touch communication_pathway_circle_MK.png
    touch communication_roles_heatmap.png
    touch communication_proportion_tests.tsv
    touch communication_diff_metastasis_vs_primary.tsv
    echo "" | gzip > communication_sample_scores_metastasis_vs_primary.tsv.gz
    touch communication_counts_heatmap.png
    touch communication_strength_heatmap.png
    touch communication_diff_metastasis_vs_primary_dotplot.png
    touch communication_skipped.tsv
    echo '{}' > communication_summary.json
    touch communication_mqc.tsv
    touch communication_pathways_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
