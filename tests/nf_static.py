"""Static checks of the Nextflow side of tmeflow (Nextflow cannot run where pytest runs).

Every ``check_*`` function takes paths or text and returns a list of problems (strings; empty when
all is well), so that a test can feed it a deliberately broken module and see the problem reported.

What is understood of Groovy here is deliberately small: comments, the five string forms (with
``${...}`` interpolation), brackets, ``include { X as Y } from '...'``, ``process X {``, the
``script:`` block of a process, ``params { ... }`` blocks and ``withName: 'X' { ext.args = ... }``.
Full Groovy syntax is checked separately with ``groovy-parser`` (:func:`check_groovy_parses`).
"""

from __future__ import annotations

import argparse
import contextlib
import fnmatch
import hashlib
import io
import json
import os
import re
import shlex
import shutil
import subprocess
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]

# Modules under modules/local/ that run a third-party tool rather than a `tmeflow <stage>`.
TOOL_MODULES: frozenset[str] = frozenset()

# Options of a stage's CLI (tmeflow.stages, not schema parameters) that its module may leave out,
# with the reason. Every other option must be on the module's `tmeflow <stage>` line.
OPTIONS_NOT_PASSED: dict[str, dict[str, str]] = {
    "cnv": {"species": "read from the atlas's obs 'species' (the cohort task has no single-sample meta)"},
}

# Topic channels: preview (nextflow.preview.topic = true) from 24.04, generally available from 25.04.
TOPIC_GA_VERSION = (25, 4)

# Parameters that .nf/.config files may use although nextflow_schema.json does not define them.
# None today; nf-core's institutional-config parameters (custom_config_base, ...) would go here.
CONFIG_ONLY_PARAMS: frozenset[str] = frozenset()

# Resource labels of conf/base.config a module may carry.
RESOURCE_LABELS = frozenset(
    {"process_single", "process_low", "process_medium", "process_high", "process_high_memory", "process_gpu"}
)

# Values given to ${meta.*} (and a few task.* fields) when a module's command line is rebuilt.
META_PLACEHOLDERS = {
    "meta.id": "S1",
    "meta.sample": "S1",
    "meta.patient": "P1",
    "meta.condition": "primary",
    "meta.tissue": "tumour",
    "meta.species": "human",
    "meta.batch": "batch1",
    "meta.modality": "sc",
    "task.cpus": "2",
    "task.process": "QC",
    "prefix": "S1",  # task.ext.prefix ?: "${meta.id}" with no ext.prefix set
}

# task.ext.prefix (nf-core): a module whose stage names its outputs after the sample through a CLI option
# that names the outputs but is not the sample's identity in the data (obs 'sample') takes
# `prefix = task.ext.prefix ?: "${meta.id}"` (no `def`: the output declarations read it), passes it on
# that option and builds its output globs from it.
PREFIX_OPTIONS: dict[str, str] = {"bulk": "--sample", "deconvolve": "--sample"}
# Modules whose output names carry the sample but that cannot take ext.prefix, with the reason.
NO_PREFIX: dict[str, str] = {
    "qc": "--sample is the sample's identity (obs 'sample', MultiQC rows), not only a file name",
    "spatial_qc": "--sample is the section's identity (obs 'sample', MultiQC rows), not only a file name",
    "spatial_analysis": "names its files after obs 'sample' of the section; its CLI has no option for a file prefix",
}
PREFIX_ASSIGNMENT = re.compile(r'^\s*prefix\s*=\s*task\.ext\.prefix\s*\?:\s*"\$\{meta\.id\}"\s*$', flags=re.M)


# --------------------------------------------------------------------------------------------------
# Lexing: comments, strings, brackets
# --------------------------------------------------------------------------------------------------


@dataclass
class Scan:
    """``text`` with comments blanked (``no_comments``) and, in addition, string contents blanked
    except interpolated code (``code``); same length and line breaks as the input.
    """

    text: str
    no_comments: str
    code: str
    problems: list[str]

    def line_of(self, position: int) -> int:
        return self.text.count("\n", 0, position) + 1


_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {")": "(", "]": "[", "}": "{"}
_SLASHY_AFTER = set("=(,~!&|?:[{;+-*%<>") | {""}


def _blank(chars: list[str], start: int, end: int) -> None:
    for k in range(start, end):
        if chars[k] != "\n":
            chars[k] = " "


def scan(text: str, name: str = "<text>") -> Scan:
    """Lex Groovy/Nextflow source far enough to find comments, strings and unbalanced brackets."""
    no_comments = list(text)
    code = list(text)
    problems: list[str] = []
    n = len(text)
    # Context stack: ('code', None) or a string kind: 'sq', 'dq', 'tsq', 'tdq', 'slashy'.
    stack: list[str] = ["code"]
    brackets: list[tuple[str, int]] = []  # (opener, position); '${' opens an interpolation
    string_start: list[int] = []
    prev_sig = ""
    i = 0

    def line(position: int) -> int:
        return text.count("\n", 0, position) + 1

    while i < n:
        ctx = stack[-1]
        c = text[i]
        if ctx == "code":
            if text.startswith("//", i):
                j = text.find("\n", i)
                j = n if j < 0 else j
                _blank(no_comments, i, j)
                _blank(code, i, j)
                i = j
                continue
            if text.startswith("/*", i):
                j = text.find("*/", i + 2)
                if j < 0:
                    problems.append(f"{name}:{line(i)}: unterminated /* comment")
                    j = n
                else:
                    j += 2
                _blank(no_comments, i, j)
                _blank(code, i, j)
                i = j
                continue
            for quote, kind in (('"""', "tdq"), ("'''", "tsq"), ('"', "dq"), ("'", "sq")):
                if text.startswith(quote, i):
                    stack.append(kind)
                    string_start.append(i)
                    i += len(quote)
                    prev_sig = quote[0]
                    break
            else:
                if c == "/" and prev_sig in _SLASHY_AFTER:
                    stack.append("slashy")
                    string_start.append(i)
                    i += 1
                    continue
                if c in _OPENERS:
                    brackets.append((c, i))
                elif c in _CLOSERS:
                    if not brackets:
                        problems.append(f"{name}:{line(i)}: unmatched '{c}'")
                    else:
                        opener, where = brackets.pop()
                        if opener == "${":
                            if c != "}":
                                problems.append(
                                    f"{name}:{line(i)}: '{c}' closes the interpolation opened on line {line(where)}"
                                )
                            stack.pop()  # back into the string
                            _blank(code, i, i + 1)
                            prev_sig = '"'
                            i += 1
                            continue
                        if _CLOSERS[c] != opener:
                            problems.append(f"{name}:{line(i)}: '{c}' closes '{opener}' opened on line {line(where)}")
                if not c.isspace():
                    prev_sig = c if not (c.isalnum() or c == "_") else "a"
                i += 1
            continue
        # Inside a string
        if c == "\\":
            _blank(code, i, min(i + 2, n))
            i += 2
            continue
        if ctx in ("dq", "tdq", "slashy") and text.startswith("${", i):
            brackets.append(("${", i))
            stack.append("code")
            prev_sig = ""
            _blank(code, i, i + 2)
            i += 2
            continue
        end = {"sq": "'", "dq": '"', "tsq": "'''", "tdq": '"""', "slashy": "/"}[ctx]
        if text.startswith(end, i):
            stack.pop()
            string_start.pop()
            i += len(end)
            continue
        if c == "\n" and ctx in ("sq", "dq", "slashy"):
            kind = {"sq": "'", "dq": '"', "slashy": "/"}[ctx]
            problems.append(f"{name}:{line(string_start[-1])}: unterminated {kind} string")
            stack.pop()
            string_start.pop()
            i += 1
            continue
        _blank(code, i, i + 1)
        i += 1

    if len(stack) > 1:
        open_strings = [s for s in stack if s != "code"]
        if open_strings:
            problems.append(f"{name}:{line(string_start[-1])}: unterminated string")
    for opener, where in brackets:
        problems.append(f"{name}:{line(where)}: '{opener}' is never closed")
    return Scan(text, "".join(no_comments), "".join(code), problems)


def check_balanced(text: str, name: str = "<text>") -> list[str]:
    """The light parse: comments and strings terminated, brackets balanced and properly nested."""
    return scan(text, name).problems


def matching_close(code: str, open_at: int) -> int:
    """Position of the bracket closing the one at ``open_at`` (in a :class:`Scan` ``code`` text)."""
    depth = 0
    for k in range(open_at, len(code)):
        if code[k] in _OPENERS:
            depth += 1
        elif code[k] in _CLOSERS:
            depth -= 1
            if depth == 0:
                return k
    return -1


# --------------------------------------------------------------------------------------------------
# Check 1: full Groovy parse (groovy-parser; slow, so successes are cached by content hash)
# --------------------------------------------------------------------------------------------------

