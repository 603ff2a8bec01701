"""A command in a RUNNING container (`exec`), over the engine API alone.

The same code serves a local engine and a host's engine reached through the SSH forward its
target owns: it is given an :class:`~dltasks.engine.api.Engine` and a container. The process
runs as the container's user, in its working folder, with its environment (an exec inherits
the container's), and its exit code is handed back.

With a tty (``tty``: our stdin and stdout are terminals) our terminal goes raw, so Ctrl-C is a
byte for the process in the container, and window-size changes are passed on, as
:mod:`dltasks.engine.tty` does for `shell`. Without one, stdin, stdout and stderr are streamed
plainly and Ctrl-C ends the exec'd process.

The engine does not end an exec'd process when its client goes away, so whatever way we end
early (Ctrl-C, SIGTERM/SIGHUP, a lost connection) the process is ended by us: every exec
carries a marker variable (:data:`MARKER`, a fresh random value), and a second exec signals
the processes whose environment holds it (the exec's own ``Pid`` is the host's pid, unknown
inside the container). Its children inherit the marker, so none of them is left either.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import struct
import sys
import time
from collections.abc import Iterator, Sequence
from typing import Any

from dltasks.engine.api import Engine, EngineError, Stream
from dltasks.errors import DltError

#: The variable naming one exec's processes (value: random hex), so they can be ended.
MARKER = "DLT_EXEC_ID"
#: What Ctrl-C (no tty) gives back, as a shell does.
INTERRUPTED = 130
#: The interactive shell asked for when no command is given: bash where the image has it.
DEFAULT_SHELL = ("sh", "-c", "command -v bash >/dev/null && exec bash || exec sh")

#: ``sh -c`` program for the second exec: signal $1 to every process whose environment holds
#: MARKER=$2 (read from /proc: no ps needed in the image).
_SIGNAL = ('for p in /proc/[0-9]*; do '
           f'case "$(tr "\\000" "\\n" < "$p/environ" 2>/dev/null)" in *"{MARKER}=$2"*) '
           'kill -s "$1" "${p#/proc/}" 2>/dev/null;; esac; done; true')
MARKER_KILL = _SIGNAL  # the same program, for an exec that reaches the container otherwise

_HEADER = struct.Struct(">BxxxL")  # stream (1 stdout, 2 stderr), 3 pad bytes, length


class Demux:
    """The framed stdout/stderr of an exec without a tty, cut as bytes arrive."""

    def __init__(self) -> None:
        self.buf = bytearray()

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """(stream id, payload) of every whole frame now buffered."""
        self.buf += data
        out = []
        while len(self.buf) >= _HEADER.size:
            stream_id, length = _HEADER.unpack_from(self.buf)
            end = _HEADER.size + length
            if len(self.buf) < end:
                break
            if length:
                out.append((stream_id, bytes(self.buf[_HEADER.size:end])))
            del self.buf[:end]
        return out


class _Ended(Exception):
    """SIGTERM or SIGHUP while attached: end the exec'd process, then go."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def _signals_end() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`_Ended` here (one that is ignored stays ignored)."""

    def raise_(signum: int, frame: Any) -> None:
        raise _Ended(signum)

    old = {}
    for sig in (signal.SIGTERM, signal.SIGHUP):
        if signal.getsignal(sig) == signal.SIG_IGN:
            continue
        with contextlib.suppress(ValueError):  # not the main thread
            old[sig] = signal.signal(sig, raise_)
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    import termios
    import tty

    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def exec_config(argv: Sequence[str], *, tty: bool, user: str, workdir: str,
                marker: str) -> dict[str, Any]:
    """The body of ``POST /containers/{id}/exec``: the container's user and folder, stdin
    attached, the marker variable added to the container's environment."""
    config: dict[str, Any] = {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
                              "Tty": tty, "Cmd": list(argv), "Env": [f"{MARKER}={marker}"]}
    if user:
        config["User"] = user
    if workdir:
        config["WorkingDir"] = workdir
    return config


