"""`exec`'s pure parts: the exec body, the framed output, which node, the srun line, the
ended-run line, and records keeping the Slurm container's name (old ones still read)."""

from __future__ import annotations

import struct

import pytest

from dltasks.engine.execute import DEFAULT_SHELL, MARKER, Demux, exec_config
from dltasks.errors import DltError
from dltasks.runs.execute import (
    SlurmSpot,
    choose_node,
    ended_error,
    ended_from_records,
    node_container,
    node_of_rank,
    slurm_container,
    srun_end_argv,
    srun_exec_argv,
    step_id,
    steps_command,
)
from dltasks.runs.listing import RunInfo
from dltasks.runs.record import RunRecord, SlurmInfo

RID = "20261207-120000-abcd"


def _info(node: str = "", host: str = "gpu1", record: str = "/p/runs/" + RID,
          nodes: str = "gpu1,gpu2") -> RunInfo:
    return RunInfo(RID, f"c{node}{host}", "proj", "train", "running", None, "", "", host, "img",
                   node, nodes if node else "", "me", record)


def test_the_exec_body_keeps_the_containers_user_and_folder_and_adds_the_marker() -> None:
    body = exec_config(["nvidia-smi"], tty=True, user="1000:1000", workdir="/workspace",
                       marker="ab12")
    assert body == {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True,
                    "Tty": True, "Cmd": ["nvidia-smi"], "Env": [f"{MARKER}=ab12"],
                    "User": "1000:1000", "WorkingDir": "/workspace"}
    plain = exec_config(list(DEFAULT_SHELL), tty=False, user="", workdir="", marker="x")
    assert "User" not in plain and "WorkingDir" not in plain and plain["Tty"] is False


def test_framed_output_is_cut_whatever_the_reads() -> None:
    def frame(stream: int, data: bytes) -> bytes:
        return struct.pack(">BxxxL", stream, len(data)) + data

    wire = frame(1, b"out\n") + frame(2, b"err\n") + frame(1, b"") + frame(1, b"more")
    whole = Demux().feed(wire)
    assert whole == [(1, b"out\n"), (2, b"err\n"), (1, b"more")]
    d, got = Demux(), []
    for i in range(len(wire)):   # a byte at a time: the same frames
        got += d.feed(wire[i:i + 1])
    assert got == whole and not d.buf


def test_a_plain_run_has_no_node_and_a_job_defaults_to_node_0_saying_so() -> None:
    assert choose_node(RID, [_info()], None).rank is None
    assert choose_node(RID, [_info()], 0).rank is None
    with pytest.raises(DltError, match="not a job across hosts: it has no node 1") as e:
        choose_node(RID, [_info()], 1)
    assert e.value.code == 2
    job = [_info("0"), _info("1", "gpu2")]
    first = choose_node(RID, job, None)
    assert (first.rank, first.host) == (0, "gpu1") and "exec goes into node 0 on gpu1" in first.note
    one = choose_node(RID, job, 1)
    assert (one.rank, one.host, one.note) == (1, "gpu2", "")
    with pytest.raises(DltError, match=r"nodes 0 to 1 \(gpu1, gpu2\), not 2: pick one"):
        choose_node(RID, job, 2)


def test_a_nodes_container_is_its_rank_of_this_job_on_its_host() -> None:
    # two hosts sharing one engine see both nodes; a stranger's run of that id is not ours
    stranger = _info("1", "gpu2", record="/other/runs/" + RID)
    seen = [_info("0"), stranger, _info("1", "gpu2"), _info("1", "gpu1")]
    got = node_container(seen, RID, 1, "gpu2", "/p/runs/" + RID)
    assert got.container_id == "c1gpu2"
    with pytest.raises(DltError, match="node 1 of job .* has no container on gpu2") as e:
        node_container([_info("0"), stranger], RID, 1, "gpu2", "/p/runs/" + RID)
    assert e.value.code == 2 and "`inv logs" in str(e.value)


def test_the_ended_line_names_the_exit_the_time_and_the_logs_hint() -> None:
    e = ended_error(RID, 7, "2026-12-07T12:00:05+00:00")
    assert e.code == 2
    assert str(e) == (f"run {RID} ended (exit 7) at 2026-12-07T12:00:05+00:00; nothing to exec "
                      f"into; `inv logs {RID}` shows its output")
    assert "(exit unknown);" in str(ended_error(RID, None, None))


