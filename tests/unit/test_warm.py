"""The warm start's pure parts: which commands take it, and where (and whether) its socket is."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dltasks import warm


def test_only_the_listed_tasks_go_warm_and_dlt_warm_0_turns_it_off() -> None:
    assert warm.wanted(["dlt", "train", "--gpu", "0"], {})
    assert warm.wanted(["dlt", "runs"], {"DLT_WARM": "1"})
    assert not warm.wanted(["dlt", "train"], {"DLT_WARM": "0"})
    assert not warm.wanted(["dlt", "train"], {"DLT_WARM": " Off "})
    for argv in (["dlt"], ["dlt", "--list"], ["dlt", "setup"], ["dlt", "shell"],
                 ["dlt", "--version"], ["dlt", "-e", "train"]):
        assert not warm.wanted(argv, {}), argv


def test_the_socket_is_in_a_private_folder_of_the_user(tmp_path: Path) -> None:
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    path = warm.socket_path(env)
    assert path and path.startswith(str(tmp_path / "dltasks-warm") + "/")
    assert (tmp_path / "dltasks-warm").stat().st_mode & 0o777 == 0o700
    assert warm.socket_path(env) == path  # the same server for the same Python and files
    assert warm.socket_path({**env, "PYTHONPATH": "/elsewhere"}) != path


def test_a_folder_open_to_others_is_never_used(tmp_path: Path) -> None:
    folder = tmp_path / "dltasks-warm"
    folder.mkdir()
    folder.chmod(0o755)
    assert warm.socket_path({"XDG_RUNTIME_DIR": str(tmp_path)}) is None
    folder.rmdir()
    folder.symlink_to(tmp_path)  # a link planted in its place
    assert warm.socket_path({"XDG_RUNTIME_DIR": str(tmp_path)}) is None


def test_a_relative_runtime_dir_falls_back_to_tmp() -> None:
    path = warm.socket_path({"XDG_RUNTIME_DIR": "relative"})
    assert path and path.startswith(f"/tmp/dltasks-warm-{os.getuid()}/")


def test_any_edit_of_the_package_names_another_server(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "a.py").write_text("")
    (tmp_path / "sub" / "b.py").write_text("")
    (tmp_path / "__pycache__").mkdir()
    before = warm._mtimes(str(tmp_path))
    assert before.endswith(":2")
    (tmp_path / "__pycache__" / "a.cpython-312.pyc").write_text("")  # byte code: no change
    assert warm._mtimes(str(tmp_path)) == before
    st = (tmp_path / "sub" / "b.py").stat()
    os.utime(tmp_path / "sub" / "b.py", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert warm._mtimes(str(tmp_path)) != before


def test_the_worker_s_streams_buffer_as_the_client_s_did() -> None:
    """An unbuffered client (PYTHONUNBUFFERED, -u: write-through) gets every write through
    at once; a buffered one with line buffering gets each line: a run's progress line is
    seen while it runs, not when it ends."""
    from dltasks.warmserver import _stream

    for how, text in ((("utf-8", "strict", False, True), "no newline"),
                      (("utf-8", "strict", True, False), "a line\n")):
        r, w = os.pipe()
        try:
            s = _stream(w, "w", how)
            s.write(text)
            os.set_blocking(r, False)
            assert os.read(r, 100) == text.encode(), how
        finally:
            os.close(r)
            os.close(w)
    assert _stream(0, "r", None) is None  # a closed stdin stays None, as in the client


def test_another_cgroup_or_locale_names_another_server(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A command in a Slurm job (or another login session) must not be run by a server of
    another: their cgroups differ, and so do the socket names."""
    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    here = warm.socket_path(env)
    assert warm.socket_path({**env, "LANG": "C"}) != here
    monkeypatch.setattr(warm, "_cgroup", lambda: "0::/system.slice/slurmstepd.scope/job_7\n")
    assert warm.socket_path(env) != here


def test_other_resource_limits_name_another_server(tmp_path: Path) -> None:
    """A worker has its server's limits (those of the command that started it): `ulimit -c 0`
    in one shell must not be lost to a server started from another."""
    import resource

    env = {"XDG_RUNTIME_DIR": str(tmp_path)}
    before = warm.socket_path(env)
    soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
    resource.setrlimit(resource.RLIMIT_CORE, (0 if soft else min(1 << 20, hard), hard))
    try:
        assert warm.socket_path(env) != before
    finally:
        resource.setrlimit(resource.RLIMIT_CORE, (soft, hard))
    assert warm.socket_path(env) == before


def test_early_gpus_reads_a_train_command_line_without_invoke() -> None:
    """start_early's guess at a `dlt train` command line: the --gpu values ([] when none are
    given: DLT_GPUS decides), None where no local GPU facts will be asked for."""
    from dltasks.tasks.run import early_gpus

    assert early_gpus(["dlt", "train"]) == []
    assert early_gpus(["dlt", "train", "--gpu", "0", "-g", "1,2", "--gpu=3", "-g=4"]) == [
        "0", "1,2", "3", "4"]
    assert early_gpus(["dlt", "train", "-d", "--", "--gpu", "7"]) == []  # the command's own
    for argv in (["dlt", "runs"], ["dlt"], ["dlt", "train", "--slurm", "--gpu", "0"],
                 ["dlt", "train", "-l"], ["dlt", "train", "--nnodes", "2"],
                 ["dlt", "train", "--nnodes=2"], ["dlt", "train", "-h"],
                 ["dlt", "train", "--help"]):
        assert early_gpus(argv) is None, argv
