"""Bench: `dlt train` against the docker CLI running the same container: stdout throughput.

(The time from the command to a training script's first output line is bench/first_output.py.)

Throughput: a container writing 200 MB to stdout, through `dlt train` (which also tees it
to runs/<id>/output.log) vs `docker run` attached (the line `dlt train --dry-run` prints, minus
--name), both read by this process from a pipe. Three producers: 200 MB in one long line
(head|tr), then 50 MB each of 80-byte lines (yes|head, and python3 print(), unbuffered as dlt
runs it: one write per line). Target: dlt >= 0.9x the docker CLI's streaming throughput (first
byte to end of stream). Byte counts are checked on both sides, and output.log against what dlt
printed.

Both sides run in a temporary project (a git repo with one commit, like a real one) whose .env
sets DLT_IMAGE and DLT_GPUS=none, so nothing is built. `dlt` is the console script next to this
Python (not a pyenv shim), else `python -m dltasks`; the header says which. Runs alternate
between the two sides; medians are printed. Exit status: 0 when measured (PASS or MISS),
2 when the bench could not run.

Python byte-code: invoke turns off writing byte-code (unless --write-pyc), and this repo is
installed editable, so every `dlt` process would compile the dltasks modules it imports lazily
from source, which a pip-installed copy (compiled at install) never does. The bench therefore
keeps byte-code under a temporary PYTHONPYCACHEPREFIX, filled by a warm-up run with
`--write-pyc`. `--as-is` keeps the environment (and shows what an editable install pays).

    python bench/train.py [--tp-runs 5] [--mb 200] [--line-mb 50] [--as-is]
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
from dataclasses import dataclass
from pathlib import Path
from typing import NoReturn

DOCKER = shutil.which("docker") or "/usr/local/bin/docker"
WRITE_PYC = ["--write-pyc"]  # emptied by --as-is
RETRY_MARKERS = ("docker0", "no such network interface")  # another tenant's dockerd, transient


def dlt_argv() -> tuple[list[str], str]:
    script = Path(sys.executable).parent / "dlt"
    if script.is_file():
        return [str(script)], f"{script} (console script)"
    return [sys.executable, "-m", "dltasks"], f"{sys.executable} -m dltasks"


def child_env(tmp: Path, as_is: bool) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    if not as_is:
        env.pop("PYTHONDONTWRITEBYTECODE", None)
        env["PYTHONPYCACHEPREFIX"] = str(tmp / "pycache")
    return env


def make_project(tmp: Path, image: str) -> Path:
    proj = tmp / "benchproj"
    proj.mkdir()
    (proj / ".env").write_text(f"DLT_IMAGE={image}\nDLT_GPUS=none\nDLT_TRAIN_CMD=true\n")
    (proj / "main.py").write_text("print('hello')\n")
    (proj / "tasks.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    (proj / ".gitignore").write_text("runs/\n")
    git = ["git", "-C", str(proj), "-c", "user.name=bench", "-c", "user.email=bench@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-qm", "bench"], check=True)
    return proj


def docker_equivalent(dlt: list[str], proj: Path, env: dict[str, str]) -> list[str]:
    """The first line of `dlt train --dry-run`, without --name, plus our cleanup label."""
    res = subprocess.run([*dlt, *WRITE_PYC, "train", "--dry-run"], cwd=proj, env=env,
                         capture_output=True, text=True)
    if res.returncode != 0 or not res.stdout.startswith("docker run "):
        fail(f"bench: `dlt train --dry-run` failed: {res.stderr.strip()[-600:]}")
    argv = shlex.split(res.stdout.split("\n\n")[0])
    if "--name" in argv:
        i = argv.index("--name")
        del argv[i:i + 2]
    argv[0] = DOCKER
    argv[2:2] = ["--label", "dltasks.test=1"]
    return argv


def run_retrying(argv: list[str], *, cwd: Path, env: dict[str, str],
                 stdout: int | None = subprocess.PIPE) -> subprocess.CompletedProcess[bytes]:
    """Run; retry (not timed twice) while the engine's bridge is missing."""
    for _ in range(30):
        res = subprocess.run(argv, cwd=cwd, env=env, stdout=stdout, stderr=subprocess.PIPE)
        err = res.stderr.decode(errors="replace")
        if res.returncode == 0:
            return res
        if not any(m in err for m in RETRY_MARKERS):
            fail(f"bench: `{shlex.join(argv)[:200]}` failed ({res.returncode}): "
                     f"{err.strip()[-600:]}")
        time.sleep(2)
    fail("bench: the engine's docker0 bridge stayed missing for a minute")


