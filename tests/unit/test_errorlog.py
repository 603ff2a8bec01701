"""The log of unexpected errors: private to its user, and no secret in it or in the line."""

from __future__ import annotations

import stat
import sys
from pathlib import Path

import pytest

from dltasks.errorlog import unexpected


def test_error_log_is_private_and_scrubbed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_TOKEN", "hf_from_the_shell_123")
    proj = tmp_path / "proj"
    proj.mkdir()
    (proj / ".env").write_text("API_KEY=key-from-dotenv-456\n"
                               "DATABASE_URL=postgres://u:db-pass-789@db/x\n")
    monkeypatch.chdir(proj)
    monkeypatch.setattr(sys, "argv", ["dlt", "train", "--args", "--token hf_from_the_shell_123"])
    try:
        raise RuntimeError("failed with key-from-dotenv-456 at postgres://u:db-pass-789@db/x")
    except RuntimeError as e:
        err = unexpected(e)
    log = tmp_path / "cache" / "dltasks" / "error.log"
    text = log.read_text()
    assert stat.S_IMODE(log.stat().st_mode) == 0o600
    assert "RuntimeError" in text and "Traceback" in text
    for secret in ("hf_from_the_shell_123", "key-from-dotenv-456", "db-pass-789"):
        assert secret not in text
        assert secret not in err.message
    assert "postgres://u:****@db/x" in err.message and str(log) in err.message
