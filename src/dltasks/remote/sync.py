"""`sync` and `fetch`: the project to a host and a run's results back, incrementally, by rsync.

rsync runs on this machine and reaches the host through OpenSSH with the options fabric
resolved (:func:`.sshconfig.ssh_argv`: same address, user, keys, ProxyJump, strict
known_hosts). The host needs rsync and sshd, nothing of ours. What goes and what never goes is
decided in :mod:`.syncrules`.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DltError
from ..settings import Settings
from ..shell import CmdResult, local, quote
from ..target import HostCopy, Target
from .sshconfig import SshHost, from_connection, rsh_command
from .synced import listing_digest, write_stamp
from .syncrules import RUNS, SyncStats, check_remote_dir, filter_args, human, parse_stats
from .target import quick_exec, remote_home

MANIFEST = "manifest.json"
LOG = "output.log"


@dataclass(frozen=True)
class SyncResult:
    """What one rsync did: the command, its stats, how long it took."""

    source: str
    dest: str
    command: str
    stats: SyncStats
    seconds: float
    parts: tuple[SyncResult, ...] = field(default=())

    def summary(self) -> str:
        s = self.stats
        return (f"{s.transferred} of {s.files} files copied, {s.deleted} deleted, "
                f"{human(s.bytes_sent)} out, {human(s.bytes_received)} in, {self.seconds:.2f} s")


def ssh_host(target: Target) -> SshHost:
    if not target.is_remote:
        raise DltError("sync and fetch need a remote host: run them as `fab -H HOST sync`")
    return from_connection(target.shell.c)


def rsh_for(target: Target, host: SshHost, via: str = "tunnel") -> str:
    """The ``rsync -e`` value: an exec channel of the open connection (``tunnel``, no new
    handshake), or OpenSSH with the same resolved options (``ssh``)."""
    transport = getattr(target.shell.c, "transport", None)
    if via == "ssh" or transport is None or not transport.active:
        return rsh_command(host)
    from .tunnel import ExecTunnel

    tunnel = target.resources.keep("rsh-tunnel", lambda: ExecTunnel(transport),
                                   ExecTunnel.close)
    return str(tunnel.rsh())


def _rsync(argv: Sequence[str], host: SshHost) -> tuple[CmdResult, float]:
    t0 = time.monotonic()
    res = local(list(argv))
    took = time.monotonic() - t0
    if not res.ok:
        err = res.tail(3)
        if "Host key verification failed" in err or "REMOTE HOST IDENTIFICATION" in err:
            raise DltError(f"rsync to {host.alias}: host key not verified ({err}); "
                           f"check ~/.ssh/known_hosts for {host.key_name}")
        if "command not found" in err or "rsync: not found" in err or res.code == 127:
            raise DltError(f"rsync is missing on {host.alias}: install it there "
                           "(`fab -H HOST setup`, or `sudo apt-get install rsync`)")
        raise DltError(f"rsync with {host.alias} failed (exit {res.code}): {err}")
    return res, took


def prepare_remote_dir(target: Target, path: str, home: str) -> str:
    """Create the folder on the host; refuse it when it (or what it links to) is unsafe."""
    safe = check_remote_dir(path, home, host=target.name)
    if path == target.host_project_dir and target.host_project_real:  # seen when connecting
        check_remote_dir(target.host_project_real, home, host=target.name)
        return safe
    q = quote([safe])
    code, out, err = quick_exec(target.shell.c.transport,
                                f"mkdir -p {q} && test ! -L {q} && cd {q} && pwd -P")
    if code != 0:
        why = CmdResult("", code, out, err).tail(2) or f"exit {code}"
        raise DltError(f"cannot create {safe} on {target.name} (or it is a symlink): {why}; "
                       "choose another DLT_REMOTE_DIR")
    check_remote_dir(out.strip(), home, host=target.name)  # no link above points out
    return safe


def _home_of(target: Target) -> str:
    return target.host_home or remote_home(target.shell.c, ssh_host(target))


def _protected(settings: Settings) -> list[str]:
    """Folders inside the project that a sync must neither send nor delete (the outputs)."""
    out = []
    for value in (settings.output_dir,):
        if not value:
            continue
        p = settings.path(value).resolve()
        try:
            out.append(p.relative_to(settings.project_dir.resolve()).as_posix())
        except ValueError:
            continue
    return out


def sync_source(settings: Settings, runs: Sequence[str] = ()) -> tuple[str, list[str]]:
    """What a sync sends: the source folder (with its trailing slash) and rsync's filters."""
    dockerignore = settings.project_dir / ".dockerignore"
    rules = filter_args(include_runs=runs, protect=_protected(settings),
                        dockerignore=dockerignore.read_text(errors="replace")
                        if dockerignore.is_file() else "")
    return str(settings.project_dir).rstrip("/") + "/", rules


def local_listing(settings: Settings) -> str:
    """The digest a plain sync compares with the host's stamp (:mod:`.synced`); start it
    early, it needs no connection."""
    src, rules = sync_source(settings)
    return listing_digest(rules, src)


