"""Per-sample report content that scales to a cohort: native MultiQC plots, and per-sample figures as links.

Method
------
Two PNGs per sample inline do not survive a 100-sample cohort (200 images, tens of MB). ``tmeflow report``
therefore derives, from the per-cell and per-spot tables the stages already write, MultiQC custom content
whose size grows by a few numbers per sample:

- **cells kept and removed by reason** per sample (stacked bar graph), from ``<sample>.qc_cells.tsv.gz``
  (``qc_fail_reason``: the first filter each cell failed, ``doublet`` for Scrublet calls);
- **distributions of total counts, detected genes and % mitochondrial counts** per sample, over every cell
  before filtering (one MultiQC box plot with a tab per metric). The page holds each box's summary, not
  every cell: quartiles, mean and Tukey's whiskers (the most extreme values within 1.5 IQR of the
  quartiles; Tukey 1977, *Exploratory Data Analysis*), which MultiQC draws as ``min``/``max``;
- **doublet rate** per sample (bar graph: Scrublet calls among the cells scored, Wolock et al. 2019);
- **spots under tissue kept and removed by reason** per section, and their distributions, from
  ``<section>.spatial_spots.tsv.gz``;
- **general statistics**: % malignant cells and the dominant cell type per sample, from the CNV stage's
  ``cnv_cells.tsv.gz`` (final cell types and malignant calls of every atlas cell).

Per-sample figures (``<sample>.<kind>.png``: QC violins and scatters, spatial maps ...) and per-patient
ones (CNV heatmaps) stay inline while a section has at most :data:`INLINE_SAMPLE_LIMIT` samples
(patients). Above it they are written, report-sized, into
``<report name>_figures/`` next to the report, and the section shows one table of links (a row per sample,
a column per figure kind) instead of the images.
"""

from __future__ import annotations

import gzip
import html
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from . import io
from .errors import TmeflowInputError
from .text import natural_key

# Per-sample figures of a section are embedded while it has at most this many samples; above, linked.
INLINE_SAMPLE_LIMIT = 12

QC_CELLS_SUFFIX = ".qc_cells.tsv.gz"
SPATIAL_SPOTS_SUFFIX = ".spatial_spots.tsv.gz"
CNV_CELLS_FILE = "cnv_cells.tsv.gz"
DATA_PATTERNS = (f"*{QC_CELLS_SUFFIX}", f"*{SPATIAL_SPOTS_SUFFIX}", CNV_CELLS_FILE)

# metric column -> tab label of the distribution box plots
CELL_METRICS = {
    "total_counts": "Total counts",
    "n_genes_by_counts": "Detected genes",
    "pct_counts_mito": "% mitochondrial",
}
KEPT = "kept"
# Bar colours: kept cells green, each filter its own colour (stable across reports).
REASON_COLOURS = {
    KEPT: "#2ca02c",
    "min_genes": "#ff7f0e",
    "min_counts": "#d62728",
    "max_pct_mito": "#9467bd",
    "mad_counts": "#d62728",
    "mad_genes": "#ff7f0e",
    "mad_mito": "#9467bd",
    "max_pct_hb": "#8c564b",
    "doublet": "#e377c2",
    "spatial_min_counts": "#d62728",
    "spatial_min_genes": "#ff7f0e",
    "spatial_max_pct_mito": "#9467bd",
}


def sample_of(path: Path, suffix: str) -> str:
    """Return the sample name of a per-sample file named ``<sample><suffix>``."""
    return path.name.removesuffix(suffix)


def read_per_sample(paths: list[Path], suffix: str, columns: list[str]) -> dict[str, pd.DataFrame]:
    """Read per-cell (per-spot) tables by sample.

    ``{sample: table}`` of per-cell (per-spot) tables named ``<sample><suffix>``, in natural order of the
    sample names (the order of the bars and boxes: ``P2`` before ``P10``).
    """
    tables: dict[str, pd.DataFrame] = {}
    for path in paths:
        try:
            table = pd.read_csv(path, sep="\t", keep_default_na=False, na_values=[""], low_memory=False)
        except (OSError, EOFError, gzip.BadGzipFile, pd.errors.ParserError, UnicodeDecodeError) as error:
            raise TmeflowInputError(f"{path}: not a readable table ({error})") from None
        except pd.errors.EmptyDataError:
            continue  # a Nextflow stub's empty file: nothing to report
        missing = [column for column in columns if column not in table.columns]
        if missing:
            raise TmeflowInputError(f"{path}: missing column(s) {', '.join(missing)}")
        table["qc_fail_reason"] = table["qc_fail_reason"].fillna("") if "qc_fail_reason" in table else ""
        tables[sample_of(path, suffix)] = table
    return {sample: tables[sample] for sample in sorted(tables, key=natural_key)}


