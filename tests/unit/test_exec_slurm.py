"""`exec` on Slurm, its pure and local parts: the line that ends an interrupted exec's
processes (run here against real children), the node list that never falls back to another
allocation's, a command attached to our stdio (exit code; SIGTERM ends it), and which lookup
errors may become the "ended" line."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dltasks.engine.execute import MARKER, MARKER_KILL
from dltasks.errors import DltError
from dltasks.runs.execute import SlurmSpot, hostnames_command, srun_end_argv, srun_exec_argv
from dltasks.runs.listing import ENGINE, Candidate, NoSuchRun, choose_candidate
from dltasks.runs.record import RunRecord, SlurmInfo

RID = "20261207-120000-abcd"


def _rec(runtime: str = "docker") -> RunRecord:
    return RunRecord(RID, slurm=SlurmInfo("42", runtime, nodes=2, container="dlt-run"))


def _wait_gone(proc: subprocess.Popen[bytes], within: float) -> bool:
    try:
        proc.wait(within)
        return True
    except subprocess.TimeoutExpired:
        return False


def test_the_end_line_is_a_step_beside_the_job_running_the_marker_kill() -> None:
    argv = srun_end_argv(_rec(), SlurmSpot("n2", 1, container="dlt-p-x"), "ab12", "INT", 2.5)
    assert argv[:7] == ["srun", "--jobid=42", "--overlap", "--quit-on-interrupt", "--nodes=1",
                        "--ntasks=1", "--nodelist=n2"]
    assert argv[7:12] == ["docker", "exec", "dlt-p-x-n1", "sh", "-c"]
    assert argv[13:] == [MARKER_KILL, "ab12", "3", "INT"]   # grace rounded up, whole seconds
    assert "-e" not in argv   # the ending exec carries no marker: it never signals itself


def test_the_end_script_signals_only_its_marker_and_kills_what_ignores_it() -> None:
    """Run here against real children: one ignoring SIGINT (KILLed after the grace), one of
    another exec (left alone)."""
    script = srun_end_argv(_rec(), SlurmSpot("n", 0, container="c"), "m1", "INT", 1)[12]
    ignoring = subprocess.Popen(["sh", "-c", "trap '' INT; while :; do sleep 0.2; done"],
                                env={**os.environ, MARKER: "m1"})
    plain = subprocess.Popen(["sleep", "60"], env={**os.environ, MARKER: "m1"})
    other = subprocess.Popen(["sleep", "60"], env={**os.environ, MARKER: "m2"})
    try:
        r = subprocess.run(["sh", "-c", script, MARKER_KILL, "m1", "1", "INT"], timeout=20,
                           capture_output=True)
        assert r.returncode == 0, r.stderr
        assert _wait_gone(plain, 10) and plain.returncode == -signal.SIGINT
        assert _wait_gone(ignoring, 15) and ignoring.returncode == -signal.SIGKILL
        assert other.poll() is None
    finally:
        for p in (ignoring, plain, other):
            p.kill()
            p.wait()


def test_no_nodes_means_none_never_the_allocations_we_run_in(tmp_path: Path) -> None:
    """squeue printing nothing (the job left the queue) lists nothing, though
    $SLURM_JOB_NODELIST (the allocation this shell runs in) names nodes. The seam: stand-in
    squeue and scontrol on PATH."""
    (tmp_path / "squeue").write_text("#!/bin/sh\nprintf '%s' \"$SQUEUE_SAYS\"\n")
    (tmp_path / "scontrol").write_text("#!/bin/sh\n[ -n \"$3\" ] && echo \"$3\" | tr , '\\n' "
                                       "|| echo \"$SLURM_JOB_NODELIST\" | tr , '\\n'\n")
    for f in ("squeue", "scontrol"):
        (tmp_path / f).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}",
           "SLURM_JOB_NODELIST": "other1,other2"}
    line = hostnames_command("42")
    gone = subprocess.run(["sh", "-c", line], env={**env, "SQUEUE_SAYS": ""},
                          capture_output=True, text=True, timeout=10)
    assert gone.stdout.split() == []
    there = subprocess.run(["sh", "-c", line], env={**env, "SQUEUE_SAYS": "n1,n2"},
                           capture_output=True, text=True, timeout=10)
    assert there.stdout.split() == ["n1", "n2"]


_ATTACHED = textwrap.dedent("""
    import sys
    from dltasks.hosts.shell import CutShort, local_attached
    try:
        code = local_attached(sys.argv[1:], stop_s=1)
    except CutShort as e:
        print("interrupted", e.signum, flush=True)
        sys.exit(100)
    sys.exit(code)
