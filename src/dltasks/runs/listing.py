"""Runs found on an engine by their labels, and their records brought up to date.

We keep no state store: ``ps``, ``logs``, ``stop`` and ``runs`` ask the engine for the
containers labelled ``dltasks.run``. A detached run's record learns its end (time, exit code)
from the first of those commands that sees its container finished.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dltasks.engine.api import NotFound
from dltasks.engine.spec import (
    LABEL_GPUS,
    LABEL_HOST,
    LABEL_KIND,
    LABEL_NODE,
    LABEL_NODES,
    LABEL_PROJECT,
    LABEL_RECORD,
    LABEL_RUN,
    LABEL_STARTED,
    LABEL_USER,
)
from dltasks.errors import DltError
from dltasks.hosts.target import Target
from dltasks.runs.record import (
    RunRecord,
    RunStatus,
    check_run_arg,
    check_run_id,
    is_run_id,
    list_runs,
    record_file,
    run_dir,
)


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
    user: str = ""       # the login that started it on that host
    record: str = ""     # its record's folder on the machine that launched it
    ports: str = ""      # its published ports: 127.0.0.1:49153->8888, ...


def ports_text(rows: Any) -> str:
    """The engine listing's ``Ports`` of a container as ``127.0.0.1:49153->8888`` (TCP ports
    published on the host; the others are not reachable from here)."""
    seen = []
    for p in rows or ():
        if p.get("PublicPort") and p.get("Type", "tcp") == "tcp":
            text = f"{p.get('IP') or '0.0.0.0'}:{p['PublicPort']}->{p.get('PrivatePort')}"
            if text not in seen:
                seen.append(text)
    return ",".join(seen)


def find_runs(target: Target, *, project: str | None = None, run_id: str | None = None,
              all_states: bool = True) -> list[RunInfo]:
    """dltasks containers on the target's engine, newest first.

    A container whose run label is no run id (``../../x``: anyone who can reach a shared or
    remote engine can label a container so) is left out: its label never becomes a path."""
    filters = [LABEL_RUN]
    if project:
        filters.append(f"{LABEL_PROJECT}={project}")
    if run_id:
        filters.append(f"{LABEL_RUN}={check_run_id(run_id)}")
    rows = target.engine.containers(all=all_states, filters={"label": filters})
    out = []
    for r in rows:
        labels = r.get("Labels") or {}
        if not is_run_id(labels.get(LABEL_RUN)):
            continue
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
                           labels.get(LABEL_NODE, ""), labels.get(LABEL_NODES, ""),
                           labels.get(LABEL_USER, ""), labels.get(LABEL_RECORD, ""),
                           ports_text(r.get("Ports"))))
    return sorted(out, key=lambda i: i.started, reverse=True)


# --------------------------------------------------------------------------------------------
# whose run


def _same_path(a: str, b: Path) -> bool:
    if a == str(b):
        return True
    try:
        return os.path.realpath(a) == os.path.realpath(b)
    except (OSError, ValueError):
        return False


def owner(info: RunInfo, login: str, project_dir: Path, here: str) -> str:
    """"" when ``info`` is yours, else whose it is, in words (``here``: the target's name).

    Yours: a run of THIS project folder (its record label is this folder's runs/<id>: on a
    remote host too, since that label holds the launching machine's path) that your login
    started on host ``here`` (its user label). A container that names no user, or another
    host (a Slurm run's node containers; a job's node whose host shares this engine) is
    yours when this folder also holds its record. A teammate's project of the same name, or
    your own other checkout of it, is not yours."""
    if not info.record or not _same_path(info.record, run_dir(project_dir, info.run_id)):
        if info.user and info.user == login:
            return f"{info.user}, from {os.path.dirname(info.record) or 'another folder'}"
        return info.user or "unknown user"
    if info.user and info.host == here:
        return "" if info.user == login else info.user
    has_record = record_file(run_dir(project_dir, info.run_id)).is_file()
    return "" if has_record else (info.user or "unknown user")


def is_mine(info: RunInfo, login: str, project_dir: Path, here: str) -> bool:
    return owner(info, login, project_dir, here) == ""


# --------------------------------------------------------------------------------------------
# which run a RUN argument names


ENGINE, SLURM = "engine", "slurm"


@dataclass(frozen=True)
class Candidate:
    """A run that a RUN argument may name: on the engine, or a Slurm record of this project."""

    run_id: str
    source: str                  # ENGINE or SLURM
    owner: str = ""              # "" when it is yours, else whose (see :func:`owner`)
    note: str = field(default="", compare=False)   # shown in lists: "Slurm job 42"

    @property
    def mine(self) -> bool:
        return not self.owner

    def describe(self) -> str:
        bits = [b for b in (self.note, "" if self.mine else f"of {self.owner}") if b]
        return self.run_id + (f" ({', '.join(bits)})" if bits else "")


class NoSuchRun(DltError):
    """None of your runs is named by a RUN argument (as opposed to several being named)."""


def _listed(cands: list[Candidate]) -> str:
    shown = ", ".join(c.describe() for c in cands[:6])
    return shown + (f" and {len(cands) - 6} more" if len(cands) > 6 else "")


def _fix(where: str) -> str:
    if where == "local":
        return "`inv ps` lists your runs on the engine, `inv runs` your records"
    return f"`fab -H {where} ps` lists your runs there, `fab -H {where} runs` your records"


def _one(cands: list[Candidate], run: str, where: str) -> Candidate:
    """The run that ``cands`` (all with one id) are: a Slurm run's containers on this engine
    are that Slurm run."""
    owners = list(dict.fromkeys(c.owner for c in cands))
    if len(owners) > 1:
        raise DltError(f"{run} names runs of {len(owners)} owners on {where} ({_listed(cands)}):"
                       " act on its containers with docker itself (`docker ps --filter "
                       f"label=dltasks.run={run}`)")
    slurm = [c for c in cands if c.source == SLURM]
    return slurm[0] if slurm else cands[0]


def choose_candidate(run: str, candidates: Iterable[Candidate], where: str) -> Candidate:
    """The run that ``run`` names among ``candidates`` (engine runs and Slurm records
    together), or a one-line error.

    The full id of any run wins (another user's too: naming it in full is deliberate); a
    prefix resolves only among your own runs, and only when exactly one starts with it;
    several are refused with their list, none with the fix."""
    check_run_arg(run)
    cands = list(dict.fromkeys(candidates))  # one per (id, source, owner), in order
    exact = [c for c in cands if c.run_id == run]
    if exact:
        return _one([c for c in exact if c.mine] or exact, run, where)
    mine = [c for c in cands if c.mine and c.run_id.startswith(run)]
    ids = list(dict.fromkeys(c.run_id for c in mine))
    if len(ids) == 1:
        return _one(mine, run, where)
    if ids:
        firsts = [_one([c for c in mine if c.run_id == i], i, where) for i in ids]
        raise DltError(f"{run!r} matches {len(ids)} of your runs on {where}: "
                       f"{_listed(firsts)}; give more of the id")
    others = [c for c in cands if not c.mine and c.run_id.startswith(run)]
    if others:
        raise NoSuchRun(f"no run of yours on {where} starts with {run!r}; {_listed(others)} "
                       "is not yours: name it by its full id to act on it")
    raise NoSuchRun(f"no run {run!r} on {where}: {_fix(where)}")


@dataclass
class Found:
    """What :func:`resolve_run` chose: an engine run (its containers here) or a Slurm run."""

    candidate: Candidate
    runs: list[RunInfo]
    record: RunRecord | None = None


def slurm_candidates(records: list[RunRecord]) -> list[Candidate]:
    return [Candidate(m.run_id, SLURM, note=f"Slurm job {m.slurm.job_id if m.slurm else ''}")
            for m in records]


def resolve_run(target: Target, run: str) -> Found:
    """The run ``run`` (an id or a prefix) names on the target, among this project's runs on
    its engine and its Slurm records for that host, looked at together
    (:func:`choose_candidate`)."""
    from dltasks.runs.slurm import slurm_records

    check_run_arg(run)
    s = target.settings
    records = slurm_records(s.project_dir, target.name)
    try:
        runs = find_runs(target, project=s.project)
    except DltError:
        # no engine there (a Slurm login node): only a Slurm run named in full is certain
        if not any(m.run_id == run for m in records):
            if any(m.run_id.startswith(run) for m in records):
                raise DltError(f"no engine answers on {target.name}, so {run} cannot be told "
                               f"apart from its engine runs: name the Slurm run by its full id "
                               f"({_fix(target.name)})") from None
            raise
        runs = []
    login = target.login
    whose = {r.container_id: owner(r, login, s.project_dir, target.name) for r in runs}
    cands = [Candidate(r.run_id, ENGINE, whose[r.container_id], r.status) for r in runs]
    chosen = choose_candidate(run, [*cands, *slurm_candidates(records)], target.name)
    if chosen.source == SLURM:
        record = next(m for m in records if m.run_id == chosen.run_id)
        return Found(chosen, [], record)
    return Found(chosen, [r for r in runs if r.run_id == chosen.run_id
                          and whose[r.container_id] == chosen.owner])


def pick_node(found: Found, node: int | None, where: str) -> RunInfo:
    """The container of ``found`` to act on (``node``: that node of a job)."""
    runs = found.runs
    rid = found.candidate.run_id
    if node is not None:
        runs = [r for r in runs if r.node == str(node)]
        if not runs:
            raise DltError(f"run {rid} has no node {node} on {where}'s engine "
                           f"({', '.join(r.node or '-' for r in found.runs)})")
    if len(runs) > 1 and all(r.node for r in runs):
        raise DltError(f"job {rid} has {len(runs)} nodes on {where}'s engine "
                       f"({', '.join(r.node for r in runs)}): pick one with --node K")
    return runs[0]


def ended_at(state: dict[str, Any]) -> str:
    """The engine's FinishedAt (RFC 3339, nanoseconds) as our records write times."""
    from datetime import datetime

    text = str(state.get("FinishedAt") or "")
    try:
        return datetime.fromisoformat(text[:19] + "+00:00").isoformat(timespec="seconds")
    except ValueError:
        return text


def settle(target: Target, project_dir: Path, runs: list[RunInfo], *,
           status: RunStatus = "exited") -> int:
    """Give the records of finished runs among ``runs`` their end time and exit code (those
    that have none yet: detached runs). Returns how many records changed.

    Only your own runs of this project folder (:func:`owner`) are settled: another's
    container never rewrites a record here, whatever its labels say."""
    changed = 0
    login = target.login if runs else ""
    for r in runs:
        if r.status not in ("exited", "dead") or not is_mine(r, login, project_dir, target.name):
            continue
        folder = run_dir(project_dir, r.run_id)
        try:
            record = RunRecord.load(folder)
        except DltError:  # `runs` shows it as an unreadable manifest
            continue
        if record.exit_code is not None:
            continue
        try:
            state = target.engine.inspect_container(r.container_id).get("State") or {}
        except NotFound:
            continue
        record.but(ended=ended_at(state), exit_code=int(state.get("ExitCode", r.exit_code or 0)),
                   status=status).save(folder, [])
        changed += 1
    return changed


def unsettled(project_dir: Path, host: str) -> list[str]:
    """Run ids of ``host``'s detached records that do not know their end yet."""
    return [m.run_id for m in list_runs(project_dir)
            if m.detached and m.exit_code is None and m.host == host and m.run_id]
