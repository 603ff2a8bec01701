"""Config files: map the host paths inside them and write the rewritten copy.

Rewriting is done in place in the text, so formatting, comments, key order and line endings
survive byte for byte; only path spellings change. Structured files (YAML, JSON, TOML, INI,
.env) are parsed first: a malformed file is refused with ``file:line`` and the parser's reason,
and only paths inside string VALUES count (in nested maps and lists, INI sections, ``.env``
lines; keys do not). Each such path is then replaced wherever it appears in the file on path
boundaries, including the ``\\/`` spelling of JSON and YAML and ``file://`` URLs. Plain text
is scanned token by token (see :mod:`dltasks.paths.map`). Finding the files: paths.find_configs.
"""

from __future__ import annotations

import bisect
import functools
import io
import json
import os
import re
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dltasks.errors import DltError

if TYPE_CHECKING:
    import configparser

    import yaml
from dltasks.paths.map import (
    STOP,
    Hit,
    Kind,
    Mapped,
    PathMap,
    Resolution,
    Unmapped,
    apply_spans,
    can_start,
    iter_resolved,
    scan,
    suggestion,
)


@functools.cache
def _toml() -> Any:
    """tomllib (tomli on Python 3.10, when installed; else None), imported on first use: a run
    with no TOML config does not pay for it (nor for configparser, nor for PyYAML)."""
    if sys.version_info >= (3, 11):
        import tomllib

        return tomllib
    try:  # pragma: no cover - Python 3.10
        import tomli

        return tomli
    except ImportError:  # pragma: no cover
        return None

FORMATS = ("yaml", "json", "toml", "ini", "env", "text")


def format_for(path: str) -> str:
    """The format of a config file, by its name: yaml, json, toml, ini, env or text."""
    name = os.path.basename(path).lower()
    suffix = os.path.splitext(name)[1]
    if suffix in (".yaml", ".yml"):
        return "yaml"
    if suffix == ".json":
        return "json"
    if suffix == ".toml":
        return "toml" if _toml() is not None else "text"
    if suffix in (".ini", ".cfg"):
        return "ini"
    if name == ".env" or name.startswith(".env.") or suffix == ".env":
        return "env"
    return "text"


# ---------------------------------------------------------------------------------------------
# string values of each format (and the refusal of malformed files)


def _bad(where: str, line: int | None, fmt: str, reason: str) -> DltError:
    at = f"{where}:{line}" if line else where
    reason = reason.strip().splitlines()[0] if reason.strip() else "syntax error"
    return DltError(f"{at}: invalid {fmt.upper()} ({reason}); fix it, or leave the file out "
                    f"of DLT_CONFIGS")


def _strings(data: Any) -> Iterator[str]:
    """String values in parsed JSON/TOML data (dict values and list items, recursively)."""
    if isinstance(data, str):
        yield data
    elif isinstance(data, dict):
        for v in data.values():
            yield from _strings(v)
    elif isinstance(data, list):
        for v in data:
            yield from _strings(v)


def _yaml_values(text: str, where: str) -> list[str]:
    # compose, not safe_load: it checks the syntax and gives every scalar without constructing
    # objects, so custom tags (!!python/..., Hydra's) are not a reason to refuse a file.
    import yaml  # here, not above: a run with no YAML config does not pay for PyYAML

    # libyaml when PyYAML was built with it: ~20x faster on big files, same nodes and marks.
    loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        docs = list(yaml.compose_all(text, Loader=loader))
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        raise _bad(where, mark.line + 1 if mark else None, "yaml",
                   e.problem or e.context or str(e)) from None
    except yaml.YAMLError as e:
        raise _bad(where, None, "yaml", str(e)) from None
    out: list[str] = []
    seen: set[int] = set()

    def walk(node: yaml.Node | None) -> None:
        if node is None or id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            out.append(str(node.value))
        elif isinstance(node, yaml.SequenceNode):
            for item in node.value:
                walk(item)
        elif isinstance(node, yaml.MappingNode):
            for _key, value in node.value:
                walk(value)

    for doc in docs:
        walk(doc)
    return out


def _json_values(text: str, where: str) -> list[str]:
    try:
        return list(_strings(json.loads(text.lstrip("\ufeff"))))
    except json.JSONDecodeError as e:
        raise _bad(where, e.lineno, "json", e.msg) from None


_TOML_AT = re.compile(r"\s*\(at line (\d+), column \d+\)")


def _toml_values(text: str, where: str) -> list[str]:
    tomllib = _toml()
    assert tomllib is not None
    try:
        return list(_strings(tomllib.loads(text.lstrip("\ufeff"))))
    except tomllib.TOMLDecodeError as e:
        msg = str(e)
        m = _TOML_AT.search(msg)
        raise _bad(where, int(m.group(1)) if m else None, "toml", _TOML_AT.sub("", msg)) from None


