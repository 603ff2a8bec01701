"""`sync` and `fetch`: the project to a host and a run's results back, incrementally, by rsync.

rsync runs on this machine and reaches the host through OpenSSH with the options fabric
resolved (:func:`.sshconfig.ssh_argv`: same address, user, keys, ProxyJump, strict
known_hosts). The host needs rsync and sshd, nothing of ours. What goes and what never goes is
decided in :mod:`.syncrules`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path

from dltasks.errors import DltError
from dltasks.hosts.remote.exec import quick_exec
from dltasks.hosts.remote.sent import (
    OUT_FORMAT,
    SENT,
    HostCopyState,
    Sent,
    apply_command,
    deletions,
    folder_times,
    identical,
    open_command,
    open_host_copy,
    parse_items,
    parse_out,
    record_of,
    rewritten,
    split_known,
    split_new,
    stat_command,
    with_entries,
)
from dltasks.hosts.remote.sshconfig import SshHost, from_connection, rsh_command
from dltasks.hosts.remote.synced import listing_digest, stamp_path, write_stamp
from dltasks.hosts.remote.syncrules import (
    SyncStats,
    check_remote_dir,
    filter_args,
    human_kb,
    parse_stats,
)
from dltasks.hosts.remote.target import remote_home
from dltasks.hosts.shell import CmdResult, local, quote
from dltasks.hosts.target import HostCopy, Target
from dltasks.settings import Settings


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
                f"{human_kb(s.bytes_sent)} out, {human_kb(s.bytes_received)} in, "
                f"{self.seconds:.2f} s")


def ssh_host(target: Target) -> SshHost:
    if not target.syncs_project:
        raise DltError("sync and fetch need a remote host: run them as `fab -H HOST sync`")
    return from_connection(target.shell.c)


def rsh_for(target: Target, host: SshHost, via: str = "tunnel") -> str:
    """The ``rsync -e`` value: an exec channel of the open connection (``tunnel``, no new
    handshake), or OpenSSH with the same resolved options (``ssh``)."""
    transport = getattr(target.shell.c, "transport", None)
    if via == "ssh" or transport is None or not transport.active:
        return rsh_command(host)
    from dltasks.hosts.remote.tunnel import ExecTunnel

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


def check_dir(target: Target, path: str, home: str) -> str:
    """The folder's path when its name is safe (and, seen when connecting, its real path)."""
    safe = check_remote_dir(path, home, host=target.name)
    if path == target.host_project_dir and target.host_project_real:
        check_remote_dir(target.host_project_real, home, host=target.name)
    return safe


def prepare_remote_dir(target: Target, path: str, home: str, *,
                       adopt: bool = False) -> HostCopyState:
    """Create the folder on the host and read its sync record; refuse it when it (or what it
    links to) is unsafe, or when it holds files dltasks did not put there (:mod:`.sent`),
    unless ``adopt`` (then it gets an empty record)."""
    safe = check_dir(target, path, home)
    code, out, err = quick_exec(target.shell.c.transport,
                                open_command(safe, stamp_path(target.settings.remote_dir),
                                             adopt=adopt))
    state = open_host_copy(out, code, err, safe, target.name)
    check_remote_dir(state.real, home, host=target.name)  # no link above points out
    return state


