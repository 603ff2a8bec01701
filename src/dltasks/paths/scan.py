"""Host paths -> container paths, wherever they hide: configs, arguments, environment.

This is the public face of the path mapping (:mod:`dltasks.paths.map` holds the map and the
scanner, :mod:`dltasks.paths.configs` the file formats). Everything here is pure except
:func:`rewrite_config`, :func:`find_configs` and :func:`make_root`, which touch files.

What counts as a path, and what happens to it (user-facing rules):

1. Only absolute POSIX paths are considered: text starting with a single ``/``. Relative paths
   (``data/x.csv``, ``./x``) are left alone: they are relative to the working directory, which
   is the project mounted at the same relative place. So are ``~/x``, ``$HOME/x``, Windows
   paths (``C:\\data``, ``C:/data``, ``\\\\server\\share``), ``//server/share`` and URLs
   (``http://host/a/b``, ``s3://b/k``), except ``file:///x`` and ``file://localhost/x``, whose
   path part is mapped.
2. A path is normalised lexically (``..``, ``.``, ``//``) and matched on path boundaries against
   every root's laptop path, host path and aliases (e.g. the realpath of a symlinked folder):
   ``/home/me/proj2`` is not under ``/home/me/proj``. The longest matching root wins (outputs
   inside the code folder map to /outputs). The container path is written normalised
   (``/home/me/proj/a/../b`` becomes ``/workspace/b``), with the original's trailing ``/`` kept.
3. Left alone and not reported: paths already under a root's container path (``/workspace/x``,
   ``/data/x``), ``/`` itself, and system folders: /bin /boot /dev /etc /lib /lib32 /lib64
   /libx32 /proc /run /sbin /sys /tmp /usr /var /opt/conda /opt/nvidia /nix /snap /private
   /System /Library, except /run/media (see :data:`dltasks.paths.map.SYSTEM_PREFIXES`).
4. Any other absolute path is unmapped: the run stops before the container starts, naming each
   path, where it was found, and the setting that would cover it (``--allow-unmapped`` goes on).
5. In config files, only paths inside string values count (YAML/JSON/TOML values in nested maps
   and lists, INI values, ``.env`` values; a path only in a key or a comment is neither mapped
   nor reported). Each counted path is rewritten wherever it occurs in the file (a comment
   naming the same path changes with it); everything else stays byte for byte. Plain text files are
   scanned: a path starts after whitespace, a quote, ``=``, ``,``, ``;``, ``(``, ``[``, ``{``,
   ``|``, ``&`` or a ``:`` that follows another absolute path (``/a:/b``), and ends at
   whitespace, a quote or one of ``,;:|&<>()[]{}*?$\\``.
6. A whole value (an argument, an env value, a config string) that starts with ``/`` and holds
   no list and no second path or option is one path, spaces included (``/home/me/My Data``).
7. The command itself (``DLT_TRAIN_CMD``, ``shell --cmd``) is scanned as text (rule 5), word by
   word, and ``-o/x`` (a short option glued to its path) counts: its paths are mapped and
   refused like every other path, except an unmapped path that is neither on this machine nor
   in a folder of it (``/opt/venv/bin/python``, ``/app/train.py``): a path inside the image,
   left alone (``--dry-run`` lists them). ``~/x`` and ``$HOME/x`` in the command are refused:
   in the container they are its own home, gone with it.
"""

from __future__ import annotations

import fnmatch
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from dltasks.errors import DltError
from dltasks.paths.configs import FORMATS, format_for, map_text, rewrite_config
from dltasks.paths.map import (
    STOP,
    SYSTEM_PREFIXES,
    Hit,
    Kind,
    Mapped,
    PathMap,
    Resolution,
    Root,
    Unmapped,
    apply_spans,
    covering_folder,
    iter_resolved,
    make_root,
    scan,
    suggestion,
)

__all__ = [
    "FORMATS", "SYSTEM_PREFIXES", "Mapped", "PathMap", "Root", "Unmapped", "covering_folder",
    "find_configs", "format_for", "make_root", "map_args", "map_command", "map_env", "map_text",
    "map_value", "rewrite_config", "suggestion", "unmapped_message",
]


def map_value(value: str, pathmap: PathMap, *, where: str) -> tuple[str, list[Unmapped]]:
    """One string (an argument, an env value) with its host paths mapped."""
    return _map_hits(value, iter_resolved(value, pathmap), pathmap, where)


#: ``-o/x``: a short option glued to its path (``gcc -o/x``, ``tar -C/x``).
_GLUED = re.compile(r"(?:(?<=[\s\"'])|^)-[A-Za-z](?=/[^/])")
#: ``~/x``, ``$HOME/x``, ``${HOME}/x`` as a word (or an option's value): the container's home.
_HOME_WORD = re.compile(r"(?:(?<=[\s\"'=])|^)(?:~|\$HOME|\$\{HOME\})/[^\s\"'`;|&<>()]*")
HOME_FIX = "write the host path in full: ~ and $HOME are the container's own home, gone with it"


