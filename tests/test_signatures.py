"""ssGSEA (GSVA definition), GMT reading and ortholog mapping."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from tmeflow.errors import TmeflowInputError
from tmeflow.signatures import (
    filter_gene_sets,
    gsva_ranks,
    map_gene_sets,
    read_bundled_gmt,
    read_gmt,
    resource_path,
    ssgsea,
)

GENES = list("ABCDEF")
# s1: A > B > C > D > E > F; s2: C > E > F > B > D > A
EXPR = pd.DataFrame({"s1": [6.0, 5.0, 4.0, 3.0, 2.0, 1.0], "s2": [0.5, 2.0, 9.0, 1.0, 7.0, 3.0]}, index=GENES)
SETS = {"set1": ["A", "C"], "set2": ["B", "D", "F"]}


def _walk(values: np.ndarray, members: set[str], alpha: float = 0.25) -> float:
    """Literal GSVA random walk: position by position, sum of P_in - P_out."""
    ranks = pd.Series(values, index=GENES).rank().to_numpy()
    order = sorted(range(len(GENES)), key=lambda i: -ranks[i])
    inside = [GENES[i] in members for i in order]
    weights = [ranks[i] ** alpha if GENES[i] in members else 0.0 for i in order]
    total_w, n_out = sum(weights), sum(not x for x in inside)
    p_in = p_out = 0.0
    walk = 0.0
    for is_in, w in zip(inside, weights, strict=True):
        if is_in:
            p_in += w / total_w
        else:
            p_out += 1 / n_out
        walk += p_in - p_out
    return walk


def test_ssgsea_matches_hand_computed_random_walk():
    """6 genes x 2 samples, alpha = 0.25, checked by hand.

    Sample s1 ranks A..F = 6,5,4,3,2,1, walk order A,B,C,D,E,F.
    set1 = {A, C}: weights 6^0.25 = 1.56508 and 4^0.25 = 1.41421 (sum 2.97930);
    P_in per position = .52532, .52532, 1, 1, 1, 1 (sum 5.05064); P_out (N - k = 4) =
    0, .25, .25, .5, .75, 1 (sum 2.75); ES = 2.30064.
    Sample s2 ranks A=1, D=2, B=3, F=4, E=5, C=6, walk order C,E,F,B,D,A.
    set1: weights 1.56508 (C) and 1 (A); P_in = .61015 x5 then 1 (sum 4.05076); P_out = 0, .25, .5, .75, 1, 1
    (sum 3.5); ES = 0.55076.
    set2 = {B, D, F} in s1: weights 5^.25 = 1.49535, 3^.25 = 1.31607, 1 (sum 3.81142); P_in = 0, .39233, .39233,
    .73763, .73763, 1 (sum 3.25992); P_out (N - k = 3) = 1/3, 1/3, 2/3, 2/3, 1, 1 (sum 4); ES = -0.74008.
    set2 in s2: weights F 4^.25 = 1.41421, B 1.31607, D 2^.25 = 1.18921 (sum 3.91949); P_in = 0, 0, .36082,
    .69660, 1, 1 (sum 3.05742); P_out = 1/3, 2/3, 2/3, 2/3, 2/3, 1 (sum 4); ES = -0.94258.
    GSVA normalisation divides everything by max - min = 2.30064 - (-0.94258) = 3.24322.
    """
    raw = ssgsea(EXPR, SETS, normalize=False)
    hand = np.array([[2.30064, 0.55076], [-0.74008, -0.94258]])
    np.testing.assert_allclose(raw.to_numpy(), hand, atol=1e-4)
    literal = np.array([[_walk(EXPR[s].to_numpy(), set(SETS[k])) for s in EXPR.columns] for k in SETS])
    np.testing.assert_allclose(raw.to_numpy(), literal, atol=1e-12)
    normalised = ssgsea(EXPR, SETS, normalize=True)
    np.testing.assert_allclose(normalised.to_numpy(), hand / 3.24322, atol=1e-4)
    assert list(normalised.index) == ["set1", "set2"] and list(normalised.columns) == ["s1", "s2"]


def test_ssgsea_literal_walk_on_random_data():
    rng = np.random.default_rng(1)
    genes = [f"G{i}" for i in range(40)]
    expr = pd.DataFrame(rng.normal(size=(40, 5)), index=genes, columns=[f"s{i}" for i in range(5)])
    sets = {"a": genes[:7], "b": genes[10:25:2]}
    fast = ssgsea(expr, sets, normalize=False)
    for name, members in sets.items():
        for sample in expr.columns:
            ranks = expr[sample].rank().to_numpy()
            order = np.argsort(-ranks, kind="stable")
            inside = np.isin(np.array(genes)[order], members)
            w = np.where(inside, ranks[order] ** 0.25, 0.0)
            walk = np.cumsum(w) / w.sum() - np.cumsum(~inside) / (~inside).sum()
            assert fast.loc[name, sample] == pytest.approx(walk.sum(), abs=1e-10)


def test_gsva_ranks_truncate_tied_average_ranks():
    ranks = gsva_ranks(np.array([[1.0], [1.0], [2.0], [0.0]]))
    assert ranks.ravel().tolist() == [2, 2, 4, 1]  # average ranks 2.5, 2.5 -> 2 (as.integer in GSVA)


def test_ssgsea_drops_constant_genes_and_small_sets():
    expr = EXPR.copy()
    expr.loc["G"] = 3.0
    out = ssgsea(expr, {"set1": ["A", "C", "G"], "tiny": ["B"]}, normalize=False, min_size=2)
    assert list(out.index) == ["set1"]
    assert out.loc["set1", "s1"] == pytest.approx(2.30064, abs=1e-4)  # G removed, as GSVA filters constant genes


def test_read_gmt_and_errors(tmp_path):
    good = tmp_path / "user.gmt"
    good.write_text("UP\tdesc\tA\tC\tA\n\nDOWN\tdesc\tB\tD\n")
    assert read_gmt(good) == {"UP": ["A", "C"], "DOWN": ["B", "D"]}
    bad = tmp_path / "bad.gmt"
    bad.write_text("UP only\n")
    with pytest.raises(TmeflowInputError, match="tab-separated"):
        read_gmt(bad)
    with pytest.raises(TmeflowInputError, match="not found"):
        read_gmt(tmp_path / "missing.gmt")
    mouse = tmp_path / "mouse.gmt"
    mouse.write_text("S\td\tCd3e\tCd8a\tGzmb\n")
    with pytest.raises(TmeflowInputError, match=r"0 of 3 distinct set genes found"):
        filter_gene_sets(read_gmt(mouse), ["CD3E", "CD8A", "GZMB"], min_size=2, source=mouse)


def test_bundled_sets_and_ortholog_mapping():
    estimate = read_bundled_gmt("estimate")
    assert set(estimate) == {"StromalSignature", "ImmuneSignature"}
    assert all(len(g) == 141 for g in estimate.values())
    mouse = map_gene_sets({"s": ["CHMP3", "MLKL", "RIPK3", "NOT_A_GENE"]}, "human", "mouse")
    assert mouse["s"] == ["Chmp3", "Mlkl", "Ripk3"]


# Azizi et al. 2018 (Cell 174:1293) M1/M2 macrophage genes as reused by Cheng et al. 2021 (Cell 184:792);
# the paper's IL23, FIGF and FASL under their current symbols.
AZIZI_M1 = "CCL5 CCR7 CD40 CD86 CXCL9 CXCL10 CXCL11 IDO1 IL1A IL1B IL6 IL23A IRF1 IRF5 KYNU TNF"
AZIZI_M2 = (
    "CCL4 CCL13 CCL17 CCL18 CCL20 CCL22 CCL24 CD276 CLEC7A CTSA CTSB CTSC CTSD EGF FASLG FN1 IL4R IRF4 LYVE1 "
    "MMP9 MMP14 MMP19 MSR1 TGFB1 TGFB2 TGFB3 TNFSF8 TNFSF12 VEGFA VEGFB VEGFC VEGFD VTCN1 WNT7B"
)


def test_bundled_m1_m2_are_the_published_lists():
    """The bundled lists missed TNF and IL23A (M1) and CCL17, CCL24, VEGFD, EGF, WNT7B, FASLG, VTCN1 (M2)."""
    bundled = read_gmt(resource_path("signatures/tme_signatures.gmt"))
    assert sorted(bundled["M1"]) == sorted(AZIZI_M1.split())
    assert sorted(bundled["M2"]) == sorted(AZIZI_M2.split())


def test_human_ensembl_matrix_keeps_bundled_signatures():
    """Every gene of the bundled gene tables, as an Ensembl-id matrix, maps back to its symbol: each
    bundled human signature keeps >= 99% of its genes (the one-to-one ortholog table alone kept
    116/141 ESTIMATE immune genes and lost GZMB, GNLY).
    """
    from tmeflow.signatures import BUNDLED_GMTS, GENE_TABLES, ensembl_to_symbol, load_orthologs, resource_path

    table = pd.read_csv(resource_path(f"gene_positions/{GENE_TABLES['human']}"), sep="\t", dtype=str)
    ids = pd.Index(table["gene_id"]).union(pd.Index(load_orthologs()["human_ensembl"]))
    versioned = [f"{i}.{n % 7 + 1}" for n, i in enumerate(ids)]  # GENCODE-style version suffixes
    symbols = set(ensembl_to_symbol(versioned).values())
    assert {"GZMB", "GNLY", "CCL3", "CCL4", "HLA-DRA"} <= symbols
    # genes absent from both bundled tables (microRNA genes, pseudogenes, recent names): not mappable from any id
    absent = {
        "MIR107",
        "MIR485",
        "MIR4651",
        "H2BC12",
        "PTTG3P",
        "CROCCP2",
        "H4C3",
        "HBBP1",
        "H2AW",
        "GSTT2",
        "SEPTIN4",
        "CHMP4BP1",
        "CRYZL2P-SEC16B",
        "GABARAPL3",
        "MIRLET7B",
        "RAB1C",
    }
    # outdated symbols in the gene sets (PHB, DDX58, WISP1 ...): their id maps to the current symbol (PHB1, RIGI, CCN4)
    current = ensembl_to_symbol(table["gene_id"])
    renamed = {old for gid, old in zip(table["gene_id"], table["gene_symbol"], strict=True) if current[gid] != old}
    absent |= renamed
    files = [resource_path(BUNDLED_GMTS[k]) for k in ("estimate", "hallmark", "necroptosis", "cell_death")]
    files.append(resource_path("signatures/tme_signatures.gmt"))
    for path in files:
        for name, genes in read_gmt(path).items():
            wanted = [g for g in genes if g not in absent]
            kept = [g for g in wanted if g in symbols]
            assert len(kept) >= 0.99 * len(wanted), (path.name, name, sorted(set(wanted) - symbols))
            assert len(set(genes) & renamed) <= 2, (name, sorted(set(genes) & renamed))


def test_mouse_mapping_keeps_genes_without_one_to_one_orthologs(caplog):
    """CCL3, CCL4, GZMB, S100A9 and HMGB1 have no one-to-one mouse ortholog; they keep the mouse gene of the
    same name, and the coverage per set is reported.
    """
    from tmeflow.signatures import mapping_coverage

    sets = {"s": ["CCL3", "CCL4", "GZMB", "S100A9", "HMGB1", "CD3E", "CD8B"]}
    mouse = map_gene_sets(sets, "human", "mouse")
    assert mouse["s"] == ["Ccl3", "Ccl4", "Gzmb", "S100a9", "Hmgb1", "Cd3e"]
    coverage = mapping_coverage(sets, mouse)
    assert coverage.iloc[0].to_dict() == {"gene_set": "s", "n_genes": 7, "n_mapped": 6, "fraction": 6 / 7}
    back = map_gene_sets({"m": ["Ccl3", "Gzmb", "Cd3e"]}, "mouse", "human")
    assert back["m"] == ["CCL3", "GZMB", "CD3E"]
