"""The software environments of the Nextflow profiles match the package.

containers/Dockerfile (CPU), containers/Dockerfile.gpu (CUDA) and containers/environment.yml (conda
profile) install exactly pyproject.toml's pinned [project].dependencies; torch is the CPU wheel in
the CPU image and conda env, the CUDA build of the same version in the GPU image. Images are labelled
with the package version, and every module's container is tagged with it.

The checks are plain functions returning problems; each is also fed a broken file.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

from tmeflow import __version__

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
IMAGE = "ghcr.io/tmeflow/tmeflow"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
TORCH_CUDA_INDEX = re.compile(r"https://download\.pytorch\.org/whl/cu(\d+)$")

PIP_TOOLING = {"pip", "setuptools", "wheel"}

# pip options that take a value (the value is not a requirement)
_PIP_VALUE_OPTIONS = {
    "-i", "--index-url", "--extra-index-url", "-f", "--find-links", "-r", "--requirement",
    "-c", "--constraint", "-t", "--target", "--prefix", "--root", "--platform", "--python-version",
    "--implementation", "--abi", "--src", "-e", "--editable", "--progress-bar", "--cache-dir",
}


def pyproject_pins(pyproject: Path = REPO / "pyproject.toml") -> dict[str, str]:
    """``{canonical name: specifier}`` of [project].dependencies."""
    dependencies = tomllib.loads(pyproject.read_text())["project"]["dependencies"]
    return requirement_map(dependencies, "pyproject.toml")[0]


def requirement_map(tokens: list[str], where: str) -> tuple[dict[str, str], list[str]]:
    pins, problems = {}, []
    for token in tokens:
        try:
            requirement = Requirement(token)
        except InvalidRequirement as error:
            problems.append(f"{where}: not a requirement: {token!r} ({error})")
            continue
        name = canonicalize_name(requirement.name)
        if name in pins:
            problems.append(f"{where}: {requirement.name} is installed twice")
        pins[name] = str(requirement.specifier)
    return pins, problems


# --------------------------------------------------------------------------------------------------
# Parsing pip installs out of a Dockerfile and environment.yml
# --------------------------------------------------------------------------------------------------


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """``(INSTRUCTION, arguments)`` with ``\\`` continuations joined and comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\s*\n", " ", "\n".join(lines))
    instructions = []
    for line in joined.splitlines():
        if line.strip():
            word, _, rest = line.strip().partition(" ")
            instructions.append((word.upper(), rest.strip()))
    return instructions


def pip_installs(text: str) -> list[dict]:
    """Every ``pip install`` of the Dockerfile's RUN instructions: requirements, local paths, options."""
    installs = []
    for instruction, arguments in dockerfile_instructions(text):
        if instruction != "RUN":
            continue
        for command in re.split(r"&&|;|\|\|", arguments):
            words = shlex.split(command)
            for k in range(len(words) - 1):
                if words[k].endswith("pip") and words[k + 1] == "install":
                    installs.append(parse_pip_args(words[k + 2 :]))
                    break
    return installs


def parse_pip_args(words: list[str]) -> dict:
    install = {"requirements": [], "paths": [], "options": {}, "flags": set()}
    k = 0
    while k < len(words):
        word = words[k]
        if word.startswith("-"):
            name, eq, value = word.partition("=")
            if name in _PIP_VALUE_OPTIONS:
                if not eq:
                    k += 1
                    value = words[k] if k < len(words) else ""
                install["options"].setdefault(name, []).append(value)
            else:
                install["flags"].add(name)
        elif word.startswith((".", "/", "~")):
            install["paths"].append(word)
        else:
            install["requirements"].append(word)
        k += 1
    return install


def index_of(install: dict) -> str | None:
    urls = install["options"].get("--index-url", []) + install["options"].get("-i", [])
    return urls[-1] if urls else None


