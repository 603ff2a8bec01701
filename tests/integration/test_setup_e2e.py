"""End to end: `dlt setup --no-gpu` on a machine with no Docker engine at all.

The "machine" is a fresh PRIVILEGED container made from the test base image (Debian bookworm,
no systemd, no engine). dltasks is pip-installed in it from this checkout; setup then installs
docker.io from the distribution's mirror, starts dockerd (through Debian's init script: no
systemd there), builds the project image and writes .env; a second run changes nothing.

Preparation, said plainly: no registry is reachable, so the project's base image cannot be
pulled inside either. The test saves dlt-test-base:latest on the host (`docker save`) and hands
the archive to setup with `--load`, the route an air-gapped host uses. The inner engine keeps
its data in a volume (overlay2 on the container's own overlay filesystem fails).

Where the outer engine cannot grant --privileged (this machine's sandbox withholds
CAP_SYS_RESOURCE, so runc fails with "unable to apply caps"), the box gets the closest thing
the engine can grant: every other capability, no seccomp/AppArmor/masked paths, all devices,
and a private cgroup namespace whose hierarchies are remounted read-write. Debian's init
script then cannot raise its ulimits, so setup falls back to starting dockerd directly, the
same fallback it uses on any host without systemd whose init script fails.
"""

from __future__ import annotations

import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(900)]

CA = Path("/etc/ssl/certs/ca-certificates.crt")
LABELS = {"dltasks.test": "1"}


def sh(box: Any, cmd: str, env: dict[str, str] | None = None,
       workdir: str = "/root") -> tuple[int, str]:
    code, out = box.exec_run(["bash", "-lc", cmd], environment=env or {}, workdir=workdir)
    return code, out.decode(errors="replace")


def table(out: str) -> dict[str, tuple[str, str]]:
    """STEP -> (STATUS, DETAIL) from setup's summary table."""
    lines = out.splitlines()
    head = max(i for i, ln in enumerate(lines) if ln.startswith("STEP "))
    status_at, detail_at = lines[head].index("STATUS"), lines[head].index("DETAIL")
    rows = {}
    for ln in lines[head + 1:]:
        if not ln.strip():
            break
        rows[ln[:status_at].strip()] = (ln[status_at:detail_at].strip(), ln[detail_at:].strip())
    return rows