def test_a_record_whose_container_is_gone_says_it_ended() -> None:
    recs = [RunRecord(RID, host="local", exit_code=3, ended="T"),
            RunRecord("20261207-130000-0001", host="gpu1", exit_code=0),
            RunRecord("20261207-130000-0002", host="local",
                      slurm=SlurmInfo("42"))]   # a Slurm run is found as one, not here
    found = ended_from_records(recs, RID[:10], "local")
    assert found is not None and f"run {RID} ended (exit 3) at T" in str(found)
    assert ended_from_records(recs, "20261207-130000-0001", "local") is None   # another host
    assert ended_from_records(recs, "20261207-13", "local") is None
    assert ended_from_records(recs, "2026", "local") is not None   # one of local: RID
    two = [*recs, RunRecord("20261207-120000-ffff", host="local", exit_code=1)]
    assert ended_from_records(two, "20261207-12", "local") is None  # which one: not said


def _slurm(runtime: str, container: str | None = "dlt-proj-" + RID) -> RunRecord:
    return RunRecord(RID, slurm=SlurmInfo("42", runtime, nodes=2, container=container))


def test_srun_lines_per_runtime() -> None:
    at = SlurmSpot("n2", 1, container="dlt-proj-x")
    docker = srun_exec_argv(_slurm("docker"), at, ["nvidia-smi"], tty=False, marker="ab12")
    assert docker == ["srun", "--jobid=42", "--overlap", "--quit-on-interrupt", "--nodes=1",
                      "--ntasks=1", "--nodelist=n2", "docker", "exec", "-i",
                      "-e", f"{MARKER}=ab12", "dlt-proj-x-n1", "nvidia-smi"]
    shell = srun_exec_argv(_slurm("docker"), SlurmSpot("n1", 0, container="dlt-proj-x"), [],
                           tty=True, marker="m")
    assert shell[7:] == ["--pty", "docker", "exec", "-i", "-t", "-e", f"{MARKER}=m",
                         "dlt-proj-x-n0", *DEFAULT_SHELL]
    with pytest.raises(DltError, match="apptainer.*srun --jobid 42 --overlap") as e:
        srun_exec_argv(_slurm("apptainer"), SlurmSpot("n1", 0), [], tty=True)
    assert e.value.code == 2 and "\n" not in str(e.value)


def test_pyxis_joins_the_steps_own_container_with_the_runs_variables_from_its_file() -> None:
    """pyxis: ``--container-name=JOB.STEP:exec`` (pyxis's name of the step's unnamed
    container), the run's folder, a step of its own named by the marker (to end it), srun
    started by a shell that sources the run's 0600 file of variables (no value on a command
    line)."""
    at = SlurmSpot("n2", 1, step="42.1", workdir="/workspace", env_file="/p/runs/x/container.env")
    argv = srun_exec_argv(_slurm("pyxis", "dlt-proj-x"), at, ["ls"], tty=True, marker="ab12")
    assert argv[:5] == ["sh", "-c", argv[2], "dlt-exec", "/p/runs/x/container.env"]
    assert argv[5:] == ["srun", "--jobid=42", "--overlap", "--quit-on-interrupt", "--nodes=1",
                        "--ntasks=1", "--nodelist=n2", "--pty", "--job-name=dlt-exec-ab12",
                        "--container-name=42.1:exec", "--container-workdir=/workspace", "ls"]
    end = srun_end_argv(_slurm("pyxis", "dlt-proj-x"), at, "ab12", "INT", 1.5)
    assert end[:2] == ["sh", "-c"] and end[3:] == ["dlt-end", "42", "dlt-exec-ab12", "INT", "2"]
    # a record from before the step was named: what is possible, in one line
    with pytest.raises(DltError, match="pyxis.*older dltasks.*`srun --jobid 42 --overlap "
                                       "--nodelist=n1 --container-image=") as e:
        srun_exec_argv(_slurm("pyxis", None), SlurmSpot("n1", 0), ["ls"], tty=False)
    assert e.value.code == 2 and "\n" not in str(e.value)


def test_the_main_step_is_the_first_running_step_of_its_name() -> None:
    """The head-address step (ended by then) and any later `srun --overlap` take the job's
    name too: the main step is the first of that name still listed."""
    lines = "42.batch batch\n42.3 my job\n42.1 my job\n42.2 dlt-exec-ab\n"
    assert step_id(lines, "my job") == "42.1"
    assert step_id("42.batch batch\n42.extern extern\n", "batch") == ""
    assert step_id("", "dlt-proj-x") == ""
    assert steps_command("42") == "squeue -h -s -j 42 -o '%i %j'"


def test_rank_k_is_the_kth_node_of_the_allocation() -> None:
    assert node_of_rank(["n1", "n2"], 1, "42") == "n2"
    with pytest.raises(DltError, match=r"nodes 0 to 1 \(n1, n2\), not 2"):
        node_of_rank(["n1", "n2"], 2, "42")
    with pytest.raises(DltError, match="no nodes now"):
        node_of_rank([], 0, "42")


