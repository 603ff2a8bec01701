"""The project image's Dockerfile, context and content hash: pure, plain asserts."""

from __future__ import annotations

import io
import shlex
import tarfile

import pytest

from dltasks.errors import DltError
from dltasks.images import dockerfile as df

BASE = "dlt-test-base:latest"
BASE_ID = "sha256:" + "a" * 64


def spec(**kw: object) -> df.ExtendSpec:
    return df.ExtendSpec(base_image=BASE, **kw)  # type: ignore[arg-type]


def test_minimal_dockerfile_is_from_base_with_version_label_and_pep668_escape() -> None:
    text = df.render(spec())
    lines = text.splitlines()
    assert lines[1] == f"FROM {BASE}"
    assert 'LABEL dltasks.version="' in text
    assert "PIP_BREAK_SYSTEM_PACKAGES=1" in text
    assert "COPY" not in text and "apt-get" not in text and "pip install" not in text
    assert text.endswith("\n")


def test_render_is_deterministic() -> None:
    s = spec(apt_packages=("git", "curl"), pip_packages=("six",), requirements=b"numpy\n")
    assert df.render(s) == df.render(s)


def test_apt_packages_sorted_deduplicated_no_recommends_and_lists_cleaned() -> None:
    text = df.render(spec(apt_packages=("git", "curl", "git")))
    assert "apt-get install -y --no-install-recommends curl git " in text
    assert "rm -rf /var/lib/apt/lists/*" in text
    assert text.index("apt-get update") < text.index("apt-get install")


def test_apt_package_order_does_not_change_the_dockerfile() -> None:
    assert df.render(spec(apt_packages=("a", "b"))) == df.render(spec(apt_packages=("b", "a")))


@pytest.mark.parametrize("pkg", ["numpy>=1.24", "torch==2.3.1", "pkg[extra]"])
def test_pip_packages_are_shell_quoted(pkg: str) -> None:
    text = df.render(spec(pip_packages=(pkg,)))
    assert f"RUN python3 -m pip install {shlex.quote(pkg)}\n" in text
    assert shlex.split(text.splitlines()[-1])[-1] == pkg


def test_requirements_copied_and_installed() -> None:
    s = spec(requirements=b"six\n")
    text = df.render(s)
    assert "COPY requirements.txt /tmp/dltasks/requirements.txt" in text
    assert "pip install -r /tmp/dltasks/requirements.txt" in text
    assert df.context_files(s) == {"requirements.txt": b"six\n"}


def test_ca_bundle_trusted_by_pip_requests_ssl_and_apt_before_any_install() -> None:
    s = spec(ca_bundle=b"PEM", apt_packages=("git",), requirements=b"six\n")
    text = df.render(s)
    assert f"COPY ca-bundle.crt {df.CA_PATH}" in text
    for var in ("PIP_CERT", "REQUESTS_CA_BUNDLE", "SSL_CERT_FILE"):
        assert f"{var}={df.CA_PATH}" in text
    assert f'Acquire::https::CAInfo \\"{df.CA_PATH}\\"' not in text  # single-quoted, no escapes
    assert f'Acquire::https::CAInfo "{df.CA_PATH}"' in text
    assert text.index("ca-bundle.crt") < text.index("apt-get") < text.index("pip install")
    assert df.context_files(s)["ca-bundle.crt"] == b"PEM"


def test_no_ca_bundle_means_no_ca_lines() -> None:
    text = df.render(spec())
    assert "CAInfo" not in text and "PIP_CERT" not in text


def test_hash_is_stable_and_hex() -> None:
    p1, p2 = df.plan(spec(requirements=b"six\n"), BASE_ID), df.plan(spec(requirements=b"six\n"),
                                                                     BASE_ID)
    assert p1.digest == p2.digest and len(p1.digest) == 64
    assert p1.tag == p1.digest[:12]
    int(p1.digest, 16)


@pytest.mark.parametrize("change", [
    dict(base_id="sha256:" + "b" * 64),
    dict(requirements=b"six==1.16\n"),
    dict(requirements=b"six\n\n"),
    dict(ca_bundle=b"PEM"),
    dict(apt_packages=("git",)),
    dict(pip_packages=("six",)),
    dict(base_image="other:latest"),
])
def test_hash_changes_with_every_input(change: dict[str, object]) -> None:
    ref = df.plan(spec(requirements=b"six\n"), BASE_ID).digest
    base_id = str(change.pop("base_id", BASE_ID))
    kw: dict[str, object] = {"requirements": b"six\n", **change}
    base = str(kw.pop("base_image", BASE))
    other = df.plan(df.ExtendSpec(base_image=base, **kw), base_id)  # type: ignore[arg-type]
    assert other.digest != ref


def test_hash_covers_file_names_and_bytes_without_ambiguity() -> None:
    assert df.content_hash("x", "d", {"a": b"bc"}) != df.content_hash("x", "d", {"ab": b"c"})
    assert df.content_hash("x", "d", {"a": b""}) != df.content_hash("x", "d", {})
    assert df.content_hash("xd", "", {}) != df.content_hash("x", "d", {})


def test_hash_ignores_file_order() -> None:
    files = {"a": b"1", "b": b"2"}
    assert df.content_hash("x", "d", files) == df.content_hash("x", "d", dict(reversed(
        list(files.items()))))


def test_context_tar_holds_only_dockerfile_and_files_and_is_reproducible() -> None:
    p = df.plan(spec(requirements=b"six\n", ca_bundle=b"PEM"), BASE_ID)
    raw = df.context_tar(p.dockerfile, p.files).getvalue()
    assert raw == df.context_tar(p.dockerfile, p.files).getvalue()
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        names = tar.getnames()
        assert sorted(names) == ["Dockerfile", "ca-bundle.crt", "requirements.txt"]
        member = tar.extractfile("Dockerfile")
        assert member is not None and member.read().decode() == p.dockerfile


@pytest.mark.parametrize("items,expected", [
    ([], {}),
    (["A=1"], {"A": "1"}),
    (["A=1", "B=x=y"], {"A": "1", "B": "x=y"}),
    (["A="], {"A": ""}),
    (["A=1", "A=2"], {"A": "2"}),
])
def test_parse_pairs(items: list[str], expected: dict[str, str]) -> None:
    assert df.parse_pairs(items, "--label") == expected


@pytest.mark.parametrize("bad", ["A", "=1", ""])
def test_parse_pairs_refuses_bare_keys(bad: str) -> None:
    with pytest.raises(DltError, match="KEY=VALUE"):
        df.parse_pairs([bad], "--build-arg")
