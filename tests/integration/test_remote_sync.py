"""Sync to and fetch from real sshd hosts on loopback; a detached run outliving its connection."""

from __future__ import annotations

import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.sshd_harness import Lab, fab

pytestmark = [pytest.mark.ssh]

RID = "20261207-010203-abcd"  # a run id (run folders are sent only for valid ones)


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes()
            for p in sorted(root.rglob("*")) if p.is_file()}


def _target(ssh_lab: Lab,
            d: Path,
            monkeypatch: pytest.MonkeyPatch,
            alias: str = "gpu1"):  # type: ignore[no-untyped-def]
    import fabric

    from dltasks.hosts.remote import remote_target
    from dltasks.settings import resolve

    monkeypatch.setenv("HOME", str(ssh_lab.home))
    return remote_target(fabric.Connection(alias), resolve(d, host=alias, environ={}))


def test_sync_incremental_ignores_and_deletes(ssh_lab: Lab, remote_project: tuple[Path, str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from dltasks.hosts.remote.sync import sync_project

    d, name = remote_project
    with (d / ".env").open("a") as f:
        f.write("DLT_OUTPUT_DIR=outputs\nSECRET_TOKEN=abc\n")
    for i in range(200):
        (d / "pkg" / f"m{i // 50}").mkdir(parents=True, exist_ok=True)
        (d / "pkg" / f"m{i // 50}" / f"f{i}.py").write_text(f"x = {i}\n" * 20)
    (d / ".gitignore").write_text("*.pyc\n")
    (d / "pkg" / ".gitignore").write_text("local_only.txt\n")      # a nested .gitignore
    (d / "pkg" / "local_only.txt").write_text("x")
    (d / "pkg" / "keep.txt").write_text("x")
    (d / "a.pyc").write_text("x")
    (d / ".dltignore").write_text("data/\n")
    (d / "data").mkdir()
    (d / "data" / "big.bin").write_bytes(b"0" * 1000)
    (d / ".dockerignore").write_text("notes/*.md\n!notes/keep.md\n")
    (d / "notes").mkdir()
    (d / "notes" / "a.md").write_text("x")
    (d / ".git").mkdir()
    (d / ".git" / "HEAD").write_text("ref")
    (d / ".env.gpu1").write_text("HF_TOKEN=secret\n")
    (d / "runs" / RID).mkdir(parents=True)
    (d / "runs" / RID / "manifest.json").write_text("{}")
    (d / "outputs").mkdir()
    (d / "outputs" / "local.ckpt").write_text("laptop")
    remote = Path(f"/home/dltgpu1/dltasks/{name}")
    (remote / "outputs").mkdir(parents=True)  # only empty folders: still an empty folder
    shutil.chown(remote.parent, "dltgpu1", "dltgpu1")
    for p in (remote, remote / "outputs"):
        shutil.chown(p, "dltgpu1", "dltgpu1")

    t = _target(ssh_lab, d, monkeypatch)
    try:
        first = sync_project(t, t.settings, quiet=True)
        (remote / "outputs" / "remote.ckpt").write_text("made on gpu1")  # a run's result
        got = set(_tree(remote))
        assert "pkg/m0/f0.py" in got and "pkg/keep.txt" in got and "main.py" in got
        for ignored in ("a.pyc", "pkg/local_only.txt", "data/big.bin", "notes/a.md", ".env",
                        ".env.gpu1", ".git/HEAD", f"runs/{RID}/manifest.json",
                        "outputs/local.ckpt"):
            assert ignored not in got, ignored
        assert (remote / "outputs" / "remote.ckpt").read_text() == "made on gpu1"
        assert first.stats.transferred >= 200

        second = sync_project(t, t.settings, quiet=True)
        assert second.stats.transferred == 0 and second.stats.deleted == 0
        assert second.stats.literal_bytes == 0
        assert second.stats.bytes_sent < first.stats.bytes_sent / 4

        # what a run made on the host, and a synced file a run rewrote: never deleted
        (remote / "checkpoints").mkdir()
        (remote / "checkpoints" / "ckpt.pt").write_bytes(b"weights")
        (remote / "pkg" / "m1" / "notes.log").write_text("host log")
        (remote / "pkg" / "m1" / "f51.py").write_text("rewritten on the host\n")
        (d / "pkg" / "m0" / "f0.py").unlink()
        (d / "pkg" / "m1" / "f51.py").unlink()
        (d / "main.py").write_text("print('changed')\n")
        third = sync_project(t, t.settings, runs=[RID], quiet=True)
        assert third.stats.deleted == 1 and third.stats.transferred == 2  # main.py + the run record
        assert not (remote / "pkg" / "m0" / "f0.py").exists()      # sent, gone here: deleted
        assert (remote / "pkg" / "m1" / "f51.py").read_text() == "rewritten on the host\n"
        assert (remote / "main.py").read_text() == "print('changed')\n"
        assert (remote / "runs" / RID / "manifest.json").is_file()
        assert (remote / "outputs" / "remote.ckpt").is_file()  # never deleted by a sync
        for _ in range(3):  # a plain sync (runs/ not sent) leaves the run folder too
            sync_project(t, t.settings, quiet=True, shortcut=False)
        assert (remote / "checkpoints" / "ckpt.pt").read_bytes() == b"weights"
        assert (remote / "pkg" / "m1" / "notes.log").read_text() == "host log"
        assert (remote / "runs" / RID / "manifest.json").is_file()
        shutil.rmtree(d / "pkg" / "m3")  # a whole folder gone here: its files and it go there
        sync_project(t, t.settings, quiet=True)
        assert not (remote / "pkg" / "m3").exists() and (remote / "pkg" / "m2").is_dir()
    finally:
        t.close()


def test_foreign_folder_refused_untouched(ssh_lab: Lab, remote_project: tuple[Path, str]) -> None:
    d, name = remote_project
    remote = Path(f"/home/dltgpu1/dltasks/{name}")
    (remote / "thesis").mkdir(parents=True)
    (remote / "thesis" / "chapter1.tex").write_text("years of work")
    (remote / "main.py").write_text("their main.py")
    before = _tree(remote)
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode != 0
    line = r.stderr.strip()
    assert "\n" not in line and line.startswith(f"dlt: error: refusing to sync to {remote}")
    assert "not made by dltasks" in line and "DLT_REMOTE_DIR" in line
    assert _tree(remote) == before and not (remote / ".dltasks").exists()
    # a folder with only (empty) folders in it is empty: taken
    shutil.rmtree(remote)
    (remote / "outputs").mkdir(parents=True)
    shutil.chown(remote.parent, "dltgpu1", "dltgpu1")
    for p in (remote, remote / "outputs"):
        shutil.chown(p, "dltgpu1", "dltgpu1")
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    assert (remote / "main.py").read_text() == "print('hi')\n"
    assert (remote / ".dltasks" / "sent").is_file()


def _own(root: Path, user: str = "dltgpu1") -> None:
    """Files a test made as another user, handed to the host's login (as if it made them)."""
    shutil.chown(root.parent, user, user)
    for p in (root, *root.rglob("*")):
        shutil.chown(p, user, user)


def test_foreign_folder_refusal_names_adopt_and_adopt_overwrites_nothing(
        ssh_lab: Lab, remote_project: tuple[Path, str]) -> None:
    d, name = remote_project
    remote = Path(f"/home/dltgpu1/dltasks/{name}")
    (remote / "thesis").mkdir(parents=True)
    (remote / "thesis" / "chapter1.tex").write_text("years of work")
    (remote / "main.py").write_text("their main.py")
    _own(remote)
    before = _tree(remote)
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode != 0 and "\n" not in r.stderr.strip()
    assert "fab -H gpu1 sync --adopt" in r.stderr, r.stderr
    assert _tree(remote) == before
    (d / "other.py").write_text("x = 1\n")
    r = fab("-H", "gpu1", "sync", "--adopt", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    assert (remote / "main.py").read_text() == "their main.py"      # not overwritten
    assert (remote / "thesis" / "chapter1.tex").read_text() == "years of work"
    assert (remote / "other.py").read_text() == "x = 1\n"             # new: sent
    kept = [x for x in r.stderr.splitlines() if x.startswith("dlt: kept 1 file")]
    assert len(kept) == 1 and "(main.py)" in kept[0] and "gpu1 made" in kept[0], r.stderr
    (d / "main.py").unlink()
    (d / "other.py").unlink()
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    assert not (remote / "other.py").exists()                       # sent by a sync: deleted
    assert (remote / "main.py").read_text() == "their main.py"      # never sent: stays


def test_folder_a_train_made_before_the_record_is_taken(
        ssh_lab: Lab, remote_project: tuple[Path, str]) -> None:
    """What `fab -H gpu1 train` of an older dltasks left (code + runs/<id>/configs/, no sync
    stamp, no manifest there) is dltasks' own: synced, not refused."""
    d, name = remote_project
    remote = Path(f"/home/dltgpu1/dltasks/{name}")
    (remote / "runs" / RID / "configs").mkdir(parents=True)
    (remote / "runs" / RID / "configs" / "train.yaml").write_text("lr: 1\n")
    (remote / "main.py").write_text("print('hi')\n")
    _own(remote)
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    assert (remote / ".dltasks" / "sent").is_file()
    assert (remote / "runs" / RID / "configs" / "train.yaml").read_text() == "lr: 1\n"
    # a folder named runs/<not a run id>/ proves nothing: refused (no sync stamp either)
    from dltasks.hosts.remote.synced import stamp_path

    (ssh_lab.hosts["gpu1"].home / stamp_path(f"~/dltasks/{name}")).unlink()
    shutil.rmtree(remote)
    (remote / "runs" / "notes").mkdir(parents=True)
    (remote / "main.py").write_text("theirs")
    _own(remote)
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode != 0 and "not made by dltasks" in r.stderr, r.stderr
    assert (remote / "main.py").read_text() == "theirs"


def test_dltignore_reinclude_sends_gitignored_inputs(ssh_lab: Lab,
                                                      remote_project: tuple[Path, str]) -> None:
    d, name = remote_project
    (d / ".gitignore").write_text("input.txt\n*.bin\n")
    (d / "data").mkdir()
    (d / "data" / "input.txt").write_text("First Citizen:\n")
    (d / "train.bin").write_bytes(b"\1" * 64)
    (d / "val.bin").write_bytes(b"\2" * 64)
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    remote = Path(f"/home/dltgpu1/dltasks/{name}")
    assert not (remote / "data" / "input.txt").exists() and not (remote / "train.bin").exists()
    (d / ".dltignore").write_text("!input.txt\n!*.bin\n")
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    assert (remote / "data" / "input.txt").read_text() == "First Citizen:\n"
    assert (remote / "train.bin").read_bytes() == b"\1" * 64 and (remote / "val.bin").is_file()


@pytest.mark.parametrize("remote_dir", ["/", "~", "/home", "/home/dltgpu2", "~/.ssh", "/etc/x",
                                        "/data", "~/dltasks/..", "/var/lib", "/opt/conda",
                                        "/mnt/data"])
def test_dangerous_remote_dirs_refused(ssh_lab: Lab, remote_project: tuple[Path, str],
                                       remote_dir: str) -> None:
    d, _ = remote_project
    home = ssh_lab.hosts["gpu1"].home
    before = sorted(p.name for p in home.iterdir())
    r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env(DLT_REMOTE_DIR=remote_dir))
    assert r.returncode != 0
    assert r.stderr.startswith("dlt: error: refusing to sync to"), r.stderr
    assert sorted(p.name for p in home.iterdir()) == before


def test_symlinked_remote_dir_refused(ssh_lab: Lab, remote_project: tuple[Path, str]) -> None:
    d, name = remote_project
    base = ssh_lab.hosts["gpu1"].home / "dltasks"
    base.mkdir(exist_ok=True)
    link = base / f"{name}-link"
    link.symlink_to(ssh_lab.hosts["gpu1"].home)
    root_link = base / f"{name}-root"
    root_link.symlink_to("/")
    try:
        r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env(DLT_REMOTE_DIR=str(link)))
        assert r.returncode != 0 and "symlink" in r.stderr
        # lexically fine, physically /etc: the folder is checked again where it really is
        r = fab("-H", "gpu1", "sync", cwd=d, env=ssh_lab.env(DLT_REMOTE_DIR=str(root_link / "etc")))
        assert r.returncode != 0 and "refusing to sync to /etc" in r.stderr, r.stderr
    finally:
        link.unlink()
        root_link.unlink()


def _detached_run(ssh_lab: Lab, d: Path, cmd: str) -> str:
    with (d / ".env").open("a") as f:
        f.write(f"DLT_OUTPUT_DIR=outputs\nDLT_GPUS=none\nDLT_TRAIN_CMD={cmd}\n")
    r = fab("-H", "gpu1", "train", "--detach", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stderr
    return r.stdout.strip().splitlines()[-1]


def _container(engine: object, run_id: str):  # type: ignore[no-untyped-def]
    found = engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"label": f"dltasks.run={run_id}"})
    assert len(found) == 1
    return found[0]


