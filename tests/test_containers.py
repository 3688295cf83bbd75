"""One source of versions: pyproject.toml, the locks, the images and the conda env agree.

- ``requirements.lock`` (every transitive runtime dependency, made by ``dev/lock.sh``) satisfies
  pyproject.toml's pins, is closed (every dependency of a locked package is locked) and is what the
  test environment has installed; ``requirements-test.lock`` adds only the test tools;
  ``requirements-gpu.lock`` has the same versions plus PyPI's CUDA 13 torch wheel and its CUDA wheels.
- containers/Dockerfile (CPU) installs torch's CPU build, then requirements.lock; containers/Dockerfile.gpu
  installs requirements-gpu.lock in hash-checking mode; containers/environment.yml (conda profile)
  installs requirements.lock with the CPU torch index. Images are labelled with the package version, and
  every module's container is tagged with it.
- The GPU torch pin is checked against what the registry serves (skipped without network to it).

The checks are plain functions returning problems; each is also fed a broken file.
"""

from __future__ import annotations

import importlib.metadata
import json
import re
import shlex
import tomllib
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tmeflow import __version__

REPO = Path(__file__).resolve().parents[1]
CONTAINERS = REPO / "containers"
IMAGE = "ghcr.io/tmeflow/tmeflow"
TORCH_CPU_INDEX = "https://download.pytorch.org/whl/cpu"
LOCKS = {
    "cpu": REPO / "requirements.lock",
    "test": REPO / "requirements-test.lock",
    "gpu": REPO / "requirements-gpu.lock",
}
# what PyPI's default torch wheel adds to the CPU set: the CUDA runtime as wheels
CUDA_PACKAGES = re.compile(r"^(nvidia-.*|cuda-.*|triton)$")
GPU_TORCH_WHEEL = "torch-2.13.0-cp311-cp311-manylinux_2_28_x86_64.whl"

PIP_TOOLING = {"pip", "setuptools", "wheel"}

