"""`exec`: which container of a run a command goes into, and getting it there.

A run on an engine (one host, or a job's node K on its own host) is entered with the engine's
exec (:mod:`dltasks.engine.execute`), through the target's engine, so a local and a remote run
are the same code. A Slurm run is entered on its node with ``srun --jobid J --overlap``, from
the login host's shell: ``docker exec`` of the node's container (docker runtime), or pyxis's
``--container-name=JOB.STEP:exec``, which joins the job's step's own container (pyxis). An
apptainer run has no instance to enter: one line says what is possible instead. The choices
(which node, which argv) are pure.
"""

from __future__ import annotations

import math
import os
import posixpath
import signal
import sys
from collections.abc import Sequence
from dataclasses import dataclass

from dltasks.engine.api import EngineError
from dltasks.engine.execute import DEFAULT_SHELL, GONE, MARKER, MARKER_KILL, exec_in
from dltasks.errors import DltError
from dltasks.hosts.shell import CutShort, quote
from dltasks.hosts.target import Target
from dltasks.runs.listing import RunInfo, ended_at
from dltasks.runs.record import RunRecord, SlurmInfo
from dltasks.runs.slurmscript import ENV_FILE

#: The exit code of "nothing to exec into" (a run that ended, a runtime we cannot enter).
NOTHING = 2


def ended_error(run_id: str, code: int | None, ended: str | None) -> DltError:
    """The one line for a run that is no longer running."""
    how = f"exit {code}" if code is not None else "exit unknown"
    when = f" at {ended}" if ended else ""
    return DltError(f"run {run_id} ended ({how}){when}; nothing to exec into; "
                    f"`inv logs {run_id}` shows its output", code=NOTHING)


def ended_from_records(records: Sequence[RunRecord], run: str, host: str) -> DltError | None:
    """The ended-run line for ``run`` (an id or the start of one) when it names exactly one
    record of ``host`` whose container is gone (so the engine no longer lists it)."""
    mine = [m for m in records if m.host == host and m.slurm is None and m.run_id
            and (m.run_id == run or m.run_id.startswith(run))]
    exact = [m for m in mine if m.run_id == run]
    found = exact or mine
    if len(found) != 1:
        return None
    m = found[0]
    return ended_error(m.run_id, m.exit_code, m.ended)


@dataclass(frozen=True)
class NodeChoice:
    """Where a command goes: a job's rank and the host holding it ("" for a plain run)."""

    rank: int | None
    host: str
    note: str = ""     # said on stderr (no --node given for a job: node 0)


def choose_node(run_id: str, runs: Sequence[RunInfo], node: int | None) -> NodeChoice:
    """The node of the run whose containers on this engine are ``runs`` to exec into."""
    parts = [r for r in runs if r.node]
    if not parts:
        if node not in (None, 0):
            raise DltError(f"run {run_id} is not a job across hosts: it has no node {node}; "
                           "leave out --node", code=NOTHING)
        return NodeChoice(None, "")
    hosts = parts[0].nodes.split(",")
    if node is None:
        return NodeChoice(0, hosts[0], f"dlt: job {run_id} has {len(hosts)} nodes: exec goes "
                                       f"into node 0 on {hosts[0]} (--node K for another)")
    if not 0 <= node < len(hosts):
        raise DltError(f"job {run_id} has nodes 0 to {len(hosts) - 1} "
                       f"({', '.join(hosts)}), not {node}: pick one with --node K", code=NOTHING)
    return NodeChoice(node, hosts[node])


def node_container(runs: Sequence[RunInfo], run_id: str, rank: int, host: str,
                   record: str) -> RunInfo:
    """Node ``rank``'s container among a host's containers of the job (its record label, as
    `stop` matches them: no one else's run of that id)."""
    mine = [r for r in runs if r.run_id == run_id and r.node == str(rank)
            and r.record == record]
    if len(mine) > 1:  # hosts sharing one engine: the host label tells them apart
        mine = [r for r in mine if r.host == host] or mine
    if not mine:
        raise DltError(f"node {rank} of job {run_id} has no container on {host}'s engine: "
                       f"it has ended; `inv logs {run_id} --node {rank}` on {host} shows what "
                       "it left", code=NOTHING)
    return mine[0]


def exec_engine_run(target: Target, info: RunInfo, argv: Sequence[str], *, tty: bool,
                    use_stdin: bool = True) -> int:
    """``argv`` (empty: a shell) in the engine run ``info``, which must still be running; a
    run that ends before or while we get in (the engine's 404/409) says so in one line.
    ``use_stdin`` off: the command reads /dev/null."""
    if info.status != "running":
        raise _not_running(target, info)
    try:
        return exec_in(target.engine, info.container_id, list(argv) or list(DEFAULT_SHELL),
                       tty=tty, grace_s=target.settings.stop_timeout, use_stdin=use_stdin)
    except EngineError as e:
        if e.status not in GONE:
            raise
        raise _not_running(target, info) from None


