"""Drug sensitivity of a signature: cell-line screens correlated with it, and a ridge model of the response.

Cell-line screens (GDSC/CTRP) are correlated with the signature, and an oncoPredict-style ridge model predicts the
tumours' drug response.

Inputs (parameters, shared by every bulk row; skipped when unset)
    * ``drug_expression``: the screened cell lines' expression, genes x cell lines (or transposed), read,
      mapped (symbols or Ensembl IDs) and log-transformed (``drug_values``) like a bulk cohort's matrix;
    * ``drug_response``: IC50 or AUC per cell line and drug, long (GDSC's fitted dose-response tables:
      ``CELL_LINE_NAME``/``COSMIC_ID``, ``DRUG_NAME``, ``LN_IC50``/``AUC``; CTRP: ``ccl_name``,
      ``cpd_name``, ``area_under_curve``) or wide (cell lines x drugs). Lower = more sensitive.

Per drug (``<sample>.bulk_drug_correlation.tsv``): the Spearman rho, across the cell lines with a value, of
each focus signature (user signatures, necroptosis sets, bulk_genes), scored on the cell lines exactly as
on the tumours (ssGSEA with the same gene sets and options), and of each of its member genes, with the
drug response; BH FDR across drugs for each feature. A negative rho with IC50 or AUC means that cell lines
with a higher score are more sensitive. The bubble plot shows the top drugs of the first focus signature
(x = rho, size = -log10 FDR).

With ``drug_predict`` (``<sample>.bulk_drug_cv.tsv``, ``<sample>.bulk_drug_predicted.tsv``): per drug, a
ridge regression of the response on the genes common to cell lines and tumours, each gene standardised
within each set (cell lines, tumours) so that platform and batch offsets cancel, as in oncoPredict's
``calcPhenotype`` (Maeser, Gruener & Huang 2021, Brief Bioinform 22:bbab260) and pRRophetic (Geeleher,
Cox & Huang 2014, PLoS One 9:e107468), which use the same whole-transcriptome ridge design; the
penalty is chosen by efficient leave-one-out CV on the training lines (scikit-learn ``RidgeCV``). The model
is validated by 5-fold cross-validation on the cell lines (Spearman of out-of-fold predictions with the
observed response, ``cv_rho``); only drugs with ``cv_rho >= drug_min_cv_rho`` are predicted for the
tumours (in the cell lines' response units). Screens: GDSC (Yang et al. 2013, Nucleic Acids Res 41:D955)
and CTRP (Rees et al. 2016, Nat Chem Biol 12:109).
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from ..errors import TmeflowInputError
from ..io import multiqc_header, save_figure, write_table
from ..log import get_logger
from ..plotting import pyplot
from ..signatures import filter_gene_sets, ssgsea
from ..stats import bh_fdr
from .reading import detect_id_type, map_identifiers, read_expression, transform_values

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .settings import BulkSettings

logger = get_logger(__package__)

CELL_COLUMNS = ("cell_line", "cell_line_name", "ccl_name", "cosmic_id", "depmap_id", "model_id", "sample")
DRUG_COLUMNS = ("drug", "drug_name", "cpd_name", "compound", "drug_id")
VALUE_COLUMNS = ("ln_ic50", "ic50", "log_ic50", "auc", "area_under_curve", "value")
MIN_CELL_LINES = 10
CV_FOLDS = 5
TOP_DRUGS = 20


# --------------------------------------------------------------------------------------------------
# Input


def _pick(columns: list[str], candidates: tuple[str, ...]) -> str | None:
    """Return the first column (any case) named like one of ``candidates``, in the candidates' order."""
    lowered = {c.lower(): c for c in columns}
    return next((lowered[c] for c in candidates if c in lowered), None)