def test_the_slurm_container_name_is_kept_and_old_records_still_read() -> None:
    rec = _slurm("docker", "dlt-my proj-" + RID)
    again = RunRecord.from_json(rec.to_json())
    assert again.slurm is not None and again.slurm.container == "dlt-my proj-" + RID
    assert slurm_container(again, "ignored") == "dlt-my proj-" + RID
    old = {"run_id": RID, "slurm": {"job_id": "42", "runtime": "docker"}}
    read = RunRecord.from_json(old)
    assert read.slurm is not None and read.slurm.container is None
    assert "container" not in read.to_json()["slurm"]      # written back as it was
    assert slurm_container(read, "proj") == f"dlt-proj-{RID}"   # what the script named it


# -- the pump, the marker kill (real sockets, pipes and processes of this machine) ---------


def test_the_pump_never_stalls_when_the_output_outgrows_the_input() -> None:
    """A process writing 4x what it reads (gunzip): one thread sending input and reading
    output stalled after ~300 KB; the input has its own thread now."""
    import os
    import socket
    import threading

    from dltasks.engine.attach import pump

    ours, theirs = socket.socketpair()
    size = 3_000_000

    def process() -> None:  # reads a chunk, writes it 4 times, until its stdin ends
        while data := theirs.recv(65536):
            theirs.sendall(data * 4)
        theirs.shutdown(socket.SHUT_WR)

    def feed(fd: int) -> None:
        with os.fdopen(fd, "wb") as f:
            f.write(b"z" * size)

    r, w = os.pipe()
    got = [0]
    threads = [threading.Thread(target=process, daemon=True),
               threading.Thread(target=feed, args=(w,), daemon=True)]
    for t in threads:
        t.start()
    done = threading.Event()

    def run() -> None:
        pump(ours, b"hi", r, lambda data: got.__setitem__(0, got[0] + len(data)))
        done.set()

    threading.Thread(target=run, daemon=True).start()
    assert done.wait(60), f"stalled after {got[0]} bytes"
    assert got[0] == 2 + 4 * size
    os.close(r)
    ours.close()
    theirs.close()


