"""Cell-type composition and differential abundance between conditions (``tmeflow composition``).

Input: the atlas h5ad (``obs``: ``sample``, ``condition``, ``cell_type``, optionally ``patient`` and
``cell_type_fine``). Only ``obs`` is read.

Proportions
    Per sample and cell type (major ``cell_type`` and, when present, ``cell_type_fine``): cell counts,
    proportions of the sample's cells.

Differential abundance: a propeller-style test (Phipson et al. 2022, *Bioinformatics* 38:4720,
speckle ``propeller``), with the sample as the unit of replication:

1. Proportions per sample are transformed (``da_transform``): ``logit`` (default; speckle adds a
   pseudo-count of 0.5 to every count before taking proportions, ``log(p / (1 - p))``) or ``asin``
   (``asin(sqrt(p))`` of the raw proportions).
2. One linear model per cell type, fitted to the samples of every condition, as limma/speckle do
   (``~ 0 + condition``; the residual variance borrows the other conditions' samples) or, when *paired*
   (every patient has samples in both contrasted conditions and there are at least two patients),
   ``~ 0 + condition + patient``. When that design is not of full rank (a condition's samples all
   belong to patients seen only in that condition), the model is fitted to the two contrasted
   conditions alone.
3. The contrast ``test - reference`` is tested with a t-test. With ``da_moderated`` (default) the residual
   variances are shrunk towards a common prior by limma's empirical Bayes (Smyth 2004, *Stat Appl
   Genet Mol Biol* 3:3; ``squeezeVar``), robustly as speckle's ``eBayes(robust = TRUE)``
   (``fitFDistRobustly``, Phipson et al. 2016, *Ann Appl Stat* 10:946: :func:`fit_f_dist_robust`; a
   cell type with an outlying variance gets a smaller prior df and is shrunk less; below 10 cell types
   limma's robust fit is the non-robust one), giving moderated t-statistics with
   ``df_residual + df_prior`` degrees of freedom (capped at the pooled residual df, as limma does).
   Without ``da_moderated`` ordinary t-tests are used.
4. Benjamini-Hochberg FDR over the cell types of a contrast (per annotation level).

Cluster-free differential abundance (``da_nhood``, default on): the same test on overlapping kNN
neighbourhoods of the integrated embedding, Milo-style (Dann et al. 2022), for a state that expands
inside a cell type; see :mod:`tmeflow.neighbourhood_da`.

Contrasts (``contrast``): ``"test,reference"`` (e.g. ``metastasis,primary``), several separated by
``;``, or ``all`` (every pair of conditions, in the order of the ``condition`` categories). Default
(empty): the two non-normal conditions with most samples (ties: category order), with ``primary`` as the
reference when it is one of them, otherwise the second of the two; when there is only one non-normal
condition it is tested against ``normal``. The same rule is used by ``tmeflow de`` and ``pathways``.

Outputs (``<level>`` is ``major`` or ``fine``, ``<contrast>`` is ``<test>_vs_<reference>``):
``composition_<level>_counts.tsv``, ``composition_<level>_proportions.tsv`` (long),
``da_<level>_<contrast>.tsv``, ``composition_<level>_stacked.png``,
``composition_<level>_boxplot.png``, ``composition_mqc.tsv`` (MultiQC bar graph of major proportions).

Package layout: :mod:`.contrasts` (obs checks, samples, contrasts, cell counts), :mod:`.limma` (limma-style
moderated linear models), :mod:`.propeller` (transforms and the propeller test), :mod:`.plots`, :mod:`.run`
(``run_composition``, ``cli``); every name is importable from ``tmeflow.composition``.
"""

from __future__ import annotations

from .contrasts import (
    LEVELS,
    MIN_SAMPLES_DA,
    NORMAL,
    PREFERRED_REFERENCE,
    cell_counts,
    check_obs,
    check_samples_per_condition,
    condition_order,
    contrast_name,
    is_paired,
    resolve_contrasts,
    sample_table,
)
from .limma import (
    WINSOR_TAIL_P,
    condition_design,
    contrast_design,
    fit_f_dist,
    fit_f_dist_robust,
    linear_model_test,
    trigamma_inverse,
)
from .plots import plot_boxes, plot_stacked
from .propeller import propeller, transform_proportions
from .run import DA_TABLE_COLUMNS, CompositionSettings, cli, run_composition, write_da_table

__all__ = [
    "DA_TABLE_COLUMNS",
    "LEVELS",
    "MIN_SAMPLES_DA",
    "NORMAL",
    "PREFERRED_REFERENCE",
    "WINSOR_TAIL_P",
    "CompositionSettings",
    "cell_counts",
    "check_obs",
    "check_samples_per_condition",
    "cli",
    "condition_design",
    "condition_order",
    "contrast_design",
    "contrast_name",
    "fit_f_dist",
    "fit_f_dist_robust",
    "is_paired",
    "linear_model_test",
    "plot_boxes",
    "plot_stacked",
    "propeller",
    "resolve_contrasts",
    "run_composition",
    "sample_table",
    "transform_proportions",
    "trigamma_inverse",
    "write_da_table",
]
