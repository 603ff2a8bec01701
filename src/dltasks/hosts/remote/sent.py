"""What a sync put on the host, so that a later sync deletes only that, never a run's files.

The host's project folder holds ``.dltasks/sent`` (JSON, written by dltasks after each
successful sync, never sent from here and never deleted): every file, symlink and folder the
last sync made identical to this machine's copy, with each file's size and mtime as sent.

* It proves that dltasks made the folder: a folder that holds files but no record is refused
  (:func:`open_host_copy`), never written to. A folder that has only empty folders in it counts
  as empty (a remote ``train`` creates the outputs folder while the sync starts), and so does
  one with files only under ``runs/``, dltasks' own (a Slurm image made there before the first
  sync). Folders synced
  by dltasks before the record existed count as made by dltasks when the host has the old sync
  stamp for them (:mod:`.synced`) or they hold a run's folder (``runs/<run id>/``); their
  first sync deletes nothing.
* A later sync deletes on the host only what the record lists, is no longer sent from here
  (deleted here, or now ignored), and is still as that sync left it: a file of the same size
  and mtime, a symlink, a folder only when empty. Anything a run wrote (checkpoints, logs,
  ``wandb/``), a file a run rewrote, and everything under ``runs/`` stay.

The deletes run in one host script: relative paths only, no ``..``, no symlink followed (a
path under a symlinked folder is skipped), nothing outside the project folder.
"""

from __future__ import annotations

import json
import os
import posixpath
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltasks.errors import DltError
from dltasks.hosts.remote.syncrules import MARK, RUNS
from dltasks.hosts.shell import quote
from dltasks.scripts import script

SENT = f"{MARK}/sent"
#: rsync's ``--out-format`` for the sync: one line per path it considered (with ``-ii``,
#: unchanged ones too), so the record lists what the sync made identical, not only what it copied.
OUT_FORMAT = "dlt:%i:%n"

#: A run id (:data:`dltasks.runs.record.RUN_ID`) as a shell glob.
RUN_ID_GLOB = "[0-9]" * 8 + "-" + "[0-9]" * 6 + "-" + "[0-9a-f]" * 4

#: $1: the project folder (absolute); $2: the old sync stamp, from $HOME; $3: "adopt" to take
#: a foreign folder; $4..$7: :data:`MARK`, :data:`SENT`, :data:`RUNS`, :data:`RUN_ID_GLOB`.
#: Prints the folder's real path, then its state (mark + the record / empty / legacy /
#: adopted / foreign / link). A folder a remote ``train`` of an older dltasks made holds
#: ``runs/<run id>/`` (its configs): legacy, like one with the old sync stamp.
OPEN_SCRIPT = script("sent_open")

#: $1: the project folder's real path; $2, $3: :data:`MARK`, :data:`SENT`. stdin: lines
#: "KIND<TAB>SIZE MTIME<TAB>PATH" to delete, then "--", then the new record (see the script).
#: Prints how many files and links it deleted.
APPLY_SCRIPT = script("sent_apply")


@dataclass(frozen=True)
class Sent:
    """The record: files (path -> (size, mtime)), symlinks and folders, relative paths."""

    files: dict[str, tuple[int, int]] = field(default_factory=dict)
    links: frozenset[str] = frozenset()
    dirs: frozenset[str] = frozenset()

    def paths(self) -> set[str]:
        return set(self.files) | set(self.links) | set(self.dirs)

    def to_json(self) -> str:
        return json.dumps({"version": 1, "files": {k: list(v) for k, v in
                                                   sorted(self.files.items())},
                           "links": sorted(self.links), "dirs": sorted(self.dirs)})

    @classmethod
    def from_json(cls, text: str) -> Sent:
        """The record as the host holds it; an unreadable one lists nothing (deletes nothing)."""
        try:
            data: Any = json.loads(text or "{}")
            files = {str(k): (int(v[0]), int(v[1])) for k, v in data.get("files", {}).items()}
            return cls(files, frozenset(map(str, data.get("links", []))),
                       frozenset(map(str, data.get("dirs", []))))
        except (ValueError, TypeError, AttributeError, IndexError, KeyError):
            return cls()