_GROOVY_PARSER = None


def _groovy_cache_key(text: str) -> str:
    import groovy_parser

    return hashlib.sha256(f"{groovy_parser.__version__}\0{text}".encode()).hexdigest()


def groovy_parse_cached(text: str, cache_dir: Path) -> bool:
    """Whether ``text`` parsed before (with this groovy-parser)."""
    return (cache_dir / _groovy_cache_key(text)).exists()


def check_groovy_parses(text: str, name: str = "<text>", cache_dir: Path | None = None) -> list[str]:
    """Parse ``text`` with groovy-parser (Groovy 3 grammar; a Nextflow script is Groovy).

    The Earley parser takes ~15 ms per token, so a file that parsed before (same content, same
    groovy-parser) is not parsed again when ``cache_dir`` is given.
    """
    global _GROOVY_PARSER
    from groovy_parser.parser import create_groovy_parser
    from groovy_parser.tokenizer import GroovyRestrictedTokenizer

    key = _groovy_cache_key(text)
    if cache_dir is not None and (cache_dir / key).exists():
        return []
    if _GROOVY_PARSER is None:
        _GROOVY_PARSER = create_groovy_parser()
    try:
        _GROOVY_PARSER.parse(list(GroovyRestrictedTokenizer().get_tokens(text)))
    except Exception as error:  # lark raises several exception types
        first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
        return [f"{name}: not valid Groovy ({type(error).__name__}: {first})"]
    if cache_dir is not None:
        cache_dir.mkdir(parents=True, exist_ok=True)
        (cache_dir / key).write_text(name)
    return []


# --------------------------------------------------------------------------------------------------
# Processes: name, sections, script block, outputs
# --------------------------------------------------------------------------------------------------

_SECTION_LABELS = ("input", "output", "when", "script", "shell", "exec", "stub")


def named_blocks(text: str, keyword: str) -> dict[str, str]:
    """``{name: body}`` of every ``<keyword> NAME { ... }`` (``process``/``workflow``); the entry
    workflow (no name) is ``''``.
    """
    s = scan(text)
    blocks = {}
    for match in re.finditer(rf"\b{keyword}\s+([A-Za-z_]\w*)?\s*\{{", s.code):
        open_at = match.end() - 1
        close_at = matching_close(s.code, open_at)
        if close_at > 0:
            blocks[match.group(1) or ""] = text[open_at + 1 : close_at]
    return blocks


def process_blocks(text: str) -> dict[str, str]:
    """``{process name: body source}`` of every ``process X { ... }`` in ``text`` (a config's
    unnamed ``process { }`` scope is not one).
    """
    return {name: body for name, body in named_blocks(text, "process").items() if name}


def process_sections(body: str) -> dict[str, str]:
    """The labelled sections of a process body (``input:``, ``output:``, ``script:``, ...), and
    ``directives`` (what comes before the first label).
    """
    s = scan(body)
    marks = [
        (m.start(), m.end(), m.group(1))
        for m in re.finditer(r"^[ \t]*(" + "|".join(_SECTION_LABELS) + r")\s*:(?!:)", s.code, flags=re.M)
    ]
    sections = {"directives": body[: marks[0][0]] if marks else body}
    for k, (_, end, label) in enumerate(marks):
        stop = marks[k + 1][0] if k + 1 < len(marks) else len(body)
        sections[label] = body[end:stop]
    return sections


def triple_quoted(section: str) -> str | None:
    """Content of the first ``\"\"\"...\"\"\"`` string of a section (the shell script), raw source."""
    start = section.find('"""')
    if start < 0:
        return None
    end = section.find('"""', start + 3)
    return section[start + 3 : end] if end > 0 else None


def shell_lines(script: str) -> list[str]:
    """Script lines with ``\\`` continuations joined (``\\\\`` + newline in the Groovy source)."""
    joined = re.sub(r"\\\\[ \t]*\n", " ", script)
    return [line.strip() for line in joined.splitlines()]


def tmeflow_commands(script: str) -> list[str]:
    """The ``tmeflow <stage> ...`` lines of a script (not ``tmeflow --version``)."""
    return [line for line in shell_lines(script) if re.match(r"tmeflow\s+[a-z_]", line)]


@dataclass(frozen=True)
class OutputPath:
    pattern: str
    optional: bool
    emit: str | None


def output_paths(output_section: str) -> list[OutputPath]:
    """The ``path(...)`` patterns declared in an ``output:`` section, one declaration per line."""
    outputs = []
    for line in scan(output_section).no_comments.splitlines():
        if not line.strip():
            continue
        optional = bool(re.search(r"\boptional\s*:\s*true\b", line))
        emit = re.search(r"\bemit\s*:\s*(\w+)", line)
        for match in re.finditer(r"\bpath\s*\(?\s*(\"[^\"]*\"|'[^']*')", line):
            outputs.append(OutputPath(match.group(1)[1:-1], optional, emit.group(1) if emit else None))
    return outputs


def interpolate(template: str, values: dict[str, str]) -> str:
    """Replace ``${expr}`` and ``$name`` of a Groovy GString with ``values[expr]`` (or ``expr``)."""

    def braced(match: re.Match[str]) -> str:
        expr = match.group(1).strip()
        quoted = re.fullmatch(r"shellQuote\(\s*([\w.]+)\s*\)", expr)
        if quoted and quoted.group(1) in values:
            return shell_quote(values[quoted.group(1)])
        return values.get(expr, re.sub(r"[^A-Za-z0-9_.-]", "_", expr))

    def bare(match: re.Match[str]) -> str:
        expr = match.group(1)
        return values.get(expr, expr)

    out = re.sub(r"(?<!\\)\$\{([^{}]*)\}", braced, template)
    out = re.sub(r"(?<!\\)\$([A-Za-z_][\w.]*)", bare, out)
    return out.replace("\\$", "$")


def shell_quote(value: Any) -> str:
    """Python twin of the Groovy ``shellQuote`` of subworkflows/local/utils_tmeflow: one POSIX
    single-quoted word, each ``'`` written as ``'\\''``.
    """
    return "'" + str(value).replace("'", "'\\''") + "'"


def shell_words(command: str) -> list[str]:
    """The words bash makes of a command line (the real shell when there is one, else shlex)."""
    bash = shutil.which("bash")
    if bash is None:
        return shlex.split(command)
    result = subprocess.run(
        [bash, "--norc", "--noprofile", "-c", "printf '%s\\0' " + command],
        capture_output=True,
        check=False,
        env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8"},
    )
    if result.returncode != 0:
        raise ValueError(result.stderr.decode(errors="replace").strip() or f"bash exited {result.returncode}")
    return result.stdout.decode("utf-8").split("\0")[:-1]


def expand_braces(pattern: str) -> list[str]:
    """``a.{tsv,png}`` -> ``[a.tsv, a.png]`` (glob alternatives, as Nextflow's path outputs accept)."""
    match = re.search(r"\{([^{}]*)\}", pattern)
    if not match:
        return [pattern]
    head, tail = pattern[: match.start()], pattern[match.end() :]
    return [expanded for option in match.group(1).split(",") for expanded in expand_braces(head + option + tail)]


def glob_match(name: str, pattern: str) -> bool:
    """Nextflow output glob: ``*``, ``?``, ``[...]``, ``{a,b}``; a trailing ``/`` names a folder."""
    name = name.rstrip("/")
    return any(fnmatch.fnmatchcase(name, p.rstrip("/")) for p in expand_braces(pattern))


# --------------------------------------------------------------------------------------------------
# Schema and config values
# --------------------------------------------------------------------------------------------------


def load_schema(path: Path = REPO / "nextflow_schema.json") -> dict[str, Any]:
    return json.loads(path.read_text())


