"""Figures of ``tmeflow spatial_analysis`` besides the on-tissue maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .. import io
from ..log import get_logger
from ..plotting import pyplot

logger = get_logger(__name__)


# ----------------------------------------------------------------------------------------------
# Plots
# ----------------------------------------------------------------------------------------------
def _heatmap(frames: dict[str, pd.DataFrame], path: Path, title: str) -> Path:
    plt = pyplot()

    frames = {k: v for k, v in frames.items() if not v.empty}
    fig, axes = plt.subplots(1, max(1, len(frames)), figsize=(5.2 * max(1, len(frames)), 4.4), squeeze=False)
    for ax, (name, frame) in zip(axes.ravel(), frames.items()):
        limit = float(np.nanmax(np.abs(frame.to_numpy()))) or 1.0
        image = ax.imshow(frame.to_numpy(), cmap="RdBu_r", vmin=-limit, vmax=limit)
        ax.set_xticks(range(frame.shape[1]), frame.columns, rotation=90, fontsize=7)
        ax.set_yticks(range(frame.shape[0]), frame.index, fontsize=7)
        ax.set_title(name, fontsize=9)
        fig.colorbar(image, ax=ax, fraction=0.04, label="z-score")
    fig.suptitle(title)
    return io.save_figure(fig, path)


def _trajectory_plot(binned: pd.DataFrame, path: Path, title: str) -> Path:
    plt = pyplot()

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    x = binned["signed_distance_mid"]
    for column in [c for c in binned.columns if c.startswith("score_")]:
        v = binned[column]
        axes[0].plot(x, (v - v.mean()) / (v.std() or 1.0), marker="o", label=column.removeprefix("score_"))
    for column in [c for c in binned.columns if c.startswith("prop_")]:
        axes[1].plot(x, binned[column], marker=".", label=column.removeprefix("prop_"))
    for ax, label in zip(axes, ("signature score (z across bins)", "cell-type proportion")):
        ax.axvline(0, color="grey", lw=0.8, ls="--")
        ax.set(xlabel="signed distance to tumour boundary (spots; < 0 inside tumour)", ylabel=label)
        ax.legend(fontsize=7, frameon=False)
    fig.suptitle(title)
    return io.save_figure(fig, path)
