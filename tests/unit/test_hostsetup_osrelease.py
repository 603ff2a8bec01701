"""/etc/os-release samples (tests/data/os-release) to distribution family, version and arch."""

from __future__ import annotations

from pathlib import Path

import pytest

from dltasks.errors import DltError
from dltasks.hostsetup.osrelease import (
    APT,
    DNF,
    YUM,
    ZYPPER,
    check_toolkit_support,
    detect,
    normalize_arch,
    parse_os_release,
)

SAMPLES = Path(__file__).resolve().parent.parent / "data" / "os-release"


def sample(name: str) -> str:
    return (SAMPLES / name).read_text()


@pytest.mark.parametrize("name,ident,version,family", [
    ("ubuntu-20.04", "ubuntu", "20.04", APT),
    ("ubuntu-22.04", "ubuntu", "22.04", APT),
    ("ubuntu-24.04", "ubuntu", "24.04", APT),
    ("debian-11", "debian", "11", APT),
    ("debian-12", "debian", "12", APT),
    ("rhel-8", "rhel", "8.10", DNF),
    ("rhel-9", "rhel", "9.4", DNF),
    ("rocky-9", "rocky", "9.4", DNF),
    ("almalinux-9", "almalinux", "9.4", DNF),
    ("fedora-40", "fedora", "40", DNF),
    ("amzn-2023", "amzn", "2023", DNF),
    ("amzn-2", "amzn", "2", YUM),
    ("sles-15", "sles", "15.5", ZYPPER),
    ("opensuse-leap-15", "opensuse-leap", "15.6", ZYPPER),
    ("linuxmint-21", "linuxmint", "21.3", APT),
])
def test_family_of_each_sample(name: str, ident: str, version: str, family: str) -> None:
    info = detect(sample(name), "x86_64")
    assert (info.id, info.version_id, info.family) == (ident, version, family)
    check_toolkit_support(info)  # all of these are supported


def test_pretty_name_and_codename_are_kept() -> None:
    info = detect(sample("ubuntu-22.04"), "x86_64")
    assert info.pretty_name == "Ubuntu 22.04.4 LTS"
    assert info.codename == "jammy"
    assert info.major == 22
    assert info.label == "Ubuntu 22.04.4 LTS (x86_64)"


@pytest.mark.parametrize("name", ["arch", "alpine-3.20"])
def test_unknown_distribution_lists_the_supported_ones(name: str) -> None:
    with pytest.raises(DltError) as e:
        detect(sample(name), "x86_64")
    msg = e.value.message
    assert "not a supported distribution" in msg
    assert "Ubuntu 20.04+" in msg and "SLES 15+" in msg and "x86_64 or aarch64" in msg
    assert "\n" not in msg


def test_empty_os_release_is_unsupported() -> None:
    with pytest.raises(DltError, match="this system is not a supported distribution"):
        detect("", "x86_64")


def test_too_old_version_is_refused_with_the_minimum() -> None:
    info = detect(sample("ubuntu-18.04"), "x86_64")
    with pytest.raises(DltError, match=r"too old .*needs Ubuntu 20.04\+"):
        check_toolkit_support(info)


@pytest.mark.parametrize("machine", ["ppc64le", "s390x", "armv7l", "i686"])
def test_unsupported_architecture(machine: str) -> None:
    info = detect(sample("ubuntu-22.04"), machine)
    with pytest.raises(DltError) as e:
        check_toolkit_support(info)
    assert f"architecture {machine}" in e.value.message
    assert "supported:" in e.value.message


@pytest.mark.parametrize("machine,arch,deb", [("x86_64", "x86_64", "amd64"),
                                              ("amd64", "x86_64", "amd64"),
                                              ("aarch64", "aarch64", "arm64"),
                                              ("arm64", "aarch64", "arm64"),
                                              ("AARCH64\n", "aarch64", "arm64")])
def test_arch_spellings(machine: str, arch: str, deb: str) -> None:
    assert normalize_arch(machine) == arch
    info = detect(sample("debian-12"), machine)
    check_toolkit_support(info)
    assert info.deb_arch == deb


def test_parse_handles_quotes_comments_and_blank_lines() -> None:
    text = '# comment\n\nID="rocky"\nNAME=\'Rocky Linux\'\nBAD LINE\nVERSION_ID=9.4\nEMPTY=\n'
    assert parse_os_release(text) == {"ID": "rocky", "NAME": "Rocky Linux", "VERSION_ID": "9.4",
                           "EMPTY": ""}


def test_id_like_matches_derivatives_in_order() -> None:
    text = 'ID=pop\nID_LIKE="ubuntu debian"\nVERSION_ID="22.04"\nPRETTY_NAME="Pop!_OS 22.04"\n'
    info = detect(text, "x86_64")
    assert info.family == APT and info.id == "pop"