def read_drug_response(path: str | Path, column: str = "") -> tuple[pd.DataFrame, str]:
    """Read a long or wide drug-response table (GDSC/CTRP, module docstring) as cell lines x drugs.

    Parameters
    ----------
    path
        The ``drug_response`` table (CSV/TSV, optionally gzipped).
    column
        Value column of a long table (``drug_response_column``); empty = the first of :data:`VALUE_COLUMNS`.

    Returns
    -------
    tuple of (DataFrame, str)
        Cell lines x drugs (float; NaN where a line was not screened, repeated measurements averaged) and the
        measure's name (the value column, or ``"response"`` for a wide table).
    """
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("drug_response file not found", file=path)
    name = path.name.lower().removesuffix(".gz")
    sep = "," if name.endswith(".csv") else "\t"
    try:
        frame = pd.read_csv(path, sep=sep, dtype=str)
    except Exception as exc:  # parser errors, empty files
        raise TmeflowInputError(f"cannot read drug_response table ({str(exc).splitlines()[0]})", file=path) from exc
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.empty or frame.shape[1] < 2:
        raise TmeflowInputError(
            "drug_response table needs a cell-line column and at least one drug or value column", file=path
        )
    drug = _pick(list(frame.columns), DRUG_COLUMNS)
    if drug is not None:  # long
        cell = _pick(list(frame.columns), CELL_COLUMNS)
        if cell is None:
            raise TmeflowInputError(
                f"long drug_response table has no cell-line column (one of {', '.join(CELL_COLUMNS)})",
                file=path,
                column=drug,
            )
        if column:
            if column not in frame.columns:
                raise TmeflowInputError(
                    "drug_response_column is not a column of drug_response", file=path, column=column
                )
            value = column
        else:
            picked = _pick(list(frame.columns), VALUE_COLUMNS)
            if picked is None:
                raise TmeflowInputError(
                    f"long drug_response table has no value column (one of {', '.join(VALUE_COLUMNS)}; "
                    "or set drug_response_column)",
                    file=path,
                )
            value = picked
        numeric = pd.to_numeric(frame[value], errors="coerce")
        bad = numeric.isna() & frame[value].notna() & ~frame[value].str.strip().str.upper().isin(["", "NA", "NAN"])
        if bad.any():
            raise TmeflowInputError(
                f"non-numeric drug response '{frame[value][bad].iloc[0]}'",
                file=path,
                column=value,
                row=int(np.flatnonzero(bad)[0]) + 2,
            )
        long = pd.DataFrame(
            {"cell": frame[cell].str.strip(), "drug": frame[drug].str.strip(), "value": numeric}
        ).dropna()
        repeated = int(long.duplicated(["cell", "drug"]).sum())
        if repeated:
            logger.info("drug_response: %d repeated cell line-drug measurement(s) averaged", repeated)
        matrix = long.pivot_table(index="cell", columns="drug", values="value", aggfunc="mean")
        measure = value
    else:  # wide: first column the cell line
        matrix = frame.set_index(frame.columns[0])
        matrix.index = matrix.index.map(lambda v: str(v).strip())
        numeric = matrix.apply(pd.to_numeric, errors="coerce")
        bad = (
            numeric.isna() & matrix.notna() & ~matrix.apply(lambda c: c.str.strip().str.upper().isin(["", "NA", "NAN"]))
        )
        if bad.to_numpy().any():
            raise TmeflowInputError(
                "non-numeric drug response in a wide drug_response table (no drug column: "
                f"one of {', '.join(DRUG_COLUMNS)} makes it long)",
                file=path,
                column=str(bad.any().idxmax()),
            )
        if matrix.index.duplicated().any():
            raise TmeflowInputError(
                f"cell line {matrix.index[matrix.index.duplicated()][0]} appears more than once",
                file=path,
                column=frame.columns[0],
            )
        matrix, measure = numeric, "response"
    matrix.index.name, matrix.columns.name = "cell_line", "drug"
    return matrix.astype(float), measure


