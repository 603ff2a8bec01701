"""Finding runs: `ps`, `logs`, `stop` and `runs`, for every kind of run (train, shell, run,
a job's nodes, Slurm).

The same body serves `inv` (this machine) and `fab -H host` (a remote host).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from invoke.exceptions import Exit

from dltasks.tasks._common import dlt_task, job_targets, settings_for, target_for


@dlt_task(short={"all": "a"}, help={"all": "Include every user's runs of every project on "
                                           "this engine, and say whose each is."})
def ps(c: Any, all: bool = False) -> None:
    """List your runs of this project on the engine (running and finished detached runs)."""
    from dltasks.runs.forwarder import live_forwarder, ports_here
    from dltasks.runs.listing import find_runs, owner, settle
    from dltasks.runs.record import run_dir

    with target_for(c) as target:
        s = target.settings
        every = find_runs(target, project=None if all else s.project)
        login = target.login
        whose = {r.container_id: owner(r, login, s.project_dir, target.name) for r in every}
        mine = [r for r in every if not whose[r.container_id]]
        settle(target, s.project_dir, mine)
        shown = every if all else mine
        head = ("RUN", "KIND", "NODE", "STATUS", "GPUS", "STARTED", "IMAGE", "PORTS")
        rows = [head + (("OWNER", "PROJECT") if all else ())]
        for r in shown:
            status = r.status + (f" ({r.exit_code})" if r.exit_code is not None else "")
            node = f"{r.node}/{len(r.nodes.split(','))}" if r.node else "-"
            ports = r.ports
            if ports and not whose[r.container_id]:  # its laptop ports, while forwarded here
                live = live_forwarder(run_dir(s.project_dir, r.run_id), r.run_id)
                ports = ports_here(ports, live.ports) if live else ports
            row = (r.run_id, r.kind, node, status, r.gpus, r.started, r.image, ports or "-")
            rows.append(row + ((whose[r.container_id] or "you", r.project) if all else ()))
        hidden = len(every) - len(mine) if not all else 0
        more = (f"; {hidden} more of project {s.project} not yours (other users or folders): "
                "`ps --all` shows whose") if hidden else ""
        _table(rows, title=f"{target.name}: {len(shown)} run(s){more}")
        _slurm_jobs(target)


@dlt_task(short={"follow": "f"},
          help={"follow": "Keep streaming until the run ends (Ctrl-C detaches, the run goes on).",
                "node": "A job's node (its rank) whose output to show."})
def logs(c: Any, run: str, follow: bool = False, node: int = -1) -> None:
    """Show a run's output (from its start); --follow streams it live. RUN: its id, or the
    start of one of your runs' ids (another user's run: its full id)."""
    from dltasks.engine.lifecycle import check_connection, stream
    from dltasks.runs.listing import find_runs, pick_node, resolve_run, settle

    with target_for(c) as target:
        found = resolve_run(target, run)
        if found.record is not None:
            _slurm_logs(target, found.record, follow)
            return
        info = pick_node(found, None if node < 0 else node, target.name)
        try:
            stream(target, info.container_id, follow=follow and info.status == "running")
            check_connection(target, info.run_id)
            settle(target, target.settings.project_dir,
                   [r for r in find_runs(target, run_id=info.run_id)
                    if r.container_id == info.container_id])
        except KeyboardInterrupt:
            print(f"\ndlt: detached from {info.run_id}; it is still running", file=sys.stderr)
            raise Exit(code=130) from None


@dlt_task
def stop(c: Any, run: str) -> None:
    """Stop a run (grace period DLT_STOP_TIMEOUT, then kill) and remove its container; a
    job's containers on every one of its hosts. RUN: its id, or the start of one of your
    runs' ids (another user's run: its full id); a start that several runs share stops
    nothing."""
    from dltasks.engine.lifecycle import remove
    from dltasks.engine.lifecycle import stop as stop_container
    from dltasks.runs.listing import find_runs, resolve_run, settle

    with target_for(c) as target:
        found = resolve_run(target, run)
        whose = "" if found.candidate.mine else f" (a run of {found.candidate.owner})"
        if found.record is not None:
            from dltasks.runs.slurm import cancel, settle_slurm

            job_id = cancel(target, found.record)
            settle_slurm(target, target.settings.project_dir, found.record)
            print(f"stopped {found.record.run_id}: cancelled Slurm job {job_id} on "
                  f"{target.name}")
            return
        parts = [r for r in found.runs if r.node]
        if parts:
            _stop_job(c, target, parts[0], parts[0].nodes.split(","), found.candidate.mine)
            return
        from dltasks.runs.forwarder import end_forwarder
        from dltasks.runs.record import run_dir

        if found.candidate.mine:  # its ports' background forwarder, on this machine
            end_forwarder(run_dir(target.settings.project_dir, found.candidate.run_id),
                          found.candidate.run_id)
        for info in found.runs:  # one container (a plain run)
            was = info.status
            stop_container(target, info.container_id, target.settings.stop_timeout)
            settle(target, target.settings.project_dir,
                   [r for r in find_runs(target, run_id=info.run_id)
                    if r.container_id == info.container_id],
                   status="stopped" if was == "running" else "exited")
            remove(target, info.container_id)
        print(f"stopped {found.candidate.run_id} on {target.name}{whose}")


def _slurm_jobs(target: Any) -> None:
    """The project's Slurm runs that have not ended, as Slurm says now (squeue, scontrol)."""
    from dltasks.runs.slurm import settle_slurm, slurm_records

    s = target.settings
    live = [m for m in slurm_records(s.project_dir, target.name) if m.exit_code is None]
    if not live:
        return
    rows = [("RUN", "SLURM JOB", "STATE", "NODES", "STARTED")]
    for m in live:
        m = settle_slurm(target, s.project_dir, m)
        assert m.slurm is not None  # slurm_records: Slurm runs only
        rows.append((m.run_id, m.slurm.job_id, m.status or "", str(m.slurm.nodes), m.started))
    _table(rows, title=f"{target.name}: {len(live)} Slurm run(s) submitted from here")


