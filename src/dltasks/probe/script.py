#!/usr/bin/env python3
"""dltasks GPU probe: is this machine or container able to do GPU work, and how fast?

Runs standalone (``python3 probe_script.py``) in any image: the standard library only at the
top; torch, jax and tensorflow are each tried in a child process, only where importable, so a
crashing framework becomes a finding instead of killing the probe. It reports the driver and
CUDA versions (nvidia-smi, else the driver API through ctypes), every visible device, and a
short bf16 (fp16 before Ampere) matmul per GPU with its TFLOP/s. Exits 1 with a one-line
diagnosis per problem when no GPU is visible, CUDA cannot start, or torch is a CPU build.
The last line is ``DLT_PROBE_JSON {...}`` for ``dltasks.probe.parse_probe_output``.
Keep it compatible with Python 3.7: it runs inside whatever image the user has.
"""

from __future__ import annotations

import argparse
import csv
import ctypes
import glob
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

MARK = "DLT_PROBE_JSON"
SMI_FIELDS = "index,uuid,name,driver_version,memory.total,compute_cap"
FRAMEWORKS = ("torch", "jax", "tensorflow")
INSTALL_HINT = "engine without the NVIDIA runtime: run `inv install-nvidia-docker`"


@dataclass
class ProbedGpu:
    index: int
    name: str
    memory_mib: int = 0
    compute_cap: str = ""
    uuid: str = ""
    driver_version: str = ""


@dataclass
class ProbeFinding:
    severity: str  # error | warning
    code: str
    message: str  # one line: what is wrong, then the fix

    def line(self) -> str:
        return f"{self.severity.upper()} [{self.code}] {self.message}"


# --- pure parsers ---------------------------------------------------------------------------


def _num(text: str) -> int:
    m = re.match(r"\s*(\d+)", text)
    return int(m.group(1)) if m else 0


def parse_probe_smi(csv_text: str) -> list[ProbedGpu]:
    """Rows of ``nvidia-smi --query-gpu=SMI_FIELDS --format=csv,noheader,nounits``.

    Also takes the five-column form without compute_cap (drivers before 510). Anything else
    (an NVML error message, say) raises ValueError naming the line.
    """
    gpus = []
    for row in csv.reader(csv_text.splitlines(), skipinitialspace=True):
        if not row or not "".join(row).strip():
            continue
        cells = [c.strip() for c in row]
        if len(cells) not in (5, 6) or not cells[0].isdigit():
            raise ValueError(f"unexpected nvidia-smi line: {', '.join(cells)!r}")
        cap = cells[5] if len(cells) == 6 and re.match(r"^\d+\.\d+$", cells[5]) else ""
        gpus.append(ProbedGpu(index=int(cells[0]), uuid=cells[1], name=cells[2],
                        driver_version=cells[3], memory_mib=_num(cells[4]), compute_cap=cap))
    return gpus


def parse_smi_header(text: str) -> tuple[str, str]:
    """(driver version, CUDA version) from plain ``nvidia-smi`` output; '' where absent."""
    drv = re.search(r"Driver Version:\s*([0-9][0-9.]*)", text)
    cuda = re.search(r"CUDA Version:\s*([0-9][0-9.]*)", text)
    return (drv.group(1) if drv else "", cuda.group(1) if cuda else "")


def cuda_version_text(v: int) -> str:
    """The driver API's integer (12040) as text (12.4)."""
    return f"{v // 1000}.{(v % 1000) // 10}" if v > 0 else ""


def _ver(text: str | None) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text or "")[:2])


