"""Issue 21 plotting contract: behaviour of the communication and spatial stages' plots.

Each plot returns its figure and neither saves nor closes it; the stage's writing code saves it with
``tmeflow.io.save_figure``. The signature rule for every plot of the package lives in tests/test_plot_contract.py.
Fast: hand-built inputs of a few spots.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tiny


def _section(n: int = 6):
    """Six spots on a line 100 apart (no tissue image), a numeric and a categorical value per spot."""
    section = tiny.adata(np.ones((n, 2)))
    section.obsm["spatial"] = tiny.line(n)
    return section


def test_plot_on_tissue_returns_the_figure_and_writes_nothing(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from tmeflow.spatial_qc import plot_on_tissue

    monkeypatch.chdir(tmp_path)
    section = _section()
    values = {"score": np.arange(6.0), "type": pd.Series(list("aabbcc"), index=section.obs_names, dtype="category")}
    fig = plot_on_tissue(section, values, ncols=2, title="six spots")
    assert isinstance(fig, Figure)
    # two data panels (one row of two), each with a colour bar or a legend; nothing saved, the figure still open
    drawn = [ax for ax in fig.axes if ax.get_title() in ("score", "type")]
    assert [ax.get_title() for ax in drawn] == ["score", "type"]
    assert drawn[1].get_legend() is not None and len(drawn[1].get_legend().get_texts()) == 3
    assert fig._suptitle.get_text() == "six spots"
    assert list(tmp_path.iterdir()) == []
    import matplotlib.pyplot as plt

    assert plt.fignum_exists(fig.number)
    plt.close(fig)


def test_spatial_analysis_plots_return_figures():
    from tmeflow.spatial_analysis import plot_nhood_enrichment, plot_trajectory

    z = pd.DataFrame([[2.0, -1.0], [-1.0, 4.0]], index=["tumour", "stroma"], columns=["tumour", "stroma"])
    fig = plot_nhood_enrichment({"regions": z, "empty": pd.DataFrame()}, title="nhood")
    # the empty table gets no panel; the colour scale is symmetric about 0 at the largest |z| (4)
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_title() for ax in panels] == ["regions"]
    assert panels[0].images[0].get_clim() == (-4.0, 4.0)
    binned = pd.DataFrame(
        {"signed_distance_mid": [-1.0, 0.5, 2.0], "score_EMT": [0.0, 1.0, 2.0], "prop_T": [0.1, 0.2, 0.3]}
    )
    fig = plot_trajectory(binned, title="axis")
    left, right = fig.axes[:2]
    # scores as z across bins: (v - mean 1) / sd 1 = -1, 0, 1; proportions as they are
    assert np.allclose(left.lines[0].get_ydata(), [-1.0, 0.0, 1.0])
    assert np.allclose(right.lines[0].get_ydata(), [0.1, 0.2, 0.3])
    import matplotlib.pyplot as plt

    plt.close("all")


@pytest.mark.parametrize(
    "chosen, differential, expected",
    [
        (["MK"], {"b_vs_a": [{"pathway": "TGFb"}]}, (["MK"], "communication_plot_pathways")),
        ([], {"b_vs_a": [{"pathway": "TGFb"}, {"pathway": "MIF"}, {"pathway": "MK"}]},
         (["TGFb", "MIF"], "top 2 differential pathways of b_vs_a")),
        # no contrast (or an empty test): summed strength over conditions, 'other' never ranked:
        # MK 1 + 2 = 3 > MIF 2.5 > TGFb 0.5 > other 9 (left out)
        ([], {"b_vs_a": []}, (["MK", "MIF"], "top 2 pathways by strength")),
        ([], {}, (["MK", "MIF"], "top 2 pathways by strength")),
    ],
)  # fmt: skip
def test_choose_pathways_rules_by_hand(chosen, differential, expected):
    from tmeflow.communication import choose_pathways, top_pathways_by_strength

    strength = pd.DataFrame(
        {
            "condition": ["a", "b", "a", "a", "b"],
            "pathway": ["MK", "MK", "MIF", "TGFb", "other"],
            "strength": [1.0, 2.0, 2.5, 0.5, 9.0],
        }
    )
    assert choose_pathways(strength, differential, chosen=chosen, n_plots=2) == expected
    assert top_pathways_by_strength(strength, ["a", "b"], top=2) == {"a": {"MIF": 2.5, "MK": 1.0}, "b": {"MK": 2.0}}
