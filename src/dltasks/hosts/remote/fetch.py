"""`fetch RUN`: that run's results back from the host, never overwriting a file here.

What comes back (documented in docs/remote.md):

* from each outputs folder of the run's record (its host path), the files the run wrote or
  changed: modified between the container's start and end (the engine's times, the host's
  clock; the record's when the container is gone), so another run's files in the same folder
  stay there;
* files the run made in the host's project folder that no sync sent (``checkpoints/``,
  ``wandb/``, ``lightning_logs/``...), in the same window, into ``runs/RUN/host-files/``
  here (there they can never be mistaken for code a sync sends);
* the host's ``runs/RUN/`` folder (its rewritten configs), as before.

Each pull goes into a staging folder first (rsync ``--compare-dest``: what is identical here is
not even copied), then is merged: a new file is moved in, an identical one dropped, and a
local file that differs is KEPT, the host's copy saved beside it as ``NAME.from-HOST.EXT`` and
said in one line.
"""

from __future__ import annotations

import filecmp
import os
import shutil
import sys
import tempfile
import time
from calendar import timegm
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from dltasks.errors import DltError
from dltasks.hosts.remote.exec import quick_exec
from dltasks.hosts.remote.sent import SENT, Sent
from dltasks.hosts.remote.sshconfig import SshHost
from dltasks.hosts.remote.sync import SyncResult, _rsync, rsh_for, ssh_host
from dltasks.hosts.remote.syncrules import MARK, RUNS, SyncStats, parse_stats
from dltasks.hosts.shell import quote
from dltasks.hosts.target import Target
from dltasks.runs.record import OWN_FILES, RunRecord
from dltasks.scripts import script
from dltasks.settings import Settings

HOST_FILES = "host-files"
MARGIN_S = 1  # times are whole seconds, floored


@dataclass
class Merged:
    """What a merge did: files moved in, files identical here, local files kept (with where the
    host's copy went), files that could not be put (a file here is in the way), symlinks
    that point out of the folder (never brought)."""

    moved: int = 0
    same: int = 0
    kept: list[tuple[str, str]] = field(default_factory=list)
    blocked: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)   # symlinks pointing out: not brought


def _same(a: Path, b: Path) -> bool:
    if a.is_symlink() or b.is_symlink():
        return a.is_symlink() and b.is_symlink() and os.readlink(a) == os.readlink(b)
    return a.is_file() and b.is_file() and filecmp.cmp(a, b, shallow=False)


def beside(path: Path, tag: str, n: int) -> Path:
    """``ckpt.pt`` -> ``ckpt.from-gpu1.pt`` (n=1), ``ckpt.from-gpu1-2.pt`` (n=2)..."""
    mark = f".from-{tag}" + (f"-{n}" if n > 1 else "")
    return path.with_name(path.stem + mark + path.suffix) if path.suffix and path.stem \
        else path.with_name(path.name + mark)


def _leaves(rel: Path, link: str) -> bool:
    """Whether a symlink at ``rel`` pointing at ``link`` points out of the folder it is in."""
    if os.path.isabs(link):
        return True
    where = os.path.normpath(os.path.join(rel.parent.as_posix(), link))
    return where == ".." or where.startswith("../")


