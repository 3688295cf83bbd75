"""`tmeflow report`: one MultiQC page of every stage's tables and figures, in analysis order, offline."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tmeflow import io, report
from tmeflow.cli import main

# What a page must not fetch to render: scripts, styles, images or fonts from the network.
REMOTE_RESOURCE = re.compile(
    r"""<script[^>]+src=["']?(?:https?:)?//|<link[^>]+href=["']?(?:https?:)?//"""
    r"""|<img[^>]+src=["']?(?:https?:)?//|url\(["']?(?:https?:)?//|@import\s+["']?(?:https?:)?//""",
    re.IGNORECASE,
)


def remote_resources(html: str) -> list[str]:
    """Network fetches a page makes to render: its tags and styles, inline scripts' bodies aside
    (the bundled JS libraries carry URL strings, e.g. showdown's emoji table, that load nothing).
    """
    markup = re.sub(r"(<script[^>]*>).*?(</script>)", r"\1\2", html, flags=re.S | re.IGNORECASE)
    return [match.group(0) for match in REMOTE_RESOURCE.finditer(markup)]


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--hide-scrollbars",
    # No network at all: every host name fails and every request would go to a closed local port.
    "--host-resolver-rules=MAP * ~NOTFOUND",
    "--proxy-server=127.0.0.1:9",
]


def _png(path: Path, width: int = 40, height: int = 30, seed: int = 0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 255, size=(height, width, 3), dtype=np.uint8)
    Image.fromarray(pixels).save(path)
    return path


def _table(path: Path, section_id: str, plot_type: str = "table") -> Path:
    header = io.multiqc_header(section_id, section_id.replace("_", " "), "test table", plot_type)
    path.write_text(header + "Sample\tvalue\nS1\t1\nS2\t2\n")
    return path


@pytest.fixture
def small_results(tmp_path) -> Path:
    """A results folder laid out as Nextflow stages files for the REPORT task (numbered folders)."""
    root = tmp_path / "staged"
    for index, name in enumerate(
        ["S1.qc_stats_mqc.tsv", "integration_metrics_mqc.tsv", "cnv_summary_mqc.tsv", "TCGA.bulk_survival_mqc.tsv"],
        start=1,
    ):
        (root / str(index)).mkdir(parents=True)
        _table(root / str(index) / name, f"t_{index}", "generalstats" if index == 1 else "table")
    figures = root / "9"
    figures.mkdir()
    for seed, name in enumerate(
        [
            "S1.qc_violin.png",
            "annotation_umap_mqc.png",
            "cnv_heatmap_P1.png",
            "trajectory_embedding.png",
            "S1_visium.deconvolution_proportions.png",
            "TCGA.bulk_km_os_mqc.png",
        ]
    ):
        _png(figures / name, seed=seed)
    (root / "10").mkdir()
    (root / "10" / "tmeflow_software_mqc_versions.yml").write_text(yaml.safe_dump({"QC": {"tmeflow": "0.1.0"}}))
    (root / "10" / "params.json").write_text(
        json.dumps({"seed": 0, "deconvolution_method": "nnls", "multiqc_title": None})
    )
    # never reported: an unknown file, MultiQC's own data folder, a hidden folder
    (root / "10" / "notes.txt").write_text("x")
    (root / "multiqc_data").mkdir()
    _png(root / "multiqc_data" / "cnv_heatmap_P9.png")
    (root / ".hidden").mkdir()
    _png(root / ".hidden" / "cnv_heatmap_P8.png")
    return root


def test_remote_resource_check_catches_a_cdn_script():
    assert remote_resources('<script src="https://cdn.example.org/plotly.js"></script>') != []
    assert remote_resources('<link rel="stylesheet" href="//fonts.example.org/css">') != []
    assert remote_resources('<script>var x = "<img src=https://a/b.png>";</script>') == []


