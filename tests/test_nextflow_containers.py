"""The container image of the Nextflow pipeline is named once (issue 21, item 6).

Every module runs ``tmeflow <stage>``, so every process runs the one pipeline image; nf-core modules
name their tool's image in the module, but here the tool is the pipeline, and 16 modules repeating
``container "ghcr.io/tmeflow/tmeflow:<version>"`` meant 16 places to bump. The image is set once,
``process.container`` in ``conf/containers.config`` (included by nextflow.config for every profile);
the CUDA image of the GPU stages comes from ``conf/gpu.config`` under ``-profile gpu`` only
(``tests/nf_strict.py``, ``check_gpu_routing``). The tags are the package version, which is also the
Dockerfiles' ``org.opencontainers.image.version`` label and ``manifest.version``.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import nf_static as ns
import pytest

from tmeflow import __version__

REPO = ns.REPO
IMAGE = "ghcr.io/tmeflow/tmeflow"
CONTAINERS_CONFIG = "conf/containers.config"
# Files that may name the image: the one definition, and the CUDA image under -profile gpu
IMAGE_FILES = {CONTAINERS_CONFIG: ("",), "conf/gpu.config": ("", "-gpu")}
DOCKERFILES = {"containers/Dockerfile": "", "containers/Dockerfile.gpu": "-gpu"}


def check_container_config(repo: Path, version: str) -> list[str]:
    """Check that the image is set once, for every process, with the package version as its tag.

    Parameters
    ----------
    repo
        Pipeline root (a copy in the tests that break it).
    version
        The tmeflow package version (``tmeflow.__version__``).

    Returns
    -------
    list of str
        One line per problem; empty when the image is named once and tagged ``version``.
    """
    problems = []
    containers = repo / CONTAINERS_CONFIG
    if not containers.is_file():
        return [f"{CONTAINERS_CONFIG}: missing (the one place that names the image)"]
    code = ns.scan(containers.read_text()).no_comments
    settings = re.findall(r"^\s*(?:process\s*\.\s*)?container\s*=\s*(.+?)\s*$", code, flags=re.M)
    expected = f"'{IMAGE}:{version}'"
    if settings != [expected] or re.search(r"\bwith(Label|Name)\s*:", code):
        problems.append(f"{CONTAINERS_CONFIG}: should set process.container = {expected} once, for every process")
    config = ns.scan((repo / "nextflow.config").read_text()).no_comments
    outside_profiles = config
    for body in ns.profile_blocks(config).values():
        outside_profiles = outside_profiles.replace(body, "")
    if not re.search(rf"^\s*includeConfig\s+['\"]{re.escape(CONTAINERS_CONFIG)}['\"]", outside_profiles, flags=re.M):
        problems.append(f"nextflow.config: does not include {CONTAINERS_CONFIG} for every profile")
    manifest = re.search(
        r"^\s*version\s*=\s*['\"]([^'\"]+)['\"]", ns.named_blocks(config, "manifest").get("", ""), flags=re.M
    )
    if manifest is None or manifest.group(1) != version:
        problems.append(f"nextflow.config: manifest.version is not the package version {version}")
    for path in sorted((repo / "modules").rglob("*.nf")):
        rel = path.relative_to(repo).as_posix()
        if path.parent.name in ns.TOOL_MODULES:
            continue
        if re.search(r"^\s*container\b", ns.scan(path.read_text()).no_comments, flags=re.M):
            problems.append(f"{rel}: names a container; the image is set once, in {CONTAINERS_CONFIG}")
    for path in [repo / "nextflow.config", *sorted((repo / "conf").glob("*.config"))]:
        rel = path.relative_to(repo).as_posix()
        for tag in re.findall(rf"{re.escape(IMAGE)}:([\w.+-]+)", ns.scan(path.read_text()).no_comments):
            allowed = [f"{version}{suffix}" for suffix in IMAGE_FILES.get(rel, ())]
            if tag not in allowed:
                where = f"allowed here: {allowed}" if allowed else f"only {sorted(IMAGE_FILES)} name the image"
                problems.append(f"{rel}: names {IMAGE}:{tag} ({where})")
    for name, suffix in DOCKERFILES.items():
        text = (repo / name).read_text()
        label = re.findall(r'org\.opencontainers\.image\.version="([^"]+)"', text)
        tags = set(re.findall(rf"-t\s+{re.escape(IMAGE)}:([\w.+-]+)", text))
        if label != [version] or tags != {f"{version}{suffix}"}:
            problems.append(
                f"{name}: version label {label} and build tag {sorted(tags)} should be {version} / {version}{suffix}"
            )
    return problems


def test_image_is_named_once_with_the_package_version():
    assert check_container_config(REPO, __version__) == []


@pytest.fixture
def repo_copy(tmp_path: Path) -> Path:
    for folder in ("modules", "conf", "containers"):
        shutil.copytree(REPO / folder, tmp_path / folder)
    shutil.copy(REPO / "nextflow.config", tmp_path / "nextflow.config")
    return tmp_path


def _edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, (path, old)
    path.write_text(text.replace(old, new, 1))


def test_container_check_reports_a_module_image(repo_copy):
    module = repo_copy / "modules" / "local" / "qc" / "main.nf"
    _edit(module, "    conda ", f'    container "{IMAGE}:{__version__}"\n    conda ')
    assert check_container_config(repo_copy, __version__) == [
        f"modules/local/qc/main.nf: names a container; the image is set once, in {CONTAINERS_CONFIG}"
    ]


def test_container_check_reports_another_version_and_a_second_definition(repo_copy):
    assert any("should set process.container" in p for p in check_container_config(repo_copy, "0.0.9")), (
        "the tag is not compared with the package version"
    )
    _edit(repo_copy / "conf" / "base.config", "process {", f"process {{\n    container = '{IMAGE}:{__version__}'")
    assert check_container_config(repo_copy, __version__) == [
        f"conf/base.config: names {IMAGE}:{__version__} (only {sorted(IMAGE_FILES)} name the image)"
    ]


def test_container_check_reports_a_missing_include_and_a_dockerfile_behind(repo_copy):
    _edit(repo_copy / "nextflow.config", "includeConfig 'conf/containers.config'", "")
    _edit(
        repo_copy / "containers" / "Dockerfile.gpu",
        f'image.version="{__version__}"',
        'image.version="0.0.9"',
    )
    problems = check_container_config(repo_copy, __version__)
    assert f"nextflow.config: does not include {CONTAINERS_CONFIG} for every profile" in problems
    assert any(p.startswith("containers/Dockerfile.gpu: version label ['0.0.9']") for p in problems), problems
