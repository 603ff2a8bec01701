"""A shared GPU server: runs pick free GPUs, never collide, wait their turn; `gpus` shows who
holds what.

Real pieces: the private engine with the stand-in NVIDIA hook (tests/gpu_engine.py: the
engine grants GPU device requests, so runs start with DeviceRequests for the GPUs picked), a
test-made nvidia-smi first on PATH reporting 4 idle H200s (tests/gpu_fixtures.py), two real
system users in the docker group, and the real GPU lock file of this machine.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt
from tests.gpu_engine import GpuEngine, gpu_engine_for
from tests.gpu_fixtures import gpu_line, gpu_uuid, make_fake_smi
from tests.users import User, throwaway_user

pytestmark = [pytest.mark.docker, pytest.mark.slow]

BASE_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"


@pytest.fixture(scope="module")
def gpu_engine(engine: Any, base_image: str) -> Iterator[GpuEngine]:
    with gpu_engine_for(engine, base_image, shared=True) as eng:  # the users reach it
        yield eng


@pytest.fixture(scope="module")
def users() -> Iterator[tuple[User, User]]:
    with throwaway_user(groups=("docker",)) as a, throwaway_user(groups=("docker",)) as b:
        yield a, b


@pytest.fixture
def smi(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    d = Path(f"/tmp/dlt-fake-smi-{os.getpid()}-{time.monotonic_ns()}")
    make_fake_smi(d, gpus=4)
    yield d
    subprocess.run(["rm", "-rf", str(d)], check=False)


@pytest.fixture(autouse=True)
def no_runs_left(gpu_engine: GpuEngine) -> Iterator[None]:
    yield
    for c in gpu_engine.client.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.run"}):
        c.remove(force=True)


def user_project(u: User, eng: GpuEngine, image: str, name: str) -> Path:
    d = u.home / name
    subprocess.run(["runuser", "-u", u.name, "--", "mkdir", "-p", str(d)], check=True)
    env = d / ".env"
    env.write_text(f"DLT_IMAGE={image}\nDLT_DOCKER_HOST={eng.url}\nDLT_TRAIN_CMD=sleep 600\n"
                   "DLT_STOP_TIMEOUT=1\n")
    subprocess.run(["chown", "-R", f"{u.name}:{u.name}", str(d)], check=True)
    return d


def root_project(project: Path, eng: GpuEngine, image: str) -> Path:
    (project / ".env").write_text(f"DLT_IMAGE={image}\nDLT_DOCKER_HOST={eng.url}\n"
                                  "DLT_TRAIN_CMD=sleep 600\nDLT_STOP_TIMEOUT=1\n")
    return project


def path_env(smi: Path) -> dict[str, str]:
    return {"PATH": f"{smi}:{BASE_PATH}"}


def held(eng: GpuEngine) -> dict[str, tuple[str, list[str]]]:
    """run id -> (its gpus label, the device ids of its DeviceRequest) of running runs."""
    out = {}
    for c in eng.client.containers.list(ignore_removed=True, filters={"label": "dltasks.run"}):
        reqs = c.attrs["HostConfig"].get("DeviceRequests") or []
        ids = [i for r in reqs for i in (r.get("DeviceIDs") or [])]
        out[c.labels["dltasks.run"]] = (c.labels.get("dltasks.gpus", ""), ids)
    return out


def remove_runs(eng: GpuEngine) -> None:
    for c in eng.client.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.run"}):
        c.remove(force=True)


def test_two_users_starting_at_the_same_moment_never_get_the_same_gpu(
        gpu_engine: GpuEngine, base_image: str, users: tuple[User, User], smi: Path) -> None:
    a, b = users
    projects = {u.name: user_project(u, gpu_engine, base_image, "share") for u in users}
    for rnd in range(20):
        barrier = threading.Barrier(2)
        results: dict[str, subprocess.CompletedProcess[str]] = {}

        def start(u: User, barrier: threading.Barrier = barrier,
                  results: dict[str, Any] = results) -> None:
            barrier.wait()
            results[u.name] = u.run("train", "--gpu", "free:1", "--detach",
                                    cwd=projects[u.name], env=path_env(smi), timeout=120)

        threads = [threading.Thread(target=start, args=(u,)) for u in (a, b)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for name, r in results.items():
            assert r.returncode == 0, f"round {rnd}, {name}: {r.stdout}{r.stderr}"
        runs = held(gpu_engine)
        assert len(runs) == 2, (rnd, runs)
        labels = sorted(lab for lab, _ in runs.values())
        assert labels == ["0", "1"], (rnd, runs)             # the two lowest, one each
        for lab, ids in runs.values():
            assert ids == [lab]                              # the engine got that GPU only
        users_seen = {c.labels["dltasks.user"] for c in gpu_engine.client.containers.list(
            ignore_removed=True, filters={"label": "dltasks.run"})}
        assert users_seen == {a.name, b.name}
        remove_runs(gpu_engine)


def test_a_fifth_request_waits_in_line_and_starts_when_a_gpu_frees(
        gpu_engine: GpuEngine, base_image: str, project: Path, smi: Path) -> None:
    root_project(project, gpu_engine, base_image)
    env = path_env(smi)
    for _ in range(4):
        r = dlt("train", "--gpu", "free:1", "--detach", cwd=project, env=env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
    runs = held(gpu_engine)
    assert sorted(lab for lab, _ in runs.values()) == ["0", "1", "2", "3"]

    refused = dlt("train", "--gpu", "free:1", "--detach", cwd=project, env=env, timeout=120)
    assert refused.returncode == 1
    err = refused.stderr.strip()
    assert err.startswith("dlt: error: --gpu free:1: 0 of 4 GPU(s) on local free;")
    assert len(err.splitlines()) == 1 and "--wait" in err
    for run_id in runs:
        assert f"held by run {run_id} (root, " in err

    fifth = subprocess.Popen([*_dlt_argv(), "train", "--gpu", "free:1", "--detach", "--wait",
                              "120"], cwd=project, env=_env(env), text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        time.sleep(3)
        assert fifth.poll() is None                          # still waiting
        victim = next(r for r, (lab, _) in runs.items() if lab == "2")
        r = dlt("stop", victim, cwd=project, env=env, timeout=120)
        assert r.returncode == 0, r.stdout + r.stderr
        out, err = fifth.communicate(timeout=60)
    finally:
        if fifth.poll() is None:
            fifth.kill()
            fifth.wait()
    assert fifth.returncode == 0, out + err
    assert "dlt: waiting for --gpu free:1 on local: 0 of 4 free" in err
    assert "dlt: got GPU 2 on local" in err
    new = out.split()[0]
    assert held(gpu_engine)[new] == ("2", ["2"])


def test_wait_gives_up_after_its_timeout_with_the_holders(
        gpu_engine: GpuEngine, base_image: str, project: Path, smi: Path) -> None:
    root_project(project, gpu_engine, base_image)
    r = dlt("train", "--gpu", "1", "--detach", cwd=project, env=path_env(smi), timeout=120)
    assert r.returncode == 0, r.stderr
    t0 = time.monotonic()
    r = dlt("train", "--gpu", "1", "--wait", "2", cwd=project, env=path_env(smi), timeout=120)
    assert r.returncode == 1 and time.monotonic() - t0 < 30
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("dlt: error: gave up after waiting 2s: --gpu 1 on local: GPU 1 is "
                           "held by run ")
    assert not (project / "runs").exists() or len(list((project / "runs").iterdir())) == 1


def test_explicit_ids_are_refused_when_held_or_busy_and_share_goes_on(
        gpu_engine: GpuEngine, base_image: str, project: Path, smi: Path) -> None:
    root_project(project, gpu_engine, base_image)
    env = path_env(smi)
    first = dlt("train", "--gpu", "2", "--detach", cwd=project, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    run_id = first.stdout.split()[0]
    r = dlt("train", "--gpu", "2", "--detach", cwd=project, env=env, timeout=120)
    assert r.returncode == 1
    assert f"--gpu 2 on local: GPU 2 is held by run {run_id} (root, {project.name}, since " \
        in r.stderr
    assert "--share" in r.stderr
    shared = dlt("train", "--gpu", "2", "--share", "--detach", cwd=project, env=env, timeout=120)
    assert shared.returncode == 0, shared.stderr
    assert f"dlt: --share: GPU 2: run {run_id}" in shared.stderr
    record = json.loads(next(p for p in (project / "runs").glob("*/manifest.json")
                             if shared.stdout.split()[0] in str(p)).read_text())
    assert record["gpus"] == "2" and record["gpus_shared"][0].startswith("GPU 2: run ")

    # the driver's account: a process on GPU 3, and 5000 MiB in use on GPU 0 with none
    (smi / "apps.csv").write_text(f"{gpu_uuid(3)}, 4242, /usr/bin/python3, 10758\n")
    (smi / "gpus.csv").write_text("".join(
        gpu_line(i, used=5000 if i == 0 else 10758 if i == 3 else 0) + "\n" for i in range(4)))
    r = dlt("train", "--gpu", "3", cwd=project, env=env, timeout=120)
    assert r.returncode == 1 and "GPU 3 is busy: python3 pid 4242 10758 MiB" in r.stderr
    r = dlt("train", "--gpu", "free:1", "--detach", cwd=project, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    assert held(gpu_engine)[r.stdout.split()[0]][0] == "1"   # 0 and 3 busy, 2 held
    r = dlt("train", "--gpu", "free:1", "--detach", cwd=project,
            env={**env, "DLT_GPU_FREE_MIB": "8000"}, timeout=120)
    assert r.returncode == 0, r.stderr
    assert held(gpu_engine)[r.stdout.split()[0]][0] == "0"   # 5000 MiB is under 8000


def test_default_auto_never_hands_out_a_held_gpu(
        gpu_engine: GpuEngine, base_image: str, project: Path, smi: Path) -> None:
    root_project(project, gpu_engine, base_image)
    # the toolkit's hook on PATH, as on a host with the toolkit: auto then means all GPUs
    env = {"PATH": f"{smi}:{gpu_engine.dir / 'bin'}:{BASE_PATH}"}
    r = dlt("train", "--gpu", "free:1", "--detach", cwd=project, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    r = dlt("train", "--detach", cwd=project, env=env, timeout=120)   # DLT_GPUS=auto
    assert r.returncode == 1
    assert "DLT_GPUS=auto (all GPUs) on local: GPU 0 is held by run" in r.stderr
    assert "--gpu free:N" in r.stderr


def test_killed_starts_leave_nothing_held(gpu_engine: GpuEngine, base_image: str,
                                          project: Path, smi: Path) -> None:
    root_project(project, gpu_engine, base_image)
    env = path_env(smi)
    # a start killed while it waits for GPUs: nothing of it remains
    r = dlt("train", "--gpu", "free:3", "--detach", cwd=project, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    waiter = subprocess.Popen([*_dlt_argv(), "train", "--gpu", "free:2", "--wait"],
                              cwd=project, env=_env(env), stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True)
    _wait_for_text(waiter, "waiting for --gpu free:2")
    waiter.send_signal(signal.SIGKILL)
    waiter.wait()
    assert len(held(gpu_engine)) == 1
    remove_runs(gpu_engine)

    # a start killed between create and start leaves a created container: not a claim
    gpu_engine.client.containers.create(base_image, ["true"], labels={
        "dltasks.run": "20261201-000000-dead", "dltasks.gpus": "0,1,2,3",
        "dltasks.user": "ghost", "dltasks.project": "x"})
    # a start killed while holding the GPU lock: the kernel drops the lock
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_LOCK], stdout=subprocess.PIPE, text=True)
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    runner = subprocess.Popen([*_dlt_argv(), "train", "--gpu", "free:4", "--detach"],
                              cwd=project, env=_env(env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_text(runner, "waiting for the GPU lock on local")
        holder.send_signal(signal.SIGKILL)
        holder.wait()
        out, err = runner.communicate(timeout=60)
    finally:
        for p in (holder, runner):
            if p.poll() is None:
                p.kill()
                p.wait()
    assert runner.returncode == 0, err
    assert held(gpu_engine)[out.split()[0]][0] == "0,1,2,3"


_HOLD_LOCK = """
import fcntl, os, sys, time
from dltasks.gpu.lock import lock_path, open_lock
fd = open_lock(lock_path())   # made if missing (a fresh host), as dltasks makes it
fcntl.flock(fd, fcntl.LOCK_EX)
print("locked", flush=True)
time.sleep(600)
"""


def test_lock_file_is_usable_by_every_user(users: tuple[User, User]) -> None:
    from dltasks.gpu.lock import lock_path, open_lock

    path = lock_path()
    fd = open_lock(path)   # made if missing (a fresh host), as dltasks makes it
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.close(fd)
    assert os.stat(path).st_mode & 0o444 == 0o444   # made 0644 now (0666 by older versions)
    a, _ = users
    r = subprocess.run(["runuser", "-u", a.name, "--", "/usr/bin/python3", "-c",
                        f"import fcntl, os; fd = os.open({path!r}, os.O_RDONLY); "
                        "fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB); print('ok')"],
                       capture_output=True, text=True, timeout=60)
    assert r.stdout.strip() == "ok", r.stderr


def test_a_waiter_does_not_hold_the_lock_while_it_waits(
        gpu_engine: GpuEngine, base_image: str, project: Path, smi: Path) -> None:
    root_project(project, gpu_engine, base_image)
    env = {**path_env(smi), "DLT_LOCK_TIMEOUT": "10"}
    r = dlt("train", "--gpu", "free:3", "--detach", cwd=project, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    waiter = subprocess.Popen([*_dlt_argv(), "train", "--gpu", "free:2", "--detach", "--wait",
                               "300"], cwd=project, env=_env(env), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True)
    try:
        _wait_for_text(waiter, "waiting for --gpu free:2")
        # the free GPU goes to the next run at once: the waiter does not sit on the lock
        t0 = time.monotonic()
        r = dlt("train", "--gpu", "free:1", "--detach", cwd=project, env=env, timeout=120)
        assert r.returncode == 0, r.stderr
        assert "waiting for the GPU lock" not in r.stderr and time.monotonic() - t0 < 30
        assert held(gpu_engine)[r.stdout.split()[0]][0] == "3"
        assert waiter.poll() is None                         # still waiting for its two
    finally:
        waiter.kill()
        waiter.wait()


@contextlib.contextmanager
def lock_held_by(u: User) -> Iterator[subprocess.Popen[str]]:
    """``u`` holds this machine's real GPU lock (a real process of theirs) until the end."""
    from dltasks.gpu.lock import lock_path, open_lock

    os.close(open_lock(lock_path()))   # made if missing (a fresh host), as dltasks makes it
    hold = ("import fcntl, os, sys\n"
            f"fd = os.open({lock_path()!r}, os.O_RDONLY)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\nprint('locked', flush=True)\nsys.stdin.read()\n")
    holder = subprocess.Popen(["runuser", "-u", u.name, "--", "/usr/bin/python3", "-c", hold],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        yield holder
    finally:
        assert holder.stdin is not None
        holder.stdin.close()
        holder.wait(timeout=30)


def test_a_lock_held_by_another_user_ends_the_start_in_one_line_naming_them(
        gpu_engine: GpuEngine, base_image: str, project: Path, smi: Path,
        users: tuple[User, User]) -> None:
    from dltasks.gpu.lock import lock_path

    root_project(project, gpu_engine, base_image)
    a, _ = users
    with lock_held_by(a):
        t0 = time.monotonic()
        r = dlt("train", "--gpu", "free:1", "--detach", cwd=project,
                env={**path_env(smi), "DLT_LOCK_TIMEOUT": "2"}, timeout=120)
        took = time.monotonic() - t0
    assert r.returncode == 75, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert lines[0] == ("dlt: waiting for the GPU lock on local (another GPU run is starting "
                        "there; giving up after 2s, DLT_LOCK_TIMEOUT)...")
    assert lines[1].startswith(f"dlt: error: the GPU lock {lock_path()} on local is still held "
                               f"by {a.name} (pid ") and len(lines) == 2, r.stderr
    assert "python3) after 2s: " in lines[1] and took < 30
    assert not held(gpu_engine)


def test_wait_outlasts_a_held_lock_and_gives_up_on_its_own_deadline_naming_the_holder(
        gpu_engine: GpuEngine, base_image: str, project: Path, smi: Path,
        users: tuple[User, User]) -> None:
    from dltasks.gpu.lock import lock_path

    root_project(project, gpu_engine, base_image)
    a, _ = users
    # DLT_LOCK_TIMEOUT 1, --wait 300: a lock held past 1s is one more reason to wait
    env = {**path_env(smi), "DLT_LOCK_TIMEOUT": "1"}
    with lock_held_by(a):
        waiter = subprocess.Popen([*_dlt_argv(), "train", "--gpu", "free:1", "--detach",
                                   "--wait", "300"], cwd=project, env=_env(env),
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            # said only once an attempt has timed out: the start went on waiting
            _wait_for_text(waiter, "dlt: waiting for --gpu free:1 on local: the GPU lock there "
                                   f"is held by {a.name} (pid ")
            assert waiter.poll() is None
        except BaseException:
            waiter.kill()
            waiter.wait()
            raise
    try:
        out, err = waiter.communicate(timeout=60)
    finally:
        if waiter.poll() is None:
            waiter.kill()
            waiter.wait()
    assert waiter.returncode == 0, out + err
    assert "DLT_LOCK_TIMEOUT" not in err and "dlt: got GPU 0 on local" in err, err
    assert held(gpu_engine)[out.split()[0]][0] == "0"

    # DLT_LOCK_TIMEOUT 60, --wait 3: the start ends after about 3s, not 60, in one line
    env = {**path_env(smi), "DLT_LOCK_TIMEOUT": "60"}
    with lock_held_by(a):
        t0 = time.monotonic()
        r = dlt("train", "--gpu", "free:1", "--detach", "--wait", "3", cwd=project, env=env,
                timeout=120)
        took = time.monotonic() - t0
    assert r.returncode == 75, r.stdout + r.stderr
    last = r.stderr.strip().splitlines()[-1]
    lock = re.escape(lock_path())
    assert re.fullmatch(rf"dlt: error: gave up after waiting \d+s: the GPU lock {lock} on local "
                        rf"is held by {a.name} \(pid \d+, python3\): another GPU run is "
                        r"starting there \(or its holder is stuck\); retry later, ask its owner, "
                        r"or wait longer \(--wait\)", last), r.stderr
    assert 3 <= took < 30, took
    assert len(held(gpu_engine)) == 1                      # nothing more started


def test_gpus_shows_who_holds_what(gpu_engine: GpuEngine, base_image: str,
                                   users: tuple[User, User], smi: Path) -> None:
    a, _ = users
    proj = user_project(a, gpu_engine, base_image, "table")
    r = a.run("train", "--gpu", "free:2", "--detach", cwd=proj, env=path_env(smi), timeout=120)
    assert r.returncode == 0, r.stderr
    run_id = r.stdout.split()[0]
    (smi / "apps.csv").write_text(f"{gpu_uuid(3)}, 4242, /usr/bin/python3, 10758\n")
    r = a.run("gpus", cwd=proj, env=path_env(smi), timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == "local: 4 GPU(s), 1 free (2)"
    row = {ln.split()[0]: ln for ln in lines[2:]}
    for i in ("0", "1"):
        assert f"held   {run_id} ({a.name}, table, since " in row[i]
    assert "busy" in row["3"] and "python3 pid 4242 10758 MiB" in row["3"]
    assert "free" in row["2"] and "NVIDIA H200" in row["2"]
    data = json.loads(a.run("gpus", "--json", cwd=proj, env=path_env(smi)).stdout)
    assert data["free"] == [2] and data["gpus"][0]["held_by"][0]["user"] == a.name
    assert data["gpus"][3]["processes"] == [{"pid": 4242, "name": "/usr/bin/python3",
                                             "memory_mib": 10758, "dltasks": False}]


def test_inside_the_container_gpus_are_in_pci_order(gpu_engine: GpuEngine, base_image: str,
                                                    project: Path, smi: Path) -> None:
    root_project(project, gpu_engine, base_image)
    (project / ".env").write_text((project / ".env").read_text() + "DLT_TRAIN_CMD=env\n")
    r = dlt("train", "--gpu", "3,1", cwd=project, env=path_env(smi), timeout=120)
    assert r.returncode == 0, r.stderr
    env = dict(ln.split("=", 1) for ln in r.stdout.splitlines() if "=" in ln)
    assert env["CUDA_DEVICE_ORDER"] == "PCI_BUS_ID"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "1,3"


def _dlt_argv() -> list[str]:


    return [sys.executable, "-m", "dltasks"]


def _env(extra: dict[str, str]) -> dict[str, str]:
    full = {k: v for k, v in os.environ.items() if not k.startswith("DLT_")}
    full.update(extra)
    return full


def _wait_for_text(p: subprocess.Popen[str], text: str, timeout: float = 60) -> None:
    """Read ``p``'s stderr until ``text`` shows (the process goes on)."""
    assert p.stderr is not None
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = p.stderr.readline()
        if not line and p.poll() is not None:
            break
        seen += line
        if text in seen:
            return
    raise AssertionError(f"never said {text!r}: {seen}")


@pytest.mark.ssh
def test_each_host_picks_its_own_and_reports_its_own(
        gpu_engine: GpuEngine, base_image: str, ssh_lab: Any,
        remote_project: tuple[Path, str], smi: Path) -> None:
    """`fab -H gpu1,gpu2 train --gpu free:2`: each host's nvidia-smi (DLT_NVIDIA_SMI in its
    .env.<host>), claims and GPU lock (flock held over SSH) decide there; gpu2, with one GPU,
    fails alone, as other per-host failures do. `fab -H gpu1,gpu2 gpus` shows a table each."""
    from tests.sshd_harness import fab

    d, _ = remote_project
    one = make_fake_smi(Path(f"{smi}-one"), gpus=1)
    try:
        with (d / ".env").open("a") as f:
            f.write(f"DLT_IMAGE={base_image}\nDLT_TRAIN_CMD=sleep 600\nDLT_STOP_TIMEOUT=1\n"
                    f"DLT_DOCKER_HOST={gpu_engine.url}\n")
        (d / ".env.gpu1").write_text(f"DLT_NVIDIA_SMI={smi}/nvidia-smi\n")
        (d / ".env.gpu2").write_text(f"DLT_NVIDIA_SMI={one}/nvidia-smi\n")
        r = fab("-H", "gpu1,gpu2", "train", "--gpu", "free:2", "--detach", cwd=d,
                env=ssh_lab.env())
        assert r.returncode == 1, r.stdout + r.stderr
        runs = {c.labels["dltasks.run"]: c.labels for c in gpu_engine.client.containers.list(
            ignore_removed=True, filters={"label": "dltasks.run"})}
        assert [lab["dltasks.gpus"] for lab in runs.values()] == ["0,1"]
        (only,) = runs.values()
        assert only["dltasks.host"] == "gpu1" and only["dltasks.user"] == "dltgpu1"
        assert "dlt: error: [gpu2] --gpu free:2: 0 of 1 GPU(s) on gpu2 free; GPU 0 held by run" \
            in r.stderr, \
            r.stderr
        r = fab("-H", "gpu1,gpu2", "gpus", cwd=d, env=ssh_lab.env())
        assert r.returncode == 0, r.stdout + r.stderr
        assert "gpu1: 4 GPU(s), 2 free (2,3)" in r.stdout
        assert "gpu2: 1 GPU(s), 0 free" in r.stdout
    finally:
        subprocess.run(["rm", "-rf", str(one)], check=False)


@pytest.mark.ssh
def test_wait_outlasts_a_held_remote_lock_until_its_own_deadline(
        gpu_engine: GpuEngine, base_image: str, ssh_lab: Any,
        remote_project: tuple[Path, str], smi: Path, users: tuple[User, User]) -> None:
    """`fab -H gpu1 train --gpu free:1 --wait 3` while another user holds gpu1's GPU lock
    (the lock script over SSH, DLT_LOCK_TIMEOUT 60): it gives up after about 3s, not 60, in
    one line naming the holder."""
    from dltasks.gpu.lock import lock_path
    from tests.sshd_harness import fab

    d, _ = remote_project
    a, _ = users
    with (d / ".env").open("a") as f:
        f.write(f"DLT_IMAGE={base_image}\nDLT_TRAIN_CMD=sleep 600\nDLT_STOP_TIMEOUT=1\n"
                f"DLT_DOCKER_HOST={gpu_engine.url}\nDLT_LOCK_TIMEOUT=60\n")
    (d / ".env.gpu1").write_text(f"DLT_NVIDIA_SMI={smi}/nvidia-smi\n")
    with lock_held_by(a):
        t0 = time.monotonic()
        r = fab("-H", "gpu1", "train", "--gpu", "free:1", "--detach", "--wait", "3", cwd=d,
                env=ssh_lab.env())
        took = time.monotonic() - t0
    assert r.returncode != 0, r.stdout + r.stderr
    assert "dlt: waiting for --gpu free:1 on gpu1: the GPU lock there is held by another " \
        "start" in r.stderr, r.stderr
    lock = re.escape(lock_path())
    gave_up = re.search(rf"gave up after waiting (\d+)s: the GPU lock {lock} on gpu1 is held by "
                        rf"{a.name} \(pid \d+, python3\): .*or wait longer \(--wait\)", r.stderr)
    assert gave_up and 3 <= int(gave_up[1]) < 10, r.stderr
    assert "DLT_LOCK_TIMEOUT" not in r.stderr and took < 40, (took, r.stderr)
    assert not held(gpu_engine)