# pip options that take a value (the value is not a requirement)
_PIP_VALUE_OPTIONS = {
    "-i",
    "--index-url",
    "--extra-index-url",
    "-f",
    "--find-links",
    "-r",
    "--requirement",
    "-c",
    "--constraint",
    "-t",
    "--target",
    "--prefix",
    "--root",
    "--platform",
    "--python-version",
    "--implementation",
    "--abi",
    "--src",
    "-e",
    "--editable",
    "--progress-bar",
    "--cache-dir",
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


# --------------------------------------------------------------------------------------------------
# The locks
# --------------------------------------------------------------------------------------------------


def lock_pins(text: str, name: str) -> tuple[dict[str, str], list[str]]:
    """``{canonical name: version}`` of a lock's ``name==version`` lines (hash and comment lines skipped)."""
    pins, problems = {}, []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip().rstrip("\\").strip()
        if not line or line.startswith("--"):
            continue
        match = re.fullmatch(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line)
        if not match:
            problems.append(f"{name}: not an exact pin: {line!r}")
            continue
        package = canonicalize_name(match.group(1))
        if package in pins:
            problems.append(f"{name}: {package} is pinned twice")
        pins[package] = match.group(2)
    return pins, problems


def check_lock_satisfies_pyproject(lock: dict[str, str], pins: dict[str, str], name: str) -> list[str]:
    problems = []
    for package, specifier in pins.items():
        if package not in lock:
            problems.append(f"{name}: {package}{specifier} (pyproject.toml) is not locked")
        elif lock[package] not in SpecifierSet(specifier):
            problems.append(f"{name}: {package}=={lock[package]}, pyproject.toml asks {package}{specifier}")
    return problems


def requirements_of(package: str, extras: set[str]) -> list[Requirement]:
    """The installed distribution's requirements that apply here (with the requested extras)."""
    requirements = []
    for text in importlib.metadata.requires(package) or []:
        requirement = Requirement(text)
        marker = requirement.marker
        if marker is None or any(marker.evaluate({"extra": extra}) for extra in extras | {""}):
            requirements.append(requirement)
    return requirements


def check_lock_is_closed(lock: dict[str, str], roots: list[Requirement], name: str) -> list[str]:
    """Every dependency of every locked package (as installed) is locked at a version that satisfies it."""
    problems, extras, seen = [], {}, set()
    queue = list(roots)
    while queue:
        requirement = queue.pop()
        package = canonicalize_name(requirement.name)
        wanted = extras.setdefault(package, set())
        if (package, frozenset(requirement.extras)) in seen:
            continue
        seen.add((package, frozenset(requirement.extras)))
        wanted |= requirement.extras
        if package not in lock:
            problems.append(f"{name}: {requirement} is needed but not locked")
            continue
        if lock[package] not in requirement.specifier:
            problems.append(f"{name}: {package}=={lock[package]} does not satisfy {requirement}")
        queue += requirements_of(package, wanted)
    return problems


def check_environment_matches_lock(lock: dict[str, str], name: str) -> list[str]:
    problems = []
    for package, version in lock.items():
        try:
            installed = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            problems.append(f"{name}: {package}=={version} is locked but not installed")
            continue
        if installed.split("+")[0] != version:
            problems.append(f"{name}: {package} {installed} is installed, the lock says {version}")
    return problems


def check_gpu_lock(gpu: dict[str, str], cpu: dict[str, str], name: str) -> list[str]:
    problems = []
    for package in sorted(set(gpu) | set(cpu)):
        if package in gpu and package in cpu and gpu[package] != cpu[package]:
            problems.append(f"{name}: {package}=={gpu[package]}, requirements.lock has {cpu[package]}")
        elif package not in gpu:
            problems.append(f"{name}: {package} (requirements.lock) is missing")
        elif package not in cpu and not CUDA_PACKAGES.match(package):
            problems.append(f"{name}: {package} is not in requirements.lock and is not a CUDA wheel")
    return problems


# --------------------------------------------------------------------------------------------------
# Dockerfiles and environment.yml
# --------------------------------------------------------------------------------------------------


def copied_files(text: str) -> set[str]:
    """Repository files the Dockerfile COPYs (sources of COPY instructions)."""
    files = set()
    for instruction, arguments in dockerfile_instructions(text):
        if instruction == "COPY":
            files.update(arguments.split()[:-1])
    return files


def lock_installs(installs: list[dict]) -> list[str]:
    return [
        Path(r).name
        for install in installs
        for r in install["options"].get("-r", []) + install["options"].get("--requirement", [])
    ]


def check_dockerfile(text: str, locks: dict[str, dict[str, str]], *, gpu: bool, version: str, name: str) -> list[str]:
    problems = []
    instructions = dockerfile_instructions(text)
    installs = [
        i
        for i in pip_installs(text)
        if i["paths"]
        or i["options"].get("-r")
        or {canonicalize_name(Requirement(r).name) for r in i["requirements"]} - PIP_TOOLING
    ]
    lock_file = "requirements-gpu.lock" if gpu else "requirements.lock"
    lock = locks["gpu" if gpu else "cpu"]
    if lock_installs(installs) != [lock_file]:
        problems.append(f"{name}: installs the locks {lock_installs(installs)}, expected exactly [{lock_file!r}]")
    if lock_file not in copied_files(text):
        problems.append(f"{name}: {lock_file} is not copied into the image")
    loose = [r for install in installs for r in install["requirements"]]
    loose_pins, parse_problems = requirement_map(loose, name)
    problems += parse_problems
    for package, specifier in loose_pins.items():
        if package != "torch" or gpu:
            problems.append(f"{name}: installs {package}{specifier} outside the lock")
        elif specifier != f"=={lock.get('torch')}":
            problems.append(f"{name}: torch{specifier}, the lock pins torch=={lock.get('torch')}")

    base = next((args.split()[0] for instruction, args in instructions if instruction == "FROM"), "")
    if not base.startswith("python:3.11"):
        problems.append(f"{name}: base image {base!r} is not python:3.11*")
    if gpu:
        if any(index_of(i) for i in installs):
            problems.append(f"{name}: torch must be PyPI's CUDA wheel of the lock, not from another index")
        if not any("--require-hashes" in i["flags"] for i in installs if i["options"].get("-r")):
            problems.append(f"{name}: install {lock_file} with --require-hashes")
    else:
        torch_installs = [i for i in installs if "torch" in requirement_map(i["requirements"], name)[0]]
        if len(torch_installs) != 1 or index_of(torch_installs[0]) != TORCH_CPU_INDEX:
            problems.append(f"{name}: torch must be installed once, from the CPU index {TORCH_CPU_INDEX}")
        elif installs.index(torch_installs[0]) != 0:
            problems.append(f"{name}: torch must be the first pip install (the lock then finds it satisfied)")

    local = [i for i in installs if i["paths"]]
    if not local or "--no-deps" not in local[-1]["flags"]:
        problems.append(f"{name}: the package itself is not installed (pip install --no-deps <copied source>)")
    if not re.search(r"\bpip check\b", text):
        problems.append(f"{name}: no `pip check` after the installs")
    labels = re.findall(r'org\.opencontainers\.image\.version="?([^"\s]+)"?', text)
    if labels != [version]:
        problems.append(f"{name}: org.opencontainers.image.version label is {labels}, package version is {version}")
    return problems


def check_environment(text: str, *, env_dir: Path, name: str) -> list[str]:
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
    if install["requirements"]:
        problems.append(f"{name}: installs {install['requirements']} outside the lock")
    locks = [(env_dir / path).resolve() for path in install["options"].get("-r", [])]
    if locks != [(REPO / "requirements.lock").resolve()]:
        problems.append(f"{name}: must install exactly -r ../requirements.lock, not {install['options'].get('-r', [])}")
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
LOCK_TEXT = {kind: path.read_text() for kind, path in LOCKS.items()}
LOCK = {kind: lock_pins(text, LOCKS[kind].name)[0] for kind, text in LOCK_TEXT.items()}
DOCKERFILES = {"Dockerfile": False, "Dockerfile.gpu": True}


def test_pyproject_pins_everything():
    assert PINS["torch"].startswith("==")
    for package, specifier in PINS.items():
        assert specifier, f"{package} is not pinned in pyproject.toml"


@pytest.mark.parametrize("kind", sorted(LOCKS))
def test_locks_are_exact_pins_made_by_the_script(kind):
    assert lock_pins(LOCK_TEXT[kind], LOCKS[kind].name)[1] == []
    assert "generated by dev/lock.sh" in LOCK_TEXT[kind].splitlines()[0]
    assert "+cpu" not in LOCK_TEXT[kind], "a local build label is not on PyPI"


@pytest.mark.parametrize("kind", ["cpu", "gpu"])
def test_locks_satisfy_pyproject(kind):
    assert check_lock_satisfies_pyproject(LOCK[kind], PINS, LOCKS[kind].name) == []


def test_lock_is_closed_over_every_transitive_dependency():
    roots = [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]
    assert check_lock_is_closed(LOCK["cpu"], roots, "requirements.lock") == []


def test_test_lock_adds_only_the_test_tools():
    test_extras = [
        Requirement(r)
        for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["optional-dependencies"]["test"]
    ]
    assert set(LOCK["test"]).isdisjoint(LOCK["cpu"])
    both = {**LOCK["cpu"], **LOCK["test"]}
    assert check_lock_is_closed(both, test_extras, "requirements-test.lock") == []


def test_environment_is_installed_from_the_locks():
    assert check_environment_matches_lock({**LOCK["cpu"], **LOCK["test"]}, "locks") == []


def test_gpu_lock_differs_from_the_cpu_lock_only_by_cuda_wheels():
    assert check_gpu_lock(LOCK["gpu"], LOCK["cpu"], "requirements-gpu.lock") == []
    assert {p for p in LOCK["gpu"] if p not in LOCK["cpu"]} >= {"nvidia-cudnn-cu13", "triton"}


def test_lock_checks_report_drift():
    broken = {**LOCK["cpu"], "numpy": "2.4.5"}
    assert any(
        "numpy==2.4.5, pyproject.toml asks numpy==2.4.6" in p
        for p in check_lock_satisfies_pyproject(broken, PINS, "lock")
    )
    missing = {k: v for k, v in LOCK["cpu"].items() if k != "scipy"}
    roots = [Requirement("scanpy==1.11.5")]
    assert any(p.startswith("lock: scipy") and "not locked" in p for p in check_lock_is_closed(missing, roots, "lock"))
    assert any(
        "numpy 2.4.6 is installed, the lock says 2.4.5" in p
        for p in check_environment_matches_lock({"numpy": "2.4.5"}, "lock")
    )
    assert any(
        "numpy==2.4.5, requirements.lock has 2.4.6" in p
        for p in check_gpu_lock({**LOCK["gpu"], "numpy": "2.4.5"}, LOCK["cpu"], "gpu")
    )
    assert any(
        "not a CUDA wheel" in p for p in check_gpu_lock({**LOCK["gpu"], "requests-oauthlib": "1"}, LOCK["cpu"], "gpu")
    )
    assert lock_pins("numpy>=2\n", "lock")[1] == ["lock: not an exact pin: 'numpy>=2'"]


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_dockerfile_installs_the_lock(dockerfile):
    text = (CONTAINERS / dockerfile).read_text()
    assert check_dockerfile(text, LOCK, gpu=DOCKERFILES[dockerfile], version=__version__, name=dockerfile) == []


def test_environment_yml_installs_the_lock():
    text = (CONTAINERS / "environment.yml").read_text()
    assert check_environment(text, env_dir=CONTAINERS, name="environment.yml") == []


def test_module_and_config_images_are_tagged_with_package_version():
    files = sorted((REPO / "modules").rglob("*.nf")) + [
        REPO / "nextflow.config",
        *sorted((REPO / "conf").glob("*.config")),
    ]
    assert files
    for path in files:
        assert check_container_tags(path.read_text(), __version__, path.name) == []
    # The image is named once, in conf/containers.config (tests/test_nextflow_containers.py)
    for path in sorted((REPO / "modules").rglob("main.nf")):
        assert not re.findall(r"^\s*container\b", path.read_text(), flags=re.M), path


def _problems(dockerfile: str, old: str, new: str) -> list[str]:
    text = (CONTAINERS / dockerfile).read_text()
    broken = re.sub(old, new, text, count=1, flags=re.M)
    assert broken != text, old
    return check_dockerfile(broken, LOCK, gpu=DOCKERFILES[dockerfile], version=__version__, name=dockerfile)


@pytest.mark.parametrize("dockerfile", sorted(DOCKERFILES))
def test_dockerfile_check_reports_drift(dockerfile):
    lock = "requirements-gpu.lock" if DOCKERFILES[dockerfile] else "requirements.lock"
    assert any("installs the locks" in p for p in _problems(dockerfile, rf"-r /opt/tmeflow/{lock}", "numpy==2.4.6"))
    assert any(
        "outside the lock" in p
        for p in _problems(dockerfile, rf"-r /opt/tmeflow/{lock}", f"-r /opt/tmeflow/{lock} gtfparse==2.9.1")
    )
    assert any("is not copied" in p for p in _problems(dockerfile, rf"^COPY {lock} .*$", ""))
    assert any(
        "image.version label" in p for p in _problems(dockerfile, r'image\.version="[^"]+"', 'image.version="0.0.1"')
    )
    assert any("pip check" in p for p in _problems(dockerfile, r"pip check", "true"))
    assert any(
        "--no-deps" in p
        for p in _problems(dockerfile, r"pip install --no-deps /opt/tmeflow", "pip install /opt/tmeflow")
    )


def test_dockerfile_check_reports_wrong_torch_build():
    assert any(
        "CPU index" in p for p in _problems("Dockerfile", r" --index-url https://download\.pytorch\.org/whl/cpu", "")
    )
    assert any(
        "the lock pins torch==2.13.0" in p
        for p in _problems("Dockerfile", r"pip install torch==2\.13\.0", "pip install torch==2.12.0")
    )
    assert any("--require-hashes" in p for p in _problems("Dockerfile.gpu", r" --require-hashes", ""))
    assert any(
        "outside the lock" in p
        for p in _problems(
            "Dockerfile.gpu",
            r"^RUN pip install --require",
            "RUN pip install torch==2.13.0 \\\n    \\&\\& pip install --require",
        )
    )


def test_environment_check_reports_drift():
    text = (CONTAINERS / "environment.yml").read_text()

    def problems(old: str, new: str) -> list[str]:
        broken = re.sub(old, new, text, count=1, flags=re.M)
        assert broken != text, old
        return check_environment(broken, env_dir=CONTAINERS, name="environment.yml")

    assert any(
        "outside the lock" in p
        for p in problems(r"^(\s*)- -r \.\./requirements\.lock", r"\1- -r ../requirements.lock\n\1- pandas==2.3.2")
    )
    assert any("exactly -r ../requirements.lock" in p for p in problems(r"^\s*- -r \.\./requirements\.lock\n", ""))
    assert any("CPU index" in p for p in problems(r"^\s*- --extra-index-url .*\n", ""))
    assert any("python=3.11" in p for p in problems(r"python=3\.11", "python=3.12"))
    assert any("tmeflow itself" in p for p in problems(r"^\s*- \.\.\s*$", ""))


def test_container_tag_check_reports_other_versions():
    text = (
        f'process QC {{\n    container "{IMAGE}:0.0.9"\n}}\n'
        f'process X {{\n    container "{IMAGE}:{__version__}-gpu"\n}}\n'
    )
    assert check_container_tags(text, __version__, "m.nf") == [
        f"m.nf: image {IMAGE}:0.0.9, package version is {__version__}"
    ]


# --------------------------------------------------------------------------------------------------
# The GPU torch pin against the registry
# --------------------------------------------------------------------------------------------------


def _registry_file(project: str, filename: str) -> dict:
    request = urllib.request.Request(
        f"https://pypi.org/simple/{project}/", headers={"Accept": "application/vnd.pypi.simple.v1+json"}
    )
    try:
        files = json.load(urllib.request.urlopen(request, timeout=30))["files"]
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        pytest.skip(f"the package registry is not reachable ({error})")
    matches = [f for f in files if f["filename"] == filename]
    assert matches, f"the registry serves no {filename}"
    return matches[0]


def test_gpu_torch_pin_is_the_registry_wheel_built_on_cuda_13():
    """The GPU lock's torch is PyPI's cp311 x86_64 wheel: its sha256 is locked and its CUDA wheels are too."""
    wheel = _registry_file("torch", GPU_TORCH_WHEEL)
    assert not wheel.get("yanked")
    assert f"--hash=sha256:{wheel['hashes']['sha256']}" in LOCK_TEXT["gpu"]
    assert LOCK["gpu"]["torch"] == GPU_TORCH_WHEEL.split("-")[1]
    try:
        metadata = urllib.request.urlopen(wheel["url"] + ".metadata", timeout=30).read().decode()
    except (urllib.error.URLError, TimeoutError, OSError) as error:
        pytest.skip(f"the package registry is not reachable ({error})")
    environment = {
        "platform_system": "Linux",
        "python_version": "3.11",
        "sys_platform": "linux",
        "platform_machine": "x86_64",
    }
    cuda = [
        Requirement(line.removeprefix("Requires-Dist: "))
        for line in metadata.splitlines()
        if line.startswith("Requires-Dist: ") and re.match(r"Requires-Dist: (nvidia|cuda|triton)", line)
    ]
    cuda = [r for r in cuda if r.marker is None or r.marker.evaluate(environment)]
    assert any(canonicalize_name(r.name) == "cuda-toolkit" and str(r.specifier).startswith("==13.0") for r in cuda), (
        cuda
    )
    for requirement in cuda:
        package = canonicalize_name(requirement.name)
        assert package in LOCK["gpu"], f"{requirement} is not in requirements-gpu.lock"
        assert LOCK["gpu"][package] in requirement.specifier, f"{package}=={LOCK['gpu'][package]} vs {requirement}"
