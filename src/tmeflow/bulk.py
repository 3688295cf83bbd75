"""Bulk cohort validation (``tmeflow bulk``): signature scores, cut-points, Kaplan-Meier, Cox,
logistic regression, ESTIMATE immune context and deconvolution with the single-cell reference.

Inputs
    * expression matrix: genes x samples (a samples x genes matrix is transposed when its *rows*, not
      its columns, match the clinical sample identifiers), CSV/TSV (optionally gzipped), first column
      the gene identifier. Values are declared by ``bulk_values``: ``tpm`` or ``counts`` (counts are
      first scaled to counts per million) become ``log2(x + 1)``; ``log`` values are used as given
      (linear scale for deconvolution: ``2^x - 1``).
    * clinical table: one row per sample; the sample identifier is the column ``sample`` or
      ``sample_id`` if present, otherwise the first column.

Identifiers (``bulk_id_type``; ``auto`` = ``probe`` when ``--probe_annotation`` is given, ``ensembl``
when most identifiers look like ``ENS...G`` IDs, else ``symbol``): probes are mapped with the
annotation table (probe column: ``probe``/``probe_id``/``id`` or the first column; symbol column:
``symbol``/``gene_symbol``/``hugo.gene.symbol``/``ncbi.gene.symbol``/``gene`` or the first column whose
name contains "symbol"); Ensembl IDs are mapped with the bundled one-to-one ortholog table (version
suffixes ignored). Several rows for the same symbol are collapsed by keeping the row with the highest
mean expression (WGCNA ``collapseRows`` "MaxMean"). Genes with more than ``bulk_max_missing`` missing
values are dropped; remaining missing values get the gene's mean.

Survival endpoints are detected from column names (case-insensitive; ``X`` is the endpoint name, e.g.
OS, PFS, DSS, DFI, DMFS, RFS): ``X_time`` + ``X_event`` (or ``X_status``), ``X_months``/``X_days`` +
``X_status`` (cBioPortal), ``t.x`` + ``e.x`` (genefu/NKI) and ``X.time`` + ``X`` (TCGA-CDR), or given
explicitly with ``survival_columns`` (``NAME:time_column:event_column,...``). ``survival_endpoints``
restricts the analysis to some names.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd

from . import __version__
from .errors import TmeflowInputError
from .estimate import ESTIMATE_COLUMNS, estimate_scores
from .genes import ENSEMBL_ID, species_of
from .io import multiqc_header, read_h5ad, save_figure, write_json, write_table
from .log import get_logger, timed
from .plotting import pyplot
from .signatures import (
    ensembl_to_symbol,
    filter_gene_sets,
    load_orthologs,
    map_gene_sets,
    ortholog_map,
    read_bundled_gmt,
    read_gmt,
    ssgsea,
)
from .stats import bh_fdr
from .text import slug

reference_species = species_of  # the species of a reference atlas: the one detector every stage asks
from .survival import (
    cox_regression,
    logistic_regression,
    logrank_test,
    maxstat_cutpoint,
    median_cutpoint,
    parse_event,
)

logger = get_logger(__name__)

MIN_MATCHED_SAMPLES = 10



# --------------------------------------------------------------------------------------------------
# Reading


def _read_delimited(path: Path, what: str) -> pd.DataFrame:
    """Read a CSV/TSV (optionally .gz) with the first column as index (string identifiers)."""
    if not path.is_file():
        raise TmeflowInputError(f"{what} file not found", file=path)
    name = path.name.lower().removesuffix(".gz")
    sep = "," if name.endswith(".csv") else "\t" if name.endswith((".tsv", ".txt", ".tab")) else None
    try:
        frame = pd.read_csv(path, sep=sep, engine="python" if sep is None else "c", index_col=0)
    except Exception as exc:  # parser errors, empty files
        raise TmeflowInputError(f"cannot read {what} table ({str(exc).splitlines()[0]})", file=path) from exc
    if frame.empty:
        raise TmeflowInputError(f"{what} table is empty", file=path)
    frame.index = frame.index.map(lambda v: str(v).strip())
    frame.columns = [str(c).strip() for c in frame.columns]
    return frame


def read_clinical(path: str | Path) -> pd.DataFrame:
    """Clinical table indexed by sample: column ``sample``/``sample_id`` if present, else the first column."""
    path = Path(path)
    frame = _read_delimited(path, "clinical")
    lowered = {c.lower(): c for c in frame.columns}
    for key in ("sample", "sample_id"):
        if key in lowered:
            frame = frame.reset_index(drop=frame.index.name is None).set_index(lowered[key])
            frame.index = frame.index.map(str)
            break
    frame.index.name = "sample"
    if frame.index.duplicated().any():
        dup = frame.index[frame.index.duplicated()][0]
        raise TmeflowInputError(f"clinical sample {dup} appears more than once", file=path, sample=dup)
    return frame


def read_expression(path: str | Path, samples: pd.Index) -> pd.DataFrame:
    """Expression matrix as genes x samples, restricted to the samples also in the clinical table.

    The orientation is chosen by which axis matches the clinical identifiers. Fewer than
    ``MIN_MATCHED_SAMPLES`` matching samples, or non-numeric values, raise :class:`TmeflowInputError`
    that says how many match.
    """
    path = Path(path)
    frame = _read_delimited(path, "expression")
    in_columns = frame.columns.isin(samples).sum()
    in_rows = frame.index.isin(samples).sum()
    if in_rows > in_columns:
        logger.info("expression rows match the clinical samples: matrix read as samples x genes and transposed")
        frame = frame.T
    matched = frame.columns[frame.columns.isin(samples)]
    n_matched = len(matched)
    if n_matched < MIN_MATCHED_SAMPLES:
        raise TmeflowInputError(
            f"only {n_matched} of {len(samples)} clinical samples match expression columns "
            f"({frame.shape[1]} expression samples, e.g. {', '.join(map(str, frame.columns[:3]))}; "
            f"clinical e.g. {', '.join(map(str, samples[:3]))}); at least {MIN_MATCHED_SAMPLES} are needed",
            file=path,
        )
    if n_matched < len(samples) or n_matched < frame.shape[1]:
        logger.warning(
            "%d samples in both tables; %d clinical-only and %d expression-only samples ignored",
            n_matched, len(samples) - n_matched, frame.shape[1] - n_matched,
        )
    frame = frame[matched]
    numeric = frame.apply(pd.to_numeric, errors="coerce")
    bad = numeric.isna() & frame.notna()
    if bad.to_numpy().any():
        column = bad.any(axis=0).idxmax()
        raise TmeflowInputError("expression matrix has non-numeric values", file=path, sample=str(column))
    numeric.columns.name = "sample"
    return numeric.astype(float)


def read_probe_annotation(path: str | Path) -> pd.Series:
    """Probe -> gene symbol from an annotation table (column rules in the module docstring)."""
    path = Path(path)
    if not path.is_file():
        raise TmeflowInputError("probe annotation file not found", file=path)
    name = path.name.lower().removesuffix(".gz")
    frame = pd.read_csv(path, sep="," if name.endswith(".csv") else "\t", dtype=str)
    lowered = {c.lower(): c for c in frame.columns}
    probe_col = next((lowered[k] for k in ("probe", "probe_id", "probeid", "id") if k in lowered), frame.columns[0])
    symbol_col = next(
        (lowered[k] for k in ("symbol", "gene_symbol", "hugo.gene.symbol", "ncbi.gene.symbol", "gene.symbol", "gene")
         if k in lowered),
        next((c for c in frame.columns if "symbol" in c.lower() and "alternative" not in c.lower()), None),
    )
    if symbol_col is None:
        raise TmeflowInputError("probe annotation needs a gene symbol column (e.g. 'symbol')", file=path)
    mapping = frame[[probe_col, symbol_col]].dropna()
    mapping = mapping[mapping[symbol_col].str.strip() != ""]
    return pd.Series(mapping[symbol_col].str.strip().to_numpy(), index=mapping[probe_col].str.strip().to_numpy())


# --------------------------------------------------------------------------------------------------
# Identifiers and values


def detect_id_type(ids: pd.Index, id_type: str, has_annotation: bool) -> str:
    """``auto`` -> ``probe`` (annotation given), ``ensembl`` (>= half the IDs look like ENS...G) or ``symbol``."""
    if id_type != "auto":
        return id_type
    if has_annotation:
        return "probe"
    looks_ensembl = np.mean([bool(ENSEMBL_ID.match(str(i))) for i in ids])
    return "ensembl" if looks_ensembl >= 0.5 else "symbol"


def collapse_duplicates(frame: pd.DataFrame) -> pd.DataFrame:
    """Keep, for every duplicated gene symbol, the row with the highest mean expression (MaxMean)."""
    if not frame.index.duplicated().any():
        return frame
    means = frame.mean(axis=1, skipna=True).to_numpy()
    order = np.argsort(-np.nan_to_num(means, nan=-np.inf), kind="stable")
    ordered = frame.iloc[order]
    kept = ordered[~ordered.index.duplicated(keep="first")]
    logger.info("%d duplicated gene rows collapsed (kept the row with the highest mean)", len(frame) - len(kept))
    return kept


def map_identifiers(
    frame: pd.DataFrame, id_type: str, species: str, probe_map: pd.Series | None, source: Path
) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Map row identifiers to gene symbols of ``species``; return the collapsed matrix and a summary.

    Raises :class:`TmeflowInputError` when no (or almost no) identifier is a known gene of ``species``.
    """
    n_rows = len(frame)
    if id_type == "probe":
        if probe_map is None:
            raise TmeflowInputError("bulk_id_type probe needs --probe_annotation", file=source)
        probe_map = probe_map[~probe_map.index.duplicated()]
        known = frame.index.isin(probe_map.index)
        if not known.any():
            raise TmeflowInputError(
                f"none of the {n_rows} expression row identifiers is a probe of the annotation table "
                f"(e.g. {', '.join(frame.index[:3])})", file=source,
            )
        frame = frame.loc[known]
        frame.index = probe_map.reindex(frame.index).to_numpy()
    elif id_type == "ensembl":
        mapping = ensembl_to_symbol(frame.index)
        known = frame.index.isin(list(mapping))
        if not known.any():
            raise TmeflowInputError(
                f"none of the {n_rows} Ensembl identifiers maps to a gene symbol (e.g. {', '.join(frame.index[:3])})",
                file=source,
            )
        frame = frame.loc[known]
        frame.index = [mapping[i] for i in frame.index]
    n_mapped = len(frame)
    orthologs = load_orthologs()
    human = set(orthologs["human_symbol"])
    mouse = set(orthologs["mouse_symbol"])
    ids = set(map(str, frame.index))
    hits = {"human": len(ids & human), "mouse": len(ids & mouse)}
    other = "mouse" if species == "human" else "human"
    if hits[species] < max(1, 0.05 * len(ids)):
        hint = f"; they look like {other} genes, set bulk_species {other}" if hits[other] > hits[species] else ""
        raise TmeflowInputError(
            f"only {hits[species]} of {len(ids)} gene identifiers are known {species} gene symbols "
            f"(e.g. {', '.join(list(frame.index[:3]))}){hint}; set bulk_id_type or give --probe_annotation",
            file=source,
        )
    frame = collapse_duplicates(frame)
    frame.index.name = "gene"
    summary = {"id_type": id_type, "rows_in": n_rows, "rows_mapped": n_mapped, "genes": len(frame),
               "known_symbols": hits[species]}
    logger.info("identifiers (%s): %d rows -> %d mapped -> %d genes", id_type, n_rows, n_mapped, len(frame))
    return frame, summary


