"""A command in a RUNNING container (`exec`), over the engine API alone.

The same code serves a local engine and a host's engine reached through the SSH forward its
target owns: it is given an :class:`~dltasks.engine.api.Engine` and a container. The process
runs as the container's user, in its working folder, with its environment (an exec inherits
the container's), and its exit code is handed back. Bytes go both ways through
:mod:`dltasks.engine.attach` (the pump `shell` uses too).

With a tty (``tty``: our stdin and stdout are terminals) our terminal goes raw, so Ctrl-C is a
byte for the process in the container, and window-size changes are passed on. Without one,
stdin, stdout and stderr are streamed plainly and Ctrl-C ends the exec'd process.

The engine does not end an exec'd process when its client goes away, so whatever way we end
early (Ctrl-C, SIGTERM/SIGHUP, a lost connection) the process is ended by us: every exec
carries a marker variable (:data:`MARKER`, a fresh random value), and a second exec signals
the processes whose environment holds it (the exec's own ``Pid`` is the host's pid, unknown
inside the container). Its children inherit the marker, so none of them is left either: we
wait until none is left, not only the exec's first process (a background job of ``sh -c``
ignores SIGINT), and KILL whatever still carries it after the grace period.
"""

from __future__ import annotations

import contextlib
import os
import signal
import struct
import sys
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

from dltasks.engine import attach
from dltasks.engine.api import Engine, EngineError, Stream
from dltasks.errors import DltError
from dltasks.signals import handling

#: The variable naming one exec's processes (value: random hex), so they can be ended.
MARKER = "DLT_EXEC_ID"
#: What Ctrl-C (no tty) gives back, as a shell does.
INTERRUPTED = 130
#: The interactive shell asked for when no command is given: bash where the image has it.
DEFAULT_SHELL = ("sh", "-c", "command -v bash >/dev/null && exec bash || exec sh")
#: Engine statuses meaning the container (and so the exec) is not there or not running.
GONE = (404, 409)

#: ``sh -c`` program for the second exec: send signal $1 (0: only count) to every process
#: whose environment holds MARKER=$2 (read from /proc: no ps needed in the image), and print
#: how many there were; "-1" when the image has no `tr` to read an environment with.
_SIGNAL = ('command -v tr >/dev/null || { echo -1; exit 0; }; n=0; '
           'for p in /proc/[0-9]*; do '
           f'case "$(tr "\\000" "\\n" < "$p/environ" 2>/dev/null)" in *"{MARKER}=$2"*) '
           'kill -s "$1" "${p#/proc/}" 2>/dev/null && n=$((n+1));; esac; done; echo "$n"')
#: Who sends the signals: root in the container, so a process whose environment its own
#: user cannot read (one that changed user) is found too; only marked processes are touched.
_SIGNALLER = "0"
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
    """SIGTERM and SIGHUP raise :class:`_Ended` here, and Ctrl-C KeyboardInterrupt, once:
    the first one makes all three ignored until :func:`_hurrying` takes them for the
    cleanup, so a second one cannot cut it short (one that was ignored stays ignored)."""

    def raise_(signum: int, frame: Any) -> None:
        for sig in taken:
            signal.signal(sig, signal.SIG_IGN)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt
        raise _Ended(signum)

    with handling((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), raise_) as taken:
        yield


@contextlib.contextmanager
def _hurrying() -> Iterator[threading.Event]:
    """While the command is being ended: Ctrl-C, SIGTERM or SIGHUP again set the event (KILL
    now) instead of raising out of the cleanup."""
    hurry = threading.Event()
    with handling((signal.SIGINT, signal.SIGTERM, signal.SIGHUP), lambda *_: hurry.set(),
                  keep_ignored=False):  # _signals_end ignored them for the cleanup
        yield hurry


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
            grace_s: float = 10, use_stdin: bool = True) -> int:
    """Run ``argv`` in the running container ``cid`` wired to this terminal; its exit code.

    ``grace_s``: how long the processes have to end after SIGINT/SIGTERM before SIGKILL.
    ``use_stdin`` off: the process reads /dev/null (`--no-stdin`), as with a missing stdin.
    The container gone or not running (the engine's 404/409, also mid-exec) raises the
    engine's :class:`EngineError`, for the caller to say the run ended."""
    info = engine.inspect_container(cid)
    config = info.get("Config") or {}
    marker = os.urandom(8).hex()
    eid = engine.exec_create(cid, exec_config(argv, tty=tty, user=str(config.get("User") or ""),
                                              workdir=str(config.get("WorkingDir") or ""),
                                              marker=marker))
    ended = False
    with _signals_end():
        try:
            with attach.input_fd(use_stdin) as stdin_fd:
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
            _end(engine, cid, marker, "INT", grace_s)
            return INTERRUPTED
        except _Ended as e:
            ended = True
            _end(engine, cid, marker, "TERM", grace_s)
            return 128 + e.signum
        finally:
            if not ended:  # a lost connection, an engine error: leave nothing running
                with contextlib.suppress(DltError, OSError):
                    _end(engine, cid, marker, "TERM", grace_s, say=False)
    return _exit_code(engine, cid, eid, marker, grace_s)


