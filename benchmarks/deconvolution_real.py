"""Deconvolution on real tissue: MSTI breast DCIS/IC section with the Wu 2021 CID4465 reference.

No spot labels ship with the section, so each method's proportion of a type is compared with the
reference-marker score of that type on the same spots (scanpy ``score_genes`` on the top 50 Wilcoxon
markers of the type in the reference), the simple baseline a method must agree with; the table reports
Spearman's rho per type and method, and the run time. Also writes maps of the Cancer Epithelial
proportion per method beside the H&E.

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

from tmeflow import deconvolve as dc
from tmeflow.params import defaults
from tmeflow.readers import read_spatial

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def load_reference() -> ad.AnnData:
    folder = SHARED / "wu2021_CID4465_scRNA"
    matrix = scipy.io.mmread(folder / "matrix.mtx.gz").T.tocsr().astype(np.float32)
    genes = pd.read_csv(folder / "features.tsv.gz", sep="\t", header=None)[0].astype(str)
    barcodes = pd.read_csv(folder / "barcodes.tsv.gz", sep="\t", header=None)[0].astype(str)
    meta = pd.read_csv(folder / "cell_metadata.csv.gz", index_col=0).reindex(barcodes)
    reference = ad.AnnData(matrix, obs=pd.DataFrame({"cell_type": pd.Categorical(meta["celltype_major"].astype(str))},
                                                    index=barcodes.to_numpy()), var=pd.DataFrame(index=genes.to_numpy()))
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
    rows, maps = [], {}
    for method in args.methods.split(","):
        params = {**defaults(), "deconvolution_method": method, "seed": 0}
        started = time.perf_counter()
        _, proportions, _ = dc.deconvolve(section.copy(), reference, params)
        seconds = time.perf_counter() - started
        maps[method] = proportions
        for cell_type in baseline.columns:
            if cell_type in proportions:
                rho = spearmanr(proportions[cell_type], baseline[cell_type]).statistic
                rows.append({"method": method, "cell_type": cell_type, "spearman_vs_marker_score": round(float(rho), 3),
                             "mean_proportion": round(float(proportions[cell_type].mean()), 3), "seconds": round(seconds, 1)})
    table = pd.DataFrame(rows)
    table.to_csv(outdir / "spearman_vs_marker_score.tsv", sep="\t", index=False)
    print(table.pivot(index="cell_type", columns="method", values="spearman_vs_marker_score").to_string())
    print(table.groupby("method")["seconds"].first().to_string())
    plot_maps(section, baseline["Cancer Epithelial"], maps, outdir / "cancer_epithelial_maps.png")


def plot_maps(section: ad.AnnData, score: pd.Series, maps: dict[str, pd.DataFrame], path: Path) -> None:
    """H&E, the Cancer Epithelial marker score, and each method's Cancer and Normal Epithelial proportions."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    library = next(iter(section.uns["spatial"]))
    image = section.uns["spatial"][library]["images"]["lowres"]
    scale = section.uns["spatial"][library]["scalefactors"]["tissue_lowres_scalef"]
    xy = section.obsm["spatial"] * scale
    panels = {"Cancer Epithelial marker score": score}
    for method, proportions in maps.items():
        panels[f"{method}: Cancer Epithelial"] = proportions["Cancer Epithelial"]
        panels[f"{method}: Normal Epithelial"] = proportions["Normal Epithelial"]
    ncols = 3
    nrows = -(-(1 + len(panels)) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(5.2 * ncols, 5.0 * nrows))
    axes = axes.ravel()
    axes[0].imshow(image)
    axes[0].set_title("H&E (low-res)", fontsize=9)
    for ax, (title, values) in zip(axes[1:], panels.items()):
        ax.imshow(image, alpha=0.25)
        points = ax.scatter(xy[:, 0], xy[:, 1], c=np.asarray(values), s=14, cmap="viridis", marker="s", linewidths=0)
        fig.colorbar(points, ax=ax, fraction=0.046, pad=0.02)
        ax.set_title(title, fontsize=9)
    for ax in axes:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(path, dpi=72)


if __name__ == "__main__":
    main()