def schema_properties(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    properties: dict[str, dict[str, Any]] = {}
    for group in schema.get("$defs", {}).values():
        properties.update(group.get("properties", {}))
    properties.update(schema.get("properties", {}))
    return properties


def groovy_str(value: Any) -> str:
    """How Groovy prints a parameter value inside a GString."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def groovy_truthy(value: Any) -> bool:
    return value not in (None, False, 0, 0.0, "", [], {})


_MISSING = object()


def parse_groovy_literal(source: str) -> Any:
    """A literal right-hand side of a config assignment: null, true/false, number or quoted string."""
    source = source.strip().rstrip(";").strip()
    if source == "null":
        return None
    if source in ("true", "false"):
        return source == "true"
    if re.fullmatch(r"-?\d+", source):
        return int(source)
    if re.fullmatch(r"-?(\d+\.\d*|\.\d+)([eE][-+]?\d+)?|-?\d+[eE][-+]?\d+", source):
        return float(source)
    if len(source) >= 2 and source[0] == source[-1] and source[0] in "'\"":
        return source[1:-1]
    return _MISSING


def params_blocks(text: str) -> list[tuple[int, str]]:
    """``(offset, body)`` of every ``params { ... }`` block in a config text."""
    s = scan(text)
    blocks = []
    for match in re.finditer(r"(?<![\w.])params\s*\{", s.code):
        open_at = match.end() - 1
        close_at = matching_close(s.code, open_at)
        if close_at > 0:
            blocks.append((open_at + 1, s.no_comments[open_at + 1 : close_at]))
    return blocks


def params_assignments(text: str) -> dict[str, str]:
    """``{name: right-hand side source}`` of the assignments in the ``params { }`` blocks of a config
    and of ``params.x = ...`` statements.
    """
    assignments: dict[str, str] = {}
    for _, body in params_blocks(text):
        for match in re.finditer(r"^[ \t]*([A-Za-z_]\w*)\s*=(?!=)\s*(.*?)\s*$", body, flags=re.M):
            assignments[match.group(1)] = match.group(2)
    for match in re.finditer(
        r"(?<![\w.])params\.([A-Za-z_]\w*)\s*=(?!=)\s*(.*?)\s*$", scan(text).no_comments, flags=re.M
    ):
        assignments[match.group(1)] = match.group(2)
    return assignments


def values_equal(config_value: Any, schema_value: Any, schema_type: str | None) -> bool:
    if config_value is _MISSING:
        return False
    if schema_value is None or config_value is None:
        return schema_value is None and config_value is None
    if schema_type == "boolean" or isinstance(schema_value, bool) or isinstance(config_value, bool):
        return isinstance(config_value, bool) and isinstance(schema_value, bool) and config_value == schema_value
    if schema_type == "integer":
        return isinstance(config_value, int) and config_value == schema_value
    if schema_type == "number" or isinstance(schema_value, (int, float)):
        return isinstance(config_value, (int, float)) and float(config_value) == float(schema_value)
    return isinstance(config_value, str) and config_value == schema_value


# --------------------------------------------------------------------------------------------------
# Check 4: params used exist in the schema; config defaults equal schema defaults
# --------------------------------------------------------------------------------------------------


def params_used(text: str) -> set[str]:
    """Names ``x`` of ``params.x`` in a .nf/.config text (comments and single-quoted strings, which
    Groovy never interpolates, ignored; GStrings included) and of assignments inside ``params { }``.
    """
    code = re.sub(r"'(?:[^'\\\n]|\\.)*'", "''", scan(text).no_comments)
    used = set(re.findall(r"(?<![\w.])params\.([A-Za-z_]\w*)", code))
    for _, body in params_blocks(text):
        used.update(re.findall(r"^[ \t]*([A-Za-z_]\w*)\s*=(?!=)", body, flags=re.M))
    return used


def check_params_in_schema(
    text: str, schema: dict[str, Any], name: str = "<text>", allowed: Iterable[str] = CONFIG_ONLY_PARAMS
) -> list[str]:
    known = set(schema_properties(schema)) | set(allowed)
    return [
        f"{name}: params.{param} is not defined in nextflow_schema.json" for param in sorted(params_used(text) - known)
    ]


def check_config_defaults(config_text: str, schema: dict[str, Any], name: str = "nextflow.config") -> list[str]:
    """Every schema parameter has a default in the config's params block, equal to the schema's."""
    problems = []
    assignments = params_assignments(config_text)
    for param, spec in schema_properties(schema).items():
        if param not in assignments:
            problems.append(f"{name}: parameter {param} has no default in the params block")
            continue
        value = parse_groovy_literal(assignments[param])
        if value is _MISSING:
            problems.append(f"{name}: default of {param} is not a literal: {assignments[param]}")
        elif not values_equal(value, spec.get("default"), spec.get("type")):
            problems.append(
                f"{name}: default of {param} is {assignments[param]}, "
                f"nextflow_schema.json says {json.dumps(spec.get('default'))}"
            )
    return problems


# --------------------------------------------------------------------------------------------------
# Check 2: the `tmeflow <stage>` command line of each stage module parses with tmeflow's own CLI
# --------------------------------------------------------------------------------------------------


def withname_blocks(config_text: str) -> list[tuple[str, str]]:
    """``(selector, body)`` of every ``withName: 'selector' { ... }`` block, in order."""
    s = scan(config_text)
    blocks = []
    for match in re.finditer(r"\bwithName\s*:\s*", s.code):
        rest = config_text[match.end() :]
        selector = re.match(r"(\"[^\"]*\"|'[^']*'|[\w:|.*]+)\s*\{", rest)
        if not selector:
            continue
        open_at = match.end() + selector.end() - 1
        close_at = matching_close(s.code, open_at)
        if close_at > 0:
            blocks.append((selector.group(1).strip("'\""), config_text[open_at + 1 : close_at]))
    return blocks


def selector_matches(selector: str, process: str) -> bool:
    """Nextflow's withName rule: a regex matched against the simple or fully qualified name;
    ``!pattern`` negates.
    """
    negate = selector.startswith("!")
    pattern = selector[1:] if negate else selector
    hit = re.fullmatch(pattern, process) is not None or re.fullmatch(pattern, process.split(":")[-1]) is not None
    return hit != negate


def ext_args_source(config_text: str, process: str) -> str | None:
    """Source of the right-hand side of ``ext.args = ...`` for ``process`` (last matching block wins)."""
    found = None
    for selector, body in withname_blocks(config_text):
        if not selector_matches(selector, process):
            continue
        s = scan(body)
        match = re.search(r"\bext\.args\s*=\s*", s.code)
        if not match:
            continue
        start = match.end()
        if s.code[start] == "{":
            end = matching_close(s.code, start)
            found = body[start : end + 1]
        else:
            end = s.code.find("\n", start)
            found = body[start : end if end > 0 else len(body)].strip()
    return found


def _split_top_level(source: str) -> list[str]:
    """Split at commas that are not inside brackets or strings."""
    s = scan(source)
    parts, depth, last = [], 0, 0
    for k, c in enumerate(s.code):
        if c in _OPENERS:
            depth += 1
        elif c in _CLOSERS:
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(source[last:k])
            last = k + 1
    parts.append(source[last:])
    return [p.strip() for p in parts if p.strip()]


def _string_literal(source: str) -> str | None:
    source = source.strip()
    for quote in ('"""', "'''", '"', "'"):
        if len(source) >= 2 * len(quote) and source.startswith(quote) and source.endswith(quote):
            return source[len(quote) : -len(quote)]
    return None


def evaluate_ext_args(source: str, defaults: dict[str, Any]) -> tuple[str, list[str]]:
    """Evaluate an ``ext.args`` right-hand side with every ``params.x`` at its schema default.

    Understood forms: a string literal; a closure ``{ <string> }``; ``{ [ item, ... ].join(' ') }``
    whose items are string literals or ``params.x ? <string> : <string>``.
    Returns the resulting argument string and problems (unknown params, null values, other forms).
    """
    problems: list[str] = []
    body = source.strip()
    if body.startswith("{") and body.endswith("}"):
        body = body[1:-1].strip()
    join = re.fullmatch(r"\[(.*)\]\s*\.\s*join\s*\(\s*(['\"])(.*?)\2\s*\)", body, flags=re.S)
    if join:
        items, separator = _split_top_level(join.group(1)), join.group(3)
    else:
        items, separator = [body], " "

    def substitute(template: str) -> str:
        def value(match: re.Match[str]) -> str:
            param = match.group(1)
            if param not in defaults:
                problems.append(f"ext.args uses params.{param}, which nextflow_schema.json does not define")
                return "UNKNOWN"
            if defaults[param] is None:
                problems.append(
                    f"ext.args passes params.{param} unconditionally but it has no default (it would be 'null')"
                )
            return groovy_str(defaults[param])

        out = re.sub(r"\$\{\s*params\.(\w+)\s*\}", value, template)
        out = re.sub(r"(?<!\\)\$params\.(\w+)", value, out)
        return interpolate(out, META_PLACEHOLDERS)

    rendered = []
    for item in items:
        literal = _string_literal(item)
        if literal is not None:
            rendered.append(substitute(literal))
            continue
        ternary = re.fullmatch(r"\(?\s*params\.(\w+)\s*\?\s*(.+?)\s*:\s*(.+?)\s*\)?", item, flags=re.S)
        if ternary and _string_literal(ternary.group(2)) is not None and _string_literal(ternary.group(3)) is not None:
            param = ternary.group(1)
            if param not in defaults:
                problems.append(f"ext.args uses params.{param}, which nextflow_schema.json does not define")
                continue
            chosen = ternary.group(2) if groovy_truthy(defaults[param]) else ternary.group(3)
            rendered.append(substitute(_string_literal(chosen)))
            continue
        problems.append(f"ext.args item not understood by the static check: {item!r}")
    return separator.join(part for part in rendered if part), problems


def _flag_value_pairs(source: str) -> list[tuple[str, str]]:
    """``(option, param)`` for every ``--option ${params.param}`` in ext.args source."""
    return re.findall(r"--([\w-]+)[ =]['\"]?\$\{\s*params\.(\w+)\s*\}", source)


def script_locals(script_section: str) -> dict[str, tuple[str, str]]:
    """``def x = ...`` variables of a ``script:`` section (before its shell string) that the static
    check can evaluate: ``{name: (value when set, value when not)}``. Understood right-hand sides:
    a string literal, and ``<condition> ? <string> : <string>`` (both branches are tried).
    """
    head = script_section.split('"""', 1)[0]
    found = {}
    for match in re.finditer(r"^\s*def\s+(\w+)\s*=\s*(.+?)\s*$", scan(head).no_comments, flags=re.M):
        name, rhs = match.groups()
        literal = _string_literal(rhs)
        if literal is not None:
            found[name] = (literal, literal)
            continue
        ternary = re.fullmatch(r"(.+?)\s*\?\s*(\"[^\"]*\"|'[^']*')\s*:\s*(\"[^\"]*\"|'[^']*')", rhs)
        if ternary:
            found[name] = (_string_literal(ternary.group(2)), _string_literal(ternary.group(3)))
    return found


def parse_with_cli(argv: list[str]) -> tuple[argparse.Namespace | None, str]:
    """Parse ``tmeflow`` arguments with the real parser; ``(namespace, '')`` or ``(None, error)``."""
    from tmeflow.cli import build_parser

    stderr = io.StringIO()
    try:
        with contextlib.redirect_stderr(stderr), contextlib.redirect_stdout(io.StringIO()):
            namespace = build_parser().parse_args(argv)
    except SystemExit:
        message = [line for line in stderr.getvalue().strip().splitlines() if line.strip()]
        return None, message[-1] if message else "argument parsing failed"
    return namespace, ""


def check_stage_command(
    module_text: str,
    config_text: str,
    schema: dict[str, Any],
    stage: str | None = None,
    name: str = "<module>",
    meta: dict[str, Any] | None = None,
) -> list[str]:
    """The module's ``tmeflow <stage>`` line, with ``$args`` replaced by the process's ``ext.args``
    (every ``params.x`` at its schema default) and ``meta`` (a samplesheet row's meta map; else
    :data:`META_PLACEHOLDERS`), split into words by bash and parsed with
    ``tmeflow.cli.build_parser()``; every parameter of the stage's schema groups is passed, each
    ``--x`` from ``params.x``; the CLI receives the schema defaults and each meta value unchanged.
    """
    from tmeflow.stages import STAGES

    problems: list[str] = []
    blocks = process_blocks(module_text)
    if len(blocks) != 1:
        return [f"{name}: expected one process, found {len(blocks)}"]
    process, body = next(iter(blocks.items()))
    sections = process_sections(body)
    script = triple_quoted(sections.get("script", ""))
    if script is None:
        return [f'{name}: process {process} has no script: block with a """ string']
    commands = tmeflow_commands(script)
    if len(commands) != 1:
        return [f"{name}: expected one `tmeflow <stage>` command in the script, found {len(commands)}"]
    command = commands[0]
    called = command.split()[1]
    if stage is not None and called != stage:
        problems.append(f"{name}: runs `tmeflow {called}` but the module is modules/local/{stage}")
    stage_spec = next((s for s in STAGES if s.name == called), None)
    if stage_spec is None:
        return problems + [f"{name}: `tmeflow {called}` is not a tmeflow stage"]
    if not re.search(r"\$\{\s*args\s*\}|\$args\b", command):
        problems.append(f"{name}: the tmeflow command does not pass ${{args}} (ext.args would be ignored)")
    if not re.search(r"def\s+args\s*=\s*task\.ext\.args\s*\?:\s*''", sections.get("script", "")):
        problems.append(f"{name}: script: lacks `def args = task.ext.args ?: ''`")

    source = ext_args_source(config_text, process)
    if source is None:
        problems.append(f"{name}: conf/modules.config sets no ext.args for process {process}")
        source = "''"
    defaults = {param: spec.get("default") for param, spec in schema_properties(schema).items()}
    args, arg_problems = evaluate_ext_args(source, defaults)
    problems += [f"{name}: {problem}" for problem in arg_problems]

    for option, param in _flag_value_pairs(source):
        if option != param:
            problems.append(f"{name}: ext.args passes params.{param} as --{option}")
    stage_params = [p for group in stage_spec.param_groups for p in schema["$defs"][group]["properties"]]
    flags = re.findall(r"(?:^|\s)--([A-Za-z][\w-]*)", args)
    flags_in_source = set(re.findall(r"--([A-Za-z][\w-]*)", scan(source).no_comments))  # conditional ones too
    # File parameters are staged as path inputs of the process and passed by the script itself
    staged = {
        flag
        for variable, (given, _) in script_locals(sections.get("script", "")).items()
        if re.search(rf"\$\{{?\s*{re.escape(variable)}\b", command)
        for flag in re.findall(r"--([A-Za-z][\w-]*)", given)
    }
    properties = schema_properties(schema)
    for param in stage_params:
        if properties[param].get("format") == "file-path":
            if param in flags_in_source:
                problems.append(f"{name}: ext.args passes the file parameter --{param}; stage it as a path input")
            elif param not in staged:
                problems.append(
                    f"{name}: file parameter --{param} is neither staged as an input nor passed by the script"
                )
        elif param not in flags_in_source:
            problems.append(
                f"{name}: ext.args of {process} does not pass --{param} (schema group of `tmeflow {called}`)"
            )
    for flag in sorted({f for f in flags if flags.count(f) > 1}):
        problems.append(f"{name}: ext.args passes --{flag} more than once")

    with_args = re.sub(r"\$\{\s*args\s*\}|\$args\b", lambda _: args, command)
    local_values = script_locals(sections.get("script", ""))
    namespace = None
    meta_values = {**META_PLACEHOLDERS, **{f"meta.{key}": str(value) for key, value in (meta or {}).items()}}
    meta_values["prefix"] = meta_values["meta.id"]  # task.ext.prefix unset
    for branch in (0, 1):  # optional inputs given / not given
        values = {**meta_values, **{k: interpolate(v[branch], meta_values) for k, v in local_values.items()}}
        rendered = interpolate(with_args, values)
        try:
            argv = shell_words(rendered)
        except ValueError as error:
            return problems + [f"{name}: command line does not split like a shell would ({error}): {rendered}"]
        namespace, error = parse_with_cli(argv[1:])
        if namespace is None:
            return problems + [f"{name}: `{rendered}` is rejected by tmeflow's CLI: {error}"]
        for key, value in (meta or {}).items():
            option = "sample" if key == "id" else key
            got = getattr(namespace, option, _MISSING)
            if got is not _MISSING and got != str(value):
                problems.append(f"{name}: meta.{key} {str(value)!r} reaches tmeflow {called} as --{option} {got!r}")
    for param in stage_params:
        expected = defaults[param]
        got = getattr(namespace, param, _MISSING)
        if got is _MISSING or got != expected:
            problems.append(
                f"{name}: with schema defaults, tmeflow {called} receives --{param} {got!r}, not {expected!r}"
            )
    return problems


def command_flags(module_text: str) -> set[str]:
    """Options on the module's ``tmeflow <stage>`` line: given directly, or through a ``def x = ...``
    script variable interpolated into the line (the optional inputs, ``markers ? "--markers ..." : ''``).
    """
    blocks = process_blocks(module_text)
    if len(blocks) != 1:
        return set()
    sections = process_sections(next(iter(blocks.values())))
    commands = tmeflow_commands(triple_quoted(sections.get("script", "")) or "")
    if not commands:
        return set()
    command = commands[0]
    flags = set(re.findall(r"(?:^|\s)--([A-Za-z][\w-]*)", command))
    for variable, (given, _) in script_locals(sections.get("script", "")).items():
        if re.search(rf"\$\{{?\s*{re.escape(variable)}\b", command):
            flags.update(re.findall(r"--([A-Za-z][\w-]*)", given))
    return flags


def check_stage_options_passed(
    module_text: str, stage: str, name: str = "<module>", not_passed: dict[str, dict[str, str]] | None = None
) -> list[str]:
    """Every option of ``tmeflow <stage>`` declared in ``tmeflow.stages`` (inputs such as
    ``--signatures`` or ``--reference``, sample metadata) is on the module's command line, or
    passed through a script variable of an optional staged input; schema parameters are checked by
    :func:`check_stage_command`. Exceptions (with their reason) are in ``OPTIONS_NOT_PASSED``.
    """
    from tmeflow.stages import get_stage

    exempt = (OPTIONS_NOT_PASSED if not_passed is None else not_passed).get(stage, {})
    flags = command_flags(module_text)
    if not flags:
        return [f"{name}: no `tmeflow <stage>` command line found"]
    problems = []
    for option in get_stage(stage).options:
        flag = option.flags[0].lstrip("-")
        if flag not in flags and flag not in exempt:
            problems.append(
                f"{name}: `tmeflow {stage}` takes --{flag} but the module never passes it "
                "(stage a file as a path input, [] when unset, and pass the flag only when given)"
            )
    for flag in sorted(set(exempt) & flags):
        problems.append(f"{name}: --{flag} is passed, remove it from OPTIONS_NOT_PASSED")
    return problems


# --------------------------------------------------------------------------------------------------
# Check 3: includes resolve
# --------------------------------------------------------------------------------------------------

_INCLUDE = re.compile(r"\binclude\s*\{([^}]*)\}\s*from\s*(['\"])([^'\"]+)\2")


def includes(text: str) -> list[tuple[str, str, str, int]]:
    """``(name, alias, source, position)`` for every component of every include statement."""
    found = []
    for match in _INCLUDE.finditer(scan(text).no_comments):
        for part in re.split(r"[;\n]", match.group(1)):
            words = part.split()
            if not words:
                continue
            if len(words) == 3 and words[1] == "as":
                found.append((words[0], words[2], match.group(3), match.start()))
            elif len(words) == 1:
                found.append((words[0], words[0], match.group(3), match.start()))
            else:
                found.append((part.strip(), "", match.group(3), match.start()))
    return found


def resolve_include(source: str, including_file: Path) -> Path | None:
    """Nextflow's rule: ``x.nf`` as given, else ``x.nf`` or ``x/main.nf``."""
    base = (including_file.parent / source).resolve()
    candidates = [base] if source.endswith(".nf") else [base.with_name(base.name + ".nf"), base / "main.nf"]
    return next((c for c in candidates if c.is_file()), None)


def defines(text: str, component: str) -> bool:
    code = scan(text).code
    return bool(
        re.search(rf"\b(process|workflow)\s+{re.escape(component)}\s*\{{", code)
        or re.search(rf"\bdef\s+(?:[\w<>\[\],.?]+\s+)?{re.escape(component)}\s*\(", code)
    )


def check_includes(path: Path, text: str | None = None) -> list[str]:
    """Every ``include { X } from './path'`` resolves to a file defining process/workflow/def X, and
    every included name is used in the including file.
    """
    text = path.read_text() if text is None else text
    problems = []
    no_includes = _INCLUDE.sub(" ", scan(text).no_comments)
    for component, alias, source, _ in includes(text):
        if not alias:
            problems.append(f"{path}: include of '{component}' from '{source}' is not `X` or `X as Y`")
            continue
        if source.startswith("plugin/"):
            continue
        target = resolve_include(source, path)
        if target is None:
            problems.append(f"{path}: include {{ {component} }} from '{source}': no such file (.nf or /main.nf)")
            continue
        if not defines(target.read_text(), component):
            problems.append(
                f"{path}: include {{ {component} }} from '{source}': "
                f"{target} defines no process/workflow/def {component}"
            )
        if not re.search(rf"\b{re.escape(alias)}\b", no_includes):
            problems.append(f"{path}: {alias} is included but never used")
    return problems


# --------------------------------------------------------------------------------------------------
# Check 5: stage modules == tmeflow's pipeline stages, each wired into a workflow
# --------------------------------------------------------------------------------------------------


def module_dirs(repo: Path) -> dict[str, Path]:
    return {p.parent.name: p for p in sorted((repo / "modules" / "local").glob("*/main.nf"))}


def check_stage_modules(
    repo: Path, stage_names: Iterable[str], tool_modules: Iterable[str] = TOOL_MODULES
) -> list[str]:
    """modules/local/<stage>/main.nf exists for exactly the pipeline stages (tool modules aside);
    each defines one process named <STAGE>; every module's process is included and called in
    main.nf, workflows/ or subworkflows/.
    """
    problems = []
    modules = module_dirs(repo)
    stages = set(stage_names)
    tools = set(tool_modules)
    for missing in sorted(stages - set(modules)):
        problems.append(f"stage '{missing}' (tmeflow.stages) has no modules/local/{missing}/main.nf")
    for extra in sorted(set(modules) - stages - tools):
        problems.append(f"modules/local/{extra}/ is neither a tmeflow pipeline stage nor a known tool module")
    for missing_tool in sorted(tools - set(modules)):
        problems.append(f"tool module modules/local/{missing_tool}/main.nf is missing")

    workflow_files = [
        repo / "main.nf",
        *sorted((repo / "workflows").rglob("*.nf")),
        *sorted((repo / "subworkflows").rglob("*.nf")),
    ]
    texts = {p: p.read_text() for p in workflow_files if p.is_file()}
    for stage, path in modules.items():
        blocks = process_blocks(path.read_text())
        if len(blocks) != 1:
            problems.append(f"{path}: expected one process, found {len(blocks)}")
            continue
        process = next(iter(blocks))
        if process != stage.upper():
            problems.append(f"{path}: process is {process}, expected {stage.upper()}")
        called = False
        for wf_path, text in texts.items():
            for component, alias, source, _ in includes(text):
                if component == process and resolve_include(source, wf_path) == path.resolve():
                    code = _INCLUDE.sub(" ", scan(text).code)
                    if re.search(rf"\b{re.escape(alias)}\s*\(", code):
                        called = True
        if not called:
            problems.append(
                f"{path}: process {process} is not included and called in main.nf, workflows/ or subworkflows/"
            )
    return problems


# --------------------------------------------------------------------------------------------------
# Module conventions (nf-core style)
# --------------------------------------------------------------------------------------------------


def check_module_conventions(text: str, version: str, name: str = "<module>", tool: bool = False) -> list[str]:
    """tag, one resource label, a conda line and no container line, `when:`, versions.yml emitted and written,
    a stub that creates every required output (optional ones may be left out).
    """
    problems = []
    blocks = process_blocks(text)
    if len(blocks) != 1:
        return [f"{name}: expected one process, found {len(blocks)}"]
    process, body = next(iter(blocks.items()))
    sections = process_sections(body)
    directives = scan(sections["directives"]).no_comments
    labels = re.findall(r"^\s*label\s+['\"](\w+)['\"]", directives, flags=re.M)
    resource = [label for label in labels if label in RESOURCE_LABELS]
    if len(resource) != 1:
        problems.append(f"{name}: needs exactly one resource label of {sorted(RESOURCE_LABELS)}, has {labels}")
    takes_meta = "val(meta)" in sections.get("input", "")
    if takes_meta and not tool and not re.search(r"^\s*tag\s+\"\$\{?meta\.id\}?\"", directives, flags=re.M):
        problems.append(f'{name}: lacks `tag "$meta.id"`')
    if not re.search(
        r"^\s*conda\s+\"\$\{moduleDir\}/\.\./\.\./\.\./containers/environment\.yml\"", directives, flags=re.M
    ):
        problems.append(f'{name}: lacks `conda "${{moduleDir}}/../../../containers/environment.yml"`')
    # The image is named once, in conf/containers.config (the CUDA image in conf/gpu.config); a
    # module of a third-party tool (TOOL_MODULES) names its own image, nf-core style.
    containers = re.findall(r"^\s*container\b", directives, flags=re.M)
    if containers and not tool:
        problems.append(
            f"{name}: names a container; the tmeflow image is set once, in conf/containers.config (version {version})"
        )
    if not re.search(r"task\.ext\.when\s*==\s*null\s*\|\|\s*task\.ext\.when", sections.get("when", "")):
        problems.append(f"{name}: lacks `when: task.ext.when == null || task.ext.when`")
    if not re.search(
        r"path\s*\(?\s*[\"']versions\.yml[\"']\s*\)?\s*,\s*emit\s*:\s*versions", sections.get("output", "")
    ):
        problems.append(f'{name}: does not emit `path "versions.yml", emit: versions`')
    for section in ("script", "stub"):
        script = triple_quoted(sections.get(section, "")) or ""
        if (
            not re.search(r"cat\s+<<-?\s*END_VERSIONS\s+>\s+versions\.yml", script)
            or '"${task.process}":' not in script
        ):
            problems.append(f"{name}: {section}: does not write versions.yml with the END_VERSIONS heredoc")
    if not tool and "tmeflow: \\$(tmeflow --version | sed 's/tmeflow //')" not in (
        triple_quoted(sections.get("script", "")) or ""
    ):
        problems.append(f"{name}: versions.yml does not record `tmeflow --version`")
    stub = triple_quoted(sections.get("stub", ""))
    if stub is None:
        problems.append(f"{name}: has no stub: block")
    else:
        created = set(shlex.split(interpolate(re.sub(r"\\\\\n", " ", stub), META_PLACEHOLDERS), comments=True))
        for output in output_paths(sections.get("output", "")):
            pattern = interpolate(output.pattern, META_PLACEHOLDERS)
            if pattern == "versions.yml" or output.optional:
                continue
            if not any(glob_match(token, pattern) for token in created):
                problems.append(f"{name}: stub does not create output {output.pattern!r}")
    return problems


def check_ext_prefix(text: str, module: str, name: str = "<module>") -> list[str]:
    """Output names after the sample come from ``task.ext.prefix`` where the stage's CLI lets them.

    A module in :data:`PREFIX_OPTIONS` sets ``prefix = task.ext.prefix ?: "${meta.id}"`` in its script
    and its stub, passes ``${prefix}`` on the option and names its outputs and stub files from it; a
    module whose outputs carry ``${meta.id}`` must be in :data:`NO_PREFIX` (with its reason) otherwise.
    """
    blocks = process_blocks(text)
    if len(blocks) != 1:
        return [f"{name}: expected one process, found {len(blocks)}"]
    sections = process_sections(next(iter(blocks.values())))
    output = scan(sections.get("output", "")).no_comments
    problems = []
    if module not in PREFIX_OPTIONS:
        if re.search(r"\$\{?meta\.id\b", output) and module not in NO_PREFIX:
            problems.append(
                f"{name}: outputs are named after ${{meta.id}}: take task.ext.prefix (PREFIX_OPTIONS) "
                "or say in NO_PREFIX why the stage's CLI cannot"
            )
        if "task.ext.prefix" in text:
            problems.append(f"{name}: reads task.ext.prefix, but PREFIX_OPTIONS names no option to pass it on")
        return problems
    option = PREFIX_OPTIONS[module]
    script = sections.get("script", "")
    stub = sections.get("stub", "")
    for label, section in (("script", script), ("stub", stub)):
        if not PREFIX_ASSIGNMENT.search(scan(section).no_comments):
            problems.append(f'{name}: {label}: lacks `prefix = task.ext.prefix ?: "${{meta.id}}"` (no def)')
    if not re.search(rf"{re.escape(option)}\s+\$\{{prefix\}}", triple_quoted(script) or ""):
        problems.append(f"{name}: does not pass {option} ${{prefix}}")
    if re.search(r"\$\{?meta\.id\b", output) or not re.search(r"\$\{prefix\}", output):
        problems.append(f"{name}: output names are not built from ${{prefix}}")
    if re.search(r"\$\{?meta\.id\b", triple_quoted(stub) or ""):
        problems.append(f"{name}: stub names files after ${{meta.id}}, not ${{prefix}}")
    return problems


# --------------------------------------------------------------------------------------------------
# Software versions: every module emits versions.yml to the `versions` topic
# --------------------------------------------------------------------------------------------------


def versions_topic_consumers(repo: Path = REPO) -> set[str]:
    """Modules (folder names) whose process is called with the output of ``softwareVersionsToYAML``
    (the report). They must not emit to the ``versions`` topic themselves, or the topic would wait
    for them while they wait for the topic (nf-core/modules#9530 took the topic off MultiQC).
    """
    consumers = set()
    files = [
        repo / "main.nf",
        *sorted((repo / "workflows").rglob("*.nf")),
        *sorted((repo / "subworkflows").rglob("*.nf")),
    ]
    for path in (f for f in files if f.is_file()):
        text = path.read_text()
        code = scan(text).code
        variables = re.findall(r"\b(\w+)\s*=\s*softwareVersionsToYAML\s*\(", code)
        if not variables:
            continue
        aliases = {alias: source for _, alias, source, _ in includes(text)}
        for call in re.finditer(r"\b([A-Z][A-Z0-9_]*)\s*\(", code):
            if call.group(1) not in aliases:
                continue
            close_at = matching_close(code, call.end() - 1)
            arguments = code[call.end() : close_at]
            if any(re.search(rf"\b{re.escape(v)}\b", arguments) for v in variables):
                target = resolve_include(aliases[call.group(1)], path)
                if target is not None and target.parent.parent == (repo / "modules" / "local").resolve():
                    consumers.add(target.parent.name)
    return consumers


def check_versions_topic(text: str, name: str = "<module>", consumer: bool = False) -> list[str]:
    """The module's ``path "versions.yml"`` output goes to the ``versions`` topic
    (``emit: versions, topic: versions``), except in a module that consumes the topic.
    """
    blocks = process_blocks(text)
    if len(blocks) != 1:
        return [f"{name}: expected one process, found {len(blocks)}"]
    output = process_sections(next(iter(blocks.values()))).get("output", "")
    lines = [line for line in scan(output).no_comments.splitlines() if re.search(r"[\"']versions\.yml[\"']", line)]
    if not lines:
        return [f"{name}: declares no versions.yml output"]
    topic = any(re.search(r"\btopic\s*:\s*versions\b", line) for line in lines)
    if consumer and topic:
        return [f"{name}: consumes the versions topic (report), so it must not emit to it: the run would never end"]
    if not consumer and not topic:
        return [
            f"{name}: versions.yml is not sent to the versions topic "
            '(`path "versions.yml", emit: versions, topic: versions`)'
        ]
    return []


def _emit_names(workflow_body: str) -> list[str]:
    code = scan(workflow_body).no_comments
    match = re.search(r"^[ \t]*emit\s*:(?!:)", code, flags=re.M)
    if not match:
        return []
    return re.findall(r"^[ \t]*([A-Za-z_]\w*)\s*=(?!=)", code[match.end() :], flags=re.M)


def check_versions_collected(workflow_texts: dict[str, str]) -> list[str]:
    """Versions travel by topic only: no workflow mixes ``*.out.versions`` or keeps a ``ch_versions``
    channel, no subworkflow emits ``versions``, and some workflow collects
    ``channel.topic('versions')`` (for ``softwareVersionsToYAML``).
    """
    problems = []
    collected = False
    for name, text in workflow_texts.items():
        for workflow, body in named_blocks(text, "workflow").items():
            label = f"{name}: workflow {workflow or '(entry)'}"
            code = scan(body).no_comments
            if re.search(r"\.out\.versions\b", code):
                problems.append(
                    f"{label} mixes .out.versions; versions.yml reaches the report through the versions topic"
                )
            if re.search(r"\bch_versions\b", code):
                problems.append(f"{label} keeps a ch_versions channel; collect channel.topic('versions') instead")
            if "versions" in _emit_names(body):
                problems.append(f"{label} emits versions; modules send versions.yml to the versions topic")
            if re.search(r"\b[cC]hannel\s*\.\s*topic\s*\(\s*['\"]versions['\"]\s*\)", code):
                collected = True
    if not collected:
        problems.append("no workflow collects channel.topic('versions') (softwareVersionsToYAML of the report)")
    return problems


def nextflow_version_floor(config_text: str) -> tuple[int, ...] | None:
    """The lowest Nextflow release ``manifest.nextflowVersion`` allows (``'!>=25.04.0'`` -> (25, 4, 0))."""
    match = re.search(r"\bnextflowVersion\s*=\s*['\"]!?\s*>=?\s*([\d.]+)", scan(config_text).no_comments)
    return tuple(int(part) for part in match.group(1).split(".") if part) if match else None


def check_topic_support(
    config_text: str, uses_topic: bool, preview_flag_texts: Iterable[str] = (), name: str = "nextflow.config"
) -> list[str]:
    """Topic channels need Nextflow >= 25.04, or >= 24.04 with ``nextflow.preview.topic = true``
    (in main.nf or a config); the manifest must not allow a release that cannot run the pipeline.
    """
    if not uses_topic:
        return []
    floor = nextflow_version_floor(config_text)
    if floor is None:
        return [
            f"{name}: manifest.nextflowVersion sets no minimum ('!>=25.04.0'), but the pipeline uses topic channels"
        ]
    if floor[:2] >= TOPIC_GA_VERSION:
        return []
    flagged = any(
        re.search(r"\bnextflow\.preview\.topic\s*=\s*true\b", scan(text).no_comments) for text in preview_flag_texts
    )
    if floor[:2] >= (24, 4) and flagged:
        return []
    version = ".".join(str(part) for part in floor)
    if floor[:2] < (24, 4):
        return [f"{name}: manifest.nextflowVersion allows {version}, but topic channels need Nextflow >= 24.04"]
    return [
        f"{name}: manifest.nextflowVersion allows {version}: topic channels need 25.04, "
        "or nextflow.preview.topic = true before it"
    ]


# --------------------------------------------------------------------------------------------------
# nf-test: every module and subworkflow has a test file that names its process / workflow
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class NfTest:
    path: Path
    kind: str | None  # nextflow_process | nextflow_workflow | nextflow_pipeline | nextflow_function
    script: Path | None  # resolved against the test file's folder
    process: str | None
    workflow: str | None
    tests: tuple[tuple[str, bool], ...]  # (name, runs with -stub)


def read_nf_test(path: Path, text: str | None = None) -> NfTest:
    """What an ``*.nf.test`` file tests: its kind, script, process/workflow and test cases."""
    text = path.read_text() if text is None else text
    s = scan(text)
    code = s.no_comments
    kind = re.search(
        r"^\s*(nextflow_process|nextflow_workflow|nextflow_pipeline|nextflow_function)\s*\{", code, flags=re.M
    )
    script = re.search(r"^\s*script\s+([\"'])(.+?)\1", code, flags=re.M)
    process = re.search(r"^\s*process\s+([\"'])(\w+)\1", code, flags=re.M)
    workflow = re.search(r"^\s*workflow\s+([\"'])(\w+)\1", code, flags=re.M)
    tests = []
    for match in re.finditer(r"\btest\s*\(\s*", s.code):
        name = re.match(r"([\"'])(.*?)\1\s*\)\s*\{", text[match.end() :])
        if not name:
            continue
        open_at = match.end() + name.end() - 1
        close_at = matching_close(s.code, open_at)
        body = code[open_at:close_at] if close_at > 0 else ""
        stub = re.search(r"^\s*options\s+([\"'])[^\"']*-stub\b[^\"']*\1", body, flags=re.M) is not None
        tests.append((name.group(2), stub))
    return NfTest(
        path=path,
        kind=kind.group(1) if kind else None,
        script=(path.parent / script.group(2)).resolve() if script else None,
        process=process.group(2) if process else None,
        workflow=workflow.group(2) if workflow else None,
        tests=tuple(tests),
    )


def _calls_processes(text: str) -> bool:
    return any("/modules/" in source for _, _, source, _ in includes(text))


def check_nf_tests(repo: Path = REPO) -> list[str]:
    """tests/nextflow/modules/<module>.nf.test for every modules/local/<module>/main.nf, naming its
    process, with a -stub test; tests/nextflow/subworkflows/<name>*.nf.test naming every workflow of
    subworkflows/local/<name>/main.nf (a -stub test where the subworkflow runs processes); every
    nf-test script resolves to a pipeline file that defines the process/workflow it names.
    """
    problems = []
    tests_dir = repo / "tests" / "nextflow"
    found = {path: read_nf_test(path) for path in sorted(tests_dir.rglob("*.nf.test"))}

    def rel(path: Path) -> str:
        return path.relative_to(repo).as_posix() if path.is_relative_to(repo) else str(path)

    for test in found.values():
        if test.kind is None:
            problems.append(f"{rel(test.path)}: no nextflow_process/nextflow_workflow/nextflow_pipeline block")
            continue
        if test.script is None or not test.script.is_file():
            problems.append(f"{rel(test.path)}: script does not name an existing file")
            continue
        if not test.tests:
            problems.append(f"{rel(test.path)}: has no test(...) case")
        target = test.script.read_text()
        if test.kind == "nextflow_process" and (test.process is None or test.process not in process_blocks(target)):
            problems.append(f"{rel(test.path)}: process {test.process!r} is not defined in {rel(test.script)}")
        if test.kind == "nextflow_workflow" and (
            test.workflow is None or test.workflow not in named_blocks(target, "workflow")
        ):
            problems.append(f"{rel(test.path)}: workflow {test.workflow!r} is not defined in {rel(test.script)}")

    for module, main in module_dirs(repo).items():
        expected = tests_dir / "modules" / f"{module}.nf.test"
        test = found.get(expected)
        if test is None:
            problems.append(f"{rel(main)}: no nf-test {rel(expected)}")
            continue
        for process in process_blocks(main.read_text()):
            if test.kind != "nextflow_process" or test.script != main.resolve() or test.process != process:
                problems.append(f"{rel(expected)}: does not test process {process} of {rel(main)}")
        if not any(stub for _, stub in test.tests):
            problems.append(f'{rel(expected)}: has no test with options "-stub"')

    for main in sorted((repo / "subworkflows" / "local").glob("*/main.nf")):
        folder = main.parent.name
        text = main.read_text()
        candidates = [
            t for p, t in found.items() if p.parent == tests_dir / "subworkflows" and p.name.startswith(folder)
        ]
        for workflow in named_blocks(text, "workflow"):
            testing = [
                t
                for t in candidates
                if t.kind == "nextflow_workflow" and t.script == main.resolve() and t.workflow == workflow
            ]
            if not testing:
                problems.append(
                    f"{rel(main)}: workflow {workflow} has no nf-test "
                    f"tests/nextflow/subworkflows/{folder}*.nf.test naming it"
                )
            elif _calls_processes(text) and not any(stub for t in testing for _, stub in t.tests):
                problems.append(f'{rel(main)}: the nf-test of workflow {workflow} has no test with options "-stub"')
    return problems


def check_pipeline_nf_test(test: NfTest, text: str, repo: Path = REPO) -> list[str]:
    """tests/nextflow/pipeline.nf.test runs main.nf with -stub and for real (the test profile of
    nf-test.config), and asserts the report.
    """
    name = test.path.name
    problems = []
    if test.kind != "nextflow_pipeline" or test.script != (repo / "main.nf").resolve():
        problems.append(f"{name}: is not a nextflow_pipeline test of main.nf")
    if not any(stub for _, stub in test.tests):
        problems.append(f'{name}: has no test with options "-stub"')
    if not any(not stub for _, stub in test.tests):
        problems.append(f"{name}: has no real (non-stub) test")
    if "multiqc/multiqc_report.html" not in scan(text).no_comments:
        problems.append(f"{name}: does not assert multiqc/multiqc_report.html")
    return problems


# --------------------------------------------------------------------------------------------------
# Check 6: output globs match what the stage writes
# --------------------------------------------------------------------------------------------------


def check_outputs_produced(
    module_text: str, stage_dir: Path, samples: Iterable[str], name: str = "<module>"
) -> list[str]:
    """Every ``path(...)`` output of the module (``${meta.id}`` = each sample) matches a file the
    stage wrote into ``stage_dir`` (its publishDir, ``<outdir>/<stage>/`` of ``tmeflow run``).

    Per-sample patterns: required outputs must exist for every sample the stage wrote anything
    for; optional ones for at least one. Versions.yml is the module's own file, not the stage's.
    """
    blocks = process_blocks(module_text)
    if len(blocks) != 1:
        return [f"{name}: expected one process, found {len(blocks)}"]
    body = next(iter(blocks.values()))
    outputs = [o for o in output_paths(process_sections(body).get("output", "")) if o.pattern != "versions.yml"]
    if not stage_dir.is_dir():
        return [f"{name}: the stage wrote no {stage_dir}"]
    written = sorted(p.relative_to(stage_dir).as_posix() for p in stage_dir.rglob("*"))
    samples = list(samples)
    processed = [s for s in samples if any(f.startswith(f"{s}.") for f in written)]
    problems = []
    if not outputs:
        problems.append(f"{name}: declares no path outputs")
    for output in outputs:
        per_sample = re.search(r"\$\{?(meta\.id|prefix)\}?", output.pattern) is not None
        if per_sample:
            if not processed:
                problems.append(f"{name}: no file in {stage_dir} starts with a sample name of {samples}")
                break
            hits = []
            for sample in processed:
                pattern = interpolate(output.pattern, {**META_PLACEHOLDERS, "meta.id": sample, "prefix": sample})
                matched = any(glob_match(f, pattern) for f in written)
                hits.append(matched)
                if not matched and not output.optional:
                    problems.append(
                        f"{name}: output {output.pattern!r} ({pattern}) was not written for sample {sample}"
                    )
            if output.optional and not any(hits):
                problems.append(f"{name}: optional output {output.pattern!r} was written for no sample")
        else:
            pattern = interpolate(output.pattern, META_PLACEHOLDERS)
            if not any(glob_match(f, pattern) for f in written) and not output.optional:
                problems.append(f"{name}: output {output.pattern!r} matches nothing in {stage_dir}")
    return problems


# --------------------------------------------------------------------------------------------------
# Files
# --------------------------------------------------------------------------------------------------


def nextflow_files(repo: Path = REPO) -> list[Path]:
    files = [repo / "main.nf"]
    for folder in ("workflows", "subworkflows", "modules"):
        files += sorted((repo / folder).rglob("*.nf"))
    return [f for f in files if f.is_file()]


def config_files(repo: Path = REPO) -> list[Path]:
    return [f for f in [repo / "nextflow.config", *sorted((repo / "conf").glob("*.config"))] if f.is_file()]


# --------------------------------------------------------------------------------------------------
# conf/modules.config: selectors name real processes; stages publish to <outdir>/<stage>
# --------------------------------------------------------------------------------------------------


def check_config_selectors(config_text: str, processes: Iterable[str], name: str = "conf/modules.config") -> list[str]:
    """Every ``withName`` selector matches at least one process of the pipeline (no stale entries)."""
    processes = list(processes)
    return [
        f"{name}: withName: '{selector}' matches no process of modules/ ({', '.join(processes)})"
        for selector, _ in withname_blocks(config_text)
        if not selector.startswith("!") and not any(selector_matches(selector, p) for p in processes)
    ]


def check_publish_dir(config_text: str, process: str, folder: str, name: str = "conf/modules.config") -> list[str]:
    """The process publishes to ``${params.outdir}/<folder>`` with ``params.publish_dir_mode`` and
    leaves versions.yml out, as ``tmeflow run`` lays out its results.
    """
    bodies = [body for selector, body in withname_blocks(config_text) if selector_matches(selector, process)]
    if not bodies:
        return [f"{name}: no withName block for {process}"]
    body = scan(bodies[-1]).no_comments
    problems = []
    if not re.search(r"path\s*:\s*\{\s*\"\$\{params\.outdir\}/" + re.escape(folder) + r"\"\s*\}", body):
        problems.append(f'{name}: {process} does not publish to "${{params.outdir}}/{folder}"')
    if not re.search(r"mode\s*:\s*params\.publish_dir_mode", body):
        problems.append(f"{name}: {process} does not publish with mode: params.publish_dir_mode")
    if "versions.yml" not in body:
        problems.append(f"{name}: {process} publishes versions.yml (saveAs should drop it)")
    return problems


def check_resource_labels(base_config: str, name: str = "conf/base.config") -> list[str]:
    """conf/base.config sizes every label a module may carry, retries on the exit codes of a task
    killed for resources, and gives process_gpu its accelerator.
    """
    code = scan(base_config).no_comments
    problems = [
        f"{name}: no withLabel:{label} block"
        for label in sorted(RESOURCE_LABELS)
        if not re.search(rf"withLabel\s*:\s*['\"]?{label}['\"]?\s*\{{", code)
    ]
    retry = re.search(r"task\.exitStatus\s+in\s+(.+?)\s*\?\s*'retry'", code)
    codes = retry_exit_codes(retry.group(1)) if retry else set()
    if not RETRY_EXIT_CODES <= codes:
        problems.append(
            f"{name}: errorStrategy should retry on exit codes {sorted(RETRY_EXIT_CODES)} (has {sorted(codes)})"
        )
    gpu = [body for selector, body in _label_blocks(code) if selector == "process_gpu"]
    if gpu and re.search(r"\b(accelerator|containerOptions|container|clusterOptions)\s*=", gpu[0]):
        problems.append(
            f"{name}: withLabel:process_gpu asks for a GPU outside -profile gpu (that is conf/gpu.config's job)"
        )
    return problems


# nf-core template (tools 3.x): 130-145 (killed by a signal), 104, 175 (spot reclaim)
RETRY_EXIT_CODES = frozenset({*range(130, 146), 104, 175})


def retry_exit_codes(expression: str) -> set[int]:
    """Exit codes of a Groovy ``[104, 137]`` / ``((130..145) + 104 + 175)`` expression."""
    codes: set[int] = set()
    for low, high in re.findall(r"(\d+)\s*\.\.\s*(\d+)", expression):
        codes |= set(range(int(low), int(high) + 1))
    rest = re.sub(r"\d+\s*\.\.\s*\d+", " ", expression)
    return codes | {int(c) for c in re.findall(r"\d+", rest)}


def _label_blocks(code: str) -> list[tuple[str, str]]:
    s = scan(code)
    blocks = []
    for match in re.finditer(r"withLabel\s*:\s*['\"]?(\w+)['\"]?\s*\{", s.code):
        close_at = matching_close(s.code, match.end() - 1)
        blocks.append((match.group(1), code[match.end() : close_at]))
    return blocks


def profile_blocks(config_text: str) -> dict[str, str]:
    """``{profile: body}`` of the ``profiles { name { ... } }`` of a config."""
    s = scan(config_text)
    found = re.search(r"(?<![\w.])profiles\s*\{", s.code)
    if not found:
        return {}
    close_at = matching_close(s.code, found.end() - 1)
    blocks, k = {}, found.end()
    while True:
        match = re.compile(r"\s*([A-Za-z_]\w*)\s*\{").match(s.code, k)
        if not match or match.end() > close_at:
            break
        end = matching_close(s.code, match.end() - 1)
        blocks[match.group(1)] = config_text[match.end() : end]
        k = end + 1
    return blocks


def check_config_includes(config_text: str, base: Path, name: str = "nextflow.config") -> list[str]:
    """Every ``includeConfig 'path'`` names an existing file (relative to the including config)."""
    return [
        f"{name}: includeConfig '{source}' names no file"
        for source in re.findall(r"\bincludeConfig\s*\(?\s*['\"]([^'\"$]+)['\"]", scan(config_text).no_comments)
        if not (base / source).is_file()
    ]


# Cloud profiles: the config each includes, its executor, and settings it must make
CLOUD_PROFILES = {
    "awsbatch": ("conf/awsbatch.config", "awsbatch", ("queue", "cliPath")),
    "google": ("conf/google.config", "google-batch", ("project", "location", "spot")),
}


def check_cloud_profiles(config_text: str, repo: Path = REPO) -> list[str]:
    """The awsbatch and google profiles include conf/<profile>.config, which sets the executor,
    the settings a user must give (each read from the environment or overridden with -c), and
    turns conda off (GPUs: conf/gpu.config, :func:`nf_strict.check_gpu_routing`).
    """
    problems = []
    profiles = profile_blocks(config_text)
    for profile, (path, executor, settings) in CLOUD_PROFILES.items():
        body = scan(profiles.get(profile, "")).no_comments
        if not re.search(rf"\bincludeConfig\s*\(?\s*['\"]{re.escape(path)}['\"]", body):
            problems.append(f"nextflow.config: profile {profile} does not include {path}")
            continue
        if not (repo / path).is_file():
            problems.append(f"{path}: missing")
            continue
        code = scan((repo / path).read_text()).no_comments
        if not re.search(rf"\bexecutor\s*=\s*['\"]{re.escape(executor)}['\"]", code):
            problems.append(f"{path}: does not set executor = '{executor}'")
        for setting in settings:
            if not re.search(rf"\b{setting}\s*=", code):
                problems.append(f"{path}: does not set {setting}")
        if not re.search(r"\bconda\.enabled\s*=\s*false\b", code):
            problems.append(f"{path}: does not turn conda off (cloud batch jobs need the containers)")
    return problems


def render_params_block(schema: dict[str, Any]) -> str:
    """A ``params { }`` block with every schema parameter at its default, grouped as the schema is
    (to paste into nextflow.config when the schema grows).
    """

    def literal(value: Any) -> str:
        if isinstance(value, str):
            return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"
        return groovy_str(value)

    lines = ["params {"]
    for group in schema.get("$defs", {}).values():
        properties = group.get("properties", {})
        if not properties:
            continue
        width = max(len(name) for name in properties)
        lines += ["", f"    // {group.get('title', '')}"]
        lines += [f"    {name:<{width}} = {literal(spec.get('default'))}" for name, spec in properties.items()]
    lines.append("}")
    return "\n".join(lines)


def render_withname_block(stage: str, schema: dict[str, Any]) -> str:
    """A conf/modules.config ``withName`` block for a stage: ext.args from the stage's schema groups
    (parameters without a default, or with '', passed only when set; strings quoted) and publishDir
    ``<outdir>/<stage>``. A starting point for a new stage, to be read before use.
    """
    from tmeflow.stages import get_stage

    items = []
    for group in get_stage(stage).param_groups:
        for param, spec in schema["$defs"][group]["properties"].items():
            if spec.get("format") == "file-path":  # staged as a path input of the process instead
                continue
            quoted = spec.get("type") == "string" and "enum" not in spec
            value = f"'${{params.{param}}}'" if quoted else f"${{params.{param}}}"
            item = f'"--{param} {value}"'
            if spec.get("default") in (None, ""):
                item = f"params.{param} ? {item} : ''"
            items.append(item)
    body = ",\n".join(f"            {item}" for item in items)
    return (
        f"    withName: '{stage.upper()}' {{\n"
        f"        ext.args = {{ [\n{body}\n        ].join(' ') }}\n"
        f"        publishDir = [\n"
        f'            path: {{ "${{params.outdir}}/{stage}" }},\n'
        f"            mode: params.publish_dir_mode,\n"
        f"            saveAs: {{ filename -> filename.equals('versions.yml') ? null : filename }}\n"
        f"        ]\n"
        f"    }}"
    )


if __name__ == "__main__":
    # python tests/nf_static.py               -> params block for nextflow.config
    # python tests/nf_static.py <stage> ...   -> conf/modules.config withName block(s)
    import sys

    if len(sys.argv) > 1:
        print("\n\n".join(render_withname_block(stage, load_schema()) for stage in sys.argv[1:]))
    else:
        print(render_params_block(load_schema()))