def map_command(command: str, pathmap: PathMap, *,
                where: str = "DLT_TRAIN_CMD") -> tuple[str, list[Unmapped]]:
    """A command string (``DLT_TRAIN_CMD``, ``shell --cmd``) with its host paths mapped.

    The command is scanned word by word, as text is (rule 5), and a short option glued to its
    path (``-o/home/me/p/out``) counts too: ``python /home/me/p/train.py --out=/home/me/p/o``
    maps both paths; ``/opt/venv/bin/python train.py`` is a path and a word, never one path
    with a space (rule 6 is for single values, not commands). A word in the home folder
    (``~/x``, ``$HOME/x``) is reported too: in the container that is a folder that vanishes
    with it. Unmapped paths are named ``where``; which of them are paths inside the image is
    the caller's call (it can look at the host's files).
    """
    hits = scan(command)
    for m in _GLUED.finditer(command):
        end = m.end()
        while end < len(command) and command[end] not in STOP:
            end += 1
        hits.append(Hit(m.end(), end, command[m.end():end]))
    mapped, unmapped = _map_hits(command, [(h, pathmap.resolve(h.path)) for h in hits],
                                 pathmap, where)
    homes = [Unmapped(m.group(0), where, HOME_FIX) for m in _HOME_WORD.finditer(command)]
    return mapped, [*unmapped, *dict.fromkeys(homes)]


def _map_hits(value: str, hits: Iterable[tuple[Hit, Resolution]], pathmap: PathMap,
              where: str) -> tuple[str, list[Unmapped]]:
    spans: list[tuple[int, int, str]] = []
    unmapped: dict[str, Unmapped] = {}
    for hit, res in hits:
        if res.kind is Kind.MAPPED and res.new is not None and res.new != hit.path:
            spans.append((hit.start, hit.end, res.new))
        elif res.kind is Kind.UNMAPPED and hit.path not in unmapped:
            unmapped[hit.path] = Unmapped(hit.path, where, suggestion(hit.path, pathmap))
    return apply_spans(value, spans), list(unmapped.values())


# --data=/x, -d=/x, data.path=/x, +data.path=/x (Hydra), KEY=/x
_OPTION = re.compile(r"((?:--?|\+{1,2}|~)?[A-Za-z_][\w.-]*=)(.*)", re.DOTALL)


def map_args(args: Sequence[str], pathmap: PathMap) -> tuple[list[str], list[Unmapped]]:
    """Command-line arguments with host paths mapped: ``/x/y``, ``--data=/x``, ``key=/x``.

    Unmapped paths are named ``argument N`` (1-based).
    """
    out: list[str] = []
    unmapped: list[Unmapped] = []
    for n, arg in enumerate(args, start=1):
        m = _OPTION.fullmatch(arg)
        prefix, value = (m.group(1), m.group(2)) if m else ("", arg)
        new, missing = map_value(value, pathmap, where=f"argument {n}")
        out.append(prefix + new)
        unmapped.extend(missing)
    return out, unmapped


_PATH_LIST = re.compile(r"(PATH|PATHS|DIRS)$", re.IGNORECASE)


def map_env(env: Mapping[str, str], pathmap: PathMap) -> tuple[dict[str, str], list[Unmapped]]:
    """Environment values with host paths mapped (names unchanged).

    Values of variables named ``*PATH``, ``*PATHS`` or ``*DIRS`` are ``:``-separated lists: each
    element is mapped as a whole value. Unmapped paths are named ``env NAME``.
    """
    out: dict[str, str] = {}
    unmapped: list[Unmapped] = []
    for name, value in env.items():
        where = f"env {name}"
        if _PATH_LIST.search(name) and ":" in value:
            parts = []
            for part in value.split(":"):
                new, missing = map_value(part, pathmap, where=where)
                parts.append(new)
                unmapped.extend(u for u in missing if u not in unmapped)
            out[name] = ":".join(parts)
        else:
            out[name], missing = map_value(value, pathmap, where=where)
            unmapped.extend(missing)
    return out, unmapped


_SINGLE = re.compile(r'"?DLT_(DATA|OUTPUT)_DIR=(.*?)"?')
_MOUNT = re.compile(r'"?DLT_MOUNTS=(.*?)"?')
_MAX_LISTED = 20


