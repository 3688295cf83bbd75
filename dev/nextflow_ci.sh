#!/usr/bin/env bash
# Checks of the Nextflow layer that need Nextflow itself (the pytest suite checks it statically).
# Run from the repository root on a machine with Nextflow >= 25.10, nf-test and Docker:
#
#     dev/nextflow_ci.sh            # lint, stub run, nf-test
#     OUTDIR=ci_results PROFILE=test,singularity dev/nextflow_ci.sh
#
# Not run where the Python tests run (Nextflow's launcher downloads its jar).
set -euo pipefail

cd "$(dirname "$0")/.."
PROFILE="${PROFILE:-test,docker}"
OUTDIR="${OUTDIR:-$(mktemp -d -t tmeflow-nf-ci.XXXXXX)}"
export NXF_OFFLINE="${NXF_OFFLINE:-false}"

step() { printf '\n== %s\n' "$*"; }

step "nextflow $(nextflow -version 2>/dev/null | awk '/version/ {print $2; exit}')"

step "nextflow lint . (strict syntax)"
nextflow lint . -o concise

step "stub run: nextflow run . -profile ${PROFILE} -stub --outdir ${OUTDIR}/stub"
nextflow run . -profile "${PROFILE}" -stub --outdir "${OUTDIR}/stub"

step "stub run of the hard-values samplesheet (spaces, parentheses, apostrophes, Unicode, numeric ids, two bulk cohorts)"
nextflow run . -profile "${PROFILE}" -stub --outdir "${OUTDIR}/stub_hard" \
    --input "${PWD}/assets/test/cohort/samplesheet_hard_values.csv"

step "nf-test test (modules, subworkflows, pipeline)"
nf-test test --profile "${PROFILE}" --verbose

step "all Nextflow checks passed; outputs in ${OUTDIR}"
