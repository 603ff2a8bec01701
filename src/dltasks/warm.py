"""The warm start: ``dlt`` commands forked from a server that has imported dltasks already.

A cold ``dlt train`` spends most of its own time importing Python: on the H200 host 135 ms of
imports against 157 ms for the whole ``docker run`` (bench/README.md). With the warm start,
the first ``dlt`` starts a server in the background (one per user, Python, groups and
installed dltasks) that imports the run path once and waits. Later commands connect to it
over a unix socket in a private (0700) folder and hand it their argv, working folder,
environment, umask and the stdin/stdout/stderr file descriptors themselves; the server forks
a worker that runs the command as ``dlt`` would have, in this process's place: its output
goes straight to our terminal or pipe, the signals we get (Ctrl-C, SIGTERM, a closed terminal,
a resized window) go to the worker's process group, and its exit code is ours (128+N when it
was killed by signal N: the server, its parent, says so). A signal we ignore (``nohup``'s
SIGHUP) is ignored by the worker too, and never passed on. Ctrl-Z stops
us as a job and holds the worker's output until `fg` or `bg`. Spring (for
Rails) and dmypy do the same for the same reason.

Only the tasks in :data:`WARM_TASKS`, which never need a controlling terminal (no password
prompt, no sudo), take this path; any other command, ``DLT_WARM=0``, or anything going wrong
before the worker has started, runs the command cold in this process, as before. A server
leaves after :data:`IDLE_S` seconds without a command; one whose dltasks files, Python, user
or groups differ from ours is never asked (its socket's name says which it is).

This module is imported by every ``dlt`` before anything else: it imports nothing heavy.
Not even ``typing``, ``socket`` or ``signal`` (9, 7 and 4 ms of start-up on Python 3.12,
for their enums): their C halves ``_socket`` and ``_signal`` have all it needs.
"""

from __future__ import annotations

import _signal as signal
import _socket as socket
import marshal
import os
import struct
import sys
import zlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

#: Tasks that go through the warm server (the first argument names the task).
WARM_TASKS = frozenset({"train", "runs", "ps", "logs", "stop", "gpus", "test-gpu", "config"})
#: A server with no command for this long exits (and removes its socket).
IDLE_S = 900
#: Signals passed on to the worker's process group: what a terminal or a supervisor sends.
FORWARDED: tuple[int, ...] = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT,
                              signal.SIGWINCH, signal.SIGUSR1, signal.SIGUSR2)
_STARTED, _CODE = b"S", struct.Struct(">i")
_OFF = ("0", "off", "no", "false")


def main() -> None:
    """``dlt``: the command through the warm server when it can, else in this process."""
    code = run_warm(sys.argv)
    if code is not None:
        sys.exit(code)
    from dltasks.cli import program

    program.run()


# -- the client: in every dlt, before anything else ---------------------------------------


def wanted(argv: list[str], environ: Any = os.environ) -> bool:
    return (len(argv) > 1 and argv[1] in WARM_TASKS
            and environ.get("DLT_WARM", "1").strip().lower() not in _OFF)


def socket_path(environ: Any = os.environ) -> str | None:
    """Where our server listens ("": no private folder could be had here, so no warm start).

    The name carries what a server must share with us to run our commands: the Python, the
    installed dltasks (path, version, every file's mtime), PYTHONPATH and the locale, our uid
    and groups, and our cgroup: a worker runs in its server's, so a command in a Slurm job or
    a login session is only ever run by a server of that job or session (its GPUs, its
    limits; it goes when they end).
    """
    from dltasks import __version__

    # one folder per user, whatever TMPDIR says: a server per TMPDIR would pile up
    runtime = environ.get("XDG_RUNTIME_DIR", "")
    folder = (os.path.join(runtime, "dltasks-warm") if runtime.startswith("/")
              else f"/tmp/dltasks-warm-{os.getuid()}")
    try:
        os.mkdir(folder, 0o700)
    except FileExistsError:
        pass
    except OSError:
        return None
    st = os.lstat(folder)
    if st.st_uid != os.getuid() or st.st_mode & 0o077 or not os.path.isdir(folder):
        return None  # not ours, or open to others: never trust it
    pkg = os.path.dirname(os.path.abspath(__file__))
    key = "\0".join([sys.executable, sys.version, pkg, __version__, _mtimes(pkg),
                     *(environ.get(k, "") for k in ("PYTHONPATH", "PYTHONUTF8", "LC_ALL",
                                                    "LC_CTYPE", "LANG")),
                     str(os.getuid()), str(os.getgid()),
                     ",".join(map(str, sorted(os.getgroups()))), _limits(), _cgroup()])
    path = os.path.join(folder, f"s-{zlib.crc32(key.encode()):08x}.sock")
    return path if len(path.encode()) < 100 else None  # a unix socket's path is short


