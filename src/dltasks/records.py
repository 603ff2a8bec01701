"""Run records: ``runs/<run-id>/`` with ``manifest.json``, the rewritten configs and the log.

A record says exactly what ran: image ID and digest, git commit and dirty diff, the command,
resolved settings (secrets masked), GPUs, host, times, exit code, and the equivalent
``docker run`` line. Records live in the project on the machine that launched the run.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from .errors import DltError
from .masking import scrub
from .shell import local, local_start

RUNS_DIR = "runs"
MANIFEST = "manifest.json"
LOG = "output.log"


def new_run_id(now: datetime | None = None) -> str:
    """Sortable and unique enough: ``20261126-141502-a3f9``."""
    now = now or datetime.now(timezone.utc)
    return now.strftime("%Y%m%d-%H%M%S-") + os.urandom(2).hex()


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
    return project_dir / RUNS_DIR / run_id


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
    """Every record under runs/, newest first (unreadable ones reported as such)."""
    base = project_dir / RUNS_DIR
    if not base.is_dir():
        return []
    out = []
    for d in sorted(base.iterdir(), reverse=True):
        m = d / MANIFEST
        if not m.is_file():
            continue
        try:
            out.append(read_manifest(m))
        except (OSError, ValueError):
            out.append({"run_id": d.name, "status": "unreadable manifest"})
    return out
