"""`dlt install-nvidia-docker` on this machine (no NVIDIA driver, no route to NVIDIA's repo)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from invoke import Context

from dltasks.errors import DltError
from dltasks.hosts.shell import Shell
from dltasks.hostsetup import toolkit as tk
from dltasks.hostsetup.apply import run_plan
from dltasks.hostsetup.facts import SetupFacts, gather_setup_facts
from tests.conftest import dlt


def _host() -> SetupFacts:
    return gather_setup_facts(Shell(Context()))


def test_no_driver_stops_with_the_driver_hint(project: Path) -> None:
    if _host().nvidia_smi_ok:
        pytest.skip("this machine has a working NVIDIA driver")
    r = dlt("install-nvidia-docker", cwd=project)
    assert r.returncode == 1
    err = r.stderr.strip()
    assert "\n" not in err
    assert err.startswith("dlt: error: no working NVIDIA driver on local (`nvidia-smi` not "
                          "found): install the NVIDIA driver first")
    assert "reboot, and check that `nvidia-smi` works" in err


def test_dry_run_prints_this_hosts_exact_commands(project: Path) -> None:
    host = _host()
    r = dlt("install-nvidia-docker", "--dry-run", "--version", "1.17.8-1", cwd=project)
    assert r.returncode == 0, r.stderr
    plan = tk.toolkit_plan(host.os, host.toolkit_state(), restart="R",
                           version="1.17.8-1")
    printed = [ln for ln in r.stdout.splitlines() if not ln.startswith("#")]
    # every command of this host's plan, in order (the restart depends on the init system)
    assert printed[:len(plan) - 1] == [c.cmd for c in plan[:-1]]
    assert r.stdout.startswith(f"# {host.os.label}: ")
    assert "nvidia-container-toolkit=1.17.8-1" in r.stdout
    if not host.nvidia_smi_ok:
        assert "# note: a real run stops before these: no working NVIDIA driver" in r.stdout


def test_version_from_the_environment(project: Path) -> None:
    r = dlt("install-nvidia-docker", "--dry-run", cwd=project,
            env={"NVIDIA_CONTAINER_TOOLKIT_VERSION": "1.16.2-1"})
    assert "libnvidia-container1=1.16.2-1" in r.stdout


def test_bad_version_is_one_line(project: Path) -> None:
    r = dlt("install-nvidia-docker", "--dry-run", "--version", "1.17;reboot", cwd=project)
    assert r.returncode == 1
    assert "is not a package version; write it like 1.17.8-1" in r.stderr


def test_offline_folder_without_packages(project: Path) -> None:
    pkgs = project / "pkgs"
    pkgs.mkdir()
    (pkgs / "notes.txt").write_text("x")
    r = dlt("install-nvidia-docker", "--dry-run", "--offline", str(pkgs), cwd=project)
    assert r.returncode == 1
    assert f"{pkgs} lacks nvidia-container-toolkit" in r.stderr
    assert "download them with" in r.stderr
    missing = dlt("install-nvidia-docker", "--dry-run", "--offline", str(project / "nope"),
                  cwd=project)
    assert f"cannot list {project / 'nope'}" in missing.stderr


def test_unreachable_repository_fails_fast_with_the_offline_route() -> None:
    """The reachability probe of this host's real plan, run for real (only it: were the
    repository reachable, the next steps would change this machine). NVIDIA's repository
    host cannot be reached from here, so the real attempt fails."""
    host = _host()
    plan = tk.toolkit_plan(host.os, host.toolkit_state(), restart="R")
    upto = next(i for i, c in enumerate(plan) if c.cmd == tk.probe_command().cmd)
    assert all(not c.network for c in plan[:upto])  # nothing before it touches NVIDIA's repo
    t0 = time.monotonic()
    with pytest.raises(DltError) as e:
        run_plan(Shell(Context()), plan[upto:upto + 1], host.os)
    took = time.monotonic() - t0
    assert took < 20, f"took {took:.1f}s"
    msg = e.value.message
    assert msg.startswith("cannot reach NVIDIA's package repository from local (")
    assert "inv install-nvidia-docker --offline DIR" in msg
    assert "\n" not in msg