def box_summary(values) -> dict[str, float]:
    """Summarise values as a box.

    Quartiles, mean and Tukey's whiskers (most extreme values within 1.5 IQR of the quartiles), as
    MultiQC's pre-computed box statistics (``min``/``max`` are drawn as the whiskers).
    """
    values = np.asarray(values, dtype=float)
    values = values[np.isfinite(values)]
    if not len(values):
        return {}
    q1, median, q3 = np.quantile(values, [0.25, 0.5, 0.75])
    iqr = q3 - q1
    inside = values[(values >= q1 - 1.5 * iqr) & (values <= q3 + 1.5 * iqr)]
    return {
        key: round(float(value), 4)
        for key, value in {
            "min": inside.min(),
            "q1": q1,
            "median": median,
            "q3": q3,
            "max": inside.max(),
            "mean": values.mean(),
        }.items()
    }


def reason_counts(tables: dict[str, pd.DataFrame], order: list[str]) -> pd.DataFrame:
    """Cells (spots) per sample: kept, then removed by each reason (first failed filter), in ``order``."""
    counts = (
        pd.DataFrame(
            {sample: table["qc_fail_reason"].replace("", KEPT).value_counts() for sample, table in tables.items()}
        )
        .T.fillna(0)
        .astype(int)
    )
    counts = counts.reindex(
        columns=[KEPT] + [r for r in order if r in counts.columns] + sorted(set(counts.columns) - {KEPT} - set(order)),
        fill_value=0,
    )
    counts.index.name = "Sample"
    return counts


def write_html_content(target: Path, header: dict[str, Any], body: str) -> Path:
    """Write an HTML custom-content file: its MultiQC config as YAML in a leading comment."""
    return io.write_text(f"<!--\n{yaml.safe_dump(header, sort_keys=False, width=10**6)}-->\n{body}\n", target)


def write_bargraph(
    counts: pd.DataFrame,
    path: Path,
    parent: dict[str, str],
    *,
    section_id: str,
    name: str,
    description: str,
    ylab: str,
    percentages: bool = True,
) -> Path:
    """Write a stacked bar graph (one bar per sample, a category per column) as a MultiQC ``*_mqc.tsv``."""
    header = io.multiqc_header(
        section_id,
        name,
        description,
        "bargraph",
        **parent,
        pconfig={
            "id": f"{section_id}_plot",
            "title": name,
            "ylab": ylab,
            "cpswitch_c_active": not percentages,
            "sort_samples": False,
        },
        categories={
            column: {"name": column, **({"color": REASON_COLOURS[column]} if column in REASON_COLOURS else {})}
            for column in counts.columns
        },
    )
    return io.write_table(counts, path, index=True, header_lines=header)


def write_boxplot(
    tables: dict[str, pd.DataFrame],
    metrics: dict[str, str],
    path: Path,
    parent: dict[str, str],
    *,
    section_id: str,
    name: str,
    description: str,
) -> Path:
    """Write a MultiQC box plot of per-sample distributions.

    A MultiQC box plot (``*_mqc.yaml``) of per-sample distributions, a tab per metric, from each box's
    summary (:func:`box_summary`).
    """
    data = [{sample: box_summary(table[column]) for sample, table in tables.items()} for column in metrics]
    content = {
        "id": section_id,
        "section_name": name,
        "description": description,
        "plot_type": "box",
        **parent,
        "pconfig": {
            "id": f"{section_id}_plot",
            "title": name,
            "data_labels": list(metrics.values()),
            "sort_samples": False,
        },
        "data": data,
    }
    return io.write_text(yaml.safe_dump(content, sort_keys=False, width=10**6), path)


def write_general_stats(
    stats: pd.DataFrame, path: Path, *, section_id: str, name: str, description: str, columns: dict[str, dict[str, Any]]
) -> Path:
    """Write per-sample values as MultiQC general statistics."""
    header = io.multiqc_header(
        section_id, name, description, "generalstats", pconfig=[{column: config} for column, config in columns.items()]
    )
    return io.write_table(stats, path, index=True, header_lines=header)


def malignant_and_dominant(cells: pd.DataFrame) -> pd.DataFrame:
    """Per sample: % of cells called malignant and the most frequent cell type (ties: first by name)."""
    if "sample" not in cells.columns or "cell_type" not in cells.columns:
        raise TmeflowInputError(f"{CNV_CELLS_FILE}: needs 'sample' and 'cell_type' columns")
    samples = cells["sample"].astype(str)
    table = pd.DataFrame(index=pd.Index(sorted(samples.unique()), name="Sample"))
    if "malignant" in cells.columns:
        malignant = cells["malignant"].astype(str).str.lower().isin(["true", "1"])
        table["pct_malignant"] = (100.0 * malignant.groupby(samples).mean()).round(2)
    counts = cells.groupby([samples, cells["cell_type"].astype(str)]).size().unstack(fill_value=0)
    counts = counts[sorted(counts.columns)]
    table["dominant_cell_type"] = counts.idxmax(axis=1)
    table["pct_dominant"] = (100.0 * counts.max(axis=1) / counts.sum(axis=1)).round(2)
    return table


