"""Where a GPU run's facts round trip spends its time, piece by piece, on this host.

    python bench/facts.py [--runs 9] [--project DIR] [--python PY]

`dlt train --gpu N` asks the host about its GPUs in one program (dltasks.gpu.modes's facts
script): the driver discovery of direct mode and the CDI specs, while nvidia-smi's two queries
(dltasks.gpu.claims) run at once. This times, as dlt starts them (subprocess, no shell of
ours): the whole script, the discovery alone, the status alone, each nvidia-smi query alone
and the two together; and the start-up of ``--python`` (the Python `dlt` runs on: its
``site`` is paid by every `dlt` client) with and without ``-S``/``-I``. Medians of ``--runs``
after one warm-up, in ms, with every run's time. Settings (DLT_DRIVER_ROOT, DLT_NVIDIA_SMI,
DLT_CDI_SPEC_DIRS) are the project's at ``--project``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence


def _times(argv: Sequence[str], runs: int) -> list[float]:
    subprocess.run(list(argv), capture_output=True)
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        subprocess.run(list(argv), capture_output=True)
        out.append((time.perf_counter() - t) * 1000)
    return out


def _show(what: str, times: list[float]) -> None:
    print(f"  {statistics.median(times):7.1f} ms  {what}   "
          f"[{', '.join(f'{t:.0f}' for t in times)}]", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=9)
    ap.add_argument("--project", default=".")
    ap.add_argument("--python", default=sys.executable)
    a = ap.parse_args()

    from dltasks.gpu.claims import APP_FIELDS, GPU_FIELDS, status_script
    from dltasks.gpu.modes import _script
    from dltasks.settings import resolve

    s = resolve(a.project)
    smi = s.nvidia_smi or "nvidia-smi"
    gpu_q = [smi, f"--query-gpu={','.join(GPU_FIELDS)}", "--format=csv,noheader,nounits"]
    app_q = [smi, f"--query-compute-apps={','.join(APP_FIELDS)}",
             "--format=csv,noheader,nounits"]
    both = " ".join(gpu_q) + " & " + " ".join(app_q) + "; wait"
    print(f"facts round trip of a GPU run (project {a.project}, median of {a.runs}):")
    _show("the facts script, as dlt train --gpu N runs it", _times(_script(s, True), a.runs))
    _show("  its driver discovery and CDI specs alone", _times(_script(s, False), a.runs))
    _show("  its nvidia-smi part alone", _times(["sh", "-c", status_script(s.nvidia_smi)],
                                                 a.runs))
    if shutil.which(smi):
        _show("    nvidia-smi --query-gpu", _times(gpu_q, a.runs))
        _show("    nvidia-smi --query-compute-apps", _times(app_q, a.runs))
        _show("    both at once (sh -c 'a & b; wait')", _times(["sh", "-c", both], a.runs))
    else:
        print(f"    (no {smi} here: its queries are not timed)")
    _show("    sh -c true (a shell's own start)", _times(["sh", "-c", "true"], a.runs))
    print(f"start-up of {a.python}:")
    for flags in ([], ["-S"], ["-I"], ["-I", "-S"]):
        _show(f"python {' '.join(flags + ['-c', 'pass'])}",
              _times([a.python, *flags, "-c", "pass"], a.runs))
    _show("python -c 'import dltasks.cli' (what every dlt command imports)",
          _times([a.python, "-c", "import dltasks.cli"], a.runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
