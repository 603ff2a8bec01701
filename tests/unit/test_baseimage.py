"""base-image's pure parts: apt sources, mirror choice, input hashes, commands."""

from __future__ import annotations

import shlex

import pytest

from dltasks.errors import DltError
from dltasks.images import base as bi

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main contrib
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb deb-src
URIs: http://mirror.example/debian-security/
Suites: bookworm-security
Components: main

Types: deb-src
URIs: http://src.example/debian
Suites: trixie
Components: main

Enabled: no
Types: deb
URIs: http://off.example/debian
Suites: sid
Components: main
"""

ONE_LINE = """\
# deb http://commented.example/debian bookworm main
deb http://archive.example/ubuntu/ jammy main restricted universe
deb [arch=amd64 signed-by=/k.gpg] http://archive.example/ubuntu jammy-updates main universe
deb-src http://archive.example/ubuntu jammy main
deb [ trusted=yes ] http://local.example/repo noble main # trailing comment
"""


def test_deb822_sources() -> None:
    got = bi.parse_sources("/etc/apt/sources.list.d/debian.sources", DEB822)
    assert got == [
        bi.AptSource("http://mirror.example/debian", ("bookworm", "bookworm-updates"),
                     ("main", "contrib")),
        bi.AptSource("http://mirror.example/debian-security", ("bookworm-security",),
                     ("main",)),
    ]


def test_one_line_sources_with_options_and_comments() -> None:
    got = bi.parse_sources("/etc/apt/sources.list", ONE_LINE)
    assert got == [
        bi.AptSource("http://archive.example/ubuntu", ("jammy",),
                     ("main", "restricted", "universe")),
        bi.AptSource("http://archive.example/ubuntu", ("jammy-updates",), ("main", "universe")),
        bi.AptSource("http://local.example/repo", ("noble",), ("main",)),
    ]


def test_empty_sources() -> None:
    assert bi.parse_sources("x.list", "") == []
    assert bi.parse_sources("x.sources", "\n\n") == []


def test_choose_mirror_by_suite() -> None:
    sources = bi.parse_sources("d.sources", DEB822) + bi.parse_sources("u.list", ONE_LINE)
    assert bi.choose_mirror("bookworm", sources) == ("http://mirror.example/debian",
                                                     ("main", "contrib"))
    assert bi.choose_mirror("jammy", sources) == ("http://archive.example/ubuntu",
                                                  ("main", "restricted", "universe"))


def test_choose_mirror_unknown_suite_names_what_the_host_has() -> None:
    sources = bi.parse_sources("d.sources", DEB822)
    with pytest.raises(DltError, match=r"suite 'noble'.*bookworm, bookworm-security.*--mirror"):
        bi.choose_mirror("noble", sources)


@pytest.mark.parametrize("mirror,expected", [
    ("http://mirror.example/debian/", ("main", "contrib")),     # known: its components
    ("http://other.example/debian", ("main",)),
    ("http://other.example/ubuntu", ("main", "universe")),      # python3-pip is in universe
])
def test_explicit_mirror(mirror: str, expected: tuple[str, ...]) -> None:
    sources = bi.parse_sources("d.sources", DEB822)
    assert bi.choose_mirror("bookworm", sources, mirror) == (mirror.rstrip("/"), expected)


def spec(**kw: object) -> bi.BaseImageSpec:
    return bi.BaseImageSpec(name="x:latest", **kw)  # type: ignore[arg-type]


def test_packages_always_include_python_pip_and_certificates() -> None:
    assert bi.packages(spec()) == ("ca-certificates", "python3", "python3-pip")
    assert bi.packages(spec(apt=("git", "python3"))) == ("ca-certificates", "git", "python3",
                                                         "python3-pip")


def test_inputs_hash_is_stable() -> None:
    h = bi.inputs_hash(spec(), "http://m", ("main",), {"a.whl": "1"}, "")
    assert h == bi.inputs_hash(spec(), "http://m", ("main",), {"a.whl": "1"}, "")
    assert len(h) == 64


@pytest.mark.parametrize("other", [
    dict(spec=spec(suite="trixie")),
    dict(spec=spec(apt=("git",))),
    dict(spec=spec(pip=("pyyaml",))),
    dict(spec=spec(labels={"dltasks.test": "1"})),
    dict(mirror="http://other"),
    dict(components=("main", "universe")),
    dict(wheels={"a.whl": "2"}),
    dict(wheels={"b.whl": "1"}),
    dict(wheels={}),
    dict(ca="abc"),
])
def test_inputs_hash_changes_with_every_input(other: dict[str, object]) -> None:
    args: dict[str, object] = dict(spec=spec(), mirror="http://m", components=("main",),
                                   wheels={"a.whl": "1"}, ca="")
    ref = bi.inputs_hash(*args.values())  # type: ignore[arg-type]
    args.update(other)
    assert bi.inputs_hash(*args.values()) != ref  # type: ignore[arg-type]


def test_image_name_is_not_an_input() -> None:
    a = bi.inputs_hash(bi.BaseImageSpec(name="a:1"), "m", ("main",), {}, "")
    assert a == bi.inputs_hash(bi.BaseImageSpec(name="b:2"), "m", ("main",), {}, "")


def test_rootfs_key_depends_on_debootstrap_inputs_only() -> None:
    k = bi.rootfs_key("bookworm", "http://m", ("main",), ("python3",))
    assert k == bi.rootfs_key("bookworm", "http://m", ("main",), ("python3",))
    assert k != bi.rootfs_key("trixie", "http://m", ("main",), ("python3",))
    assert k != bi.rootfs_key("bookworm", "http://n", ("main",), ("python3",))
    assert k != bi.rootfs_key("bookworm", "http://m", ("main",), ("python3", "git"))


def test_parse_sha256sum() -> None:
    text = ("aa  /opt/wheels/torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl\n"
            "bb */w/six-1.17.0-py2.py3-none-any.whl\n\n")
    assert bi.parse_sha256sum(text) == {
        "torch-2.13.0+cpu-cp311-cp311-manylinux_2_28_x86_64.whl": "aa",
        "six-1.17.0-py2.py3-none-any.whl": "bb"}


def test_pip_command_installs_every_wheel_with_find_links_and_the_ca() -> None:
    argv = shlex.split(bi.pip_command(["b.whl", "a.whl"], ["pyyaml"], True))
    assert argv[:2] == ["env", "-i"]
    assert f"PIP_CERT={bi.CA_PATH}" in argv and "PIP_BREAK_SYSTEM_PACKAGES=1" in argv
    i = argv.index("--find-links")
    assert argv[i + 1:] == ["/tmp/dltasks-wheels", "/tmp/dltasks-wheels/a.whl",
                            "/tmp/dltasks-wheels/b.whl", "pyyaml"]


def test_pip_command_without_wheels_or_ca() -> None:
    argv = shlex.split(bi.pip_command([], ["pyyaml", "six>=1"], False))
    assert "--find-links" not in argv and not any(a.startswith("PIP_CERT") for a in argv)
    assert argv[-2:] == ["pyyaml", "six>=1"]


def test_import_changes_set_env_labels_and_shell() -> None:
    changes = bi.import_changes(spec(labels={"dltasks.test": "1"}), "h" * 64, has_ca=True)
    assert "ENV LANG=C.UTF-8" in changes
    assert f"ENV PATH={bi.PATH}" in changes
    assert f"ENV PIP_CERT={bi.CA_PATH}" in changes
    assert f'LABEL {bi.LABEL_HASH}="{"h" * 64}"' in changes
    assert 'LABEL dltasks.test="1"' in changes
    assert changes[-1] == 'CMD ["/bin/bash"]'
    assert not any("PIP_CERT" in c for c in bi.import_changes(spec(), "h", has_ca=False))