@pytest.fixture
def box(engine: Any, base_image: str) -> Iterator[Any]:
    """The privileged container, dltasks installed in it, the base image archive at hand."""
    tag = uuid.uuid4().hex[:8]
    share = Path(tempfile.mkdtemp(prefix="dlt-e2e-", dir="/tmp"))
    volume = engine.volumes.create(f"dlt-e2e-{tag}", labels=LABELS)
    container = None
    try:
        shutil.copytree(ROOT / "src", share / "dltasks" / "src",
                        ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        for name in ("pyproject.toml", "README.md"):
            if (ROOT / name).exists():
                shutil.copy(ROOT / name, share / "dltasks" / name)
        shutil.copy(CA, share / "ca.crt")
        with open(share / "base.tar", "wb") as f:  # docker save, streamed
            for chunk in engine.images.get(base_image).save(named=True):
                f.write(chunk)
        container = _start_box(engine, base_image, f"dlt-e2e-{tag}", {
            volume.name: {"bind": "/var/lib/docker", "mode": "rw"},
            str(share): {"bind": "/mnt/host", "mode": "ro"}})
        code, out = sh(container, "cp -r /mnt/host/dltasks /opt/dltasks && "
                       "python3 -m pip install -q /opt/dltasks",
                       env={"PIP_CERT": "/mnt/host/ca.crt", "PIP_BREAK_SYSTEM_PACKAGES": "1",
                            "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PIP_DEFAULT_TIMEOUT": "60"})
        assert code == 0, f"pip install dltasks in the box failed: {out[-2000:]}"
        code, out = sh(container, "command -v dockerd docker; ls /etc/init.d/docker")
        assert code != 0 and "dockerd" not in out, "the box must start without an engine"
        sh(container, "mkdir -p /root/proj && echo 'print(1)' > /root/proj/main.py")
        yield container
    finally:
        if container is not None:
            # stop the inner engine first, so its overlay mounts do not pin the volume
            sh(container, "service docker stop || pkill -x dockerd; sleep 2")
            container.remove(force=True, v=True)
        volume.remove(force=True)
        shutil.rmtree(share, ignore_errors=True)


#: Every capability but CAP_SYS_RESOURCE, which some sandboxed engines (this machine's among
#: them) cannot grant: there `--privileged` fails with "unable to apply caps".
CAPS = ["AUDIT_CONTROL", "AUDIT_READ", "AUDIT_WRITE", "BLOCK_SUSPEND", "CHOWN", "DAC_OVERRIDE",
        "DAC_READ_SEARCH", "FOWNER", "FSETID", "IPC_LOCK", "IPC_OWNER", "KILL", "LEASE",
        "LINUX_IMMUTABLE", "MAC_ADMIN", "MAC_OVERRIDE", "MKNOD", "NET_ADMIN", "NET_BIND_SERVICE",
        "NET_BROADCAST", "NET_RAW", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYSLOG",
        "SYS_ADMIN", "SYS_BOOT", "SYS_CHROOT", "SYS_MODULE", "SYS_NICE", "SYS_PACCT",
        "SYS_PTRACE", "SYS_RAWIO", "SYS_TIME", "SYS_TTY_CONFIG", "WAKE_ALARM"]
#: In the fallback box the cgroup hierarchies are mounted read-only; with a private cgroup
#: namespace they can be mounted afresh, read-write, rooted at the box's own cgroup.
REMOUNT_CGROUPS = ("mount -o remount,rw /sys && for d in /sys/fs/cgroup/*; do "
                   "s=$(basename $d); o=$s; [ $s = systemd ] && o=none,name=systemd; "
                   "umount $d && mount -t cgroup -o $o cgroup $d; done")


def _start_box(engine: Any, image: str, name: str, volumes: dict[str, Any]) -> Any:
    """A --privileged container; where this engine cannot grant that, the closest it can:
    every other capability, no seccomp/AppArmor/masked paths, all devices, private cgroups."""
    import docker.errors

    common = {"labels": LABELS, "volumes": volumes, "detach": True}
    box = engine.containers.create(image, ["sleep", "infinity"], name=name, privileged=True,
                                   **common)
    try:
        box.start()
        return box
    except docker.errors.APIError as e:
        box.remove(force=True)
        if "apply caps" not in str(e):
            raise
    binds = [f"{src}:{v['bind']}:{v['mode']}" for src, v in volumes.items()]
    host_config = engine.api.create_host_config(
        binds=binds, cap_add=CAPS, cgroupns="private", device_cgroup_rules=["a *:* rwm"],
        security_opt=["seccomp=unconfined", "apparmor=unconfined"])
    # what `--security-opt systempaths=unconfined` sends (docker-py has no keyword for it)
    host_config.update({"MaskedPaths": [], "ReadonlyPaths": []})
    created = engine.api.create_container(image, ["sleep", "infinity"], name=name,
                                          labels=LABELS, host_config=host_config)
    box = engine.containers.get(created["Id"])
    try:
        box.start()
        code, out = sh(box, REMOUNT_CGROUPS)
        assert code == 0, f"cannot make the box's cgroups writable: {out}"
    except BaseException:
        box.remove(force=True)
        raise
    return box


SETUP = "dlt setup --no-gpu --load /mnt/host/base.tar"


def test_setup_on_a_machine_without_an_engine(box: Any, base_image: str) -> None:
    env = {"DLT_BASE_IMAGE": base_image, "DLT_PROJECT": "e2e"}
    dry_code, dry = sh(box, "dlt setup --no-gpu --dry-run", env=env, workdir="/root/proj")
    assert dry_code == 0, dry
    assert "[docker engine] DEBIAN_FRONTEND=noninteractive apt-get install -y docker.io" in dry
    assert table(dry)["docker engine"][0] == "would change"
    assert sh(box, "test -e /root/proj/.env")[0] != 0, "--dry-run must not write .env"
    assert sh(box, "command -v dockerd")[0] != 0, "--dry-run must not install anything"

    code, first = sh(box, SETUP, env=env, workdir="/root/proj")
    print(first)  # shown with -s, and by pytest when an assertion fails
    assert code == 0, first[-4000:]
    rows = table(first)
    assert rows["docker engine"][0] == "changed", rows
    assert "installed from the distribution and started" in rows["docker engine"][1]
    assert rows["docker group"] == ("ok", "running as root (no group needed)")
    for step in ("nvidia driver", "nvidia toolkit", "gpu in container"):
        assert rows[step] == ("skipped", "--no-gpu")
    assert rows["load images"] == ("changed", f"loaded {base_image}")
    assert rows["project image"][0] == "changed" and rows["project image"][1].startswith(
        "built e2e:")
    assert rows[".env"][0] == "changed"
    assert first.splitlines()[-1].startswith("setup done:")

    # the engine really works in there: it answers, keeps data on the volume, has the image
    code, info = sh(box, "docker info --format '{{.ServerVersion}} {{.Driver}} "
                         "{{.DockerRootDir}}' && docker image inspect e2e:latest >/dev/null")
    assert code == 0, info
    version, driver, root = info.split()[-3:]
    assert root == "/var/lib/docker" and driver in ("overlay2", "vfs", "fuse-overlayfs")
    code, ran = sh(box, "docker run --rm e2e:latest python3 -c 'print(6*7)'")
    assert code == 0 and ran.strip().endswith("42"), ran

    code, second = sh(box, SETUP, env=env, workdir="/root/proj")
    print(second)
    assert code == 0, second[-4000:]
    rows = table(second)
    assert {s for s, _ in rows.values()} == {"ok", "skipped"}, rows
    assert rows["docker engine"] == ("ok", f"Docker {version} answers at "
                                           "unix:///var/run/docker.sock")
    assert rows["load images"][0] == "ok"
    assert rows["project image"] == ("ok", "e2e:latest is up to date")
    assert "==>" not in second  # no command ran
    assert second.splitlines()[-1] == "everything ok, nothing changed: 5 ok, 3 skipped"

    # doctor agrees, in there, with the engine setup made
    code, doc = sh(box, "dlt doctor --no-gpu --min-free 1g", env=env, workdir="/root/proj")
    assert "ok    engine        Docker engine" in doc, doc
    assert "ok    image         the project image matches its requirements" in doc

    # the engine stops (on the default socket, in there): doctor says so, setup starts it
    sh(box, "kill $(cat /var/run/docker.pid); for i in $(seq 30); do "
            "[ -e /var/run/docker.pid ] || break; sleep 1; done")
    code, doc = sh(box, "dlt doctor --no-gpu", env=env, workdir="/root/proj")
    assert code == 1
    assert "ERROR engine        cannot reach the Docker engine at unix:///var/run/docker.sock " \
           "(the default socket): " in doc, doc
    assert "fix: start it (`sudo service docker start`)" in doc
    code, third = sh(box, SETUP, env=env, workdir="/root/proj")
    print(third)
    assert code == 0, third[-4000:]
    rows = table(third)
    assert rows["docker engine"] == ("changed", "started (unix:///var/run/docker.sock)")
    assert {s for k, (s, _) in rows.items() if k != "docker engine"} == {"ok", "skipped"}


def test_unknown_distribution_in_the_box(box: Any) -> None:
    """A host whose /etc/os-release names a distribution we have no plan for."""
    arch = (ROOT / "tests" / "data" / "os-release" / "arch").read_text()
    sh(box, f"cat > /etc/os-release <<'EOF'\n{arch}EOF")
    code, out = sh(box, "dlt install-nvidia-docker --dry-run", workdir="/root/proj")
    assert code == 1
    assert out.strip().splitlines()[-1].startswith(
        "dlt: error: Arch Linux is not a supported distribution; supported: Ubuntu 20.04+")
    code, out = sh(box, "dlt setup --no-gpu", workdir="/root/proj")
    assert code == 1
    assert table(out)["docker engine"][0] == "failed"
    assert "Arch Linux is not a supported distribution" in out