def test_a_missing_stdin_or_no_stdin_reads_as_dev_null(monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import sys

    from dltasks.engine.attach import input_fd, is_terminal

    monkeypatch.setattr(sys, "stdin", None)   # what Python gives for `<&-` (fd 0 closed)
    with input_fd() as fd:
        assert os.read(fd, 10) == b"" and os.path.samestat(os.fstat(fd), os.stat(os.devnull))
    assert is_terminal() is False
    with input_fd(use_stdin=False) as fd:
        assert os.path.samestat(os.fstat(fd), os.stat(os.devnull))
    assert is_terminal(use_stdin=False) is False


def test_the_terminal_is_put_back_however_the_raw_part_ends() -> None:
    import os
    import termios

    from dltasks.engine.attach import raw_terminal

    leader, follower = os.openpty()
    try:
        before = termios.tcgetattr(follower)
        with pytest.raises(KeyboardInterrupt), raw_terminal(follower):
            assert termios.tcgetattr(follower) != before     # raw meanwhile
            raise KeyboardInterrupt
        assert termios.tcgetattr(follower) == before
    finally:
        os.close(leader)
        os.close(follower)


def test_the_marker_signal_ends_every_marked_process_and_says_how_many() -> None:
    """_SIGNAL run here against this machine's /proc: children carrying the marker (one
    ignoring SIGINT, as a background job of `sh -c` does), another exec's marker untouched."""
    import os
    import subprocess
    import time

    from dltasks.engine.execute import _SIGNAL

    def spawn(marker: str, script: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(["sh", "-c", script], env={**os.environ, MARKER: marker})

    def signal(sig: str, marker: str) -> int:
        r = subprocess.run(["sh", "-c", _SIGNAL, "sh", sig, marker], capture_output=True,
                           check=True, timeout=30)
        return int(r.stdout.split()[-1])

    mine, other = os.urandom(8).hex(), os.urandom(8).hex()
    polite = spawn(mine, "exec sleep 60")
    stubborn = spawn(mine, "trap '' INT; exec sleep 60")
    bystander = spawn(other, "exec sleep 60")
    try:
        deadline = time.monotonic() + 10
        while signal("0", mine) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert signal("0", mine) == 2 and signal("0", other) == 1
        assert signal("INT", mine) == 2
        assert polite.wait(timeout=10) == -2
        time.sleep(0.2)                    # the one ignoring SIGINT: still there
        assert stubborn.poll() is None and signal("0", mine) == 1
        assert signal("KILL", mine) == 1
        assert stubborn.wait(timeout=10) == -9
        assert signal("0", mine) == 0
        assert bystander.poll() is None and signal("0", other) == 1
    finally:
        for p in (polite, stubborn, bystander):
            p.kill()
            p.wait()


def test_our_end_of_input_is_ctrl_d_to_a_tty_and_a_half_close_otherwise() -> None:
    """The engine cuts a tty's output at stdin's end: a tty gets EOT, as typed, instead."""
    import os
    import socket
    import threading

    from dltasks.engine.attach import EOT, pump

    for tty, expected in ((True, EOT), (False, b"")):
        ours, theirs = socket.socketpair()
        null = os.open(os.devnull, os.O_RDONLY)
        got: list[bytes] = []

        def process(theirs: socket.socket = theirs, got: list[bytes] = got) -> None:
            got.append(theirs.recv(10))     # EOT, or b"" (our half-close)
            theirs.sendall(b"bye")
            theirs.close()

        t = threading.Thread(target=process, daemon=True)
        t.start()
        out: list[bytes] = []
        pump(ours, b"", null, out.append, tty=tty)
        t.join(10)
        assert got == [expected] and b"".join(out) == b"bye"
        os.close(null)
        ours.close()


class _Login:
    """The one seam: a login host whose shell answers the round trips of finding a pyxis
    run's container in turn (nodes, steps, the joined `true`)."""

    on_host = " on login1"

    def __init__(self, *answers: tuple[int, str, str]) -> None:
        from dltasks.hosts.shell import CmdResult

        self.results = [CmdResult("sh", code, out, err) for code, out, err in answers]
        self.commands: list[object] = []
        self.shell = self

    def run(self, command: object) -> object:
        self.commands.append(command)
        return self.results[len(self.commands) - 1]

    def task_command(self, task: str) -> str:
        return f"fab -H login1 {task}"


def _pyxis_run() -> RunRecord:
    return RunRecord(RID, slurm=SlurmInfo("42", "pyxis", nodes=2, run_dir="/p/runs/" + RID,
                                          container="dlt-proj-" + RID, workdir="/workspace"))


def test_a_pyxis_runs_container_is_found_then_joined_once_with_true() -> None:
    from dltasks.runs.execute import _spot

    login = _Login((0, "n1\nn2\n", ""), (0, f"42.batch batch\n42.1 dlt-proj-{RID}\n", ""),
                   (0, "", ""))
    spot = _spot(login, _pyxis_run(), 1)  # type: ignore[arg-type]
    assert spot == SlurmSpot("n2", 1, step="42.1", workdir="/workspace",
                             env_file=f"/p/runs/{RID}/container.env")
    check = login.commands[2]
    assert isinstance(check, list) and check[-4:] == [
        "--job-name=dlt-exec-check", "--container-name=42.1:exec",
        "--container-workdir=/workspace", "true"] and "--nodelist=n2" in check


def test_what_stands_in_the_way_of_a_pyxis_exec_is_one_line() -> None:
    """No step of the run's name (not started, or ended), a container pyxis has not started
    (or cannot join: squashfuse), another refusal of pyxis, squeue failing: one line each."""
    from dltasks.runs.execute import _spot

    nodes, step = (0, "n1\nn2\n", ""), (0, f"42.1 dlt-proj-{RID}\n", "")
    cases = [
        ((nodes, (0, "42.batch batch\n42.0 hostname\n", "")), 2,
         f"runs no step 'dlt-proj-{RID}' now .* `fab -H login1 logs {RID} --follow`"),
        ((nodes, step, (1, "", 'slurmstepd-n1: error: pyxis: error: "exec" flag was passed to '
                        "--container-name but the container is not running\nsrun: error: "
                        "n1: task 0: Exited with exit code 1\n")), 2,
         r"node 0's container of run .* \(n1, step 42.1\) is not running \(pyxis is still "
         "making it, or the site runs pyxis with squashfuse"),
        ((nodes, step, (1, "", "srun: error: Unable to create step for job 42: Invalid "
                        "generic resource\n")), 1,
         r"pyxis could not join node 0's container of run .*: srun: error: Unable to create"),
        ((nodes, (1, "", "squeue: error: Invalid user\n")), 1,
         "squeue on login1 could not list the steps of Slurm job 42: squeue: error: Invalid"),
    ]
    for answers, code, said in cases:
        with pytest.raises(DltError, match=said) as e:
            _spot(_Login(*answers), _pyxis_run(), 0)  # type: ignore[arg-type]
        assert e.value.code == code and "\n" not in str(e.value), str(e.value)