def diagnose_probe(facts: dict[str, Any], expect: int = 1) -> list[ProbeFinding]:
    """Turn the gathered facts into findings, each one line naming the fix. Pure."""
    out: list[ProbeFinding] = []

    def err(code: str, msg: str) -> None:
        out.append(ProbeFinding("error", code, msg))

    smi, lib = facts.get("nvidia_smi") or {}, facts.get("libcuda") or {}
    fws = facts.get("frameworks") or {}
    smi_err, lib_err = smi.get("error") or "", lib.get("init_error") or ""
    smi_n = len(smi.get("gpus") or [])
    cuda_n = max([len(lib.get("devices") or [])]
                 + [len(f.get("devices") or []) for f in fws.values()])
    visible = max(smi_n, cuda_n)
    cvd = (facts.get("env") or {}).get("CUDA_VISIBLE_DEVICES")
    torch = fws.get("torch") or {}
    why = lib_err or torch.get("cuda_error") or "no device"

    if "mismatch" in smi_err.lower() or "SYSTEM_DRIVER_MISMATCH" in lib_err:
        err("driver-mismatch", f"NVIDIA driver/library version mismatch ({smi_err or lib_err}): "
            "the kernel module and the user-space driver differ, usually after a driver update "
            "without a reboot: reboot the host (or reload the nvidia kernel modules)")
    elif "couldn't communicate with the nvidia driver" in smi_err.lower():
        err("no-driver", "nvidia-smi cannot talk to the NVIDIA driver: the kernel module is not "
            "loaded; install the NVIDIA driver on the host and reboot, then check `nvidia-smi`")
    elif smi_err:
        err("nvml-failed", f"nvidia-smi failed ({smi_err}): check `nvidia-smi` on the host; in a "
            "container that ran fine before, restart it; " + INSTALL_HINT)
    elif smi_n and not cuda_n and cvd is not None:
        err("cuda-visible-devices", f"CUDA_VISIBLE_DEVICES={cvd!r} hides the {smi_n} GPU(s) "
            "nvidia-smi lists (in a container they are numbered from 0): unset it")
    elif lib_err and "NO_DEVICE" not in lib_err:
        err("cuda-init-failed", f"CUDA could not start (cuInit: {lib_err}): check `nvidia-smi` "
            "on the host and that the image's CUDA is not newer than the driver supports")
    elif smi_n and not lib.get("found"):
        err("no-libcuda", f"nvidia-smi lists {smi_n} GPU(s) but libcuda.so.1 is missing: start "
            "the container with NVIDIA_DRIVER_CAPABILITIES=compute,utility (or all)")
    elif smi_n and not cuda_n:
        err("cuda-no-device", f"nvidia-smi lists {smi_n} GPU(s) but CUDA finds none ({why}): "
            "check the /dev/nvidia* devices and NVIDIA_VISIBLE_DEVICES in the container")
    elif not visible:
        nodes = facts.get("dev_nodes") or []
        seen = ("/dev/nvidia* exists but no device answers" if nodes else
                "no /dev/nvidia* devices, no nvidia-smi" if not smi.get("found") else
                "nvidia-smi lists none")
        err("no-gpu-visible", f"no NVIDIA GPU is visible here ({seen}): ask for GPUs "
            "(`inv test-gpu --gpu all`, `docker run --gpus all`); on the host check "
            "`nvidia-smi`; " + INSTALL_HINT)

    driver_cuda = lib.get("cuda_version") or smi.get("cuda_version") or ""
    if torch.get("error"):
        err("torch-broken", f"torch failed in the probe ({torch['error']}): fix the image's "
            "torch install (its CUDA libraries must match the torch build)")
    elif torch and not torch.get("cuda") and not torch.get("hip"):
        err("torch-cpu-build", f"torch {torch.get('version')} is a CPU-only build: install a "
            "CUDA build of torch in the image (a +cuXXX wheel), or start from a CUDA base "
            "image (DLT_BASE_IMAGE)")
    elif torch and visible and not torch.get("available") and not out:
        if driver_cuda and _ver(torch.get("cuda")) > _ver(driver_cuda):
            err("driver-too-old", f"torch {torch.get('version')} is built for CUDA "
                f"{torch.get('cuda')} but the driver supports CUDA {driver_cuda} ({why}): "
                "upgrade the host's NVIDIA driver, or use a torch built for an older CUDA")
        else:
            err("torch-cuda-failed", f"torch cannot use the GPU ({why}): check `nvidia-smi` on "
                "the host and that CUDA_VISIBLE_DEVICES is unset")
    usable = cuda_n if lib.get("found") or fws else smi_n
    if 0 < usable < expect and not out:
        err("too-few-gpus", f"expected {expect} GPU(s), {usable} usable: check the --gpu ids "
            "against `nvidia-smi -L` on the host")
    for m in facts.get("matmul") or []:
        where = f"{m.get('framework')} GPU {m.get('device')}"
        if m.get("error"):
            err("matmul-failed", f"{where}: matmul failed ({m['error']}): check `nvidia-smi -q` "
                "on the host for errors (Xid, ECC) and retry")
        elif m.get("check_ok") is False:
            err("matmul-wrong", f"{where} computed a wrong matmul result (max rel. error "
                f"{m.get('check_error', 0):.3g}): the GPU or driver is faulty; check "
                "`nvidia-smi -q`")
    if 0 < cuda_n < smi_n and cvd is not None and not out:
        out.append(ProbeFinding("warning", "cuda-visible-devices", f"CUDA_VISIBLE_DEVICES={cvd!r} "
                           f"leaves {cuda_n} of the {smi_n} GPU(s) nvidia-smi lists: unset it "
                           "unless you meant that"))
    if visible and not out and not any(f.get("devices") for f in fws.values()):
        out.append(ProbeFinding("warning", "no-framework",
                                "no torch, jax or tensorflow sees the GPU "
                                "here: devices listed through the driver only, no matmul timed"))
    return out