def _not_running(target: Target, info: RunInfo) -> DltError:
    """The one line for a run's container that is not running: paused or not started yet
    (it may run again), else ended (gone: what the listing knew)."""
    try:
        state = target.engine.inspect_container(info.container_id).get("State") or {}
    except EngineError:
        state = {}
    status = state.get("Status", info.status if state else "exited")
    if status in ("paused", "created", "restarting"):
        what = "paused" if status == "paused" else "not running yet (" + status + ")"
        return DltError(f"run {info.run_id} is {what}: nothing to exec into now; "
                        f"`inv ps` shows its state", code=NOTHING)
    return ended_error(info.run_id, state.get("ExitCode", info.exit_code), ended_at(state))


# -- Slurm ---------------------------------------------------------------------------------


def slurm_container(record: RunRecord, project: str) -> str:
    """The name the batch script gave the run's containers (node K's: ``NAME-nK`` for the
    docker runtime); a record from before it was kept: the name that script gave."""
    assert record.slurm is not None
    return record.slurm.container or f"dlt-{project}-{record.run_id}"


def node_of_rank(hostnames: Sequence[str], rank: int, job_id: str) -> str:
    """Rank ``rank``'s node: Slurm numbers a job's nodes (SLURM_NODEID) in the order
    ``scontrol show hostnames`` lists its allocation."""
    names = [h for h in hostnames if h.strip()]
    if not names:
        raise DltError(f"Slurm job {job_id} has no nodes now (it is not running): nothing to "
                       "exec into", code=NOTHING)
    if not 0 <= rank < len(names):
        raise DltError(f"Slurm job {job_id} has nodes 0 to {len(names) - 1} "
                       f"({', '.join(names)}), not {rank}: pick one with --node K",
                       code=NOTHING)
    return names[rank]


def step_id(squeue_steps: str, name: str) -> str:
    """The id (``JOB.STEP``) of the job's running step named ``name`` among ``squeue -s -o
    '%i %j'``'s lines: the first such step (the batch script's head-address step has ended
    by then; a later one of that name is someone's ``srun --overlap``); "" when none runs."""
    found = []
    for line in squeue_steps.splitlines():
        sid, _, sname = line.strip().partition(" ")
        number = sid.rpartition(".")[2]
        if sname == name and number.isdigit():
            found.append((int(number), sid))
    return min(found)[1] if found else ""


def steps_command(job_id: str) -> str:
    """The shell line listing a job's running steps: ``ID NAME`` a line."""
    return f"squeue -h -s -j {quote([job_id])} -o '%i %j'"


@dataclass(frozen=True)
class SlurmSpot:
    """Where a command goes in a Slurm run: the container of rank ``rank`` on ``node``.
    docker: ``container`` is the wrapper's name (``NAME-nK`` there). pyxis: the unnamed
    container of step ``step`` (``JOB.STEP``), which pyxis names by that step, so
    ``--container-name=JOB.STEP:exec`` joins it; it starts in ``workdir`` with the variables
    of ``env_file`` (on the login host), as the job's step did."""

    node: str
    rank: int
    container: str = ""
    step: str = ""
    workdir: str = ""
    env_file: str = ""


#: ``sh -c`` program run in the node's container after an interrupted exec: signal $3 to the
#: processes marked $1 now (:data:`MARKER_KILL`, given as $0), and SIGKILL those left after
#: $2 seconds, from the background (this exec carries no marker: it never signals itself).
_END = ('sh -c "$0" sh "$3" "$1"; '
        '(sleep "$2"; sh -c "$0" sh KILL "$1") </dev/null >/dev/null 2>&1 &')

#: ``sh -c`` program on the login host that starts srun (``$2...``) with the run's variables
#: (``$1``, the run's 0600 file of ``export`` lines, as the batch script sourced it: pyxis
#: hands the task srun's environment, with the image's own on top), so that no value is on a
#: command line; no file (a run without variables): srun as it is.
_WITH_ENV = 'f=$1; shift; if [ -f "$f" ]; then . "$f" || exit 125; fi; exec "$@"'

#: ``sh -c`` program on the login host that ends an interrupted exec's step under pyxis
#: (``$1``: the job, ``$2``: the step's name, ``$3``: the signal, ``$4``: the grace): the
#: signal to every process of the step now, SIGKILL after the grace, from the background;
#: nothing when the step has ended (srun's Ctrl-C ended it).
_SCANCEL = ('s=$(squeue -h -s -j "$1" -o "%i %j" | awk -v n="$2" \'$2 == n {print $1}\'); '
            '[ -n "$s" ] || exit 0; scancel --signal="$3" "$s" 2>/dev/null; '
            '(sleep "$4"; scancel --signal=KILL "$s" 2>/dev/null) </dev/null >/dev/null 2>&1 &')


