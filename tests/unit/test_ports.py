"""The pure parts of ports: URL templates and their masking, the printed line, the labels, the
record's rows, the listing's column, the forwarder's command line and pid file."""

from __future__ import annotations

import io
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest

from dltasks.engine.spec import PortBinding, bound_ports, url_labels
from dltasks.errors import DltError
from dltasks.runs.listing import ports_text
from dltasks.runs.ports import (
    PortUrl,
    check_ports_allowed,
    container_env,
    expand,
    port_line,
    urls_of,
)
from dltasks.runs.record import PortRow, RunRecord

TOKEN = "s3cr3t-token-0123456789"


def test_template_expands_from_the_container_env_and_masks_the_values() -> None:
    env = container_env({"Config": {"Env": ["JUPYTER_TOKEN=" + TOKEN, "A=b=c", "NOEQ"]}})
    assert env == {"JUPYTER_TOKEN": TOKEN, "A": "b=c"}
    assert expand("/lab?token=${JUPYTER_TOKEN}", env) == (f"/lab?token={TOKEN}",
                                                         "/lab?token=***")
    assert expand("/x/${A}/${MISSING}", env) == ("/x/b=c/", "/x/***/")
    assert expand("/plain", env) == ("/plain", "/plain")
    assert expand("$JUPYTER_TOKEN", env) == ("$JUPYTER_TOKEN", "$JUPYTER_TOKEN")  # ${} only


def test_the_line_shows_a_secret_to_a_terminal_only() -> None:
    [u] = urls_of([PortBinding(8888, 49153, "127.0.0.1", "/lab?token=${T}")], {8888: 8890},
                  {"T": TOKEN})
    assert u == PortUrl(8888, "127.0.0.1", 49153, 8890, f"http://127.0.0.1:8890/lab?token={TOKEN}",
                        "http://127.0.0.1:8890/lab?token=***")
    tty = port_line("notebook", "R1", "gpu1", u, terminal=True,
                    full_url_by="fab -H gpu1 forward R1")
    assert tty == (f"dlt: notebook R1: http://127.0.0.1:8890/lab?token={TOKEN} (port 8888 of "
                   "the container, 127.0.0.1:49153 on gpu1)")
    log = port_line("notebook", "R1", "gpu1", u, terminal=False,
                    full_url_by="fab -H gpu1 forward R1")
    assert TOKEN not in log
    assert log == ("dlt: notebook R1: http://127.0.0.1:8890/lab?token=*** (port 8888 of the "
                   "container, 127.0.0.1:49153 on gpu1); the full URL: `fab -H gpu1 forward R1` "
                   "in a terminal")
    [plain] = urls_of([PortBinding(8000, 8000)], {}, {})  # not forwarded: the host's port
    assert port_line("train", "R1", "local", plain, terminal=False, full_url_by="x") == (
        "dlt: train R1: http://127.0.0.1:8000 (port 8000 of the container, 127.0.0.1:8000 on "
        "local)")


def test_the_path_travels_as_a_label_and_comes_back_with_the_bound_port() -> None:
    ports = (PortBinding(8888, path="/lab?token=${T}"), PortBinding(6006))
    labels = url_labels(ports)
    assert labels == {"dltasks.url.8888": "/lab?token=${T}"}
    inspected = {"Config": {"Labels": labels}, "NetworkSettings": {"Ports": {
        "8888/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49153"}],
        "6006/tcp": [{"HostIp": "127.0.0.1", "HostPort": "49154"}]}}}
    assert bound_ports(inspected) == (PortBinding(6006, 49154),
                                      PortBinding(8888, 49153, path="/lab?token=${T}"))


def test_a_plan_labels_the_url_path(tmp_path: Path) -> None:
    from dltasks.runs.plan import RunRequest
    from tests.unit.test_runplan import plan, plan_project

    req = RunRequest("notebook", "jupyter lab", ports=(PortBinding(8888, path="/?t=${T}"),))
    p = plan(plan_project(tmp_path), req)
    assert p.spec.labels["dltasks.url.8888"] == "/?t=${T}"
    assert p.spec.ports == (PortBinding(8888, path="/?t=${T}"),)


def test_record_keeps_ports_only_when_there_are_some() -> None:
    rec = RunRecord("20261126-141502-a3f9", kind="train")
    assert "ports" not in rec.to_json()
    with_ports = rec.but(ports=(PortRow(8000, "127.0.0.1", 49153),))
    data = json.loads(json.dumps(with_ports.to_json()))
    assert data["ports"] == [{"container": 8000, "host_ip": "127.0.0.1", "host_port": 49153}]
    back = RunRecord.from_json(data)
    assert back.ports == (PortRow(8000, "127.0.0.1", 49153),)
    assert back.to_json() == data


