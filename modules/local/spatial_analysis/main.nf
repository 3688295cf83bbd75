process SPATIAL_ANALYSIS {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(h5ad), path(region_annotation)

    output:
    tuple val(meta), path("${meta.id}.spatial_analysis.h5ad")          , emit: h5ad
    tuple val(meta), path("${meta.id}.regions.tsv")                    , emit: regions
    tuple val(meta), path("${meta.id}.nhood_enrichment_*.tsv")         , emit: nhood, optional: true
    tuple val(meta), path("${meta.id}.co_occurrence.tsv")              , emit: co_occurrence
    tuple val(meta), path("${meta.id}.colocalisation.tsv")             , emit: colocalisation
    tuple val(meta), path("${meta.id}.lr_interface.tsv")               , emit: lr_interface
    tuple val(meta), path("${meta.id}.trajectory_bins.tsv")            , emit: trajectory_bins
    tuple val(meta), path("${meta.id}.trajectory_correlation.tsv")     , emit: trajectory_correlation
    tuple val(meta), path("${meta.id}.distance_association.tsv")       , emit: distance
    tuple val(meta), path("${meta.id}.tls.tsv")                        , emit: tls
    tuple val(meta), path("${meta.id}.spot_cnv.tsv")                   , emit: spot_cnv, optional: true
    tuple val(meta), path("${meta.id}.{regions,nhood_enrichment,lr_interface,spot_cnv}.png"), emit: plots, optional: true
    path "${meta.id}.*_mqc.{tsv,png}"                                  , emit: mqc
    path "versions.yml"                                                , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def regions = region_annotation ? "--region_annotation ${region_annotation}" : ''
    """
    tmeflow spatial_analysis \\
        --input ${h5ad} \\
        ${regions} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        squidpy: \$(python -c "import importlib.metadata as m; print(m.version('squidpy'))")
        liana: \$(python -c "import importlib.metadata as m; print(m.version('liana'))")
    END_VERSIONS
    """

    stub:
    """
    touch ${meta.id}.spatial_analysis.h5ad
    touch ${meta.id}.regions.tsv
    touch ${meta.id}.co_occurrence.tsv
    touch ${meta.id}.colocalisation.tsv
    touch ${meta.id}.lr_interface.tsv
    touch ${meta.id}.trajectory_bins.tsv
    touch ${meta.id}.trajectory_correlation.tsv
    touch ${meta.id}.distance_association.tsv
    touch ${meta.id}.tls.tsv
    touch ${meta.id}.regions_mqc.tsv
    touch ${meta.id}.colocalisation_mqc.tsv

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
