"""The plotting contract of the whole package (issue 21), in one place.

Every figure comes from a public ``plot_<what>(data, ...) -> Figure`` that takes the data and plain keyword
options, never a destination (``path``, ``outdir``), ``params``, a settings object or an ``ax`` to draw into
(axes-level helpers are private); it neither saves nor closes the figure. The stage's writing code saves it with
:func:`tmeflow.io.save_figure`, the only ``savefig`` of the package, and :func:`tmeflow.plotting.pyplot` is the only
place the ``Agg`` backend is selected. The stage test files keep their behavioural tests of specific plots.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
from pathlib import Path

import numpy as np
import pandas as pd

import tmeflow

PACKAGE = Path(tmeflow.__file__).parent
FORBIDDEN = {"path", "outdir", "out", "file", "filename", "prefix", "params", "settings", "ax", "axes"}


def _modules():
    yield tmeflow
    for info in pkgutil.walk_packages(tmeflow.__path__, "tmeflow."):
        yield importlib.import_module(info.name)


def _plot_functions() -> dict[str, object]:
    return {
        f"{module.__name__}.{name}": function
        for module in _modules()
        for name, function in vars(module).items()
        if inspect.isfunction(function) and function.__module__ == module.__name__ and name.startswith("plot_")
    }


def _calls(root: Path, attribute: str, owner: str | None = None) -> dict[str, int]:
    """``{file: count}`` of the ``<x>.<attribute>(...)`` calls under ``root`` (``x`` named ``owner`` if given)."""
    found: dict[str, int] = {}
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == attribute
                and (owner is None or (isinstance(node.func.value, ast.Name) and node.func.value.id == owner))
            ):
                name = path.relative_to(root).as_posix()
                found[name] = found.get(name, 0) + 1
    return found


def test_every_plot_takes_data_and_returns_a_figure():
    plots = _plot_functions()
    # the walk reaches every stage's plots (a few from far-apart packages, so a broken walk cannot pass)
    for name in (
        "tmeflow.qc.plot_qc_violins",
        "tmeflow.cnv.plots.plot_heatmap",
        "tmeflow.pathways.plots.plot_bubbles",
        "tmeflow.spatial_qc.plot_on_tissue",
        "tmeflow.communication.plots.plot_pathway_circles",
        "tmeflow.trajectory.plots.plot_embedding",
        "tmeflow.bulk.plots.plot_km",
    ):
        assert name in plots, name
    assert len(plots) >= 40
    bad = {
        name: sorted(FORBIDDEN & set(inspect.signature(function).parameters))
        for name, function in plots.items()
        if FORBIDDEN & set(inspect.signature(function).parameters)
    }
    assert bad == {}, f"plot functions take a destination, settings or an ax: {bad}"
    untyped = [name for name, f in plots.items() if inspect.signature(f).return_annotation != "Figure"]
    assert untyped == [], f"plot functions not typed -> Figure: {untyped}"


def test_axes_helpers_are_private():
    public_axes = [
        f"{module.__name__}.{name}"
        for module in _modules()
        for name, function in vars(module).items()
        if inspect.isfunction(function)
        and function.__module__ == module.__name__
        and not name.startswith("_")
        and list(inspect.signature(function).parameters)[:1] in (["ax"], ["axes"])
    ]
    assert public_axes == []


def test_only_io_saves_and_only_plotting_selects_the_backend():
    assert _calls(PACKAGE, "savefig") == {"io.py": 1}  # tmeflow.io.save_figure
    assert _calls(PACKAGE, "use", owner="matplotlib") == {"plotting.py": 1}  # tmeflow.plotting.pyplot
    assert _calls(PACKAGE, "switch_backend") == {}
    assert [path.name for path in PACKAGE.rglob("*.py") if "matplotlib.use(" in path.read_text()] == ["plotting.py"]


def test_the_scan_finds_savefig_and_backend_calls(tmp_path):
    (tmp_path / "stage.py").write_text(
        "import matplotlib\nmatplotlib.use('Agg')\n\n\ndef draw(fig, ax):\n    fig.savefig('a.png')\n"
        "    ax.figure.savefig('b.png')\n    ax.use('x')\n"
    )
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "plots.py").write_text("import matplotlib.pyplot as plt\nplt.savefig('c.png')\n")
    assert _calls(tmp_path, "savefig") == {"stage.py": 2, "pkg/plots.py": 1}
    assert _calls(tmp_path, "use", owner="matplotlib") == {"stage.py": 1}


def test_a_plot_returns_an_open_figure_and_writes_nothing(tmp_path, monkeypatch):
    from matplotlib.figure import Figure

    from tmeflow.composition.plots import plot_stacked
    from tmeflow.plotting import pyplot

    def refuse(*args, **kwargs):
        raise AssertionError("a plot function saved its figure")

    monkeypatch.setattr(Figure, "savefig", refuse)
    monkeypatch.chdir(tmp_path)
    plt = pyplot()
    before = set(plt.get_fignums())
    props = pd.DataFrame({"T": [0.5, 0.2, 0.6], "Malignant": [0.5, 0.8, 0.4]}, index=["S2", "S1", "S3"])
    samples = pd.DataFrame({"condition": ["primary", "primary", "metastasis"]}, index=["S2", "S1", "S3"])
    fig = plot_stacked(props, samples, ["primary", "metastasis"], "three samples")
    assert isinstance(fig, Figure)
    assert set(plt.get_fignums()) - before == {fig.number}  # one new figure, still open
    assert list(tmp_path.iterdir()) == []
    ax = fig.axes[0]
    # samples grouped by condition order, then by name: S1, S2 (primary), S3 (metastasis); T bars at the bottom
    assert [label.get_text() for label in ax.get_xticklabels()] == [
        "S1\n(primary)",
        "S2\n(primary)",
        "S3\n(metastasis)",
    ]
    t_bars = ax.containers[0]
    np.testing.assert_allclose([bar.get_height() for bar in t_bars], [0.2, 0.5, 0.6])
    np.testing.assert_allclose([bar.get_y() for bar in ax.containers[1]], [0.2, 0.5, 0.6])
    assert ax.get_title() == "three samples"
    plt.close(fig)