def check_dockerfile(text: str, pins: dict[str, str], *, gpu: bool, version: str, name: str) -> list[str]:
    problems = []
    instructions = dockerfile_instructions(text)
    # upgrading the installer itself (pip install --upgrade pip) is not part of the environment
    installs = [
        i for i in pip_installs(text)
        if i["paths"] or {canonicalize_name(Requirement(r).name) for r in i["requirements"]} - PIP_TOOLING
    ]
    requirements = [r for install in installs for r in install["requirements"]]
    installed, parse_problems = requirement_map(requirements, name)
    problems += parse_problems
    for package in sorted(set(pins) | set(installed)):
        if package not in installed:
            problems.append(f"{name}: {package}{pins[package]} (pyproject.toml) is not installed")
        elif package not in pins:
            problems.append(f"{name}: installs {package}{installed[package]}, which pyproject.toml does not list")
        elif installed[package] != pins[package]:
            problems.append(f"{name}: {package}{installed[package]}, pyproject.toml pins {package}{pins[package]}")

    torch_installs = [i for i in installs if any(canonicalize_name(Requirement(r).name) == "torch" for r in i["requirements"])]
    base = next((args.split()[0] for instruction, args in instructions if instruction == "FROM"), "")
    if len(torch_installs) == 1:
        index = index_of(torch_installs[0]) or ""
        if gpu:
            cuda = TORCH_CUDA_INDEX.match(index)
            if not cuda:
                problems.append(f"{name}: torch must come from a CUDA index (download.pytorch.org/whl/cuXYZ), not {index or 'PyPI'}")
            else:
                tag = cuda.group(1)
                cuda_version = f"{tag[:-1]}.{tag[-1]}"
                if not re.match(rf"nvidia/cuda:{re.escape(cuda_version)}(\.\d+)?-.*runtime", base):
                    problems.append(f"{name}: torch is the cu{tag} build but the base image {base!r} is not a CUDA {cuda_version} runtime")
        elif index != TORCH_CPU_INDEX:
            problems.append(f"{name}: torch must come from the CPU index {TORCH_CPU_INDEX}, not {index or 'PyPI'}")
        if len(torch_installs[0]["requirements"]) != 1:
            problems.append(f"{name}: install torch on its own, before the rest (one resolver pass per index)")
        elif installs.index(torch_installs[0]) != 0:
            problems.append(f"{name}: torch must be the first pip install")
    else:
        problems.append(f"{name}: torch is installed {len(torch_installs)} times")
    if not gpu and not base.startswith("python:3.11"):
        problems.append(f"{name}: base image {base!r} is not python:3.11*")

    local = [i for i in installs if i["paths"]]
    if not local or "--no-deps" not in local[-1]["flags"]:
        problems.append(f"{name}: the package itself is not installed (pip install --no-deps <copied source>)")
    if not re.search(r"\bpip check\b", text):
        problems.append(f"{name}: no `pip check` after the installs")
    labels = re.findall(r'org\.opencontainers\.image\.version="?([^"\s]+)"?', text)
    if labels != [version]:
        problems.append(f"{name}: org.opencontainers.image.version label is {labels}, package version is {version}")
    return problems


def check_environment(text: str, pins: dict[str, str], *, env_dir: Path, name: str) -> list[str]:
    problems = []
    env = yaml.safe_load(text)
    dependencies = env.get("dependencies", [])
    conda = [d for d in dependencies if isinstance(d, str)]
    pip_lists = [d["pip"] for d in dependencies if isinstance(d, dict) and "pip" in d]
    if not any(re.fullmatch(r"python\s*=+\s*3\.11(\.\*)?", d) for d in conda):
        problems.append(f"{name}: conda dependencies do not pin python=3.11")
    if "pip" not in conda:
        problems.append(f"{name}: pip is not a conda dependency")
    if len(pip_lists) != 1:
        return problems + [f"{name}: expected one pip: list, found {len(pip_lists)}"]
    words = [word for entry in pip_lists[0] for word in shlex.split(entry)]
    install = parse_pip_args(words)
    installed, parse_problems = requirement_map(install["requirements"], name)
    problems += parse_problems
    for package in sorted(set(pins) | set(installed)):
        if installed.get(package) != pins.get(package):
            problems.append(f"{name}: {package} is {installed.get(package)!r}, pyproject.toml pins {pins.get(package)!r}")
    indexes = install["options"].get("--extra-index-url", []) + install["options"].get("--index-url", [])
    if TORCH_CPU_INDEX not in indexes:
        problems.append(f"{name}: the PyTorch CPU index is not given, pip would pull the CUDA build of torch")
    if not any((env_dir / path / "pyproject.toml").is_file() for path in install["paths"]):
        problems.append(f"{name}: tmeflow itself is not installed (a pip entry pointing at the pipeline root)")
    return problems


def check_container_tags(text: str, version: str, name: str) -> list[str]:
    """Every tmeflow image named in a module or config is tagged ``<version>`` or ``<version>-gpu``."""
    problems = []
    for image in re.findall(rf"{re.escape(IMAGE)}:([\w.+-]+)", text):
        if image not in (version, f"{version}-gpu"):
            problems.append(f"{name}: image {IMAGE}:{image}, package version is {version}")
    return problems


# --------------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------------

