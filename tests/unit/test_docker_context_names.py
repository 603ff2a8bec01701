"""`context HOST`: the context's name and the ssh address it points at (pure)."""

from __future__ import annotations

import pytest
from fabric import Config, Connection

from dltasks.tasks.context import SshSpot, context_name, spot_of


@pytest.mark.parametrize(("host", "name"), [
    ("gpu1", "gpu1"), ("me@gpu-1.lab:2222", "gpu-1.lab"), ("my box", "my-box"),
    ("_x/y", "x-y"), ("a+b_c.d", "a+b_c.d"),
])
def test_the_default_name_is_the_alias_in_dockers_letters(host: str, name: str) -> None:
    assert context_name(host) == name


def test_the_address_keeps_the_alias_and_adds_only_what_was_set() -> None:
    assert SshSpot("gpu1").url == "ssh://gpu1"
    assert SshSpot("gpu1", "me", 2222).url == "ssh://me@gpu1:2222"
    assert SshSpot("gpu1", "me", 2222).ssh_argv("true")[-3:] == ["--", "gpu1", "true"]
    spec = spot_of(Connection("me@gpu1:2222", config=Config()))
    assert spec == SshSpot("gpu1", "me", 2222)
