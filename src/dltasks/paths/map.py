"""The path map: named roots (code, data, outputs, mounts), each seen from three places.

A :class:`Root` is one folder as the laptop sees it (``local``), as the target host sees it
(``host``; the same as ``local`` for a local target, the synced/``.env.<host>`` folder for a
remote one) and as the container sees it (``container``). :meth:`PathMap.resolve` decides what
one absolute path is; :func:`scan` finds the absolute paths inside a piece of text. Both are pure.

The rules, which users see (``paths.py`` repeats them in its docstring):

* A path is an absolute POSIX path: it starts with one ``/`` (``//server/share``, ``C:\\x``,
  ``C:/x``, ``~/x``, ``$HOME/x`` and relative paths are left alone, never reported).
* It is normalised lexically (``posixpath.normpath``: ``.``, ``..`` and ``//`` removed, no
  symlinks followed) and then matched against every spelling of every root on path boundaries
  (``/home/me/proj2`` is not under ``/home/me/proj``); the longest matching spelling wins, so a
  root nested in another (outputs inside code) takes its own paths. The spellings are ``local``,
  ``host`` and ``aliases`` (e.g. the realpath of a symlinked folder, see :func:`make_root`).
* A mapped path is written back normalised (``/home/me/proj/a/../b`` becomes ``/workspace/b``),
  keeping a trailing ``/`` when the original had one.
* A path under no root but under some root's ``container`` path is already a container path and
  is left alone. So is a path under a system folder (:data:`SYSTEM_PREFIXES`, but not
  :data:`USER_UNDER_SYSTEM`) and ``/`` itself.
  Any other absolute path is *unmapped*: reported with the setting that would cover it.
* In text, a ``/`` starts a path only at the start of a value or after whitespace, a quote,
  ``=``, ``,``, ``;``, ``(``, ``[``, ``{``, ``|`` or ``&``, or after ``:`` when what precedes the
  ``:`` is itself an absolute path or nothing (``/a:/b`` lists; ``host:/x`` and ``C:/x`` are not
  paths). It ends at whitespace, a quote or one of ``,;:|&<>()[]{}*?$\\``; a trailing ``.`` is
  dropped (end of a sentence). URLs (``scheme://...``) are skipped whole, except ``file:///x``
  and ``file://localhost/x``, whose path is mapped.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from enum import Enum

from dltasks.errors import DltError

#: Folders that belong to the operating system or the image, never to the user's data: a path
#: under one of them that no root covers is left alone and not reported.
SYSTEM_PREFIXES: tuple[str, ...] = (
    "/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc", "/run",
    "/sbin", "/sys", "/tmp", "/usr", "/var", "/opt/conda", "/opt/nvidia", "/nix", "/snap",
    "/private", "/System", "/Library",
)
#: ...except these, where users keep data (removable disks).
USER_UNDER_SYSTEM: tuple[str, ...] = ("/run/media", "/var/run/media")


def _norm(path: str) -> str:
    norm = posixpath.normpath(path)
    return "/" + norm.lstrip("/") if norm.startswith("//") else norm


def _dir_slash(path: str) -> bool:
    """Whether the user wrote a trailing slash (kept on the mapped path); "/" itself has none."""
    return path.endswith("/") and bool(path.strip("/"))


def _under(path: str, root: str) -> bool:
    """Whether normalised ``path`` is ``root`` or inside it (path-boundary aware)."""
    return root == "/" or path == root or path.startswith(root + "/")


def _check_abs(root: str, what: str, value: str) -> str:
    if not value.startswith("/"):
        raise DltError(f"mount {root}: {what} path {value!r} is not absolute; "
                       f"write it starting with /")
    return _norm(value)


@dataclass(frozen=True)
class Root:
    """One mounted folder: its path on the laptop, on the target host and in the container."""

    name: str
    local: str
    host: str
    container: str
    readonly: bool = False
    aliases: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        # Normalised once here, so matching never has to care about "/x/" vs "/x".
        object.__setattr__(self, "local", _check_abs(self.name, "local", self.local))
        object.__setattr__(self, "host", _check_abs(self.name, "host", self.host))
        container = _check_abs(self.name, "container", self.container)
        if container == "/":
            raise DltError(f"mount {self.name}: cannot mount over / in the container; "
                           f"pick a folder such as /data")
        object.__setattr__(self, "container", container)
        object.__setattr__(self, "aliases", tuple(
            dict.fromkeys(_check_abs(self.name, "alias", a) for a in self.aliases)))

    @property
    def spellings(self) -> tuple[str, ...]:
        """Every host-side spelling of this root: local, host, aliases (no duplicates)."""
        return tuple(dict.fromkeys((self.local, self.host, *self.aliases)))


def make_root(name: str, local: str, container: str, *, host: str | None = None,
              readonly: bool = False) -> Root:
    """A Root whose aliases include ``local``'s realpath when it differs (a symlinked folder).

    Reads the local file system (``os.path.realpath``); everything else here is pure.
    """
    local_abs = os.path.abspath(os.path.expanduser(local))
    real = os.path.realpath(local_abs)
    aliases = (real,) if _norm(real) != _norm(local_abs) else ()
    return Root(name, local_abs, host or local_abs, container, readonly, aliases)


class Kind(Enum):
    MAPPED = "mapped"        # under a root: ``new`` is the container path
    CONTAINER = "container"  # already a container path: left alone
    SYSTEM = "system"        # / or a system folder: left alone
    UNMAPPED = "unmapped"    # a host path the container will not see


@dataclass(frozen=True)
class Resolution:
    kind: Kind
    path: str
    new: str | None = None
    root: Root | None = None


@dataclass(frozen=True)
class PathMap:
    """Roots, and the one function that maps a host path into the container."""

    roots: tuple[Root, ...]
    _by_len: tuple[tuple[str, Root], ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for r in self.roots:
            if r.container in seen:
                raise DltError(f"mounts {seen[r.container]} and {r.name} both go to "
                               f"{r.container} in the container; give one another path")
            seen[r.container] = r.name
        pairs = [(s, r) for r in self.roots for s in r.spellings]
        # Longest spelling first; sorted() is stable, so equal lengths keep the roots' order.
        object.__setattr__(self, "_by_len", tuple(sorted(pairs, key=lambda p: -len(p[0]))))

    def root(self, name: str) -> Root | None:
        return next((r for r in self.roots if r.name == name), None)

    def _match(self, norm: str) -> tuple[str, Root] | None:
        return next(((s, r) for s, r in self._by_len if _under(norm, s)), None)

    def resolve(self, path: str) -> Resolution:
        """Classify an absolute path (see the module docstring for the rules)."""
        norm = _norm(path)
        hit = self._match(norm)
        if hit is not None:
            spelling, root = hit
            rest = norm if spelling == "/" else norm[len(spelling):]
            new = root.container + ("" if rest == "/" else rest)
            if _dir_slash(path) and not new.endswith("/"):
                new += "/"
            return Resolution(Kind.MAPPED, path, new, root)
        if any(_under(norm, r.container) for r in self.roots):
            return Resolution(Kind.CONTAINER, path)
        if norm == "/" or (any(_under(norm, p) for p in SYSTEM_PREFIXES)
                           and not any(_under(norm, p) for p in USER_UNDER_SYSTEM)):
            return Resolution(Kind.SYSTEM, path)
        return Resolution(Kind.UNMAPPED, path)

    def to_container(self, path: str) -> str | None:
        """Local, host or alias path -> container path; None when no root covers it.

        A path that is already a container path (and no host path) also gives None.
        """
        if not path.startswith("/"):
            return None
        res = self.resolve(path)
        return res.new if res.kind is Kind.MAPPED else None

    def to_host(self, path: str) -> str | None:
        """Local (or alias, or host) path -> the same file's path on the target host."""
        if not path.startswith("/"):
            return None
        norm = _norm(path)
        hit = self._match(norm)
        if hit is None:
            return None
        spelling, root = hit
        rest = norm if spelling == "/" else norm[len(spelling):]
        new = (rest or "/") if root.host == "/" else root.host + ("" if rest == "/" else rest)
        return new + "/" if _dir_slash(path) and not new.endswith("/") else new

    def table(self) -> list[tuple[str, str, str, str]]:
        """(name, local, host, container) per root, for ``--dry-run``."""
        return [(r.name, r.local, r.host, r.container) for r in self.roots]