def fail(message: str) -> NoReturn:
    print(message, file=sys.stderr)
    raise SystemExit(2)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


@dataclass
class Stream:
    nbytes: int
    first: float   # seconds from spawn to the first byte
    last: float    # seconds from spawn to the last byte
    exit: float    # seconds from spawn to the process's exit (and the pipe's end)

    @property
    def streaming_mbps(self) -> float:
        return self.nbytes / 1e6 / max(self.last - self.first, 1e-9)

    @property
    def e2e_mbps(self) -> float:
        return self.nbytes / 1e6 / self.exit


def consume(argv: list[str], *, cwd: Path, env: dict[str, str]) -> Stream:
    """Run argv with stdout on a pipe we drain (1 MiB reads), counting bytes and timing."""
    for _ in range(30):
        with tempfile.TemporaryFile() as err:
            t0 = time.perf_counter()
            proc = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=err)
            assert proc.stdout is not None
            fd = proc.stdout.fileno()
            n, first, last = 0, 0.0, 0.0
            while chunk := os.read(fd, 1 << 20):
                last = time.perf_counter() - t0
                if not n:
                    first = last
                n += len(chunk)
            code = proc.wait()
            done = time.perf_counter() - t0
            proc.stdout.close()
            if code == 0:
                return Stream(n, first, last, done)
            err.seek(0)
            text = err.read().decode(errors="replace")
            if not any(m in text for m in RETRY_MARKERS):
                fail(f"bench: `{shlex.join(argv)[:200]}` failed ({code}): {text[-600:]}")
            time.sleep(2)
    fail("bench: the engine's docker0 bridge stayed missing for a minute")


def producers(mb: int, line_mb: int) -> dict[str, tuple[str, int]]:
    """Name -> (shell command in the container, bytes it writes)."""
    line = "x" * 79
    nbytes, lines = mb * 1_000_000, line_mb * 1_000_000 // 80
    return {
        f"{mb} MB, one long line (head -c | tr)": (
            f"head -c {nbytes} /dev/zero | tr '\\0' x", nbytes),
        f"{line_mb} MB, 80-byte lines (yes | head -c)": (
            f"yes {line} | head -c {lines * 80}", lines * 80),
        f"{line_mb} MB, 80-byte lines from python3 print() (unbuffered, as dlt runs it)": (
            f"python3 -c 'for _ in range({lines}): print(\"{line}\")'", lines * 80),
    }


