"""GPU selection parsing and RunSpec renderings (engine arguments and `docker run` line)."""

from __future__ import annotations

import pytest

from dltasks.engine.spec import (
    Mount,
    RunSpec,
    command_argv,
    create_config,
    docker_run_cmdline,
    size_bytes,
)
from dltasks.errors import DltError
from dltasks.gpu.selection import GpuSelection, cli_flags, device_requests, parse_gpu_request


@pytest.mark.parametrize(
    "values, mode, ids",
    [
        (["0"], "ids", ("0",)),
        (["0", "1"], "ids", ("0", "1")),
        (["0,1"], "ids", ("0", "1")),
        (["1, 2", "3"], "ids", ("1", "2", "3")),
        (["01"], "ids", ("1",)),
        (["0", "0"], "ids", ("0",)),
        (["all"], "all", ()),
        (["ALL"], "all", ()),
        (["none"], "none", ()),
        (["auto"], "auto", ()),
        (None, "auto", ()),
        ([], "auto", ()),
        (["GPU-8f6c2b1e-aaaa"], "ids", ("GPU-8f6c2b1e-aaaa",)),
        ("2,3", "ids", ("2", "3")),
    ],
)
def test_parse_gpus(values: list[str] | None, mode: str, ids: tuple[str, ...]) -> None:
    sel = parse_gpu_request(values)
    assert (sel.mode, sel.ids) == (mode, ids)


@pytest.mark.parametrize("bad", [["abc"], ["-1"], ["0", "all"], ["none,1"], ["1.5"], ["gpu0"]])
def test_bad_gpu_ids_refused(bad: list[str]) -> None:
    with pytest.raises(DltError) as e:
        parse_gpu_request(bad)
    assert "\n" not in str(e.value)


def test_default_comes_from_setting() -> None:
    assert parse_gpu_request(None, default="none").mode == "none"
    assert parse_gpu_request(None, default="0,1").ids == ("0", "1")


def test_auto_resolution() -> None:
    assert GpuSelection("auto").resolve(True).mode == "all"
    assert GpuSelection("auto").resolve(False).mode == "none"
    assert GpuSelection("ids", ("1",)).resolve(False).ids == ("1",)


def test_device_requests_never_set_cuda_visible_devices() -> None:
    reqs = device_requests(parse_gpu_request(["1,2"]))
    assert reqs == [{"Driver": "", "Count": 0, "DeviceIDs": ["1", "2"],
                     "Capabilities": [["gpu"]], "Options": {}}]
    assert device_requests(parse_gpu_request(["all"]))[0]["Count"] == -1
    assert device_requests(parse_gpu_request(["none"])) == []
    spec = RunSpec(image="i", command=("x",), gpus=parse_gpu_request(["3"]))
    assert "CUDA_VISIBLE_DEVICES" not in str(create_config(spec))


def test_cli_flags() -> None:
    assert cli_flags(parse_gpu_request(["all"])) == ["--gpus", "all"]
    assert cli_flags(parse_gpu_request(["0,1"])) == ["--gpus", '"device=0,1"']
    assert cli_flags(parse_gpu_request(["none"])) == []


@pytest.mark.parametrize(
    "cmd, args, argv",
    [
        ("python main.py", (), ("python", "main.py")),
        ("python main.py", ("--lr", "0.1"), ("python", "main.py", "--lr", "0.1")),
        ("python  main.py", ("a b",), ("python", "main.py", "a b")),
        ("python a.py && echo ok", (), ("sh", "-c", "python a.py && echo ok")),
        ("python a.py | tee x", ("--y",), ("sh", "-c", 'python a.py | tee x "$@"', "sh", "--y")),
        ("python -c 'print(1)'", (), ("sh", "-c", "python -c 'print(1)'")),
        ("echo $HOME", (), ("sh", "-c", "echo $HOME")),
    ],
)
def test_command_argv(cmd: str, args: tuple[str, ...], argv: tuple[str, ...]) -> None:
    assert command_argv(cmd, args) == argv


@pytest.mark.parametrize("text, n", [("1024", 1024), ("512m", 512 * 1024**2), ("16g", 16 * 1024**3),
                                      ("2GiB", 2 * 1024**3), ("1.5g", int(1.5 * 1024**3))])
def test_size_bytes(text: str, n: int) -> None:
    assert size_bytes(text) == n


def test_create_config_and_cmdline_agree() -> None:
    spec = RunSpec(image="proj:abc", command=("python", "main.py", "--out", "/outputs/x y"),
                   gpus=parse_gpu_request(["0"]),
                   mounts=(Mount("/home/me/p", "/workspace"), Mount("/d", "/data", True)),
                   env={"HF_TOKEN": "secret-value", "A": "1"}, workdir="/workspace",
                   user="1000:1000", labels={"dltasks.run": "r1"}, name="dlt-proj-r1")
    a = create_config(spec)
    hc = a["HostConfig"]
    assert hc["IpcMode"] == "host" and "ShmSize" not in hc and hc["Init"] is True
    assert hc["Mounts"][1] == {"Type": "bind", "Source": "/d", "Target": "/data",
                               "ReadOnly": True}
    assert a["User"] == "1000:1000" and a["WorkingDir"] == "/workspace"
    assert "HF_TOKEN=secret-value" in a["Env"] and a["Image"] == "proj:abc"
    assert a["Cmd"] == ["python", "main.py", "--out", "/outputs/x y"] and not a["Tty"]
    line = docker_run_cmdline(spec)
    assert line.startswith("docker run --rm --name dlt-proj-r1 --init --gpus \"device=0\"")
    assert "-v /d:/data:ro" in line and "--ipc=host" in line and "--user 1000:1000" in line
    assert "secret-value" not in line and "HF_TOKEN=****" in line
    assert line.endswith("proj:abc python main.py --out '/outputs/x y'")


def test_shm_size_replaces_ipc_host() -> None:
    spec = RunSpec(image="i", command=("x",), shm_size="8g")
    hc = create_config(spec)["HostConfig"]
    assert hc["ShmSize"] == 8 * 1024**3 and "IpcMode" not in hc
    assert "--shm-size 8g" in docker_run_cmdline(spec)
