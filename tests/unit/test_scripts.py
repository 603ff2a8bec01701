"""The shell programs in ``dltasks/scripts/*.sh`` (issue 22): each parses as POSIX sh, loses only
its comment header on the way to the host, ends in a command (callers append ``; more``), and is
used by the code. ``dev/test`` runs shellcheck over the same files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from dltasks.scripts import script

SRC = Path(__file__).resolve().parents[2] / "src" / "dltasks"
FILES = sorted((SRC / "scripts").glob("*.sh"))


def test_there_are_scripts() -> None:
    assert len(FILES) >= 5


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.stem)
def test_a_script_is_sh_without_its_header(path: Path) -> None:
    text = script(path.stem)
    assert path.read_text().startswith("# shellcheck shell=sh\n")
    assert text and not text.startswith("#") and text in path.read_text()
    last = text.splitlines()[-1].strip()
    assert not last.startswith("#") and not text.endswith("\n")
    assert subprocess.run(["sh", "-n", "-c", text + "; true"], capture_output=True).returncode == 0


def test_every_script_is_used_and_every_use_has_a_file() -> None:
    used = set()
    for p in SRC.rglob("*.py"):
        used |= set(re.findall(r'\bscript\("([a-z0-9_]+)"\)', p.read_text()))
    assert used == {p.stem for p in FILES}
