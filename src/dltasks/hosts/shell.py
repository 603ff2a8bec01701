"""Seam 1: a shell on the target host. Every command dltasks runs goes through here.

A :class:`Shell` wraps an ``invoke.Context`` (this machine) or a ``fabric.Connection`` (a
remote host): both have the same ``run``/``sudo``, so one task body serves both. Local helper
commands that always run on *this* machine (git, rsync) use :func:`local`.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dltasks.errors import DltError
from dltasks.signals import handling


@dataclass(frozen=True)
class CmdResult:
    command: str
    code: int
    stdout: str
    stderr: str

    @property
    def ok(self) -> bool:
        return self.code == 0

    def tail(self, n: int = 5) -> str:
        """The last ``n`` lines of output, stderr first, for one-line error messages."""
        lines = (self.stderr.strip() or self.stdout.strip()).splitlines()
        return " | ".join(line.strip() for line in lines[-n:])


def shell_exit_code(returncode: int) -> int:
    """A child's return code as a shell says it: death by signal N (Python's -N) is 128+N."""
    return 128 - returncode if returncode < 0 else returncode


def quote(argv: Sequence[str]) -> str:
    return " ".join(shlex.quote(a) for a in argv)


class Shell:
    """Runs shell commands on one host through an invoke Context or fabric Connection."""

    def __init__(self, c: Any, *, sudo_password: str = "") -> None:
        self.c = c
        self.sudo_password = sudo_password
        self._root: bool | None = None

    @property
    def host(self) -> str:
        c = self.c  # the name the user typed (gpu1), not the HostName it resolves to
        return str(getattr(c, "original_host", None) or getattr(c, "host", "") or "local")

    def run(self, cmd: str | Sequence[str], *, check: bool = False, stream: bool = False,
            env: Mapping[str, str] | None = None, pty: bool = False,
            timeout: float | None = None) -> CmdResult:
        """Run ``cmd``; capture its output (``stream`` also shows it live)."""
        text = cmd if isinstance(cmd, str) else quote(cmd)
        r = self.c.run(text, hide=not stream, warn=True, in_stream=False, pty=pty,
                       env=dict(env or {}), timeout=timeout)
        res = CmdResult(text, self._code(r.exited), r.stdout, r.stderr)
        if check and not res.ok:
            raise DltError(f"`{text}` failed on {self.host} (exit {res.code}): {res.tail()}")
        return res

    def _code(self, exited: int) -> int:
        """invoke's exit code as ours: a local child's -N is 128+N. A remote one's -1 is
        SSH's "no status" (paramiko keeps no exit signal): left as it is."""
        return exited if getattr(self.c, "host", None) else shell_exit_code(exited)

    def is_root(self) -> bool:
        """Whether we log in as root (asked once: every sudo() needs it)."""
        if self._root is None:
            self._root = self.run("id -u").stdout.strip() == "0"
        return self._root

    def sudo(self, cmd: str | Sequence[str], *, check: bool = False, stream: bool = False,
             env: Mapping[str, str] | None = None) -> CmdResult:
        """Run ``cmd`` as root: directly when we are root, else through sudo, never hanging."""
        text = cmd if isinstance(cmd, str) else quote(cmd)
        if self.is_root():
            return self.run(text, check=check, stream=stream, env=env)
        if not self.sudo_password:
            probe = self.run("sudo -n true")
            if not probe.ok:
                said = (probe.stderr + probe.stdout).lower()
                if probe.code == 127:  # the shell's "command not found"
                    raise DltError(f"sudo is not installed on {self.host}: install it, or run "
                                   "as root")
                if "password" in said:
                    raise DltError(f"sudo on {self.host} wants a password: set "
                                   "DLT_SUDO_PASSWORD in .env (or the environment), or allow "
                                   "passwordless sudo for this user")
                raise DltError(f"no sudo rights on {self.host} ({probe.tail(1)}): run as a user "
                               "in the sudoers, or as root")
            return self.run(f"sudo -n sh -c {shlex.quote(text)}", check=check, stream=stream,
                            env=env)
        r = self.c.sudo(text, hide=not stream, warn=True, in_stream=False,
                        password=self.sudo_password, env=dict(env or {}))
        res = CmdResult(text, self._code(r.exited), r.stdout, r.stderr)
        if check and not res.ok:
            raise DltError(f"`sudo {text}` failed on {self.host} (exit {res.code}): {res.tail()}")
        return res


