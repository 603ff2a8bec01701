"""Bench: remote hosts through Fabric against plain OpenSSH, on the sshd lab of the tests.

Uses tests/sshd_harness.py (real sshd on 127.0.0.2 as gpu1, user dltgpu1; needs root to create
the user). Prints medians and ratios:

1. `fab -H gpu1 train` with a trivial command and nothing to sync (a 20-file project)
   vs `ssh gpu1 docker run --rm IMAGE true`                                 (target <= 1.5);
   also the same run through the Target API inside a running process (connect, forward,
   create/start/wait/remove), which is what the CLI adds its start-up cost to.
2. `fab -H gpu1 sync` of an unchanged 5,000-file tree vs raw `rsync -a` of the same tree over
   the same ssh options                                                     (target <= 1.2);
   `fab sync` knows "nothing changed" without running rsync (dltasks/hosts/remote/synced.py), so the
   bench also times `sync --full` (rsync run anyway) and `sync_project` inside a running
   process (rsync through the open connection).

    python bench/remote.py [--runs 7] [--image dlt-test-base:latest] [--cmd true] [--skip-train]
"""

from __future__ import annotations

import argparse
import os
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sshd_harness import Lab, lab  # noqa: E402

FAB = "import sys; from fabric.main import program; sys.argv[0] = 'fab'; program.run()"


def median_of(runs: int, fn: Callable[[], object]) -> float:
    fn()  # warm-up: page cache, image layers, first connection
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def run(argv: list[str], *, cwd: Path, env: dict[str, str], timeout: float = 120) -> None:
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if r.returncode != 0:
        sys.exit(f"bench: `{shlex.join(argv)}` failed (exit {r.returncode}): "
                 f"{r.stdout[-600:]}{r.stderr[-3000:]}")


def make_project(root: Path, name: str, image: str, files: int, cmd: str) -> Path:
    d = root / name
    d.mkdir()
    (d / "fabfile.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    (d / ".env").write_text(f"DLT_REMOTE_DIR=~/dltasks/{name}\nDLT_IMAGE={image}\n"
                            f"DLT_GPUS=none\nDLT_TRAIN_CMD={cmd}\n")
    (d / ".gitignore").write_text("*.pyc\n__pycache__/\n")
    for i in range(files):
        sub = d / "src" / f"pkg{i // 100}"
        sub.mkdir(parents=True, exist_ok=True)
        (sub / f"mod{i}.py").write_text(f"VALUE = {i}\n" * 10)
    return d


def bench_run(the_lab: Lab, proj: Path, image: str, runs: int, skip_train: bool,
              cmd: str) -> None:
    env = the_lab.env()
    ssh = the_lab.ssh_argv("gpu1")
    raw = median_of(runs, lambda: run([*ssh, f"docker run --rm {shlex.quote(image)} {cmd}"],
                                      cwd=proj, env=env))
    print(f"ssh gpu1 docker run --rm IMAGE {cmd:<12}{raw:6.3f} s")
    run([sys.executable, "-c", FAB, "-H", "gpu1", "sync"], cwd=proj, env=env)  # nothing left
    if not skip_train:
        ours = median_of(runs, lambda: run([sys.executable, "-c", FAB, "-H", "gpu1", "train"],
                                           cwd=proj, env=env, timeout=60))
        print(f"fab -H gpu1 train (nothing to sync)        {ours:6.3f} s   ratio {ours / raw:.2f}"
              "  (target <= 1.5)")
    startup = median_of(runs, lambda: run([sys.executable, "-c", FAB, "--list"], cwd=proj,
                                          env=env))
    print(f"  of which: fab start-up (fab --list)       {startup:6.3f} s")
    api = median_of(runs, lambda: _target_run(the_lab, proj, image, cmd))
    print(f"Target API: connect + forward + run        {api:6.3f} s   ratio {api / raw:.2f}"
          "  (in a running process)")