def read_drug_inputs(settings: BulkSettings) -> SimpleNamespace | None:
    """Read the cell-line screen named by ``drug_expression`` and ``drug_response``.

    Expression is read, mapped and transformed with the cohort's rules (``drug_values``, ``bulk_max_missing``,
    ``bulk_species``); drugs with fewer than :data:`MIN_CELL_LINES` screened lines are left out (logged).

    Parameters
    ----------
    settings
        The bulk settings; one of the two paths without the other is an input error.

    Returns
    -------
    SimpleNamespace or None
        ``log_expr`` (genes x cell lines, log2), ``response`` (lines x drugs, lines in both tables only),
        ``measure``, ``expression`` and ``source`` (the two paths); None when neither path is set.
    """
    expr_path, resp_path = settings.drug_expression, settings.drug_response
    if not expr_path and not resp_path:
        return None
    if not (expr_path and resp_path):
        given, missing = ("drug_expression", "drug_response") if expr_path else ("drug_response", "drug_expression")
        raise TmeflowInputError(f"{given} needs {missing} as well", file=expr_path or resp_path)
    expression, source = Path(expr_path), Path(resp_path)
    response, measure = read_drug_response(source, settings.drug_response_column or "")
    raw = read_expression(expression, response.index, what="drug_response cell lines")
    id_type = detect_id_type(raw.index, "auto", False)
    mapped, _ = map_identifiers(raw, id_type, settings.bulk_species, None, expression)
    log_expr, _ = transform_values(mapped, settings.drug_values, settings.bulk_max_missing, expression)
    response = response.loc[log_expr.columns]
    screened = response.notna().sum()
    dropped = screened.index[screened < MIN_CELL_LINES]
    if len(dropped):
        logger.info("drugs: %d drug(s) with fewer than %d screened cell lines left out", len(dropped), MIN_CELL_LINES)
    response = response.drop(columns=dropped)
    if response.shape[1] == 0:
        raise TmeflowInputError(
            f"no drug has at least {MIN_CELL_LINES} screened cell lines with expression", file=source
        )
    logger.info(
        "drugs: %d cell lines, %d genes, %d drugs (%s)",
        log_expr.shape[1],
        log_expr.shape[0],
        response.shape[1],
        measure,
    )
    return SimpleNamespace(log_expr=log_expr, response=response, measure=measure, expression=expression, source=source)


# --------------------------------------------------------------------------------------------------
# Correlations


def cell_line_features(
    log_expr: pd.DataFrame, sets: dict[str, list[str]], focus: list[str], settings: BulkSettings
) -> tuple[pd.DataFrame, dict[str, str]]:
    """Score the focus signatures and their genes on the cell lines, as on the tumours.

    Parameters
    ----------
    log_expr
        Cell-line log2 expression, genes x lines.
    sets
        Gene sets by name (the cohort's scored sets).
    focus
        The focus features (set names and ``gene:X``) of the cohort.
    settings
        ``signature_min_size`` (sets with fewer genes on the cell lines are left out), ``ssgsea_alpha`` and
        ``ssgsea_normalize``.

    Returns
    -------
    tuple of (DataFrame, dict)
        Cell lines x features (ssGSEA scores and every member gene present, as ``gene:X``) and the kind of each
        feature (``score`` or ``gene``).
    """
    wanted = {name: sets[name] for name in focus if name in sets}
    kept = filter_gene_sets(
        wanted, log_expr.index, min_size=settings.signature_min_size, source="cell lines", required=False
    )
    features = pd.DataFrame(index=log_expr.columns)
    kinds: dict[str, str] = {}
    if kept:
        scores = ssgsea(log_expr, kept, alpha=settings.ssgsea_alpha, normalize=settings.ssgsea_normalize).T
        for name in kept:
            features[name], kinds[name] = scores[name], "score"
    genes = [f.split(":", 1)[1] for f in focus if f.startswith("gene:")]
    genes += [g for name in kept for g in kept[name]]
    for gene in dict.fromkeys(g for g in genes if g in log_expr.index):
        features[f"gene:{gene}"], kinds[f"gene:{gene}"] = log_expr.loc[gene], "gene"
    return features, kinds


