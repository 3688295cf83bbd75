process INTEGRATE {
    tag "$meta.id"
    // -profile gpu gives this process a GPU and the CUDA image when params.batch_correction == 'scvi'
    // (conf/gpu.config)
    label 'process_high'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(h5ads, stageAs: 'qc/*')    // fan-in: every <sample>.qc.h5ad of the cohort

    output:
    tuple val(meta), path("integrated.h5ad")                      , emit: h5ad
    tuple val(meta), path("integration_clusters.tsv")             , emit: clusters
    tuple val(meta), path("integration_umap_uncorrected_mqc.png") , emit: umap_uncorrected
    tuple val(meta), path("integration_umap_corrected_mqc.png")   , emit: umap_corrected
    path "integration_metrics_mqc.tsv"                            , emit: mqc
    path "versions.yml"                                           , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    """
    tmeflow integrate \\
        --input ${h5ads} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        scanpy: \$(python -c 'import scanpy; print(scanpy.__version__)')
        harmonypy: \$(python -c 'from importlib.metadata import version; print(version("harmonypy"))')
    END_VERSIONS
    """

    stub:
    """
    touch integrated.h5ad
    touch integration_clusters.tsv
    touch integration_umap_uncorrected_mqc.png
    touch integration_umap_corrected_mqc.png
    touch integration_metrics_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