def _target_run(the_lab: Lab, proj: Path, image: str, cmd: str) -> None:
    import fabric

    from dltasks.hosts.remote import remote_target
    from dltasks.settings import resolve

    os.environ["HOME"] = str(the_lab.home)
    t = remote_target(fabric.Connection("gpu1"), resolve(proj, host="gpu1", environ={}))
    try:
        engine = t.engine
        cid = engine.create_container({"Image": image, "Cmd": shlex.split(cmd),
                                       "Labels": {"dltasks.test": "1"}})
        try:
            engine.start(cid)
            engine.wait(cid)
        finally:
            engine.remove_container(cid, force=True)
    finally:
        t.close()


def bench_sync(the_lab: Lab, proj: Path, runs: int) -> None:
    import fabric

    from dltasks.hosts.remote import remote_target
    from dltasks.hosts.remote.sshconfig import from_connection, rsh_command
    from dltasks.hosts.remote.sync import sync_project
    from dltasks.settings import resolve

    env = the_lab.env()
    fab_sync = [sys.executable, "-c", FAB, "-H", "gpu1", "sync"]
    run(fab_sync, cwd=proj, env=env)
    rawdest = f"~/dltasks/{proj.name}-raw/"
    # the same ssh options dltasks uses (resolved from the lab's ssh config), plain rsync -a
    os.environ["HOME"] = str(the_lab.home)
    rsh = rsh_command(from_connection(fabric.Connection("gpu1")))
    raw_argv = ["rsync", "-a", "-e", rsh, f"{proj}/", f"127.0.0.2:{rawdest}"]
    run(raw_argv, cwd=proj, env=env)
    raw = median_of(runs, lambda: run(raw_argv, cwd=proj, env=env))
    print(f"rsync -a (unchanged 5,000 files)           {raw:6.3f} s")
    ours = median_of(runs, lambda: run(fab_sync, cwd=proj, env=env))
    print(f"fab -H gpu1 sync (unchanged)               {ours:6.3f} s   ratio {ours / raw:.2f}"
          "  (target <= 1.2)")
    said = subprocess.run(fab_sync, cwd=proj, env=env, capture_output=True, text=True).stderr
    print(f"  (it said: {said.strip()[:110]})")
    full = median_of(runs, lambda: run([*fab_sync, "--full"], cwd=proj, env=env))
    print(f"  the same, rsync run anyway (sync --full)  {full:6.3f} s   ratio {full / raw:.2f}")
    t = remote_target(fabric.Connection("gpu1"), resolve(proj, host="gpu1", environ={}))
    try:
        inproc = median_of(runs, lambda: sync_project(t, t.settings, quiet=True))
    finally:
        t.close()
    print(f"sync_project in a running process          {inproc:6.3f} s   ratio "
          f"{inproc / raw:.2f}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--image", default="dlt-test-base:latest")
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--cmd", default="true", help="the trivial command both sides run")
    ap.add_argument("--skip-train", action="store_true",
                    help="skip `fab -H gpu1 train` (e.g. while train is unfinished)")
    a = ap.parse_args()
    the_lab = lab()
    tmp = Path(tempfile.mkdtemp(prefix="dlt-bench-remote-"))
    name = "bench-" + uuid.uuid4().hex[:6]
    home = the_lab.hosts["gpu1"].home
    try:
        print(f"gpu1 = sshd on 127.0.0.2 (loopback), {a.runs} runs, medians")
        small = make_project(tmp, name + "-s", a.image, 20, a.cmd)  # a typical small project
        bench_run(the_lab, small, a.image, a.runs, a.skip_train, a.cmd)
        proj = make_project(tmp, name, a.image, a.files, a.cmd)
        bench_sync(the_lab, proj, a.runs)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for d in (home / "dltasks" / name, home / "dltasks" / f"{name}-raw",
                  home / "dltasks" / f"{name}-s"):
            shutil.rmtree(d, ignore_errors=True)


if __name__ == "__main__":
    main()
