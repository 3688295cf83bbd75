process COMPOSITION {
    tag "$meta.id"
    label 'process_single'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(atlas)

    output:
    tuple val(meta), path("composition_*_counts.tsv")      , emit: counts
    tuple val(meta), path("composition_*_proportions.tsv") , emit: proportions
    tuple val(meta), path("da_*.tsv")                      , emit: da
    tuple val(meta), path("composition_*_stacked.png")     , emit: stacked
    tuple val(meta), path("composition_*_boxplot.png")     , emit: boxplot
    tuple val(meta), path("da_nhood_*.png")                , emit: nhood_plots, optional: true
    tuple val(meta), path("composition_summary.json")      , emit: summary
    path "composition*_mqc.tsv"                            , emit: mqc // composition bar graph, DA table
    path "versions.yml"                                    , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    tmeflow composition \\
        --input ${atlas} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """

    stub:
    """
    touch composition_major_counts.tsv
    touch composition_major_proportions.tsv
    touch da_major_metastasis_vs_primary.tsv
    touch composition_major_stacked.png
    touch composition_major_boxplot.png
    echo '{}' > composition_summary.json
    touch composition_mqc.tsv
    touch composition_da_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
