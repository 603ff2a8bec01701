"""Where one dlt command's wall time goes, as a timeline: ms since the process was spawned.

    python bench/timeline.py [--runs 5] [--best] [--warm] [--cwd DIR] -- train --gpu 0

Runs ``dlt ARGS`` in a child Python (this interpreter, or ``--python``), with marks for: the
interpreter ready, ``dltasks.cli`` imported, every import statement after that which took 2 ms
or more (on any thread), every program started and collected (with how long its collector waited
for it to end: a wait means the program, not Python, was the slow one), every background thread,
every engine request sent and answered, and the exit. The child prints its timeline to stderr;
the median run of ``--runs`` (by wall time; ``--best``: the shortest) is shown, after a warm-up,
with every run's wall time. ``--warm``: through a warm server (dltasks.warm) started with the
same marks, so the timeline is the worker's, from the client's spawn. No engine or GPU is needed
for the marks themselves: what is timed is whatever the command does.
"""

from __future__ import annotations

import argparse
import os
import socket
import struct
import subprocess
import sys
import time

HOOKS = r'''
import os, sys, time, threading, builtins
marks = []
def mark(what):
    marks.append((time.time(), threading.current_thread().name, what))
depth = threading.local()
real_import = builtins.__import__
def timed_import(name, globals=None, locals=None, fromlist=(), level=0):
    d = getattr(depth, "n", 0)
    if d or name in sys.modules and not fromlist:
        depth.n = d + 1
        try:
            return real_import(name, globals, locals, fromlist, level)
        finally:
            depth.n = d
    depth.n = 1
    t = time.time()
    try:
        return real_import(name, globals, locals, fromlist, level)
    finally:
        depth.n = 0
        took = time.time() - t
        if took >= 0.002:
            where = (globals or {}).get("__name__", "?")
            marks.append((t, threading.current_thread().name,
                          f"import {'.' * level}{name} (in {where}): {took * 1000:.1f} ms"))
builtins.__import__ = timed_import
import subprocess
real_init = subprocess.Popen.__init__
def popen(self, args, *a, **k):
    shown = args if isinstance(args, str) else " ".join(map(str, args))
    mark(f"spawn {shown[:70]}")
    real_init(self, args, *a, **k)
subprocess.Popen.__init__ = popen
real_communicate = subprocess.Popen.communicate
def communicate(self, *a, **k):
    shown = self.args if isinstance(self.args, str) else " ".join(map(str, self.args))
    t = time.time()
    try:
        return real_communicate(self, *a, **k)
    finally:
        waited = time.time() - t
        mark(f"collected {shown[:60]}" + (f" (waited {waited * 1000:.1f} ms for it)"
                                          if waited >= 0.001 else ""))
subprocess.Popen.communicate = communicate
real_start = threading.Thread.start
def start(self):
    mark(f"thread {self.name}")
    real_start(self)
threading.Thread.start = start
from dltasks import engineapi
for cls in vars(engineapi).values():
    if isinstance(cls, type) and "_send" in vars(cls):
        real_send = cls._send
        def send(self, method, path, *a, _real=real_send, **k):
            short = path if len(path) < 60 else path[:20] + "..." + path[-25:]
            mark(f"> {method} {short}")
            try:
                return _real(self, method, path, *a, **k)
            finally:
                mark(f"< {method} {short}")
        cls._send = send
'''

SHOW = r'''
def show(t0):
    for t, thread, what in sorted(marks):
        if t < t0:
            continue
        who = "" if thread == "MainThread" else f"[{thread}] "
        print(f"TIMELINE {(t - t0) * 1000:7.1f} ms  {who}{what}", file=sys.stderr)
    sys.stderr.flush()
'''

#: cold: the command in this interpreter, after the hooks
CHILD = "import time as _t\n_READY = _t.time()\n" + HOOKS + SHOW + r'''
T0 = float(os.environ.pop("TIMELINE_T0"))
marks.append((_READY, "MainThread", "interpreter ready"))
import atexit
atexit.register(lambda: (mark("exit"), show(T0)))
mark("timeline hooks in place")
from dltasks.cli import program
mark("dltasks.cli imported")
sys.exit(program.run(["dlt", *sys.argv[1:]]))
'''

#: warm: a warm server with the hooks (it takes over the socket), whose workers show them
SERVER = HOOKS + SHOW + r'''
from dltasks import warmserver
real_work, real_report = warmserver.work, warmserver._report
def work(job):
    mark("worker forked")
    real_work(job)
def report(conn, done):
    mark("exit code sent")
    t0 = float(os.environ.pop("TIMELINE_T0", "0") or 0)
    show(t0)
    real_report(conn, done)
warmserver.work, warmserver._report = work, report
warmserver.main()
'''



def one(py: str, args: list[str], cwd: str, warm: bool) -> tuple[float, list[str], int]:
    env = {**os.environ, "TIMELINE_T0": repr(time.time())}
    argv = [py, "-m", "dltasks", *args] if warm else [py, "-c", CHILD, *args]
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    lines = [ln[len("TIMELINE "):] for ln in r.stderr.splitlines() if ln.startswith("TIMELINE ")]
    if r.returncode != 0:
        rest = [ln for ln in r.stderr.splitlines() if not ln.startswith("TIMELINE ")]
        lines.append(f"(exit {r.returncode}: {' | '.join(rest)[-300:]})")
    return took, lines, r.returncode


def start_server(py: str, cwd: str) -> subprocess.Popen[bytes]:
    """A warm server with the marks, on the socket that ``py``'s dlt uses here (it takes
    the socket over; a server that had it idles out)."""
    path = subprocess.run([py, "-c", "import dltasks.warm as w; print(w.socket_path() or '')"],
                          cwd=cwd, capture_output=True, text=True, check=True).stdout.strip()
    if not path:
        raise SystemExit("no private folder for a warm server here")
    proc = subprocess.Popen([py, "-c", SERVER, path], cwd=cwd, start_new_session=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            s.connect(path)
            if struct.unpack("3i", s.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED,
                                                12))[0] == proc.pid:
                return proc
        except OSError:
            pass
        finally:
            s.close()
        time.sleep(0.05)
    proc.kill()
    raise SystemExit("the warm server with the marks did not listen within 30 s")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cwd", default=".")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--best", action="store_true", help="show the shortest run, not the median")
    ap.add_argument("--warm", action="store_true",
                    help="through a warm server with the marks (the worker's timeline)")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    server = start_server(a.python, a.cwd) if a.warm else None
    try:
        one(a.python, args, a.cwd, a.warm)  # warm-up: byte code, page cache
        runs = sorted((one(a.python, args, a.cwd, a.warm) for _ in range(a.runs)),
                      key=lambda r: r[0])
    finally:
        if server:
            server.terminate()
            server.wait()
    took, lines, code = runs[0] if a.best else runs[(len(runs) - 1) // 2]
    print(f"timeline of {'a warm' if a.warm else 'a cold'} `dlt {' '.join(args)}` "
          f"({'best' if a.best else 'median'} of {a.runs}: "
          f"{took * 1000:.0f} ms spawn to exit, exit {code}; {a.python}); all runs: "
          f"{', '.join(f'{r[0] * 1000:.0f}' for r in runs)} ms")
    for ln in lines:
        print("  " + ln)
    return 0 if code == 0 else 2


if __name__ == "__main__":
    raise SystemExit(main())