""")


def _attached(*argv: str, **kw: object) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-c", _ATTACHED, *argv], **kw)  # type: ignore


def test_an_attached_command_gets_our_stdio_byte_exact_and_gives_its_exit_code() -> None:
    data = bytes(range(256)) * 1000
    p = _attached("sh", "-c", "cat; exit 7", stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    out, _ = p.communicate(data, timeout=30)
    assert p.returncode == 7 and out == data


def test_sigterm_ends_an_attached_command_that_ignores_it_and_says_interrupted() -> None:
    p = _attached("sh", "-c", "trap '' TERM INT; echo up; while :; do sleep 0.2; done",
                  stdout=subprocess.PIPE)
    try:
        assert p.stdout is not None and p.stdout.readline() == b"up\n"
        start = time.monotonic()
        p.send_signal(signal.SIGTERM)
        out, _ = p.communicate(timeout=20)
        assert p.returncode == 100 and out == f"interrupted {int(signal.SIGTERM)}\n".encode()
        assert time.monotonic() - start < 15
    finally:
        p.kill()
        p.wait()


def test_only_no_such_run_may_become_the_ended_line() -> None:
    cands = [Candidate("20261207-120000-aaaa", ENGINE), Candidate("20261207-120000-bbbb", ENGINE)]
    with pytest.raises(NoSuchRun):
        choose_candidate("20261207-13", cands, "local")
    with pytest.raises(DltError) as e:
        choose_candidate("20261207-12", cands, "local")
    assert not isinstance(e.value, NoSuchRun) and "matches 2 of your runs" in str(e.value)


def test_the_shell_starting_srun_sources_the_file_and_runs_the_rest(tmp_path: Path) -> None:
    """Run here: the values reach the command's environment from the file; no file (a run
    without variables): the command as it is; a file that does not source: nothing runs."""
    at = SlurmSpot("n", 0, step="1.1", env_file=str(tmp_path / "container.env"))
    (tmp_path / "container.env").write_text("export 'SECRET=s p a c e'\n")
    argv = srun_exec_argv(_rec("pyxis"), at, [], tty=False, marker="m1")
    shell = argv[:argv.index("srun")]
    r = subprocess.run([*shell, "sh", "-c", 'echo "$SECRET"'],
                       capture_output=True, text=True, timeout=10)
    assert r.returncode == 0 and r.stdout == "s p a c e\n", r.stderr
    (tmp_path / "container.env").unlink()
    r = subprocess.run([*shell, "sh", "-c", 'echo "${SECRET-unset}"'],
                       capture_output=True, text=True, timeout=10)
    assert r.stdout == "unset\n"
    (tmp_path / "container.env").write_text("export 'A=1\n")
    r = subprocess.run([*shell, "echo", "ran"], capture_output=True, text=True, timeout=10)
    assert r.returncode != 0 and r.stdout == ""


def test_an_interrupted_pyxis_exec_ends_its_own_step_signal_then_kill(tmp_path: Path) -> None:
    """pyxis: the exec's step (found by its marker's name among the job's steps) gets the
    signal now and SIGKILL after the grace, from the background; no such step (srun's Ctrl-C
    ended it): nothing, exit 0. The seam: stand-in squeue and scancel on PATH."""
    log = tmp_path / "scancel.log"
    (tmp_path / "squeue").write_text("#!/bin/sh\nprintf '%s' \"$SQUEUE_SAYS\"\n")
    (tmp_path / "scancel").write_text(f"#!/bin/sh\necho \"$*\" >> {log}\n")
    for f in ("squeue", "scancel"):
        (tmp_path / f).chmod(0o755)
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    at = SlurmSpot("n", 0, step="42.1")
    argv = srun_end_argv(_rec("pyxis"), at, "ab12", "INT", 1)
    said = "42.batch batch\n42.1 dlt-run\n42.7 dlt-exec-ab12\n42.8 dlt-exec-other\n"
    r = subprocess.run(argv, env={**env, "SQUEUE_SAYS": said}, capture_output=True, text=True,
                       timeout=10)
    assert r.returncode == 0, r.stderr
    assert log.read_text() == "--signal=INT 42.7\n"       # now; KILL after the grace
    deadline = time.monotonic() + 10
    while log.read_text().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert log.read_text() == "--signal=INT 42.7\n--signal=KILL 42.7\n"
    log.unlink()
    r = subprocess.run(argv, env={**env, "SQUEUE_SAYS": "42.1 dlt-run\n"}, capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0 and not log.exists()