def test_the_listing_column() -> None:
    rows: list[dict[str, Any]] = [
        {"IP": "127.0.0.1", "PrivatePort": 8000, "PublicPort": 49153, "Type": "tcp"},
        {"IP": "127.0.0.1", "PrivatePort": 8000, "PublicPort": 49153, "Type": "tcp"},
        {"PrivatePort": 9000, "Type": "tcp"},                        # exposed, not published
        {"IP": "127.0.0.1", "PrivatePort": 53, "PublicPort": 5353, "Type": "udp"}]
    assert ports_text(rows) == "127.0.0.1:49153->8000"
    assert ports_text(None) == ""


def test_ports_are_for_one_container() -> None:
    check_ports_allowed((), nnodes=2, slurm=True)
    check_ports_allowed((PortBinding(1),), nnodes=1, slurm=False)
    with pytest.raises(DltError, match="not with --nnodes"):
        check_ports_allowed((PortBinding(1),), nnodes=2, slurm=False)
    with pytest.raises(DltError, match="not with --slurm"):
        check_ports_allowed((PortBinding(1),), nnodes=0, slurm=True)


def test_forwarder_keeps_the_users_flags_but_its_own_host(
        capsys: pytest.CaptureFixture[str]) -> None:
    from dltasks.tasks.invocation import CONFIG_KEY, cli_hosts
    from dltasks.tasks.ports import _core_flags, _forward_argv

    class Ctx:
        def __init__(self, argv: list[str]) -> None:
            self.config = {CONFIG_KEY: {"program": "fab", "argv": argv}}

    assert _core_flags(Ctx(["fab", "-S", "cfg", "-H", "gpu1,gpu2", "-i", "key", "train",
                            "--port", "8000", "-H", "x"])) == (["-S", "cfg", "-i", "key"], [])
    assert _core_flags(Ctx(["fab", "--hosts=gpu1", "-Hgpu2", "-t", "5", "train"])) == (
        ["-t", "5"], [])
    # review item 7: the user's namespace, no prompt flag (one warning), one flag walker
    argv = ["fab", "--prompt-for-passphrase", "-i", "k", "-H", "gpu1", "dlt.notebook",
            "--detach"]
    assert _forward_argv(Ctx(argv), "gpu1", "R1", "notebook")[3:] == [
        "-i", "k", "-H", "gpu1", "dlt.forward", "R1"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--prompt-for-passphrase left out" in err
    assert _forward_argv(Ctx(["fab", "-H", "gpu1", "train", "--port", "8000"]), "gpu1", "R1",
                         "train")[3:] == ["-H", "gpu1", "forward", "R1"]
    assert cli_hosts(["fab", "-t", "5", "-Ha", "--hosts=b,c", "-H", "d", "train", "-H", "e"]) \
        == ["a", "b", "c", "d"]


def test_a_forwarder_under_a_namespace_is_recognised(tmp_path: Path) -> None:
    """is_forwarder() knows `ns.forward RUN` (review item 7) and nothing else, on a real
    child process's command line."""
    import subprocess
    import sys

    from dltasks.runs import forwarder

    for words, yes in ((["dlt.forward", "R1"], True), (["forward", "R1"], True),
                       (["forwarder", "R1"], False), (["dlt.forward", "R2"], False)):
        p = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", *words])
        try:
            deadline = time.monotonic() + 10  # until the child has exec'd
            while words[0] not in forwarder._cmdline(p.pid):
                assert time.monotonic() < deadline
                time.sleep(0.01)
            assert forwarder.is_forwarder(p.pid, "R1") is yes, words
        finally:
            p.kill()
            p.wait()


def test_pid_file_is_private_and_only_a_live_forwarder_counts(tmp_path: Path) -> None:
    from dltasks.runs import forwarder

    path = forwarder.write_pid_file(tmp_path, {8000: 8001})
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text() == f"{os.getpid()}\n8000 8001\n"
    assert forwarder.live_forwarder(tmp_path, "R1") is None  # this process: not a forwarder
    assert forwarder.end_forwarder(tmp_path, "R1") is None   # so it gets no signal
    forwarder.remove_pid_file(tmp_path)
    assert not path.exists()
    path.write_text("1\n")  # pid 1 names no `forward` of R1: left alone
    assert forwarder.live_forwarder(tmp_path, "R1") is None


class FakeTarget:  # the one seam: a target whose engine answers one inspect
    name = "local"
    login = "alice"

    def __init__(self, user: str = "alice") -> None:
        self.user = user
        self.engine = self

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return {"Config": {"Env": [f"T={TOKEN}"],
                           "Labels": {"dltasks.url.8888": "/?token=${T}",
                                      "dltasks.user": self.user}},
                "NetworkSettings": {"Ports": {"8888/tcp": [
                    {"HostIp": "127.0.0.1", "HostPort": "40000"}]}}}

    def forward_port(self, host_port: int, local_port: int = 0) -> Any:
        from contextlib import nullcontext

        return nullcontext(host_port)

    def task_command(self, task: str) -> str:
        return f"dlt {task}"


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_url_lines_go_to_the_given_stream() -> None:
    from dltasks.runs.ports import forwarded

    out = io.StringIO()
    with forwarded(FakeTarget(), "R1", "cid", kind="notebook", out=out) as urls:  # type: ignore[arg-type]
        assert urls[0].url == f"http://127.0.0.1:40000/?token={TOKEN}"
    assert TOKEN not in out.getvalue()
    assert "`dlt forward R1` in a terminal" in out.getvalue()
    tty = Terminal()
    with forwarded(FakeTarget(), "R1", "cid", kind="notebook", out=tty):  # type: ignore[arg-type]
        pass
    assert f"token={TOKEN}" in tty.getvalue()


def test_another_logins_run_never_has_its_secrets_expanded() -> None:
    """Review item 1's backstop: even to a terminal, a run labelled with another user's login
    gets no ${VAR} read from its container's environment."""
    from dltasks.runs.ports import forwarded

    tty = Terminal()
    with forwarded(FakeTarget(user="bob"), "R1", "cid", kind="notebook",  # type: ignore[arg-type]
                   out=tty) as urls:
        assert TOKEN not in urls[0].url
    assert TOKEN not in tty.getvalue()
    assert "http://127.0.0.1:40000/?token=" in tty.getvalue()


def test_a_forward_refused_by_sshd_is_one_line_before_any_url() -> None:
    """Review item 2. The one seam: a transport whose sshd answers channel opens as OpenSSH
    does with ``AllowTcpForwarding no`` / ``PermitOpen`` (administratively prohibited, code 1);
    a port nothing listens on yet (connect failed, code 2) is no error. (A real sshd cannot
    show it here: OpenSSH's AllowTcpForwarding no also refuses the engine's stream-local
    channel, so such a host fails earlier, at the engine.)"""
    import paramiko

    from dltasks.hosts.remote.portforward import PortForward

    class Transport:
        active = True

        def __init__(self, code: int) -> None:
            self.code, self.opened = code, 0

        def open_channel(self, kind: str, dest: Any, src: Any, timeout: float = 0) -> Any:
            self.opened += 1
            raise paramiko.ChannelException(self.code, "refused")

    with pytest.raises(DltError, match=r"^sshd on gpu1 refuses TCP forwarding "
                                       r"\(AllowTcpForwarding no"):
        PortForward(Transport(1), 8000, host="gpu1")
    t = Transport(2)
    fwd = PortForward(t, 8000, host="gpu1")
    try:
        assert t.opened == 1 and fwd.local_port
    finally:
        fwd.close()


def test_the_forward_waits_out_engine_errors_and_ends_only_when_the_container_is_gone(
        capsys: pytest.CaptureFixture[str]) -> None:
    """Review item 6. The one seam: an engine that answers 500, then 'running', then a
    timeout-like error, then 404 (removed): the forward ends only at the 404, said once."""
    from dltasks.engine.api import EngineError, NotFound
    from dltasks.runs.forwarder import _until_over

    answers: list[Any] = [EngineError(500, "restarting"), {"State": {"Running": True}},
                          EngineError(503, "busy"), NotFound(404, "no such container")]

    class Target:
        name = "gpu1"
        alive = True

        def is_alive(self) -> bool:
            return self.alive

        class engine:  # noqa: N801
            @staticmethod
            def inspect_container(cid: str) -> dict[str, Any]:
                a = answers.pop(0)
                if isinstance(a, Exception):
                    raise a
                return a  # type: ignore[no-any-return]

    assert _until_over(Target(), "cid", poll=0) is True
    assert answers == []
    assert capsys.readouterr().err.count("did not answer") == 1
    answers[:] = [EngineError(500, "down")]
    t = Target()
    t.alive = False
    assert _until_over(t, "cid", poll=0) is False  # the connection died: not "ended"


def test_the_report_pipe_must_be_a_pipe(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Review item 14: DLT_FORWARD_PIPE from the user's environment is not trusted."""
    from dltasks.runs.forwarder import PIPE_ENV, report_pipe

    monkeypatch.delenv(PIPE_ENV, raising=False)
    assert report_pipe() is None
    with (tmp_path / "f").open("w") as f:
        for value in ("abc", str(f.fileno()), "987654"):  # no number, a file, no such fd
            monkeypatch.setenv(PIPE_ENV, value)
            assert report_pipe() is None
            assert PIPE_ENV not in os.environ
    assert capsys.readouterr().err.count("names no pipe: ignored") == 3
    r, w = os.pipe()
    try:
        monkeypatch.setenv(PIPE_ENV, str(w))
        assert report_pipe() == w
    finally:
        os.close(r)
        os.close(w)


def test_end_forwarder_terms_then_kills_only_a_forwarder_of_that_run(tmp_path: Path) -> None:
    """Review item 16: real children. One whose command line is `forward R1` and that
    ignores SIGTERM is killed after the grace; one that is no forwarder of R1 gets nothing."""
    import signal
    import subprocess
    import sys

    from dltasks.runs import forwarder
    from dltasks.runs.record import forward_pid_file

    stubborn = ("import signal, sys, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
                "print('ready', flush=True); time.sleep(60)")
    for words, ours in ((["forward", "R1"], True), (["forward", "R2"], False),
                        (["other", "R1"], False)):
        p = subprocess.Popen([sys.executable, "-c", stubborn, *words], stdout=subprocess.PIPE,
                             text=True)
        try:
            assert p.stdout is not None and p.stdout.readline() == "ready\n"  # SIGTERM ignored
            forward_pid_file(tmp_path).write_text(f"{p.pid}\n8000 8001\n")
            start = time.monotonic()
            got = forwarder.end_forwarder(tmp_path, "R1", timeout=0.5)
            if ours:
                assert got == p.pid
                assert p.wait(10) == -signal.SIGKILL  # the grace passed: killed
                assert time.monotonic() - start >= 0.5
                assert not forward_pid_file(tmp_path).exists()
            else:
                assert got is None and p.poll() is None, words  # left alone, and its file
                assert forward_pid_file(tmp_path).exists()
        finally:
            p.kill()
            p.wait()


def test_ps_shows_the_port_here_of_a_forwarded_run() -> None:
    """Review item 17: the laptop port next to the host's, for the ports forwarded here."""
    from dltasks.runs.forwarder import ports_here

    assert ports_here("127.0.0.1:32782->8000,127.0.0.1:32783->6006", {8000: 8000}) == \
        "127.0.0.1:32782->8000 (here: 8000),127.0.0.1:32783->6006"
    assert ports_here("", {8000: 1}) == ""


def test_a_server_answers_only_when_it_sends_something_back() -> None:
    import socket
    import threading

    from dltasks.runs.ports import answers

    def serve(sock: socket.socket, reply: bytes) -> None:
        conn, _ = sock.accept()
        with conn:
            conn.recv(256)
            if reply:
                conn.sendall(reply)

    for reply, expected in ((b"HTTP/1.0 403 Forbidden\r\n\r\n", True), (b"", False)):
        sock = socket.create_server(("127.0.0.1", 0))
        t = threading.Thread(target=serve, args=(sock, reply), daemon=True)
        t.start()
        assert answers(sock.getsockname()[1]) is expected  # a proxy that closes: no answer
        t.join(5)
        sock.close()
    free = socket.create_server(("127.0.0.1", 0))
    port = free.getsockname()[1]
    free.close()
    assert answers(port) is False  # nothing listening


def test_a_forward_can_listen_again_on_a_port_it_just_closed() -> None:
    # Ctrl-C on `forward` with a browser tab open: we close first, the port sits in TIME_WAIT;
    # `forward RUN --port 8888:8888` right after must get it back (as ssh -L does)
    import socket

    from dltasks.hosts.remote.portforward import _listen

    first = _listen(0)
    port = first.getsockname()[1]
    client = socket.create_connection(("127.0.0.1", port), timeout=5)
    conn, _ = first.accept()
    conn.close()  # our side closes first: TIME_WAIT is ours
    client.recv(1)
    client.close()
    first.close()
    again = _listen(port)
    assert again.getsockname()[1] == port
    with pytest.raises(OSError):  # a port someone listens on stays theirs
        _listen(port)
    again.close()
