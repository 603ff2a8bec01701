"""Whether this machine's engine is on this machine (dltasks.engine.endpoint.engine_elsewhere),
and LocalTarget.forward_port refusing a port published on another machine's loopback (the
decision over endpoints as data: no connection is made)."""

from __future__ import annotations

import pytest
from invoke import Context

from dltasks.engine.client import EngineAddr
from dltasks.engine.endpoint import Endpoint, engine_elsewhere
from dltasks.errors import DltError
from dltasks.hosts.shell import Shell
from dltasks.hosts.target import LocalTarget, Resources
from dltasks.settings import Settings


@pytest.mark.parametrize("url", [
    "unix:///var/run/docker.sock", "unix:///run/user/1000/docker.sock",
    "tcp://127.0.0.1:2375", "tcp://127.1.2.3:2376", "tcp://localhost:2375",
    "tcp://LOCALHOST:2375", "tcp://[::1]:2375", "http://127.0.0.1:2375", "https://localhost:2376",
])
def test_this_machines_engine(url: str) -> None:
    assert engine_elsewhere(url) == ""


@pytest.mark.parametrize(("url", "host"), [
    ("ssh://me@gpu1", "gpu1"), ("ssh://gpu1", "gpu1"), ("ssh://me@gpu1:2222", "gpu1"),
    ("tcp://10.0.0.5:2375", "10.0.0.5"), ("tcp://gpu1.lab:2376", "gpu1.lab"),
    ("https://gpu1.lab:2376", "gpu1.lab"), ("tcp://[fd00::5]:2375", "fd00::5"),
    ("tcp://127.evil.example:2375", "127.evil.example"), ("tcp://0.0.0.0:2375", "0.0.0.0"),
])
def test_another_machines_engine(url: str, host: str) -> None:
    assert engine_elsewhere(url) == host


def _local(url: str, source: str) -> LocalTarget:
    settings = Settings()
    endpoint = Endpoint(url, source)
    return LocalTarget(name="local", shell=Shell(Context()), settings=settings,
                       endpoint=endpoint, resources=Resources(EngineAddr.of(endpoint, 5)))


def test_forward_port_refuses_a_port_on_another_machines_loopback() -> None:
    t = _local("ssh://me@gpu1", "context gpu1 from DOCKER_CONTEXT")
    with pytest.raises(DltError) as err:
        t.forward_port(8888)
    msg = err.value.message
    assert "\n" not in msg
    assert "port 8888 is published on gpu1's loopback, not this machine's" in msg
    assert "context gpu1 from DOCKER_CONTEXT" in msg and "`fab -H gpu1 ...`" in msg


def test_forward_port_is_the_same_port_for_this_machines_engine() -> None:
    for url in ("unix:///var/run/docker.sock", "tcp://127.0.0.1:2375"):
        with _local(url, "the default socket").forward_port(8888) as here:
            assert here == 8888