def merge(staging: Path, dest: Path, tag: str) -> Merged:
    """Move what ``staging`` holds into ``dest``, never replacing a file of ``dest`` that
    differs: the incoming one is then saved beside it (:func:`beside`)."""
    done = Merged()
    for top, dirs, files in os.walk(staging):
        dirs.sort()
        for name in sorted(files) + [d for d in dirs if (Path(top) / d).is_symlink()]:
            src = Path(top) / name
            rel = src.relative_to(staging)
            out = dest / rel
            if src.is_symlink() and _leaves(rel, os.readlink(src)):
                done.unsafe.append(rel.as_posix())  # (rsync --safe-links dropped it already)
                continue
            # never through a symlink (dangling ones too) of dest: nothing lands outside it
            parent_ok = all(not (dest / p).is_symlink() and (dest / p).is_dir()
                            or not os.path.lexists(dest / p)
                            for p in rel.parents if str(p) != ".")
            if not parent_ok:
                done.blocked.append(rel.as_posix())
                continue
            out.parent.mkdir(parents=True, exist_ok=True)
            if not os.path.lexists(out):
                os.replace(src, out)
                done.moved += 1
                continue
            n = 0
            while True:
                if _same(src, out):
                    done.same += 1
                    break
                n += 1
                out = beside(dest / rel, tag, n)
                if not os.path.lexists(out):
                    os.replace(src, out)
                    done.kept.append((rel.as_posix(), out.name))
                    break
    return done


def _epoch(stamp: str | None) -> int | None:
    """Seconds since the epoch of an engine or record time (``...Z``, ``+00:00``); None for
    none or the engine's zero time."""
    if not stamp or stamp.startswith("0001-"):
        return None
    try:
        t = datetime.fromisoformat(stamp[:19])
    except ValueError:
        return None
    return timegm(t.timetuple())


def run_window(record: RunRecord, info: dict[str, Any] | None) -> tuple[int, int | None]:
    """(start, end or None while running), host clock when the container is there."""
    state = (info or {}).get("State") or {}
    start = _epoch(state.get("StartedAt")) or _epoch(record.started)
    if start is None:
        raise DltError(f"run {record.run_id or '?'}: its record has no start time, so its "
                       "files cannot be told from other runs'; copy them with rsync")
    if state:
        end = None if state.get("Running") else _epoch(state.get("FinishedAt"))
    else:
        end = _epoch(record.ended)
    return start - MARGIN_S, (end + MARGIN_S if end is not None else None)


def _host_clock_skew(target: Target) -> int:
    """Seconds the host's clock is ahead of this machine's (0 when it cannot say), rounded
    outwards by :func:`run_window`'s margin."""
    t0 = time.time()
    code, out, _ = quick_exec(target.shell.c.transport, "date +%s")
    t1 = time.time()
    try:
        return int(out.strip()) - round((t0 + t1) / 2) if code == 0 else 0
    except ValueError:
        return 0


def _list_argv(roots: Sequence[tuple[str, Sequence[str]]], start: int,
               end: int | None) -> list[str]:
    """The command that lists (NUL-separated, "@@I" before root I's files) the files under each
    root modified in the window, pruning each root's folders ``prune``."""
    argv = ["sh", "-c", script("run_files"), "_", str(start), "" if end is None else str(end)]
    for root, prune in roots:
        argv += [root, str(len(prune)), *prune]
    return argv


def _run_files(target: Target, roots: Sequence[tuple[str, Sequence[str]]], start: int,
               end: int | None) -> list[list[str]]:
    code, out, err = quick_exec(target.shell.c.transport,
                                quote(_list_argv(roots, start, end)), 120.0)
    if code != 0:
        raise DltError(f"cannot list the run's files on {target.name}: "
                       f"{(err or out).strip()[:200]}; check that the host has find and touch")
    got: list[list[str]] = [[] for _ in roots]
    cur = -1
    for item in out.split("\0"):
        if item.startswith("@@") and item[2:].isdigit():
            cur = int(item[2:])
        elif item and 0 <= cur < len(got):
            got[cur].append(item[2:] if item.startswith("./") else item)
    return got