def _apply_record(target: Target, state: HostCopyState, sent: Sent, root: Path) -> int:
    """Delete on the host what the last sync sent and is no longer sent from here (the folders
    it deletes from get ``root``'s times back); write the new record. Returns how many files
    and links were deleted."""
    lines = deletions(state.sent, sent)
    if not lines and sent == state.sent:
        return 0
    lines += folder_times(lines, root)
    data = "\n".join([*lines, "--", sent.to_json()]).encode(errors="surrogateescape")
    code, out, err = quick_exec(target.shell.c.transport, apply_command(state.real),
                                120.0, data)
    if code != 0:
        why = (err or out).strip().splitlines()[-1:] or [f"exit {code}"]
        raise DltError(f"synced, but could not record what was sent in {state.real}/{SENT} on "
                       f"{target.name}: {why[0]}; check that folder there, then sync again")
    try:
        return int(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        return 0


def _dry_run(rules: Sequence[str], src: str) -> str:
    """What a sync of ``src`` through ``rules`` would send, as rsync's itemized lines: a dry
    run into a folder that does not exist (nothing is written)."""
    with tempfile.TemporaryDirectory(prefix="dlt-list-") as tmp:
        res = local(["rsync", "-a", "-n", "-ii", f"--out-format={OUT_FORMAT}", *rules, src,
                     f"{tmp}/none/"])
    if not res.ok:
        raise DltError(f"rsync cannot list {src} (exit {res.code}): {res.tail(2)}; "
                       "check the project folder's permissions")
    return res.stdout


def _files_from(tmp: str, name: str, paths: Sequence[str]) -> str:
    """A NUL-separated ``--files-from`` list (outside the project: never sent itself)."""
    f = Path(tmp) / name
    f.write_bytes(b"\0".join(os.fsencode(p) for p in paths))
    return f"--files-from={f}"


@dataclass
class _Sent:
    """What the passes of one sync did."""

    passes: list[CmdResult] = field(default_factory=list)
    recorded: list[str] = field(default_factory=list)   # the host now holds them as here
    kept: list[str] = field(default_factory=list)       # new here, the host made its own
    rewritten: list[str] = field(default_factory=list)  # changed here and there: the host's


def _send_recorded(target: Target, state: HostCopyState, host: SshHost, base: list[str],
                   src: str, there: str, rules: Sequence[str]) -> _Sent:
    """A sync into a folder with a record (:mod:`.sent`): nothing is sent over a file the
    last sync did not leave there. New paths go only where the host has none of that name;
    files unchanged here go only where the host lost them (a run's rewrite of one stays);
    files changed here are updated unless the host's copy changed too (then it stays, said).
    Known folders last, so their times end as a plain update leaves them."""
    root = Path(src)
    known, new = split_new(parse_items(_dry_run(rules, src)), state.sent)
    unchanged, changed = split_known(known, state.sent, root)
    ours = [p for p in changed if p in state.sent.files]
    out = _Sent()
    if ours:
        data = "".join(f"{p}\n" for p in ours).encode(errors="surrogateescape")
        code, stat_out, err = quick_exec(target.shell.c.transport, stat_command(state.real),
                                         120.0, data)
        if code != 0:
            raise DltError(f"cannot read the files of {state.real} on {target.name} "
                           f"({(err or stat_out).strip()[-200:] or f'exit {code}'}); check "
                           "that folder there, then sync again")
        out.rewritten = rewritten(ours, state.sent, stat_out)
    update = [p for p in changed if p not in out.rewritten]
    with tempfile.TemporaryDirectory(prefix="dlt-sync-") as tmp:
        if new or unchanged:
            res, _ = _rsync([*base, "--ignore-existing",
                             _files_from(tmp, "missing", [*new, *unchanged]), "--from0", src,
                             there], host)
            out.passes.append(res)
            made = set(parse_out(res.stdout))
            skipped = [p for p in new if p not in made]
            same: set[str] = set()
            if skipped:
                # what the host already had: the same file (a copy a sync sent before the
                # record, or an adopted folder's) is recorded; any other is the host's
                check, _ = _rsync([*base, "-n", _files_from(tmp, "check", skipped), "--from0",
                                   src, there], host)
                same = {p for item, p in parse_items(check.stdout) if identical(item)}
            out.recorded += [*made, *unchanged, *(p for p in skipped if p in same)]
            out.kept = [p for p in skipped if p not in same and not (root / p).is_dir()]
        if update and (out.passes or any(not (root / p).is_dir() for p in update)):
            res, _ = _rsync([*base, _files_from(tmp, "update", update), "--from0", src, there],
                            host)
            out.passes.append(res)
            out.recorded += parse_out(res.stdout)
    return out


def _sum(stats: Iterable[SyncStats]) -> SyncStats:
    got = list(stats)
    return SyncStats(**{k: sum(getattr(s, k) for s in got)
                        for k in SyncStats.__dataclass_fields__})


def _home_of(target: Target) -> str:
    return target.host_home or remote_home(target.shell.c, ssh_host(target))


def _protected(settings: Settings, host_dir: str = "", host_home: str = "") -> list[str]:
    """Folders inside the project that a sync must not send (the outputs): the outputs folder
    as a path here inside this project, or as a host path inside the host's project folder in
    any spelling a run accepts (:func:`dltasks.runs.plan._host_path`: ``.env.HOST``'s
    DLT_OUTPUT_DIR=/home/me/dltasks/proj/results, ``~/dltasks/proj/results``)."""
    from dltasks.runs.plan import _host_path

    out = []
    for value in (settings.output_dir,):
        if not value:
            continue
        host_root = host_dir.rstrip("/") + "/"
        on_host = _host_path(value, host_dir, host_home) if host_dir else ""
        if on_host.startswith(host_root):
            out.append(on_host[len(host_root):])
        p = settings.path(value).resolve()
        try:
            rel = p.relative_to(settings.project_dir.resolve()).as_posix()
        except ValueError:
            continue
        if rel not in out:
            out.append(rel)
    return out


def sync_source(settings: Settings, runs: Sequence[str] = (), host_dir: str = "",
                host_home: str = "") -> tuple[str, list[str]]:
    """What a sync sends: the source folder (with its trailing slash) and rsync's filters."""
    def text(name: str) -> str:
        f = settings.project_dir / name
        return f.read_text(errors="replace") if f.is_file() else ""

    rules = filter_args(include_runs=runs, protect=_protected(settings, host_dir, host_home),
                        dockerignore=text(".dockerignore"), dltignore=text(".dltignore"))
    return str(settings.project_dir).rstrip("/") + "/", rules


def local_listing(settings: Settings) -> str:
    """The digest a plain sync compares with the host's stamp (:mod:`.synced`); start it
    early, it needs no connection."""
    src, rules = sync_source(settings)
    return listing_digest(rules, src)


def sync_project(target: Target, settings: Settings, *,
                 runs: Sequence[str] = (), quiet: bool = False, via: str = "tunnel",
                 listing: Future[str] | None = None, shortcut: bool = True,
                 adopt: bool = False) -> SyncResult:
    """Send the project to ``target.host_project_dir``; delete there only what an earlier sync
    sent and is no longer sent from here (:mod:`.sent`), never what appeared on the host.

    ``runs``: run ids whose local ``runs/<id>/`` folder (rewritten configs) must be on the host.
    A plain sync (no ``runs``) to a target made with ``check_sync`` skips rsync when neither
    side changed since the last one (:mod:`.synced`); ``listing`` is this side's digest when
    it was started early (:func:`local_listing`). ``shortcut=False`` runs rsync anyway.

    A file here that the record does not list goes only where the host has no file of that
    name: one the host has (a run's ``checkpoints/ckpt.pt``) is kept there, said in one line.
    ``adopt``: take a folder that holds files but no record (an older copy of the project) as
    dltasks' own, with an empty record: nothing in it is then overwritten or deleted.
    """
    host = ssh_host(target)
    home = _home_of(target)
    dest = check_dir(target, target.host_project_dir, home)
    src, rules = sync_source(settings, runs, dest, home)
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
    t0 = time.monotonic()
    state = prepare_remote_dir(target, target.host_project_dir, home, adopt=adopt)
    # No --delete: rsync only adds and updates; what it may delete is decided by the record.
    base = ["rsync", "-a", "--no-owner", "--no-group", "--stats", "-ii",
            f"--out-format={OUT_FORMAT}", "-e", rsh_for(target, host, via), *rules]
    there = f"{host.hostname}:{dest}/"
    if state.state in ("empty", "legacy"):  # nothing the host made to mind: a plain update
        res, _ = _rsync([*base, src, there], host)
        sent = _Sent([res], parse_out(res.stdout))
    else:
        sent = _send_recorded(target, state, host, base, src, there, rules)
    record = with_entries(record_of(settings.project_dir, sent.recorded), state.sent,
                          sent.rewritten)
    deleted = _apply_record(target, state, record, settings.project_dir)
    if sent.passes:
        # the project folder's own time as a plain update leaves it ("." in a --files-from
        # list would send what is right in it, new files included), set only when it differs
        # (setting it moves its ctime: the next sync could not know nothing changed)
        mtime = settings.project_dir.stat().st_mtime_ns
        stamp = f"{mtime // 10**9}.{mtime % 10**9:09d}"
        quick_exec(target.shell.c.transport, quote(
            ["sh", "-c", '[ "$(date -r "$1" +%s.%N)" = "$2" ] || touch -m -d "@$2" -- "$1"',
             "_", state.real, stamp]))
    took = time.monotonic() - t0
    if copy is not None and digest and not (sent.kept or sent.rewritten):
        # (with files left as the host has them, the next sync must say so again)
        write_stamp(target.shell.c.transport, settings.remote_dir, digest, copy.clock)
    passes, kept = sent.passes, sent.kept
    stats = dataclasses.replace(_sum(parse_stats(r.stdout) for r in passes), deleted=deleted)
    result = SyncResult(src, f"{target.name}:{dest}", quote([*base, src, there]), stats, took)
    if kept:  # always said: a file here did not go, and the user must know which
        print(f"dlt: kept {len(kept)} file(s) {target.name} made ({kept[0]}"
              f"{', ...' if len(kept) > 1 else ''}): a file of that name here was not sent; "
              "rename one of them", file=sys.stderr, flush=True)
    if sent.rewritten:
        print(f"dlt: kept {len(sent.rewritten)} file(s) as {target.name} has them "
              f"({sent.rewritten[0]}{', ...' if len(sent.rewritten) > 1 else ''}): changed "
              "there since the last sync and here too, so yours was not sent; fetch or rename "
              "one of them", file=sys.stderr, flush=True)
    if not quiet:
        # stderr: under `train` stdout is the run's output (and a detached run's id)
        print(f"dlt: synced {settings.project_dir} -> {target.name}:{dest}: {result.summary()}",
              file=sys.stderr, flush=True)
    return result

