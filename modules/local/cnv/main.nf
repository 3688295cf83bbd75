process CNV {
    tag "$meta.id"
    label 'process_high'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(h5ad)
    path gene_positions     // gene-position table replacing the bundled GRCh38/mm10 one; [] for none

    output:
    tuple val(meta), path("cnv.h5ad")          , emit: h5ad
    tuple val(meta), path("cnv_cells.tsv.gz")  , emit: cells
    tuple val(meta), path("cnv_reference.tsv") , emit: reference
    tuple val(meta), path("cnv_clusters.tsv")  , emit: clusters
    tuple val(meta), path("cnv_arms.tsv")      , emit: arms
    tuple val(meta), path("cnv_heatmap_*.png") , emit: heatmaps
    path "cnv_summary_mqc.tsv"                 , emit: mqc
    path "cnv_*_mqc.png"                       , emit: mqc_plots
    path "cnv_arms_mqc.yaml"                   , emit: mqc_heatmap // native MultiQC heatmap, patients x arms
    path "versions.yml"                        , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def positions_arg = gene_positions ? "--gene_positions ${gene_positions}" : ''
    """
    tmeflow cnv \\
        --input ${h5ad} \\
        ${positions_arg} \\
        --n_jobs ${task.cpus} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        infercnvpy: \$(python -c 'import infercnvpy; print(infercnvpy.__version__)')
    END_VERSIONS
    """

    stub:
    """
    touch cnv.h5ad
    echo "" | gzip > cnv_cells.tsv.gz
    touch cnv_reference.tsv
    touch cnv_clusters.tsv
    touch cnv_arms.tsv
    touch cnv_heatmap_stub.png
    touch cnv_summary_mqc.tsv
    touch cnv_score_violin_mqc.png
    touch cnv_arms_mqc.yaml

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        infercnvpy: \$(python -c 'import infercnvpy; print(infercnvpy.__version__)')
    END_VERSIONS
    """
}
