"""Deconvolution on real tissue: MSTI breast DCIS/IC section with the Wu 2021 CID4465 reference.

No spot labels ship with the section, so each method's proportion of a type is compared with the
reference-marker score of that type on the same spots (scanpy ``score_genes`` on the top 50 Wilcoxon
markers of the type in the reference), the simple baseline a method must agree with; the table reports
Spearman's rho per type and method, and the run time.

A second check uses the histology only: the fraction of strongly stained pixels under each spot
(:func:`tmeflow.spatial_qc.stained_fraction`) marks dense epithelium (ducts, tumour nests) against pale
stroma. Each map (the marker scores, the log UMI count, and each method's Cancer Epithelial and
epithelial = Cancer + Normal Epithelial proportion and abundance) gets Spearman's rho with that fraction
and the AUROC separating stained (>= 0.3) from pale (<= 0.1) spots. Maps of the same quantities are
drawn beside the H&E.

    python benchmarks/deconvolution_real.py [--methods nnls,poisson] [--outdir bench_work/deconv_real]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import scanpy as sc
import scipy.io
import scipy.sparse as sp
from scipy.stats import spearmanr
from sklearn.metrics import roc_auc_score

from tmeflow import deconvolve as dc
from tmeflow.readers import read_spatial
from tmeflow.spatial_qc import stained_fraction

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_reference() -> ad.AnnData:
    folder = SHARED / "wu2021_CID4465_scRNA"
    matrix = scipy.io.mmread(folder / "matrix.mtx.gz").T.tocsr().astype(np.float32)
    genes = pd.read_csv(folder / "features.tsv.gz", sep="\t", header=None)[0].astype(str)
    barcodes = pd.read_csv(folder / "barcodes.tsv.gz", sep="\t", header=None)[0].astype(str)
    meta = pd.read_csv(folder / "cell_metadata.csv.gz", index_col=0).reindex(barcodes)
    reference = ad.AnnData(
        matrix,
        obs=pd.DataFrame({"cell_type": pd.Categorical(meta["celltype_major"].astype(str))}, index=barcodes.to_numpy()),
        var=pd.DataFrame(index=genes.to_numpy()),
    )
    reference.var_names_make_unique()
    reference.layers["counts"] = reference.X.copy()
    return reference


def load_section() -> ad.AnnData:
    section = read_spatial(SHARED / "msti_breast_DCIS_IC_spatial", sample="MSTI")
    section.layers["counts"] = sp.csr_matrix(section.X).copy()
    return section


def marker_scores(section: ad.AnnData, reference: ad.AnnData, n_markers: int = 50) -> pd.DataFrame:
    ref = reference.copy()
    sc.pp.normalize_total(ref, target_sum=1e4)
    sc.pp.log1p(ref)
    sc.tl.rank_genes_groups(ref, "cell_type", method="wilcoxon", n_genes=n_markers)
    spots = section.copy()
    spots.X = sp.csr_matrix(spots.layers["counts"])
    sc.pp.normalize_total(spots, target_sum=1e4)
    sc.pp.log1p(spots)
    scores = {}
    for cell_type in ref.obs["cell_type"].cat.categories:
        markers = [g for g in ref.uns["rank_genes_groups"]["names"][cell_type] if g in spots.var_names]
        sc.tl.score_genes(spots, markers, score_name="score", random_state=0)
        scores[cell_type] = spots.obs["score"].to_numpy()
    return pd.DataFrame(scores, index=section.obs_names)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--methods", default="nnls")
    parser.add_argument("--outdir", default="bench_work/deconv_real")
    args = parser.parse_args()
    outdir = Path(args.outdir)
    outdir.mkdir(parents=True, exist_ok=True)
    reference, section = load_reference(), load_section()
    baseline = marker_scores(section, reference)
    stained = stained_fraction(section)
    umi = np.log1p(np.asarray(section.layers["counts"].sum(axis=1)).ravel())
    maps = {
        "H&E stained fraction": stained,
        "log UMI per spot": umi,
        "marker score: Cancer Epithelial": baseline["Cancer Epithelial"].to_numpy(),
        "marker score: Normal Epithelial": baseline["Normal Epithelial"].to_numpy(),
    }
    rows = []
    for method in args.methods.split(","):
        settings = dc.DeconvolutionSettings.defaults().replace(deconvolution_method=method, seed=0)
        started = time.perf_counter()
        abundance, proportions, _ = dc.deconvolve(section.copy(), reference, settings)
        seconds = time.perf_counter() - started
        for kind, table in (("proportion", proportions), ("abundance", abundance)):
            maps[f"{method} {kind}: Cancer Epithelial"] = table["Cancer Epithelial"].to_numpy()
            maps[f"{method} {kind}: epithelial"] = (table["Cancer Epithelial"] + table["Normal Epithelial"]).to_numpy()
        for cell_type in baseline.columns:
            if cell_type in proportions:
                rho = spearmanr(proportions[cell_type], baseline[cell_type]).statistic
                rows.append(
                    {
                        "method": method,
                        "cell_type": cell_type,
                        "spearman_vs_marker_score": round(float(rho), 3),
                        "mean_proportion": round(float(proportions[cell_type].mean()), 3),
                        "seconds": round(seconds, 1),
                    }
                )
    table = pd.DataFrame(rows)
    table.to_csv(outdir / "spearman_vs_marker_score.tsv", sep="\t", index=False)
    print(table.pivot(index="cell_type", columns="method", values="spearman_vs_marker_score").to_string())
    print(table.groupby("method")["seconds"].first().to_string())
    histology = histology_agreement(maps, stained)
    histology.to_csv(outdir / "histology_agreement.tsv", sep="\t")
    print(histology.to_string())
    plot_maps(section, maps, outdir / "cancer_epithelial_maps.png")


def histology_agreement(maps: dict[str, np.ndarray], stained: np.ndarray) -> pd.DataFrame:
    """Spearman's rho of each map with the stained fraction, and the AUROC of stained vs pale spots."""
    epithelium, stroma = stained >= 0.3, stained <= 0.1
    keep = epithelium | stroma
    rows = {
        name: {
            "spearman_vs_stained_fraction": spearmanr(values, stained).statistic,
            "auroc_stained_vs_pale": roc_auc_score(epithelium[keep], np.asarray(values)[keep]),
        }
        for name, values in maps.items()
        if name != "H&E stained fraction"
    }
    table = pd.DataFrame(rows).T.round(3)
    print(f"{epithelium.sum()} stained and {stroma.sum()} pale spots")
    return table


def plot_maps(section: ad.AnnData, maps: dict[str, np.ndarray], path: Path) -> None:
    """The H&E and every map of ``maps`` over it, one panel each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    library = next(iter(section.uns["spatial"]))
    image = section.uns["spatial"][library]["images"]["lowres"]
    scale = section.uns["spatial"][library]["scalefactors"]["tissue_lowres_scalef"]
    xy = section.obsm["spatial"] * scale
    ncols = 4
    nrows = -(-(1 + len(maps)) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(4.6 * ncols, 4.4 * nrows))
    axes = axes.ravel()
    axes[0].imshow(image)
    axes[0].set_title("H&E (low-res)", fontsize=9)
    for ax, (title, values) in zip(axes[1:], maps.items(), strict=False):
        ax.imshow(image, alpha=0.25)
        points = ax.scatter(
            xy[:, 0],
            xy[:, 1],
            c=np.asarray(values),
            s=9,
            cmap="viridis",
            marker="s",
            linewidths=0,
            vmax=np.percentile(values, 99),
        )
        fig.colorbar(points, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=60)


if __name__ == "__main__":
    main()