def bench_throughput(dlt: list[str], proj: Path, env: dict[str, str], runs: int,
                     mb: int, line_mb: int) -> None:
    run_retrying([*dlt, *WRITE_PYC, "train"], cwd=proj, env=env)  # warm-up: byte-code
    shutil.rmtree(proj / "runs", ignore_errors=True)
    print(f"\n== throughput: container stdout read from a pipe ({runs} runs each, "
          "alternating) ==")
    print("  streaming = bytes / (last byte - first byte); end-to-end = bytes / (spawn to exit)")
    for name, (cmd, want) in producers(mb, line_mb).items():
        penv = {**env, "DLT_TRAIN_CMD": cmd}
        docker = docker_equivalent(dlt, proj, penv)
        ours = [*dlt, "train"]
        res: dict[str, list[Stream]] = {"dlt": [], "docker": []}
        for i in range(runs):
            s = consume(ours, cwd=proj, env=penv)
            logs = list((proj / "runs").glob("*/output.log"))
            log_size = logs[0].stat().st_size if len(logs) == 1 else -1
            shutil.rmtree(proj / "runs", ignore_errors=True)
            if s.nbytes != want or log_size != want:
                fail(f"bench: dlt train gave {s.nbytes} bytes on stdout and {log_size} in "
                         f"output.log, expected {want} ({name})")
            res["dlt"].append(s)
            d = consume(docker, cwd=proj, env=penv)
            if d.nbytes != want:
                fail(f"bench: docker run gave {d.nbytes} bytes, expected {want} ({name})")
            res["docker"].append(d)
            if i == 0:
                print(f"\n  {name}: `{cmd if len(cmd) < 90 else cmd[:87] + '...'}`")
        med = {k: (statistics.median(x.streaming_mbps for x in v),
                   statistics.median(x.e2e_mbps for x in v),
                   statistics.median(x.exit for x in v),
                   statistics.median(x.first for x in v),
                   statistics.median(x.exit - x.last for x in v)) for k, v in res.items()}
        for k, (st, e2e, ex, first, tail) in med.items():
            print(f"    {k:<7} streaming {st:6.1f} MB/s  end-to-end {e2e:6.1f} MB/s  wall "
                  f"{ex:5.2f} s (first byte at {first:4.2f} s, exit {tail:4.2f} s after the last)"
                  f"  [{', '.join(f'{x.streaming_mbps:.0f}' for x in res[k])} MB/s]")
        ratio = med["dlt"][0] / med["docker"][0]
        print(f"    bytes: {want} on both sides and in output.log; streaming ratio dlt/docker "
              f"{ratio:.2f} (target >= 0.9): {verdict(ratio >= 0.9)}; end-to-end ratio "
              f"{med['dlt'][1] / med['docker'][1]:.2f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tp-runs", type=int, default=5, help="throughput runs per side/producer")
    ap.add_argument("--mb", type=int, default=200, help="MB in one long line")
    ap.add_argument("--line-mb", type=int, default=50, help="MB for each line-oriented producer")
    ap.add_argument("--image", default=os.environ.get("DLTASKS_TEST_BASE_IMAGE",
                                                      "dlt-test-base:latest"))
    ap.add_argument("--as-is", action="store_true",
                    help="no byte-code cache of our own: what an editable install pays")
    args = ap.parse_args()

    dlt, how = dlt_argv()
    if args.as_is:
        WRITE_PYC.clear()
    have = subprocess.run([DOCKER, "image", "inspect", args.image], capture_output=True)
    if have.returncode != 0:
        print(f"bench: image {args.image} is not on the engine: make it with `inv base-image` "
              "or pass --image", file=sys.stderr)
        return 2
    version = subprocess.run([DOCKER, "version", "--format",
                              "client {{.Client.Version}}, engine {{.Server.Version}}"],
                             capture_output=True, text=True).stdout.strip()
    print(f"dlt: {how}\ndocker: {DOCKER} ({version})\nimage: {args.image}; "
          f"byte-code: {'as the environment says' if args.as_is else 'cached'}")
    with tempfile.TemporaryDirectory(prefix="dlt-bench-train-") as t:
        tmp = Path(t)
        env = child_env(tmp, args.as_is)
        proj = make_project(tmp, args.image)
        try:
            bench_throughput(dlt, proj, env, args.tp_runs, args.mb, args.line_mb)
        finally:
            left = subprocess.run([DOCKER, "ps", "-aq", "--filter",
                                   f"label=dltasks.project={proj.name}"],
                                  capture_output=True, text=True).stdout.split()
            if left:
                subprocess.run([DOCKER, "rm", "-f", *left], capture_output=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
