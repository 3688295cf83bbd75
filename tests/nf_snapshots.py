"""Stub snapshots of the modules' nf-tests, derived from the modules (nf-test cannot run here).

Each module's nf-test has ``-stub`` tests that end in ``assert snapshot(process.out).match()``; nf-test
keeps the snapshot next to the test, ``tests/nextflow/modules/<module>.nf.test.snap``. Where Nextflow
runs, ``nf-test test`` compares the stub run's outputs with that file. Here the file is derived from
what decides a stub run's ``process.out``: the module's ``output:`` declarations (order, ``emit:``
names, tuples with the meta map, ``optional:``), its ``stub:`` block (the files it ``touch``es, gzips,
echoes or makes, named from the test's meta map and ``task.ext.prefix``) and ``versions.yml`` written by
the stub's heredoc. ``python tests/nf_snapshots.py`` rewrites the files; the tests fail when a committed
snapshot and a module's stub disagree.

The format is nf-test's (askimed/nf-test: ``SnapshotFile``, ``Channels``, ``PathConverter``):

- ``process.out`` is a map of every output channel by index (``"0"``, ``"1"``...) and by ``emit:`` name,
  keys sorted as strings (a TreeMap; nested maps such as ``meta`` too);
- a file is ``"<name>:md5,<md5 of its content>"``, where the content of a gzip file is its uncompressed
  content (``echo "" | gzip`` snapshots as ``md5("\\n")`` = 68b329da9893e34099c7d8ad5cb9c940); a folder
  is the list of its files; an empty file is d41d8cd98f00b204e9800998ecf8427e;
- an output matching several files is a list of them, sorted by name;
- the file is ``{"<test name>": {"content": [process.out], "meta": {...}, "timestamp": ...}}`` printed by
  Groovy's ``JsonOutput.prettyPrint`` (4 spaces; an empty list is ``[``, an indented blank line, ``]``),
  with no newline at the end.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import json
import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nf_static as ns

REPO = ns.REPO
TESTS_DIR = REPO / "tests" / "nextflow" / "modules"
SNAPSHOT_ASSERT = "snapshot(process.out).match()"
# Written into a new snapshot's "meta" (nf-test records the versions that wrote it; it does not compare them).
NF_TEST_VERSION = "0.9.2"
NEXTFLOW_VERSION = "25.10.0"


@dataclass(frozen=True)
class StubTest:
    """One ``-stub`` test of a module's nf-test: its name, the meta map of ``input[0]`` and its text."""

    name: str
    meta: dict[str, str] | None
    body: str


def _md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def stub_tests(nf_test: Path) -> list[StubTest]:
    """The ``-stub`` tests of an nf-test file, with the meta map their process block gives ``input[0]``."""
    text = nf_test.read_text()
    s = ns.scan(text)
    found = []
    for match in re.finditer(r"\btest\s*\(\s*", s.code):
        name = re.match(r"([\"'])(.*?)\1\s*\)\s*\{", text[match.end() :])
        if not name:
            continue
        open_at = match.end() + name.end() - 1
        body = text[open_at : ns.matching_close(s.code, open_at)]
        if not re.search(r"^\s*options\s+([\"'])[^\"']*-stub\b", body, flags=re.M):
            continue
        meta = re.search(r"input\[0\]\s*=\s*\[\s*\[([^\[\]]*)\]", body)
        pairs = dict(re.findall(r"(\w+)\s*:\s*'([^']*)'", meta.group(1))) if meta else None
        found.append(StubTest(name=name.group(2), meta=pairs, body=body))
    return found


def locked_versions(lock: Path = REPO / "requirements.lock") -> dict[str, str]:
    """``{distribution: version}`` of the lock the images install (what a stub's ``python -c`` prints)."""
    pins = re.findall(r"^([A-Za-z0-9_.-]+)==([^\s;\\]+)", lock.read_text(), flags=re.M)
    return {re.sub(r"[-_.]+", "-", name).lower(): version for name, version in pins}


def ext_prefix(process: str, meta: dict[str, str] | None, config_text: str) -> str | None:
    """``task.ext.prefix`` of the process (a ``{ "..." }`` closure in conf/modules.config), else ``meta.id``."""
    meta_values = {f"meta.{k}": v for k, v in (meta or {}).items()}
    for selector, body in ns.withname_blocks(config_text):
        if not ns.selector_matches(selector, process):
            continue
        setting = re.search(r"ext\.prefix\s*=\s*\{\s*\"([^\"]*)\"\s*\}", ns.scan(body).no_comments)
        if setting:
            return ns.interpolate(setting.group(1), meta_values)
        if "ext.prefix" in ns.scan(body).no_comments:
            raise NotImplementedError(f'{process}: ext.prefix other than {{ "..." }} in conf/modules.config')
    return (meta or {}).get("id")