@dataclass(frozen=True)
class HostCopyState:
    """The host's project folder as :func:`open_host_copy` found it."""

    real: str
    state: str            # mark, empty, legacy, adopted
    sent: Sent


def safe_rel(path: str) -> bool:
    """A path a sync may record and delete: relative, no ``..``, no newline, not ours/runs'."""
    parts = path.split("/")
    return bool(path) and not path.startswith("/") and "\n" not in path and "\t" not in path \
        and all(p not in ("", ".", "..") for p in parts) and parts[0] not in (MARK, RUNS)


def open_host_copy(out: str, code: int, err: str, folder: str, host: str) -> HostCopyState:
    """Read :data:`OPEN_SCRIPT`'s answer; refuse a folder dltasks did not make."""
    lines = out.split("\n", 2)
    if code != 0 or len(lines) < 2:
        why = (err or out).strip().splitlines()[-1:] or [f"exit {code}"]
        raise DltError(f"cannot create {folder} on {host} (or it is a symlink): {why[0]}; "
                       "choose another DLT_REMOTE_DIR")
    real, state = lines[0].strip(), lines[1].strip()
    if state == "foreign":
        raise DltError(f"refusing to sync to {folder} on {host}: it holds files and was not made "
                       f"by dltasks (no {SENT} in it); if it is a copy of this project, adopt it "
                       f"with `fab -H {host} sync --adopt` (nothing in it is then overwritten "
                       "or deleted), else set DLT_REMOTE_DIR to a new or empty folder, e.g. "
                       "~/dltasks/<project>")
    if state == "link":
        raise DltError(f"refusing to sync to {folder} on {host}: its {MARK} is a symlink; "
                       f"remove {folder}/{MARK} there")
    return HostCopyState(real, state, Sent.from_json(lines[2] if len(lines) > 2 else ""))


_ESC = re.compile(rb"\\#([0-7]{3})")


def parse_items(text: str) -> list[tuple[str, str]]:
    """(itemize string, relative path) of rsync's ``--out-format`` lines (:data:`OUT_FORMAT`),
    the path unescaped; folders without their trailing slash."""
    got = []
    for line in text.splitlines():
        if not line.startswith("dlt:") or len(line) < 17 or line[15] != ":":
            continue
        name = line[16:].rstrip("/")
        raw = _ESC.sub(lambda m: bytes([int(m.group(1), 8)]),
                       name.encode(errors="surrogateescape"))
        name = os.fsdecode(raw)
        if name and name != ".":
            got.append((line[4:15], name))
    return got


def parse_out(text: str) -> list[str]:
    """The relative paths of rsync's ``--out-format`` lines (:data:`OUT_FORMAT`), unescaped."""
    return [name for _, name in parse_items(text)]


def split_new(listing: Iterable[tuple[str, str]], before: Sent) -> tuple[list[str], list[str]]:
    """This side's paths (``listing``: :func:`parse_items` of a dry run) as (known, new).

    New: a file, link or folder the record does not list. The host may hold a path of that
    name that a run made, so new paths are sent only where the host has none (rsync
    ``--ignore-existing``). Known: what the record lists (an update of what a sync put there),
    and what a sync never records (``runs/<id>/``, sent for a run)."""
    known: list[str] = []
    new: list[str] = []
    sent = before.paths()
    for _, path in listing:
        (new if safe_rel(path) and path not in sent else known).append(path)
    return known, new


def split_known(known: Iterable[str], before: Sent, root: Path) -> tuple[list[str], list[str]]:
    """``known`` paths as (unchanged, changed): files whose copy here is still as the last sync
    sent it (nothing of ours to send: the host's copy is that one, or a run rewrote it, which
    must stay; sent only where the host lost it), and the rest (changed here, folders, links,
    ``runs/<id>/``), which are updated."""
    unchanged: list[str] = []
    changed: list[str] = []
    for rel in known:
        was = before.files.get(rel)
        try:
            st = os.lstat(root / rel)
        except OSError:
            st = None
        same = (was is not None and st is not None and not os.path.islink(root / rel)
                and (st.st_size, int(st.st_mtime)) == was)
        (unchanged if same else changed).append(rel)
    return unchanged, changed


