"""GPUs without the NVIDIA toolkit, on a machine without GPUs: a fake driver tree made of real
character devices (/dev/null's major and minor under the driver's names) and driver files with
their real names; a real container proves the nodes, mounts and environment arrive, and that
`--gpu 1` gets GPU 1's node only. The same through a CDI spec written by `dlt gpu-spec`."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt
from tests.gpu_fixtures import VERSION, make_driver
from tests.users import User, throwaway_user

pytestmark = pytest.mark.docker

#: What the container reports: its GPU nodes, the driver files, LD_LIBRARY_PATH, its uid.
SHOW = ("sh -c 'for f in /dev/nvidia*; do [ -c $f ] && echo node $f; done; "
        "cat /usr/lib/x86_64-linux-gnu/libcuda.so.1; nvidia-smi; "
        "ls /lib/firmware/nvidia/*/; echo LD=$LD_LIBRARY_PATH; echo uid=$(id -u); "
        "echo hi > /dev/nvidia1 && echo wrote-node'")


@pytest.fixture
def driver_root() -> Iterator[Path]:
    import tempfile

    root = Path(tempfile.mkdtemp(prefix="dlt-driver-", dir="/tmp"))
    root.chmod(0o755)
    make_driver(root, "debian", gpus=2)
    for p in [root, *root.rglob("*")]:
        if p.is_dir():
            p.chmod(0o755)
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def docker_user() -> Iterator[User]:
    with throwaway_user(groups=("docker",)) as u:
        yield u


def _project(d: Path, image: str, root: Path, extra: str = "") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    os.chmod(d, 0o777)
    (d / ".env").write_text(f"DLT_IMAGE={image}\nDLT_DRIVER_ROOT={root}\n"
                            f"DLT_CDI_SPEC_DIRS={root}/no-cdi\nDLT_TRAIN_CMD={SHOW}\n{extra}")
    return d


def _runs_of(engine: Any, proj: Path) -> list[Any]:
    """This project's train containers (the engine is shared: others' runs are not ours)."""
    return [c for c in engine.containers.list(
            ignore_removed=True, all=True, filters={"label": "dltasks.kind=train"})
            if c.labels.get("dltasks.record", "").startswith(f"{proj}/")]


def _seen(stdout: str) -> dict[str, Any]:
    lines = stdout.splitlines()
    return {"nodes": [ln.split()[1] for ln in lines if ln.startswith("node ")],
            "lines": lines}


def test_direct_mode_gives_gpu_1_alone_as_a_non_root_user(
        base_image: str, driver_root: Path, docker_user: User, engine: Any) -> None:
    proj = _project(docker_user.home / "proj", base_image, driver_root)
    r = docker_user.run("train", "--gpu", "1", cwd=proj)
    assert r.returncode == 0, r.stdout + r.stderr
    seen = _seen(r.stdout)
    assert seen["nodes"] == ["/dev/nvidia-modeset", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools",
                             "/dev/nvidia1", "/dev/nvidiactl"]
    assert f"libcuda {VERSION}" in seen["lines"]            # the library, mounted
    assert f"fake nvidia-smi: driver {VERSION}" in seen["lines"]  # the driver's binary
    assert "gsp_ga10x.bin" in seen["lines"]                  # the GSP firmware
    assert "LD=/usr/lib/x86_64-linux-gnu" in seen["lines"]
    assert f"uid={docker_user.uid}" in seen["lines"] and "wrote-node" in seen["lines"]
    record = json.loads(next((proj / "runs").glob("*/manifest.json")).read_text())
    assert record["gpu_mode"] == "direct" and record["gpus"] == "1"
    assert "no NVIDIA runtime and no CDI spec" in record["gpu_mode_why"]
    assert f"--device {driver_root}/dev/nvidia1:/dev/nvidia1" in record["docker_run"]
    assert _runs_of(engine, proj) == []


def test_dry_run_shows_the_device_and_mount_flags(base_image: str, driver_root: Path,
                                                  project: Path) -> None:
    _project(project, base_image, driver_root)
    r = dlt("train", "--gpu", "0", "--dry-run", cwd=project)
    assert r.returncode == 0, r.stderr
    line = r.stdout.splitlines()[0]
    assert f"--device {driver_root}/dev/nvidia0:/dev/nvidia0" in line
    assert f"{driver_root}/dev/nvidia1" not in line and "--gpus" not in line
    assert (f"-v {driver_root}/usr/lib/x86_64-linux-gnu/libcuda.so.1:"
            "/usr/lib/x86_64-linux-gnu/libcuda.so.1:ro") in line


def test_gpu_none_and_auto_gpus(base_image: str, driver_root: Path, project: Path) -> None:
    _project(project, base_image, driver_root)
    r = dlt("train", "--gpu", "none", cwd=project)
    assert r.returncode == 0, r.stderr
    assert _seen(r.stdout)["nodes"] == []
    r = dlt("train", cwd=project)  # DLT_GPUS=auto: every GPU the driver has
    assert r.returncode == 0, r.stderr
    assert [n for n in _seen(r.stdout)["nodes"] if n[-1].isdigit()] == ["/dev/nvidia0",
                                                                      "/dev/nvidia1"]


def test_free_gpus_are_picked_in_direct_mode_too(base_image: str, driver_root: Path,
                                                project: Path, engine: Any) -> None:
    """Without nvidia-smi, the driver's GPU list and the claims decide: two detached
    free:1 runs get /dev/nvidia0 and /dev/nvidia1, a third is refused naming both."""
    _project(project, base_image, driver_root, "DLT_TRAIN_CMD=sleep 600\nDLT_STOP_TIMEOUT=1\n")
    try:
        nodes = []
        for _ in range(2):
            r = dlt("train", "--gpu", "free:1", "--detach", cwd=project)
            assert r.returncode == 0, r.stderr
            (c,) = engine.containers.list(
                    ignore_removed=True, filters={"label": f"dltasks.run={r.stdout.split()[0]}"})
            nodes += [d["PathInContainer"] for d in c.attrs["HostConfig"]["Devices"]
                      if d["PathInContainer"][-1].isdigit()]
        assert nodes == ["/dev/nvidia0", "/dev/nvidia1"]
        r = dlt("train", "--gpu", "free:1", cwd=project)
        assert r.returncode == 1
        assert "--gpu free:1: 0 of 2 GPU(s) on local free; GPU 0 held by run " in r.stderr
    finally:
        for c in _runs_of(engine, project):
            c.remove(force=True)


def test_a_spec_written_by_gpu_spec_is_applied_in_cdi_mode(
        base_image: str, driver_root: Path, project: Path) -> None:
    spec_dir = driver_root / "cdi"
    _project(project, base_image, driver_root)
    printed = dlt("gpu-spec", "--print", cwd=project)
    assert printed.returncode == 0, printed.stderr
    assert "kind: nvidia.com/gpu" in printed.stdout
    wrote = dlt("gpu-spec", "--output", str(spec_dir / "nvidia.yaml"), cwd=project)
    assert wrote.returncode == 0, wrote.stderr
    assert "2 GPU(s)" in wrote.stdout
    text = (spec_dir / "nvidia.yaml").read_text()
    assert text == printed.stdout
    # a hook we cannot run on this engine is named, not dropped
    with (spec_dir / "nvidia.yaml").open("a") as f:
        f.write("  hooks:\n  - hookName: createContainer\n    path: /usr/bin/nvidia-cdi-hook\n"
                "    args: [nvidia-cdi-hook, chmod, --mode, '755', --path, /dev/dri]\n")
    _project(project, base_image, driver_root, f"DLT_CDI_SPEC_DIRS={spec_dir}\n"
                                               "DLT_GPU_MODE=cdi\n")
    r = dlt("train", "--gpu", "1", cwd=project)
    assert r.returncode == 0, r.stdout + r.stderr
    assert [n for n in _seen(r.stdout)["nodes"] if n[-1].isdigit()] == ["/dev/nvidia1"]
    assert f"libcuda {VERSION}" in r.stdout
    assert "dlt: warning: the CDI spec" in r.stderr and "nvidia-cdi-hook chmod" in r.stderr
    bad = dlt("train", "--gpu", "5", cwd=project)
    assert bad.returncode == 1
    assert "has no device nvidia.com/gpu=5 (it has: 0, 1, all)" in bad.stderr


def test_no_driver_in_direct_mode_is_one_line(base_image: str, project: Path,
                                              tmp_path: Path) -> None:
    _project(project, base_image, tmp_path / "empty", "DLT_GPU_MODE=direct\n")
    r = dlt("train", "--gpu", "0", cwd=project)
    assert r.returncode == 1
    assert r.stderr.strip() == ("dlt: error: no NVIDIA driver on local (no /dev/nvidiactl): "
                                "install the NVIDIA driver there, or run with --gpu none")
    assert not (project / "runs").exists()


def test_setup_goes_on_without_the_toolkit_when_the_driver_can_give_gpus(
        driver_root: Path, project: Path, tmp_path: Path) -> None:
    """The toolkit step of `setup` when NVIDIA's repository cannot be reached: the host's
    driver (found for real under the driver root) gives the GPUs, so the step is not a
    failure; with no driver at all it still is."""
    import io

    from invoke import Context

    from dltasks.hosts.target import local_target
    from dltasks.hostsetup import onboard
    from dltasks.settings import resolve

    why = "cannot reach NVIDIA's package repository from local (timeout): use --offline DIR"
    for root, want in ((driver_root, "skipped"), (tmp_path / "none", "failed")):
        s = resolve(project, environ={"DLT_DRIVER_ROOT": str(root),
                                      "DLT_CDI_SPEC_DIRS": str(tmp_path / "no-cdi")})
        t = local_target(Context(), s)
        try:
            st = onboard._State(t, onboard.SetupOptions(), io.StringIO(), None)  # type: ignore[arg-type]
            step = onboard._without_toolkit(st, "nvidia toolkit", "install failed", why)
        finally:
            t.close()
        assert step.status == want, step
        if want == "skipped":
            assert step.detail == ("not installed (cannot reach NVIDIA's package repository "
                                   "from local (timeout)); runs use the host's driver directly "
                                   "(2 GPU(s), driver 580.159.04; `inv gpu-spec` writes a CDI "
                                   "spec of it)")


def test_doctor_says_which_mode_a_run_would_use(base_image: str, driver_root: Path,
                                                project: Path) -> None:
    _project(project, base_image, driver_root)
    r = dlt("doctor", "--min-free", "1m", cwd=project, timeout=120)
    assert ("ok    gpu mode      runs get GPUs by direct: no NVIDIA runtime and no CDI spec; "
            f"the host's driver is there (driver {VERSION})") in r.stdout, r.stdout
    assert "info  toolkit       no NVIDIA runtime, none needed: runs use direct mode" in r.stdout


@pytest.mark.ssh
def test_remote_host_without_the_toolkit(base_image: str, driver_root: Path, ssh_lab: Any,
                                         remote_project: tuple[Path, str]) -> None:
    """`fab -H gpu1 train --gpu 1`: the driver is found ON gpu1 (its .env.gpu1 names the
    driver root there), the run gets GPU 1's node only, as gpu1's user."""
    from tests.sshd_harness import fab

    d, _ = remote_project
    with (d / ".env").open("a") as f:
        f.write(f"DLT_IMAGE={base_image}\nDLT_TRAIN_CMD={SHOW}\n")
    (d / ".env.gpu1").write_text(f"DLT_DRIVER_ROOT={driver_root}\n"
                                 f"DLT_CDI_SPEC_DIRS={driver_root}/no-cdi\n")
    r = fab("-H", "gpu1", "train", "--gpu", "1", cwd=d, env=ssh_lab.env())
    assert r.returncode == 0, r.stdout + r.stderr
    seen = _seen(r.stdout)
    assert [n for n in seen["nodes"] if n[-1].isdigit()] == ["/dev/nvidia1"]
    assert f"libcuda {VERSION}" in seen["lines"] and "wrote-node" in seen["lines"]
    uid = int(subprocess.run(["id", "-u", "dltgpu1"], capture_output=True, text=True).stdout)
    assert f"uid={uid}" in seen["lines"]
    record = json.loads(next((d / "runs").glob("*/manifest.json")).read_text())
    assert record["gpu_mode"] == "direct" and record["host"] == "gpu1"