def sync_project(target: Target, settings: Settings, *,
                 runs: Sequence[str] = (), quiet: bool = False, via: str = "tunnel",
                 listing: Future[str] | None = None, shortcut: bool = True) -> SyncResult:
    """Mirror the project to ``target.host_project_dir`` (deleting there what is gone here).

    ``runs``: run ids whose local ``runs/<id>/`` folder (rewritten configs) must be on the host.
    A plain sync (no ``runs``) to a target made with ``check_sync`` skips rsync when neither
    side changed since the last one (:mod:`.synced`); ``listing`` is this side's digest when
    it was started early (:func:`local_listing`). ``shortcut=False`` runs rsync anyway.
    """
    host = ssh_host(target)
    dest = prepare_remote_dir(target, target.host_project_dir, _home_of(target))
    src, rules = sync_source(settings, runs)
    copy: HostCopy | None = target.host_copy if not runs else None
    digest = ""
    if copy is not None:  # this side's listing, as it is BEFORE rsync reads anything
        digest = listing.result() if listing is not None else listing_digest(rules, src)
        if shortcut and digest and digest == copy.digest:
            result = SyncResult(src, f"{target.name}:{dest}", "", SyncStats(), 0.0)
            if not quiet:
                print(f"dlt: {target.name}:{dest} is up to date: nothing changed here or there "
                      "since the last sync", file=sys.stderr, flush=True)
            return result
    argv = ["rsync", "-a", "--no-owner", "--no-group", "--delete", "--stats",
            "-e", rsh_for(target, host, via), *rules,
            src, f"{host.hostname}:{dest}/"]
    res, took = _rsync(argv, host)
    if copy is not None and digest:
        write_stamp(target.shell.c.transport, settings.remote_dir, digest, copy.clock)
    result = SyncResult(src, f"{target.name}:{dest}", quote(argv), parse_stats(res.stdout), took)
    if not quiet:
        # stderr: under `train` stdout is the run's output (and a detached run's id)
        print(f"dlt: synced {settings.project_dir} -> {target.name}:{dest}: {result.summary()}",
              file=sys.stderr, flush=True)
    return result


def _local_manifest(settings: Settings, run_id: str) -> tuple[Path, dict[str, Any]]:
    path = settings.project_dir / RUNS / run_id / MANIFEST
    if not path.is_file():
        raise DltError(f"no record of run {run_id!r} in {settings.project_dir / RUNS}: "
                       "`inv runs` lists the runs started from here")
    data: dict[str, Any] = json.loads(path.read_text(encoding="utf-8"))
    return path, data


def _pull(host: SshHost, rsh: str, remote: str, dest: Path, extra: Sequence[str]) -> SyncResult:
    dest.mkdir(parents=True, exist_ok=True)
    argv = ["rsync", "-a", "--no-owner", "--no-group", "--stats", "-e", rsh, *extra,
            f"{host.hostname}:{remote.rstrip('/')}/", str(dest) + "/"]
    res, took = _rsync(argv, host)
    return SyncResult(f"{host.alias}:{remote}", str(dest), quote(argv), parse_stats(res.stdout),
                      took)


def fetch_run(target: Target, settings: Settings, run_id: str, *,
              quiet: bool = False, via: str = "tunnel") -> SyncResult:
    """Bring a run's outputs folder and its folder on the host back here (never deleting here).

    Also saves the container's log as ``runs/<id>/output.log`` and, when the run has ended,
    completes its record (exit code, end time) from the engine.
    """
    host = ssh_host(target)
    mpath, record = _local_manifest(settings, run_id)
    ran_on = record.get("host", "")
    if ran_on and ran_on != target.name:
        raise DltError(f"run {run_id} ran on {ran_on}, not {target.name}: "
                       f"`fab -H {ran_on} fetch {run_id}`")
    pulls: list[tuple[str, Path, list[str]]] = [
        (str(row["host"]), Path(row["local"]), [])
        for row in record.get("path_map", []) if row.get("root") == "outputs"]
    remote_run = f"{target.host_project_dir.rstrip('/')}/{RUNS}/{run_id}"
    pulls.append((remote_run, mpath.parent, [f"--exclude=/{MANIFEST}", f"--exclude=/{LOG}"]))
    script = 'for d; do [ -d "$d" ] && printf "%s\\n" "$d"; done; true'
    found = target.shell.run(quote(["sh", "-c", script, "_", *[p[0] for p in pulls]]),
                             check=True).stdout.splitlines()
    rsh = rsh_for(target, host, via)
    parts = [_pull(host, rsh, remote, dest, extra) for remote, dest, extra in pulls
             if remote in found]
    _save_log_and_state(target, settings, run_id, mpath, record)
    total = SyncStats(**{k: sum(getattr(p.stats, k) for p in parts)
                         for k in SyncStats.__dataclass_fields__})
    result = SyncResult(f"{target.name}:{run_id}", str(mpath.parent),
                        "; ".join(p.command for p in parts), total,
                        sum(p.seconds for p in parts), tuple(parts))
    if not quiet:
        where = ", ".join(p.dest for p in parts) or "nothing to copy"
        print(f"dlt: fetched {run_id} from {target.name} ({where}): {result.summary()}",
              file=sys.stderr, flush=True)
    return result


def _save_log_and_state(target: Target, settings: Settings, run_id: str, mpath: Path,
                        record: dict[str, Any]) -> None:
    """The container's log into the record folder; its end state into the manifest."""
    from ..containers import LABEL_RUN
    from ..engineapi import NotFound
    from ..masking import scrub, secret_values
    from ..records import write_manifest
    from ..runner import log_bytes

    rows = target.engine.containers(all=True, filters={"label": [f"{LABEL_RUN}={run_id}"]})
    if not rows:
        return
    cid = rows[0]["Id"]
    secrets = secret_values(settings.container_env)
    try:
        log = log_bytes(target.engine, cid)
        info = target.engine.inspect_container(cid)
    except NotFound:
        return
    (mpath.parent / LOG).write_text(scrub(log.decode(errors="replace"), secrets),
                                    encoding="utf-8")
    state = info.get("State") or {}
    if not state.get("Running") and record.get("exit_code") is None:
        record.update(exit_code=state.get("ExitCode"), ended=state.get("FinishedAt"),
                      status="exited")
        write_manifest(mpath, record, secrets)