def spearman_columns(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Compute the Spearman rho of each column of ``x`` with ``y`` and its two-sided p.

    The p uses the t approximation with n - 2 degrees of freedom, as :func:`scipy.stats.spearmanr`.

    Parameters
    ----------
    x
        Samples x columns, complete (no NaN).
    y
        One value per sample.

    Returns
    -------
    tuple of (ndarray, ndarray)
        rho and p per column; NaN for a constant column.
    """
    from scipy.stats import rankdata
    from scipy.stats import t as student_t

    n = len(y)
    rx, ry = rankdata(x, axis=0), rankdata(y)
    rx, ry = rx - rx.mean(axis=0), ry - ry.mean()
    with np.errstate(invalid="ignore", divide="ignore"):
        rho = (rx * ry[:, None]).sum(axis=0) / np.sqrt((rx**2).sum(axis=0) * (ry**2).sum())
        stat = rho * np.sqrt((n - 2) / np.clip(1 - rho**2, 1e-300, None))
    p = 2 * student_t.sf(np.abs(stat), n - 2)
    return rho, np.where(np.isnan(rho), np.nan, p)


def drug_correlations(features: pd.DataFrame, kinds: dict[str, str], response: pd.DataFrame) -> pd.DataFrame:
    """Correlate every feature with every drug's response across the cell lines (Spearman).

    Parameters
    ----------
    features
        Cell lines x features (:func:`cell_line_features`).
    kinds
        Kind of each feature.
    response
        Cell lines x drugs (IC50 or AUC; NaN where not screened: each test uses the lines screened).

    Returns
    -------
    DataFrame
        One row per feature and drug: ``feature``, ``kind``, ``drug``, ``n``, ``rho``, ``p`` and ``fdr`` (BH across
        the drugs of each feature).
    """
    rows = []
    for drug in response.columns:
        y = response[drug].dropna()
        rho, p = spearman_columns(features.loc[y.index].to_numpy(float), y.to_numpy(float))
        rows.append(pd.DataFrame({"feature": features.columns, "drug": drug, "n": len(y), "rho": rho, "p": p}))
    table = pd.concat(rows, ignore_index=True)
    table.insert(1, "kind", table["feature"].map(kinds))
    table["fdr"] = np.nan
    for _, index in table.groupby("feature", sort=False).groups.items():
        table.loc[index, "fdr"] = bh_fdr(table.loc[index, "p"])
    return table


def plot_drug_bubbles(table: pd.DataFrame, feature: str, measure: str, top: int = TOP_DRUGS) -> Figure:
    """Plot the ``top`` drugs by p for ``feature`` as bubbles.

    Parameters
    ----------
    table
        Long table of :func:`drug_correlations`.
    feature
        The feature shown (the lead signature).
    measure
        Name of the response measure, for the axis label.
    top
        Number of drugs shown (default :data:`TOP_DRUGS`, what fits a readable figure).

    Returns
    -------
    Figure
        x = Spearman rho with the response, size = -log10 FDR, filled where FDR < 0.05 (blue: higher score, lower
        IC50/AUC = more sensitive).
    """
    plt = pyplot()
    sub = table[table["feature"] == feature].dropna(subset=["p"]).sort_values("p", kind="stable").head(top).iloc[::-1]
    fig, ax = plt.subplots(figsize=(5.2, 0.25 * len(sub) + 1.6))
    size = -np.log10(sub["fdr"].clip(lower=1e-300).to_numpy(float))
    colours = np.where(sub["rho"] < 0, "#2166ac", "#b2182b")
    ax.scatter(
        sub["rho"],
        np.arange(len(sub)),
        s=20 + 25 * np.minimum(size, 12),
        c=colours,
        alpha=np.where(sub["fdr"] < 0.05, 0.9, 0.3),
        edgecolors="black",
        linewidths=0.4,
    )
    ax.axvline(0, color="grey", lw=0.6)
    ax.set_yticks(np.arange(len(sub)))
    ax.set_yticklabels(sub["drug"], fontsize=6)
    ax.set_xlim(-1, 1)
    ax.set_xlabel(f"Spearman rho of {feature} with {measure}")
    for value in (1, 5, 10):
        ax.scatter(
            [], [], s=20 + 25 * value, c="white", edgecolors="black", linewidths=0.4, label=f"-log10 FDR {value}"
        )
    ax.legend(fontsize=6, frameon=False, loc="lower right", labelspacing=1.2)
    ax.set_title(f"Top {len(sub)} drugs", fontsize=8)
    fig.tight_layout()
    return fig


# --------------------------------------------------------------------------------------------------
# Ridge prediction (oncoPredict-style)


def _standardise(log_expr: pd.DataFrame) -> pd.DataFrame:
    """Z-score each gene (column) across the samples (rows)."""
    frame = log_expr.T
    return (frame - frame.mean()) / frame.std(ddof=0)


def predict_drug_response(
    cell_log: pd.DataFrame, tumour_log: pd.DataFrame, response: pd.DataFrame, *, min_cv_rho: float, seed: int
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Train a ridge model per drug on the cell lines and predict the tumours' response (oncoPredict-style).

    Maeser et al. 2021 (oncoPredict, Brief Bioinform): per-set gene standardisation, scikit-learn ``RidgeCV``;
    the model's quality is the 5-fold cross-validated Spearman rho of predicted and measured response.

    Parameters
    ----------
    cell_log
        Cell-line log2 expression, genes x lines.
    tumour_log
        Tumour log2 expression, genes x samples (the genes both tables share are used).
    response
        Cell lines x drugs.
    min_cv_rho
        Drugs whose ``cv_rho`` is below it get no tumour prediction (``drug_min_cv_rho``).
    seed
        Seed of the cross-validation folds.

    Returns
    -------
    tuple of (DataFrame, DataFrame)
        Per drug the CV table (``drug``, ``n``, ``cv_rho`` ...) and the tumours x drugs predicted response of the
        drugs passing ``min_cv_rho``.
    """
    from sklearn.linear_model import RidgeCV
    from sklearn.model_selection import KFold

    genes = cell_log.index.intersection(tumour_log.index)
    genes = genes[(cell_log.loc[genes].std(axis=1) > 0).to_numpy() & (tumour_log.loc[genes].std(axis=1) > 0).to_numpy()]
    if len(genes) < 10:
        raise TmeflowInputError(
            f"only {len(genes)} varying genes are shared by the cell lines and the tumours; "
            "drug_predict needs the same gene identifiers in both"
        )
    x_cells, x_tumours = _standardise(cell_log.loc[genes]), _standardise(tumour_log.loc[genes])
    alphas = len(genes) * np.logspace(-5, 1, 13)
    rows, predictions = [], {}
    # drugs screened on the same cell lines share one multi-target fit
    groups: dict[bytes, list[str]] = {}
    for drug in response.columns:
        groups.setdefault(response[drug].notna().to_numpy().tobytes(), []).append(drug)
    for drugs in groups.values():
        lines = response.index[response[drugs[0]].notna()]
        x, y = x_cells.loc[lines].to_numpy(), response.loc[lines, drugs].to_numpy(float)
        oof = np.empty_like(y)
        for train, test in KFold(CV_FOLDS, shuffle=True, random_state=seed).split(x):
            model = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x[train], y[train])
            oof[test] = model.predict(x[test]).reshape(len(test), -1)
        full = RidgeCV(alphas=alphas, alpha_per_target=True).fit(x, y)
        chosen = np.broadcast_to(np.atleast_1d(full.alpha_), (len(drugs),))
        predicted = full.predict(x_tumours.to_numpy()).reshape(len(x_tumours), -1)
        for j, drug in enumerate(drugs):
            rho, p = spearman_columns(oof[:, [j]], y[:, j])
            keep = bool(rho[0] >= min_cv_rho)
            rows.append(
                {
                    "drug": drug,
                    "n_cell_lines": len(lines),
                    "n_genes": len(genes),
                    "alpha": float(chosen[j]),
                    "cv_rho": float(rho[0]),
                    "cv_p": float(p[0]),
                    "predicted": keep,
                }
            )
            if keep:
                predictions[drug] = predicted[:, j]
    cv = pd.DataFrame(rows).sort_values("cv_rho", ascending=False, kind="stable").reset_index(drop=True)
    frame = pd.DataFrame(predictions, index=x_tumours.index)[[d for d in cv["drug"] if d in predictions]]
    frame.index.name = "sample"
    logger.info(
        "drug prediction: %d of %d drugs with CV rho >= %.2f predicted for %d tumours",
        frame.shape[1],
        len(cv),
        min_cv_rho,
        frame.shape[0],
    )
    return cv, frame