def transform_values(frame: pd.DataFrame, values: str, max_missing: float, source: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Return ``(log_expression, linear_expression)`` from the declared ``bulk_values``.

    tpm -> log2(TPM + 1); counts -> CPM then log2(CPM + 1); log -> as given (linear = 2^x - 1).
    Genes with more than ``max_missing`` missing values are dropped, the rest are mean-imputed.
    """
    missing = frame.isna().mean(axis=1)
    if (missing > max_missing).any():
        logger.warning("%d gene(s) with > %.0f%% missing values dropped", int((missing > max_missing).sum()), 100 * max_missing)
        frame = frame.loc[missing <= max_missing]
    if frame.isna().to_numpy().any():
        frame = frame.T.fillna(frame.mean(axis=1)).T
    if values in {"tpm", "counts"}:
        if (frame.to_numpy() < 0).any():
            raise TmeflowInputError(
                f"expression has negative values but bulk_values is {values}; use bulk_values log for log-scale data",
                file=source,
            )
        linear = frame
        if values == "counts":
            totals = frame.sum(axis=0)
            if (totals <= 0).any():
                raise TmeflowInputError("a sample has zero total counts", file=source, sample=str(totals.idxmin()))
            linear = frame / totals * 1e6
        log = np.log2(linear + 1.0)
    else:
        if frame.to_numpy().max() > 100:
            logger.warning("bulk_values is log but values reach %.0f; are they really log-scale?", frame.to_numpy().max())
        log = frame
        linear = np.power(2.0, frame) - 1.0
    return log, linear


# --------------------------------------------------------------------------------------------------
# Reference: marker signatures and deconvolution


def reference_profiles(adata, bulk_species: str, ref_species: str, source: Path) -> pd.DataFrame:
    """Mean counts-per-million per ``cell_type`` (genes x cell types) of a single-cell reference.

    Raw counts come from ``layers['counts']`` (else ``X``). Gene symbols are translated to the bulk
    species with the bundled one-to-one orthologs when the species differ.
    """
    import scipy.sparse as sp

    if "cell_type" not in adata.obs:
        raise TmeflowInputError("reference has no obs column 'cell_type'", file=source, column="cell_type")
    counts = adata.layers["counts"] if "counts" in adata.layers else adata.X
    counts = sp.csr_matrix(counts, dtype=float)
    totals = np.asarray(counts.sum(axis=1)).ravel()
    totals[totals == 0] = 1.0
    cpm = sp.diags(1e6 / totals) @ counts
    labels = adata.obs["cell_type"].astype(str).to_numpy()
    types = sorted(pd.unique(labels))
    if len(types) < 2:
        raise TmeflowInputError("reference needs at least two cell types", file=source, column="cell_type")
    profiles = np.vstack([np.asarray(cpm[labels == t].mean(axis=0)).ravel() for t in types]).T
    frame = pd.DataFrame(profiles, index=adata.var_names.astype(str), columns=types)
    if ref_species != bulk_species:
        mapping = ortholog_map(ref_species, bulk_species)
        frame = frame.loc[frame.index.isin(list(mapping))]
        frame.index = [mapping[g] for g in frame.index]
        logger.info("reference genes mapped %s -> %s with one-to-one orthologs: %d genes", ref_species, bulk_species, len(frame))
    frame = frame.groupby(level=0).sum() if frame.index.duplicated().any() else frame
    return frame


def marker_genes(profiles: pd.DataFrame, n_markers: int, universe: pd.Index | None = None) -> dict[str, list[str]]:
    """Top ``n_markers`` genes per cell type by specificity ``log2((mean_t + 1) / (max_other + 1)) > 0``.

    A simple, deterministic marker rule on the mean-CPM profiles (each type against the highest other
    type, so markers separate every pair), restricted to ``universe`` (genes in the bulk matrix).
    """
    frame = profiles if universe is None else profiles.loc[profiles.index.isin(universe)]
    values = np.log2(frame.to_numpy() + 1.0)
    markers = {}
    for j, cell_type in enumerate(frame.columns):
        others = np.delete(values, j, axis=1).max(axis=1)
        specificity = pd.Series(values[:, j] - others, index=frame.index)
        top = specificity[specificity > 0].sort_values(ascending=False, kind="stable").head(n_markers)
        markers[cell_type] = list(top.index)
    return markers


def deconvolve_nnls(linear: pd.DataFrame, profiles: pd.DataFrame, markers: dict[str, list[str]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Cell-type fractions of bulk samples by non-negative least squares on a signature matrix.

    Signature-matrix deconvolution (Abbas et al. 2009, PLoS One 4:e6098; the CIBERSORT idea of a
    marker-gene signature matrix, Newman et al. 2015, Nat Methods 12:453, with NNLS instead of
    nu-SVR): the signature matrix is the mean CPM per cell type over the union of marker genes
    present in the bulk matrix; each sample's linear-scale expression ``b`` is fitted as
    ``b ~ S f`` with ``f >= 0`` (``scipy.optimize.nnls``) and ``f`` is normalised to sum 1.
    Returns ``(fractions samples x types, fit table with residual norm and Pearson r per sample)``.
    """
    from scipy.optimize import nnls

    genes = [g for g in dict.fromkeys(g for m in markers.values() for g in m) if g in linear.index]
    if len(genes) < profiles.shape[1]:
        raise TmeflowInputError(
            f"only {len(genes)} reference marker genes are in the bulk matrix; cannot deconvolve "
            f"{profiles.shape[1]} cell types (check species and identifiers)"
        )
    signature = profiles.loc[genes].to_numpy()
    bulk = linear.loc[genes].to_numpy()
    fractions = np.zeros((bulk.shape[1], signature.shape[1]))
    fit = []
    for j in range(bulk.shape[1]):
        coef, residual = nnls(signature, bulk[:, j])
        total = coef.sum()
        fractions[j] = coef / total if total > 0 else np.nan
        predicted = signature @ coef
        r = np.corrcoef(predicted, bulk[:, j])[0, 1] if predicted.std() > 0 and bulk[:, j].std() > 0 else np.nan
        fit.append({"sample": linear.columns[j], "residual_norm": residual, "pearson_r": r, "n_genes": len(genes)})
    frame = pd.DataFrame(fractions, index=linear.columns, columns=profiles.columns)
    frame.index.name = "sample"
    return frame, pd.DataFrame(fit)


# --------------------------------------------------------------------------------------------------
# ESTIMATE


def spearman_table(features: pd.DataFrame, targets: pd.DataFrame) -> pd.DataFrame:
    """Spearman correlation of every feature with every target (samples in rows), with BH FDR over all pairs."""
    from scipy.stats import spearmanr

    rows = []
    for feature in features.columns:
        for target in targets.columns:
            x, y = features[feature], targets[target]
            ok = x.notna() & y.notna()
            if ok.sum() < 3 or x[ok].nunique() < 2 or y[ok].nunique() < 2:
                rho, p = np.nan, np.nan
            else:
                rho, p = spearmanr(x[ok], y[ok])
            rows.append({"feature": feature, "target": target, "rho": rho, "p": p, "n": int(ok.sum())})
    table = pd.DataFrame(rows)
    table["fdr"] = bh_fdr(table["p"])
    return table


# --------------------------------------------------------------------------------------------------
# Clinical columns


def detect_endpoints(clinical: pd.DataFrame, explicit: str = "", restrict: str = "") -> dict[str, tuple[str, str]]:
    """Endpoint name -> (time column, event column), by the naming rules of the module docstring."""
    columns = list(clinical.columns)
    lowered = {c.lower(): c for c in columns}
    endpoints: dict[str, tuple[str, str]] = {}
    if explicit.strip():
        for item in explicit.split(","):
            parts = [p.strip() for p in item.split(":")]
            if len(parts) != 3 or not all(parts):
                raise TmeflowInputError(f"survival_columns entry {item!r} must be NAME:time_column:event_column")
            for col in parts[1:]:
                if col not in clinical.columns:
                    raise TmeflowInputError(f"survival column {col} not in the clinical table", column=col)
            endpoints[parts[0].upper()] = (parts[1], parts[2])
    else:
        for low, col in lowered.items():
            candidates = []
            m = re.fullmatch(r"(.+?)[_.](time|days|months|years)", low)
            if m:
                base = m.group(1)
                candidates = [f"{base}_event", f"{base}_status", f"{base}.event", f"{base}.status"]
                if m.group(2) == "time" and low == f"{base}.time":
                    candidates.append(base)
            m2 = re.fullmatch(r"t\.(.+)", low)
            if m2:
                base = m2.group(1)
                candidates = [f"e.{base}"]
            for cand in candidates:
                if cand in lowered and lowered[cand] != col:
                    endpoints.setdefault(base.upper(), (col, lowered[cand]))
                    break
    if restrict.strip():
        wanted = [w.strip().upper() for w in restrict.split(",") if w.strip()]
        missing = [w for w in wanted if w not in endpoints]
        if missing:
            raise TmeflowInputError(
                f"survival endpoint(s) {', '.join(missing)} not found in the clinical table "
                f"(detected: {', '.join(endpoints) or 'none'}); name columns <X>_time/<X>_event or set survival_columns"
            )
        endpoints = {w: endpoints[w] for w in wanted}
    return endpoints


def survival_frame(clinical: pd.DataFrame, name: str, columns: tuple[str, str], source: Path) -> pd.DataFrame:
    """Validated ``time``/``event`` columns of one endpoint (rows with a missing time or event dropped)."""
    time_col, event_col = columns
    time = pd.to_numeric(clinical[time_col], errors="coerce")
    if (time.isna() & clinical[time_col].notna()).any():
        raise TmeflowInputError(f"endpoint {name}: non-numeric survival times", file=source, column=time_col)
    if (time < 0).any():
        bad = time.index[time < 0][0]
        raise TmeflowInputError(f"endpoint {name}: negative survival time", file=source, column=time_col, sample=str(bad))
    event = parse_event(clinical[event_col])
    unreadable = event.isna() & clinical[event_col].notna()
    if unreadable.any():
        value = clinical[event_col][unreadable].iloc[0]
        raise TmeflowInputError(
            f"endpoint {name}: event value '{value}' is not 0/1, true/false, dead/alive or 1:DECEASED-style",
            file=source, column=event_col,
        )
    frame = pd.DataFrame({"time": time, "event": event}).dropna()
    if frame["event"].sum() == 0:
        raise TmeflowInputError(f"endpoint {name} has no events among {len(frame)} samples", file=source, column=event_col)
    return frame


def covariate_matrix(clinical: pd.DataFrame, covariates: str, source: Path) -> pd.DataFrame:
    """Numeric covariates for multivariate models; text columns become 0/1 dummies (first level = reference)."""
    names = [c.strip() for c in covariates.split(",") if c.strip()]
    parts = []
    for name in names:
        if name not in clinical.columns:
            raise TmeflowInputError(f"covariate {name} is not a clinical column", file=source, column=name)
        column = clinical[name]
        numeric = pd.to_numeric(column, errors="coerce")
        if numeric.notna().sum() == column.notna().sum():
            parts.append(numeric.rename(name))
        else:
            dummies = pd.get_dummies(column.astype("string"), prefix=name, drop_first=True, dtype=float)
            dummies[column.isna().to_numpy()] = np.nan
            parts.append(dummies)
    return pd.concat(parts, axis=1) if parts else pd.DataFrame(index=clinical.index)


def node_status(column: pd.Series, source: Path) -> pd.Series:
    """Lymph-node status as 0 (N0) / 1 (N+): numbers > 0, ``N1``-``N3`` (any prefix such as pN), yes/positive."""
    def one(value: Any) -> float:
        """One clinical value -> 0/1/NaN."""
        if value is None or (isinstance(value, float) and np.isnan(value)):
            return np.nan
        text = str(value).strip().lower()
        try:
            return float(float(text) > 0)
        except ValueError:
            pass
        m = re.match(r"^[pcy]?n([0-3])", text)
        if m:
            return float(int(m.group(1)) > 0)
        if text in {"yes", "positive", "pos", "n+", "true"}:
            return 1.0
        if text in {"no", "negative", "neg", "n-", "false"}:
            return 0.0
        return np.nan

    status = column.map(one).astype(float)
    if status.nunique() < 2:
        raise TmeflowInputError(
            "node column must have both node-negative (0/N0) and node-positive (>0/N1-N3) samples",
            file=source, column=str(column.name),
        )
    return status


# --------------------------------------------------------------------------------------------------
# Survival per feature


def analyse_survival(
    features: pd.DataFrame,
    surv: pd.DataFrame,
    endpoint: str,
    covariates: pd.DataFrame,
    params: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, pd.Series]]:
    """Cut-point, log-rank and Cox models of every feature for one endpoint.

    Per feature: high/low groups by ``cutpoint_method`` (maxstat with a permutation- or Lau92-corrected
    p, or median; every split is checked before any model is fitted),
    log-rank (R ``survdiff``) of high vs low, univariate Cox of the standardised feature (HR per SD)
    and of high vs low, and, when covariates are given, multivariate Cox of high vs low + covariates,
    each with a Schoenfeld proportional-hazards check. Returns (survival table, Cox table, groups).

    Which numbers to use: ``p`` (and its BH ``fdr``) is the primary p-value, the corrected cut-point p
    for maxstat (Hothorn & Lausen 2003; the cut-point was chosen to minimise the log-rank p, so the
    plain ``logrank_p`` at that split is anti-conservative) and the log-rank p for the pre-specified
    median split. Effect sizes are the HRs per SD of the continuous score (``hr_per_sd``), which do
    not depend on a chosen split; the high/low HRs of the Cox table (``*_group`` models) and the
    log-rank p of a maxstat split are descriptive of the optimised split (``split`` says which).
    """
    rows, cox_rows, groups, cuts = [], [], {}, {}
    samples = surv.index.intersection(features.index)
    surv = surv.loc[samples]
    for feature in features.columns:  # all cut-points first: a degenerate split fails before any model is fitted
        x = features.loc[samples, feature].dropna()
        s = surv.loc[x.index]
        if params["cutpoint_method"] == "maxstat":
            cut = maxstat_cutpoint(
                x.to_numpy(), s["time"].to_numpy(), s["event"].to_numpy(), params["cutpoint_min_prop"],
                n_perm=params["cutpoint_permutations"], seed=params["seed"],
            )
        else:
            cut = median_cutpoint(x.to_numpy(), s["time"].to_numpy(), s["event"].to_numpy())
        high = (x > cut.cutpoint).astype(float)
        if not np.isfinite(cut.cutpoint) or high.sum() == 0 or high.sum() == len(high):
            raise TmeflowInputError(
                f"feature {feature}, endpoint {endpoint}: all {len(x)} samples fall in one cut-point group "
                "(constant or heavily tied values); remove it or change cutpoint_method/cutpoint_min_prop"
            )
        cuts[feature] = cut
        groups[feature] = high.map({1.0: "high", 0.0: "low"})
    for feature in features.columns:
        x = features.loc[samples, feature].dropna()
        s = surv.loc[x.index]
        cut = cuts[feature]
        high = (groups[feature] == "high").astype(float)
        lr = logrank_test(s["time"], s["event"], groups[feature])
        row = {
            "feature": feature, "endpoint": endpoint, "n": len(x), "events": int(s["event"].sum()),
            "cutpoint_method": cut.method, "cutpoint": cut.cutpoint, "cut_statistic": cut.statistic,
            "cut_p_corrected": cut.p_value if cut.method == "maxstat" else np.nan,
            "cut_p_method": cut.p_method, "cut_p_lau92": cut.p_lau92,
            "split": "optimised (maxstat)" if cut.method == "maxstat" else "median",
            "n_high": int(high.sum()), "n_low": int(len(high) - high.sum()),
            "logrank_chisq": lr.chisq, "logrank_p": lr.p,
            "observed_high": lr.table.loc["high", "observed"], "expected_high": lr.table.loc["high", "expected"],
            "observed_low": lr.table.loc["low", "observed"], "expected_low": lr.table.loc["low", "expected"],
        }
        data = s.copy()
        sd = x.std()
        data["score_per_sd"] = (x - x.mean()) / sd if sd > 0 else np.nan
        data["high"] = high
        models = [("univariate_continuous", ["score_per_sd"]), ("univariate_group", ["high"])]
        if covariates.shape[1]:
            data = data.join(covariates)
            models.append(("multivariate_group", ["high", *covariates.columns]))
        for model, terms in models:
            res = cox_regression(data, "time", "event", terms, ph_alpha=params["ph_alpha"], label=f"{feature} {endpoint} {model}")
            for term, trow in res.table.iterrows():
                cox_rows.append({
                    "feature": feature, "endpoint": endpoint, "model": model, "term": term,
                    "split": row["split"] if model.endswith("_group") else "continuous",
                    **trow.to_dict(), "concordance": res.concordance, "lr_statistic": res.lr_statistic,
                    "lr_df": res.lr_df, "lr_p": res.lr_p, "n": res.n, "events": res.events, "converged": res.converged,
                })
            if model == "univariate_continuous":
                row.update({"hr_per_sd": res.table.loc["score_per_sd", "hr"],
                            "hr_per_sd_lower": res.table.loc["score_per_sd", "hr_lower"],
                            "hr_per_sd_upper": res.table.loc["score_per_sd", "hr_upper"],
                            "hr_per_sd_p": res.table.loc["score_per_sd", "p"],
                            "ph_fail": bool(res.table["ph_fail"].any())})
        rows.append(row)
    table = pd.DataFrame(rows)
    primary = table["cut_p_corrected"].where(table["cutpoint_method"] == "maxstat", table["logrank_p"])
    table.insert(2, "p", primary)
    table.insert(3, "fdr", bh_fdr(primary))
    table["logrank_fdr"] = bh_fdr(table["logrank_p"])
    table["cut_fdr"] = bh_fdr(table["cut_p_corrected"])
    return table, pd.DataFrame(cox_rows), groups