def stage_cell_qc(paths: list[Path], parent: dict[str, str], staging: Path) -> list[Path]:
    """Bar graph of cells kept/removed by reason, doublet rates and the QC distributions per sample."""
    tables = read_per_sample(paths, QC_CELLS_SUFFIX, ["qc_fail_reason", *CELL_METRICS])
    if not tables:
        return []
    order = ["min_genes", "min_counts", "max_pct_mito", "mad_counts", "mad_genes", "mad_mito", "max_pct_hb", "doublet"]
    staged = [
        write_bargraph(
            reason_counts(tables, order),
            staging / "tmeflow_qc_cells_by_reason_mqc.tsv",
            parent,
            section_id="tmeflow_qc_cells_by_reason",
            name="Cells kept and removed per sample",
            description="Cells of each sample kept by QC, and removed by the first filter each failed (doublet: "
            "Scrublet call).",
            ylab="Cells",
        )
    ]
    scored = {sample: table for sample, table in tables.items() if "doublet_score" in table}
    if scored:
        rates = pd.DataFrame(
            {
                "doublets": {
                    sample: round(
                        100.0
                        * (table["qc_fail_reason"] == "doublet").sum()
                        / max(1, table["doublet_score"].notna().sum()),
                        3,
                    )
                    for sample, table in scored.items()
                }
            }
        )
        rates.index.name = "Sample"
        staged.append(
            write_bargraph(
                rates,
                staging / "tmeflow_qc_doublet_rate_mqc.tsv",
                parent,
                section_id="tmeflow_qc_doublet_rate",
                name="Doublet rate per sample",
                ylab="% of cells scored",
                description="Scrublet doublet calls as a percentage of the cells that passed the other filters and "
                "were scored.",
                percentages=False,
            )
        )
    staged.append(
        write_boxplot(
            tables,
            CELL_METRICS,
            staging / "tmeflow_qc_distributions_mqc.yaml",
            parent,
            section_id="tmeflow_qc_distributions",
            name="QC metrics per sample",
            description="Every cell before filtering: boxes are quartiles, whiskers the most extreme cells within "
            "1.5 IQR (Tukey).",
        )
    )
    return staged


def stage_spatial_qc(paths: list[Path], parent: dict[str, str], staging: Path) -> list[Path]:
    """Bar graph of spots under tissue kept/removed by reason per section, and their distributions."""
    tables = read_per_sample(paths, SPATIAL_SPOTS_SUFFIX, ["qc_fail_reason", "in_tissue", *CELL_METRICS])
    tables = {sample: table[table["in_tissue"] == 1] for sample, table in tables.items()}
    tables = {sample: table for sample, table in tables.items() if len(table)}
    if not tables:
        return []
    order = ["spatial_min_counts", "spatial_min_genes", "spatial_max_pct_mito"]
    return [
        write_bargraph(
            reason_counts(tables, order),
            staging / "tmeflow_spatial_spots_by_reason_mqc.tsv",
            parent,
            section_id="tmeflow_spatial_spots_by_reason",
            name="Spots kept and removed per section",
            description="Spots under tissue of each section kept by QC, and removed by the first filter each failed.",
            ylab="Spots",
        ),
        write_boxplot(
            tables,
            CELL_METRICS,
            staging / "tmeflow_spatial_distributions_mqc.yaml",
            parent,
            section_id="tmeflow_spatial_distributions",
            name="Spot QC metrics per section",
            description="Every spot under tissue before filtering: boxes are quartiles, whiskers the most "
            "extreme spots within 1.5 IQR (Tukey).",
        ),
    ]


def stage_cell_types(paths: list[Path], staging: Path) -> list[Path]:
    """General-statistics columns: % malignant cells and dominant cell type per sample."""
    frames = []
    for path in paths:
        try:
            frames.append(pd.read_csv(path, sep="\t", usecols=lambda c: c in {"sample", "cell_type", "malignant"}))
        except pd.errors.EmptyDataError:
            continue
        except (OSError, EOFError, gzip.BadGzipFile, pd.errors.ParserError, UnicodeDecodeError, ValueError) as error:
            raise TmeflowInputError(f"{path}: not a readable table ({error})") from None
    if not frames:
        return []
    table = malignant_and_dominant(pd.concat(frames, ignore_index=True))
    columns: dict[str, dict[str, Any]] = {
        "pct_malignant": {"title": "% malignant", "max": 100, "suffix": "%", "scale": "Reds"},
        "dominant_cell_type": {"title": "Dominant cell type"},
        "pct_dominant": {"title": "% dominant", "max": 100, "suffix": "%", "hidden": True},
    }
    return [
        write_general_stats(
            table,
            staging / "tmeflow_cell_types_general_stats_mqc.tsv",
            section_id="tmeflow_cell_type_general_stats",
            name="Cell types",
            description="Malignant cells (CNV calls) and the most frequent cell type per sample (tmeflow cnv).",
            columns={c: v for c, v in columns.items() if c in table.columns},
        )
    ]