# --------------------------------------------------------------------------------------------------
# Stage step


def run_drugs(
    drugs: SimpleNamespace,
    sets: dict[str, list[str]],
    focus: list[str],
    tumour_log: pd.DataFrame,
    settings: BulkSettings,
) -> dict[str, Any]:
    """Run the drug analyses of one bulk cohort: correlations and, with ``drug_predict``, ridge CV and predictions.

    Parameters
    ----------
    drugs
        The screen of :func:`read_drug_inputs`.
    sets
        The cohort's gene sets by name.
    focus
        The cohort's focus features, lead first.
    tumour_log
        The cohort's log2 expression, genes x samples.
    settings
        ``drug_predict``, ``drug_min_cv_rho``, ``seed`` and the ssGSEA settings.

    Returns
    -------
    dict
        ``correlations``, ``measure``, ``lead`` and, with ``drug_predict``, ``cv`` and ``predicted``; empty when no
        focus feature is measured on the cell lines.
    """
    features, kinds = cell_line_features(drugs.log_expr, sets, focus, settings)
    if features.shape[1] == 0:
        logger.warning("drugs: no focus signature or gene is measured on the cell lines; drug correlations skipped")
        return {}
    result = {
        "correlations": drug_correlations(features, kinds, drugs.response),
        "measure": drugs.measure,
        "lead": next((f for f in features.columns if kinds[f] == "score"), features.columns[0]),
    }
    if settings.drug_predict:
        result["cv"], result["predicted"] = predict_drug_response(
            drugs.log_expr, tumour_log, drugs.response, min_cv_rho=settings.drug_min_cv_rho, seed=settings.seed
        )
    return result


