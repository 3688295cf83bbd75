process BULK {
    tag "$meta.id"
    label 'process_medium'

    conda "${moduleDir}/../../../containers/environment.yml"

    input:
    tuple val(meta), path(expression), path(clinical)
    path reference          // single-cell reference .h5ad (the atlas); [] for none
    path signatures         // user gene sets, GMT file(s) (params.signatures); [] for none
    path probe_annotation   // probe -> gene symbol table for probe IDs; [] for none
    path maf                // somatic mutations (GDC MAF) for TMB; [] for none
    path normal_expression  // separate normal-tissue cohort (e.g. GTEx); [] for none
    path normal_clinical    // its sample table with the cancer-type mapping column; [] for none
    path msi                // MSI scores per sample; [] for none
    path copy_number        // gene-level GISTIC-style thresholded copy number; [] for none
    path methylation        // gene-level methylation beta values; [] for none
    path drug_expression    // drug-screened cell lines' expression (GDSC/CTRP); [] for none
    path drug_response      // their IC50/AUC per drug; [] for none

    output:
    tuple val(meta), path("${prefix}.bulk_*.tsv")        , emit: tables
    tuple val(meta), path("${prefix}.bulk_*.png")        , emit: plots   , optional: true
    tuple val(meta), path("${prefix}.bulk_summary.json") , emit: summary
    path "${prefix}.bulk_*_mqc.*"                        , emit: mqc     , optional: true
    path "versions.yml"                                  , emit: versions, topic: versions

    when:
    task.ext.when == null || task.ext.when

    script:
    def args = task.ext.args ?: ''
    // no `def`: the output declarations read it too (nf-core modules do the same)
    prefix = task.ext.prefix ?: "${meta.id}"
    def reference_arg = reference ? "--reference ${reference}" : ''
    def signatures_arg = signatures ? "--signatures ${signatures}" : ''
    def probes_arg = probe_annotation ? "--probe_annotation ${probe_annotation}" : ''
    def maf_arg = maf ? "--maf ${maf}" : ''
    def normal_expression_arg = normal_expression ? "--normal_expression ${normal_expression}" : ''
    def normal_clinical_arg = normal_clinical ? "--normal_clinical ${normal_clinical}" : ''
    def msi_arg = msi ? "--msi ${msi}" : ''
    def copy_number_arg = copy_number ? "--copy_number ${copy_number}" : ''
    def methylation_arg = methylation ? "--methylation ${methylation}" : ''
    def drug_expression_arg = drug_expression ? "--drug_expression ${drug_expression}" : ''
    def drug_response_arg = drug_response ? "--drug_response ${drug_response}" : ''
    """
    tmeflow bulk \\
        --expression ${expression} \\
        --clinical ${clinical} \\
        ${reference_arg} \\
        ${signatures_arg} \\
        ${probes_arg} \\
        ${maf_arg} \\
        ${normal_expression_arg} \\
        ${normal_clinical_arg} \\
        ${msi_arg} \\
        ${copy_number_arg} \\
        ${methylation_arg} \\
        ${drug_expression_arg} \\
        ${drug_response_arg} \\
        --sample ${prefix} \\
        --outdir . \\
        ${args}

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """

    stub:
    prefix = task.ext.prefix ?: "${meta.id}"
    """
    touch ${prefix}.bulk_scores.tsv
    touch ${prefix}.bulk_features.tsv
    touch ${prefix}.bulk_gene_sets.tsv
    touch ${prefix}.bulk_survival.tsv
    touch ${prefix}.bulk_cox.tsv
    touch ${prefix}.bulk_survival_mqc.tsv
    touch ${prefix}.bulk_km_OS_mqc.png
    touch ${prefix}.bulk_forest_OS.png
    echo '{}' > ${prefix}.bulk_summary.json

    cat <<-END_VERSIONS > versions.yml
    "${task.process}":
        tmeflow: \$(tmeflow --version | sed 's/tmeflow //')
    END_VERSIONS
    """
}
