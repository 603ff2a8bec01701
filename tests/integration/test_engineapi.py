"""engineapi against the real engine: the calls runs make, answered by dockerd itself."""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import uuid

import pytest

from dltasks.engine.api import Engine, NotFound
from dltasks.engine.client import open_engine
from dltasks.engine.lifecycle import _frames, log_bytes

pytestmark = pytest.mark.docker

LABEL = "dltasks.test"


def _container(e: Engine, image: str, script: str) -> str:
    return e.create_container({"Image": image, "Cmd": ["sh", "-c", script],
                               "Labels": {LABEL: "engineapi"}, "AttachStdout": True,
                               "AttachStderr": True, "HostConfig": {}},
                              name=f"dlt-engineapi-{uuid.uuid4().hex[:8]}")


def test_a_run_through_the_light_client(engine: object, base_image: str) -> None:
    e = open_engine()
    cid = _container(e, base_image, "echo out; echo err >&2; printf '%s' tail; exit 7")
    try:
        stream = e.attach(cid)
        e.start(cid)
        got = list(_frames(stream.read1))
        assert e.wait(cid) == 7
        joined = {sid: b"".join(d for s, d in got if s == sid) for sid in (1, 2)}
        assert joined == {1: b"out\ntail", 2: b"err\n"}
        assert log_bytes(e, cid) in (b"out\nerr\ntail", b"err\nout\ntail")
        assert e.inspect_container(cid)["State"]["ExitCode"] == 7
        assert [r["Id"] for r in e.containers(filters={"label": [f"{LABEL}=engineapi"]})
                if r["Id"] == cid] == [cid]
    finally:
        e.remove_container(cid, force=True)
    with pytest.raises(NotFound):
        e.remove_container(cid, force=True)
    with pytest.raises(NotFound):
        e.inspect_container(cid)


def test_images_tag_and_lookup(engine: object, base_image: str) -> None:
    e = open_engine()
    repo = f"dlt-engineapi-{uuid.uuid4().hex[:8]}"
    base = e.image_id(base_image)
    assert base and base.startswith("sha256:")
    assert e.image_id(f"{repo}:x") is None
    e.tag(base_image, repo, "x")
    try:
        assert e.image_id(f"{repo}:x") == base
    finally:
        with contextlib.suppress(Exception):
            engine.images.remove(f"{repo}:x")  # type: ignore[attr-defined]


def test_stop_ends_a_running_container(engine: object, base_image: str) -> None:
    e = open_engine()
    cid = _container(e, base_image, "trap 'exit 5' TERM; while :; do sleep 0.1; done")
    try:
        e.start(cid)
        e.stop(cid, timeout=5)
        assert e.wait(cid) == 5
    finally:
        e.remove_container(cid, force=True)


@pytest.mark.ssh
def test_an_ssh_url_reaches_the_engine_through_dial_stdio(ssh_lab, base_image: str,  # type: ignore[no-untyped-def]
                                                          tmp_path, monkeypatch) -> None:
    """DOCKER_HOST=ssh://user@host: one `ssh ... docker system dial-stdio` per connection,
    as the docker CLI does. ssh reads the account's ~/.ssh, not $HOME, so a wrapper first on
    PATH hands it the lab's config, key and known_hosts (the lab's sshd is real)."""
    real_ssh = shutil.which("ssh")
    assert real_ssh
    wrapper = tmp_path / "bin" / "ssh"
    wrapper.parent.mkdir()
    lab_opts = " ".join(shlex.quote(a) for a in ssh_lab.ssh_argv("gpu1")[1:-1])
    wrapper.write_text(f"#!/bin/sh\nexec {real_ssh} {lab_opts} \"$@\"\n")
    wrapper.chmod(0o755)
    monkeypatch.setenv("PATH", f"{wrapper.parent}:{os.environ['PATH']}")
    e = open_engine("ssh://dltgpu1@gpu1")
    cid = _container(e, base_image, "echo over ssh")
    try:
        stream = e.attach(cid)
        e.start(cid)
        assert b"".join(d for _, d in _frames(stream.read1)) == b"over ssh\n"
        assert e.wait(cid) == 0
    finally:
        e.remove_container(cid, force=True)
    e.close()