def test_collect_recognises_files_by_name_in_any_layout(small_results):
    found = report.collect(small_results)
    names = sorted(content.path.name for content in found["content"])
    assert "cnv_heatmap_P1.png" in names and "S1.qc_stats_mqc.tsv" in names
    assert not {"cnv_heatmap_P9.png", "cnv_heatmap_P8.png", "notes.txt"} & set(names)
    assert [path.name for path in found["versions"]] == ["tmeflow_software_mqc_versions.yml"]
    assert [path.name for path in found["params"]] == ["params.json"]


def test_every_stage_figure_and_table_pattern_belongs_to_one_section():
    seen = {}
    for section in report.SECTIONS:
        for pattern, caption in section.files:
            assert pattern not in seen, f"{pattern} in {seen.get(pattern)} and {section.id}"
            seen[pattern] = section.id
            assert pattern.endswith((".png", "_mqc.tsv", "_mqc.yaml"))
            assert bool(caption) == pattern.endswith(".png"), (
                f"{pattern}: figures need a caption, tables have their own"
            )


def test_report_image_is_capped_in_width_and_keeps_its_aspect(tmp_path):
    wide = _png(tmp_path / "wide.png", width=4000, height=500)
    with Image.open(__import__("io").BytesIO(report.report_image(wide))) as shrunk:
        assert shrunk.width == report.REPORT_IMAGE_MAX_WIDTH
        assert shrunk.height == round(500 * report.REPORT_IMAGE_MAX_WIDTH / 4000)
    small = _png(tmp_path / "small.png", width=50, height=20)
    with Image.open(__import__("io").BytesIO(report.report_image(small))) as same:
        assert same.size == (50, 20)


def _section_positions(html: str) -> list[str]:
    return re.findall(r'<h2[^>]*id="(tmeflow_step_[a-z_]+|multiqc_software_versions|tmeflow_run_parameters)"', html)


@pytest.mark.slow
def test_report_sections_follow_the_analysis_order(small_results, tmp_path):
    outdir = tmp_path / "multiqc"
    assert main(["report", "--input_dir", str(small_results), "--outdir", str(outdir)]) == 0
    html = (outdir / "multiqc_report.html").read_text()
    order = [section.id for section in report.SECTIONS]
    present = _section_positions(html)
    expected = [
        "tmeflow_step_qc",
        "tmeflow_step_integration",
        "tmeflow_step_annotation",
        "tmeflow_step_cnv",
        "tmeflow_step_trajectory",
        "tmeflow_step_deconvolution",
        "tmeflow_step_bulk",
        "multiqc_software_versions",
        "tmeflow_run_parameters",
    ]
    assert present == expected
    assert [s for s in present if s in order] == sorted([s for s in present if s in order], key=order.index)
    assert 'id="general_stats_table"' in html or "general_stats" in html
    assert "deconvolution_method" in html and "nnls" in html  # run parameters
    assert "tmeflow_figure_cnv_heatmap_p1" in html and "cnv_heatmap_p9" not in html
    assert (outdir / "multiqc_data").is_dir()
    assert remote_resources(html) == []
    assert not [p for p in outdir.iterdir() if p.name.startswith(".")]  # no temporary folder left


@pytest.mark.slow
def test_report_in_a_nextflow_task_folder(small_results, monkeypatch):
    # The REPORT process runs `tmeflow report --input_dir . --outdir .` among its staged inputs.
    monkeypatch.chdir(small_results)
    assert main(["report", "--input_dir", ".", "--outdir", "."]) == 0
    assert Path("multiqc_report.html").is_file() and Path("multiqc_data").is_dir()
    assert main(["report", "--input_dir", ".", "--outdir", "."]) == 0  # a retried task: same outputs
    assert "tmeflow_figure_cnv_heatmap_p1" in Path("multiqc_report.html").read_text()


