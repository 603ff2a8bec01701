"""The warm start's server: imports the run path once, then forks a worker per command.

``python -m dltasks.warmserver SOCKET [IDLE_SECONDS]`` (started by
:func:`dltasks.warm.run_warm`). See :mod:`dltasks.warm` for what a client sends. The server
is single-threaded, so a fork is a plain copy of an idle interpreter. Each worker becomes the
client's stand-in (its stdio, folder, environment, umask, argv), runs the command with
invoke's Program as ``dlt`` would, and reports its exit code once everything at exit has run.
A worker killed by a signal reports nothing: the server, its parent, reaps it and sends its
client 128+N, as a shell would say (a worker puts SIGCHLD back to the default, or its
subprocesses' exit codes would be lost).
"""

from __future__ import annotations

import atexit
import gc
import io
import marshal
import os
import signal
import socket
import struct
import sys
import threading
from typing import Any

from dltasks.warm import _CODE, _STARTED, FORWARDED, IDLE_S

#: The modules a run and the listing tasks need, imported once by the server.
PRELOAD = ("dltasks.cli", "dltasks.gpu.modes", "dltasks.runs.single", "dltasks.hosts.target",
           "dltasks.gpu.share", "dltasks.engine.lifecycle", "dltasks.runs.listing",
           "dltasks.runs.record",
           "dotenv")


class _Work(BaseException):
    """Raised in a freshly forked worker to leave the server's loop (and its frames)."""

    def __init__(self, conn: socket.socket, request: dict[str, Any], fds: list[int]) -> None:
        self.conn, self.request, self.fds = conn, request, fds


def serve(path: str, idle: float = IDLE_S) -> None:
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    # what is imported stays put: no collection in a worker walks (and so copies) the
    # server's pages; each worker starts from a frozen heap
    gc.collect()
    gc.freeze()
    signal.signal(signal.SIGCHLD, _reap)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.chdir("/")  # not the first client's folder, which a test or a user may delete
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    part = f"{path}.{os.getpid()}"
    listener.bind(part)
    listener.listen(64)
    os.rename(part, path)  # whole or not there: a client never meets a half-made server
    mine, server = os.stat(path).st_ino, os.getpid()
    listener.settimeout(idle)
    try:
        while True:
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                if _WORKERS:  # still running: who else would tell their clients a signal?
                    continue
                return
            _serve_one(listener, conn)
    finally:
        if os.getpid() == server and _still_ours(path, mine):  # not in a worker leaving
            os.unlink(path)


def _still_ours(path: str, ino: int) -> bool:
    try:
        return os.stat(path).st_ino == ino
    except OSError:
        return False


def _serve_one(listener: socket.socket, conn: socket.socket) -> None:
    conn.settimeout(5)
    try:
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                  struct.calcsize("3i")))[1]
        if uid != os.getuid():
            raise ValueError("another user")
        request, fds = _receive(conn)
    except (OSError, ValueError, EOFError, TypeError):
        conn.close()
        return
    conn.settimeout(None)
    # no reaping between the fork and the worker's entry in _WORKERS
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
    try:
        pid = os.fork()
        if pid == 0:
            listener.close()
            for other in _WORKERS.values():  # other clients' connections are not the worker's
                other.close()
            _WORKERS.clear()
            raise _Work(conn, request, fds)
        _WORKERS[pid] = conn  # kept: the worker's end, should it die with no word
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
    for fd in fds:
        os.close(fd)


#: The running workers (pid) and their clients' connections, for :func:`_reap`.
_WORKERS: dict[int, socket.socket] = {}


