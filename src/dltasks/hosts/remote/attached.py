"""A command on a remote host wired to this program's stdin, stdout and stderr, byte for byte.

For a command the user works in (`exec` on Slurm: ``srun ... docker exec``): an exec channel
of the SSH connection (a pty on the host when we have a terminal, ours then raw so Ctrl-C and
the arrow keys are bytes for it), our stdin pumped in by a thread of its own (a command whose
output outgrows its input never waits on us), its output written as it comes, never kept.
invoke's runner would decode the output (binary files corrupted), cap stdin and keep it all.
"""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import sys
import threading
from collections.abc import Iterator
from typing import Any

from dltasks.errors import ConnectionLost
from dltasks.hosts.shell import CutShort, has_stdin, interrupts_raise

_CHUNK = 65536


@contextlib.contextmanager
def _raw(fd: int) -> Iterator[None]:
    """Our terminal raw while in the block, restored whatever ends it."""
    import termios
    import tty

    old = termios.tcgetattr(fd)
    try:
        tty.setraw(fd)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _feed(chan: Any, fd: int) -> None:
    """Our stdin into the channel until its EOF (then a half-close), in its own thread."""
    try:
        while True:
            data = os.read(fd, _CHUNK)
            if not data:
                chan.shutdown_write()
                return
            chan.sendall(data)
    except (OSError, EOFError):  # the channel closed: the command ended, nothing to feed
        return


def remote_attached(transport: Any, command: str, *, tty: bool, host: str,
                    use_stdin: bool = True) -> int:
    """Run ``command`` on the host wired to our stdio; its exit code (-1: none was said).
    Ctrl-C (no terminal), SIGTERM or SIGHUP close the channel and raise :class:`CutShort`
    (the caller ends what the command started there)."""
    try:
        chan = transport.open_session(timeout=30)
    except Exception as e:  # noqa: BLE001 - paramiko raises its own and socket errors
        raise ConnectionLost(f"lost the SSH connection to {host} ({e}); check the network, "
                             "then rerun", code=255) from None
    out, err = sys.stdout.buffer, sys.stderr.buffer
    # no stdin at all (closed) reads as /dev/null, as does use_stdin off (ssh -n)
    stdin_fd = 0 if use_stdin and has_stdin() else -1
    old_winch = None
    try:
        if tty:
            size = shutil.get_terminal_size()
            chan.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns,
                         height=size.lines)

            def resize(*_: Any) -> None:
                size = shutil.get_terminal_size()
                with contextlib.suppress(Exception):  # a dying connection: nothing to resize
                    chan.resize_pty(width=size.columns, height=size.lines)

            if signal.getsignal(signal.SIGWINCH) != signal.SIG_IGN:
                old_winch = signal.signal(signal.SIGWINCH, resize)
        chan.exec_command(command)
        if stdin_fd >= 0:
            threading.Thread(target=_feed, args=(chan, stdin_fd), daemon=True).start()
        else:
            chan.shutdown_write()
        with interrupts_raise(), (_raw(stdin_fd) if tty and stdin_fd >= 0
                                  else contextlib.nullcontext()):
            try:
                _drain(chan, out, err)
            except KeyboardInterrupt:
                raise CutShort(signal.SIGINT) from None
        if not transport.active:
            raise ConnectionLost(f"lost the SSH connection to {host}; what the command "
                                 "started there may still run", code=255)
        return int(chan.recv_exit_status())
    finally:
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        with contextlib.suppress(Exception):
            chan.close()


def _drain(chan: Any, out: Any, err: Any) -> None:
    """Write the channel's stdout and stderr as they come, until it has sent its EOF and
    exit status (or closed)."""
    while True:
        if chan.recv_ready():
            out.write(chan.recv(_CHUNK))
            out.flush()
        elif chan.recv_stderr_ready():
            err.write(chan.recv_stderr(_CHUNK))
            err.flush()
        elif chan.closed or (chan.eof_received and chan.exit_status_ready()):
            return
        elif chan.eof_received:  # the status follows the output: wait for it, not spin
            chan.status_event.wait(0.5)
        else:
            select.select([chan], [], [], 0.5)
