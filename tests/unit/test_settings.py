"""Settings: precedence of the five layers, typing, .env errors, unknown keys, masking."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltasks.errors import DltError
from dltasks.settings import KEYS, Settings, env_example, parse_value, read_dotenv, resolve

ROOT = Path(__file__).resolve().parents[2]


def write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_defaults_and_sources(tmp_path: Path) -> None:
    s = resolve(tmp_path, environ={})
    assert s.workdir == "/workspace"
    assert s.train_cmd == "python main.py"
    assert s.source("workdir") == "default"
    assert s.project == tmp_path.name.lower() or s.project


@pytest.mark.parametrize(
    "layers, expected, source",
    [
        ({}, "/workspace", "default"),
        ({"config": "/c"}, "/c", "config"),
        ({"config": "/c", "dotenv": "/e"}, "/e", ".env:1"),
        ({"config": "/c", "dotenv": "/e", "environ": "/p"}, "/p", "environment"),
        ({"config": "/c", "dotenv": "/e", "environ": "/p", "flag": "/f"}, "/f", "flag"),
        ({"dotenv": "/e", "flag": "/f"}, "/f", "flag"),
        ({"config": "/c", "environ": "/p"}, "/p", "environment"),
    ],
)
def test_precedence(tmp_path: Path, layers: dict[str, str], expected: str, source: str) -> None:
    if "dotenv" in layers:
        write(tmp_path / ".env", f"DLT_WORKDIR={layers['dotenv']}\n")
    s = resolve(
        tmp_path,
        config={"workdir": layers["config"]} if "config" in layers else {},
        environ={"DLT_WORKDIR": layers["environ"]} if "environ" in layers else {},
        flags={"workdir": layers.get("flag")},
    )
    assert s.workdir == expected
    assert s.source("workdir") == source


def test_host_env_layers_over_dotenv(tmp_path: Path) -> None:
    write(tmp_path / ".env", "DLT_DATA_DIR=/home/me/data\nDLT_SHM_SIZE=8g\n")
    write(tmp_path / ".env.gpu1", "DLT_DATA_DIR=/mnt/ssd/data\n")
    s = resolve(tmp_path, environ={}, host="gpu1")
    assert (s.data_dir, s.source("data_dir")) == ("/mnt/ssd/data", ".env.gpu1:1")
    assert s.shm_size == "8g"
    assert resolve(tmp_path, environ={}).data_dir == "/home/me/data"


def test_config_accepts_dashes_and_prefix(tmp_path: Path) -> None:
    s = resolve(tmp_path, environ={}, config={"base-image": "a:1", "DLT_TRAIN_CMD": "x"})
    assert (s.base_image, s.train_cmd) == ("a:1", "x")


def test_types(tmp_path: Path) -> None:
    write(tmp_path / ".env", "DLT_APT_PACKAGES= git , curl,,\nDLT_STOP_TIMEOUT=30\n")
    s = resolve(tmp_path, environ={}, config={"pip_packages": ["numpy", "scipy"]})
    assert s.apt_packages == ("git", "curl")
    assert s.pip_packages == ("numpy", "scipy")
    assert s.stop_timeout == 30


@pytest.mark.parametrize("raw", ["ten", "1.5", ""])
def test_wrong_type_is_one_line_error(tmp_path: Path, raw: str) -> None:
    write(tmp_path / ".env", f"DLT_STOP_TIMEOUT={raw}\n")
    with pytest.raises(DltError) as e:
        resolve(tmp_path, environ={})
    assert "DLT_STOP_TIMEOUT" in str(e.value) and ".env:1" in str(e.value)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("raw", ["16g", "512m", "1024", "2GiB", "1.5g"])
def test_sizes_accepted(raw: str) -> None:
    key = next(k for k in KEYS if k.name == "shm_size")
    assert parse_value(key, raw, "x") == raw


@pytest.mark.parametrize("raw", ["lots", "16 gigs", "-1g"])
def test_sizes_refused(raw: str) -> None:
    key = next(k for k in KEYS if k.name == "shm_size")
    with pytest.raises(DltError, match="size"):
        parse_value(key, raw, "x")


def test_unknown_key_in_dotenv_names_nearest(tmp_path: Path) -> None:
    write(tmp_path / ".env", "# comment\n\nDLT_BASE_IMGE=x\n")
    with pytest.raises(DltError) as e:
        resolve(tmp_path, environ={})
    msg = str(e.value)
    assert "DLT_BASE_IMGE" in msg and ".env:3" in msg and "DLT_BASE_IMAGE" in msg


def test_unknown_key_in_environment(tmp_path: Path) -> None:
    with pytest.raises(DltError, match="DLT_GPU.*did you mean DLT_GPUS"):
        resolve(tmp_path, environ={"DLT_GPU": "0"})


def test_unknown_config_key(tmp_path: Path) -> None:
    with pytest.raises(DltError, match="did you mean DLT_WORKDIR"):
        resolve(tmp_path, environ={}, config={"work_dir": "/x"})


def test_malformed_dotenv_line_names_file_and_line(tmp_path: Path) -> None:
    write(tmp_path / ".env", "DLT_WORKDIR=/w\nthis is not a setting\n")
    with pytest.raises(DltError) as e:
        resolve(tmp_path, environ={})
    assert ".env:2" in str(e.value) and "KEY=value" in str(e.value)


def test_dotenv_not_utf8(tmp_path: Path) -> None:
    (tmp_path / ".env").write_bytes(b"DLT_WORKDIR=/caf\xe9\n")
    with pytest.raises(DltError, match="UTF-8"):
        resolve(tmp_path, environ={})


def test_non_dlt_lines_are_container_env(tmp_path: Path) -> None:
    write(tmp_path / ".env", "WANDB_API_KEY=abc123\nDATA=/x\nDLT_ENV=FROM_SHELL\n")
    s = resolve(tmp_path, environ={"FROM_SHELL": "yes", "OTHER": "no"})
    assert dict(s.container_env) == {"WANDB_API_KEY": "abc123", "DATA": "/x", "FROM_SHELL": "yes"}


def test_secrets_masked_in_rows(tmp_path: Path) -> None:
    s = resolve(tmp_path, environ={"DLT_SUDO_PASSWORD": "hunter2"})
    row = next(r for r in s.rows() if r[0] == "DLT_SUDO_PASSWORD")
    assert row[1] == "****" and "hunter2" not in repr(s.rows())


@pytest.mark.parametrize("name, ok", [("my-proj", True), ("My Project!", False)])
def test_project_name_validated(tmp_path: Path, name: str, ok: bool) -> None:
    if ok:
        assert resolve(tmp_path, environ={"DLT_PROJECT": name}).project == name
    else:
        with pytest.raises(DltError, match="DLT_PROJECT"):
            resolve(tmp_path, environ={"DLT_PROJECT": name})


def test_default_project_name_sanitised(tmp_path: Path) -> None:
    d = tmp_path / "My Cool_Proj"
    d.mkdir()
    assert resolve(d, environ={}).project == "my-cool_proj"


def test_remote_dir_names_project(tmp_path: Path) -> None:
    assert resolve(tmp_path, environ={"DLT_PROJECT": "p"}).remote_dir == "~/dltasks/p"


def test_read_dotenv_quotes_and_export(tmp_path: Path) -> None:
    p = write(tmp_path / ".env", 'export A="x y"\nB=\'z\'\n# c\nC=1 # trailing\n')
    assert [(x.key, x.value, x.line) for x in read_dotenv(p)] == [
        ("A", "x y", 1), ("B", "z", 2), ("C", "1", 4)]


def test_env_example_documents_every_key() -> None:
    text = (ROOT / "env.example").read_text()
    assert text == env_example(), "env.example is stale: python -m dltasks.settings > env.example"
    for k in KEYS:
        assert f"# {k.env}=" in text


def test_contract_keys_exist() -> None:
    names = {k.env for k in KEYS}
    for required in ["DLT_PROJECT", "DLT_BASE_IMAGE", "DLT_IMAGE", "DLT_DOCKERFILE",
                     "DLT_REQUIREMENTS", "DLT_APT_PACKAGES", "DLT_PIP_PACKAGES", "DLT_CA_BUNDLE",
                     "DLT_WORKDIR", "DLT_DATA_DIR", "DLT_OUTPUT_DIR", "DLT_MOUNTS", "DLT_CONFIGS",
                     "DLT_TRAIN_CMD", "DLT_GPUS", "DLT_SHM_SIZE"]:
        assert required in names
    assert Settings().workdir == "/workspace"