class CutShort(Exception):
    """An attached command (:func:`local_attached`, ``Target.run_attached``) was cut short by
    Ctrl-C (SIGINT), SIGTERM or SIGHUP; its own side is stopped already. ``signum``: which."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextlib.contextmanager
def interrupts_raise() -> Iterator[None]:
    """SIGTERM and SIGHUP raise :class:`CutShort` in the block, as SIGINT raises
    KeyboardInterrupt (one that is ignored stays ignored; not the main thread: as they were)."""

    def raise_(signum: int, frame: Any) -> None:
        raise CutShort(signum)

    with handling((signal.SIGTERM, signal.SIGHUP), raise_):
        yield


def local_attached(argv: Sequence[str], *, stop_s: float = 10, use_stdin: bool = True) -> int:
    """Run a program on this machine with our stdin, stdout and stderr as its own (byte for
    byte; a terminal stays the user's, so ``srun --pty`` runs it itself); its exit code.

    Ctrl-C reaches it from the terminal through the process group; SIGINT is also sent to it
    here (a signal sent to us alone), SIGTERM/SIGHUP are passed on; it gets ``stop_s`` to
    end, then SIGKILL (as does a second Ctrl-C), and :class:`CutShort` is raised.
    ``use_stdin`` off, or no stdin at all (closed): it reads /dev/null (like ``ssh -n``)."""
    stdin = None if use_stdin and has_stdin() else subprocess.DEVNULL
    try:
        proc = subprocess.Popen(list(argv), stdin=stdin)
    except FileNotFoundError:
        raise DltError(f"`{argv[0]}` is not installed on this machine; install it and "
                       "retry") from None
    signum = 0
    with interrupts_raise():
        try:
            return shell_exit_code(proc.wait())
        except KeyboardInterrupt:
            signum = signal.SIGINT
        except CutShort as e:
            signum = e.signum
        try:
            proc.send_signal(signum)
            proc.wait(stop_s)
        except (KeyboardInterrupt, CutShort, subprocess.TimeoutExpired):
            proc.kill()
            proc.wait()
    raise CutShort(signum)


def has_stdin() -> bool:
    """Whether this program has a stdin to pass on (not closed: `<&-`, some cron setups)."""
    try:
        os.fstat(0)
    except OSError:
        return False
    return True


class Pending:
    """A program started here by :func:`local_start`; :meth:`result` waits for it."""

    def __init__(self, argv: Sequence[str], proc: subprocess.Popen[bytes]) -> None:
        self.argv, self.proc = list(argv), proc

    def result(self, input: bytes | None = None) -> CmdResult:
        out, err = self.proc.communicate(input)
        return CmdResult(quote(self.argv), shell_exit_code(self.proc.returncode),
                         out.decode(errors="replace"), err.decode(errors="replace"))


def local_start(argv: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
                env: Mapping[str, str] | None = None, stdin: bool = False) -> Pending:
    """Start a program on this machine (never through a shell), capturing its output; it runs
    while we go on. ``stdin``: we will give it input (else it inherits ours)."""
    try:
        proc = subprocess.Popen(list(argv), cwd=cwd, env=None if env is None else dict(env),
                                stdin=subprocess.PIPE if stdin else None,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        raise DltError(f"`{argv[0]}` is not installed on this machine; install it and "
                       "retry") from None
    return Pending(argv, proc)


def local(argv: Sequence[str], *, cwd: str | os.PathLike[str] | None = None,
          env: Mapping[str, str] | None = None, input: bytes | None = None,
          check: bool = False) -> CmdResult:
    """Run a program on this machine (never through a shell), capturing its output."""
    res = local_start(argv, cwd=cwd, env=env, stdin=input is not None).result(input)
    if check and not res.ok:
        raise DltError(f"`{res.command}` failed (exit {res.code}): {res.tail()}")
    return res


def local_detached(argv: Sequence[str], *, log: str | os.PathLike[str],
                   pass_fds: Sequence[int] = (),
                   env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
    """Start a program on this machine that outlives us: in a session of its own (a Ctrl-C
    or a closed terminal here never reaches it), stdin from /dev/null, stdout and stderr
    appended to ``log`` (made 0600, never through a link); ``pass_fds`` stay open in it."""
    fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW, 0o600)
    try:
        return subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=fd, stderr=fd,
                                pass_fds=tuple(pass_fds), start_new_session=True,
                                env=None if env is None else dict(env))
    except FileNotFoundError:
        raise DltError(f"`{argv[0]}` is not installed on this machine; install it and "
                       "retry") from None
    finally:
        os.close(fd)