def stub_files(module: Path, test: StubTest, config_text: str, version: str) -> dict[str, bytes | None]:
    """``{name: content}`` of what the module's stub block creates for the test (``None``: a folder)."""
    process, body = next(iter(ns.process_blocks(module.read_text()).items()))
    sections = ns.process_sections(body)
    stub = sections["stub"]
    shell = ns.triple_quoted(stub) or ""
    values = {f"meta.{k}": v for k, v in (test.meta or {}).items()} | {"task.process": process}
    prefix = ext_prefix(process, test.meta, config_text)
    if prefix is not None:
        values["prefix"] = prefix
    # Groovy locals of the stub that build shell lines from the inputs (ATLAS: one atlas per section)
    for local in re.findall(r"^\s*def\s+(\w+)\s*=", ns.scan(stub.split('"""', 1)[0]).no_comments, flags=re.M):
        if local == "prefix":
            continue
        if module.parent.name == "atlas" and re.search(r"input\[3\]\s*=\s*\[\s*\]", test.body):
            values[local] = ""  # no sections: no section atlases, no spatial cohort
        else:
            raise NotImplementedError(f"{module}: stub local {local!r} is not evaluated for test {test.name!r}")
    lines = ns.interpolate(shell, values).splitlines()
    locked = locked_versions()
    files: dict[str, bytes | None] = {}
    k = 0
    while k < len(lines):
        line = lines[k].strip()
        k += 1
        if not line:
            continue
        heredoc = re.fullmatch(r"cat\s+<<-?\s*(\w+)\s*>\s*(\S+)", line)
        if heredoc:
            out = []
            while lines[k].strip() != heredoc.group(1):
                out.append(lines[k])
                k += 1
            k += 1
            files[heredoc.group(2)] = _versions_yml(out, version, locked)
            continue
        words = shlex.split(line)
        if words[0] in ("touch", "mkdir"):
            for word in words[1:]:
                files[word] = b"" if words[0] == "touch" else None
        elif re.fullmatch(r"echo\s+(\"\"|'')\s*\|\s*gzip\s*>\s*\S+", line):
            files[words[-1]] = b"\n"  # nf-test hashes a gzip file's uncompressed content
        elif re.fullmatch(r"echo\s+'([^']*)'\s*>\s*\S+", line):
            files[words[-1]] = (words[1] + "\n").encode()
        else:
            raise NotImplementedError(f"{module}: stub line not understood: {line!r}")
    return files


def _versions_yml(lines: list[str], version: str, locked: dict[str, str]) -> bytes:
    """versions.yml as the stub's heredoc writes it (Nextflow strips the script's common indent)."""
    indent = min(len(line) - len(line.lstrip()) for line in lines if line.strip())
    out = []
    for line in lines:
        line = line[indent:]
        tool = re.fullmatch(r"(\s+)([\w.-]+):\s*\\?\$\(.*\)", line)
        if tool:
            name = tool.group(2)
            found = version if name == "tmeflow" else locked[re.sub(r"[-_.]+", "-", name).lower()]
            line = f"{tool.group(1)}{name}: {found}"
        out.append(line)
    return ("\n".join(out) + "\n").encode()


def _serialise(name: str, files: dict[str, bytes | None]) -> Any:
    content = files[name]
    if content is None:  # a folder: the list of its files (made empty by the stubs)
        return sorted(_serialise(f, files) for f in files if f.startswith(f"{name}/"))
    return f"{Path(name).name}:md5,{_md5(content)}"


def process_out(module: Path, test: StubTest, config_text: str, version: str) -> dict[str, list[Any]]:
    """The ``process.out`` a stub run of the test gives, as nf-test serialises it."""
    _, body = next(iter(ns.process_blocks(module.read_text()).items()))
    output = ns.scan(ns.process_sections(body)["output"]).no_comments
    files = stub_files(module, test, config_text, version)
    values = {f"meta.{k}": v for k, v in (test.meta or {}).items()}
    prefix = ext_prefix(next(iter(ns.process_blocks(module.read_text()))), test.meta, config_text)
    if prefix is not None:
        values["prefix"] = prefix
    channels: dict[str, list[Any]] = {}
    declarations = [line.strip() for line in output.splitlines() if line.strip()]
    for index, line in enumerate(declarations):
        pattern = re.search(r"path\s*\(?\s*\"([^\"]+)\"", line)
        emit = re.search(r"\bemit\s*:\s*(\w+)", line)
        if pattern is None or emit is None:
            raise NotImplementedError(f"{module}: output not understood: {line!r}")
        globs = ns.expand_braces(ns.interpolate(pattern.group(1), values))
        matched = sorted(f for f in files if "/" not in f and any(fnmatch.fnmatchcase(f, g) for g in globs))
        items: list[Any] = []
        if matched:
            value = _serialise(matched[0], files) if len(matched) == 1 else [_serialise(f, files) for f in matched]
            items = [[dict(sorted((test.meta or {}).items())), value]] if "val(meta)" in line else [value]
        elif not re.search(r"\boptional\s*:\s*true\b", line):
            raise AssertionError(f"{module}: stub creates no file for required output {pattern.group(1)!r}")
        channels[str(index)] = items
        channels[emit.group(1)] = items
    return dict(sorted(channels.items()))