def _exit_code(engine: Engine, cid: str, eid: str, marker: str, grace_s: float) -> int:
    """The exec's exit code: the engine may say Running for a moment after the stream ends.
    Still running after 10 s: the stream was lost (the engine restarted?), not the command:
    it is ended, and one line says so."""
    deadline = time.monotonic() + 10
    while True:
        state = engine.exec_inspect(eid)
        if not state.get("Running") and state.get("ExitCode") is not None:
            return int(state["ExitCode"])
        if time.monotonic() > deadline:
            _end(engine, cid, marker, "TERM", grace_s, say=False)
            raise DltError("the engine's stream of the exec ended while its command still ran "
                           "(the engine restarted?); the command was ended; run it again",
                           code=1)
        time.sleep(0.05)


def _end(engine: Engine, cid: str, marker: str, sig: str, grace_s: float, *,
         say: bool = True) -> None:
    """Signal the exec's processes (all of them: each carries the marker), wait until none
    is left, and KILL what is left after ``grace_s`` or at a second Ctrl-C/SIGTERM/SIGHUP."""
    with _hurrying() as hurry:
        found = _signal(engine, cid, marker, sig)
        if found < 0:
            _warn("dlt: warning: cannot end the command's processes: the image has no `tr` "
                  "to find them by their DLT_EXEC_ID; see `docker top` on its host")
            return
        if found == 0:
            return
        if say:
            _warn(f"dlt: ending the command ({found} process{'es' if found > 1 else ''}; up "
                  f"to {grace_s:g}s; Ctrl-C again kills {'them' if found > 1 else 'it'})")
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline and not hurry.is_set():
            if _signal(engine, cid, marker, "0") == 0:
                return
            hurry.wait(0.2)
        _signal(engine, cid, marker, "KILL")


def _warn(line: str) -> None:
    with contextlib.suppress(OSError, ValueError):  # a closed stderr must not skip the end
        print(line, file=sys.stderr, flush=True)


def _signal(engine: Engine, cid: str, marker: str, sig: str) -> int:
    """A second exec signals the processes carrying ``marker``: how many there were (0 once
    the container is gone: so are they; -1: the image cannot say)."""
    try:
        kid = engine.exec_create(cid, {"Cmd": ["sh", "-c", _SIGNAL, "sh", sig, marker],
                                       "AttachStdout": True, "AttachStderr": True,
                                       "User": _SIGNALLER})
        stream = engine.exec_start(kid, tty=False)
        try:
            out = b"".join(data for sid, data in Demux().feed(stream.readall()) if sid == 1)
        finally:
            stream.close()
    except EngineError:  # the container ended meanwhile: so did the processes
        return 0
    try:
        return int(out.split()[-1])
    except (IndexError, ValueError):
        return -1


def _attached_plain(conn: Stream, stdin_fd: int) -> None:
    """Pump our stdin in and the framed output out until the process ends."""
    out, err = sys.stdout.buffer, sys.stderr.buffer
    demux = Demux()

    def write(data: bytes) -> None:
        for stream_id, payload in demux.feed(data):
            dest = out if stream_id <= 1 else err  # 2 stderr, 3 the engine's own errors
            dest.write(payload)
            dest.flush()

    attach.pump(conn.sock, conn.take_buffered(), stdin_fd, write)


def _attached_tty(engine: Engine, eid: str, conn: Stream, stdin_fd: int) -> None:
    def resize(lines: int, columns: int) -> None:
        engine.exec_resize(eid, height=lines, width=columns)

    with attach.following_resizes(resize), attach.raw_terminal(stdin_fd):
        attach.pump(conn.sock, conn.take_buffered(), stdin_fd, attach.to_stdout, tty=True)
