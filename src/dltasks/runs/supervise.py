"""A started job's life: its nodes started in rank order, their output streamed, the first
failure stopping every other node, and nothing left behind (see :mod:`dltasks.runs.job`).
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING

from dltasks.engine import lifecycle as runner
from dltasks.errors import DltError
from dltasks.gpu import share as gpushare
from dltasks.runs import output as localio
from dltasks.runs import torchrun
from dltasks.runs.record import log_file
from dltasks.settings import Settings

if TYPE_CHECKING:
    from dltasks.runs.job import JobNode


def start_and_supervise(nodes: Sequence[JobNode], local: Settings, *, detach: bool,
                         share: bool, secrets: Sequence[str] = ()) -> int:
    """Start every node (rank order, each under its host's GPU lock), then stream and
    supervise them until the job ends (or, ``detach``, return once all started)."""
    grace = local.stop_timeout
    with contextlib.ExitStack() as stack:
        runs: list[runner.Running] = []
        try:
            for n in nodes:
                assert n.spec is not None and n.access is not None
                # its GPUs, its lock, its engine: whatever refuses, the job never half-runs
                got = stack.enter_context(gpushare.claimed(n.target, n.facts,
                                                           n.access.selection, share=share))
                if detach:
                    try:
                        n.cid = runner.start_detached(n.target, n.spec)
                    finally:
                        got.release()
                    continue
                run = stack.enter_context(runner.container(n.target, n.spec,
                                                           stop_timeout=grace, say=False,
                                                           started=got.release))
                n.cid = run.cid
                runs.append(run)
        except BaseException:
            # All or nothing: the nodes that started are stopped (grace period: they may
            # have begun) and removed, detached or not (attached ones are removed again by
            # their runner.container as the stack unwinds: gone already is fine there).
            undo(nodes, grace)
            raise
        if detach:
            return 0
        return supervise(nodes, runs, local, grace, secrets)


def undo(nodes: Sequence[JobNode], grace: int) -> None:
    """Stop and remove every node's container that was made; the job did not start."""
    made = [n for n in nodes if n.cid]
    if not made:
        return
    _stop_all(made, grace)

    def remove(n: JobNode) -> None:
        with contextlib.suppress(DltError):
            runner.remove(n.target, n.cid)

    with runner.block_interrupts(), ThreadPoolExecutor(
            len(made), thread_name_prefix="dlt-undo") as pool:
        list(pool.map(remove, made))
    for n in made:
        n.why = "removed: another node could not start"


def supervise(nodes: Sequence[JobNode], runs: Sequence[runner.Running], local: Settings,
               grace: int, secrets: Sequence[str] = ()) -> int:
    ended: queue.Queue[tuple[int, int | None, str]] = queue.Queue()
    out_lock = threading.Lock()
    # Each node's output.log (masked) and our stdout: a local write that fails drops that
    # sink with one warning; the job goes on (localio). Our stdout shows the job's own
    # output unmasked: it is the user's terminal, as for a one-host run.
    logs = [localio.open_log(log_file(n.plan.run_dir), secrets) for n in nodes if n.plan]
    job_id = nodes[0].plan.run_id if nodes[0].plan else ""
    out = localio.std_sink("stdout")
    out.run_id = job_id
    out.others = [sink for sink, _ in logs if sink is not None]
    for sink, _ in logs:
        if sink is not None:
            sink.others, sink.run_id = [out], job_id
    threads = []
    for n, run, (log, _) in zip(nodes, runs, logs, strict=True):
        t = threading.Thread(target=_follow, args=(n, run, log, out, out_lock, ended),
                             daemon=True, name=f"dlt-node{n.rank}")
        t.start()
        threads.append(t)
    first: JobNode | None = None
    try:
        left = len(nodes)
        while left:
            rank, code, why = _next(ended)
            left -= 1
            n = nodes[rank]
            n.code = code
            if first is None and (code != 0 or why):
                first = n
                n.first = True
                n.why = why or f"exited with code {code}"
                _say(out_lock, f"dlt: node {rank} ({n.name}) {n.why}: stopping the other "
                     f"node(s) (up to {grace}s)")
                _stop_all(nodes, grace, but=rank)
    except runner.INTERRUPTS:
        _say(out_lock, f"\ndlt: interrupted, stopping the job on every node (up to {grace}s)")
        _stop_all(nodes, grace)
        for t in threads:
            t.join(timeout=grace + 10)
        for n in nodes:
            n.why = n.why or "stopped (Ctrl-C)"
        return runner.INTERRUPTED
    finally:
        for sink, file in logs:
            localio.close_log(sink, file)
    if first is None:
        return 0
    if first.code is None:  # its host is out of reach: its container may still run there
        stop = first.target.task_command(f"stop {first.plan.run_id if first.plan else ''}")
        _say(out_lock, f"dlt: node {first.rank}'s container on {first.name} may still run: "
             f"stop it with `{stop}` once the host answers")
        return 255
    return first.code or 1


def _next(ended: queue.Queue[tuple[int, int | None, str]]) -> tuple[int, int | None, str]:
    while True:  # a timeout, so that Ctrl-C reaches the main thread
        with contextlib.suppress(queue.Empty):
            return ended.get(timeout=0.5)


def _follow(n: JobNode, run: runner.Running, log: localio.Sink | None, out: localio.Sink,
            out_lock: threading.Lock, ended: queue.Queue[tuple[int, int | None, str]]) -> None:
    """Stream node ``n``'s output with its prefix until it ends; report its exit code."""
    nproc = _nproc_of(n)
    prefix = f"[{n.name} node {n.rank}] ".encode()
    pending = b""
    why = ""
    try:
        for _, data in runner.frames_of(run.stream):
            if log is not None:
                with out_lock:  # one lock: a lost sink's warning is not torn by another's
                    log.write(data)
            pending += data
            *lines, pending = pending.split(b"\n")
            if lines:
                _emit(out_lock, out, [_prefixed(ln, n, nproc, prefix) for ln in lines])
        if pending:
            _emit(out_lock, out, [_prefixed(pending, n, nproc, prefix)])
        code: int | None = n.target.engine.wait(run.cid)
    except DltError as e:
        code, why = None, f"lost: {e.message}"
    except OSError as e:
        code, why = None, f"lost its stream ({e})"
    if code is None and not why:
        why = "lost"
    if not n.target.is_alive():
        code, why = None, f"lost the SSH connection to {n.name}"
    ended.put((n.rank, code, why))


def _nproc_of(n: JobNode) -> int:
    cmd = n.spec.command if n.spec else ()
    for a in cmd:
        if a.startswith("--nproc-per-node="):
            return int(a.split("=", 1)[1])
    return 1


def _prefixed(line: bytes, n: JobNode, nproc: int, prefix: bytes) -> bytes:
    rank, text = torchrun.rank_prefix(line, n.rank, nproc)
    if rank is None:
        return prefix + line + b"\n"
    return f"[{n.name} rank {rank}] ".encode() + text + b"\n"


def _emit(lock: threading.Lock, out: localio.Sink, lines: Sequence[bytes]) -> None:
    with lock:
        out.write(b"".join(lines))


def _say(lock: threading.Lock, text: str) -> None:
    with lock:
        localio.warn(text)  # a stderr that cannot be written must not stop the supervision


def _stop_all(nodes: Sequence[JobNode], grace: int, but: int = -1) -> None:
    """Stop every node's container but ``but``'s, at once (each on its own engine link)."""
    def stop(n: JobNode) -> None:
        from dltasks.engine.client import open_engine

        with contextlib.suppress(DltError):
            engine = open_engine(n.target.engine_addr)
            try:
                engine.stop(n.cid, timeout=grace)
            finally:
                engine.close()

    others = [n for n in nodes if n.rank != but and n.cid]
    if others:
        with ThreadPoolExecutor(len(others), thread_name_prefix="dlt-stop") as pool:
            list(pool.map(stop, others))
        for n in others:
            n.why = n.why or "stopped by dltasks"
