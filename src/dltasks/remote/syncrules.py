"""Pure rules for syncing a project to a host: which targets are safe, which files go, stats.

What is synced (decided here, documented in docs/remote.md):

* everything in the project, minus what ``.gitignore`` (every folder's, as rsync per-folder
  merge rules), ``.dltignore`` (same syntax, same scope) and the root ``.dockerignore`` (as
  Docker reads it: root-relative patterns) exclude; ``!`` re-includes are not honoured;
* never ``.git/`` (the commit and dirty diff go into the run record instead), never ``.env`` and
  ``.env.*`` (settings are resolved on the laptop; secrets stay off the host's disk), never an
  outputs folder inside the project (the host's outputs are the run's results: a sync must not
  overwrite or delete them);
* ``runs/`` only for the run being started (its rewritten configs are mounted from there); the
  host's other run folders are left alone, as are all excluded paths (rsync ``--delete`` only
  removes files that are not excluded, and only inside the target folder).
"""

from __future__ import annotations

import posixpath
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from ..errors import DltError

RUNS = "runs"
#: Folders under which a project folder never belongs (a --delete there would wreck the host).
SYSTEM_DIRS = ("/bin", "/boot", "/dev", "/etc", "/lib", "/lib32", "/lib64", "/libx32", "/proc",
               "/run", "/sbin", "/sys", "/usr")
USER_HOMES = ("/home", "/Users", "/root")


def check_remote_dir(path: str, home: str, *, host: str = "the host") -> str:
    """``path`` (absolute, normalised) if a sync may write and delete inside it, else DltError.

    Refused: empty or relative paths, ``/``, one-level paths (``/data`` is a whole disk), the home
    folder or anything above it, another user's home, hidden folders right in the home (``~/.ssh``)
    and anything in the system folders.
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
    elif any(p == d or p.startswith(d + "/") for d in SYSTEM_DIRS):
        why = "it is inside a system folder"
    elif len(parts) == 2 and "/" + parts[0] in USER_HOMES:
        why = "it is a user's home folder"
    elif h and p.startswith(h + "/") and p[len(h) + 1:].startswith("."):
        why = "it is a hidden folder of your home (configuration lives there)"
    if why:
        raise DltError(f"refusing to sync to {p} on {host}: {why} (sync deletes files there "
                       f"that are not in the project); {fix}")
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


def filter_args(*, include_runs: Sequence[str] = (), protect: Iterable[str] = (),
                dockerignore: str = "") -> list[str]:
    """rsync filter options, in order (the first matching rule wins).

    ``include_runs``: run ids whose ``runs/<id>/`` folders go along. ``protect``: paths relative
    to the project (e.g. the outputs folder) neither sent nor deleted on the host.
    """
    args = ["--exclude=/.git/", "--exclude=/.env", "--exclude=/.env.*"]
    for rel in protect:
        rel = posixpath.normpath(rel).strip("/")
        if rel and rel != "." and not rel.startswith(".."):
            args.append(f"--exclude=/{rel}/")
    for run_id in include_runs:
        if not re.fullmatch(r"[A-Za-z0-9._-]+", run_id):
            raise DltError(f"bad run id {run_id!r}")
        args += [f"--include=/{RUNS}/", f"--include=/{RUNS}/{run_id}/***"]
    args.append(f"--exclude=/{RUNS}/" if not include_runs else f"--exclude=/{RUNS}/*")
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


def human(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"