def exec_step_name(marker: str) -> str:
    """The name of an exec's own ``srun --overlap`` step under pyxis: how it is found to end."""
    return f"dlt-exec-{marker}"


def _step(slurm: SlurmInfo, node: str) -> list[str]:
    """``srun`` for one task beside the job's own on ``node`` (one Ctrl-C ends it)."""
    return ["srun", f"--jobid={slurm.job_id}", "--overlap", "--quit-on-interrupt",
            "--nodes=1", "--ntasks=1", f"--nodelist={node}"]


def cannot_enter(record: RunRecord, node: str) -> DltError:
    """The one line for a Slurm run whose container dltasks cannot join: apptainer (no
    instance), or pyxis in a record from before dltasks named the job's step."""
    assert record.slurm is not None
    slurm = record.slurm
    beside = f"`srun --jobid {slurm.job_id} --overlap --nodelist={node}"
    if (slurm.runtime or "docker") == "pyxis":
        return DltError(f"run {record.run_id} runs under pyxis on Slurm in a step that an older "
                        "dltasks did not name, so its container cannot be found; a shell "
                        f"beside it on its node in the same image: {beside} --container-image="
                        f"{record.image or 'IMAGE'} --pty bash` (its mounts: the "
                        f"--container-mounts of runs/{record.run_id}/job.sbatch)", code=NOTHING)
    return DltError(f"run {record.run_id} runs under apptainer on Slurm: dltasks names no "
                    f"apptainer instance to enter; a shell beside it on its node: {beside} "
                    "--pty bash` (add `apptainer shell IMAGE` for a fresh container of its "
                    "image)", code=NOTHING)


def _pyxis_into(spot: SlurmSpot) -> list[str]:
    return [f"--container-name={spot.step}:exec",
            *([f"--container-workdir={spot.workdir}"] if spot.workdir else [])]


def srun_exec_argv(record: RunRecord, spot: SlurmSpot, argv: Sequence[str], *, tty: bool,
                   marker: str = "") -> list[str]:
    """The line that runs ``argv`` in the run's container at ``spot`` through ``srun
    --overlap``, findable by ``marker``: docker: its processes carry :data:`MARKER`; pyxis:
    its step is named :func:`exec_step_name`."""
    assert record.slurm is not None
    slurm = record.slurm
    cmd = list(argv) or list(DEFAULT_SHELL)
    step = _step(slurm, spot.node) + (["--pty"] if tty else [])
    runtime = slurm.runtime or "docker"
    if runtime == "docker":
        env = ["-e", f"{MARKER}={marker}"] if marker else []
        return [*step, "docker", "exec", "-i", *(["-t"] if tty else []), *env,
                f"{spot.container}-n{spot.rank}", *cmd]
    if runtime == "pyxis" and spot.step:
        name = [f"--job-name={exec_step_name(marker)}"] if marker else []
        return ["sh", "-c", _WITH_ENV, "dlt-exec", spot.env_file, *step, *name,
                *_pyxis_into(spot), *cmd]
    raise cannot_enter(record, spot.node)


def srun_end_argv(record: RunRecord, spot: SlurmSpot, marker: str, sig: str,
                  grace_s: float) -> list[str]:
    """What ends an interrupted exec's processes at ``spot``: ``sig`` now, SIGKILL after
    ``grace_s`` to what is left. docker: a second ``srun --overlap`` signals the processes
    marked ``marker`` in the container (srun ends its own step, the docker CLI, not what
    ``docker exec`` started there). pyxis: the command's processes are its step's, but that
    step outlives a lost srun (an SSH channel closed under it): ``scancel`` signals it."""
    assert record.slurm is not None
    grace = str(max(1, math.ceil(grace_s)))
    if spot.step:
        return ["sh", "-c", _SCANCEL, "dlt-end", record.slurm.job_id, exec_step_name(marker),
                sig, grace]
    return [*_step(record.slurm, spot.node), "docker", "exec", f"{spot.container}-n{spot.rank}",
            "sh", "-c", _END, MARKER_KILL, marker, grace, sig]


def hostnames_command(job_id: str) -> str:
    """The shell line listing a job's nodes in rank order; nothing when it has none now
    (``scontrol show hostnames ""`` would list $SLURM_JOB_NODELIST: another job's nodes
    when we run inside an allocation)."""
    return (f"n=$(squeue -h -j {quote([job_id])} -o %N) && [ -n \"$n\" ] && "
            "scontrol show hostnames \"$n\"")


