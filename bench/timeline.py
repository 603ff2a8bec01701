"""Where one dlt command's wall time goes, as a timeline: ms since the process was spawned.

    python bench/timeline.py [--runs 5] [--best] [--cwd DIR] -- train --gpu 0

Runs ``dlt ARGS`` in a child Python (this interpreter, or ``--python``), with marks for: the
interpreter ready, ``dltasks.cli`` imported, every import statement after that which took 2 ms
or more (on any thread), every program started and collected (with how long its collector waited
for it to end: a wait means the program, not Python, was the slow one), every background thread,
every engine request sent and answered, and the exit. The child prints its timeline to stderr;
the median run of ``--runs`` (by wall time; ``--best``: the shortest) is shown, after a warm-up,
with every run's wall time. No engine or GPU is needed for the marks themselves: what is timed
is whatever the command does.
"""

from __future__ import annotations

import argparse
import os
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
from dltasks.engine import api as engineapi
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

def one(py: str, args: list[str], cwd: str) -> tuple[float, list[str], int]:
    env = {**os.environ, "TIMELINE_T0": repr(time.time())}
    argv = [py, "-c", CHILD, *args]
    t = time.perf_counter()
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True)
    took = time.perf_counter() - t
    lines = [ln[len("TIMELINE "):] for ln in r.stderr.splitlines() if ln.startswith("TIMELINE ")]
    if r.returncode != 0:
        rest = [ln for ln in r.stderr.splitlines() if not ln.startswith("TIMELINE ")]
        lines.append(f"(exit {r.returncode}: {' | '.join(rest)[-300:]})")
    return took, lines, r.returncode


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--cwd", default=".")
    ap.add_argument("--python", default=sys.executable)
    ap.add_argument("--best", action="store_true", help="show the shortest run, not the median")
    ap.add_argument("args", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    args = a.args[1:] if a.args[:1] == ["--"] else a.args
    one(a.python, args, a.cwd)  # warm-up: byte code, page cache
    runs = sorted((one(a.python, args, a.cwd) for _ in range(a.runs)), key=lambda r: r[0])
    took, lines, code = runs[0] if a.best else runs[(len(runs) - 1) // 2]
    print(f"timeline of `dlt {' '.join(args)}` "
          f"({'best' if a.best else 'median'} of {a.runs}: "
          f"{took * 1000:.0f} ms spawn to exit, exit {code}; {a.python}); all runs: "
          f"{', '.join(f'{r[0] * 1000:.0f}' for r in runs)} ms")
    for ln in lines:
        print("  " + ln)
    return 0 if code == 0 else 2


if __name__ == "__main__":
    raise SystemExit(main())