@dataclass(frozen=True)
class Unmapped:
    """A host path the container would not see, where it was found, and the setting to add."""

    path: str        # the absolute path as found
    where: str       # "config.yaml:12", "argument 3", "env DATA_PATH"
    suggestion: str  # e.g. "DLT_MOUNTS=/mnt/datasets:/mnt/datasets:ro"


@dataclass(frozen=True)
class Mapped:
    """A rewritten text: the new text, what was replaced, and what could not be mapped."""

    text: str
    replacements: tuple[tuple[str, str], ...]  # (old, new), distinct, in order of appearance
    unmapped: tuple[Unmapped, ...]


# ---------------------------------------------------------------------------------------------
# suggestions for unmapped paths

_DEPTH = {"/home": 3, "/Users": 3, "/media": 3, "/run/media": 4}
_OUTPUTISH = re.compile(
    r"(^|[_.-])(out|outs|outputs?|ckpts?|checkpoints?|logs?|runs|results?|saved?|cache|wandb|"
    r"mlruns|tensorboard)([_.-]|$)", re.IGNORECASE)


def covering_folder(path: str) -> str:
    """The folder a user would mount to cover ``path``: its top-level data folder.

    ``/mnt/datasets/imagenet/train`` -> ``/mnt/datasets``; ``/home/me/data/x.csv`` ->
    ``/home/me/data``; never deeper than the path's parent (unless it ends with ``/``).
    """
    norm = _norm(path)
    parts = [p for p in norm.split("/") if p]
    depth = next((d for pre, d in sorted(_DEPTH.items(), key=lambda kv: -len(kv[0]))
                  if _under(norm, pre)), 2)
    limit = len(parts) if path.endswith("/") else len(parts) - 1
    return "/" + "/".join(parts[:max(1, min(depth, limit))])


