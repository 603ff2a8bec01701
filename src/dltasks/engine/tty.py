"""An interactive terminal in a run's container (`inv shell`), over the engine API alone.

No docker CLI is needed on this machine or the host: we attach to the container's TTY,
put our terminal in raw mode, pump bytes both ways and pass window-size changes on.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import socket
import sys
from collections.abc import Callable, Iterator
from typing import Any

from dltasks.engine import lifecycle as runner
from dltasks.engine.api import Stream
from dltasks.engine.spec import RunSpec
from dltasks.hosts.target import Target


@contextlib.contextmanager
def _raw_terminal(fd: int) -> Iterator[None]:
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
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def run_interactive(target: Target, spec: RunSpec, *, stop_timeout: int,
                    started: Callable[[], None] | None = None) -> int:
    """Run ``spec`` (tty + stdin) wired to this terminal; returns the exit code.

    The lifecycle is :func:`dltasks.engine.lifecycle.container`'s: Ctrl-C goes to the container (raw
    mode), SIGTERM/SIGHUP stop it with the grace period, and it is always removed."""
    engine = target.engine
    stdin_fd = sys.stdin.fileno()
    with runner.container(target, spec, stop_timeout=stop_timeout, stdin=True,
                          started=started) as run:

        def resize(*_: Any) -> None:
            size = shutil.get_terminal_size()
            with contextlib.suppress(Exception):
                engine.resize(run.cid, height=size.lines, width=size.columns)

        old = None
        if os.isatty(stdin_fd):
            resize()
            if not runner.ignored(signal.SIGWINCH):  # ignored stays ignored
                old = signal.signal(signal.SIGWINCH, resize)
        try:
            with _raw_terminal(stdin_fd):
                _pump(run.stream, stdin_fd)
        finally:
            if old is not None:
                signal.signal(signal.SIGWINCH, old)
        run.code = runner.wait_exit_code(target, run.cid)
    return runner.INTERRUPTED if run.code is None else run.code


def _pump(tty: Stream, stdin_fd: int) -> None:
    out = sys.stdout.buffer
    out.write(tty.take_buffered())  # what came with the engine's answer, before select sees it
    raw = tty.sock
    stdin_open = True
    while True:
        watch: list[Any] = [raw] + ([stdin_fd] if stdin_open else [])
        ready, _, _ = select.select(watch, [], [])
        if raw in ready:
            data = raw.recv(65536)
            if not data:
                return
            out.write(data)
            out.flush()
        if stdin_open and stdin_fd in ready:
            data = os.read(stdin_fd, 65536)
            if data:
                raw.sendall(data)
            else:
                stdin_open = False
                with contextlib.suppress(OSError):
                    raw.shutdown(socket.SHUT_WR)
