process DECONVOLVE {
    tag "$meta.id"
    label 'process_gpu'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(h5ad)
    path reference

    output:
    tuple val(meta), path("${prefix}.deconvolved.h5ad")                   , emit: h5ad
    tuple val(meta), path("${prefix}.deconvolution_abundance*.tsv")       , emit: abundance
    tuple val(meta), path("${prefix}.deconvolution_proportions.tsv")      , emit: proportions
    tuple val(meta), path("${prefix}.deconvolution_proportions_fine.tsv") , emit: proportions_fine, optional: true
    tuple val(meta), path("${prefix}.deconvolution_marker_scores.tsv")    , emit: marker_scores
    tuple val(meta), path("${prefix}.deconvolution_proportions.png")      , emit: plot
    tuple val(meta), path("${prefix}.deconvolution_abundance.png")        , emit: abundance_plot
    tuple val(meta), path("${prefix}.deconvolution_dominant.png")         , emit: dominant_plot
    path "${prefix}.deconvolution*_mqc.tsv"                               , emit: mqc
    path "versions.yml"                                                   , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    // no `def`: the output declarations read it too (nf-core modules do the same)
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    tmeflow deconvolve \\
        --input ${h5ad} \\
        --reference ${reference} \\
        --sample ${prefix} \\
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
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.deconvolved.h5ad
    touch ${prefix}.deconvolution_abundance.tsv
    touch ${prefix}.deconvolution_proportions.tsv
    touch ${prefix}.deconvolution_proportions.png
    touch ${prefix}.deconvolution_abundance.png
    touch ${prefix}.deconvolution_dominant.png
    touch ${prefix}.deconvolution_mqc.tsv
    touch ${prefix}.deconvolution_agreement_mqc.tsv
    touch ${prefix}.deconvolution_marker_scores.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