#: $1: the project folder's real path; stdin: relative paths, one a line. Prints, a line each,
#: "SIZE MTIME" of the host's file there, or "-" when it has no plain file of that name.
STAT_SCRIPT = script("sent_stat")


def rewritten(paths: list[str], before: Sent, stat_out: str) -> list[str]:
    """Of ``paths`` (files the record lists), those the host holds in another state than the
    last sync left them (a run rewrote them): never overwritten. ``stat_out``: what
    :data:`STAT_SCRIPT` printed for them; a missing answer counts as rewritten."""
    lines = stat_out.splitlines()
    out = []
    for i, rel in enumerate(paths):
        got = lines[i].strip() if i < len(lines) else "?"
        if got != "-" and got != "{} {}".format(*before.files[rel]):
            out.append(rel)
    return out


def with_entries(now: Sent, before: Sent, paths: Iterable[str]) -> Sent:
    """``now`` with ``before``'s entries for ``paths`` (files left as the host has them: the
    record keeps what the last sync sent, so they are never deleted as ours)."""
    keep = {p: before.files[p] for p in paths if p in before.files}
    return Sent({**now.files, **keep}, now.links, now.dirs)


def stat_command(real: str) -> str:
    return quote(["sh", "-c", STAT_SCRIPT, "_", real])


def identical(item: str) -> bool:
    """An itemize string of a dry run that finds the host's file as this one (same type, size
    and mtime: what rsync's quick check takes as the same file)."""
    return len(item) >= 5 and item[0] == "." and item[3:5].strip(". ") == ""


def record_of(root: Path, paths: Iterable[str]) -> Sent:
    """The record of ``paths`` (as rsync reported them) from this side's files: what the host
    now has, since rsync -a gave the host each file's size and mtime."""
    files: dict[str, tuple[int, int]] = {}
    links, dirs = set(), set()
    for rel in paths:
        if not safe_rel(rel):
            continue
        try:
            st = os.lstat(root / rel)
        except OSError:
            continue  # gone since rsync read it: not recorded, so never deleted
        if os.path.islink(root / rel):
            links.add(rel)
        elif os.path.isdir(root / rel):
            dirs.add(rel)
        elif os.path.isfile(root / rel):
            files[rel] = (st.st_size, int(st.st_mtime))
    return Sent(files, frozenset(links), frozenset(dirs))


def deletions(before: Sent, now: Sent) -> list[str]:
    """:data:`APPLY_SCRIPT`'s delete lines: what ``before`` lists and ``now`` does not; files
    and links first, then folders deepest first."""
    gone = before.paths() - now.paths()
    lines = [f"f\t{before.files[p][0]} {before.files[p][1]}\t{p}"
             for p in sorted(gone & set(before.files)) if safe_rel(p)]
    lines += [f"l\t\t{p}" for p in sorted(gone & before.links) if safe_rel(p)]
    lines += [f"d\t\t{p}" for p in sorted(gone & before.dirs, key=lambda p: (-p.count("/"), p))
              if safe_rel(p)]
    return lines


def folder_times(lines: Iterable[str], root: Path) -> list[str]:
    """``t`` lines for :data:`APPLY_SCRIPT`: the folders the ``lines`` delete from get this
    side's times back (as a plain update leaves them), so the next sync finds nothing to do."""
    parents = {posixpath.dirname(line.rsplit("\t", 1)[-1]) or "." for line in lines}
    out = []
    for rel in sorted(parents, key=lambda p: (-p.count("/"), p)):
        try:
            st = os.lstat(root / rel)
        except OSError:
            continue
        if (rel == "." or safe_rel(rel)) and not os.path.islink(root / rel):
            ns = st.st_mtime_ns
            out.append(f"t\t{ns // 10**9}.{ns % 10**9:09d}\t{rel}")
    return out


def apply_command(real: str) -> str:
    return quote(["sh", "-c", APPLY_SCRIPT, "_", real, MARK, SENT])


def open_command(folder: str, stamp: str, *, adopt: bool = False) -> str:
    return quote(["sh", "-c", OPEN_SCRIPT, "_", folder, stamp, "adopt" if adopt else "", MARK, SENT,
                  RUNS, RUN_ID_GLOB])
