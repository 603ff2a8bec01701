"""Death by signal N is exit code 128+N where a child's status becomes ours (issue 21)."""

from __future__ import annotations

import signal

from invoke import Context

from dltasks.hosts.shell import Shell, local_start, shell_exit_code


def test_a_local_child_killed_by_a_signal_is_128_plus_n() -> None:
    r = local_start(["sh", "-c", "kill -USR1 $$"]).result()
    assert r.code == 128 + signal.SIGUSR1 and not r.ok
    assert local_start(["sh", "-c", "exit 3"]).result().code == 3


def test_invoke_local_runs_say_the_same() -> None:
    # exec: the shell invoke starts is replaced, so the signal ends invoke's own child
    assert Shell(Context()).run("exec kill -TERM $$").code == 128 + signal.SIGTERM
    assert Shell(Context()).run("exit 4").code == 4


def test_exit_code() -> None:
    assert [shell_exit_code(c) for c in (0, 1, 255, -9, -15)] == [0, 1, 255, 137, 143]