PINS = pyproject_pins()
DOCKERFILES = {"Dockerfile": False, "Dockerfile.gpu": True}


def test_pyproject_pins_everything():
    assert PINS["torch"].startswith("==")
    for package, specifier in PINS.items():
        assert specifier, f"{package} is not pinned in pyproject.toml"


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_dockerfile_installs_pyproject_pins(dockerfile):
    text = (CONTAINERS / dockerfile).read_text()
    assert check_dockerfile(text, PINS, gpu=DOCKERFILES[dockerfile], version=__version__, name=dockerfile) == []


def test_environment_yml_installs_pyproject_pins():
    text = (CONTAINERS / "environment.yml").read_text()
    assert check_environment(text, PINS, env_dir=CONTAINERS, name="environment.yml") == []


def test_module_and_config_images_are_tagged_with_package_version():
    files = sorted((REPO / "modules").rglob("*.nf")) + [REPO / "nextflow.config", *sorted((REPO / "conf").glob("*.config"))]
    assert files
    for path in files:
        assert check_container_tags(path.read_text(), __version__, path.name) == []
    for path in sorted((REPO / "modules").rglob("main.nf")):
        containers = re.findall(r'^\s*container\s+"([^"]+)"', path.read_text(), flags=re.M)
        assert len(containers) == 1 and containers[0].startswith(f"{IMAGE}:"), path


def _problems(dockerfile: str, old: str, new: str) -> list[str]:
    text = (CONTAINERS / dockerfile).read_text()
    broken = re.sub(old, new, text, count=1, flags=re.M)
    assert broken != text, old
    return check_dockerfile(broken, PINS, gpu=DOCKERFILES[dockerfile], version=__version__, name=dockerfile)


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_dockerfile_check_reports_drift(dockerfile):
    assert any("numpy==2.4.5, pyproject.toml pins numpy==2.4.6" in p for p in _problems(dockerfile, r"numpy==2\.4\.6", "numpy==2.4.5"))
    assert any("scanpy==1.11.5 (pyproject.toml) is not installed" in p for p in _problems(dockerfile, r"^\s*scanpy==1\.11\.5 \\\n", ""))
    assert any("which pyproject.toml does not list" in p for p in _problems(dockerfile, r"numpy==2\.4\.6", "numpy==2.4.6 gtfparse==2.9.1"))
    assert any("torch==2.12.0, pyproject.toml pins torch==2.13.0" in p for p in _problems(dockerfile, r"torch==2\.13\.0", "torch==2.12.0"))
    assert any("image.version label" in p for p in _problems(dockerfile, r'image\.version="[^"]+"', 'image.version="0.0.1"'))
    assert any("pip check" in p for p in _problems(dockerfile, r"pip check", "true"))


def test_dockerfile_check_reports_wrong_torch_build():
    assert any("CPU index" in p for p in _problems("Dockerfile", r" --index-url https://download\.pytorch\.org/whl/cpu", ""))
    assert any("CPU index" in p for p in _problems("Dockerfile", r"whl/cpu", "whl/cu128"))
    assert any("CUDA index" in p for p in _problems("Dockerfile.gpu", r"whl/cu\d+", "whl/cpu"))
    assert any("not a CUDA" in p for p in _problems("Dockerfile.gpu", r"whl/cu\d+", "whl/cu118"))


def test_environment_check_reports_drift():
    text = (CONTAINERS / "environment.yml").read_text()

    def problems(old: str, new: str) -> list[str]:
        broken = re.sub(old, new, text, count=1, flags=re.M)
        assert broken != text, old
        return check_environment(broken, PINS, env_dir=CONTAINERS, name="environment.yml")

    assert any("pandas is '==2.3.2'" in p for p in problems(r"pandas==2\.3\.3", "pandas==2.3.2"))
    assert any("liana is None" in p for p in problems(r"^\s*- liana==.*\n", ""))
    assert any("CPU index" in p for p in problems(r"^\s*- --extra-index-url .*\n", ""))
    assert any("python=3.11" in p for p in problems(r"python=3\.11", "python=3.12"))
    assert any("tmeflow itself" in p for p in problems(r"^\s*- \.\.\s*$", ""))


def test_container_tag_check_reports_other_versions():
    text = f'process QC {{\n    container "{IMAGE}:0.0.9"\n}}\nprocess X {{\n    container "{IMAGE}:{__version__}-gpu"\n}}\n'
    assert check_container_tags(text, __version__, "m.nf") == [f"m.nf: image {IMAGE}:0.0.9, package version is {__version__}"]
