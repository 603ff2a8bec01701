"""A second, private Docker engine whose GPU device driver is registered but grants nothing.

dockerd 20.10 registers its "nvidia" device driver when an executable named
``nvidia-container-runtime-hook`` is on its PATH at start. With the stand-in hook in
``tests/data/fake-nvidia-hook`` first on PATH, a GPU DeviceRequest for devices 1,2 is accepted:
the engine puts ``NVIDIA_VISIBLE_DEVICES=1,2`` into the container's environment and calls the
hook as an OCI prestart hook, which only logs what it was asked. No GPU is ever granted. This
proves what dltasks ASKS the engine for, on a machine without GPUs.

The shared engine (/var/run/docker.sock) must keep refusing GPU requests, so it is never
touched: this engine has its own data root, exec root, pid file and socket in a temporary
folder, and runs in a network namespace of its own (``unshare --net``) with no bridge, no
iptables rules and no addresses: its containers have no network at all. It is stopped (its
folder removed) at the end. It needs root, dockerd and unshare; :class:`GpuEngineUnavailable`
says which is missing.

Never start it with ``--bridge=none`` in the host's network namespace: dockerd then DELETES
the host's docker0, cutting the shared engine's containers off. In its own namespace there is
no docker0 to delete.

With ``tls=True`` it also listens on a TCP port of the host's loopback, TLS only (client
certificates required, made by :func:`make_certs` with openssl): the listening socket is made
here, in the host's network namespace, and handed to dockerd as ``-H fd://`` (systemd's
socket activation: LISTEN_FDS/LISTEN_PID), so the port is reachable from the host although
dockerd lives in a namespace of its own.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HOOK_NAME = "nvidia-container-runtime-hook"
HOOK_SOURCE = Path(__file__).resolve().parent / "data" / "fake-nvidia-hook" / HOOK_NAME
DOCKERD = shutil.which("dockerd") or "/usr/sbin/dockerd"
UNSHARE = shutil.which("unshare") or "/usr/bin/unshare"


class GpuEngineUnavailable(Exception):
    """A prerequisite (root, dockerd) is missing: the caller skips, or fails under CI."""


@dataclass
class GpuEngine:
    dir: Path
    proc: subprocess.Popen[bytes] | None = None
    client: Any = field(default=None, repr=False)
    #: With TLS: the port on 127.0.0.1 and the folder of ca.pem, cert.pem, key.pem (a client's).
    tls_port: int = 0

    @property
    def certs(self) -> Path:
        return self.dir / "certs"

    @property
    def tcp_url(self) -> str:
        return f"tcp://127.0.0.1:{self.tls_port}"

    @property
    def url(self) -> str:
        return f"unix://{self.dir / 'docker.sock'}"

    @property
    def hook_log(self) -> Path:
        return self.dir / "hook.log"

    @property
    def dockerd_log(self) -> Path:
        return self.dir / "dockerd.log"

    def hook_calls(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """What the stand-in hook was asked, one dict per call (for one run, by DLT_RUN_ID)."""
        if not self.hook_log.is_file():
            return []
        calls = [json.loads(line) for line in self.hook_log.read_text().splitlines() if line]
        if run_id is None:
            return calls
        return [c for c in calls if (c.get("env") or {}).get("DLT_RUN_ID") == run_id]

    def log_tail(self, lines: int = 15) -> str:
        text = self.dockerd_log.read_text(errors="replace") if self.dockerd_log.is_file() else ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self) -> None:
        """Stop dockerd (TERM, then KILL), its containerd, unmount leftovers, remove the folder."""
        if self.client is not None:
            self.client.close()
            self.client = None
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        _kill_own_containerd(self.dir)
        _unmount_under(self.dir)
        shutil.rmtree(self.dir, ignore_errors=True)


def _kill_own_containerd(root: Path) -> None:
    """The containerd our dockerd started, if it outlived it (only that pid, checked)."""
    pidfile = root / "exec" / "containerd" / "containerd.pid"
    try:
        pid = int(pidfile.read_text().strip())
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    except (OSError, ValueError):
        return
    if str(root) in cmdline:
        os.kill(pid, signal.SIGKILL)


def _unmount_under(root: Path) -> None:
    """Lazily unmount anything dockerd left mounted under ``root``, deepest first."""
    prefix = str(root) + "/"
    points = []
    with open("/proc/self/mountinfo", encoding="utf-8") as f:
        for line in f:
            point = line.split()[4].replace("\\040", " ")
            if point.startswith(prefix) or point == str(root):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, check=False)


def _check_prerequisites() -> None:
    if os.geteuid() != 0:
        raise GpuEngineUnavailable("a private dockerd for the GPU-request tests needs root")
    for tool in (DOCKERD, UNSHARE):
        if not os.access(tool, os.X_OK):
            raise GpuEngineUnavailable(f"no {tool} for the GPU-request tests")


def _wait_until_ready(eng: GpuEngine, timeout: float) -> Any:
    import docker

    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        if eng.proc is not None and eng.proc.poll() is not None:
            raise RuntimeError(f"the private dockerd exited with {eng.proc.returncode}:\n"
                               f"{eng.log_tail()}")
        if (eng.dir / "docker.sock").exists():
            try:
                client = docker.DockerClient(base_url=eng.url, timeout=60)
                client.ping()
                return client
            except Exception as e:  # noqa: BLE001 - not answering yet
                last = e
        time.sleep(0.2)
    raise RuntimeError(f"the private dockerd did not answer in {timeout:.0f}s ({last}):\n"
                       f"{eng.log_tail()}")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_certs(d: Path, *, name: str = "dlt-test") -> None:
    """A CA, a server certificate for 127.0.0.1 and a client certificate, in ``d``:
    ca.pem, server-cert.pem, server-key.pem, cert.pem, key.pem (the docker CLI's names)."""
    d.mkdir(parents=True, exist_ok=True)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca-key.pem",
             "-out", "ca.pem", "-days", "2", "-subj", f"/CN={name}-ca", cwd=d)
    for who, key, cert, ext in (
            ("server", "server-key.pem", "server-cert.pem",
             "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"),
            ("client", "key.pem", "cert.pem", "extendedKeyUsage=clientAuth\n")):
        (d / f"{who}.ext").write_text(ext)
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", f"{who}.csr",
                 "-subj", f"/CN={name}-{who}", cwd=d)
        _openssl("x509", "-req", "-in", f"{who}.csr", "-CA", "ca.pem", "-CAkey", "ca-key.pem",
                 "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", f"{who}.ext", cwd=d)