def _ini_values(text: str, where: str) -> list[str]:
    import configparser

    def parse(body: str) -> configparser.ConfigParser:
        cp = configparser.ConfigParser(interpolation=None, strict=False)
        cp.read_string(body)
        return cp

    shift = 0
    try:
        try:
            cp = parse(text.lstrip("\ufeff"))
        except configparser.MissingSectionHeaderError:
            shift = 1  # key=value lines before any [section]: read them as one section
            cp = parse("[__top__]\n" + text.lstrip("\ufeff"))
    except configparser.ParsingError as e:
        lineno, line = e.errors[0] if e.errors else (None, "")
        raise _bad(where, lineno - shift if lineno else None, "ini",
                   f"cannot parse {str(line).strip()!r}") from None
    except configparser.Error as e:
        lineno = getattr(e, "lineno", None)
        raise _bad(where, lineno - shift if lineno else None, "ini", e.message) from None
    pairs = [*cp.defaults().items()]
    for section in cp.sections():
        pairs.extend(cp.items(section, raw=True))
    # configparser merges repeated sections and keys ([net] twice in a darknet .cfg): read the
    # values off the lines too, so each one is seen.
    return [value for _key, value in pairs if value is not None] + _ini_line_values(text)


_INI_KEY = re.compile(r"[^=:\s][^=:]*[=:](.*)")


def _ini_line_values(text: str) -> list[str]:
    out: list[str] = []
    for line in text.splitlines():
        s = line.strip()
        if not s or s[0] in "#;[":
            continue
        m = None if line[0].isspace() else _INI_KEY.match(s)
        out.append(m.group(1).strip() if m else s)
    return out


def _env_values(text: str, where: str) -> list[str]:
    from dotenv.parser import parse_stream

    out: list[str] = []
    for b in parse_stream(io.StringIO(text)):
        if b.error:
            first = b.original.string.strip().splitlines()
            raise _bad(where, b.original.line, "env",
                       f"cannot parse {first[0] if first else ''!r}; write KEY=value")
        if b.value is not None:
            out.append(b.value)
    return out


_VALUES: dict[str, Callable[[str, str], list[str]]] = {
    "yaml": _yaml_values, "json": _json_values, "toml": _toml_values, "ini": _ini_values,
    "env": _env_values,
}


# ---------------------------------------------------------------------------------------------
# mapping a text


def _lines(text: str) -> Callable[[int], int]:
    """offset -> 1-based line number, for many offsets in one text."""
    breaks = [m.start() for m in re.finditer("\n", text)]
    return lambda offset: bisect.bisect_left(breaks, offset) + 1


_FILE_URL_TAILS = ("file://", "file://localhost", "file:\\/\\/", "file:\\/\\/localhost")


def _bounded(text: str, start: int, end: int) -> bool:
    """Whether ``text[start:end]`` is a whole path (not part of a longer one or of a word)."""
    before = can_start(text, start) or text[max(0, start - 20):start].lower().endswith(
        _FILE_URL_TAILS)
    after = end == len(text) or (text[end] in STOP and not text.startswith("\\/", end)) or (
        text[end] == "." and (end + 1 == len(text) or text[end + 1] in STOP))
    return before and after


class _Spans:
    """Disjoint (start, end) spans, sorted, with an O(log n) overlap test."""

    def __init__(self) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []

    def take(self, i: int, j: int) -> bool:
        k = bisect.bisect_left(self.starts, j)
        if k and self.ends[k - 1] > i:
            return False
        self.starts.insert(k, i)
        self.ends.insert(k, j)
        return True


_ESCAPED = re.compile(r"(?:\\/[^\\/\s\"'`,;:|&<>()\[\]{}*?$]+)+(?:\\/)?")


def _locate(text: str, paths: Sequence[str], escaped: bool) -> list[tuple[int, int, str, bool]]:
    """Occurrences (start, end, path, written-with-\\/) of each path on path boundaries.

    One scan of the text finds the paths a token scan reproduces; only the others (spaces,
    commas..., or not met by the scan) are searched for one by one, longest first.
    """
    spans, found = _Spans(), []
    simple = {p for p in paths if [h.path for h in scan(p)] == [p]}

    def search(path: str) -> None:
        variants = [(path, False)] + ([(path.replace("/", "\\/"), True)] if escaped else [])
        for spelled, esc in variants:
            i = text.find(spelled)
            while i >= 0:
                j = i + len(spelled)
                if _bounded(text, i, j) and spans.take(i, j):
                    found.append((i, j, path, esc))
                i = text.find(spelled, i + 1)

    for path in sorted((p for p in paths if p not in simple), key=len, reverse=True):
        search(path)
    for hit in scan(text):
        if hit.path in simple and spans.take(hit.start, hit.end):
            found.append((hit.start, hit.end, hit.path, False))
    if escaped and "\\/" in text:
        for m in _ESCAPED.finditer(text):
            path = m.group().replace("\\/", "/")
            if path in simple and can_start(text, m.start()) and spans.take(m.start(), m.end()):
                found.append((m.start(), m.end(), path, True))
    seen = {f[2] for f in found}
    for path in sorted(simple - seen, key=len, reverse=True):
        search(path)
    return found


