#!/usr/bin/env bash
# Regenerates the bundled test cohort (the `test` profile and the README's quick start use it):
# 6 scRNA samples (2 patients x normal/primary/metastasis, Cell Ranger .h5), 1 Visium-like section,
# a bulk cohort of 60 samples with survival, a validation bulk cohort of 30 and an immunotherapy cohort of 40
# (response, OS, PFS). Planted truth in truth.json.
set -euo pipefail
cd "$(dirname "$0")"
rm -rf cohort
tmeflow simulate --outdir cohort --n_cells 1800 --n_patients 2 --n_genes 3000 --n_sections 1 --n_spots 400 \
    --n_bulk 60 --n_bulk_validation 30 --n_immunotherapy 40 --seed 7 --sc_format h5
# Keep one copy of the section's counts (the .h5) and compress the bulk matrices.
rm -r cohort/spatial/*/outs/filtered_feature_bc_matrix
for folder in bulk bulk_validation immunotherapy; do
    gzip -n cohort/${folder}/expression.tsv
    sed -i "s#${folder}/expression.tsv,#${folder}/expression.tsv.gz,#" cohort/samplesheet.csv
done
