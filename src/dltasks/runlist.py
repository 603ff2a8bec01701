"""Runs found on an engine by their labels, and their records brought up to date.

We keep no state store: ``ps``, ``logs``, ``stop`` and ``runs`` ask the engine for the
containers labelled ``dltasks.run``. A detached run's record learns its end (time, exit code)
from the first of those commands that sees its container finished.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .containers import (
    LABEL_GPUS,
    LABEL_HOST,
    LABEL_KIND,
    LABEL_NODE,
    LABEL_NODES,
    LABEL_PROJECT,
    LABEL_RUN,
    LABEL_STARTED,
)
from .engineapi import NotFound
from .errors import DltError
from .records import MANIFEST, list_runs, read_manifest, run_dir, write_manifest
from .target import Target


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    container_id: str
    project: str
    kind: str
    status: str          # running / exited / created ...
    exit_code: int | None
    started: str
    gpus: str
    host: str
    image: str
    node: str = ""       # a job's node: its rank ("" for a plain run)
    nodes: str = ""      # a job's hosts, node 0 first


def find_runs(target: Target, *, project: str | None = None, run_id: str | None = None,
              all_states: bool = True) -> list[RunInfo]:
    """dltasks containers on the target's engine, newest first."""
    filters = [LABEL_RUN]
    if project:
        filters.append(f"{LABEL_PROJECT}={project}")
    if run_id:
        filters.append(f"{LABEL_RUN}={run_id}")
    rows = target.engine.containers(all=all_states, filters={"label": filters})
    out = []
    for r in rows:
        labels = r.get("Labels") or {}
        status = str(r.get("State", ""))
        code = None
        if status == "exited":
            text = str(r.get("Status", ""))
            with contextlib.suppress(ValueError, IndexError):
                code = int(text.split("(", 1)[1].split(")", 1)[0])
        out.append(RunInfo(labels.get(LABEL_RUN, ""), str(r["Id"]), labels.get(LABEL_PROJECT, ""),
                           labels.get(LABEL_KIND, ""), status, code,
                           labels.get(LABEL_STARTED, ""), labels.get(LABEL_GPUS, ""),
                           labels.get(LABEL_HOST, target.name), str(r.get("Image", "")),
                           labels.get(LABEL_NODE, ""), labels.get(LABEL_NODES, "")))
    return sorted(out, key=lambda i: i.started, reverse=True)


def find_one(target: Target, run: str, project: str | None = None,
             node: int | None = None) -> RunInfo:
    """The run whose id (or unique id prefix) is ``run`` (``node``: that node of a job)."""
    runs = [r for r in find_runs(target, project=project)
            if (r.run_id == run or r.run_id.startswith(run) or r.container_id.startswith(run))
            and (node is None or r.node == str(node))]
    if not runs:
        which = f" node {node}" if node is not None else ""
        raise DltError(f"no run {run!r}{which} on {target.name}: `inv ps` lists the runs there")
    exact = [r for r in runs if r.run_id == run]
    if len(exact) == 1:
        return exact[0]
    if exact and len({r.run_id for r in exact}) == 1 and all(r.node for r in exact):
        raise DltError(f"job {run} has {len(exact)} nodes on {target.name}'s engine "
                       f"({', '.join(r.node for r in exact)}): pick one with --node K")
    if len(runs) > 1:
        raise DltError(f"{run!r} matches {len(runs)} runs on {target.name} "
                       f"({', '.join(r.run_id for r in runs[:4])}): give more of the id")
    return runs[0]


def _ended(state: dict[str, Any]) -> str:
    """The engine's FinishedAt (RFC 3339, nanoseconds) as our records write times."""
    from datetime import datetime

    text = str(state.get("FinishedAt") or "")
    try:
        return datetime.fromisoformat(text[:19] + "+00:00").isoformat(timespec="seconds")
    except ValueError:
        return text


def settle(target: Target, project_dir: Path, runs: list[RunInfo], *,
           status: str = "exited") -> int:
    """Give the records of finished runs among ``runs`` their end time and exit code (those
    that have none yet: detached runs). Returns how many records changed."""
    changed = 0
    for r in runs:
        if r.status not in ("exited", "dead"):
            continue
        path = run_dir(project_dir, r.run_id) / MANIFEST
        try:
            record = read_manifest(path)
        except (OSError, ValueError):
            continue
        if record.get("exit_code") is not None:
            continue
        try:
            state = target.engine.inspect_container(r.container_id).get("State") or {}
        except NotFound:
            continue
        record.update(ended=_ended(state), exit_code=int(state.get("ExitCode", r.exit_code or 0)),
                      status=status)
        write_manifest(path, record, [])
        changed += 1
    return changed


def unsettled(project_dir: Path, host: str) -> list[str]:
    """Run ids of ``host``'s detached records that do not know their end yet."""
    return [str(m["run_id"]) for m in list_runs(project_dir)
            if m.get("detached") and m.get("exit_code") is None and m.get("host") == host
            and m.get("run_id")]