def _result(text: str, occurrences: list[tuple[int, int, str, bool]],
            resolved: dict[str, Resolution], pathmap: PathMap, where: str) -> Mapped:
    first: dict[str, int] = {}
    spans: list[tuple[int, int, str]] = []
    for start, end, path, esc in sorted(occurrences):
        first.setdefault(path, start)
        res = resolved[path]
        if res.kind is Kind.MAPPED and res.new is not None:
            spans.append((start, end, res.new.replace("/", "\\/") if esc else res.new))
    order = sorted(resolved, key=lambda p: first.get(p, len(text)))
    replacements = tuple((p, r.new) for p in order
                         if (r := resolved[p]).kind is Kind.MAPPED and r.new is not None)
    line = _lines(text) if first else (lambda _offset: 0)
    unmapped = tuple(
        Unmapped(p, f"{where}:{line(first[p])}" if p in first else where,
                 suggestion(p, pathmap))
        for p in order if resolved[p].kind is Kind.UNMAPPED)
    return Mapped(apply_spans(text, spans), replacements, unmapped)


def _keep(hit: Hit, res: Resolution) -> bool:
    return res.kind is Kind.UNMAPPED or (res.kind is Kind.MAPPED and res.new != hit.path)


def map_text(text: str, pathmap: PathMap, *, fmt: str, where: str) -> Mapped:
    """Map every host path in a config's text; ``fmt`` is one of :data:`FORMATS`.

    ``where`` names the file in messages (``file:line`` of each path's first occurrence).
    Raises DltError for a malformed structured file, or a path written in a way that cannot be
    rewritten in place (escapes, split across lines).
    """
    if fmt not in FORMATS:
        raise ValueError(f"unknown config format {fmt!r}; expected one of {FORMATS}")
    resolved: dict[str, Resolution] = {}
    if fmt == "text" or (fmt == "toml" and _toml() is None):
        occurrences = []
        for hit in scan(text):
            res = pathmap.resolve(hit.path)
            if _keep(hit, res):
                resolved.setdefault(hit.path, res)
                occurrences.append((hit.start, hit.end, hit.path, False))
        return _result(text, occurrences, resolved, pathmap, where)
    for value in _VALUES[fmt](text, where):
        for hit, res in iter_resolved(value, pathmap):
            if _keep(hit, res):
                resolved.setdefault(hit.path, res)
    occurrences = _locate(text, list(resolved), escaped=fmt in ("json", "yaml"))
    located = {o[2] for o in occurrences}
    for path, res in resolved.items():
        if res.kind is Kind.MAPPED and path not in located:
            raise DltError(f"{where}: cannot rewrite {path!r} in place (it is written with "
                           f"escapes or across lines); write it as a plain one-line string")
    mapped = _result(text, occurrences, resolved, pathmap, where)
    if mapped.replacements:  # the rewrite must still parse: never hand the code a broken file
        try:
            _VALUES[fmt](mapped.text, where)
        except DltError as e:
            raise DltError(f"{where}: rewriting its paths broke the file ({e.message}); write "
                           f"the paths as plain quoted strings") from None
    return mapped


# ---------------------------------------------------------------------------------------------
# files


def rewrite_config(src: Path, dest: Path, pathmap: PathMap, *, where: str) -> Mapped:
    """Write ``src`` with its paths mapped to ``dest`` (parents created). ``src`` is only read."""
    try:
        data = src.read_bytes()
        mode = os.stat(src).st_mode & 0o777
    except OSError as e:
        raise DltError(f"{where}: cannot read it ({e.strerror}); fix DLT_CONFIGS") from None
    if os.path.abspath(src) == os.path.abspath(dest) or (
            dest.exists() and os.path.samefile(src, dest)):
        raise DltError(f"{where}: refusing to rewrite a config in place; write it into the "
                       f"run's folder")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DltError(f"{where}: not UTF-8 text (byte 0x{data[e.start]:02x} at offset "
                       f"{e.start}); save it as UTF-8, or leave it out of DLT_CONFIGS") from None
    mapped = map_text(text, pathmap, fmt=format_for(src.name), where=where)
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(mapped.text.encode("utf-8"))
    os.chmod(dest, mode | 0o600)  # keep the exec bit of scripts; the copy stays writable
    return mapped