@pytest.mark.slow
def test_report_title_names_the_report(small_results, tmp_path):
    outdir = tmp_path / "multiqc"
    assert (
        main(["report", "--input_dir", str(small_results), "--outdir", str(outdir), "--multiqc_title", "Cohort A"]) == 0
    )
    assert (outdir / "cohort_a_multiqc_report.html").is_file()
    assert "Cohort A" in (outdir / "cohort_a_multiqc_report.html").read_text()


@pytest.mark.slow
def test_user_multiqc_config_is_applied_last(small_results, tmp_path):
    config = tmp_path / "mine.yml"
    config.write_text("report_comment: 'Lab of Tumour Ecology, run 42'\n")
    outdir = tmp_path / "multiqc"
    assert (
        main(["report", "--input_dir", str(small_results), "--outdir", str(outdir), "--multiqc_config", str(config)])
        == 0
    )
    assert "Lab of Tumour Ecology, run 42" in (outdir / "multiqc_report.html").read_text()


def test_failed_multiqc_leaves_the_previous_report_untouched(small_results, tmp_path, monkeypatch, capsys):
    outdir = tmp_path / "multiqc"
    outdir.mkdir()
    (outdir / "multiqc_report.html").write_text("previous report")

    def broken(staging, build, configs, title):
        (build / "multiqc_report.html").parent.mkdir(parents=True, exist_ok=True)
        (build / "multiqc_report.html").write_text("half")
        raise report.TmeflowInputError("MultiQC failed on x (exit 1): boom")

    monkeypatch.setattr(report, "_run_multiqc", broken)
    assert main(["report", "--input_dir", str(small_results), "--outdir", str(outdir)]) == 2
    assert "MultiQC failed" in capsys.readouterr().err
    assert (outdir / "multiqc_report.html").read_text() == "previous report"
    assert [p.name for p in outdir.iterdir()] == ["multiqc_report.html"]


