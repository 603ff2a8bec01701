"""`inv doctor`: pure diagnosis over gathered facts; each finding names its fix.

:func:`diagnose` takes a :class:`DoctorFacts` (gathered read-only by :mod:`.probes`) and
returns findings. Checks that could not run say so (level ``info``) instead of passing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from dltasks.hostsetup.facts import DriverInfo
from dltasks.hostsetup.toolkit import daemon_json_has_nvidia

OK, INFO, WARN, ERROR = "ok", "info", "warn", "error"
GIB = 1024**3


@dataclass(frozen=True)
class Finding:
    check: str
    level: str
    message: str
    fix: str = ""


@dataclass(frozen=True)
class DoctorFacts:
    engine_url: str
    engine_source: str = ""  # why that engine (dltasks.engine.endpoint): "context gpu-box from ..."
    engine_error: str = ""  # why the engine could not be reached; "" when it answered
    dockerd_found: bool = True
    start_command: str = "systemctl start docker"
    restart_command: str = "systemctl restart docker"
    user: str = ""
    in_docker_group: bool = False
    is_root: bool = False
    engine_version: str = ""
    runtimes: tuple[str, ...] = ()
    daemon_json: str = ""
    ctk_version: str = ""
    docker_root_dir: str = ""
    disk_free: int | None = None  # bytes free where images live; None: not measured
    gpu_checks: bool = True
    driver: DriverInfo | None = None  # None: no nvidia-smi
    smi_error: str = ""  # nvidia-smi exists but failed: its output
    gpu_probe: str | None = None  # output or engine error of nvidia-smi in a GPU container
    gpu_probe_ok: bool = False
    nvml_broken: tuple[str, ...] = ()  # running GPU containers where NVML fails
    image: str = ""  # the image the checks ran in ("" when none was available)
    image_is_project: bool = False
    image_env: Mapping[str, str] = field(default_factory=dict)
    shm_bytes: int | None = None
    shm_mode: str = ""  # "--ipc=host" or "--shm-size=16g"
    shm_need: int = GIB
    stale: str | None = None  # None: not checked; "": up to date; else why it is stale
    gpu_mode: str = ""  # how a run would get GPUs (dltasks.gpu.modes): runtime, cdi, direct, none
    gpu_mode_why: str = ""


# --------------------------------------------------------------------------- pure helpers

_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([bkmgt]?)i?b?\s*$", re.IGNORECASE)


def parse_size(text: str) -> int:
    """``512m``, ``16g``, ``1.5GiB``, ``1024`` (bytes) -> bytes, 1024-based like Docker."""
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"not a size: {text!r}")
    mult = {"": 1, "b": 1, "k": 1024, "m": 1024**2, "g": GIB, "t": 1024**4}[m.group(2).lower()]
    return int(float(m.group(1)) * mult)


def human_kib(n: int) -> str:
    for unit, size in (("TiB", 1024**4), ("GiB", GIB), ("MiB", 1024**2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B"


def parse_df(output: str) -> tuple[int, int] | None:
    """(total, available) bytes from ``df -Pk PATH`` output."""
    lines = [ln.split() for ln in output.strip().splitlines()[1:] if ln.strip()]
    if not lines or len(lines[-1]) < 4:
        return None
    try:
        return int(lines[-1][1]) * 1024, int(lines[-1][3]) * 1024
    except ValueError:
        return None


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in re.findall(r"\d+", text)[:3])


_OPS = {
    ">=": lambda a, b: a >= b, "<=": lambda a, b: a <= b, ">": lambda a, b: a > b,
    "<": lambda a, b: a < b, "=": lambda a, b: a == b, "==": lambda a, b: a == b,
}
_COND = re.compile(r"^(cuda|driver|brand|arch)(>=|<=|==|=|>|<)(\S+)$")


def _cond_holds(cond: str, driver: DriverInfo) -> bool | None:
    m = _COND.match(cond.strip().lower())
    if not m:
        return None
    key, op, want = m.groups()
    if key == "brand":
        return driver.brand == want if driver.brand else False
    if key == "arch":
        return True  # the runtime checks the architecture; images are pulled for the host's
    have = driver.cuda_version if key == "cuda" else driver.driver_version
    if not have:
        return False
    width = len(version_tuple(want))
    return bool(_OPS[op](version_tuple(have)[:width], version_tuple(want)))


def required_cuda(env: Mapping[str, str]) -> str:
    """The constraint the NVIDIA runtime enforces for an image, as text ("" for none).

    NVIDIA_REQUIRE_CUDA wins; else CUDA_VERSION means ``cuda>=major.minor``;
    NVIDIA_DISABLE_REQUIRE switches the check off."""
    if env.get("NVIDIA_DISABLE_REQUIRE", "").lower() in ("1", "true", "yes"):
        return ""
    req = env.get("NVIDIA_REQUIRE_CUDA", "").strip()
    if req:
        return req
    cuda = version_tuple(env.get("CUDA_VERSION", ""))
    return f"cuda>={cuda[0]}.{cuda[1] if len(cuda) > 1 else 0}" if cuda else ""


def cuda_satisfied(requirement: str, driver: DriverInfo) -> bool:
    """Evaluate an NVIDIA_REQUIRE_* expression like libnvidia-container does:
    space-separated alternatives (OR) of comma-separated conditions (AND)."""
    if not requirement.strip():
        return True
    for alternative in requirement.split():
        results = [_cond_holds(c, driver) for c in alternative.split(",") if c]
        if results and all(r is True for r in results):
            return True
    return False


def shm_of_df(output: str) -> int | None:
    parsed = parse_df(output)
    return parsed[0] if parsed else None


# --------------------------------------------------------------------------- the diagnosis

def _engine(f: DoctorFacts) -> Finding:
    err = f.engine_error
    at = f"{f.engine_url} ({f.engine_source})" if f.engine_source else f.engine_url
    if not err:
        return Finding("engine", OK, f"Docker engine {f.engine_version} answers at {at}")
    if "permission denied" in err.lower():
        if f.in_docker_group:
            fix = ("your account is in the docker group but this login session predates it: "
                   "log out and in again (or run `newgrp docker`)")
        else:
            fix = (f"add {f.user or 'your user'} to the docker group: `sudo usermod -aG docker "
                   f"{f.user or '$USER'}`, then log out and in again (or run `inv setup`)")
        return Finding("engine", ERROR, f"permission denied on the Docker socket at {at}", fix)
    if not f.dockerd_found and f.engine_url.startswith("unix://"):
        return Finding("engine", ERROR, f"no Docker engine installed (nothing at "
                       f"{f.engine_url})", "run `inv setup` to install it from your distribution")
    return Finding("engine", ERROR, f"cannot reach the Docker engine at {at}: "
                   f"{why_unreachable(err)}",
                   f"start it (`sudo {f.start_command}`), or point DLT_DOCKER_HOST/DOCKER_HOST "
                   "at a running engine")


def why_unreachable(err: str) -> str:
    """A connection failure of docker-py, said in a few words."""
    if "FileNotFoundError" in err or "No such file" in err or "no socket there" in err:
        return "no socket there (the engine is not running)"
    if "Connection refused" in err or "ConnectionRefused" in err or "nothing listens" in err:
        return "connection refused (nothing listens there)"
    if err.startswith("cannot reach ") and ": " in err:  # our own line: what follows the name
        return _first_line(err.split(": ", 1)[1])
    return _first_line(err)


def _first_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[0][:200] if lines else ""


#: The first engine that drops packets from other machines to ports published on 127.0.0.1
#: (moby/moby#45610, fixed by moby/moby#49325 in 28.0.0).
LOOPBACK_PORTS_SAFE_FROM = (28,)


def _loopback_ports(f: DoctorFacts) -> Finding | None:
    """A warning for an engine that lets the LAN reach ports published on the host's loopback
    (`--port`, `notebook`, `tensorboard` publish there); None when the engine is newer or its
    version is unknown."""
    have = version_tuple(f.engine_version)
    if not have or have >= LOOPBACK_PORTS_SAFE_FROM:
        return None
    return Finding("ports", WARN, f"Docker engine {f.engine_version} (< 28.0) lets other "
                   "machines on the host's network reach ports published on its 127.0.0.1 "
                   "(moby/moby#45610): a notebook's or TensorBoard's port is not kept to the host",
                   "upgrade the engine to 28.0 or newer, or firewall it: `iptables -t raw -I "
                   "PREROUTING ! -i lo -d 127.0.0.0/8 -j DROP`")


def _driver(f: DoctorFacts) -> Finding:
    if f.driver is None:
        return Finding("driver", ERROR, "no NVIDIA driver (`nvidia-smi` not found)",
                       "install the NVIDIA driver and reboot (see `inv setup`), or pass "
                       "--no-gpu on a CPU-only machine")
    if f.smi_error:
        if "mismatch" in f.smi_error.lower():
            return Finding("driver", ERROR, "NVIDIA driver/library version mismatch (the "
                           "driver was upgraded but the old kernel module is loaded)",
                           "reboot the host")
        return Finding("driver", ERROR, f"nvidia-smi fails: {_first_line(f.smi_error)}",
                       "reinstall the NVIDIA driver for the running kernel, then reboot")
    return Finding("driver", OK, f"NVIDIA driver {f.driver.driver_version} "
                   f"(CUDA {f.driver.cuda_version})")


def _mode(f: DoctorFacts) -> Finding:
    if f.gpu_mode in ("", "none"):
        return Finding("gpu mode", INFO, f"runs would get no GPU ({f.gpu_mode_why or 'unknown'})")
    return Finding("gpu mode", OK, f"runs get GPUs by {f.gpu_mode}: {f.gpu_mode_why}")


def _runtime(f: DoctorFacts) -> list[Finding]:
    probe = f.gpu_probe or ""
    if f.gpu_mode in ("cdi", "direct") and "nvidia" not in f.runtimes:
        return [Finding("toolkit", INFO, f"no NVIDIA runtime, none needed: runs use "
                        f"{f.gpu_mode} mode")]
    no_select = "could not select device driver" in probe
    if "nvidia" in f.runtimes and not no_select:
        return [Finding("toolkit", OK, "the engine has the nvidia runtime")]
    if daemon_json_has_nvidia(f.daemon_json):
        return [Finding("toolkit", ERROR, "the nvidia runtime is in /etc/docker/daemon.json "
                        "but the running engine has not loaded it",
                        f"restart the engine (`sudo {f.restart_command}`)")]
    what = ("the NVIDIA Container Toolkit is installed but not configured for Docker"
            if f.ctk_version else "the NVIDIA Container Toolkit is missing")
    seen = " (a GPU container fails: could not select device driver)" if no_select else ""
    return [Finding("toolkit", ERROR, f"{what}; the engine has no nvidia runtime{seen}",
                    "run `inv install-nvidia-docker`")]


def _gpu_container(f: DoctorFacts) -> list[Finding]:
    out: list[Finding] = []
    probe = f.gpu_probe
    if probe is not None and "Failed to initialize NVML" in probe:
        if "mismatch" in probe.lower():
            out.append(Finding("gpu-container", ERROR, "Failed to initialize NVML: driver/"
                               "library version mismatch", "reboot the host"))
        else:
            out.append(Finding("gpu-container", ERROR, "a new GPU container fails: Failed to "
                               "initialize NVML", f"restart the engine (`sudo "
                               f"{f.restart_command}`); if it persists, reinstall the toolkit "
                               "(`inv install-nvidia-docker`)"))
    elif f.gpu_probe_ok:
        out.append(Finding("gpu-container", OK, f"nvidia-smi works in a container ({f.image})"))
    elif probe is not None and "could not select device driver" not in probe:
        out.append(Finding("gpu-container", ERROR, f"a GPU container fails: {_first_line(probe)}",
                           "run `inv test-gpu` for details"))
    for name in f.nvml_broken:
        out.append(Finding("gpu-container", ERROR, f"container {name} lost its GPUs (Failed to "
                           "initialize NVML: Unknown Error), typical after `systemctl "
                           "daemon-reload` with the systemd cgroup driver",
                           f"restart it (`docker restart {name}`); to prevent it, run `sudo "
                           "nvidia-ctk system create-dev-char-symlinks --create-all` or use "
                           "CDI device requests"))
    return out


def _cuda(f: DoctorFacts) -> Finding | None:
    if f.driver is None or f.smi_error or not f.image:
        return None
    req = required_cuda(f.image_env)
    if not req:
        return Finding("cuda", OK, f"{f.image} states no CUDA requirement")
    if cuda_satisfied(req, f.driver):
        return Finding("cuda", OK, f"driver CUDA {f.driver.cuda_version} satisfies "
                       f"{f.image} ({req.split()[0]})")
    return Finding("cuda", ERROR, f"the driver supports CUDA {f.driver.cuda_version or '?'} "
                   f"(driver {f.driver.driver_version}) but {f.image} needs "
                   f"{req.split()[0]}",
                   "upgrade the NVIDIA driver, or use a base image built for an older CUDA "
                   "(DLT_BASE_IMAGE)")


def _shm(f: DoctorFacts) -> Finding:
    if f.shm_bytes is None:
        return Finding("shm", INFO, "/dev/shm not checked (no image to check it in: run "
                       "`inv extend-image` or `inv base-image`)")
    if f.shm_bytes < f.shm_need:
        return Finding("shm", WARN, f"/dev/shm is {human_kib(f.shm_bytes)} in a run "
                       f"({f.shm_mode}); want at least {human_kib(f.shm_need)} (PyTorch "
                       "DataLoader workers share batches through it)",
                       f"set DLT_SHM_SIZE={max(1, f.shm_need // GIB)}g in .env, or leave it "
                       "empty to share the host's /dev/shm (--ipc=host)")
    return Finding("shm", OK, f"/dev/shm is {human_kib(f.shm_bytes)} in a run ({f.shm_mode})")


def _disk(f: DoctorFacts, min_free: int) -> Finding:
    where = f.docker_root_dir or "the Docker root dir"
    if f.disk_free is None:
        return Finding("disk", INFO, f"free space at {where} not measured")
    if f.disk_free < min_free:
        return Finding("disk", WARN, f"only {human_kib(f.disk_free)} free at {where} (images "
                       f"need several GiB each; want {human_kib(min_free)})",
                       "remove unused images (`docker image prune`) or move the engine's "
                       "data-root to a larger disk")
    return Finding("disk", OK, f"{human_kib(f.disk_free)} free at {where}")


def _stale(f: DoctorFacts) -> Finding:
    if f.stale is None:
        return Finding("image", INFO, "project image freshness not checked")
    if f.stale:
        return Finding("image", WARN, f"project image not current: {f.stale}",
                       "run `inv extend-image`")
    return Finding("image", OK, "the project image matches its requirements")


def diagnose(f: DoctorFacts, *, min_free: int = 20 * GIB) -> list[Finding]:
    """Every finding, engine first; checks that depend on the engine stop when it is down."""
    out = [_engine(f)]
    if f.engine_error:
        return out
    ports = _loopback_ports(f)
    if ports:
        out.append(ports)
    if f.gpu_checks:
        out.append(_driver(f))
        out.append(_mode(f))
        out += _runtime(f)
        out += _gpu_container(f)
        cuda = _cuda(f)
        if cuda:
            out.append(cuda)
    out.append(_shm(f))
    out.append(_disk(f, min_free))
    out.append(_stale(f))
    return out


def render(findings: Sequence[Finding]) -> str:
    marks = {OK: "ok   ", INFO: "info ", WARN: "WARN ", ERROR: "ERROR"}
    lines = []
    for x in findings:
        lines.append(f"{marks[x.level]} {x.check:<13} {x.message}")
        if x.fix and x.level in (WARN, ERROR):
            lines.append(f"      {'':<13} fix: {x.fix}")
    errors = sum(1 for x in findings if x.level == ERROR)
    warns = sum(1 for x in findings if x.level == WARN)
    lines.append("")
    lines.append("no problems found" if not errors and not warns
                 else f"{errors} error(s), {warns} warning(s)")
    return "\n".join(lines)


def exit_code(findings: Sequence[Finding]) -> int:
    return 1 if any(x.level == ERROR for x in findings) else 0
