process DECONVOLVE {
    tag "$meta.id"
    label 'process_gpu'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(h5ad)
    path reference

    output:
    tuple val(meta), path("${meta.id}.deconvolved.h5ad")                  , emit: h5ad
    tuple val(meta), path("${meta.id}.deconvolution_abundance*.tsv")      , emit: abundance
    tuple val(meta), path("${meta.id}.deconvolution_proportions.tsv")     , emit: proportions
    tuple val(meta), path("${meta.id}.deconvolution_proportions_fine.tsv"), emit: proportions_fine, optional: true
    tuple val(meta), path("${meta.id}.deconvolution_marker_scores.tsv")   , emit: marker_scores
    tuple val(meta), path("${meta.id}.deconvolution_proportions.png")     , emit: plot
    tuple val(meta), path("${meta.id}.deconvolution_abundance.png")       , emit: abundance_plot
    tuple val(meta), path("${meta.id}.deconvolution_dominant.png")        , emit: dominant_plot
    path "${meta.id}.deconvolution*_mqc.tsv"                              , emit: mqc
    path "versions.yml"                                                   , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    tmeflow deconvolve \\
        --input ${h5ad} \\
        --reference ${reference} \\
        --sample ${meta.id} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        cell2location: \$(python -c "import importlib.metadata as m; print(m.version('cell2location'))")
        torch: \$(python -c "import torch; print(torch.__version__)")
    END_VERSIONS
    """

    stub:
    """
    touch ${meta.id}.deconvolved.h5ad
    touch ${meta.id}.deconvolution_abundance.tsv
    touch ${meta.id}.deconvolution_proportions.tsv
    touch ${meta.id}.deconvolution_proportions.png
    touch ${meta.id}.deconvolution_abundance.png
    touch ${meta.id}.deconvolution_dominant.png
    touch ${meta.id}.deconvolution_mqc.tsv
    touch ${meta.id}.deconvolution_agreement_mqc.tsv
    touch ${meta.id}.deconvolution_marker_scores.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