def _quoted(text: str) -> str:
    return f'"{text}"' if any(c.isspace() for c in text) else text


def suggestion(path: str, pathmap: PathMap) -> str:
    """The setting that would cover ``path``, as a user would write it in ``.env``."""
    folder = covering_folder(path)
    if any(_OUTPUTISH.search(seg) for seg in _norm(path).split("/")):
        if pathmap.root("outputs") is None:
            return _quoted(f"DLT_OUTPUT_DIR={folder}")
        return _quoted(f"DLT_MOUNTS={folder}:{folder}")
    if pathmap.root("data") is None:
        return _quoted(f"DLT_DATA_DIR={folder}")
    return _quoted(f"DLT_MOUNTS={folder}:{folder}:ro")


# ---------------------------------------------------------------------------------------------
# finding paths in text


@dataclass(frozen=True)
class Hit:
    """An absolute path found in a text: ``text[start:end] == path``."""

    start: int
    end: int
    path: str


_BEFORE_OK = frozenset(" \t\r\n\f\v\"'`=,;([{|&")
STOP = frozenset(" \t\r\n\f\v\"'`,;:|&<>()[]{}*?$\\")
_CHUNK_END = STOP | {"="}
_URL_END = frozenset(" \t\r\n\f\v\"'`<>")
_SCHEME = re.compile(r"(?<![A-Za-z0-9+.-])([A-Za-z][A-Za-z0-9+.-]*):\Z")


def can_start(text: str, i: int) -> bool:
    """Whether a path may start at ``text[i]`` judging by what precedes it (not URLs)."""
    if i == 0:
        return True
    prev = text[i - 1]
    if prev in _BEFORE_OK:
        return True
    if prev != ":":
        return False
    k = i - 1
    while k > 0 and text[k - 1] not in _CHUNK_END and i - k < 4096:
        k -= 1
    chunk = text[k:i - 1]
    return chunk == "" or (chunk.startswith("/") and not chunk.startswith("//"))


def _file_url_path(text: str, i: int) -> int | None:
    """If ``text[i:]`` is the ``//`` of a ``file:`` URL, where its path starts."""
    m = _SCHEME.search(text, max(0, i - 64), i)
    if m is None or m.group(1).lower() != "file":
        return None
    if text.startswith("///", i):
        return i + 2
    if text[i + 2:i + 12].lower() == "localhost/":
        return i + 11
    return None


def scan(text: str) -> list[Hit]:
    """Every absolute path in ``text``, by the token rules of the module docstring."""
    hits: list[Hit] = []
    n, i = len(text), text.find("/")
    while 0 <= i < n:
        end = i + 1
        start: int | None = None
        if text.startswith("//", i):
            if i > 0 and text[i - 1] == ":":
                start = _file_url_path(text, i)
            if start is None:  # a URL or //server/share: skip it whole
                while end < n and text[end] not in _URL_END:
                    end += 1
        elif can_start(text, i):
            start = i
        if start is not None:
            end = start
            while end < n and text[end] not in STOP:
                end += 1
            while end - start > 1 and text[end - 1] == "." and text[end - 2] not in "/.":
                end -= 1
            if text[start:end].strip("/"):
                hits.append(Hit(start, end, text[start:end]))
        i = text.find("/", max(end, i + 1))
    return hits


_SPLITS = re.compile(r"\s[-/]|[:,;]/|\s\Z")


def value_hits(value: str) -> list[Hit]:
    """Paths in one string value (a YAML/JSON/TOML/INI value, an argument, an env value).

    A value that starts with ``/`` and holds no list (``/a:/b``, ``/a,/b``), no second path or
    option (`` /``, `` -``) and no tab or newline is ONE path, spaces and all
    (``/home/me/My Data/x.csv``); anything else is scanned token by token.
    """
    if (value.startswith("/") and not value.startswith("//")
            and not any(c in value for c in "\t\r\n\f\v") and not _SPLITS.search(value)):
        return [Hit(0, len(value), value)]
    return scan(value)


def iter_resolved(value: str, pathmap: PathMap) -> Iterator[tuple[Hit, Resolution]]:
    for hit in value_hits(value):
        yield hit, pathmap.resolve(hit.path)


def apply_spans(text: str, spans: list[tuple[int, int, str]]) -> str:
    """``text`` with each non-overlapping (start, end, new) span replaced."""
    out, pos = [], 0
    for start, end, new in sorted(spans):
        out.append(text[pos:start])
        out.append(new)
        pos = end
    out.append(text[pos:])
    return "".join(out)
