"""Our terminal wired to a process in a container: THE pump for `shell` (a container's
attach) and `exec` (an exec's start), over a hijacked engine connection.

* stdin -> the connection runs in its own (daemon) thread, and the connection -> our stdout
  in the caller's thread: a process whose output is larger than its input (`gunzip -c`,
  `od`) blocks writing while we would be blocked sending it input, if one thread did both.
  Our EOF half-closes the connection's write side, so the process sees its stdin end;
  with a tty the engine would then cut the output off (its attach closes stdout at stdin's
  end), so there our EOF is the terminal's: Ctrl-D (EOT), as a person would type it.
* A missing or closed stdin (``sys.stdin`` None: `<&-`, cron) reads as /dev/null, as does
  one we are told not to read (`exec --no-stdin`, like `ssh -n`).
* With a terminal, it goes raw for the pump, and is ALWAYS restored: the restore runs with
  SIGINT/SIGTERM/SIGHUP blocked, so a second signal cannot cut it short.
* Window-size changes (SIGWINCH) are passed on; a resize that fails (the stream just ended,
  the SSH connection dropped) is dropped, never raised into the pump.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import sys
import threading
from collections.abc import Callable, Iterator
from typing import Any

from dltasks.signals import handling

_CHUNK = 65536
#: The signals that end dlt: blocked while the terminal is restored.
_ENDING = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _usable(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


@contextlib.contextmanager
def input_fd(use_stdin: bool = True) -> Iterator[int]:
    """The fd the process's input comes from: our stdin, or /dev/null when ``use_stdin`` is
    off or our stdin is missing or closed."""
    fd = -1
    if use_stdin and sys.stdin is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fd = sys.stdin.fileno()
    if fd >= 0 and _usable(fd):
        yield fd
        return
    null = os.open(os.devnull, os.O_RDONLY)
    try:
        yield null
    finally:
        os.close(null)


def is_terminal(use_stdin: bool = True) -> bool:
    """Whether our stdin (when used) and stdout are both terminals: then the process gets a
    tty."""
    if not use_stdin:
        return False
    with input_fd() as fd:
        try:
            return os.isatty(fd) and os.isatty(sys.stdout.fileno())
        except (OSError, ValueError, AttributeError):
            return False


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """``fd``'s terminal in raw mode (Ctrl-C a byte for the process) for the body; its
    settings put back however the body ends, a signal arriving meanwhile included."""
    if not os.isatty(fd):
        yield
        return
    import termios
    import tty

    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        # blocked, a signal waits until the settings are back (its handler runs after)
        was = signal.pthread_sigmask(signal.SIG_BLOCK, _ENDING)
        try:
            termios.tcsetattr(fd, termios.TCSADRAIN, old)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, was)


@contextlib.contextmanager
def following_resizes(resize: Callable[[int, int], None]) -> Iterator[None]:
    """``resize(lines, columns)`` now and on each window-size change; its errors dropped (a
    resize is a courtesy: the stream it is for may have just ended)."""

    def apply(*_: Any) -> None:
        size = shutil.get_terminal_size()
        with contextlib.suppress(Exception):
            resize(size.lines, size.columns)

    apply()
    with handling((signal.SIGWINCH,), apply):   # not the main thread: no resizes
        yield


def to_stdout(data: bytes) -> None:
    """Write to our stdout at once (an interactive program's output is not held back)."""
    out = sys.stdout.buffer
    out.write(data)
    out.flush()


#: Our EOF to a process with a tty: the terminal's end-of-input character (Ctrl-D).
EOT = b"\x04"


def pump(sock: socket.socket, first: bytes, stdin_fd: int,
         write: Callable[[bytes], None], *, tty: bool = False) -> None:
    """Copy ``stdin_fd`` to ``sock`` in a daemon thread (half-closing it at our EOF, or
    with a ``tty`` sending :data:`EOT`) and ``first`` then ``sock`` to ``write`` here, until
    the engine closes the stream (the process ended). The input thread is told to stop when
    the stream ends, so it takes no more of our stdin than it has already read."""
    sock.settimeout(None)
    stop_r, stop_w = os.pipe()
    feeder = threading.Thread(target=_feed, args=(stdin_fd, sock, stop_r, tty), daemon=True,
                              name="dlt-stdin")
    feeder.start()
    try:
        if first:
            write(first)
        while True:
            data = sock.recv(_CHUNK)
            if not data:
                return
            write(data)
    finally:
        with contextlib.suppress(OSError):  # the feeder has already ended (our EOF)
            os.write(stop_w, b"x")
        os.close(stop_w)
        # stop_r is closed by the feeder: it may still be selecting on it


def _feed(stdin_fd: int, sock: socket.socket, stop_r: int, tty: bool) -> None:
    """Our input to the process until our EOF (then half-close, or EOT to a tty) or the
    stream's end."""
    try:
        while True:
            ready, _, _ = select.select([stdin_fd, stop_r], [], [])
            if stop_r in ready:
                return
            data = os.read(stdin_fd, _CHUNK)
            if not data:
                if tty:
                    sock.sendall(EOT)
                else:
                    sock.shutdown(socket.SHUT_WR)
                return
            sock.sendall(data)
    except (OSError, ValueError):
        return  # the stream ended (or was closed) under us: nothing more to send
    finally:
        os.close(stop_r)
