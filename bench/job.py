"""Bench: start of a 2-node job through dltasks against the same two containers by hand.

On the sshd lab of the tests (tests/sshd_harness.py: gpu1 and gpu2 are sshd on 127.0.0.2 and
127.0.0.3, one machine, one engine; needs root). Each side runs, on both hosts, torchrun with
static rendezvous (2 nodes x 1 process, host networking) around a one-line Python that prints
its rank; the time is from spawn until BOTH ranks' lines arrived on this side:

- dlt: `fab -H gpu1,gpu2 train --nnodes 2` (code synced to both hosts, paths mapped, image IDs
  checked, master address and port found, output streamed with prefixes, record written);
- by hand: `ssh gpu1 docker run --rm --network=host IMAGE torchrun --node-rank=0 ...` and the
  same for gpu2, started together, with the address and port written in by hand.

Target: dlt / by hand <= 1.3. Alternating runs, medians. Exit 0 when measured, 2 when not.

    python bench/job.py [--runs 5] [--image dlt-test-torch:latest]
"""

from __future__ import annotations

import argparse
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.sshd_harness import Lab, lab  # noqa: E402

FAB = "import sys; from fabric.main import program; sys.argv[0] = 'fab'; program.run()"
HELLO = "import os; print('hello from rank', os.environ['RANK'], flush=True)"


def first_lines(procs: list[subprocess.Popen[str]], want: int, timeout: float = 120) -> float:
    """Seconds until ``want`` 'hello from rank' lines came out of ``procs`` (from now)."""
    t0 = time.perf_counter()
    seen: list[float] = []
    lock = threading.Lock()

    def read(p: subprocess.Popen[str]) -> None:
        assert p.stdout is not None
        for line in p.stdout:
            if "hello from rank" in line:
                with lock:
                    seen.append(time.perf_counter() - t0)

    threads = [threading.Thread(target=read, args=(p,), daemon=True) for p in procs]
    for t in threads:
        t.start()
    for p in procs:
        p.wait(timeout=timeout)
    for t in threads:
        t.join(timeout=10)
    if len(seen) < want or any(p.returncode for p in procs):
        errs = " | ".join((p.stderr.read() if p.stderr else "")[-800:] for p in procs)
        sys.exit(f"bench: {len(seen)} of {want} ranks printed; exit codes "
                 f"{[p.returncode for p in procs]}: {errs}")
    return sorted(seen)[want - 1]


def ours(proj: Path, env: dict[str, str]) -> float:
    argv = [sys.executable, "-c", FAB, "-H", "gpu1,gpu2", "train", "--nnodes", "2"]
    p = subprocess.Popen(argv, cwd=proj, env=env, text=True, stdout=subprocess.PIPE,
                         stderr=subprocess.PIPE)
    return first_lines([p], 2)


def by_hand(the_lab: Lab, proj: Path, env: dict[str, str], image: str, port: int) -> float:
    procs = []
    for rank, host in enumerate(("gpu1", "gpu2")):
        cmd = (f"docker run --rm --network=host -e GLOO_SOCKET_IFNAME=lo {shlex.quote(image)} "
               f"torchrun --nnodes=2 --node-rank={rank} --master-addr=127.0.0.1 "
               f"--master-port={port} --nproc-per-node=1 --max-restarts=0 --no-python "
               f"python3 -c {shlex.quote(HELLO)}")
        procs.append(subprocess.Popen([*the_lab.ssh_argv(host), cmd], cwd=proj, env=env,
                                      text=True, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE))
    return first_lines(procs, 2)


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--image", default="dlt-test-torch:latest")
    ap.add_argument("--port", type=int, default=29620, help="the by-hand side's port")
    a = ap.parse_args()
    the_lab = lab()
    env = the_lab.env()
    tmp = Path(tempfile.mkdtemp(prefix="dlt-bench-job-"))
    name = "bench-job-" + uuid.uuid4().hex[:6]
    proj = tmp / name
    proj.mkdir()
    (proj / "fabfile.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    (proj / "hello.py").write_text(HELLO + "\n")
    (proj / ".env").write_text(f"DLT_REMOTE_DIR=~/dltasks/{name}\nDLT_IMAGE={a.image}\n"
                               "DLT_GPUS=none\nDLT_TRAIN_CMD=python3 hello.py\n")
    try:
        ours(proj, env)  # warm-up: first sync, page cache, image layers
        by_hand(the_lab, proj, env, a.image, a.port)
        mine, theirs = [], []
        for _ in range(a.runs):
            mine.append(ours(proj, env))
            theirs.append(by_hand(the_lab, proj, env, a.image, a.port))
        o, t = statistics.median(mine), statistics.median(theirs)
        print(f"gpu1 + gpu2 = sshd on 127.0.0.2/3 (one machine), {a.runs} runs, medians, "
              "spawn to both ranks' first line")
        print(f"by hand: 2 x ssh host docker run ... torchrun  {t:6.3f} s  "
              f"{[round(x, 3) for x in theirs]}")
        print(f"dlt: fab -H gpu1,gpu2 train --nnodes 2         {o:6.3f} s  "
              f"{[round(x, 3) for x in mine]}")
        print(f"ratio {o / t:.2f} (target <= 1.3) {'PASS' if o / t <= 1.3 else 'MISS'}")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        for host in ("gpu1", "gpu2"):
            shutil.rmtree(the_lab.hosts[host].home / "dltasks" / name, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
