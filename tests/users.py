"""Throwaway system users for tests that must run dltasks as someone other than root.

The interpreter dltasks is installed in lives under /root, which other users cannot enter, so
the packages dltasks needs are hard-linked into a folder they can read and run with Debian's
/usr/bin/python3 (same Python minor version).
"""

from __future__ import annotations

import importlib
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_PACKAGES = ("invoke", "docker", "requests", "urllib3", "idna", "charset_normalizer", "certifi",
             "dotenv", "yaml")


def python_tree(dest: Path) -> None:
    """The packages dltasks needs (and dltasks itself), readable by any user, in ``dest``."""
    for name in _PACKAGES:
        mod = importlib.import_module(name)
        src = Path(mod.__file__ or "").parent
        shutil.copytree(src, dest / name, copy_function=os.link,
                        ignore=shutil.ignore_patterns("__pycache__"))
    site = Path(importlib.import_module("charset_normalizer").__file__ or "").parent.parent
    for compiled in site.glob("*__mypyc*.so"):  # charset_normalizer's compiled helpers
        os.link(compiled, dest / compiled.name)
    yaml_c = list(site.glob("_yaml*")) + list((site / "yaml").glob("_yaml*.so"))
    for extra in yaml_c:
        if extra.is_file() and not (dest / extra.name).exists():
            os.link(extra, dest / extra.name)
    shutil.copytree(ROOT / "src" / "dltasks", dest / "dltasks",
                    ignore=shutil.ignore_patterns("__pycache__"))
    for p in [dest, *dest.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)


@dataclass(frozen=True)
class User:
    name: str
    home: Path          # a folder the user owns: HOME and the place for projects
    py: Path            # the package tree for PYTHONPATH

    @property
    def uid(self) -> int:
        return int(subprocess.run(["id", "-u", self.name], capture_output=True, text=True,
                                  check=True).stdout)

    def run(self, *args: str, cwd: Path, env: dict[str, str] | None = None,
            stale_session: bool = False, timeout: float = 600) -> subprocess.CompletedProcess[str]:
        """Run `python3 -m dltasks ARGS` as this user in a fresh login (groups from
        /etc/group), or, with ``stale_session``, with only the primary group (setpriv), like a
        session started before `usermod -aG docker`."""
        base = ["env", "-i", f"HOME={self.home}", f"PYTHONPATH={self.py}",
                "PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8",
                *(f"{k}={v}" for k, v in (env or {}).items())]
        who = (["setpriv", f"--reuid={self.name}", f"--regid={self.name}", "--clear-groups",
                "--"] if stale_session else ["runuser", "-u", self.name, "--"])
        return subprocess.run([*who, *base, "/usr/bin/python3", "-m", "dltasks", *args],
                              cwd=cwd, text=True, capture_output=True, timeout=timeout)


@contextmanager
def throwaway_user(*, groups: tuple[str, ...] = ()) -> Iterator[User]:
    """A system user (in ``groups``, no sudo), removed afterwards with everything it made."""
    if os.geteuid() != 0 or not shutil.which("runuser") or not shutil.which("useradd"):
        pytest.fail("needs root with runuser and useradd to make a throwaway user")
    name = f"dlt{uuid.uuid4().hex[:8]}"
    cmd = ["useradd", "--system", "--no-create-home", "--shell", "/bin/bash", name]
    if groups:
        cmd += ["--groups", ",".join(groups)]
    subprocess.run(cmd, check=True)
    base = Path(tempfile.mkdtemp(prefix="dlt-user-", dir="/tmp"))
    try:
        python_tree(base / "py")
        home = base / "home"
        home.mkdir()
        shutil.chown(home, name, name)
        base.chmod(0o755)
        yield User(name, home, base / "py")
    finally:
        # what the user left running goes first: userdel refuses a user with processes
        subprocess.run(["pkill", "-KILL", "-u", name], check=False)
        for _ in range(50):
            if subprocess.run(["pgrep", "-u", name], capture_output=True).returncode:
                break
            time.sleep(0.1)
        subprocess.run(["userdel", name], check=False)
        shutil.rmtree(base, ignore_errors=True)
