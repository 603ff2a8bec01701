"""extend-image and build against the real engine, through the real `dlt` program."""

from __future__ import annotations

import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt

pytestmark = pytest.mark.docker

CA = "/etc/ssl/certs/ca-certificates.crt"


def _remove_repo(engine: Any, repo: str) -> None:
    for img in engine.images.list(name=repo):
        for tag in img.tags:
            engine.images.remove(tag, force=True)


@pytest.fixture
def proj(project: Path, engine: Any, base_image: str) -> Iterator[tuple[Path, str]]:
    """A project on the test base image, with a unique image repository (removed after)."""
    repo = f"dlt-test-img-{uuid.uuid4().hex[:8]}"
    (project / ".env").write_text(f"DLT_PROJECT={repo}\nDLT_BASE_IMAGE={base_image}\n")
    yield project, repo
    _remove_repo(engine, repo)


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, r.stdout + r.stderr
    return r.stdout


def _error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1, r.stderr  # one line, no traceback
    assert lines[0].startswith("dlt: error: ")
    return lines[0]


def _tags(engine: Any, repo: str) -> dict[str, str]:
    return {t: img.id for img in engine.images.list(name=repo) for t in img.tags}


def _containers_mentioning(engine: Any, marker: str) -> list[str]:
    return [c["Id"] for c in engine.api.containers(all=True) if marker in c.get("Command", "")]


def test_builds_once_then_an_unchanged_project_builds_nothing(proj: tuple[Path, str],
                                                              engine: Any) -> None:
    d, repo = proj
    (d / "requirements.txt").write_text("# nothing to install yet\n")
    subprocess.run(["git", "init", "-q"], cwd=d, check=True)
    subprocess.run(["git", "-c", "user.email=t@t", "-c", "user.name=t", "commit", "-q",
                    "--allow-empty", "-m", "x"], cwd=d, check=True)
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=d, text=True,
                          capture_output=True).stdout.strip()

    first = _ok(dlt("extend-image", cwd=d))
    assert "step 1/" in first
    tags = _tags(engine, repo)
    (hash_tag,) = [t for t in tags if not t.endswith(":latest")]
    assert tags[f"{repo}:latest"] == tags[hash_tag]
    labels = engine.images.get(hash_tag).labels
    assert labels["dltasks.hash"].startswith(hash_tag.split(":")[1])
    assert labels["dltasks.git-commit"] == head
    assert labels["dltasks.version"]
    out = engine.containers.run(hash_tag, ["python3", "-c", "import os; print(os.environ["
                                           "'PIP_BREAK_SYSTEM_PACKAGES'])"], remove=True)
    assert out.strip() == b"1"

    start = time.monotonic()
    second = _ok(dlt("extend-image", cwd=d))
    (line,) = second.strip().splitlines()  # one line, no build output
    assert line.startswith(f"{hash_tag} is up to date")
    assert "is up to date" in second and "step" not in second and "building" not in second
    assert _tags(engine, repo) == tags  # same image ID under both tags: nothing was built
    assert time.monotonic() - start < 10

    # :latest gone (e.g. someone re-tagged it): put back without building.
    engine.images.remove(f"{repo}:latest")
    third = _ok(dlt("extend-image", cwd=d))
    assert "is up to date" in third and "step" not in third
    assert _tags(engine, repo) == tags


def test_hash_changes_when_a_requirement_line_changes(proj: tuple[Path, str],
                                                      engine: Any) -> None:
    d, repo = proj
    req = d / "requirements.txt"
    req.write_text("# v1\n")
    _ok(dlt("extend-image", cwd=d))
    before = set(_tags(engine, repo))
    req.write_text("# v2\n")
    out = _ok(dlt("extend-image", cwd=d))
    assert "step 1/" in out
    after = _tags(engine, repo)
    new = set(after) - before
    assert len(new) == 1 and not next(iter(new)).endswith(":latest")
    assert after[f"{repo}:latest"] == after[next(iter(new))]
    # The image holds the new file.
    cat = engine.containers.run(next(iter(new)), ["cat", "/tmp/dltasks/requirements.txt"],
                                remove=True)
    assert cat == b"# v2\n"


def test_force_rebuilds(proj: tuple[Path, str], engine: Any) -> None:
    d, repo = proj
    _ok(dlt("extend-image", cwd=d))
    first = _tags(engine, repo)
    out = _ok(dlt("extend-image", "--force", cwd=d))
    assert "step 1/" in out and "up to date" not in out
    assert _tags(engine, repo).keys() == first.keys()
    assert _tags(engine, repo)[f"{repo}:latest"] != first[f"{repo}:latest"]
    engine.images.remove(first[f"{repo}:latest"])  # untagged by the rebuild: ours to remove


def test_print_shows_the_dockerfile_without_the_engine(proj: tuple[Path, str],
                                                       base_image: str) -> None:
    d, _ = proj
    (d / "requirements.txt").write_text("six\n")
    r = dlt("extend-image", "--print", "--ca-bundle", CA, cwd=d,
            env={"DLT_APT_PACKAGES": "git,curl", "DOCKER_HOST": "unix:///nonexistent.sock"})
    text = _ok(r)
    assert f"FROM {base_image}\n" in text
    assert "--no-install-recommends curl git" in text
    assert "COPY requirements.txt" in text and "COPY ca-bundle.crt" in text
    (d / "requirements.txt").unlink()
    assert "requirements" not in _ok(dlt("extend-image", "--print", cwd=d))  # default: skipped


def test_missing_explicit_requirements_file_is_one_error_line(proj: tuple[Path, str]) -> None:
    d, _ = proj
    line = _error_line(dlt("extend-image", cwd=d, env={"DLT_REQUIREMENTS": "reqs/nope.txt"}))
    assert "reqs/nope.txt does not exist" in line and "DLT_REQUIREMENTS" in line