def _limits() -> str:
    import resource

    names = sorted(n for n in dir(resource) if n.startswith("RLIMIT_"))
    return repr([os.getpriority(os.PRIO_PROCESS, 0),
                 *(resource.getrlimit(getattr(resource, n)) for n in names)])


def _cgroup() -> str:
    try:
        with open("/proc/self/cgroup") as f:
            return f.read()
    except OSError:
        return ""


def _mtimes(pkg: str) -> str:
    """The newest mtime and the count of the package's files: changes with any edit or
    reinstall (an editable checkout too)."""
    newest, count, todo = 0, 0, [pkg]
    while todo:
        with os.scandir(todo.pop()) as it:
            for e in it:
                if e.is_dir(follow_symlinks=False):
                    if e.name != "__pycache__":
                        todo.append(e.path)
                elif e.name.endswith(".py"):
                    newest, count = max(newest, e.stat().st_mtime_ns), count + 1
    return f"{newest}:{count}"


def run_warm(argv: list[str]) -> int | None:
    """Run ``argv`` through the warm server; its exit code, or None to run it cold here (no
    server yet, in which case one is started for the next command, or nothing started)."""
    if not wanted(argv):
        return None
    try:
        path = socket_path()
        cwd = os.getcwd()
        for fd in (0, 1, 2):
            os.fstat(fd)
    except OSError:  # a deleted working folder, a closed stdin: cold, as before
        return None
    if path is None:
        return None
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        try:
            conn.connect(path)
        except OSError:
            _start_server(path)
            return None
        return _hand_over(conn, argv, cwd)
    finally:
        conn.close()


def _hand_over(conn: socket.socket, argv: list[str], cwd: str) -> int | None:
    mask = os.umask(0)
    os.umask(mask)
    ignored = [sig for sig in (*FORWARDED, signal.SIGTSTP)
               if signal.getsignal(sig) == signal.SIG_IGN]
    request = marshal.dumps({"argv": list(argv), "cwd": cwd, "env": dict(os.environ),
                             "umask": mask, "ignored": ignored,
                             "stdio": [_stdio(s) for s in (sys.stdin, sys.stdout, sys.stderr)]})
    old = {}
    for sig in FORWARDED:  # from now on, what we are sent goes to the worker
        if sig not in ignored:  # ignored stays ignored (nohup): no forwarder takes its place
            old[sig] = signal.signal(sig, lambda n, _f: _tell(conn, n))
    if signal.SIGTSTP not in ignored:
        old[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, lambda _n, _f: _suspend(conn))
    try:
        try:
            data = _CODE.pack(len(request)) + request
            sent = conn.sendmsg([data], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          struct.pack("3i", 0, 1, 2))])
            conn.sendall(data[sent:])
            if _recv_exactly(conn, 1) != _STARTED:
                return None  # the server went away before forking: nothing ran, run cold
        except OSError:
            return None
        try:
            answer = _recv_exactly(conn, _CODE.size)
        except OSError:
            answer = b""
        if len(answer) < _CODE.size:
            print("dlt: error: the warm dlt server's worker ended without an exit code "
                  "(the server killed?); run again, or set DLT_WARM=0", file=sys.stderr)
            return 1
        return int(_CODE.unpack(answer)[0])
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


def _suspend(conn: socket.socket) -> None:
    """Ctrl-Z: the worker holds its output (the run goes on, as a container does when the
    docker CLI is stopped), we stop as a shell's job does; `fg` or `bg` (SIGCONT) lets the
    output go on."""
    _tell(conn, signal.SIGTSTP)
    handler = signal.signal(signal.SIGTSTP, signal.SIG_DFL)
    os.kill(os.getpid(), signal.SIGTSTP)  # stopped here until continued
    signal.signal(signal.SIGTSTP, handler)
    _tell(conn, signal.SIGCONT)


def _tell(conn: socket.socket, sig: int) -> None:
    try:
        conn.send(bytes([sig]))
    except OSError:
        pass


def _stdio(stream: Any) -> tuple[str, str, bool, bool] | None:
    """How this interpreter set up a standard stream, for the worker to do the same."""
    if stream is None:
        return None
    return (stream.encoding, stream.errors, bool(stream.line_buffering),
            bool(getattr(stream, "write_through", False)))


def _recv_exactly(conn: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = conn.recv(n - len(data))
        if not chunk:
            break
        data += chunk
    return data


def _start_server(path: str) -> None:
    """Start the server for the next command (this one runs cold): detached, in a session of
    its own, no terminal, its output nowhere."""
    import subprocess

    try:
        subprocess.Popen([sys.executable, "-m", "dltasks.warmserver", path], start_new_session=True,
                         stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL, close_fds=True)
    except OSError:
        pass