def _one_setting_each(unmapped: Sequence[Unmapped]) -> list[tuple[Unmapped, str]]:
    """Each unmapped path with its suggestion, where only the first distinct folder suggested
    for DLT_DATA_DIR (or DLT_OUTPUT_DIR) keeps it and the others become DLT_MOUNTS entries."""
    chosen: dict[str, str] = {}
    out = []
    for u in unmapped:
        s = u.suggestion
        m = _SINGLE.fullmatch(s)
        if m:
            kind, folder = m.groups()
            if chosen.setdefault(kind, folder) != folder:
                ro = ":ro" if kind == "DATA" else ""
                s = f"DLT_MOUNTS={folder}:{folder}{ro}"
                s = f'"{s}"' if any(c.isspace() for c in s) else s
        out.append((u, s))
    return out


def unmapped_message(unmapped: Sequence[Unmapped]) -> str:
    """One line for DltError: every unmapped path, where it is, and the settings to add."""
    if not unmapped:
        return ""
    pairs = _one_setting_each(unmapped)
    groups: dict[str, list[Unmapped]] = {}
    for u, s in pairs:
        groups.setdefault(s, []).append(u)
    listed, parts = 0, []
    for s, items in groups.items():
        shown = items[:max(0, _MAX_LISTED - listed)]
        listed += len(shown)
        if shown:
            parts.append(", ".join(f"{u.path} ({u.where})" for u in shown) + f" [{s}]")
    more = f"; and {len(unmapped) - listed} more" if listed < len(unmapped) else ""
    singles = [s for s in groups if _SINGLE.fullmatch(s)]
    mounts = [m.group(1) for s in groups if (m := _MOUNT.fullmatch(s))]
    fixes = [f"set {s}" for s in singles]
    if mounts:
        fixes.append(f"add {','.join(mounts)} to DLT_MOUNTS")
    n = len(unmapped)
    noun = "path is" if n == 1 else "paths are"
    fix = f"{' and '.join(fixes)} in .env (or .env.<host>), or " if fixes else ""
    return (f"{n} host {noun} outside every folder mounted in the container: "
            f"{'; '.join(parts)}{more}; {fix}pass --allow-unmapped to run anyway")


# ---------------------------------------------------------------------------------------------
# which files are configs


_SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages"})


def _segments(pattern: str, project_dir: Path) -> list[str] | None:
    """A glob as path segments relative to the project; None when it points outside it."""
    if os.path.isabs(pattern):
        rel = os.path.relpath(pattern, project_dir)
        if rel == ".." or rel.startswith("../"):
            return None
        pattern = rel
    return [s for s in pattern.replace("\\", "/").split("/") if s not in ("", ".")]


def _match(glob: Sequence[str], parts: Sequence[str]) -> bool:
    if not glob:
        return not parts
    if glob[0] == "**":
        return any(_match(glob[1:], parts[i:]) for i in range(len(parts) + 1))
    return bool(parts) and fnmatch.fnmatchcase(parts[0], glob[0]) and _match(glob[1:], parts[1:])


def _may_hold(glob: Sequence[str], parts: Sequence[str]) -> bool:
    """Whether a file matching ``glob`` can lie below the folder ``parts``."""
    for i, part in enumerate(parts):
        if i >= len(glob) - 1:
            return glob[i:i + 1] == ["**"]
        if glob[i] == "**":
            return True
        if not fnmatch.fnmatchcase(part, glob[i]):
            return False
    return len(glob) > len(parts)


def find_configs(project_dir: Path, globs: Sequence[str],
                 exclude: Sequence[str] = ()) -> list[Path]:
    """Files of the project matching ``globs`` (``**`` = any depth), sorted.

    Never looks in .git or other hidden folders, a top-level ``runs/`` (the run records),
    ``__pycache__``, ``node_modules`` or virtual environments; ``exclude`` holds more globs or
    folders (relative to the project, or absolute inside it: pass the outputs folder here).
    """
    root = Path(os.path.abspath(project_dir))
    pats = [g for g in (_segments(p, root) for p in globs) if g]
    for g in globs:
        if _segments(g, root) is None:
            raise DltError(f"DLT_CONFIGS entry {g} is outside the project {root}; "
                           f"give globs relative to the project")
    skip = [e for e in (_segments(p, root) for p in exclude) if e]
    found: list[Path] = []
    for dirpath, dirnames, filenames in os.walk(root):
        rel = Path(dirpath).relative_to(root).parts
        keep = []
        for d in sorted(dirnames):
            parts = (*rel, d)
            if (d.startswith(".") or d in _SKIP_DIRS or (not rel and d == "runs")
                    or os.path.exists(os.path.join(dirpath, d, "pyvenv.cfg"))
                    or any(_match(e, parts) for e in skip)
                    or not any(_may_hold(g, parts) for g in pats)):
                continue
            keep.append(d)
        dirnames[:] = keep
        for f in filenames:
            parts = (*rel, f)
            path = Path(dirpath, f)
            if (any(_match(g, parts) for g in pats) and path.is_file()
                    and not any(_match(e, parts) or _match([*e, "**"], parts) for e in skip)):
                found.append(path)
    return sorted(found, key=lambda p: p.relative_to(root).parts)