def test_missing_base_image_is_one_error_line(proj: tuple[Path, str], engine: Any) -> None:
    d, repo = proj
    missing = f"dlt-test-no-such-{uuid.uuid4().hex[:6]}:latest"
    line = _error_line(dlt("extend-image", cwd=d, env={"DLT_BASE_IMAGE": missing}))
    assert f"base image {missing} is neither local nor pullable" in line
    assert "dlt base-image" in line and "DLT_BASE_IMAGE" in line
    assert _tags(engine, repo) == {}


def test_failing_step_is_one_error_line_and_leaves_no_containers(proj: tuple[Path, str],
                                                                 engine: Any) -> None:
    d, repo = proj
    marker = f"dltasks-missing-{uuid.uuid4().hex[:8]}"
    line = _error_line(dlt("extend-image", cwd=d, env={"DLT_PIP_PACKAGES": f"./{marker}"}))
    assert f"`RUN python3 -m pip install ./{marker}`" in line
    assert "failed at step " in line and "returned a non-zero code" in line
    assert "last output:" in line and marker in line.split("last output:")[1]
    assert _containers_mentioning(engine, marker) == []
    assert _tags(engine, repo) == {}


@pytest.mark.slow
def test_ca_bundle_lets_pip_through_the_proxy(proj: tuple[Path, str], engine: Any) -> None:
    d, repo = proj
    (d / "requirements.txt").write_text("six\n")
    # Without the bundle, pip cannot verify the TLS-inspecting proxy: one line, the step named.
    line = _error_line(dlt("extend-image", cwd=d))
    assert "`RUN python3 -m pip install -r /tmp/dltasks/requirements.txt`" in line
    assert "six" in line
    assert _tags(engine, repo) == {}
    # With it, the same build passes and the image keeps trusting it.
    _ok(dlt("extend-image", cwd=d, env={"DLT_CA_BUNDLE": CA}))
    res = engine.containers.run(f"{repo}:latest", ["sh", "-c", "python3 -c 'import six; "
                                "print(six.__name__)'; echo $PIP_CERT; "
                                "cat /etc/apt/apt.conf.d/90dltasks-ca"], remove=True).decode()
    assert res.splitlines() == ["six", "/etc/dltasks/ca-bundle.crt",
                                'Acquire::https::CAInfo "/etc/dltasks/ca-bundle.crt";']


# ---------------------------------------------------------------------------------------------
# inv build


def _framework_context(d: Path, base_image: str, marker: str) -> Path:
    ctx = d / "fw"
    ctx.mkdir()
    (ctx / "Dockerfile").write_text(
        f"FROM {base_image} AS first\n"
        f"LABEL dltasks.test.marker={marker}\n"
        "ARG GREETING=none\n"
        "COPY . /ctx\n"
        "RUN echo \"$GREETING\" > /greeting\n"
        "FROM first AS second\n"
        f"RUN echo {marker} building && echo {marker} bad >&2 && exit 7\n")
    (ctx / "kept.txt").write_text("kept\n")
    (ctx / "secret.bin").write_text("not for the engine\n")
    (ctx / ".dockerignore").write_text("secret.bin\n")
    return ctx


def test_build_with_build_arg_target_label_and_dockerignore(proj: tuple[Path, str],
                                                            engine: Any,
                                                            base_image: str) -> None:
    d, repo = proj
    marker = f"dltasks-fail-{uuid.uuid4().hex[:8]}"
    _framework_context(d, base_image, marker)
    tag = f"{repo}-fw:v1"
    out = _ok(dlt("build", "--path", "fw", "--tag", tag, "--build-arg", "GREETING=hello",
                  "--target", "first", "--label", "dltasks.test=1", "--label", "team=ml",
                  cwd=d))
    assert f"built {tag}" in out
    img = engine.images.get(tag)
    assert img.labels["dltasks.test"] == "1" and img.labels["team"] == "ml"
    got = engine.containers.run(tag, ["sh", "-c", "cat /greeting; ls /ctx"], remove=True)
    assert got.decode().split() == ["hello", "Dockerfile", "kept.txt"]  # secret.bin ignored
    engine.images.remove(tag, force=True)


def test_build_failure_names_the_step_and_leaves_no_containers(proj: tuple[Path, str],
                                                                engine: Any,
                                                                base_image: str) -> None:
    d, repo = proj
    marker = f"dltasks-fail-{uuid.uuid4().hex[:8]}"
    _framework_context(d, base_image, marker)
    try:
        line = _error_line(dlt("build", "--path", "fw", "--tag", f"{repo}-fw:bad", cwd=d))
    finally:  # the engine keeps the finished first stage as cache, untagged: not ours to keep
        for image in engine.images.list(filters={"label": f"dltasks.test.marker={marker}"}):
            engine.images.remove(image.id, force=True)   # and its untagged parents
    assert f"failed at step 7/7 `RUN echo {marker} building" in line
    assert "returned a non-zero code: 7" in line
    assert f"{marker} building" in line and f"{marker} bad" in line
    assert _containers_mentioning(engine, marker) == []
    assert _tags(engine, f"{repo}-fw") == {}


def test_build_default_tag_and_missing_dockerfile(proj: tuple[Path, str], engine: Any,
                                                  base_image: str) -> None:
    d, repo = proj
    line = _error_line(dlt("build", cwd=d))
    assert "Dockerfile" in line and "does not exist" in line and "--dockerfile" in line
    (d / "Dockerfile").write_text(f"FROM {base_image}\nLABEL dltasks.test=1\n")
    _ok(dlt("build", cwd=d))
    assert f"{repo}-build:latest" in _tags(engine, f"{repo}-build")
    _remove_repo(engine, f"{repo}-build")
