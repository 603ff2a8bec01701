"""A remote run's results survive later syncs and trains; `fetch RUN` brings back that run's
files only, and never overwrites a local file that differs (real sshd, real engine)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.sshd_harness import Lab, fab

pytestmark = [pytest.mark.ssh, pytest.mark.docker]


def _cleanup(engine: object, project: str) -> None:
    for c in engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.project={project}"}):
        c.remove(force=True)


def _setup(d: Path, name: str, base_image: str) -> Path:
    """The project's settings and .gitignore; returns its folder on gpu1."""
    with (d / ".env").open("a") as f:
        f.write(f"DLT_PROJECT={name}\nDLT_IMAGE={base_image}\nDLT_GPUS=none\n"
                "DLT_OUTPUT_DIR=outputs\n")
    (d / ".gitignore").write_text("checkpoints/\noutputs/\n")
    return Path(f"/home/dltgpu1/dltasks/{name}")


def test_checkpoints_survive_trains_and_syncs(ssh_lab: Lab, remote_project: tuple[Path, str],
                                             engine: object, base_image: str) -> None:
    d, name = remote_project
    remote = _setup(d, name, base_image)
    write = "sh -c 'mkdir -p checkpoints && echo step1 > checkpoints/ckpt.pt && echo saved'"
    check = "sh -c 'cat checkpoints/ckpt.pt'"
    try:
        r = fab("-H", "gpu1", "train", cwd=d, env=ssh_lab.env(DLT_TRAIN_CMD=write))
        assert r.returncode == 0 and "saved" in r.stdout, r.stderr
        assert (remote / "checkpoints" / "ckpt.pt").read_text() == "step1\n"
        (d / "main.py").write_text("print('edited')\n")  # each train really syncs something
        for i in range(2):
            (d / f"extra{i}.py").write_text("x = 1\n")
            r = fab("-H", "gpu1", "train", cwd=d, env=ssh_lab.env(DLT_TRAIN_CMD=check))
            assert r.returncode == 0 and "step1" in r.stdout, r.stderr
            r = fab("-H", "gpu1", "sync", "--full", cwd=d, env=ssh_lab.env())
            assert r.returncode == 0, r.stderr
        assert (remote / "checkpoints" / "ckpt.pt").read_text() == "step1\n"
        (d / "extra0.py").unlink()  # sent by a sync, gone here: deleted there
        r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
        assert r.returncode == 0 and "1 deleted" in r.stderr, r.stderr
        assert not (remote / "extra0.py").exists() and (remote / "extra1.py").is_file()
        assert (remote / "checkpoints" / "ckpt.pt").read_text() == "step1\n"
    finally:
        _cleanup(engine, name)


def test_host_made_file_is_never_overwritten_by_a_local_file_of_that_name(
        ssh_lab: Lab, remote_project: tuple[Path, str], engine: object, base_image: str) -> None:
    d, name = remote_project
    remote = _setup(d, name, base_image)
    (d / ".gitignore").write_text("outputs/\n")  # checkpoints/ is NOT ignored: it would go
    write = "sh -c 'mkdir -p checkpoints && echo trained > checkpoints/ckpt.pt'"
    check = "sh -c 'cat checkpoints/ckpt.pt'"
    try:
        r = fab("-H", "gpu1", "train", cwd=d, env=ssh_lab.env(DLT_TRAIN_CMD=write))
        assert r.returncode == 0, r.stderr
        (d / "checkpoints").mkdir()
        (d / "checkpoints" / "ckpt.pt").write_text("an old local checkpoint\n")
        for i in range(3):
            (d / f"extra{i}.py").write_text("x = 1\n")  # each sync has something to send
            r = fab("-H", "gpu1", "sync", "--full", cwd=d, env=ssh_lab.env())
            assert r.returncode == 0, r.stderr
            kept = [x for x in r.stderr.splitlines() if x.startswith("dlt: kept")]
            assert kept == ["dlt: kept 1 file(s) gpu1 made (checkpoints/ckpt.pt): a file of "
                            "that name here was not sent; rename one of them"], r.stderr
            assert (remote / f"extra{i}.py").is_file()
        r = fab("-H", "gpu1", "train", cwd=d, env=ssh_lab.env(DLT_TRAIN_CMD=check))
        assert r.returncode == 0 and "trained" in r.stdout, r.stderr
        assert "dlt: kept 1 file(s) gpu1 made (checkpoints/ckpt.pt)" in r.stderr
        assert (remote / "checkpoints" / "ckpt.pt").read_text() == "trained\n"
        sent = (remote / ".dltasks" / "sent").read_text()
        assert "checkpoints/ckpt.pt" not in sent and "extra2.py" in sent
        (d / "checkpoints" / "ckpt.pt").unlink()  # never sent: a local delete deletes nothing
        r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        assert (remote / "checkpoints" / "ckpt.pt").read_text() == "trained\n"
    finally:
        _cleanup(engine, name)