def start_gpu_engine(source: Any, image: str, *, timeout: float = 30,
                     tls: bool = False) -> GpuEngine:
    """Start the private engine and copy ``image`` into it from ``source`` (a docker client)."""
    _check_prerequisites()
    eng = GpuEngine(Path(tempfile.mkdtemp(prefix="dlt-gpu-engine-")))
    listener: socket.socket | None = None
    try:
        bindir = eng.dir / "bin"
        bindir.mkdir()
        hook = bindir / HOOK_NAME
        shutil.copyfile(HOOK_SOURCE, hook)  # a copy: works even if a checkout lost the +x bit
        hook.chmod(hook.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
        env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "DLT_"))}
        env["PATH"] = f"{bindir}:{env.get('PATH', '/usr/sbin:/usr/bin:/sbin:/bin')}"
        env["FAKE_NVIDIA_HOOK_LOG"] = str(eng.hook_log)  # the hook runs with dockerd's env
        argv = [UNSHARE, "--net", "--", DOCKERD, "--data-root", str(eng.dir / "data"),
                "--exec-root", str(eng.dir / "exec"), "--pidfile", str(eng.dir / "docker.pid"),
                "-H", eng.url,
                "--bridge=none", "--iptables=false", "--ip-forward=false", "--ip-masq=false"]
        stdin: Any = subprocess.DEVNULL
        if tls:
            make_certs(eng.certs)
            c = eng.certs
            listener = socket.socket()
            listener.bind(("127.0.0.1", 0))
            listener.listen(64)
            eng.tls_port = listener.getsockname()[1]
            argv += ["-H", "fd://", "--tlsverify", f"--tlscacert={c / 'ca.pem'}",
                     f"--tlscert={c / 'server-cert.pem'}", f"--tlskey={c / 'server-key.pem'}"]
            # the listener becomes fd 3 of dockerd, LISTEN_PID its pid (exec keeps the sh's)
            argv = ["sh", "-c", 'export LISTEN_PID=$$; exec "$@" 3<&0 0</dev/null', "_", *argv]
            env["LISTEN_FDS"] = "1"
            stdin = listener.fileno()
        with open(eng.dockerd_log, "wb") as log:
            eng.proc = subprocess.Popen(argv, stdin=stdin, stdout=log, stderr=log,
                                        env=env, cwd=eng.dir, start_new_session=True)
        if listener is not None:
            listener.close()  # dockerd holds it now
        eng.client = _wait_until_ready(eng, timeout)
        eng.client.images.load(source.images.get(image).save(named=True))
        eng.client.images.get(image)
    except BaseException:
        eng.stop()
        raise
    return eng


@contextlib.contextmanager
def gpu_engine_for(source: Any, image: str, *, tls: bool = False, timeout: float = 30,
                   shared: bool = False, loopback_up: bool = False) -> Iterator[GpuEngine]:
    """The private engine for one fixture: started with ``image`` copied in, stopped after.
    Missing prerequisites fail under CI and skip elsewhere (tests.conftest._unavailable).
    ``shared``: its socket reachable by the test users (group docker); ``loopback_up``: its
    network namespace's loopback up, so host-network containers meet there."""
    from tests.conftest import _unavailable

    try:
        eng = start_gpu_engine(source, image, timeout=timeout, tls=tls)
    except GpuEngineUnavailable as e:
        _unavailable(str(e))
    try:
        if shared:
            eng.dir.chmod(0o755)
        if loopback_up:
            assert eng.proc is not None
            subprocess.run(["nsenter", "-t", str(eng.proc.pid), "-n", "ip", "link", "set",
                            "lo", "up"], check=True)
        yield eng
    finally:
        eng.stop()