# --- gathering facts (effects) --------------------------------------------------------------


def _run(argv: list[str], timeout: float = 60) -> tuple[int, str]:
    try:
        p = subprocess.run(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                           timeout=timeout)
    except subprocess.TimeoutExpired:
        return 124, f"{argv[0]} timed out after {timeout:.0f}s"
    except OSError as e:
        return 127, str(e)
    return p.returncode, p.stdout


def _first_line(text: str) -> str:
    lines = [x.strip() for x in text.splitlines() if x.strip()]
    return lines[0] if lines else ""


def probe_nvidia_smi() -> dict[str, Any]:
    exe = shutil.which("nvidia-smi")
    info: dict[str, Any] = {"found": bool(exe), "gpus": [], "error": "", "text": ""}
    if not exe:
        return info
    rc, text = _run([exe])
    info["text"] = text
    info["driver_version"], info["cuda_version"] = parse_smi_header(text)
    if rc != 0:
        info["error"] = _first_line(text) or f"nvidia-smi exited {rc}"
        return info
    for fields in (SMI_FIELDS, SMI_FIELDS.rsplit(",", 1)[0]):
        rc, text = _run([exe, f"--query-gpu={fields}", "--format=csv,noheader,nounits"])
        if rc == 0:
            try:
                info["gpus"] = [asdict(g) for g in parse_probe_smi(text)]
            except ValueError as e:
                info["error"] = str(e)
            return info
    info["error"] = _first_line(text)
    return info