def test_a_synced_file_a_run_rewrote_is_never_reverted(
        ssh_lab: Lab, remote_project: tuple[Path, str], engine: object, base_image: str) -> None:
    d, name = remote_project
    remote = _setup(d, name, base_image)
    (d / "results.csv").write_text("epoch,loss\n")
    (d / "data.txt").write_text("raw\n")
    rewrite = "sh -c 'echo 1,0.5 >> results.csv && echo prepared > data.txt && echo done'"
    try:
        r = fab("-H", "gpu1", "train", cwd=d, env=ssh_lab.env(DLT_TRAIN_CMD=rewrite))
        assert r.returncode == 0 and "done" in r.stdout, r.stderr
        # unchanged here: the run's versions stay, and nothing is said
        r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
        assert r.returncode == 0 and "kept" not in r.stderr, r.stderr
        assert (remote / "results.csv").read_text() == "epoch,loss\n1,0.5\n"
        assert (remote / "data.txt").read_text() == "prepared\n"
        # changed here too: the host's stays, said in one line, every sync until it is settled
        time.sleep(1.1)  # a new mtime (whole seconds) for the edit here
        (d / "results.csv").write_text("epoch,loss,acc\n")
        for _ in range(2):
            r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
            assert r.returncode == 0, r.stderr
            assert "kept 1 file(s) as gpu1 has them (results.csv)" in r.stderr, r.stderr
            assert (remote / "results.csv").read_text() == "epoch,loss\n1,0.5\n"
        # deleted here: the host's rewritten copy is not the one a sync sent, so it stays
        (d / "results.csv").unlink()
        r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
        assert r.returncode == 0 and "0 deleted" in r.stderr, r.stderr
        assert (remote / "results.csv").is_file()
        # a synced file the host lost (unchanged here) is sent again
        (remote / "data.txt").unlink()
        (remote / "main.py").unlink()
        r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        assert (remote / "main.py").read_text() == (d / "main.py").read_text()
        assert (remote / "data.txt").read_text() == "raw\n"
    finally:
        _cleanup(engine, name)


def test_outputs_as_host_path_inside_the_project_survive(
        ssh_lab: Lab, remote_project: tuple[Path, str], engine: object, base_image: str) -> None:
    d, name = remote_project
    remote = _setup(d, name, base_image)
    (d / ".env.gpu1").write_text(f"DLT_OUTPUT_DIR={remote}/results\n")
    (d / "results").mkdir()
    (d / "results" / "model.pt").write_text("the laptop's, never sent over the host's\n")
    cmd = "sh -c 'echo host-run > /outputs/model.pt'"
    try:
        r = fab("-H", "gpu1", "train", cwd=d, env=ssh_lab.env(DLT_TRAIN_CMD=cmd))
        assert r.returncode == 0, r.stderr
        for _ in range(2):
            r = fab("-H", "gpu1", "sync", "--full", cwd=d, env=ssh_lab.env())
            assert r.returncode == 0, r.stderr
        assert (remote / "results" / "model.pt").read_text() == "host-run\n"
    finally:
        _cleanup(engine, name)


def _detached(ssh_lab: Lab, d: Path, cmd: str) -> str:
    r = fab("-H", "gpu1", "train", "--detach", cwd=d, env=ssh_lab.env(DLT_TRAIN_CMD=cmd))
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def _wait(engine: object, run_id: str) -> float:
    """Wait for the run's end; its end as the engine saw it (seconds since the epoch)."""
    from datetime import datetime

    (c,) = engine.containers.list(  # type: ignore[attr-defined]
        ignore_removed=True, all=True, filters={"label": f"dltasks.run={run_id}"})
    assert c.wait(timeout=60)["StatusCode"] == 0
    c.reload()
    return datetime.fromisoformat(c.attrs["State"]["FinishedAt"][:19] + "+00:00").timestamp()


