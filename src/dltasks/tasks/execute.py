"""`exec RUN [--node K] [-- CMD...]`: a command inside a RUNNING run's container."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any

from invoke.exceptions import Exit

from dltasks.tasks._common import (
    command_after,
    dlt_task,
    job_targets,
    settings_for,
    target_for,
)


@dlt_task(takes_command=True, help={
    "node": "A job's node (its rank) to exec into; default 0. Also a Slurm run's node.",
    "cmd": "The command as one string, run by sh -c: the way to give it with fab, which "
           "takes no words after -- with a task.",
    "no_stdin": "The command reads /dev/null, not dlt's stdin (like ssh -n): for exec in a "
                "loop reading a file; no tty then.",
})
def exec(c: Any, run: str, node: int = -1, cmd: str = "", no_stdin: bool = False) -> None:
    """Run a command (default: an interactive shell) inside a RUNNING run's container, as the
    run's user, in its working folder, with its environment; its exit code is dlt's:
    `exec RUN -- nvidia-smi` (with fab: `fab -H gpu1 exec RUN --cmd 'nvidia-smi'`). A tty
    when dlt has one (Ctrl-C goes to the command); without, Ctrl-C ends the command, never
    the run (a second Ctrl-C kills it). RUN: its id, or the start of one of your runs' ids;
    never another user's run. VS Code (Attach to Running Container): see
    docs/interactive.md, "Editors and the docker CLI"."""
    from dltasks.engine.attach import is_terminal
    from dltasks.errors import DltError
    from dltasks.runs.execute import choose_node, exec_engine_run, exec_slurm_run
    from dltasks.runs.listing import NoSuchRun, resolve_run

    words = command_after(c)
    if words and cmd:
        raise DltError("exec takes its command once: after -- or as --cmd '...', not both",
                       code=2)
    use_stdin = not no_stdin
    tty = is_terminal(use_stdin)
    rank = None if node < 0 else node
    with target_for(c) as target:
        argv = _mapped(c, target, ["sh", "-c", cmd] if cmd else words or ())
        try:
            found = resolve_run(target, run)
        except NoSuchRun as e:  # not an ambiguous prefix: that line stands as it is
            raise _ended_instead(target, run) or e from None
        if found.record is not None:
            code = exec_slurm_run(target, found.record, rank, argv, tty=tty,
                                  use_stdin=use_stdin)
        else:
            rid = found.candidate.run_id
            if not found.candidate.mine:
                # its container holds the other user's environment (their tokens, keys) and
                # files: stop may end another's run by its full id, exec never enters one
                raise DltError(f"run {rid} is {found.candidate.owner}'s: exec enters only "
                               "your own runs (another's holds their environment and "
                               "secrets); ask them, or see your runs with `inv ps`", code=2)
            choice = choose_node(rid, found.runs, rank)
            if choice.note:
                print(choice.note, file=sys.stderr, flush=True)
            if choice.rank is None:
                code = exec_engine_run(target, found.runs[0], argv, tty=tty,
                                       use_stdin=use_stdin)
            else:
                code = _exec_node(c, target, found.runs, choice.rank, choice.host, argv,
                                  tty=tty, use_stdin=use_stdin)
    if code:
        raise Exit(code=code)


def _ended_instead(target: Any, run: str) -> Any:
    """The "run X ended" line when ``run`` names no run of yours on the engine but one record
    of this host (its container removed); else None (the lookup's own error stands). Only
    for "no such run": several live runs matching a prefix keep their own line."""
    from dltasks.runs.execute import ended_from_records
    from dltasks.runs.listing import find_runs
    from dltasks.runs.record import list_runs

    s = target.settings
    try:
        live = {r.run_id for r in find_runs(target, project=s.project)}
    except Exception:  # no engine answers: the lookup's own error says so
        return None
    records = [m for m in list_runs(s.project_dir) if m.run_id not in live]
    return ended_from_records(records, run, target.name)


def _exec_node(c: Any, target: Any, runs: Sequence[Any], rank: int, host: str,
               argv: Sequence[str], *, tty: bool, use_stdin: bool) -> int:
    """Node ``rank`` of a job: on its own host's engine (this target's when it is that host,
    or the job is on this machine alone), else through that host's target."""
    from dltasks.runs.execute import exec_engine_run, node_container
    from dltasks.runs.listing import find_runs

    first = next(r for r in runs if r.node)
    rid = first.run_id
    if host == target.name:  # this machine's target is named "local", as its jobs' nodes
        info = node_container(runs, rid, rank, host, first.record)
        return exec_engine_run(target, info, argv, tty=tty, use_stdin=use_stdin)
    with job_targets(c, [host]) as [there]:
        there_runs = find_runs(there, project=there.settings.project, run_id=rid)
        info = node_container(there_runs, rid, rank, host, first.record)
        return exec_engine_run(there, info, argv, tty=tty, use_stdin=use_stdin)


def _mapped(c: Any, target: Any, argv: Sequence[str]) -> list[str]:
    """``argv`` with laptop/host paths under a mounted root written as the container sees
    them, as train's command is (the path map of today's settings for this host); other
    paths (the container's own, /proc ...) stay as written."""
    if not argv:
        return []
    from dltasks.paths.scan import map_args
    from dltasks.runs.plan import build_pathmap

    local = settings_for(c, host_layer=False) if target.syncs_project else target.settings
    pathmap = build_pathmap(local, target.settings, target.host_project_dir, target.host_home)
    return map_args(argv, pathmap)[0]