def _pull(host: SshHost, rsh: str, remote: str, dest: Path, extra: Sequence[str],
          files: Sequence[str] | None, tag: str) -> tuple[SyncResult, Merged]:
    """rsync ``remote`` (only ``files`` when given) into a staging folder in ``dest``, then
    :func:`merge` it into ``dest``."""
    dest.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".dlt-fetch-", dir=dest))
    # the file list lives outside the staging folder: a host file of the same name there
    # can never replace it, nor be taken for it
    lists = tempfile.TemporaryDirectory(prefix="dlt-fetch-list-")
    try:
        # --safe-links: a symlink a run planted that points out of the pulled tree stays there
        argv = ["rsync", "-a", "--safe-links", "--no-owner", "--no-group", "--stats",
                f"--compare-dest={dest.resolve()}", "-e", rsh, *extra]
        if files is not None:
            listing = Path(lists.name) / "files"
            listing.write_bytes(b"\0".join(os.fsencode(f) for f in files))
            argv += [f"--files-from={listing}", "--from0"]
        argv += [f"{host.hostname}:{remote.rstrip('/')}/", str(staging) + "/"]
        res, took = _rsync(argv, host)
        merged = merge(staging, dest, tag)
        return SyncResult(f"{host.alias}:{remote}", str(dest), quote(argv),
                          parse_stats(res.stdout), took), merged
    finally:
        lists.cleanup()
        shutil.rmtree(staging, ignore_errors=True)


def _local_record(settings: Settings, run_id: str) -> tuple[Path, RunRecord]:
    """(the run's folder here, its record)."""
    from dltasks.runs.record import check_run_id, record_file, run_dir

    folder = run_dir(settings.project_dir, check_run_id(run_id, "fetch RUN"))
    if not record_file(folder).is_file():
        raise DltError(f"no record of run {run_id!r} in {settings.project_dir / RUNS}: "
                       "`inv runs` lists the runs started from here")
    return folder, RunRecord.load(folder)


def _container(target: Target, settings: Settings,
               run_id: str) -> tuple[str, dict[str, Any]] | None:
    """YOUR container of that run of this project (:func:`dltasks.runs.listing.owner`):
    another user's, or any container that merely carries the label, never lands in your record."""
    from dltasks.engine.api import NotFound
    from dltasks.runs.listing import find_runs, owner

    login = target.login
    mine = [r for r in find_runs(target, project=settings.project, run_id=run_id)
            if r.run_id == run_id and not owner(r, login, settings.project_dir, target.name)]
    if not mine:
        return None
    try:
        return mine[0].container_id, target.engine.inspect_container(mine[0].container_id)
    except NotFound:
        return None


def fetch_run(target: Target, settings: Settings, run_id: str, *,
              quiet: bool = False, via: str = "tunnel") -> SyncResult:
    """Bring that run's outputs, the files it made in the host's project folder and its run
    folder back here, never replacing a local file that differs (see the module's doc).

    Also saves the container's log as ``runs/<id>/output.log`` and, when the run has ended,
    completes its record (exit code, end time) from the engine.
    """
    host = ssh_host(target)
    folder, record = _local_record(settings, run_id)
    ran_on = record.host
    if ran_on and ran_on != target.name:
        raise DltError(f"run {run_id} ran on {ran_on}, not {target.name}: "
                       f"`fab -H {ran_on} fetch {run_id}`")
    found = _container(target, settings, run_id)
    start, end = run_window(record, found[1] if found else None)
    if not found:  # the record's times are this machine's clock: put them on the host's
        skew = _host_clock_skew(target)
        start, end = start + skew, (end + skew if end is not None else None)
    project = target.host_project_dir.rstrip("/")
    outputs = [(row.host.rstrip("/"), Path(row.local))
               for row in record.path_map or () if row.root == "outputs"]
    prune = [MARK, RUNS] + [o[len(project) + 1:] for o, _ in outputs
                            if o.startswith(project + "/")]
    roots: list[tuple[str, Sequence[str]]] = [(o, ()) for o, _ in outputs]
    roots.append((project, prune))
    listed = _run_files(target, roots, start, end)
    sent = _host_sent(target, project)
    made = [f for f in listed[-1] if f not in sent]
    pulls: list[tuple[str, Path, list[str], Sequence[str] | None]] = [
        (o, local, [], files) for (o, local), files in zip(outputs, listed, strict=False) if files]
    if made:
        pulls.append((project, folder / HOST_FILES, [], made))
    pulls.append((f"{project}/{RUNS}/{run_id}", folder,
                  [*(f"--exclude=/{name}" for name in OWN_FILES), f"--exclude=/{HOST_FILES}/",
                   "--exclude=/.dlt-fetch-*"], None))
    rsh = rsh_for(target, host, via)
    tag = "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in target.name)
    done = [_pull(host, rsh, remote, dest, extra, files, tag)
            for remote, dest, extra, files in pulls
            if files is not None or _is_dir(target, remote)]
    _save_log_and_state(target, settings, folder, record, found)
    parts = tuple(p for p, _ in done)
    total = SyncStats(**{k: sum(getattr(p.stats, k) for p in parts)
                         for k in SyncStats.__dataclass_fields__})
    result = SyncResult(f"{target.name}:{run_id}", str(folder),
                        "; ".join(p.command for p in parts), total,
                        sum(p.seconds for p in parts), parts)
    _say_conflicts(target.name, [(p, m) for p, m in done])
    if not quiet:
        where = ", ".join(p.dest for p in parts) or "nothing to copy"
        print(f"dlt: fetched {run_id} from {target.name} ({where}): {result.summary()}",
              file=sys.stderr, flush=True)
    return result