def test_fetch_brings_that_runs_files_and_keeps_differing_local_ones(
        ssh_lab: Lab, remote_project: tuple[Path, str], engine: object, base_image: str) -> None:
    d, name = remote_project
    _setup(d, name, base_image)
    try:
        a = _detached(ssh_lab, d, "sh -c 'echo A > /outputs/a.txt; echo A > /outputs/shared.txt; "
                                  "mkdir -p checkpoints; echo wa > checkpoints/a.pt'")
        ended = _wait(engine, a)
        deadline = time.monotonic() + 10
        while time.time() < ended + 2.5 and time.monotonic() < deadline:
            time.sleep(0.1)  # run B must start after A's window (whole seconds)
        b = _detached(ssh_lab, d, "sh -c 'echo B > /outputs/b.txt; mkdir -p checkpoints; "
                                  "echo wb > checkpoints/b.pt'")
        _wait(engine, b)
        (d / "outputs").mkdir(exist_ok=True)
        (d / "outputs" / "shared.txt").write_text("my local edit\n")
        r = fab("-H", "gpu1", "fetch", a, cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        assert (d / "outputs" / "a.txt").read_text() == "A\n"
        assert not (d / "outputs" / "b.txt").exists()                # run B's, not A's
        assert (d / "outputs" / "shared.txt").read_text() == "my local edit\n"  # kept
        assert (d / "outputs" / "shared.from-gpu1.txt").read_text() == "A\n"    # theirs beside
        kept = [x for x in r.stderr.splitlines() if "kept 1 local file" in x]
        assert len(kept) == 1 and "shared.txt" in kept[0] and "shared.from-gpu1.txt" in kept[0]
        made = d / "runs" / a / "host-files"
        assert (made / "checkpoints" / "a.pt").read_text() == "wa\n"
        assert not (made / "checkpoints" / "b.pt").exists() and not (made / "main.py").exists()
        assert not list((d / "outputs").glob(".dlt-fetch-*"))          # staging cleaned up
        again = fab("-H", "gpu1", "fetch", a, cwd=d, env=ssh_lab.env())
        assert again.returncode == 0, again.stderr
        assert "kept" not in again.stderr  # theirs already saved beside: nothing new to say
        rb = fab("-H", "gpu1", "fetch", b, cwd=d, env=ssh_lab.env())
        assert rb.returncode == 0, rb.stderr
        assert (d / "outputs" / "b.txt").read_text() == "B\n"
        assert (d / "outputs" / "shared.txt").read_text() == "my local edit\n"
    finally:
        _cleanup(engine, name)


def test_fetch_reads_only_your_run_and_brings_no_planted_link_or_lost_file(
        ssh_lab: Lab, remote_project: tuple[Path, str], engine: object, base_image: str) -> None:
    """A container anyone labelled with your run's id is not read; a host file named like
    fetch's own file list arrives; a symlink planted in the host's runs/RUN/ does not."""
    import json

    from dltasks.hosts.remote.fetch import HOST_FILES

    d, name = remote_project
    remote = _setup(d, name, base_image)
    try:
        a = _detached(ssh_lab, d, "sh -c 'echo mine; echo list > .files; echo x > .hidden; "
                                  "exit 3'")
        (c,) = engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.run={a}"})
        assert c.wait(timeout=60)["StatusCode"] == 3
        hostile = engine.containers.run(  # type: ignore[attr-defined]
            base_image, ["sh", "-c", "echo HOSTILE; exit 7"], detach=True,
            labels={"dltasks.run": a, "dltasks.project": name, "dltasks.user": "mallory"})
        assert hostile.wait(timeout=60)["StatusCode"] == 7
        (remote / "runs" / a / "evil").symlink_to("/etc")
        (remote / "runs" / a / "up").symlink_to("../../../..")
        r = fab("-H", "gpu1", "fetch", a, cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        log = (d / "runs" / a / "output.log").read_text()
        assert "mine" in log and "HOSTILE" not in log
        assert json.loads((d / "runs" / a / "manifest.json").read_text())["exit_code"] == 3
        made = d / "runs" / a / HOST_FILES
        assert (made / ".files").read_text() == "list\n" and (made / ".hidden").is_file()
        assert not (d / "runs" / a / "evil").is_symlink()
        assert not (d / "runs" / a / "up").is_symlink()
    finally:
        _cleanup(engine, name)