def _slurm_logs(target: Any, record: Any, follow: bool) -> None:
    """A Slurm run's output file (from the login host); --follow until the job ends."""
    import posixpath

    from dltasks.errors import DltError
    from dltasks.hosts.shell import quote
    from dltasks.runs.slurm import follow as follow_job
    from dltasks.runs.slurm import settle_slurm, slurm_job_id

    rid, output = record.run_id, record.slurm.output
    # the record is a file: show only the job's own output file in the run's folder
    if (posixpath.normpath(output) != output
            or posixpath.basename(posixpath.dirname(output)) != rid
            or posixpath.basename(output) != f"slurm-{slurm_job_id(record)}.out"):
        raise DltError(f"the record of run {rid} names {output[:80]!r} as the job's output, "
                       f"not runs/{rid}/slurm-<job>.out: the record was edited; read the "
                       f"job's output with `cat` on the login host, or restore the record")
    if follow:
        try:
            follow_job(target, record.slurm, rid, cancel_on_ctrl_c=False)
        except KeyboardInterrupt:
            print(f"\ndlt: detached from {rid}; the job goes on", file=sys.stderr)
            raise Exit(code=130) from None
    else:
        r = target.shell.run(quote(["cat", output]))
        sys.stdout.write(r.stdout)
    settle_slurm(target, target.settings.project_dir, record)


def _stop_job(c: Any, here: Any, first: Any, hosts: list[str], mine: bool) -> None:
    """Stop every node of the job ``first`` is a node of (its hosts, from its labels) at once,
    then remove them: on each host, the containers with its run id AND its record label (the
    launching machine's path, the same on every node), so no one else's run of that id."""
    from dltasks.engine.lifecycle import remove
    from dltasks.engine.lifecycle import stop as stop_container
    from dltasks.hosts.target import ssh_host_of
    from dltasks.runs.listing import find_runs

    run = first.run_id

    def stop_on(target: Any) -> set[str]:
        nodes = [r for r in find_runs(target, project=target.settings.project, run_id=run)
                 if r.node and r.record == first.record]
        for r in nodes:
            stop_container(target, r.container_id, target.settings.stop_timeout)
            remove(target, r.container_id)
        return {r.container_id for r in nodes}

    if ssh_host_of(c) is None and hosts == ["local"]:
        n = len(stop_on(here))
    else:
        from concurrent.futures import ThreadPoolExecutor

        with job_targets(c, hosts) as targets, ThreadPoolExecutor(len(targets)) as pool:
            n = len(set().union(*pool.map(stop_on, targets)))
    s = here.settings
    from dltasks.errors import DltError
    from dltasks.runs.record import RunRecord, record_file, run_dir, utcnow

    folder = run_dir(s.project_dir, run)
    if mine and record_file(folder).is_file():  # another user's job: its record is theirs
        try:
            record = RunRecord.load(folder)
        except DltError as e:  # the containers are stopped all the same: say both
            print(f"dlt: {e}", file=sys.stderr)
        else:
            if record.exit_code is None:
                record.but(ended=utcnow(), status="stopped").save(folder, [])
    whose = "" if mine else f" (a job of {first.user or 'another user'})"
    print(f"stopped job {run}: {n} node container(s) on {', '.join(hosts)}{whose}")


@dlt_task
def runs(c: Any) -> None:
    """List the run records in runs/ (newest first); with fab -H, each host's own."""
    from dltasks.hosts.target import ssh_host_of
    from dltasks.runs.listing import find_runs, settle, unsettled
    from dltasks.runs.record import list_runs

    s = settings_for(c)
    host = ssh_host_of(c)
    if unsettled(s.project_dir, host or "local"):  # detached runs that may have ended since
        with target_for(c) as target:
            settle(target, s.project_dir, find_runs(target, project=s.project))
    records = list_runs(s.project_dir)
    pending_slurm = [i for i, m in enumerate(records) if m.slurm and m.exit_code is None
                     and (not host or m.host == host)]
    if pending_slurm:  # Slurm runs that may have ended: sacct / scontrol / their exit file
        from dltasks.runs.slurm import settle_slurm

        with target_for(c, engine_soon=False) as target:
            for i in pending_slurm:  # the table shows what Slurm says now
                records[i] = settle_slurm(target, s.project_dir, records[i])
    rows = [("RUN", "KIND", "HOST", "EXIT", "GPUS", "STARTED", "COMMIT")]
    for m in records:
        if host and m.host != host:  # fab -H gpu1 runs: that host's records only
            continue
        commit = m.git.commit or "-"
        dirty = "+dirty" if m.git.dirty else ""
        code = m.exit_code
        slurm = m.slurm
        where = m.host
        if slurm:
            nodes = slurm.nodelist or f"{slurm.nodes} node(s)"
            where += f" slurm:{slurm.job_id} {nodes} {slurm.state or m.status or ''}"
        rows.append((m.run_id, m.kind, where, "-" if code is None else str(code),
                     m.gpus or "", m.started, commit[:10] + dirty))
    where = f" of {host}" if host else ""
    _table(rows, title=f"{len(rows) - 1} run record(s){where} in {s.project_dir / 'runs'}")


def _table(rows: Sequence[tuple[str, ...]], title: str) -> None:
    print(title)
    if len(rows) == 1:
        return
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=False)).rstrip())