def _spot(target: Target, record: RunRecord, rank: int) -> SlurmSpot:
    """Where rank ``rank``'s container of the running Slurm run ``record`` is now; pyxis:
    one ``true`` in it first, so that a container not running yet is one line."""
    slurm = record.slurm
    assert slurm is not None
    r = target.shell.run(hostnames_command(slurm.job_id))
    node = node_of_rank(r.stdout.split() if r.ok else [], rank, slurm.job_id)
    if (slurm.runtime or "docker") == "docker":
        return SlurmSpot(node, rank, container=slurm_container(record, target.settings.project))
    assert slurm.container  # pyxis with a named step (cannot_enter said the rest)
    r = target.shell.run(steps_command(slurm.job_id))
    if not r.ok:
        raise DltError(f"squeue{target.on_host} could not list the steps of Slurm job "
                       f"{slurm.job_id}: {r.tail(1)}")
    step = step_id(r.stdout, slurm.container)
    later = (f"nothing to exec into now; `{target.task_command('logs')} {record.run_id} "
             "--follow` shows where it is")
    if not step:
        raise DltError(f"Slurm job {slurm.job_id} of run {record.run_id} runs no step "
                       f"{slurm.container!r} now (it starts once the head node's address is "
                       f"known): {later}", code=NOTHING)
    spot = SlurmSpot(node, rank, step=step, workdir=slurm.workdir or "",
                     env_file=posixpath.join(slurm.run_dir, ENV_FILE) if slurm.run_dir else "")
    check = target.shell.run([*_step(slurm, node), "--job-name=dlt-exec-check",
                              *_pyxis_into(spot), "true"])
    if not check.ok:
        said = " ".join(check.stderr.split())
        if "is not running" in said:
            raise DltError(f"node {rank}'s container of run {record.run_id} ({node}, step "
                           f"{step}) is not running (pyxis is still making it, or the site "
                           f"runs pyxis with squashfuse, whose containers cannot be joined): "
                           f"{later}", code=NOTHING)
        raise DltError(f"pyxis could not join node {rank}'s container of run {record.run_id} "
                       f"({node}, step {step}): {check.tail(1)}")
    return spot


def exec_slurm_run(target: Target, record: RunRecord, node: int | None, argv: Sequence[str],
                   *, tty: bool, use_stdin: bool = True) -> int:
    """``argv`` in a running Slurm run's container on node ``node`` (None: 0), through the
    login host's shell."""
    from dltasks.runs.slurm import settle_slurm

    assert record.slurm is not None
    s = target.settings
    record = settle_slurm(target, s.project_dir, record)
    if record.exit_code is not None:
        raise ended_error(record.run_id, record.exit_code, record.ended)
    slurm = record.slurm
    assert slurm is not None
    if record.status != "running":
        state = f"{record.status}, not running" if record.status else "not running"
        raise DltError(f"Slurm job {slurm.job_id} of run {record.run_id} is {state}: nothing "
                       f"to exec into yet; `{target.task_command('logs')} {record.run_id} "
                       "--follow` waits for it",
                       code=NOTHING)
    runtime = slurm.runtime or "docker"
    if runtime == "apptainer" or (runtime == "pyxis" and not slurm.container):
        raise cannot_enter(record, "NODE")
    rank = 0 if node is None else node
    if node is None and slurm.nodes > 1:
        print(f"dlt: Slurm job {slurm.job_id} has {slurm.nodes} nodes: exec goes into node 0 "
              "(--node K for another)", file=sys.stderr, flush=True)
    spot = _spot(target, record, rank)
    marker = os.urandom(8).hex()
    try:
        return target.run_attached(srun_exec_argv(record, spot, argv, tty=tty, marker=marker),
                                   tty=tty, use_stdin=use_stdin)
    except CutShort as e:
        # what the command started in the container may outlive srun: end it by its marker
        sig = "INT" if e.signum == signal.SIGINT else "TERM"
        end = target.shell.run(srun_end_argv(record, spot, marker, sig, s.stop_timeout))
        if not end.ok:
            if spot.step:
                what = f"step {exec_step_name(marker)} of job {slurm.job_id}"
                find = f"squeue -s -j {slurm.job_id}` lists it, `scancel JOB.STEP"
            else:
                what = f"{spot.container}-n{spot.rank}"
                find = (f"{target.task_command('exec')} {record.run_id} --node {rank} -- sh "
                        f"-c 'grep -l {MARKER}={marker} /proc/[0-9]*/environ'")
            print(f"dlt: could not end the command in {what} on {spot.node} "
                  f"({end.tail(1)}); its processes: `{find}`", file=sys.stderr, flush=True)
        return 128 + e.signum