@pytest.mark.parametrize(
    "case, expected",
    [
        ("missing_dir", "report input folder not found"),
        ("empty", "no tmeflow tables or figures to report"),
        ("headerless_table", "has no MultiQC '#' header"),
        ("missing_config", "multiqc_config file not found"),
        ("bad_params", "not a readable JSON file"),
    ],
)
def test_bad_input_exits_2_with_one_line(tmp_path, capsys, case, expected):
    results = tmp_path / "results"
    results.mkdir()
    _png(results / "cnv_heatmap_P1.png")
    extra = []
    if case == "missing_dir":
        results = tmp_path / "nope"
    elif case == "empty":
        (results / "cnv_heatmap_P1.png").unlink()
        (results / "other.tsv").write_text("a\tb\n")
    elif case == "headerless_table":
        (results / "cnv_summary_mqc.tsv").write_text("Sample\tx\nS1\t1\n")
    elif case == "missing_config":
        extra = ["--multiqc_config", str(tmp_path / "none.yml")]
    elif case == "bad_params":
        (results / "params.json").write_text("{not json")
    assert main(["report", "--input_dir", str(results), "--outdir", str(tmp_path / "out"), *extra]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and expected in err
    assert not (tmp_path / "out" / "multiqc_report.html").exists()


# ------------------------------------------------------------------------------------------------
# The report of a whole `tmeflow run` on the simulated cohort
# ------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_pipeline_report_has_every_analysis_step(pipeline_results):
    html = (pipeline_results / "multiqc" / "multiqc_report.html").read_text()
    assert _section_positions(html) == [section.id for section in report.SECTIONS] + [
        "multiqc_software_versions",
        "tmeflow_run_parameters",
    ]
    for package in ("tmeflow", "scanpy", "multiqc"):
        assert f">{package}<" in html
    assert remote_resources(html) == []


@pytest.mark.slow
def test_pipeline_report_tables_show_every_column(pipeline_results):
    html = (pipeline_results / "multiqc" / "multiqc_report.html").read_text()
    tables = [path for path in pipeline_results.rglob("*_mqc.tsv") if "# plot_type: table\n" in path.read_text()]
    assert len(tables) >= 6
    for path in tables:
        text = path.read_text()
        section_id = re.search(r"^# id: (\S+)$", text, flags=re.M).group(1)
        columns = next(line for line in text.splitlines() if not line.startswith("#")).split("\t")[1:]
        shown = re.search(rf'id="{re.escape(section_id)}[^"]*_numcols"[^>]*>(\d+)</sup>/<sub>(\d+)</sub>', html)
        assert shown, f"{path.name}: table {section_id} not in the report"
        assert int(shown.group(2)) == len(columns), (
            f"{path.name}: {shown.group(2)} of {len(columns)} columns in the report"
        )


@pytest.mark.slow
def test_pipeline_report_shows_cnv_arms_as_a_native_heatmap(pipeline_results):
    """The patients x arms CNV heatmap is MultiQC's own (interactive) heatmap, not an image."""
    html = (pipeline_results / "multiqc" / "multiqc_report.html").read_text()
    content = yaml.safe_load(next(pipeline_results.rglob("cnv_arms_mqc.yaml")).read_text())
    assert content["plot_type"] == "heatmap" and len(content["data"]) == len(content["ycats"]) >= 1
    assert "tmeflow_cnv_arms_heatmap" in html
    assert not list(pipeline_results.rglob("cnv_arms_mqc.png"))


@pytest.mark.slow
def test_pipeline_report_leaves_no_figure_or_table_out(pipeline_results):
    patterns = [pattern for section in report.SECTIONS for pattern, _ in section.files]
    outputs = [
        path
        for path in pipeline_results.rglob("*")
        if path.suffix == ".png" or path.name.endswith(("_mqc.tsv", "_mqc.yaml"))
    ]
    outputs = [path for path in outputs if "multiqc" not in path.relative_to(pipeline_results).parts[0]]
    assert len(outputs) > 40
    left_out = [path.name for path in outputs if not any(fnmatch.fnmatchcase(path.name, p) for p in patterns)]
    assert left_out == []
    unused = [p for p in patterns if not any(fnmatch.fnmatchcase(path.name, p) for path in outputs)]
    # Optional figures of conditions the test cohort does not have (the pan-cancer ones need a cancer_type
    # column, tests/test_pancancer.py); every other pattern must match.
    pancancer = {p for p, _ in next(s for s in report.SECTIONS if s.id == "tmeflow_step_pancancer").files}
    assert set(unused) <= {"*.lr_interface.png"} | {p for p in patterns if p.startswith("gsea_")} | pancancer, unused


def _chromium(args: list[str], timeout: int = 180) -> subprocess.CompletedProcess:
    return subprocess.run(
        [CHROMIUM, *CHROMIUM_FLAGS, *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def _view_from(page: Path, section_id: str, folder: Path) -> Path:
    """A copy of the report that starts at one section (the sections before it hidden by CSS).
    Headless Chromium paints nothing when told to screenshot at an #anchor of a long page.
    """
    style = (
        f"<style>.mqc-module-section {{ display: none; }} #mqc-module-section-{section_id}, "
        f"#mqc-module-section-{section_id} ~ .mqc-module-section {{ display: block; }}</style>"
    )
    view = folder / f"view_{section_id}.html"
    html = page.read_text()
    body = html.rindex("</body>")  # the page's own; inlined libraries carry "</head>" strings
    view.write_text(html[:body] + style + html[body:])
    return view


@pytest.mark.slow
@pytest.mark.skipif(
    CHROMIUM is None, reason="Chromium is not installed (Debian package 'chromium'; .ci/run installs it)"
)
def test_pipeline_report_renders_offline_in_chromium(pipeline_results, tmp_path):
    page = (pipeline_results / "multiqc" / "multiqc_report.html").resolve()
    profile = ["--user-data-dir=" + str(tmp_path / "profile")]
    dom = _chromium([*profile, "--virtual-time-budget=20000", "--dump-dom", page.as_uri()])
    assert dom.returncode == 0, dom.stderr[-2000:]
    for section in report.SECTIONS:
        assert f'id="{section.id}"' in dom.stdout, section.id
    # MultiQC's scripts ran: plotly drew the interactive plots and the figures are in the page
    assert dom.stdout.count("js-plotly-plot") >= 3
    assert dom.stdout.count("data:image/png;base64") >= 40
    screenshots = {}
    for section in (
        "",
        "tmeflow_step_integration",
        "tmeflow_step_cnv",
        "tmeflow_step_deconvolution",
        "tmeflow_step_bulk",
    ):
        name = f"report_{section.removeprefix('tmeflow_step_') or 'top'}.png"
        view = _view_from(page, section, tmp_path) if section else page
        shot = _chromium(
            [
                *profile,
                "--window-size=1400,3200",
                "--virtual-time-budget=20000",
                f"--screenshot={tmp_path / name}",
                view.as_uri(),
            ]
        )
        assert shot.returncode == 0 and (tmp_path / name).is_file(), shot.stderr[-2000:]
        with Image.open(tmp_path / name) as image:
            colours = len(image.convert("RGB").getcolors(maxcolors=1 << 20) or [])
        assert colours > 50, f"{name}: a blank page ({colours} colours)"
        screenshots[name] = tmp_path / name
    pixels = {name: Image.open(path).convert("RGB").tobytes() for name, path in screenshots.items()}
    assert len(set(pixels.values())) == len(pixels), "the section views did not move the page"
    keep = __import__("os").environ.get("TMEFLOW_SCREENSHOT_DIR")
    if keep:
        Path(keep).mkdir(parents=True, exist_ok=True)
        for name, path in screenshots.items():
            shutil.copyfile(path, Path(keep) / name)


def _plot_png(path: Path) -> Path:
    """A figure with what the stages draw: a scatter coloured along a colour map, a colour bar, text."""
    from tmeflow.plotting import pyplot

    plt = pyplot()
    rng = np.random.default_rng(0)
    fig, ax = plt.subplots(figsize=(8, 6))
    xy = rng.normal(size=(3000, 2))
    points = ax.scatter(xy[:, 0], xy[:, 1], c=xy[:, 0] * xy[:, 1], cmap="viridis", s=6)
    fig.colorbar(points, ax=ax, label="score")
    ax.set_title("UMAP of 3,000 cells")
    return io.save_figure(fig, path)


def test_report_image_is_cheap_and_faithful(tmp_path):
    """256 colours at >= 40 dB PSNR against the full-colour figure, in under half the CPU time of
    median cut with ``optimize=True`` (what the report did before issue 23: ~7x slower).
    """
    import time
    from io import BytesIO

    path = _plot_png(tmp_path / "plot.png")
    started = time.process_time()
    embedded = report.report_image(path)
    cost = time.process_time() - started
    with Image.open(path) as image:
        original = image.convert("RGB")
    started = time.process_time()
    buffer = BytesIO()
    original.quantize(colors=256).save(buffer, format="PNG", optimize=True)
    median_cut = time.process_time() - started
    with Image.open(BytesIO(embedded)) as image:
        assert image.mode == "P" and len(image.getcolors(maxcolors=1024)) <= 256
        assert image.size == original.size
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    mse = np.mean((pixels - np.asarray(original, dtype=float)) ** 2)
    assert 10 * np.log10(255**2 / mse) >= 40
    assert cost < 0.5 * median_cut, (cost, median_cut)


def test_bundled_config_requests_no_plot_export_the_installed_kaleido_cannot_do():
    """MultiQC exports static plots with plotly, which needs Kaleido >= 1; with the pinned Kaleido 0.2.1
    every export failed (an error per plot and format) and cost ~13 s of the report (issue 23).
    """
    from importlib import metadata

    from packaging.version import Version

    config = yaml.safe_load(report.bundled_config().read_text())
    if config.get("export_plots"):
        assert Version(metadata.version("kaleido")) >= Version("1"), "export_plots needs Kaleido >= 1"