def pretty(value: Any, depth: int = 0) -> str:
    """Groovy's ``JsonOutput.prettyPrint`` of ``value`` (4-space indent; blank indented line in ``[]``)."""
    pad, inner = "    " * depth, "    " * (depth + 1)
    if isinstance(value, dict):
        if not value:
            return "{\n" + inner + "\n" + pad + "}"
        items = [f"{inner}{json.dumps(k)}: {pretty(v, depth + 1)}" for k, v in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list):
        if not value:
            return "[\n" + inner + "\n" + pad + "]"
        return "[\n" + ",\n".join(inner + pretty(v, depth + 1) for v in value) + "\n" + pad + "]"
    return json.dumps(value)


def expected_snapshots(module: Path, nf_test: Path, config_text: str, version: str) -> dict[str, Any]:
    """``{test name: content}`` of every ``-stub`` test of the module's nf-test."""
    return {t.name: [process_out(module, t, config_text, version)] for t in stub_tests(nf_test)}


def render(contents: dict[str, Any], previous: dict[str, Any] | None = None) -> str:
    """The ``.nf.test.snap`` text; an entry whose content did not change keeps its meta and timestamp."""
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f") + "000"
    entries = {}
    for name in sorted(contents):
        old = (previous or {}).get(name)
        if old is not None and old.get("content") == contents[name]:
            entries[name] = {"content": contents[name], "meta": old["meta"], "timestamp": old["timestamp"]}
        else:
            meta = {"nf-test": NF_TEST_VERSION, "nextflow": NEXTFLOW_VERSION}
            entries[name] = {"content": contents[name], "meta": meta, "timestamp": now}
    return pretty(entries)


def check_snapshot(module: Path, nf_test: Path, config_text: str, version: str) -> list[str]:
    """The nf-test snapshots every ``-stub`` test's ``process.out`` and its committed snapshot holds
    exactly what the module's stub produces.
    """
    rel = nf_test.relative_to(REPO).as_posix() if nf_test.is_relative_to(REPO) else str(nf_test)
    tests = stub_tests(nf_test)
    problems = [
        f"{rel}: test {t.name!r} does not `assert {SNAPSHOT_ASSERT}`" for t in tests if SNAPSHOT_ASSERT not in t.body
    ]
    snap = nf_test.with_name(nf_test.name + ".snap")
    if not snap.is_file():
        return problems + [f"{rel}.snap: missing (python tests/nf_snapshots.py writes it)"]
    committed = json.loads(snap.read_text())
    expected = expected_snapshots(module, nf_test, config_text, version)
    for name in sorted(set(committed) | set(expected)):
        if name not in expected:
            problems.append(f"{rel}.snap: {name!r} is no -stub test of {rel}")
        elif name not in committed:
            problems.append(f"{rel}.snap: no snapshot of {name!r}")
        elif committed[name].get("content") != expected[name]:
            got, want = committed[name]["content"][0], expected[name][0]
            differ = sorted(k for k in set(got) | set(want) if got.get(k) != want.get(k))
            problems.append(f"{rel}.snap: {name!r} differs from the module's stub outputs in {differ}")
    if not problems and snap.read_text() != render(expected, committed):
        problems.append(f"{rel}.snap: not in nf-test's format (python tests/nf_snapshots.py rewrites it)")
    return problems


def write_snapshots(version: str) -> list[Path]:
    """Write every module's ``.nf.test.snap`` (what ``nf-test test --update-snapshot`` would)."""
    config = (REPO / "conf" / "modules.config").read_text()
    written = []
    for module, main in ns.module_dirs(REPO).items():
        nf_test = TESTS_DIR / f"{module}.nf.test"
        snap = nf_test.with_name(nf_test.name + ".snap")
        previous = json.loads(snap.read_text()) if snap.is_file() else None
        text = render(expected_snapshots(main, nf_test, config, version), previous)
        if not snap.is_file() or snap.read_text() != text:
            snap.write_text(text)
            written.append(snap)
    return written


if __name__ == "__main__":
    sys.path.insert(0, str(REPO / "src"))
    from tmeflow import __version__

    for path in write_snapshots(__version__):
        print(path.relative_to(REPO))
