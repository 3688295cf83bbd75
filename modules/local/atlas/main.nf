process ATLAS {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(subclustered)
    path pathways       // pathways.h5ad of tmeflow pathways (per-cell module scores)
    path trajectory     // trajectory.h5ad of tmeflow trajectory (pseudotime, fates)
    path sections       // <sample>.spatial_analysis.h5ad of every section ([] when there are none)

    output:
    tuple val(meta), path("atlas.h5ad")           , emit: h5ad
    tuple val(meta), path("*.atlas.h5ad")         , emit: sections, optional: true
    tuple val(meta), path("atlas_columns.tsv")    , emit: columns
    tuple val(meta), path("atlas_summary.json")   , emit: summary
    tuple val(meta), path("spatial_cohort*.tsv")  , emit: spatial_cohort, optional: true // sections combined, patients as units
    path "spatial_cohort_mqc.tsv"                 , emit: mqc, optional: true
    path "spatial_cohort_*.png"                   , emit: plots, optional: true
    path "versions.yml"                           , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    def sections_arg = sections ? "--sections ${sections}" : ''
    """
    tmeflow atlas \\
        --input ${subclustered} \\
        --pathways ${pathways} \\
        --trajectory ${trajectory} \\
        ${sections_arg} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
        anndata: \$(python -c 'import anndata; print(anndata.__version__)')
    END_VERSIONS
    """

    stub:
    def section_atlases = [sections].flatten().collect { f -> "touch ${f.name.replace('.spatial_analysis.h5ad', '.atlas.h5ad')}" }.join('\n    ')
    def spatial_cohort = sections ? 'touch spatial_cohort.tsv spatial_cohort_patients.tsv spatial_cohort_mqc.tsv' : ''
    """
    ${section_atlases}
    ${spatial_cohort}
    touch atlas.h5ad
    touch atlas_columns.tsv
    echo '{}' > atlas_summary.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