def probe_libcuda() -> dict[str, Any]:
    """Driver API through ctypes: works without any framework installed."""
    info: dict[str, Any] = {"found": False, "devices": [], "init_error": "", "cuda_version": ""}
    lib = None
    for name in ("libcuda.so.1", "libcuda.so"):
        try:
            lib = ctypes.CDLL(name)
            break
        except OSError:
            continue
    if lib is None:
        return info
    info["found"] = True

    def errname(rc: int) -> str:
        s = ctypes.c_char_p()
        if lib.cuGetErrorName(rc, ctypes.byref(s)) == 0 and s.value:
            return f"{s.value.decode()} ({rc})"
        return f"error {rc}"

    v = ctypes.c_int()
    if lib.cuDriverGetVersion(ctypes.byref(v)) == 0:
        info["cuda_version"] = cuda_version_text(v.value)
    rc = lib.cuInit(0)
    if rc != 0:
        info["init_error"] = errname(rc)
        return info
    n = ctypes.c_int()
    lib.cuDeviceGetCount(ctypes.byref(n))
    for i in range(n.value):
        dev, buf = ctypes.c_int(), ctypes.create_string_buffer(256)
        mem, major, minor = ctypes.c_size_t(), ctypes.c_int(), ctypes.c_int()
        lib.cuDeviceGet(ctypes.byref(dev), i)
        lib.cuDeviceGetName(buf, 256, dev)
        lib.cuDeviceTotalMem_v2(ctypes.byref(mem), dev)
        lib.cuDeviceGetAttribute(ctypes.byref(major), 75, dev)  # COMPUTE_CAPABILITY_MAJOR
        lib.cuDeviceGetAttribute(ctypes.byref(minor), 76, dev)
        info["devices"].append(asdict(ProbedGpu(i, buf.value.decode(errors="replace"),
                                          mem.value // 2**20, f"{major.value}.{minor.value}")))
    return info


def torch_facts(matmul: bool, size: int) -> dict[str, Any]:
    import warnings

    import torch  # type: ignore[import-not-found, unused-ignore]

    info: dict[str, Any] = {"version": torch.__version__, "cuda": torch.version.cuda,
                            "hip": getattr(torch.version, "hip", None), "devices": []}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        info["available"] = bool(torch.cuda.is_available())
    if not info["available"] and info["cuda"]:
        try:
            torch.cuda.init()
        except Exception as e:  # noqa: BLE001 - any failure is the finding
            info["cuda_error"] = _first_line(str(e))
        if not info.get("cuda_error") and caught:
            info["cuda_error"] = _first_line(str(caught[-1].message))
        return info
    if not info["available"]:
        return info
    info["matmul"] = []
    for i in range(torch.cuda.device_count()):
        p = torch.cuda.get_device_properties(i)
        info["devices"].append(dict(asdict(ProbedGpu(i, p.name, p.total_memory // 2**20,
                                                f"{p.major}.{p.minor}")),
                                    sms=p.multi_processor_count))
        if matmul:
            info["matmul"].append(_torch_matmul(torch, i, p.major, size))
    return info


def _torch_matmul(torch: Any, i: int, major: int, n: int) -> dict[str, Any]:
    dtype = torch.bfloat16 if major >= 8 else torch.float16
    res: dict[str, Any] = {"framework": "torch", "device": i, "dtype": str(dtype)[6:],
                           "error": ""}
    try:
        with torch.cuda.device(i):
            free, _ = torch.cuda.mem_get_info(i)
            while n > 1024 and 3 * n * n * 2 > 0.8 * free:
                n //= 2
            g = torch.Generator(device=f"cuda:{i}").manual_seed(0)
            x = torch.randn(256, 256, device=f"cuda:{i}", dtype=dtype, generator=g)
            ref = x.float().cpu() @ x.float().cpu()
            got = (x @ x).float().cpu()
            res["check_error"] = float((got - ref).abs().max() / ref.abs().max())
            res["check_ok"] = res["check_error"] < 0.05
            a = torch.randn(n, n, device=f"cuda:{i}", dtype=dtype, generator=g)
            b = torch.randn(n, n, device=f"cuda:{i}", dtype=dtype, generator=g)
            warm, t0 = 0, time.perf_counter()
            while warm < 3 or time.perf_counter() - t0 < 0.2:  # clocks ramp up first
                a @ b
                torch.cuda.synchronize(i)
                warm += 1
            per = (time.perf_counter() - t0) / warm
            iters = max(10, min(500, int(0.3 / max(per, 1e-6))))
            t0 = time.perf_counter()
            for _ in range(iters):
                a @ b
            torch.cuda.synchronize(i)
            dt = time.perf_counter() - t0
            res.update(n=n, iters=iters, seconds=round(dt, 4),
                       tflops=round(2 * n**3 * iters / dt / 1e12, 1))
    except Exception as e:  # noqa: BLE001 - reported as a finding
        res["error"] = _first_line(f"{type(e).__name__}: {e}")
    return res


def jax_facts(matmul: bool, size: int) -> dict[str, Any]:
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
    import jax  # type: ignore[import-not-found, unused-ignore]

    info: dict[str, Any] = {"version": jax.__version__, "devices": [], "matmul": []}
    try:
        devs = jax.devices("gpu")
    except RuntimeError as e:
        info["cuda_error"] = _first_line(str(e))
        return info
    import jax.numpy as jnp  # type: ignore[import-not-found, unused-ignore]

    for i, d in enumerate(devs):
        info["devices"].append(asdict(ProbedGpu(i, getattr(d, "device_kind", str(d)))))
        if not matmul:
            continue
        res: dict[str, Any] = {"framework": "jax", "device": i, "dtype": "bfloat16", "error": ""}
        try:
            a = jax.device_put(jnp.ones((size, size), jnp.bfloat16), d)
            f = jax.jit(lambda x: x @ x)
            f(a).block_until_ready()
            t0 = time.perf_counter()
            for _ in range(20):
                r = f(a)
            r.block_until_ready()
            dt = time.perf_counter() - t0
            res.update(n=size, iters=20, seconds=round(dt, 4),
                       tflops=round(2 * size**3 * 20 / dt / 1e12, 1))
        except Exception as e:  # noqa: BLE001 - reported as a finding
            res["error"] = _first_line(f"{type(e).__name__}: {e}")
        info["matmul"].append(res)
    return info


def tensorflow_facts(matmul: bool, size: int) -> dict[str, Any]:
    import tensorflow as tf  # type: ignore[import-not-found, unused-ignore]

    build = tf.sysconfig.get_build_info()
    gpus = tf.config.list_physical_devices("GPU")
    return {"version": tf.__version__, "cuda": build.get("cuda_version"),
            "devices": [asdict(ProbedGpu(i, g.name)) for i, g in enumerate(gpus)], "matmul": []}


def framework_facts(name: str, matmul: bool, size: int, timeout: float) -> dict[str, Any]:
    """One framework's facts, gathered in a child process so a crash is only a finding."""
    script = os.path.abspath(__file__)
    argv = [sys.executable, script, "--child", name, "--size", str(size)]
    if not matmul:
        argv.append("--no-matmul")
    try:
        p = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f}s", "devices": []}
    for line in reversed(p.stdout.splitlines()):
        if line.startswith(MARK + " "):
            return dict(json.loads(line[len(MARK) + 1:]))
    tail = [x for x in p.stderr.splitlines() if x.strip()]
    return {"error": tail[-1].strip() if tail else f"exit code {p.returncode}", "devices": []}


def gather_probe_facts(expect: int, size: int, timeout: float) -> dict[str, Any]:
    facts: dict[str, Any] = {
        "version": 1, "host": platform.node(), "python": platform.python_version(),
        "env": {k: os.environ[k] for k in ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
                if k in os.environ},
        "dev_nodes": sorted(glob.glob("/dev/nvidia[0-9]*")),
        "nvidia_smi": probe_nvidia_smi(), "libcuda": probe_libcuda(), "frameworks": {},
        "matmul": [],
    }
    import importlib.util

    for name in FRAMEWORKS:
        if importlib.util.find_spec(name) is None:
            continue
        f = framework_facts(name, not facts["matmul"], size, timeout)
        facts["matmul"] += f.pop("matmul", None) or []
        facts["frameworks"][name] = f
    smi, lib = facts["nvidia_smi"], facts["libcuda"]
    facts["driver_version"] = smi.get("driver_version") or ""
    facts["cuda_version"] = lib.get("cuda_version") or smi.get("cuda_version") or ""
    findings = diagnose_probe(facts, expect)
    facts["findings"] = [asdict(f) for f in findings]
    facts["ok"] = not any(f.severity == "error" for f in findings)
    return facts


# --- output ---------------------------------------------------------------------------------


def _gpu_line(g: dict[str, Any]) -> str:
    parts = [g["name"]]
    if g.get("memory_mib"):
        parts.append(f"{g['memory_mib']} MiB")
    if g.get("compute_cap"):
        parts.append(f"compute {g['compute_cap']}")
    if g.get("sms"):
        parts.append(f"{g['sms']} SMs")
    if g.get("uuid"):
        parts.append(g["uuid"])
    return f"  GPU {g['index']}: " + ", ".join(parts)


def report_lines(facts: dict[str, Any]) -> list[str]:
    """The human-readable report (everything but the final JSON line)."""
    smi, lib = facts["nvidia_smi"], facts["libcuda"]
    out = [f"dltasks GPU probe: host {facts['host']}, python {facts['python']}"]
    if not smi["found"]:
        out.append("nvidia-smi: not found")
    else:
        out.append(f"nvidia-smi: driver {smi.get('driver_version') or '?'}, CUDA "
                   f"{smi.get('cuda_version') or '?'}, {len(smi['gpus'])} GPU(s)"
                   + (f"; error: {smi['error']}" if smi["error"] else ""))
        out += [_gpu_line(g) for g in smi["gpus"]]
    if not lib["found"]:
        out.append("libcuda: not found")
    else:
        out.append(f"libcuda: driver API CUDA {lib['cuda_version'] or '?'}, "
                   + (f"cuInit failed: {lib['init_error']}" if lib["init_error"]
                      else f"{len(lib['devices'])} device(s)"))
        if not smi["gpus"]:
            out += [_gpu_line(g) for g in lib["devices"]]
    for name, f in facts["frameworks"].items():
        if f.get("error"):
            out.append(f"{name}: error: {f['error']}")
            continue
        build = f" (CUDA {f['cuda']})" if f.get("cuda") else " (CPU build)" if name == "torch" \
            else ""
        note = f"; {f['cuda_error']}" if f.get("cuda_error") else ""
        out.append(f"{name} {f['version']}{build}: {len(f['devices'])} GPU(s){note}")
        out += [_gpu_line(g) for g in f["devices"]]
    for m in facts["matmul"]:
        head = f"matmul {m['framework']} GPU {m['device']} {m['dtype']}"
        if m.get("error"):
            out.append(f"{head}: FAILED {m['error']}")
        else:
            ok = "" if m.get("check_ok") is not False else ", WRONG RESULT"
            out.append(f"{head} {m['n']}x{m['n']}: {m['tflops']} TFLOP/s "
                       f"({m['iters']} iters in {m['seconds']} s{ok})")
    out += [ProbeFinding(**f).line() for f in facts["findings"]]
    usable = [len(lib["devices"])] + [len(f.get("devices") or []) for f in
                                      facts["frameworks"].values()]
    n = max(usable) or len(smi["gpus"])
    rates = [m["tflops"] for m in facts["matmul"] if not m.get("error")]
    if facts["ok"]:
        out.append(f"OK: {n} GPU(s) usable" + (f", slowest matmul {min(rates)} TFLOP/s"
                                               if rates else ""))
    else:
        out.append("FAILED: see the ERROR lines above")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--expect", type=int, default=1, help="GPUs that must be visible (1)")
    ap.add_argument("--size", type=int, default=8192, help="matmul size n (8192)")
    ap.add_argument("--timeout", type=float, default=300, help="seconds per framework (300)")
    ap.add_argument("--show-nvidia-smi", action="store_true", help="print nvidia-smi first")
    ap.add_argument("--child", choices=FRAMEWORKS, help=argparse.SUPPRESS)
    ap.add_argument("--no-matmul", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        fn = {"torch": torch_facts, "jax": jax_facts, "tensorflow": tensorflow_facts}
        info = fn[args.child](not args.no_matmul, args.size)
        print(MARK + " " + json.dumps(info), flush=True)
        return 0
    facts = gather_probe_facts(args.expect, args.size, args.timeout)
    if args.show_nvidia_smi:
        print(facts["nvidia_smi"]["text"].rstrip() or "nvidia-smi: not found", flush=True)
    facts["nvidia_smi"].pop("text", None)
    print("\n".join(report_lines(facts)))
    print(MARK + " " + json.dumps(facts, sort_keys=True), flush=True)
    return 0 if facts["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
