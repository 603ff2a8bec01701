#!/usr/bin/env bash
# Where `dlt train` spends its start-up in Python on this host (issue 10's start bench): the
# interpreter's floor, the cost of one frozen dataclass on this Python, and the imports of the
# run path with the time spent creating dataclasses. No engine or GPU needed: run it anywhere
# (on the borrowed GPU machine: `bash dev/gpu-startup.sh`, with .whl carried).
#   needs: .whl/ with dltasks' wheel and its dependencies (dev/gpu-e2e.sh pack makes it)
set -euo pipefail
cd "$(dirname "$0")/.."
base=$(python3 -c 'import sys; print(getattr(sys, "_base_executable", sys.executable))')
venv=$(mktemp -d)/venv
"$base" -m venv --without-pip "$venv"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
python3 -m pip install -q --no-index --no-deps --target "$site" .whl/*.whl
py="$venv/bin/python"
echo "== $("$py" -VV)"
"$py" - <<'PY'
import statistics, subprocess, sys, time

def med(argv, n=9):
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        subprocess.run(argv, capture_output=True)
        ts.append(time.perf_counter() - t)
    return statistics.median(ts) * 1000

py = sys.executable
print(f"interpreter floor ({py} -c pass): {med([py, '-c', 'pass']):.0f} ms")
print(f"import dltasks.cli (invoke, the task collection): "
      f"{med([py, '-c', 'import dltasks.cli']):.0f} ms")
run_path = ("import dltasks.cli, dltasks.gpu.modes, dltasks.runs.single, dltasks.hosts.target, "
            "dltasks.gpu.share, dltasks.engine.lifecycle")
print(f"+ the run path's modules: {med([py, '-c', run_path]):.0f} ms")
probe = r'''
import dataclasses, time
t = time.perf_counter()
for _ in range(40):
    @dataclasses.dataclass(frozen=True)
    class A:
        a: int = 0
        b: str = ""
        c: tuple = ()
        d: int = 1
print(f"one frozen dataclass (4 fields): {(time.perf_counter() - t) * 25:.2f} ms")
spent, count = [0.0], [0]
orig = dataclasses._process_class
def timed(*a, **k):
    t0 = time.perf_counter()
    try:
        return orig(*a, **k)
    finally:
        spent[0] += time.perf_counter() - t0
        count[0] += 1
dataclasses._process_class = timed
t = time.perf_counter()
import dltasks.cli, dltasks.gpu.modes, dltasks.runs.single, dltasks.hosts.target, dltasks.gpu.share, dltasks.engine.lifecycle
total = time.perf_counter() - t
print(f"run path imports in-process: {total * 1000:.0f} ms, of which {count[0]} dataclasses: "
      f"{spent[0] * 1000:.0f} ms")
'''
subprocess.run([py, "-c", probe])
PY
"$py" -X importtime -c "import dltasks.cli, dltasks.gpu.modes, dltasks.runs.single, dltasks.hosts.target, dltasks.gpu.share, dltasks.engine.lifecycle" 2>&1 \
  | sort -t'|' -k2 -n -r | head -25
rm -rf "$(dirname "$venv")"