def _is_dir(target: Target, path: str) -> bool:
    code, _, _ = quick_exec(target.shell.c.transport, quote(["test", "-d", path]))
    return code == 0


def _host_sent(target: Target, project: str) -> set[str]:
    """The paths the syncs sent to the host's project folder (never fetched as run files)."""
    code, out, _ = quick_exec(target.shell.c.transport, quote(["cat", f"{project}/{SENT}"]))
    return Sent.from_json(out).paths() if code == 0 else set()


def _say_conflicts(host: str, done: Sequence[tuple[SyncResult, Merged]]) -> None:
    """One line for the local files kept (the host's copies beside them), one for files a
    local file was in the way of."""
    kept = [f"{Path(p.dest) / rel} (theirs: {name})" for p, m in done for rel, name in m.kept]
    if kept:
        more = f" and {len(kept) - 5} more" if len(kept) > 5 else ""
        print(f"dlt: kept {len(kept)} local file(s) that differ from {host}'s, {host}'s copy "
              f"saved beside each: {', '.join(kept[:5])}{more}", file=sys.stderr, flush=True)
    blocked = [str(Path(p.dest) / rel) for p, m in done for rel in m.blocked]
    if blocked:
        print(f"dlt: not fetched, a local file is in the way: {', '.join(blocked[:5])}"
              f"{' ...' if len(blocked) > 5 else ''}; move it, then fetch again",
              file=sys.stderr, flush=True)
    unsafe = [str(Path(p.dest) / rel) for p, m in done for rel in m.unsafe]
    if unsafe:
        print(f"dlt: not fetched, symlinks that point out of their folder: "
              f"{', '.join(unsafe[:5])}{' ...' if len(unsafe) > 5 else ''}",
              file=sys.stderr, flush=True)


def _save_log_and_state(target: Target, settings: Settings, folder: Path, record: RunRecord,
                        found: tuple[str, dict[str, Any]] | None) -> None:
    """The container's log into the record folder; its end state into the record."""
    from dltasks.engine.api import NotFound
    from dltasks.engine.lifecycle import log_bytes
    from dltasks.runs.record import log_file
    from dltasks.settings.masking import scrub, secret_values

    if found is None:
        return
    cid, info = found
    secrets = secret_values(settings.container_env)
    try:
        log = log_bytes(target.engine, cid)
    except NotFound:
        return
    log_file(folder).write_text(scrub(log.decode(errors="replace"), secrets), encoding="utf-8")
    state = info.get("State") or {}
    if not state.get("Running") and record.exit_code is None:
        record.but(exit_code=state.get("ExitCode"), ended=state.get("FinishedAt"),
                   status="exited").save(folder, secrets)
