"""Pure rules for syncing a project to a host: which targets are safe, which files go, stats.

What is synced (decided here, documented in docs/remote.md):

* everything in the project, minus what ``.gitignore`` (every folder's, as rsync per-folder
  merge rules), ``.dltignore`` (same syntax, same scope) and the root ``.dockerignore`` (as
  Docker reads it: root-relative patterns) exclude; the root ``.dltignore``'s ``!`` re-includes
  are honoured and win over ``.gitignore`` and ``.dockerignore`` (its rules are translated here
  and come before theirs: rsync's first matching rule wins, git's last), so a gitignored input
  can be sent without editing ``.gitignore``;
* never ``.git/`` (the commit and dirty diff go into the run record instead), never ``.env`` and
  ``.env.*`` (settings are resolved on the laptop; secrets stay off the host's disk), never an
  outputs folder inside the project (the host's outputs are the run's results: a sync must not
  overwrite or delete them);
* ``runs/`` only for the run being started (its rewritten configs are mounted from there);
* never ``.dltasks/``: on the host it is the sync's own record of what it sent (:mod:`.sent`).

A sync deletes nothing by rsync; what it may delete is decided in :mod:`.sent`.
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from dltasks.errors import DltError
from dltasks.runs.record import check_run_id

RUNS = "runs"
#: The sync's own folder in the host's project folder (never sent, never deleted).
MARK = ".dltasks"
#: Folders under which a project folder never belongs: the system's and installed software's
#: (a sync writing there could break the host; /var/lib/docker, /opt/conda).
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
               "/run", "/sbin", "/sys", "/usr", "/var", "/opt", "/snap", "/nix")
#: ...except these scratch folders inside them.
SCRATCH_DIRS = ("/var/tmp",)
#: Where disks are mounted: /mnt/data is a whole disk, a project needs a folder inside it.
MOUNT_ROOTS = ("/mnt", "/media", "/Volumes", "/run/media")
USER_HOMES = ("/home", "/Users", "/root")


def check_remote_dir(path: str, home: str, *, host: str = "the host") -> str:
    """``path`` (absolute, normalised) if a sync may write (and delete what it sent) inside it,
    else DltError.

    Refused: empty or relative paths, ``/``, one-level paths (``/data`` is a whole disk), the home
    folder or anything above it, another user's home, hidden folders right in the home (``~/.ssh``),
    anything in the system folders (``/var``, ``/opt``... but ``/var/tmp/x``), and a mount point
    itself (``/mnt/data``, ``/media/usb``: a folder inside it is fine).
    """
    fix = "set DLT_REMOTE_DIR to a folder of its own, e.g. ~/dltasks/<project>"
    if not path or not path.strip():
        raise DltError(f"refusing to sync to an empty remote folder on {host}: {fix}")
    if not path.startswith("/"):
        raise DltError(f"refusing to sync to relative remote folder {path!r} on {host}: {fix}")
    p = posixpath.normpath(path)
    if p.startswith("//"):
        p = "/" + p.lstrip("/")
    h = posixpath.normpath(home) if home else ""
    why = ""
    parts = [x for x in p.split("/") if x]
    if p == "/":
        why = "it is the root folder"
    elif h and (p == h or h.startswith(p + "/")):
        why = "it is your home folder" if p == h else f"it contains your home folder {h}"
    elif len(parts) < 2:
        why = "a top-level folder is too wide"
    elif (any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS)
          and not any(p.startswith(d + "/") for d in SCRATCH_DIRS)):
        why = "it is a system folder or inside one"
    elif any(p == m or (p.startswith(m + "/") and p.count("/") == m.count("/") + 1)
             for m in MOUNT_ROOTS):
        why = "it is where a disk is mounted (its top folder holds the disk's files)"
    elif len(parts) == 2 and "/" + parts[0] in USER_HOMES:
        why = "it is a user's home folder"
    elif h and p.startswith(h + "/") and p[len(h) + 1:].startswith("."):
        why = "it is a hidden folder of your home (configuration lives there)"
    if why:
        raise DltError(f"refusing to sync to {p} on {host}: {why}; {fix}")
    return p


def dockerignore_rules(text: str) -> list[str]:
    """Exclude rules for rsync from a .dockerignore: root-anchored; negations dropped."""
    rules = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#") or line.startswith("!"):
            continue
        line = posixpath.normpath(line.lstrip("/")) if line not in (".", "/") else ""
        if not line or line == ".":
            continue
        rules.append("--exclude=/" + line)
    return rules


def dltignore_rules(text: str) -> list[str]:
    """rsync rules for the root ``.dltignore`` (gitignore syntax), ``!`` re-includes kept.

    git lets the LAST matching line win and rsync the FIRST, so the lines come out reversed. A
    pattern with a slash before its end is anchored at the root, as git anchors it; one
    without matches at any depth, in both. As in git, a file inside an excluded folder cannot
    be re-included (rsync does not enter the folder).
    """
    rules = []
    for raw in text.splitlines():
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        sign = "-"
        if line.startswith("!"):
            sign, line = "+", line[1:]
        elif line.startswith(("\\!", "\\#")):
            line = line[1:]
        if line.startswith("**/") and "/" not in line[3:].rstrip("/"):
            line = line[3:]  # git's "at any depth", which a slash-less rsync pattern is
        if not line.strip("/"):
            continue
        if "/" in line.rstrip("/") and not line.startswith(("/", "**/")):
            line = "/" + line
        rules.append(f"--filter={sign} {line}")
    return rules[::-1]


def filter_args(*, include_runs: Sequence[str] = (), protect: Iterable[str] = (),
                dockerignore: str = "", dltignore: str = "") -> list[str]:
    """rsync filter options, in order (the first matching rule wins).

    ``include_runs``: run ids whose ``runs/<id>/`` folders go along. ``protect``: paths relative
    to the project (e.g. the outputs folder) never sent. ``dltignore``: the root
    ``.dltignore``'s text, whose rules (re-includes too) come before every other ignore file's,
    but after what is never sent (``.git``, ``.env*``, ``.dltasks``, outputs, other runs).
    """
    args = ["--exclude=/.git/", "--exclude=/.env", "--exclude=/.env.*", f"--exclude=/{MARK}/"]
    for rel in protect:
        rel = posixpath.normpath(rel).strip("/")
        if rel and rel != "." and not rel.startswith(".."):
            args.append(f"--exclude=/{rel}/")
    for run_id in include_runs:
        check_run_id(run_id, "a run folder to sync")
        args += [f"--include=/{RUNS}/", f"--include=/{RUNS}/{run_id}/***"]
    args.append(f"--exclude=/{RUNS}/" if not include_runs else f"--exclude=/{RUNS}/*")
    args += dltignore_rules(dltignore)
    args += dockerignore_rules(dockerignore)
    args += ["--filter=:- .gitignore", "--filter=:- .dltignore"]
    return args


@dataclass(frozen=True)
class SyncStats:
    files: int = 0                 # files (and folders, links) in the source tree
    transferred: int = 0           # regular files sent (new or changed)
    deleted: int = 0
    bytes_sent: int = 0
    bytes_received: int = 0
    literal_bytes: int = 0         # file data actually sent (not matched by the delta)


_STATS = {
    "files": r"Number of files: ([\d,.]+)",
    "transferred": r"Number of regular files transferred: ([\d,.]+)",
    "deleted": r"Number of deleted files: ([\d,.]+)",
    "bytes_sent": r"Total bytes sent: ([\d,.]+)",
    "bytes_received": r"Total bytes received: ([\d,.]+)",
    "literal_bytes": r"Literal data: ([\d,.]+)",
}


def parse_stats(text: str) -> SyncStats:
    """The numbers of ``rsync --stats`` output (thousands separators removed)."""
    values = {}
    for name, pattern in _STATS.items():
        m = re.search(pattern, text)
        values[name] = int(re.sub(r"[,.]", "", m.group(1))) if m else 0
    return SyncStats(**values)


def human_kb(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