def write_drugs(result: dict[str, Any], outdir: Path, prefix: str, sample: str, cohort_id: str) -> list[Path]:
    """Write the tables, the bubble plot and the report table of :func:`run_drugs` (names in docs/output.md)."""
    if not result:
        return []
    table, lead = result["correlations"], result["lead"]
    written = [write_table(table, outdir / f"{prefix}bulk_drug_correlation.tsv")]
    written.append(
        save_figure(plot_drug_bubbles(table, lead, result["measure"]), outdir / f"{prefix}bulk_drug_bubble.png")
    )
    mqc = table[table["feature"] == lead].sort_values("p", kind="stable").head(50)[["drug", "n", "rho", "p", "fdr"]]
    headers = {
        "n": {},
        "rho": {"format": "{:.2f}"},
        **{c: {"format": "{:.2g}", "scale": "RdYlGn", "min": 0, "max": 1} for c in ("p", "fdr")},
    }
    written.append(
        write_table(
            mqc,
            outdir / f"{prefix}bulk_drug_mqc.tsv",
            header_lines=multiqc_header(
                f"tmeflow_bulk_drug_{cohort_id}",
                f"Bulk cohort {sample}: drug sensitivity",
                f"Top drugs by Spearman correlation of {lead} (scored on the cell lines as on the tumours) "
                f"with {result['measure']}; "
                "fdr: BH across drugs. Negative rho: higher score, more sensitive.",
                "table",
                headers=headers,
                pconfig={"id": f"tmeflow_bulk_drug_{cohort_id}_table", "sort_rows": False},
            ),
        )
    )
    if "cv" in result:
        written.append(write_table(result["cv"], outdir / f"{prefix}bulk_drug_cv.tsv"))
        written.append(write_table(result["predicted"].reset_index(), outdir / f"{prefix}bulk_drug_predicted.tsv"))
    return written