def _reap(_signum: int = 0, _frame: Any = None) -> None:
    """SIGCHLD: collect ended workers. One killed by signal N (it could not say so itself)
    gets 128+N sent to its client; one that exited has said its code already (the client
    reads the first one only)."""
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = _WORKERS.pop(pid, None)
        if conn is None:
            continue
        try:
            if os.WIFSIGNALED(status):
                conn.sendall(_CODE.pack(128 + os.WTERMSIG(status)))
        except OSError:
            pass
        finally:
            conn.close()


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, ancillary, _, _ = conn.recvmsg(1 << 16, socket.CMSG_SPACE(3 * 4))
    fds: list[int] = []
    for level, kind, payload in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds += struct.unpack(f"{len(payload) // 4}i", payload[:len(payload) // 4 * 4])
    try:
        if len(fds) != 3 or len(data) < _CODE.size:
            raise ValueError("not a dlt request")
        size = _CODE.unpack_from(data)[0]
        while len(data) < _CODE.size + size:
            more = conn.recv(_CODE.size + size - len(data))
            if not more:
                raise EOFError
            data += more
        request = marshal.loads(data[_CODE.size:])
        if not isinstance(request, dict):
            raise ValueError("not a dlt request")
    except BaseException:
        for fd in fds:
            os.close(fd)
        raise
    return request, fds


# -- the worker -----------------------------------------------------------------------------


def work(job: _Work) -> None:
    """Become the client's stand-in and run its command; never returns (SystemExit)."""
    conn, req = job.conn, job.request
    # what the client ignores (nohup: SIGHUP) stays ignored here, as in a cold `dlt`
    ignored = set(req.get("ignored", ()))
    for sig in (signal.SIGCHLD, signal.SIGHUP, signal.SIGTERM, *FORWARDED):
        signal.signal(sig, signal.SIG_IGN if sig in ignored else signal.SIG_DFL)
    if signal.SIGINT not in ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    os.setpgid(0, 0)  # a group of our own: forwarded signals reach our children, as a tty's
    for i, fd in enumerate(job.fds):
        os.dup2(fd, i)
        os.close(fd)
    modes = ("r", "w", "w")
    sys.stdin, sys.stdout, sys.stderr = (_stream(i, modes[i], req["stdio"][i])
                                         for i in range(3))
    os.environ.clear()
    os.environ.update(req["env"])
    os.umask(req["umask"])
    os.chdir(req["cwd"])
    sys.argv = list(req["argv"])
    done = threading.Event()
    threading.Thread(target=_forward, args=(conn, done, ignored), daemon=True,
                     name="dlt-warm-signals").start()
    atexit.register(_report, conn, done)  # registered first: runs last, after the run's own
    conn.sendall(_STARTED)
    _EXIT[0] = code = _run(sys.argv)
    sys.exit(code)


_EXIT = [1]


def _run(argv: list[str]) -> int:
    from dltasks.cli import program
    from dltasks.tasks.run import start_early

    start_early(argv)  # a GPU run's facts script, started before invoke parses the command
    try:
        program.run(argv)
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


#: Set while the worker's output may flow; cleared while its client is stopped (Ctrl-Z).
_FLOWING = threading.Event()
_FLOWING.set()


class _HeldIO(io.FileIO):
    """Standard output or error, held while the client is stopped."""

    def write(self, data: Any, /) -> int:
        _FLOWING.wait()
        return super().write(data)


def _stream(fd: int, mode: str, how: tuple[str, str, bool, bool] | None) -> Any:
    if how is None:
        return None
    encoding, errors, line_buffering, write_through = how
    raw = io.FileIO(fd, mode, closefd=False) if mode == "r" else _HeldIO(fd, mode, closefd=False)
    # write-through is how Python sets up an unbuffered stdout/stderr (-u, PYTHONUNBUFFERED):
    # then the text layer writes to the file itself, with no buffer in between
    buffered: Any = (io.BufferedReader(raw) if mode == "r" else raw if write_through
                     else io.BufferedWriter(raw))
    return io.TextIOWrapper(buffered, encoding=encoding, errors=errors,
                            line_buffering=line_buffering, write_through=write_through)


def _forward(conn: socket.socket, done: threading.Event, ignored: set[int]) -> None:
    """Signals the client was sent, to our process group; the client gone (killed, its
    terminal closed) is a SIGHUP, as a terminal that closes sends one. The client stopped
    (SIGTSTP: Ctrl-Z) holds our output until it goes on (SIGCONT); any other signal, or the
    client gone, lets it flow again (the run must be able to say it stops). A signal the
    client ignores is never sent (nohup: a client gone is no hang-up)."""
    while True:
        try:
            data = conn.recv(64)
        except OSError:
            data = b""
        for sig in data or bytes([signal.SIGHUP]):
            if sig == signal.SIGTSTP:
                _FLOWING.clear()
                continue
            _FLOWING.set()
            if sig != signal.SIGCONT and sig not in ignored and not done.is_set():
                os.killpg(os.getpgrp(), sig)
        if not data:
            return


def _report(conn: socket.socket, done: threading.Event) -> None:
    """The exit code to the client, once all else at exit has run; then let go of its
    stdio, so that a reader of our output sees its end now, not when this process is gone."""
    done.set()
    for s in (sys.stdout, sys.stderr):
        try:
            if s is not None:
                s.flush()
        except (OSError, ValueError):
            pass
    null = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    try:
        conn.sendall(_CODE.pack(_EXIT[0]))
        conn.close()
    except OSError:
        pass


def main() -> None:
    try:
        serve(sys.argv[1], float(sys.argv[2]) if len(sys.argv) > 2 else IDLE_S)
    except _Work as job:
        work(job)


if __name__ == "__main__":
    main()
