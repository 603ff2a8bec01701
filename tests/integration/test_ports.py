"""`--port` on a real engine, this machine: loopback only, engine-picked ports, URLs that answer,
`ps`, the record, `forward` of a local run, and the refusals."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import dlt

pytestmark = pytest.mark.docker

SERVE = "python3 -m http.server 8000"
URL = re.compile(r"dlt: train (\S+): (http://127\.0\.0\.1:(\d+)\S*) \(port 8000 of the container, "
                 r"127\.0\.0\.1:(\d+) on local\)")


def wait_answer(url: str, timeout: float = 60) -> int:
    """The HTTP status ``url`` answers with, once its server listens (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(url, timeout=5) as r:
                return int(r.status)
        except urllib.error.HTTPError as e:
            return e.code
        except (OSError, urllib.error.URLError):
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@pytest.fixture
def proj(project: Path, base_image: str) -> Path:
    name = f"p{os.getpid()}-{project.parent.name[-6:]}".lower().replace("_", "-")
    (project / ".env").write_text(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\n"
                                  f"DLT_GPUS=none\nDLT_TRAIN_CMD={SERVE}\n")
    return project


def _cleanup(engine: object, proj: Path) -> None:
    name = (proj / ".env").read_text().split("DLT_PROJECT=")[1].split()[0]
    for c in engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"}):
        c.remove(force=True)


def test_detached_ports_on_loopback_engine_picked_answer_and_are_listed(
        proj: Path, engine: object) -> None:
    try:
        runs = []
        for _ in range(2):
            r = dlt("train", "--port", "8000", "--detach", cwd=proj)
            assert r.returncode == 0, r.stderr
            m = URL.search(r.stderr)
            assert m, r.stderr
            assert m.group(1) == r.stdout.strip()
            runs.append(m)
        for m in runs:
            c = engine.containers.get(  # type: ignore[attr-defined]
                json.loads((proj / "runs" / m.group(1) / "manifest.json").read_text())
                ["container_id"])
            bound = c.attrs["NetworkSettings"]["Ports"]["8000/tcp"]
            assert [b["HostIp"] for b in bound] == ["127.0.0.1"]  # never 0.0.0.0
            assert c.attrs["HostConfig"]["PortBindings"]["8000/tcp"][0]["HostIp"] == "127.0.0.1"
            assert bound[0]["HostPort"] == m.group(4) == m.group(3)  # nothing to forward here
            assert wait_answer(m.group(2)) == 200
            rec = json.loads((proj / "runs" / m.group(1) / "manifest.json").read_text())
            assert rec["ports"] == [{"container": 8000, "host_ip": "127.0.0.1",
                                     "host_port": int(m.group(4))}]
        assert runs[0].group(4) != runs[1].group(4)  # the same container port, two host ports
        ps = dlt("ps", cwd=proj)
        assert "PORTS" in ps.stdout
        for m in runs:
            line = next(ln for ln in ps.stdout.splitlines() if ln.startswith(m.group(1)))
            assert line.endswith(f"127.0.0.1:{m.group(4)}->8000")
        fwd = dlt("forward", runs[0].group(1), cwd=proj)
        assert fwd.returncode == 0, fwd.stderr
        assert f"http://127.0.0.1:{runs[0].group(4)} (port 8000" in fwd.stderr
        # review item 12: --port on a local run's forward cannot apply, and says so
        fwd = dlt("forward", runs[0].group(1), "--port", "9999:8000", cwd=proj)
        assert fwd.returncode == 0, fwd.stderr
        assert fwd.stderr.startswith("dlt: warning: --port not applied: the ports of "
                                     f"{runs[0].group(1)} are on this machine already"), fwd.stderr
        assert f"http://127.0.0.1:{runs[0].group(4)} (port 8000" in fwd.stderr
        for m in runs:
            assert dlt("stop", m.group(1), cwd=proj).returncode == 0
        with pytest.raises(OSError):
            urllib.request.urlopen(runs[0].group(2), timeout=5)
        ended = dlt("forward", runs[0].group(1), cwd=proj)
        assert ended.returncode == 1
        assert ended.stderr.strip().splitlines() == [
            f"dlt: error: no run {runs[0].group(1)!r} on local: `dlt ps` lists your runs on "
            "the engine, `dlt runs` your records"]
    finally:
        _cleanup(engine, proj)


def test_forward_of_a_run_without_ports_or_ended_is_one_line(proj: Path, engine: object) -> None:
    try:
        r = dlt("train", "--detach", cwd=proj, env={"DLT_TRAIN_CMD": "sleep 60"})
        assert r.returncode == 0, r.stderr
        rid = r.stdout.strip()
        f = dlt("forward", rid, cwd=proj)
        assert f.returncode == 1
        assert f.stderr.strip() == (f"dlt: error: run {rid} publishes no ports; start it with "
                                    "--port: `dlt train --port CONTAINER --detach`")
        done = dlt("train", "--port", "8000", "--detach", cwd=proj, env={"DLT_TRAIN_CMD": "true"})
        rid2 = done.stdout.strip()
        deadline = time.monotonic() + 60
        while engine.containers.get(  # type: ignore[attr-defined]
                json.loads((proj / "runs" / rid2 / "manifest.json").read_text())
                ["container_id"]).status == "running":
            assert time.monotonic() < deadline
            time.sleep(0.2)
        f = dlt("forward", rid2, cwd=proj)
        assert f.returncode == 1
        assert f.stderr.strip() == f"dlt: error: run {rid2} has ended; nothing to forward"
    finally:
        _cleanup(engine, proj)


def test_attached_run_answers_while_it_runs_and_ctrl_c_leaves_nothing(
        proj: Path, engine: object) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    m: re.Match[str] | None = None
    p = subprocess.Popen([sys.executable, "-m", "dltasks", "train", "--port", "8000"], cwd=proj,
                         env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert p.stderr is not None
        line = ""
        deadline = time.monotonic() + 120
        while not URL.search(line):
            assert time.monotonic() < deadline and p.poll() is None, line
            line = p.stderr.readline()
        m = URL.search(line)
        assert m
        assert wait_answer(m.group(2)) == 200
        rec = json.loads((proj / "runs" / m.group(1) / "manifest.json").read_text())
        assert rec["ports"][0]["host_port"] == int(m.group(4))
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
        assert p.returncode == 130, err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
        left = engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.run={m.group(1)}"}
        ) if m else []
        _cleanup(engine, proj)
    assert m and left == []
    with pytest.raises(OSError):
        urllib.request.urlopen(m.group(2), timeout=5)


def test_port_refused_with_jobs_and_slurm_and_bad_values(proj: Path) -> None:
    for flags, what in ((["--nnodes", "2"], "--nnodes"), (["--slurm"], "--slurm")):
        r = dlt("train", "--port", "8000", *flags, cwd=proj)
        assert r.returncode == 1
        assert r.stderr.strip().splitlines() == [
            "dlt: error: --port publishes a port of one run's container on one host: not "
            f"with {what}; start a single run with --port, or reach the node's port with "
            "`ssh -L`"]
    r = dlt("train", "--port", "0.0.0.0:80:8000", cwd=proj)
    assert r.returncode == 1 and len(r.stderr.strip().splitlines()) == 1
    assert "host's 127.0.0.1 only" in r.stderr


def test_a_taken_host_port_is_one_line_with_the_fix_and_leaves_nothing(
        proj: Path, engine: object) -> None:
    """Review item 4: `--port HOST:C` with HOST busy on the host's 127.0.0.1."""
    name = (proj / ".env").read_text().split("DLT_PROJECT=")[1].split()[0]
    taken = socket.create_server(("127.0.0.1", 0))
    busy = taken.getsockname()[1]
    try:
        for detach in (["--detach"], []):
            r = dlt("train", "--port", f"{busy}:8000", *detach, cwd=proj)
            assert r.returncode != 0, r.stdout + r.stderr
            lines = r.stderr.strip().splitlines()
            assert lines == [f"dlt: error: port {busy} on local's 127.0.0.1 is taken (--port "
                             "HOST:CONTAINER): omit HOST (a free one is picked) or pick "
                             "another"], r.stderr
            assert engine.containers.list(  # type: ignore[attr-defined]
                ignore_removed=True, all=True, filters={"label": f"dltasks.project={name}"}) == []
    finally:
        taken.close()
        _cleanup(engine, proj)


def test_a_run_that_ends_at_once_records_no_empty_ports(proj: Path, engine: object) -> None:
    """Review item 11: a run gone before its ports were read keeps no `ports: []`."""
    try:
        for detach in ([], ["--detach"]):
            r = dlt("train", "--port", "8000", *detach, cwd=proj, env={"DLT_TRAIN_CMD": "true"})
            assert r.returncode == 0, r.stderr
        for rec in (proj / "runs").glob("*/manifest.json"):
            assert json.loads(rec.read_text()).get("ports") != [], rec.read_text()
    finally:
        _cleanup(engine, proj)
