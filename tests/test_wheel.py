"""The package works outside the repository: a wheel carries every resource and runs from anywhere.

The Dockerfiles install the locked dependencies, then ``pip install --no-deps`` the copied source; this
test does the same with a wheel built by ``pip wheel --no-deps`` from the files the Dockerfile copies: a
fresh venv that sees the locked dependencies of the test environment (its site-packages on the path,
not its tmeflow) gets the wheel, and ``tmeflow --version`` / ``tmeflow run --help`` run from a folder
outside the repository.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
RESOURCES = REPO / "src" / "tmeflow" / "resources"

# top-level files the package carries a copy of (Nextflow and nf-schema read the top-level ones)
PACKAGED_COPIES = {
    "nextflow_schema.json": REPO / "nextflow_schema.json",
    "schema_input.json": REPO / "assets" / "schema_input.json",
    "multiqc_config.yml": REPO / "assets" / "multiqc_config.yml",
}


LOAD_PACKAGED_COPIES = """
from tmeflow.params import load_schema
from tmeflow.report import bundled_config
from tmeflow.samplesheet import load_input_schema
import yaml
load_schema(), load_input_schema(), yaml.safe_load(bundled_config().read_text())
"""


@pytest.mark.parametrize("name", sorted(PACKAGED_COPIES))
def test_packaged_copies_equal_top_level_files(name):
    packaged = RESOURCES / name
    assert not packaged.is_symlink(), f"{packaged} is a link: a wheel would drop it"
    assert packaged.read_bytes() == PACKAGED_COPIES[name].read_bytes(), (
        f"{packaged} differs from {PACKAGED_COPIES[name]}: cp {PACKAGED_COPIES[name].relative_to(REPO)} "
        f"{packaged.relative_to(REPO)}"
    )


def test_no_links_in_package():
    links = [p for p in (REPO / "src" / "tmeflow").rglob("*") if p.is_symlink()]
    assert links == []


def dockerfile_sources() -> list[str]:
    """What containers/Dockerfile copies of the package source (``COPY <files...> /opt/tmeflow/...``)."""
    sources = []
    for line in (REPO / "containers" / "Dockerfile").read_text().splitlines():
        words = line.split()
        if words[:1] == ["COPY"] and words[-1].startswith("/opt/tmeflow") and not words[1].endswith(".lock"):
            sources += words[1:-1]
    return sources


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """A wheel built, like the images do, from only the files the Dockerfile copies (no stale build/)."""
    source = tmp_path_factory.mktemp("source")
    for name in dockerfile_sources():
        if (REPO / name).is_dir():
            shutil.copytree(REPO / name, source / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(REPO / name, source / name)
    outdir = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            str(source),
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "-w",
            str(outdir),
        ],
        check=True,
        cwd=outdir,
    )
    (built,) = outdir.glob("tmeflow-*.whl")
    return built


def test_dockerfile_copies_the_package_source():
    assert {"pyproject.toml", "src"} <= set(dockerfile_sources())


@pytest.mark.slow
def test_wheel_carries_every_resource(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    expected = {f"tmeflow/resources/{p.relative_to(RESOURCES).as_posix()}" for p in RESOURCES.rglob("*") if p.is_file()}
    expected |= {f"tmeflow/resources/{name}" for name in PACKAGED_COPIES}
    assert expected - names == set()


def _tmeflow(venv: Path, *args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    return subprocess.run([str(venv / "bin" / "tmeflow"), *args], cwd=cwd, env=env, capture_output=True, text=True)


@pytest.mark.slow
def test_wheel_runs_outside_the_repository(wheel, tmp_path):
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    # the locked dependencies, as installed in this environment (its own tmeflow is an editable
    # install whose .pth is not processed from here, and the wheel's copy comes first anyway)
    site = venv / "lib" / f"python{sys.version_info.major}.{sys.version_info.minor}" / "site-packages"
    (site / "locked_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin" / "python"),
            "install",
            "--no-deps",
            "-q",
            str(wheel),
        ],
        check=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    version = _tmeflow(venv, "--version", cwd=elsewhere)
    assert version.returncode == 0, version.stderr
    from tmeflow import __version__

    assert __version__ in version.stdout
    help_text = _tmeflow(venv, "run", "--help", cwd=elsewhere)
    assert help_text.returncode == 0, help_text.stderr
    assert "--params-file" in help_text.stdout
    # every packaged copy of a top-level file loads
    loads = subprocess.run(
        [str(venv / "bin" / "python"), "-c", LOAD_PACKAGED_COPIES],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")},
    )
    assert loads.returncode == 0, loads.stderr
    installed = site / "tmeflow"
    assert (installed / "resources" / "nextflow_schema.json").is_file()
    assert not str(installed.resolve()).startswith(str(REPO))

    # the check can fail: a package without its schema does not start
    (installed / "resources" / "nextflow_schema.json").unlink()
    broken = _tmeflow(venv, "--version", cwd=elsewhere)
    assert broken.returncode != 0
