"""The engine as Docker users configure it, against real engines: a second dockerd speaking TLS
on a loopback port (certificates made with openssl), reached through DOCKER_HOST + TLS variables
and through a context made by the real `docker context create`; DOCKER_CONTEXT and
currentContext choosing between two engines (runs land on the chosen one); rootless Docker's
socket under a test-made XDG_RUNTIME_DIR."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import _unavailable, dlt
from tests.gpu_engine import GpuEngine, gpu_engine_for, make_certs

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def tls_engine(engine: Any, base_image: str) -> Iterator[GpuEngine]:
    """A private dockerd: TLS with client certificates on 127.0.0.1:<port>, and a unix socket."""
    if not shutil.which("openssl"):
        _unavailable("openssl is needed to make the TLS engine's certificates")
    with gpu_engine_for(engine, base_image, tls=True) as eng:
        yield eng


def _project(project: Path, image: str, cmd: str = "sh -c 'echo ran; sleep 30'") -> Path:
    (project / ".env").write_text(f"DLT_IMAGE={image}\nDLT_GPUS=none\nDLT_TRAIN_CMD={cmd}\n")
    return project


def _on(eng_client: Any, run_id: str) -> list[Any]:
    return list(eng_client.containers.list(
            ignore_removed=True, all=True, filters={"label": f"dltasks.run={run_id}"}))


def _detached(project: Path, env: dict[str, str]) -> str:
    r = dlt("train", "--detach", cwd=project, env=env, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout.strip().splitlines()[-1]


def _tls_env(eng: GpuEngine, home: Path) -> dict[str, str]:
    return {"HOME": str(home), "DOCKER_HOST": eng.tcp_url, "DOCKER_TLS_VERIFY": "1",
            "DOCKER_CERT_PATH": str(eng.certs)}


def test_docker_host_with_tls_variables_reaches_the_tls_engine(
        tls_engine: GpuEngine, engine: Any, base_image: str, project: Path,
        tmp_path: Path) -> None:
    _project(project, base_image)
    env = _tls_env(tls_engine, tmp_path)
    cfg = dlt("config", cwd=project, env=env)
    assert f"engine: {tls_engine.tcp_url} (DOCKER_HOST, TLS)" in cfg.stdout, cfg.stdout
    run_id = _detached(project, env)
    try:
        assert len(_on(tls_engine.client, run_id)) == 1  # there, over TLS
        assert _on(engine, run_id) == []                   # not on the default engine
        ps = dlt("ps", cwd=project, env=env)
        assert ps.returncode == 0 and run_id in ps.stdout, ps.stdout + ps.stderr
    finally:
        stop = dlt("stop", run_id, cwd=project, env=env)
    assert stop.returncode == 0, stop.stderr
    assert _on(tls_engine.client, run_id) == []
    # docker-py's side (builds) over the same TLS settings
    (project / ".env").write_text(f"DLT_BASE_IMAGE={base_image}\n")
    built = dlt("extend-image", cwd=project, env=env, timeout=300)
    assert built.returncode == 0, built.stdout + built.stderr
    assert tls_engine.client.images.get(f"{project.name}:latest")
    with pytest.raises(Exception, match="No such image|Not Found|not found"):
        engine.images.get(f"{project.name}:latest")


def test_a_tls_context_made_by_docker_context_create(
        tls_engine: GpuEngine, engine: Any, base_image: str, project: Path,
        tmp_path: Path) -> None:
    _project(project, base_image)
    c = tls_engine.certs
    env = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "dcfg")}
    made = subprocess.run(
        ["docker", "context", "create", "tlsbox", "--docker",
         f"host={tls_engine.tcp_url},ca={c / 'ca.pem'},cert={c / 'cert.pem'},"
         f"key={c / 'key.pem'}"], env={**os.environ, **env}, capture_output=True, text=True)
    assert made.returncode == 0, made.stderr
    with_ctx = {**env, "DOCKER_CONTEXT": "tlsbox"}
    cfg = dlt("config", cwd=project, env=with_ctx)
    assert f"engine: {tls_engine.tcp_url} (context tlsbox from DOCKER_CONTEXT, TLS)" in cfg.stdout
    run_id = _detached(project, with_ctx)
    try:
        assert len(_on(tls_engine.client, run_id)) == 1 and _on(engine, run_id) == []
    finally:
        assert dlt("stop", run_id, cwd=project, env=with_ctx).returncode == 0


def test_current_context_chooses_between_two_engines(
        tls_engine: GpuEngine, engine: Any, base_image: str, project: Path,
        tmp_path: Path) -> None:
    _project(project, base_image)
    env = {"HOME": str(tmp_path), "DOCKER_CONFIG": str(tmp_path / "dcfg"), "DOCKER_HOST": ""}
    full = {**os.environ, **env}
    full.pop("DOCKER_HOST")
    for name, url in (("private", tls_engine.url), ("shared", "unix:///var/run/docker.sock")):
        r = subprocess.run(["docker", "context", "create", name, "--docker", f"host={url}"],
                           env=full, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    for name, client, other in (("private", tls_engine.client, engine),
                                ("shared", engine, tls_engine.client)):
        r = subprocess.run(["docker", "context", "use", name], env=full, capture_output=True,
                           text=True)
        assert r.returncode == 0, r.stderr
        cfg = dlt("config", cwd=project, env=env)
        assert f"(context {name} from currentContext of ~/dcfg/config.json)" in cfg.stdout, \
            cfg.stdout
        run_id = _detached(project, env)
        try:
            assert len(_on(client, run_id)) == 1 and _on(other, run_id) == [], name
        finally:
            assert dlt("stop", run_id, cwd=project, env=env).returncode == 0
        # DOCKER_CONTEXT beats currentContext
        flip = "shared" if name == "private" else "private"
        cfg = dlt("config", cwd=project, env={**env, "DOCKER_CONTEXT": flip})
        assert f"(context {flip} from DOCKER_CONTEXT)" in cfg.stdout


def test_rootless_socket_under_xdg_runtime_dir(tls_engine: GpuEngine, base_image: str,
                                              project: Path, tmp_path: Path) -> None:
    """In a mount namespace where /run (so /var/run/docker.sock) is an empty tmpfs, the socket
    in XDG_RUNTIME_DIR is the engine, as for a rootless Docker user."""
    _project(project, base_image, cmd="echo rootless-run")
    xdg = tmp_path / "xdg"
    xdg.mkdir()
    (xdg / "docker.sock").symlink_to(tls_engine.dir / "docker.sock")
    import sys

    argv = ["unshare", "--mount", "--propagation", "private", "sh", "-c",
            'mount -t tmpfs none /run && exec "$@"', "_", sys.executable, "-m", "dltasks"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DLT_", "DOCKER_"))}
    env["XDG_RUNTIME_DIR"] = str(xdg)
    cfg = subprocess.run([*argv, "config"], cwd=project, env=env, capture_output=True,
                         text=True, timeout=60)
    assert f"engine: unix://{xdg}/docker.sock (rootless Docker's socket in $XDG_RUNTIME_DIR, " \
           "as /var/run/docker.sock does not exist)" in cfg.stdout, cfg.stdout + cfg.stderr
    r = subprocess.run([*argv, "train"], cwd=project, env=env, capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0 and "rootless-run" in r.stdout, r.stdout + r.stderr
    assert json.loads(next((project / "runs").glob("*/manifest.json")).read_text())[
        "exit_code"] == 0


# -- TLS failures, each one line ----------------------------------------------------------------

def _one_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 1, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr, r.stderr
    return lines[0]


def test_plain_http_to_the_tls_port_says_tls_is_required(
        tls_engine: GpuEngine, project: Path, tmp_path: Path) -> None:
    line = _one_line(dlt("ps", cwd=project, env={"HOME": str(tmp_path),
                                                 "DOCKER_HOST": tls_engine.tcp_url}))
    assert line == (f"dlt: error: cannot reach the Docker engine at {tls_engine.tcp_url} "
                    "(DOCKER_HOST): it requires TLS: set DOCKER_TLS_VERIFY=1 and "
                    "DOCKER_CERT_PATH (or use a docker context made with --docker "
                    "host=...,ca=...,cert=...,key=...)")


def test_an_untrusted_engine_certificate(tls_engine: GpuEngine, project: Path,
                                         tmp_path: Path) -> None:
    other = tmp_path / "other"
    make_certs(other, name="someone-else")
    env = {**_tls_env(tls_engine, tmp_path), "DOCKER_CERT_PATH": str(other)}
    line = _one_line(dlt("ps", cwd=project, env=env))
    assert "its certificate is not trusted (" in line and "DOCKER_CERT_PATH" in line, line
    # docker-py (a build) says the same
    (project / "Dockerfile").write_text("FROM scratch\n")
    line = _one_line(dlt("build", cwd=project, env=env))
    assert "its certificate is not trusted" in line, line


def test_no_client_certificate_is_refused(tls_engine: GpuEngine, project: Path,
                                          tmp_path: Path) -> None:
    only_ca = tmp_path / "only-ca"
    only_ca.mkdir()
    shutil.copy(tls_engine.certs / "ca.pem", only_ca / "ca.pem")
    env = {**_tls_env(tls_engine, tmp_path), "DOCKER_CERT_PATH": str(only_ca)}
    line = _one_line(dlt("ps", cwd=project, env=env))
    assert "refused our client certificate" in line or "closed the TLS connection" in line, line


def test_tls_to_a_peer_that_does_not_speak_it(project: Path, tmp_path: Path,
                                              loopback_server: Any) -> None:
    port = loopback_server(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
    (tmp_path / "ca.pem").write_text("")  # never read: the handshake fails first
    make_certs(tmp_path / "c")
    env = {"HOME": str(tmp_path), "DOCKER_HOST": f"tcp://127.0.0.1:{port}",
           "DOCKER_TLS_VERIFY": "1", "DOCKER_CERT_PATH": str(tmp_path / "c")}
    line = _one_line(dlt("ps", cwd=project, env=env))
    assert "it does not speak TLS" in line, line
