"""base-image for real: debootstrap (or its cached rootfs), pip in a chroot, docker import."""

from __future__ import annotations

import base64
import glob
import hashlib
import io
import subprocess
import time
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import dlt

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]


def make_wheel(folder: Path, value: str) -> Path:
    """A tiny pure-python wheel, written by hand (a wheel is a zip with a dist-info)."""
    name, version = "dltasks_tiny", "0.1"
    files = {
        f"{name}/__init__.py": f"VALUE = {value!r}\n",
        f"{name}-{version}.dist-info/METADATA": f"Metadata-Version: 2.1\nName: {name}\n"
                                                f"Version: {version}\n",
        f"{name}-{version}.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\n"
                                             "Root-Is-Purelib: true\nTag: py3-none-any\n",
    }
    record = []
    for path, text in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(text.encode()).digest()).rstrip(b"=")
        record.append(f"{path},sha256={digest.decode()},{len(text.encode())}")
    record.append(f"{name}-{version}.dist-info/RECORD,,")
    files[f"{name}-{version}.dist-info/RECORD"] = "\n".join(record) + "\n"
    folder.mkdir(parents=True, exist_ok=True)
    whl = folder / f"{name}-{version}-py3-none-any.whl"
    with zipfile.ZipFile(whl, "w") as z:
        for path, text in files.items():
            z.writestr(path, text)
    return whl


def _error_line(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode != 0, r.stdout
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dlt: error: "), r.stderr
    return lines[0]


def _rootfs_dirs() -> set[str]:
    return set(glob.glob("/var/tmp/dltasks-rootfs.*"))


@pytest.mark.slow
def test_base_image_with_a_wheel_then_nothing_to_do(project: Path, engine: Any) -> None:
    value = uuid.uuid4().hex
    make_wheel(project / "wheels", value)
    names = [f"dlt-test-bi-{value[:8]}:latest", f"dlt-test-bi-{value[:8]}:again"]
    before = _rootfs_dirs()
    try:
        r = dlt("base-image", "--name", names[0], "--wheels", "wheels", "--label",
                "dltasks.test=1", cwd=project)
        assert r.returncode == 0, r.stdout + r.stderr
        assert "pip install dltasks_tiny-0.1-py3-none-any.whl" in r.stdout
        img = engine.images.get(names[0])
        assert img.labels["dltasks.test"] == "1" and len(img.labels["dltasks.base-hash"]) == 64
        out = engine.containers.run(names[0], ["python3", "-c", "import dltasks_tiny, sys; "
                                    "print(dltasks_tiny.VALUE, sys.version_info[0])"],
                                    remove=True)
        assert out.decode().split() == [value, "3"]
        assert _rootfs_dirs() == before  # the temporary rootfs is gone

        # Same inputs: no work at all, one line, same image.
        start = time.monotonic()
        again = dlt("base-image", "--name", names[0], "--wheels", "wheels", "--label",
                    "dltasks.test=1", cwd=project)
        assert again.returncode == 0, again.stderr
        assert again.stdout.strip().splitlines() == [
            f"{names[0]} is up to date (inputs hash {img.labels['dltasks.base-hash'][:12]}); "
            "nothing to do"]
        assert time.monotonic() - start < 15
        assert engine.images.get(names[0]).id == img.id

        # Same inputs under another name: the existing image is tagged, nothing is made.
        other = dlt("base-image", "--name", names[1], "--wheels", "wheels", "--label",
                    "dltasks.test=1", cwd=project)
        assert other.returncode == 0 and "up to date" in other.stdout, other.stderr
        assert engine.images.get(names[1]).id == img.id

        # An image built FROM it inherits its labels but is not it: never reused as the base.
        derived = f"dlt-test-bi-{value[:8]}:derived"
        names.append(derived)
        engine.images.build(fileobj=io.BytesIO(f"FROM {names[0]}\nRUN touch /x\n".encode()),
                            tag=derived, rm=True, forcerm=True)
        engine.images.remove(names[1])
        engine.images.remove(names[0])   # the base is now only reachable through `derived`
        rebuilt = dlt("base-image", "--name", names[0], "--wheels", "wheels", "--label",
                      "dltasks.test=1", cwd=project)
        assert rebuilt.returncode == 0, rebuilt.stderr
        assert "up to date" not in rebuilt.stdout
        assert engine.images.get(names[0]).id != engine.images.get(derived).id
        assert len(engine.images.get(names[0]).attrs["RootFS"]["Layers"]) == 1
    finally:
        for name in reversed(names):
            try:
                engine.images.remove(name, force=True)
            except Exception:  # noqa: BLE001 - not made when the test failed early
                pass


def test_missing_debootstrap_is_one_error_line_with_the_install_hint(project: Path) -> None:
    line = _error_line(dlt("base-image", "--name", "dlt-test-never:latest", cwd=project,
                           env={"PATH": "/usr/local/bin:/usr/bin:/bin"}))
    assert "debootstrap is not installed" in line and "apt-get install -y debootstrap" in line


def test_empty_wheels_folder_is_an_error(project: Path, engine: Any) -> None:
    (project / "empty").mkdir()
    line = _error_line(dlt("base-image", "--name", "dlt-test-never:latest", "--wheels", "empty",
                           cwd=project))
    assert "no .whl files in empty" in line


def test_unknown_suite_names_the_suites_the_host_has(project: Path, engine: Any) -> None:
    line = _error_line(dlt("base-image", "--name", "dlt-test-never:latest", "--suite",
                           "no-such-suite", cwd=project))
    assert "suite 'no-such-suite'" in line and "--mirror" in line
