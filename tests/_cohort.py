"""A small simulated cohort (strong batch effect), QC'd and integrated once per test session.

Shared by test_integrate, test_annotate and test_subcluster through the session's base temp folder.
"""

from __future__ import annotations

from pathlib import Path

import anndata as ad
import pandas as pd

N_CELLS = 1800
BATCH_EFFECT = 0.4  # log-scale SD of the gene-wise batch factors: batches separate completely before correction


def qc_params():
    from tmeflow.params import defaults

    params = defaults()
    params["doublet_method"] = "none"
    return params


def qc_cohort(root: Path) -> list[Path]:
    """Simulate and QC; returns the <sample>.qc.h5ad paths."""
    from tmeflow.qc import QcSettings, qc_sample
    from tmeflow.simulate import SimConfig, run_simulate

    done = root / "qc" / "done"
    if not done.exists():
        run_simulate(
            SimConfig(
                outdir=root / "sim",
                n_cells=N_CELLS,
                n_patients=2,
                seed=1,
                batch_effect=BATCH_EFFECT,
                n_sections=0,
                n_bulk=0,
            )
        )
        sheet = pd.read_csv(root / "sim" / "samplesheet.csv")
        for row in sheet.itertuples():
            meta = {k: getattr(row, k) for k in ("sample", "patient", "condition", "tissue", "species", "batch")}
            kept, _ = qc_sample(ad.read_h5ad(root / "sim" / row.data), meta, QcSettings.from_params(qc_params()))
            (root / "qc").mkdir(parents=True, exist_ok=True)
            kept.write_h5ad(root / "qc" / f"{row.sample}.qc.h5ad")
        done.touch()
    return sorted((root / "qc").glob("*.qc.h5ad"))


def integrated(tmp_path_factory) -> Path:
    """``integrated.h5ad`` of the cohort (Harmony on batch, metrics with the true labels)."""
    from tmeflow.integrate import run_integrate

    root = tmp_path_factory.getbasetemp() / "tmeflow_cohort"
    out = root / "integrate"
    if not (out / "integrated.h5ad").exists():
        params = qc_params()
        params["metrics_label_key"] = "true_cell_type"
        run_integrate(qc_cohort(root), out, params)
    return out / "integrated.h5ad"


def annotated(tmp_path_factory) -> Path:
    from tmeflow.annotate import run_annotate

    out = tmp_path_factory.getbasetemp() / "tmeflow_cohort" / "annotate"
    if not (out / "annotated.h5ad").exists():
        run_annotate(integrated(tmp_path_factory), out, qc_params())
    return out / "annotated.h5ad"


# The simulator's types vs tmeflow's major types (malignant cells are epithelial; myeloid = mono/mac + DC).
SIM_TO_MAJOR = {"malignant": "epithelial"}
MAJOR_TO_SIM = {"monocyte/macrophage": "myeloid", "DC": "myeloid"}


def cid4465_annotated(tmp_path_factory, shared_data) -> Path:
    """CID4465 (Wu et al. 2021) read, QC'd without filters (the authors' cells), integrated, annotated."""
    from tmeflow.annotate import run_annotate
    from tmeflow.integrate import run_integrate
    from tmeflow.qc import QcSettings, qc_sample
    from tmeflow.readers import read_counts

    root = tmp_path_factory.getbasetemp() / "tmeflow_cid4465"
    out = root / "ann" / "annotated.h5ad"
    if not out.exists():
        params = qc_params()
        params.update(min_genes=0, min_counts=0, max_pct_mito=100, max_pct_hb=100)
        raw = read_counts(shared_data / "wu2021_CID4465_scRNA", sample="CID4465")
        meta = {
            "sample": "CID4465",
            "patient": "CID4465",
            "condition": "primary",
            "tissue": "breast",
            "species": "human",
            "batch": "b1",
        }
        kept, _ = qc_sample(raw, meta, QcSettings.from_params(params))
        root.mkdir(parents=True, exist_ok=True)
        kept.write_h5ad(root / "CID4465.qc.h5ad")
        run_integrate([root / "CID4465.qc.h5ad"], root / "int", params)
        run_annotate(root / "int" / "integrated.h5ad", root / "ann", params)
    return out


def atlas_from_simulation(sim_dir: Path, *, with_malignant: bool = False) -> ad.AnnData:
    """An atlas straight from simulated samples (no pipeline): raw counts in ``layers['counts']``,
    log1p CP10k in ``X``, ``cell_type`` = ``true_cell_type`` (malignant epithelium is "malignant")
    and, with ``with_malignant``, ``malignant`` = ``true_malignant``.
    """
    import numpy as np
    import scipy.sparse as sp

    parts = [ad.read_h5ad(path) for path in sorted((Path(sim_dir) / "sc").glob("*.h5ad"))]
    atlas = ad.concat(parts, merge="same", index_unique="-")
    atlas.obs["cell_type"] = atlas.obs["true_cell_type"].astype(str).astype("category")
    if with_malignant:
        atlas.obs["malignant"] = atlas.obs["true_malignant"].astype(bool)
    counts = sp.csr_matrix(atlas.X, dtype=np.float32)
    atlas.layers["counts"] = counts.copy()
    normalised = sp.diags(1e4 / np.maximum(np.asarray(counts.sum(axis=1)).ravel(), 1)) @ counts
    normalised.data = np.log1p(normalised.data)
    atlas.X = sp.csr_matrix(normalised, dtype=np.float32)
    return atlas


MSTI_SAMPLE = "LBC_DCIS_IC"


def msti_and_cid4465_reference(shared_data: Path, out: Path) -> tuple[Path, Path]:
    """The MSTI DCIS section through ``tmeflow spatial_qc`` and the Wu 2021 CID4465 reference (counts,
    ``cell_type`` = the authors' major types) written to ``out``: (section h5ad, reference h5ad).
    """
    from tmeflow.cli import main
    from tmeflow.readers import read_counts

    out.mkdir(parents=True, exist_ok=True)
    reference_dir = shared_data / "wu2021_CID4465_scRNA"
    reference = read_counts(reference_dir, sample="CID4465")
    metadata = pd.read_csv(reference_dir / "cell_metadata.csv.gz", index_col=0)
    reference.obs["cell_type"] = metadata.loc[reference.obs_names, "celltype_major"].astype(str).to_numpy()
    reference.layers["counts"] = reference.X.copy()
    reference.write_h5ad(out / "wu2021_reference.h5ad")
    assert (
        main(
            [
                "spatial_qc",
                "--input",
                str(shared_data / "msti_breast_DCIS_IC_spatial"),
                "--sample",
                MSTI_SAMPLE,
                "--patient",
                "LBC",
                "--condition",
                "primary",
                "--tissue",
                "breast",
                "--species",
                "human",
                "--outdir",
                str(out),
            ]
        )
        == 0
    )
    return out / f"{MSTI_SAMPLE}.spatial.h5ad", out / "wu2021_reference.h5ad"
