"""Static checks for Nextflow's strict syntax and current conventions (rule-based).

Nextflow cannot run where pytest runs, and no parser of Nextflow's own grammar is available from
the package registries, so these checks are rules over the light lexer of :mod:`nf_static`
(comments and string contents blanked). Like every ``check_*`` there, each returns a list of
problems, and each is fed a broken file in ``test_nextflow_strict.py``.

What they hold the pipeline to:

- config files declare nothing (``def``, ``import``, functions, classes): the strict config parser
  (the default from Nextflow 26.04, and what ``nextflow lint`` applies from 25.04) rejects them;
- channel factories are called on ``channel``, not ``Channel`` (deprecated in 25.10);
- no deprecated config option (:data:`DEPRECATED_CONFIG_OPTIONS`, with their source);
- sample metadata reaches a shell command line quoted (``shellQuote(meta.x)``), unless the
  samplesheet schema restricts the column to characters a shell passes through unchanged;
- ``manifest.nextflowVersion`` admits no release older than what the syntax and the plugins need
  (:data:`NEXTFLOW_FLOORS`) and caps no newer one; nf-schema is a 2.x release >= 2.7.0;
- GPUs: exactly one GPU flag per container engine, only under ``-profile gpu``.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import nf_static as ns

# Deprecated or removed config options: option path -> (replacement, source). Sources:
#   [deprecations] https://docs.seqera.io/nextflow/deprecations
#   [flags]        https://docs.seqera.io/nextflow/reference/feature-flags
#   [manifest]     https://docs.seqera.io/nextflow/reference/config/manifest
DEPRECATED_CONFIG_OPTIONS: dict[str, tuple[str, str]] = {
    "manifest.author": ("manifest.contributors", "[manifest] deprecated in 24.10"),
    "manifest.defaultBranch": ("nothing (detected from the remote repository)", "[manifest] deprecated in 26.04"),
    "nextflow.enable.configProcessNamesValidation": (
        "the strict syntax (validates selectors)",
        "[flags] deprecated in 25.10.0",
    ),
    "nextflow.enable.dsl": ("nothing (DSL2 is the only one)", "[flags] deprecated in 25.04.0"),
    "nextflow.enable.strict": ("the strict syntax", "[flags] deprecated in 26.04.0"),
}

# Minimum Nextflow release per feature the pipeline uses: (major, minor, patch), and why.
NEXTFLOW_FLOORS: dict[str, tuple[tuple[int, int, int], str]] = {
    "topic channels": ((25, 4, 0), "channel.topic without nextflow.preview.topic"),
    "strict syntax": ((25, 4, 0), "`nextflow lint` and the strict config parser"),
    "nf-schema >= 2.6.0": (
        (25, 10, 0),
        "nf-schema 2.6.0 CHANGELOG: 'the minimal compatible Nextflow version is 25.10.0'",
    ),
}
# nf-schema: 2.7.0 casts command-line parameters to their schema types under the strict syntax
# (CHANGELOG 2.7.0/2.7.2); 3.0.0 drops the configured help message (validation.help) used here.
NF_SCHEMA_MIN = (2, 7, 0)
NF_SCHEMA_BELOW = (3, 0, 0)

# Characters a POSIX shell passes through unquoted in a word (no globbing, no expansion).
SHELL_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._-+,:/@%=")


def _line(text: str, position: int) -> int:
    return text.count("\n", 0, position) + 1


# --------------------------------------------------------------------------------------------------
# Config structure: blocks, closures, assignments
# --------------------------------------------------------------------------------------------------


def _brace_kinds(code: str) -> list[tuple[int, int, str, str]]:
    """``(open, close, kind, name)`` of every ``{...}`` of config code: kind ``closure`` (after
    ``=``, ``(``, ``,``, ``[``, ``?``, ``:``, ``->``) or ``block`` (after a name, a selector such as
    ``withLabel:x`` or ``withName:'X'``); name is the block's name (``process``, ``withLabel``...).
    """
    found = []
    for match in re.finditer(r"\{", code):
        if code[match.start() - 1 : match.start()] == "$":
            continue  # a GString interpolation
        close = ns.matching_close(code, match.start())
        before = code[: match.start()].rstrip()
        selector = re.search(r"\b(withLabel|withName)\s*:\s*(?:['\"][^'\"\n]*['\"]|[\w!|.*]+)$", before)
        if selector:
            found.append((match.start(), close, "block", selector.group(1)))
            continue
        if not before or before[-1] in "=(,[?:" or before.endswith("->"):
            found.append((match.start(), close, "closure", ""))
            continue
        name = re.search(r"([A-Za-z_][\w.]*)$", before)
        found.append((match.start(), close, "block", name.group(1) if name else ""))
    return found


def _in_closure(position: int, braces: list[tuple[int, int, str, str]]) -> bool:
    return any(start < position < close and kind == "closure" for start, close, kind, _ in braces)


def check_config_declarations(text: str, name: str = "<config>") -> list[str]:
    """No ``def``/typed variable, function, ``import`` or ``class`` declaration outside closures:
    the strict config syntax allows only assignments, blocks and ``includeConfig`` there.
    """
    code = ns.scan(text, name).code
    braces = _brace_kinds(code)
    declaration = re.compile(
        r"^[ \t]*(?:(def|import|class)\b|(?:String|int|Integer|long|Long|boolean|Boolean|Map|List|double)\s+\w+\s*=)",
        flags=re.M,
    )
    return [
        f"{name}:{_line(text, m.start())}: declaration `{text[m.start() : text.find(chr(10), m.start())].strip()}` "
        "(the strict config syntax allows only assignments, blocks and includeConfig)"
        for m in declaration.finditer(code)
        if not _in_closure(m.start(), braces)
    ]


def config_assignments(text: str) -> list[tuple[str, int]]:
    """``(option path, line)`` of every assignment of a config, with ``manifest { author = x }``
    and ``manifest.author = x`` both as ``manifest.author``; profile names and process selectors
    are left out of the path (``profiles { debug { process.x = 1 } }`` -> ``process.x``).
    """
    code = ns.scan(text).code
    braces = _brace_kinds(code)
    found = []
    for match in re.finditer(r"^[ \t]*([A-Za-z_][\w.]*)\s*=(?!=)", code, flags=re.M):
        if _in_closure(match.start(), braces):
            continue
        enclosing = sorted(
            (start, kind, block) for start, close, kind, block in braces if start < match.start() < close
        )
        path: list[str] = []
        for k, (_, _, block) in enumerate(enclosing):
            parent = enclosing[k - 1][2] if k else ""
            if parent == "profiles" or block in ("withLabel", "withName", "profiles"):
                continue
            path.append(block)
        found.append((".".join([*path, match.group(1)]), _line(text, match.start())))
    return found


def check_deprecated_options(text: str, name: str = "<config>") -> list[str]:
    """No option of :data:`DEPRECATED_CONFIG_OPTIONS` is set."""
    return [
        f"{name}:{line}: {option} is deprecated ({DEPRECATED_CONFIG_OPTIONS[option][1]}); "
        f"use {DEPRECATED_CONFIG_OPTIONS[option][0]}"
        for option, line in config_assignments(text)
        if option in DEPRECATED_CONFIG_OPTIONS
    ]


# --------------------------------------------------------------------------------------------------
# Scripts: channel factories, quoted metadata
# --------------------------------------------------------------------------------------------------


def check_channel_factory(text: str, name: str = "<script>") -> list[str]:
    """Channel factories on ``channel`` (``Channel`` is deprecated from Nextflow 25.10)."""
    code = ns.scan(text, name).code
    return [
        f"{name}:{_line(text, m.start())}: `Channel.{m.group(1)}` -> `channel.{m.group(1)}` (Channel is deprecated)"
        for m in re.finditer(r"(?<![\w.])Channel\s*\.\s*(\w+)", code)
    ]


def shell_safe_columns(input_schema: dict[str, Any]) -> set[str]:
    """``meta`` keys whose samplesheet column cannot hold a character a shell would act on: an
    enum of safe words, or a pattern of only safe characters (``^[A-Za-z0-9][A-Za-z0-9._-]*$``);
    a number (nf-schema casts ``101`` to an integer) is safe too.
    """
    safe = set()
    for spec in input_schema["items"]["properties"].values():
        keys = spec.get("meta", [])
        enum = spec.get("enum")
        pattern = spec.get("pattern", "")
        ok = False
        if enum:
            ok = all(set(str(v)) <= SHELL_SAFE and not str(v).startswith("-") for v in enum)
        elif re.fullmatch(r"\^(\[[A-Za-z0-9._\-]+\])(\[[A-Za-z0-9._\-]+\][*+])?\$", pattern):
            classes = re.findall(r"\[([^\]]+)\]", pattern)
            first_ok = "-" not in classes[0].replace("A-Z", "").replace("a-z", "").replace("0-9", "")
            ok = first_ok
        if ok:
            safe.update(keys)
    return safe


def check_meta_quoted(module_text: str, safe_keys: set[str], name: str = "<module>") -> list[str]:
    """Every ``${meta.x}`` / ``$meta.x`` in a script or stub is ``${shellQuote(meta.x)}`` unless
    ``x`` is in ``safe_keys`` (:func:`shell_safe_columns`).
    """
    problems = []
    for process, body in ns.process_blocks(module_text).items():
        sections = ns.process_sections(body)
        for section in ("script", "stub", "shell"):
            script = ns.triple_quoted(sections.get(section, "")) or ""
            for match in re.finditer(r"\$\{([^{}]*)\}|\$(meta\.\w+)", script):
                expr = (match.group(1) or match.group(2)).strip()
                for key in re.findall(r"\bmeta\.(\w+)", expr):
                    if key in safe_keys:
                        continue
                    if re.fullmatch(rf"shellQuote\(\s*meta\.{key}\s*\)", expr):
                        continue
                    problems.append(
                        f"{name}: {process} {section}: `{match.group(0)}` reaches the shell unquoted; "
                        f"write ${{shellQuote(meta.{key})}}"
                    )
    return problems


shell_quote = ns.shell_quote


# --------------------------------------------------------------------------------------------------
# Versions: Nextflow floor, no cap; nf-schema
# --------------------------------------------------------------------------------------------------


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text)[:3])


def nf_schema_version(config_text: str) -> tuple[int, ...] | None:
    match = re.search(r"id\s+['\"]nf-schema@([\d.]+)['\"]", ns.scan(config_text).no_comments)
    return _version(match.group(1)) if match else None


def check_versions(config_text: str, name: str = "nextflow.config") -> list[str]:
    """``manifest.nextflowVersion`` is ``!>=X`` (strict: refuse older releases) with no upper
    bound, X at least every floor of :data:`NEXTFLOW_FLOORS`; nf-schema pinned to a 2.x >= 2.7.0.
    """
    problems = []
    match = re.search(r"\bnextflowVersion\s*=\s*['\"]([^'\"]*)['\"]", ns.scan(config_text).no_comments)
    if not match:
        return [f"{name}: manifest.nextflowVersion is not set"]
    spec = match.group(1).strip()
    if not spec.startswith("!"):
        problems.append(f"{name}: nextflowVersion '{spec}' only warns on an older Nextflow; prefix it with '!'")
    if re.search(r"<|,", spec):
        problems.append(f"{name}: nextflowVersion '{spec}' caps newer releases (26.x runs this pipeline)")
    floor_match = re.search(r">=\s*([\d.]+)", spec)
    if not floor_match:
        problems.append(f"{name}: nextflowVersion '{spec}' sets no minimum (>=)")
    else:
        floor = _version(floor_match.group(1))
        for feature, (needed, why) in NEXTFLOW_FLOORS.items():
            if feature.startswith("nf-schema") and (nf_schema_version(config_text) or (0,)) < (2, 6, 0):
                continue
            if floor < needed:
                problems.append(
                    f"{name}: nextflowVersion allows {'.'.join(map(str, floor))}, but {feature} needs "
                    f"{'.'.join(map(str, needed))} ({why})"
                )
    plugin = nf_schema_version(config_text)
    if plugin is None:
        problems.append(f"{name}: no pinned nf-schema plugin (id 'nf-schema@x.y.z')")
    elif not NF_SCHEMA_MIN <= plugin < NF_SCHEMA_BELOW:
        problems.append(
            f"{name}: nf-schema@{'.'.join(map(str, plugin))}: need >= {'.'.join(map(str, NF_SCHEMA_MIN))} "
            f"(parameters cast to schema types under the strict syntax) and < 3 (validation.help)"
        )
    return problems


# --------------------------------------------------------------------------------------------------
# GPUs
# --------------------------------------------------------------------------------------------------

# One GPU flag per container engine (docs.seqera.io/nextflow/reference/process/directives/accelerator:
# Docker needs --gpus all, Singularity/Apptainer --nv; Podman takes the CDI device).
GPU_FLAGS = {"docker": "--gpus", "podman": "--device nvidia.com/gpu", "singularity": "--nv", "apptainer": "--nv"}
GPU_IMAGE = re.compile(r"ghcr\.io/tmeflow/tmeflow:[\w.]+-gpu")


def check_gpu_routing(repo: Path = ns.REPO) -> list[str]:
    """GPUs come from conf/gpu.config only (``-profile gpu``): the CUDA image and one GPU for
    label process_gpu and, with scVI, INTEGRATE; exactly one GPU flag per container engine
    (no engine-wide runOptions), ``--gres=gpu:1`` under SLURM, a typed accelerator on Google.
    """
    problems = []
    config = (repo / "nextflow.config").read_text()
    gpu_profile = ns.scan(ns.profile_blocks(config).get("gpu", "")).no_comments
    if not re.search(r"\bincludeConfig\s+['\"]conf/gpu\.config['\"]", gpu_profile):
        problems.append("nextflow.config: profile gpu does not include conf/gpu.config")
    for path in ns.config_files(repo):
        code = ns.scan(path.read_text()).no_comments
        rel = path.relative_to(repo).as_posix()
        for match in re.finditer(r"\b(\w+)\.runOptions\s*=\s*(['\"])(.*?)\2", code):
            engine, options = match.group(1), match.group(3)
            if engine in GPU_FLAGS and GPU_FLAGS[engine] in options:
                problems.append(
                    f"{rel}: {engine}.runOptions gives every task a GPU ({options!r}); "
                    "GPU flags belong to conf/gpu.config"
                )
        if rel != "conf/gpu.config" and GPU_IMAGE.search(code):
            problems.append(f"{rel}: names the CUDA image; only conf/gpu.config may (-profile gpu)")
    gpu_config = repo / "conf" / "gpu.config"
    if not gpu_config.is_file():
        return problems + ["conf/gpu.config: missing"]
    code = ns.scan(gpu_config.read_text()).no_comments
    blocks = {f"withLabel:{label}": body for label, body in ns._label_blocks(code)}
    blocks.update({f"withName:{selector}": body for selector, body in ns.withname_blocks(code)})
    for selector in ("withLabel:process_gpu", "withName:INTEGRATE"):
        body = blocks.get(selector)
        if body is None:
            problems.append(f"conf/gpu.config: no {selector} block")
            continue
        settings = {
            m.group(1): m.group(2)
            for m in re.finditer(r"^\s*(\w+)\s*=\s*(.*?)(?=^\s*\w+\s*=|\Z)", body, flags=re.M | re.S)
        }
        for directive in ("container", "accelerator", "containerOptions", "clusterOptions", "machineType"):
            if directive not in settings:
                problems.append(f"conf/gpu.config: {selector} sets no {directive}")
        if not GPU_IMAGE.search(settings.get("container", "")):
            problems.append(f"conf/gpu.config: {selector} does not run the CUDA image")
        options = settings.get("containerOptions", "")
        for engine, flag in GPU_FLAGS.items():
            given = re.findall(r"['\"]([^'\"]*)['\"]", options)
            with_flag = [g for g in given if flag in g]
            if len(with_flag) != 1 or with_flag[0].count(flag.split()[0]) != 1:
                problems.append(
                    f"conf/gpu.config: {selector} gives {engine} {len(with_flag)} options with {flag} "
                    "(want exactly one)"
                )
            if not re.search(rf"['\"]{engine}['\"]", options):
                problems.append(f"conf/gpu.config: {selector} containerOptions do not test for {engine}")
        if "--gres=gpu:1" not in settings.get("clusterOptions", "") or "slurm" not in settings.get(
            "clusterOptions", ""
        ):
            problems.append(f"conf/gpu.config: {selector} does not ask SLURM for --gres=gpu:1")
        if not re.search(r"type\s*:\s*['\"][\w-]+['\"]", settings.get("accelerator", "")):
            problems.append(f"conf/gpu.config: {selector} accelerator has no type for Google Batch")
        if selector == "withName:INTEGRATE":
            for directive in ("container", "accelerator", "containerOptions", "clusterOptions"):
                if "batch_correction" not in settings.get(directive, ""):
                    problems.append(
                        f"conf/gpu.config: INTEGRATE {directive} does not depend on batch_correction (scVI only)"
                    )
    return problems
