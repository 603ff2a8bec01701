"""Which engine (dltasks.engine.endpoint): the docker CLI's rules over real files in a temporary
home, read the local way and the remote way (the shell script a host runs, parsed back)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from dltasks.engine.endpoint import (
    DockerView,
    Endpoint,
    Tls,
    context_id,
    local_view,
    normalize_url,
    parse_view,
    resolve_endpoint,
)
from dltasks.errors import DltError
from dltasks.scripts import script


def make_context(home: Path, name: str, host: str, *, tls: bool = False,
                 skip_verify: bool = False) -> Path:
    """A context laid out as `docker context create` writes it."""
    cid = context_id(name)
    meta = home / ".docker" / "contexts" / "meta" / cid
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({
        "Name": name, "Metadata": {},
        "Endpoints": {"docker": {"Host": host, "SkipTLSVerify": skip_verify}}}))
    tls_dir = home / ".docker" / "contexts" / "tls" / cid / "docker"
    if tls:
        tls_dir.mkdir(parents=True)
        for f in ("ca.pem", "cert.pem", "key.pem"):
            (tls_dir / f).write_text("x")
    return tls_dir


def use(home: Path, name: str) -> None:
    (home / ".docker").mkdir(exist_ok=True)
    (home / ".docker" / "config.json").write_text(json.dumps({"currentContext": name}))


def views(home: Path, env: dict[str, str]) -> list[DockerView]:
    """The same host read locally and through the remote script."""
    full = {"HOME": str(home), **env}
    local = local_view(full)
    out = subprocess.run(["sh", "-c", script("host_describe"), "_", "", ""],
                         env={"PATH": os.environ["PATH"], **full},
                         cwd=home, capture_output=True, text=True, check=True).stdout
    dv = [ln for ln in out.splitlines() if ln.startswith("dv\t")]
    return [local, parse_view(dv, str(home))]


def resolved(home: Path, env: dict[str, str], setting: str = "") -> Endpoint:
    """Both readings must agree; the answer."""
    a, b = (resolve_endpoint(setting, ".env", v) for v in views(home, env))
    assert a == b
    return a


def test_the_setting_wins_over_everything(tmp_path: Path) -> None:
    make_context(tmp_path, "box", "tcp://10.9.9.9:2375")
    use(tmp_path, "box")
    e = resolved(tmp_path, {"DOCKER_HOST": "unix:///a.sock", "DOCKER_CONTEXT": "box"},
                 setting="unix:///mine.sock")
    assert e == Endpoint("unix:///mine.sock", "DLT_DOCKER_HOST from .env")


def test_docker_host_beats_contexts(tmp_path: Path) -> None:
    make_context(tmp_path, "box", "tcp://10.9.9.9:2375")
    use(tmp_path, "box")
    e = resolved(tmp_path, {"DOCKER_HOST": "unix:///a.sock", "DOCKER_CONTEXT": "box"})
    assert (e.url, e.source, e.tls) == ("unix:///a.sock", "DOCKER_HOST", None)


def test_docker_host_with_tls_verify_uses_cert_path(tmp_path: Path) -> None:
    certs = tmp_path / "certs"
    certs.mkdir()
    for f in ("ca.pem", "cert.pem", "key.pem"):
        (certs / f).write_text("x")
    e = resolved(tmp_path, {"DOCKER_HOST": "tcp://127.0.0.1:2376", "DOCKER_TLS_VERIFY": "1",
                            "DOCKER_CERT_PATH": str(certs)})
    assert e.tls == Tls(True, str(certs / "ca.pem"), str(certs / "cert.pem"),
                        str(certs / "key.pem"))
    assert e.describe() == "tcp://127.0.0.1:2376 (DOCKER_HOST, TLS)"


def test_tls_verify_default_cert_path_is_the_config_dir(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "ca.pem").write_text("x")
    e = resolved(tmp_path, {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1"})
    assert e.tls == Tls(True, str(tmp_path / ".docker" / "ca.pem"), "", "")


def test_tls_verify_without_a_ca_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(DltError, match=r"DOCKER_TLS_VERIFY is set but ~/.docker/ca.pem does "
                                       "not exist: .*DOCKER_CERT_PATH"):
        resolved(tmp_path, {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS_VERIFY": "1"})


def test_docker_tls_without_verify(tmp_path: Path) -> None:
    e = resolved(tmp_path, {"DOCKER_HOST": "tcp://h:2376", "DOCKER_TLS": "1"})
    assert e.tls == Tls(verify=False)


def test_docker_context_variable_names_the_context(tmp_path: Path) -> None:
    tls_dir = make_context(tmp_path, "gpu-box", "tcp://10.1.2.3:2376", tls=True)
    make_context(tmp_path, "other", "unix:///other.sock")
    use(tmp_path, "other")
    e = resolved(tmp_path, {"DOCKER_CONTEXT": "gpu-box"})
    assert e.url == "tcp://10.1.2.3:2376" and e.context == "gpu-box"
    assert e.source == "context gpu-box from DOCKER_CONTEXT"
    assert e.tls == Tls(True, str(tls_dir / "ca.pem"), str(tls_dir / "cert.pem"),
                        str(tls_dir / "key.pem"))


def test_current_context_of_config_json(tmp_path: Path) -> None:
    make_context(tmp_path, "gpu-box", "unix:///run/box.sock")
    use(tmp_path, "gpu-box")
    e = resolved(tmp_path, {})
    assert e == Endpoint("unix:///run/box.sock",
                         "context gpu-box from currentContext of ~/.docker/config.json",
                         None, "gpu-box")


def test_docker_config_moves_the_config_dir(tmp_path: Path) -> None:
    alt = tmp_path / "alt"
    make_context(alt, "x", "tcp://127.0.0.1:1234", tls=True, skip_verify=True)
    use(alt, "x")
    e = resolved(tmp_path, {"DOCKER_CONFIG": str(alt / ".docker")})
    assert e.url == "tcp://127.0.0.1:1234" and e.tls is not None and not e.tls.verify
    assert e.source == "context x from currentContext of ~/alt/.docker/config.json"


def test_the_default_context_is_the_default_socket(tmp_path: Path) -> None:
    use(tmp_path, "default")
    e = resolved(tmp_path, {"DOCKER_CONTEXT": "default"})
    assert e.url == "unix:///var/run/docker.sock"


def test_a_missing_context_is_one_line(tmp_path: Path) -> None:
    use(tmp_path, "gone")
    with pytest.raises(DltError, match=r"docker context 'gone' \(from currentContext of "
                                       r"~/.docker/config.json\) does not exist: `docker context"):
        resolved(tmp_path, {})


def test_a_broken_config_json_is_one_line(tmp_path: Path) -> None:
    (tmp_path / ".docker").mkdir()
    (tmp_path / ".docker" / "config.json").write_text("{not json")
    with pytest.raises(DltError, match="~/.docker/config.json is not valid JSON"):
        resolved(tmp_path, {})


def test_a_context_without_a_docker_endpoint_is_one_line(tmp_path: Path) -> None:
    meta = tmp_path / ".docker" / "contexts" / "meta" / context_id("k8s")
    meta.mkdir(parents=True)
    (meta / "meta.json").write_text(json.dumps({"Name": "k8s", "Endpoints": {}}))
    with pytest.raises(DltError, match="has no docker endpoint"):
        resolved(tmp_path, {"DOCKER_CONTEXT": "k8s"})


def _rootless_view(tmp_path: Path, default_exists: bool) -> DockerView:
    run = tmp_path / "run"
    run.mkdir(parents=True)
    (run / "docker.sock").write_text("")
    present = {str(run / "docker.sock")} | ({"/var/run/docker.sock"} if default_exists else set())
    return DockerView({"XDG_RUNTIME_DIR": str(run)}, str(tmp_path), lambda p: None,
                      present.__contains__)


def test_rootless_socket_when_the_default_is_missing(tmp_path: Path) -> None:
    e = resolve_endpoint("", "", _rootless_view(tmp_path, default_exists=False))
    assert e.url == f"unix://{tmp_path}/run/docker.sock"
    assert "rootless" in e.source and "/var/run/docker.sock does not exist" in e.source
    assert resolve_endpoint("", "", _rootless_view(tmp_path / "b", default_exists=True)).url == \
        "unix:///var/run/docker.sock"


def test_rootless_socket_found_through_both_readings(tmp_path: Path) -> None:
    if os.path.exists("/var/run/docker.sock"):
        e = resolved(tmp_path, {"XDG_RUNTIME_DIR": str(tmp_path)})
        assert e.url == "unix:///var/run/docker.sock"  # the CLI's default wins when it exists
    else:
        import socket

        s = socket.socket(socket.AF_UNIX)
        s.bind(str(tmp_path / "docker.sock"))
        e = resolved(tmp_path, {"XDG_RUNTIME_DIR": str(tmp_path)})
        s.close()
        assert e.url == f"unix://{tmp_path}/docker.sock"


@pytest.mark.parametrize(("given", "want"), [
    ("/run/podman/podman.sock", "unix:///run/podman/podman.sock"),
    ("unix:///run/user/1000/podman/podman.sock", "unix:///run/user/1000/podman/podman.sock"),
    ("127.0.0.1:2375", "tcp://127.0.0.1:2375"),
    ("ssh://me@gpu1", "ssh://me@gpu1"),
    ("https://h:2376", "https://h:2376"),
])
def test_normalize_url(given: str, want: str) -> None:
    assert normalize_url(given) == want


@pytest.mark.parametrize("bad", ["gpu1", "ftp://x", "npipe:////./pipe/docker_engine"])
def test_bad_urls_are_one_line(bad: str) -> None:
    with pytest.raises(DltError, match=r"DLT_DOCKER_HOST="):
        normalize_url(bad)


def test_https_url_means_tls_with_the_system_cas(tmp_path: Path) -> None:
    e = resolved(tmp_path, {"DOCKER_HOST": "https://engine.example:2376"})
    assert e.tls == Tls(verify=True)