def exec_in(engine: Engine, cid: str, argv: Sequence[str], *, tty: bool,
            grace_s: float = 10, user: str = "") -> int:
    """Run ``argv`` in the running container ``cid`` wired to this terminal; its exit code.

    ``grace_s``: how long the process has to end after SIGINT/SIGTERM before SIGKILL.
    ``user``: who runs it instead of the container's user (uid:gid)."""
    info = engine.inspect_container(cid)
    config = info.get("Config") or {}
    user = user or str(config.get("User") or "")
    marker = os.urandom(8).hex()
    eid = engine.exec_create(cid, exec_config(argv, tty=tty, user=user,
                                              workdir=str(config.get("WorkingDir") or ""),
                                              marker=marker))
    stdin_fd, ended = sys.stdin.fileno(), False
    try:
        with _signals_end():
            conn = engine.exec_start(eid, tty=tty)
            try:
                if tty:
                    _attached_tty(engine, eid, conn, stdin_fd)
                else:
                    _attached_plain(conn, stdin_fd)
            finally:
                conn.close()
            ended = True
    except KeyboardInterrupt:  # no tty: Ctrl-C ends the process, never the run
        ended = True
        _end(engine, cid, eid, marker, user, "INT", grace_s)
        return INTERRUPTED
    except _Ended as e:
        ended = True
        _end(engine, cid, eid, marker, user, "TERM", grace_s)
        return 128 + e.signum
    finally:
        if not ended:  # a lost connection, an engine error: leave nothing running
            with contextlib.suppress(DltError, OSError):
                _end(engine, cid, eid, marker, user, "TERM", grace_s)
    return _exit_code(engine, eid)


def _exit_code(engine: Engine, eid: str) -> int:
    """The exec's exit code: the engine may say Running for a moment after the stream ends."""
    deadline = time.monotonic() + 10
    while True:
        state = engine.exec_inspect(eid)
        if not state.get("Running") and state.get("ExitCode") is not None:
            return int(state["ExitCode"])
        if time.monotonic() > deadline:
            return 1
        time.sleep(0.05)


def _end(engine: Engine, cid: str, eid: str, marker: str, user: str, sig: str,
         grace_s: float) -> None:
    """Signal the exec's processes, then KILL what is left after ``grace_s``."""
    for step in (sig, "KILL"):
        if not _running(engine, eid):
            return
        _signal(engine, cid, marker, user, step)
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and _running(engine, eid):
            time.sleep(0.1)


def _running(engine: Engine, eid: str) -> bool:
    try:
        return bool(engine.exec_inspect(eid).get("Running"))
    except EngineError:  # the container (and so the exec) is gone
        return False


def _signal(engine: Engine, cid: str, marker: str, user: str, sig: str) -> None:
    """A second exec, as the same user, signals the processes carrying ``marker``."""
    try:
        config: dict[str, Any] = {"Cmd": ["sh", "-c", _SIGNAL, "sh", sig, marker],
                                  "AttachStdout": True, "AttachStderr": True}
        if user:
            config["User"] = user
        kid = engine.exec_create(cid, config)
        engine.exec_start(kid, tty=False).readall()
    except EngineError:  # the container ended meanwhile: so did the process
        return


def _attached_plain(conn: Stream, stdin_fd: int) -> None:
    """Pump our stdin in and the framed output out until the process ends."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    demux = Demux()

    def write(data: bytes) -> None:
        for stream_id, payload in demux.feed(data):
            dest = err if stream_id == 2 else out
            dest.write(payload)
            dest.flush()

    write(conn.take_buffered())
    _pump(conn.sock, stdin_fd, write)


def _attached_tty(engine: Engine, eid: str, conn: Stream, stdin_fd: int) -> None:
    out = sys.stdout.buffer

    def write(data: bytes) -> None:
        out.write(data)
        out.flush()

    def resize(*_: Any) -> None:
        size = shutil.get_terminal_size()
        with contextlib.suppress(DltError, OSError):
            engine.exec_resize(eid, height=size.lines, width=size.columns)

    resize()
    old = None
    if signal.getsignal(signal.SIGWINCH) != signal.SIG_IGN:  # ignored stays ignored
        old = signal.signal(signal.SIGWINCH, resize)
    try:
        with _raw(stdin_fd):
            write(conn.take_buffered())
            _pump(conn.sock, stdin_fd, write)
    finally:
        if old is not None:
            signal.signal(signal.SIGWINCH, old)


def _pump(raw: socket.socket, stdin_fd: int, write: Any) -> None:
    """Copy ``stdin_fd`` to ``raw`` (half-closing it at our EOF) and ``raw`` to ``write``
    until the engine closes the stream (the process ended)."""
    stdin_open = True
    raw.settimeout(None)
    while True:
        watch: list[Any] = [raw] + ([stdin_fd] if stdin_open else [])
        try:
            ready, _, _ = select.select(watch, [], [])
        except InterruptedError:  # a SIGWINCH
            continue
        if raw in ready:
            data = raw.recv(65536)
            if not data:
                return
            write(data)
        if stdin_open and stdin_fd in ready:
            data = os.read(stdin_fd, 65536)
            if data:
                raw.sendall(data)
            else:
                stdin_open = False
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)