def test_fetch_brings_outputs_back_identical(ssh_lab: Lab, remote_project: tuple[Path, str],
                                             engine: object, base_image: str) -> None:
    d, name = remote_project
    (d / ".env").open("a").write(f"DLT_IMAGE={base_image}\n")
    cmd = ("sh -c 'mkdir -p /outputs/ck && head -c 3000000 /dev/urandom > /outputs/ck/w.bin "
           "&& echo metrics > /outputs/m.txt && echo trained'")
    run_id = _detached_run(ssh_lab, d, cmd)
    c = _container(engine, run_id)
    try:
        assert c.wait(timeout=60)["StatusCode"] == 0
        r = fab("-H", "gpu1", "fetch", run_id, cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stderr
        remote = Path(f"/home/dltgpu1/dltasks/{name}/outputs")
        assert _tree(d / "outputs") == _tree(remote) and "ck/w.bin" in _tree(remote)
        assert (d / "runs" / run_id / "output.log").read_text() == "trained\n"
        assert '"exit_code": 0' in (d / "runs" / run_id / "manifest.json").read_text()
        again = fab("-H", "gpu1", "fetch", run_id, cwd=d, env=ssh_lab.env())
        assert again.returncode == 0 and " 0 of " in again.stderr
        other = fab("-H", "gpu2", "fetch", run_id, cwd=d, env=ssh_lab.env())
        assert other.returncode != 0 and f"fab -H gpu1 fetch {run_id}" in other.stderr
    finally:
        c.remove(force=True)


def _reader(proc: subprocess.Popen[str], lines: list[str]) -> threading.Thread:
    def read() -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            lines.append(line)

    th = threading.Thread(target=read, daemon=True)
    th.start()
    return th


def test_run_outlives_killed_connection_and_logs_reattach(
        ssh_lab: Lab, remote_project: tuple[Path, str], engine: object, base_image: str) -> None:
    d, _ = remote_project
    (d / ".env").open("a").write(f"DLT_IMAGE={base_image}\n")
    cmd = "sh -c 'for i in 1 2 3 4 5 6 7 8; do echo tick $i; sleep 1; done; echo finished'"
    run_id = _detached_run(ssh_lab, d, cmd)
    c = _container(engine, run_id)
    try:
        before = set(ssh_lab.sshd_children("gpu1"))
        code = "import sys; from fabric.main import program; program.run()"
        follow = subprocess.Popen(
            [sys.executable, "-c", code, "-H", "gpu1", "logs", run_id,
             "--follow"], cwd=d, env=ssh_lab.env(), text=True, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE)
        lines: list[str] = []
        _reader(follow, lines)
        deadline = time.monotonic() + 20
        while not any("tick" in x for x in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any("tick" in x for x in lines), lines
        # the connection drops, as with a dead network
        assert ssh_lab.drop_connections("gpu1", before)
        t0 = time.monotonic()
        follow.wait(timeout=30)
        assert time.monotonic() - t0 < 5  # the follower noticed the dead connection at once
        c.reload()
        assert c.status == "running"  # the run did not notice
        again = fab("-H", "gpu1", "logs", run_id, "--follow", cwd=d, env=ssh_lab.env(),
                    timeout=60)
        assert again.returncode == 0, again.stderr
        assert "finished" in again.stdout
        c.reload()
        assert c.status == "exited" and c.attrs["State"]["ExitCode"] == 0
    finally:
        c.remove(force=True)


def test_lost_connection_is_reported_and_closing_is_quiet(
        ssh_lab: Lab, remote_project: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> None:
    from dltasks.errors import DltError
    from dltasks.hosts.remote.target import check_alive, connection_lost

    d, _ = remote_project
    before = set(ssh_lab.sshd_children("gpu1"))
    t = _target(ssh_lab, d, monkeypatch)
    try:
        assert t.docker.ping() and not connection_lost(t)
        check_alive(t, "r1")
        assert ssh_lab.drop_connections("gpu1", before)
        deadline = time.monotonic() + 10
        while not connection_lost(t) and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(DltError) as e:
            check_alive(t, "r1")
        assert "lost the SSH connection to gpu1" in e.value.message
        assert "fab -H gpu1 logs r1 --follow" in e.value.message
    finally:
        t.close()  # must not raise on a dead connection


def test_ctrl_c_stops_only_that_remote_run(ssh_lab: Lab, remote_project: tuple[Path, str],
                                           engine: object, base_image: str) -> None:
    d, _ = remote_project
    other = engine.containers.run(base_image, ["sleep", "60"], detach=True,  # type: ignore[attr-defined]
                                  labels={"dltasks.test": "1"})
    with (d / ".env").open("a") as f:
        f.write(f"DLT_IMAGE={base_image}\nDLT_GPUS=none\nDLT_STOP_TIMEOUT=2\n"
                "DLT_TRAIN_CMD=sh -c 'echo started; sleep 60'\n")
    (d / "fabfile.py").write_text("from dltasks.tasks import ns  # noqa: F401\n")
    code = "import sys; from fabric.main import program; program.run()"
    proc = subprocess.Popen([sys.executable, "-c", code, "-H", "gpu1", "train"], cwd=d,
                            env=ssh_lab.env(), text=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)
    try:
        lines: list[str] = []
        _reader(proc, lines)
        deadline = time.monotonic() + 30
        while not any("started" in x for x in lines) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert any("started" in x for x in lines), (lines, proc.poll())
        runs = engine.containers.list(  # type: ignore[attr-defined]
                ignore_removed=True, filters={"label": "dltasks.host=gpu1"})
        # this test's run (its record label is this folder's): other tests' projects are
        # also named "proj" and may run on the same engine meanwhile
        mine = [c for c in runs if c.labels.get("dltasks.record", "").startswith(f"{d}/")]
        assert len(mine) == 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) != 0
        assert not engine.containers.list(  # type: ignore[attr-defined]
            ignore_removed=True, all=True, filters={"id": mine[0].id})  # stopped and removed
        other.reload()
        assert other.status == "running"  # and only it
    finally:
        if proc.poll() is None:
            proc.kill()
        other.remove(force=True)