# ----------------------------------------------------------------------------------------------
# Per-sample figures: inline for a few samples, linked files for a cohort
# ----------------------------------------------------------------------------------------------
# Figures of one patient each (pattern -> file-name prefix before the patient), besides the per-sample
# (per-section) ``<sample>.<kind>.png`` ones.
PER_PATIENT_FIGURES = {"cnv_heatmap_*.png": "cnv_heatmap_"}


def figure_entity(figure) -> tuple[str, str] | None:
    """``(sample or patient, figure kind)`` of a per-sample or per-patient figure; None for a cohort figure."""
    stem = figure.path.stem
    if figure.pattern.startswith("*."):
        sample, _, kind = stem.partition(".")
        return sample, kind
    if prefix := PER_PATIENT_FIGURES.get(figure.pattern):
        return stem.removeprefix(prefix), prefix.rstrip("_")
    return None


def _entity(figure) -> tuple[str, str]:
    """Return :func:`figure_entity` of a figure known to be per-sample or per-patient."""
    entity = figure_entity(figure)
    if entity is None:
        raise ValueError(f"{figure.path.name} is not a per-sample or per-patient figure")
    return entity


def figures_to_link(figures: list, limit: int | None = None) -> dict[str, list]:
    """Choose the per-sample figures to link rather than embed.

    ``{section id: [figure, ...]}`` of the per-sample (per-patient) figures of sections with more than
    ``limit`` (default :data:`INLINE_SAMPLE_LIMIT`) samples (patients).
    """
    limit = INLINE_SAMPLE_LIMIT if limit is None else limit
    by_section: dict[str, list] = defaultdict(list)
    for figure in figures:
        if figure.path.suffix == ".png" and figure_entity(figure):
            by_section[figure.section.id].append(figure)
    return {
        section_id: items
        for section_id, items in by_section.items()
        if len({_entity(item)[0] for item in items}) > limit
    }


def link_figures(
    figures: list, section_id: str, parent: dict[str, str], folder: Path, staging: Path, image: Callable[[Path], bytes]
) -> Path:
    """Write linked figures and their HTML section.

    Write each figure (report-sized by ``image``) into ``folder`` and one HTML section of links: a row per
    sample, a column per figure kind.
    """
    folder.mkdir(parents=True, exist_ok=True)
    links: dict[str, dict[str, str]] = defaultdict(dict)
    kinds: dict[str, str] = {}
    for figure in figures:
        sample, kind = _entity(figure)
        target = folder / figure.path.name
        with io.atomic_path(target) as tmp:
            tmp.write_bytes(image(figure.path))
        links[sample][kind] = f"{folder.name}/{figure.path.name}"
        kinds.setdefault(kind, figure.caption)
    head = "".join(
        f'<th title="{html.escape(caption)}">{html.escape(kind.replace("_", " "))}</th>'
        for kind, caption in kinds.items()
    )
    rows = "".join(
        f"<tr><td>{html.escape(sample)}</td>"
        + "".join(
            f'<td><a href="{html.escape(links[sample][kind])}" target="_blank">'
            f"{html.escape(kind.replace('_', ' '))}</a></td>"
            if kind in links[sample]
            else "<td></td>"
            for kind in kinds
        )
        + "</tr>"
        for sample in sorted(links, key=natural_key)
    )
    captions = "".join(
        f"<li><b>{html.escape(kind.replace('_', ' '))}</b>: {html.escape(caption)}</li>"
        for kind, caption in kinds.items()
    )
    label = "Patient" if any(figure.pattern in PER_PATIENT_FIGURES for figure in figures) else "Sample"
    body = (
        f"<ul>{captions}</ul>"
        f'<table class="table table-sm table-hover"><thead><tr><th>{label}</th>{head}</tr></thead>'
        f"<tbody>{rows}</tbody></table>"
    )
    header = {
        "id": f"{section_id}_figure_links",
        "section_name": f"Figures per {label.lower()}",
        "description": (
            f"{len(links)} {label.lower()}s: more than {INLINE_SAMPLE_LIMIT}, so their figures are files in "
            f"<code>{html.escape(folder.name)}/</code> next to this report, not images in the page."
        ),
        **parent,
    }
    return write_html_content(staging / f"{section_id}_figure_links_mqc.html", header, body)
