"""Run records: ``runs/<run-id>/`` with ``manifest.json``, the rewritten configs and the log.

A record says exactly what ran: image ID and digest, git commit and dirty diff, the command,
resolved settings (secrets masked), GPUs, host, times, exit code, and the equivalent
``docker run`` line. Records live in the project on the machine that launched the run.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from dltasks.errors import DltError
from dltasks.hosts.shell import local, local_start
from dltasks.settings.masking import scrub

RUNS_DIR = "runs"
MANIFEST = "manifest.json"
LOG = "output.log"


#: Every run id dltasks makes (:func:`new_run_id`: plain runs, jobs, Slurm runs, test-gpu):
#: the UTC date and time, and 4 hex digits.
RUN_ID = re.compile(r"[0-9]{8}-[0-9]{6}-[0-9a-f]{4}")
#: A leading part of such an id, as `stop`/`logs` take it (no "/", no "..", nothing else).
RUN_ID_PREFIX = re.compile(r"[0-9]{1,8}|[0-9]{8}-[0-9]{0,6}|[0-9]{8}-[0-9]{6}-[0-9a-f]{0,4}")
#: What a user is told a run id looks like.
RUN_ID_EXAMPLE = "20261126-141502-a3f9"


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique enough: ``20261126-141502-a3f9``."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()


def is_run_id(text: object) -> bool:
    """Whether ``text`` is a run id as :func:`new_run_id` makes them (so also a safe folder
    name: no "/", no "..", nothing a label, a record or Slurm could smuggle in)."""
    return isinstance(text, str) and RUN_ID.fullmatch(text) is not None


def check_run_id(text: object, where: str = "") -> str:
    """``text`` when it is a run id, else a one-line error saying where it came from."""
    if is_run_id(text):
        return str(text)
    source = f" ({where})" if where else ""
    raise DltError(f"{str(text)[:80]!r}{source} is not a run id (they look like "
                   f"{RUN_ID_EXAMPLE}): `dlt ps` and `dlt runs` list the runs")


def check_run_arg(text: str) -> str:
    """A RUN argument: a run id or a leading part of one, else a one-line error."""
    if RUN_ID_PREFIX.fullmatch(text) or is_run_id(text):
        return text
    raise DltError(f"{text[:80]!r} is not a run id or the start of one (they look like "
                   f"{RUN_ID_EXAMPLE}): `dlt ps` lists the runs on the engine, `dlt runs` "
                   "the records")


def utcnow() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class GitState:
    commit: str | None
    dirty: bool
    diff: str


def git_state_later(project_dir: Path) -> Callable[[], GitState]:
    """Start asking git now; call the result for the project's commit and its uncommitted
    changes (tracked files) as a diff.

    One `git status` names the commit and says whether the tree is dirty; `git diff` runs only
    when it is (each git process is felt in the start-up time of every run, so the first one
    runs while the run is being planned).
    """
    git = ["git", "-C", str(project_dir)]
    try:
        status = local_start([*git, "status", "--porcelain=v2", "--branch"])
    except DltError:  # git is not installed: no commit to record
        return lambda: GitState(None, False, "")

    def finish() -> GitState:
        res = status.result()
        lines = res.stdout.splitlines()
        oid = next((ln.split()[2] for ln in lines if ln.startswith("# branch.oid ")),
                   "(initial)")
        if not res.ok or oid == "(initial)":  # not a repository, or no commit yet
            return GitState(None, False, "")
        dirty = any(not ln.startswith("#") for ln in lines)
        diff = local([*git, "diff", "HEAD"]).stdout if dirty else ""
        return GitState(oid, dirty, diff)

    return finish


def git_state(project_dir: Path) -> GitState:
    """The project's commit and uncommitted changes (see :func:`git_state_later`)."""
    return git_state_later(project_dir)()


def run_dir(project_dir: Path, run_id: str) -> Path:
    """``runs/<run_id>`` of the project. The id is checked here, so no caller can build a path
    outside runs/ from an id that came from a label, a record or an argument."""
    return project_dir / RUNS_DIR / check_run_id(run_id)


def private_dir(path: Path) -> None:
    """A run's folder, readable by its user alone (0700): it holds the run's configs, its
    output and (Slurm) the file its variables travel in; rsync -a carries the mode to a host."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)  # made earlier, or under a umask that left bits out


def private_file(path: Path, text: str) -> None:
    """A new file readable by its user alone (0600), so from its creation: never a moment
    when another user could open it, never through a planted link."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8", errors="surrogateescape") as f:
        f.write(text)


def write_manifest(path: Path, manifest: dict[str, Any], secret_values: list[str]) -> None:
    """Write atomically, every secret value scrubbed from the text."""
    text = json.dumps(_scrubbed(manifest, secret_values), indent=2, default=str)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text + "\n", encoding="utf-8")
    os.replace(tmp, path)


def _scrubbed(value: Any, secrets: list[str]) -> Any:
    """``value`` with every secret removed from its strings (before JSON escapes them)."""
    if isinstance(value, str):
        return scrub(value, secrets)
    if isinstance(value, dict):
        return {k: _scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_scrubbed(v, secrets) for v in value]
    return value


def read_manifest(path: Path) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return data


def list_runs(project_dir: Path) -> list[dict[str, Any]]:
    """Every record under runs/, newest first (unreadable ones reported as such).

    Only folders named by a run id count, and a record whose ``run_id`` is not its folder's
    name is reported, not returned: what callers write back goes to ``runs/<run_id>``, so a
    record's id must never point elsewhere."""
    base = project_dir / RUNS_DIR
    if not base.is_dir():
        return []
    out: list[dict[str, Any]] = []
    for d in sorted(base.iterdir(), reverse=True):
        m = d / MANIFEST
        if not is_run_id(d.name) or not m.is_file():
            continue
        try:
            record = read_manifest(m)
        except (OSError, ValueError):
            out.append({"run_id": d.name, "status": "unreadable manifest"})
            continue
        if not isinstance(record, dict) or record.get("run_id") != d.name:
            said = record.get("run_id") if isinstance(record, dict) else None
            out.append({"run_id": d.name,
                        "status": f"record names run id {str(said)[:40]!r}, not its folder's"})
            continue
        out.append(record)
    return out
