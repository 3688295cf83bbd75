"""ESTIMATE stromal, immune and ESTIMATE scores of bulk samples (Yoshihara et al. 2013, Nat Commun 4:2612)."""

from __future__ import annotations

import pandas as pd

from .log import get_logger
from .signatures import filter_gene_sets, map_gene_sets, read_bundled_gmt, ssgsea

logger = get_logger(__name__)

ESTIMATE_COLUMNS = ("ImmuneScore", "StromalScore", "ESTIMATEScore")


def estimate_scores(
    log_expression: pd.DataFrame, species: str, alpha: float = 0.25, min_size: int = 5
) -> pd.DataFrame | None:
    """Compute the ESTIMATE stromal, immune and ESTIMATE scores per sample (Yoshihara et al. 2013); no purity.

    Scores are un-normalised ssGSEA sums (:func:`tmeflow.signatures.ssgsea` with ``normalize=False``,
    alpha 0.25), which is how the ``estimate`` package scores its two 141-gene signatures;
    ESTIMATEScore = stromal + immune. They rank samples within a cohort.

    Tumour purity is not reported. ESTIMATE's ``cos(0.6049872018 + 0.0001467884 * ESTIMATEScore)`` was
    fitted on scores computed over its 10,412 "common genes" (``filterCommonGenes``), and the
    un-normalised score grows with the number of ranked genes: with the same relative enrichment a
    20,000-gene matrix gives purity about -0.65 and 35,000 genes about -0.95. The common-genes list is
    not bundled (only the signatures are, see ``resources/estimate/SOURCE.md``), and no subset of the
    matrix reproduces it faithfully, so a purity from this score would be wrong by construction.

    Parameters
    ----------
    log_expression
        Log2 expression, genes x samples.
    species
        Species of the symbols (mouse: the human signatures are mapped by the bundled orthologs).
    alpha
        ssGSEA rank weight exponent (0.25, as ``estimate`` uses).
    min_size
        Fewest genes of each signature present for the scores to be computed (``signature_min_size``).

    Returns
    -------
    DataFrame or None
        Samples x :data:`ESTIMATE_COLUMNS` (``ImmuneScore``, ``StromalScore``, ``ESTIMATEScore``); None (with a
        warning) when either signature has fewer than ``min_size`` genes in the matrix.
    """
    sets = read_bundled_gmt("estimate")
    if species != "human":
        sets = map_gene_sets(sets, "human", species)
    sets = filter_gene_sets(sets, log_expression.index, min_size=min_size, required=False)
    if len(sets) < 2:
        logger.warning("ESTIMATE skipped: the stromal and immune signatures need %d genes each in the matrix", min_size)
        return None
    scores = ssgsea(log_expression, sets, alpha=alpha, normalize=False).T
    out = pd.DataFrame(
        {"StromalScore": scores["StromalSignature"], "ImmuneScore": scores["ImmuneSignature"]}, index=scores.index
    )
    out["ESTIMATEScore"] = out["StromalScore"] + out["ImmuneScore"]
    out.index.name = "sample"
    return out