# --------------------------------------------------------------------------------------------------
# Plots


def plot_km(ax, surv: pd.DataFrame, groups: pd.Series, title: str, p_text: str) -> None:
    """Kaplan-Meier curves of the high/low groups with numbers at risk (lifelines ``add_at_risk_counts``)."""
    from lifelines import KaplanMeierFitter
    from lifelines.plotting import add_at_risk_counts

    fitters = []
    for label, colour in (("low", "#1f77b4"), ("high", "#d62728")):
        mask = groups == label
        kmf = KaplanMeierFitter(label=f"{label} (n={int(mask.sum())})")
        kmf.fit(surv.loc[mask.index[mask], "time"], surv.loc[mask.index[mask], "event"])
        kmf.plot_survival_function(ax=ax, ci_show=False, show_censors=True, color=colour)
        fitters.append(kmf)
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("time")
    ax.set_ylabel("survival probability")
    ax.set_ylim(0, 1.05)
    ax.text(0.02, 0.04, p_text, transform=ax.transAxes, fontsize=8)
    add_at_risk_counts(*fitters, ax=ax, rows_to_show=["At risk"])


def forest_plot(table: pd.DataFrame, endpoint: str):
    """Forest plot of univariate hazard ratios per SD (95% CI) of every feature for one endpoint."""
    plt = pyplot()

    data = table.dropna(subset=["hr_per_sd"]).sort_values("hr_per_sd")
    fig, ax = plt.subplots(figsize=(6, 0.25 * len(data) + 1.2))
    y = np.arange(len(data))
    ax.errorbar(
        data["hr_per_sd"], y,
        xerr=[data["hr_per_sd"] - data["hr_per_sd_lower"], data["hr_per_sd_upper"] - data["hr_per_sd"]],
        fmt="o", color="black", ecolor="grey", capsize=2, markersize=3,
    )
    ax.axvline(1, color="red", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yticks(y)
    ax.set_yticklabels(data["feature"], fontsize=7)
    ax.set_xlabel(f"hazard ratio per SD ({endpoint}, univariate Cox, 95% CI)")
    return fig


def correlation_heatmap(table: pd.DataFrame):
    """Heatmap of Spearman rho (features x ESTIMATE scores); * marks FDR < 0.05."""
    plt = pyplot()

    rho = table.pivot(index="feature", columns="target", values="rho")
    rho = rho[[c for c in ESTIMATE_COLUMNS if c in rho.columns] + [c for c in rho.columns if c not in ESTIMATE_COLUMNS]]
    fdr = table.pivot(index="feature", columns="target", values="fdr").reindex_like(rho)
    fig, ax = plt.subplots(figsize=(1.2 * rho.shape[1] + 3, 0.25 * rho.shape[0] + 1.5))
    image = ax.imshow(rho.to_numpy(), cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto")
    ax.set_xticks(range(rho.shape[1]))
    ax.set_xticklabels(rho.columns, rotation=45, ha="right", fontsize=8)
    ax.set_yticks(range(rho.shape[0]))
    ax.set_yticklabels(rho.index, fontsize=7)
    for i in range(rho.shape[0]):
        for j in range(rho.shape[1]):
            if fdr.iat[i, j] < 0.05:
                ax.text(j, i, "*", ha="center", va="center", fontsize=8)
    fig.colorbar(image, ax=ax, label="Spearman rho")
    return fig


# --------------------------------------------------------------------------------------------------
# Stage


def _gene_sets(params: dict[str, Any], signatures: list[Path], genes: pd.Index, markers: dict[str, list[str]]):
    """All scored gene sets with their kind: necroptosis, Hallmark, user GMTs, reference markers."""
    species = params["bulk_species"]
    min_size = params["signature_min_size"]
    kinds: dict[str, str] = {}
    sets: dict[str, list[str]] = {}

    def add(new: dict[str, list[str]], kind: str, source: str, required: bool) -> None:
        """Keep the sets of ``new`` with enough genes in the matrix, tagged with ``kind``."""
        kept = filter_gene_sets(new, genes, min_size=min_size, source=source, required=required)
        for name, members in kept.items():
            sets[name] = members
            kinds[name] = kind

    bundled = read_bundled_gmt("necroptosis")
    add(map_gene_sets(bundled, "human", species), "necroptosis", "bundled necroptosis sets", False)
    if params["bulk_hallmark"]:
        add(map_gene_sets(read_bundled_gmt("hallmark"), "human", species), "hallmark", "bundled Hallmark", False)
    for path in signatures:
        add(read_gmt(path), "user_signature", str(path), True)
    if markers:
        add({f"REF_{t}": g for t, g in markers.items()}, "reference_signature", "reference markers", True)
    return sets, kinds


def read_cohort(expression: Path, clinical_path: Path, params: dict[str, Any]) -> SimpleNamespace:
    """Read and check a bulk cohort's inputs (sample matching, identifiers, values, endpoints and their
    event coding, covariates, node column, bulk_genes); every check runs before anything is written,
    and ``tmeflow run`` calls this for every bulk row before its first stage."""
    clin = read_clinical(clinical_path)
    raw = read_expression(expression, clin.index)
    clin = clin.loc[raw.columns]
    probe_map = read_probe_annotation(params["probe_annotation"]) if params.get("probe_annotation") else None
    id_type = detect_id_type(raw.index, params["bulk_id_type"], probe_map is not None)
    mapped, id_summary = map_identifiers(raw, id_type, params["bulk_species"], probe_map, expression)
    log_expr, linear = transform_values(mapped, params["bulk_values"], params["bulk_max_missing"], expression)

    endpoints = detect_endpoints(clin, params["survival_columns"], params["survival_endpoints"])
    survs = {name: survival_frame(clin, name, cols, clinical_path) for name, cols in endpoints.items()}
    covariates = covariate_matrix(clin, params["cox_covariates"], clinical_path)
    if params["node_column"] and params["node_column"] not in clin.columns:
        raise TmeflowInputError("node_column is not a clinical column", file=clinical_path, column=params["node_column"])
    node = node_status(clin[params["node_column"]], clinical_path) if params["node_column"] else None
    genes = [g.strip() for g in params["bulk_genes"].split(",") if g.strip()]
    missing = [g for g in genes if g not in log_expr.index]
    if missing:
        raise TmeflowInputError(f"gene(s) {', '.join(missing)} from bulk_genes not in the expression matrix", file=expression)
    return SimpleNamespace(clinical=clin, id_summary=id_summary, log_expr=log_expr, linear=linear, endpoints=endpoints,
                           survs=survs, covariates=covariates, node=node, genes=genes)


def run_bulk(
    expression: str | Path,
    clinical: str | Path,
    outdir: str | Path,
    params: dict[str, Any],
    *,
    reference: str | Path | None = None,
    signatures: list[str | Path] | None = None,
    sample: str,
    species: str | None = None,
) -> dict[str, Any]:
    """Read the cohort, compute every score and test, then write tables, plots and MultiQC content
    (probe IDs mapped with the ``probe_annotation`` parameter's table when set). ``species`` (the
    samplesheet row's) overrides the ``bulk_species`` parameter. Every file starts
    with ``<sample>.`` (the samplesheet row), so that several cohorts share ``bulk/``; the report
    shows each cohort as its own tables (MultiQC ids carry the name)."""
    expression, clinical_path, outdir = Path(expression), Path(clinical), Path(outdir)
    prefix = f"{sample}."
    cohort_id = slug(sample) or "cohort"
    signatures = [Path(s) for s in (signatures or [])]
    for path in signatures:
        if not path.is_file():
            raise TmeflowInputError("signature GMT not found", file=path)
    species = species or params["bulk_species"]
    params = {**params, "bulk_species": species}
    cohort = read_cohort(expression, clinical_path, params)
    clin, id_summary, log_expr, linear = cohort.clinical, cohort.id_summary, cohort.log_expr, cohort.linear
    endpoints, survs, covariates, node, genes = cohort.endpoints, cohort.survs, cohort.covariates, cohort.node, cohort.genes
    if not endpoints and node is None:
        logger.warning("no survival endpoint and no node_column: only scores and correlations are computed")

    profiles, markers, ref_species = None, {}, None
    if reference:

        with timed(logger, "reading reference and building the signature matrix"):
            adata = read_h5ad(reference, "reference h5ad")
            ref_species = species_of(adata)
            profiles = reference_profiles(adata, species, ref_species, reference)
            markers = marker_genes(profiles, params["reference_markers"], log_expr.index)

    # ---- scores
    with timed(logger, f"ssGSEA on {log_expr.shape[0]} genes x {log_expr.shape[1]} samples"):
        sets, kinds = _gene_sets(params, signatures, log_expr.index, markers)
        scores = ssgsea(log_expr, sets, alpha=params["ssgsea_alpha"], normalize=params["ssgsea_normalize"]).T
        estimate = estimate_scores(log_expr, species, params["ssgsea_alpha"], params["signature_min_size"])
    features = scores.copy()
    feature_kind = dict(kinds)
    for gene in genes:
        features[f"gene:{gene}"] = log_expr.loc[gene]
        feature_kind[f"gene:{gene}"] = "gene"
    for column in ESTIMATE_COLUMNS if estimate is not None else ():
        features[f"ESTIMATE:{column}"] = estimate[column]
        feature_kind[f"ESTIMATE:{column}"] = "estimate"
    fractions = fit = None
    if profiles is not None:
        fractions, fit = deconvolve_nnls(linear, profiles, markers)
        for column in fractions.columns:
            features[f"fraction:{column}"] = fractions[column]
            feature_kind[f"fraction:{column}"] = "fraction"
    features.index.name = "sample"

    # ---- survival and node status
    surv_tables, cox_tables, all_groups = [], [], {}
    for name, surv in survs.items():
        with timed(logger, f"survival {name}: {features.shape[1]} features, {len(surv)} samples, {int(surv['event'].sum())} events"):
            table, cox, groups = analyse_survival(features, surv, name, covariates, params)
        table.insert(1, "kind", table["feature"].map(feature_kind))
        surv_tables.append(table)
        cox_tables.append(cox)
        all_groups[name] = groups
    logistic_rows = []
    if node is not None:
        for feature in features.columns:
            data = pd.DataFrame({"node": node, "score_per_sd": features[feature]})
            data["score_per_sd"] = (data["score_per_sd"] - data["score_per_sd"].mean()) / data["score_per_sd"].std()
            for model, terms in (("univariate", ["score_per_sd"]),) + (
                (("multivariate", ["score_per_sd", *covariates.columns]),) if covariates.shape[1] else ()
            ):
                res = logistic_regression(data.join(covariates), "node", terms)
                for term, trow in res.table.iterrows():
                    logistic_rows.append({"feature": feature, "kind": feature_kind[feature], "model": model, "term": term,
                                          **trow.to_dict(), "n": res.n, "n_node_positive": res.n_positive})
    logistic = pd.DataFrame(logistic_rows)
    if len(logistic):
        focus = logistic["term"] == "score_per_sd"
        logistic["fdr"] = np.nan
        for model in logistic["model"].unique():
            sel = focus & (logistic["model"] == model)
            logistic.loc[sel, "fdr"] = bh_fdr(logistic.loc[sel, "p"])

    correlations = None
    if estimate is not None:
        corr_features = features[[c for c in features.columns if feature_kind[c] != "estimate"]]
        correlations = spearman_table(corr_features, estimate[list(ESTIMATE_COLUMNS)])

    # ---- outputs
    outdir.mkdir(parents=True, exist_ok=True)
    written = []
    written.append(write_table(scores.reset_index(), outdir / f"{prefix}bulk_scores.tsv"))
    written.append(write_table(features.reset_index(), outdir / f"{prefix}bulk_features.tsv"))
    gene_set_table = pd.DataFrame(
        [{"gene_set": n, "kind": kinds[n], "n_genes": len(g), "genes": ",".join(g)} for n, g in sets.items()]
    )
    written.append(write_table(gene_set_table, outdir / f"{prefix}bulk_gene_sets.tsv"))
    if fractions is not None:
        written.append(write_table(fractions.reset_index(), outdir / f"{prefix}bulk_deconvolution.tsv"))
        written.append(write_table(fit, outdir / f"{prefix}bulk_deconvolution_fit.tsv"))
        sig = profiles.loc[[g for g in dict.fromkeys(g for m in markers.values() for g in m)]]
        sig.index.name = "gene"
        written.append(write_table(sig.reset_index(), outdir / f"{prefix}bulk_signature_matrix.tsv"))
    if surv_tables:
        survival_table = pd.concat(surv_tables, ignore_index=True)
        cox_table = pd.concat(cox_tables, ignore_index=True)
        written.append(write_table(survival_table, outdir / f"{prefix}bulk_survival.tsv"))
        written.append(write_table(cox_table, outdir / f"{prefix}bulk_cox.tsv"))
        mqc = survival_table[["feature", "endpoint", "kind", "p", "fdr", "hr_per_sd", "hr_per_sd_p", "split",
                              "n_high", "n_low", "logrank_p", "ph_fail"]].copy()
        mqc.insert(0, "id", mqc["feature"] + " | " + mqc["endpoint"])
        mqc = mqc.drop(columns=["feature", "endpoint"]).sort_values(["p", "hr_per_sd_p"], kind="stable")
        p_values = ("p", "fdr", "logrank_p", "hr_per_sd_p")
        # MultiQC shows only the columns named in `headers`: every column, one dict each
        headers = {column: {"format": "{:.2g}", "scale": "RdYlGn", "min": 0, "max": 1} if column in p_values
                   else {"format": "{:.2f}"} if column == "hr_per_sd" else {} for column in mqc.columns[1:]}
        written.append(write_table(mqc, outdir / f"{prefix}bulk_survival_mqc.tsv", header_lines=multiqc_header(
            f"tmeflow_bulk_survival_{cohort_id}", f"Bulk cohort {sample}: survival",
            f"Per feature and endpoint, by primary p: p/fdr = {params['cutpoint_method']} high/low cut-point p "
            "(corrected for the cut-point search when maxstat); HR per SD of the continuous score (univariate Cox); "
            "logrank_p = plain log-rank p at the split (not corrected for an optimised split); "
            "ph_fail = Schoenfeld test p < ph_alpha.", "table",
            headers=headers, pconfig={"id": f"tmeflow_bulk_survival_{cohort_id}_table", "sort_rows": False})))
        with timed(logger, "survival plots"):
            written += _survival_plots(survival_table, survs, all_groups, feature_kind, outdir, prefix)
    if len(logistic):
        written.append(write_table(logistic, outdir / f"{prefix}bulk_logistic.tsv"))
    if estimate is not None:
        written.append(write_table(estimate.reset_index(), outdir / f"{prefix}bulk_estimate.tsv"))
        written.append(write_table(correlations, outdir / f"{prefix}bulk_estimate_correlation.tsv"))
        written.append(write_table(estimate.reset_index(), outdir / f"{prefix}bulk_estimate_mqc.tsv", header_lines=multiqc_header(
            f"tmeflow_bulk_estimate_{cohort_id}", f"Bulk cohort {sample}: ESTIMATE",
            "ESTIMATE stromal/immune scores (un-normalised ssGSEA; compare samples within the cohort). Tumour "
            "purity is not reported: its formula needs ESTIMATE's 10,412 common genes.", "table")))
        written.append(save_figure(correlation_heatmap(correlations), outdir / f"{prefix}bulk_estimate_correlation.png"))

    summary = {
        "version": __version__,
        "cohort": sample,
        "samples": int(features.shape[0]),
        "identifiers": id_summary,
        "bulk_values": params["bulk_values"],
        "bulk_species": species,
        "reference_species": ref_species,
        "gene_sets_scored": len(sets),
        "features": int(features.shape[1]),
        "endpoints": {name: {"time": cols[0], "event": cols[1], "n": int(len(survs[name])),
                             "events": int(survs[name]["event"].sum())} for name, cols in endpoints.items()},
        "cox_covariates": list(covariates.columns),
        "node_column": params["node_column"] or None,
        "methods": {
            "ssgsea": f"GSVA ssgsea definition, alpha={params['ssgsea_alpha']}, normalize={params['ssgsea_normalize']}",
            "cutpoint": (f"maxstat log-rank, min_prop={params['cutpoint_min_prop']}, p corrected by "
                         + (f"{params['cutpoint_permutations']} permutations (seed {params['seed']}); Lau92 also reported"
                            if params["cutpoint_permutations"] else "Lausen & Schumacher 1992 (Lau92)"))
            if params["cutpoint_method"] == "maxstat" else "median split",
            "cox": "lifelines CoxPHFitter, Efron ties; PH by Grambsch-Therneau test on scaled Schoenfeld residuals (km transform)",
            "deconvolution": "NNLS on mean-CPM signature matrix of reference marker genes" if profiles is not None else None,
        },
        "params": params,
    }
    written.append(write_json(summary, outdir / f"{prefix}bulk_summary.json"))
    logger.info("bulk: %d samples, %d features, %d endpoints; %d files written", features.shape[0], features.shape[1],
                len(endpoints), len(written))
    return summary


def _survival_plots(table: pd.DataFrame, survs: dict, groups: dict, kinds: dict, outdir: Path, prefix: str) -> list[Path]:
    """Per endpoint: a KM plot for every single gene, user signature and non-Hallmark feature with primary
    p < 0.05 (corrected cut-point p; log-rank p for median splits), a MultiQC KM grid (up to 4 features:
    non-Hallmark ones by primary p, then Hallmark ones) and a forest plot of all features (continuous HR
    per SD). Each KM panel names its split (optimised or median) and shows the primary p."""
    plt = pyplot()

    written = []
    for endpoint, surv in survs.items():
        sub = table[table["endpoint"] == endpoint]
        focus = sub[sub["kind"] != "hallmark"]

        def ptext(row) -> str:
            """Primary p (corrected cut-point p of an optimised split), continuous HR and the split used."""
            if row["cutpoint_method"] == "maxstat":
                return (f"optimised (maxstat) split: corrected p={row['p']:.2g} (naive log-rank p={row['logrank_p']:.2g}); "
                        f"HR/SD={row['hr_per_sd']:.2f}")
            return f"median split: log-rank p={row['p']:.2g}; HR/SD={row['hr_per_sd']:.2f}"

        single = focus[focus["kind"].isin(["gene", "user_signature"]) | (focus["p"] < 0.05)]
        for _, row in single.iterrows():
            fig, ax = plt.subplots(figsize=(5, 4.5))
            g = groups[endpoint][row["feature"]]
            plot_km(ax, surv.loc[g.index], g, f"{row['feature']} ({endpoint})", ptext(row))
            written.append(save_figure(fig, outdir / f"{prefix}bulk_km_{slug(endpoint)}_{slug(row['feature'])}.png"))
        rest = sub[sub["kind"] == "hallmark"]
        best = pd.concat([focus.sort_values(["p", "hr_per_sd_p"], na_position="last"),
                          rest.sort_values(["p", "hr_per_sd_p"], na_position="last")]).head(4)
        if len(best):
            ncol = min(2, len(best))
            nrow = int(np.ceil(len(best) / ncol))
            fig, axes = plt.subplots(nrow, ncol, figsize=(5 * ncol, 5 * nrow), squeeze=False)
            for ax, (_, row) in zip(axes.ravel(), best.iterrows()):
                g = groups[endpoint][row["feature"]]
                plot_km(ax, surv.loc[g.index], g, f"{row['feature']} ({endpoint})", ptext(row))
            for ax in axes.ravel()[len(best):]:
                ax.axis("off")
            fig.subplots_adjust(hspace=0.7, wspace=0.3)
            written.append(save_figure(fig, outdir / f"{prefix}bulk_km_{slug(endpoint)}_mqc.png"))
        written.append(save_figure(forest_plot(sub, endpoint), outdir / f"{prefix}bulk_forest_{slug(endpoint)}.png"))
    return written


def cli(args, params: dict[str, Any]) -> None:
    """Entry of ``tmeflow bulk`` (declared in :mod:`tmeflow.stages`)."""
    run_bulk(
        args.expression,
        args.clinical,
        args.outdir,
        params,
        reference=args.reference,
        signatures=args.signatures or [],
        sample=args.sample,
    )
