"""The parsed invocation, the hint renderer and the error types: pure, no program run."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from dltasks.errors import (
    ClusterError,
    ConnectionLost,
    DltError,
    EngineFailure,
    LostNote,
    SettingsError,
)
from dltasks.tasks.invocation import invocation, keep, parse, program_name


@pytest.mark.parametrize("argv0,name", [("/usr/bin/fab", "fab"), ("dlt", "dlt"),
                                        ("/venv/bin/inv", "inv"), ("invoke", "inv"),
                                        ("/x/dltasks/__main__.py", "dlt"),
                                        ("C:/venv/Scripts/fab.exe", "fab"),
                                        ("dlt.exe", "dlt")])
def test_program_name(argv0: str, name: str) -> None:
    assert program_name(argv0) == name


def test_parse_hosts_and_remainder() -> None:
    inv = parse(["fab", "-H", "gpu1,gpu2", "train", "--args", "x"])
    assert inv.program == "fab" and inv.hosts == ("gpu1", "gpu2") and inv.several_hosts
    assert inv.remainder is None
    inv = parse(["dlt", "train", "--", "-c", "a b", "--", "-H", "x"])
    assert inv.program == "dlt" and inv.hosts == () and not inv.several_hosts
    assert inv.remainder == ("-c", "a b", "--", "-H", "x")
    assert parse(["inv", "train", "--"]).remainder == ()


def test_command_names_the_program_the_user_ran() -> None:
    assert parse(["inv", "x"]).command("setup") == "inv setup"
    assert parse(["dlt", "x"]).command("setup --engine") == "dlt setup --engine"
    fab = parse(["fab", "-H", "gpu1,gpu2", "x"])
    assert fab.command("setup", host="gpu2") == "fab -H gpu2 setup"
    assert fab.command("setup") == "fab -H gpu1,gpu2 setup"
    assert parse(["fab", "x"]).command("ps") == "fab ps"


def test_render_respells_every_hint_and_nothing_else() -> None:
    text = ("engine without the NVIDIA runtime: run `inv install-nvidia-docker` (or `inv "
            "setup`); see `docker info`, inv is a word")
    assert parse(["inv", "x"]).render(text) == text
    assert parse(["dlt", "x"]).render(text) == (
        "engine without the NVIDIA runtime: run `dlt install-nvidia-docker` (or `dlt "
        "setup`); see `docker info`, inv is a word")
    assert parse(["fab", "-H", "gpu1", "x"]).render(text, host="gpu1") == (
        "engine without the NVIDIA runtime: run `fab -H gpu1 install-nvidia-docker` (or `fab -H "
        "gpu1 setup`); see `docker info`, inv is a word")


def test_the_invocation_is_kept_in_the_config_once() -> None:
    from invoke.config import Config
    from invoke.context import Context

    config = Config()
    keep(config, "dlt", ["dlt", "train", "--", "a"])
    config.load_collection({"run": {"echo": False}})  # what invoke's executor does per call
    assert invocation(Context(config=config)) == parse(["dlt", "train", "--", "a"], "dlt")
    fresh = Config()
    first = invocation(Context(config=fresh))  # inv/fab: sys.argv, kept for the next task
    assert fresh.get("dlt_invocation") == {"program": first.program, "argv": list(first.argv)}


def test_error_types_keep_message_and_code() -> None:
    for kind in (SettingsError, EngineFailure, ConnectionLost, ClusterError):
        e = kind("what: fix", code=3)
        assert isinstance(e, DltError) and str(e) == e.message == "what: fix" and e.code == 3


def test_an_engine_unreachable_through_a_dead_ssh_connection_is_a_connection_lost() -> None:
    from dltasks.engine.errors import EngineUnreachable, unreachable

    lost = unreachable(OSError("eof"), url="unix:///x", where="the Docker engine on gpu1",
                       tls=False, note=LostNote("the SSH connection was lost: check the net"))
    assert isinstance(lost, ConnectionLost) and isinstance(lost, EngineUnreachable)
    assert lost.message == ("cannot reach the Docker engine on gpu1: the SSH connection was "
                            "lost: check the net")
    other = unreachable(OSError("eof"), url="unix:///x", where="the Docker engine on gpu1",
                        tls=False, note="no socket at /x there")
    assert isinstance(other, EngineFailure) and not isinstance(other, ConnectionLost)


def test_settings_errors_are_typed(tmp_path: Path) -> None:
    from dltasks.settings import resolve

    with pytest.raises(SettingsError, match="expected a whole number"):
        resolve(tmp_path, environ={"DLT_STOP_TIMEOUT": "soon"})


@pytest.mark.parametrize("module,name", [("fabric.__main__", "fab"),
                                         ("invoke.__main__", "inv"),
                                         ("dltasks.__main__", "dlt")])
def test_python_dash_m_is_told_by_the_module_run(module: str, name: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m fabric` and `python -m invoke` leave argv[0] at their __main__.py too."""
    import types

    main = types.ModuleType("__main__")
    main.__spec__ = types.SimpleNamespace(name=module)  # type: ignore[assignment]
    monkeypatch.setitem(sys.modules, "__main__", main)
    assert program_name(f"/venv/lib/{module.split('.')[0]}/__main__.py") == name


def test_task_named_only_when_the_command_line_names_it() -> None:
    from dltasks.tasks.invocation import task_named

    argv = ["fab", "-H", "a,b", "mine", "--flag", "x"]
    assert task_named(argv, "mine") and not task_named(argv, "sync")
    assert task_named(["fab", "-H", "a,b", "dl.train"], "train")


def test_a_core_flags_value_is_never_the_task() -> None:
    """`fab -H node3.train train`: the host's name ends in .train, yet the task is train."""
    from dltasks.tasks.invocation import task_named, task_word

    argv = ["fab", "-H", "node3.train", "train", "--port", "8000", "--detach"]
    assert task_word(argv, "train") == "train"
    assert task_word(["fab", "-H", "node3.train", "dl.train"], "train") == "dl.train"
    assert not task_named(["fab", "-H", "node3.train", "ps"], "train")
    assert not task_named(["dlt", "exec", "RUN", "--", "train"], "train")
