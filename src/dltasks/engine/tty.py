"""An interactive terminal in a run's container (`inv shell`), over the engine API alone.

No docker CLI is needed on this machine or the host: we attach to the container's TTY and
pump bytes both ways with :mod:`dltasks.engine.attach` (the pump `exec` uses too: raw
terminal, always restored; window-size changes passed on; our input in its own thread).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable

from dltasks.engine import attach
from dltasks.engine import lifecycle as runner
from dltasks.engine.spec import RunSpec
from dltasks.hosts.target import Target


def run_interactive(target: Target, spec: RunSpec, *, stop_timeout: int,
                    started: Callable[[], None] | None = None) -> int:
    """Run ``spec`` (tty + stdin) wired to this terminal; returns the exit code.

    The lifecycle is :func:`dltasks.engine.lifecycle.container`'s: Ctrl-C goes to the container (raw
    mode), SIGTERM/SIGHUP stop it with the grace period, and it is always removed. A missing
    or closed stdin reads as /dev/null."""
    engine = target.engine
    with attach.input_fd() as stdin_fd, \
            runner.container(target, spec, stop_timeout=stop_timeout, stdin=True,
                             started=started) as run:

        def resize(lines: int, columns: int) -> None:
            engine.resize(run.cid, height=lines, width=columns)

        follow = (attach.following_resizes(resize) if os.isatty(stdin_fd)
                  else contextlib.nullcontext())
        with follow, attach.raw_terminal(stdin_fd):
            attach.pump(run.stream.sock, run.stream.take_buffered(), stdin_fd, attach.to_stdout,
                        tty=True)
        run.code = runner.wait_exit_code(target, run.cid)
    return runner.INTERRUPTED if run.code is None else run.code
