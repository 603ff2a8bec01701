"""Small steps on a remote host over an open SSH connection, below everything else in
:mod:`dltasks.hosts.remote`: a bare exec channel (:func:`quick_exec`) and DLT_REMOTE_DIR read
against the host's home. The target (:mod:`.target`) and the sync stamp (:mod:`.synced`)
both use them, so neither imports the other for them.
"""

from __future__ import annotations

import posixpath
from typing import Any

from dltasks.errors import DltError


def from_home(remote_dir: str) -> str:
    """DLT_REMOTE_DIR as a path to ``cd`` to from the host's home (absolute stays absolute);
    "" when unset."""
    d = remote_dir.strip()
    if not d:
        return ""
    if d == "~" or d.startswith("~/"):
        d = "." + d[1:]
    elif d.startswith("~"):
        raise DltError(f"DLT_REMOTE_DIR={remote_dir!r}: ~user paths are not supported; "
                       "write an absolute path or ~/path")
    return posixpath.normpath(d)


def expand_remote_dir(remote_dir: str, home: str) -> str:
    """``~``/``~/x``/relative paths made absolute against the host's home; normalised."""
    d = from_home(remote_dir)
    return posixpath.normpath(posixpath.join(home, d)) if d else ""


def quick_exec(transport: Any, command: str, timeout: float = 60.0,
               data: bytes = b"") -> tuple[int, str, str]:
    """Run a short command in an exec channel, ``data`` on its stdin: (exit code, stdout,
    stderr); stdout keeps undecodable bytes (surrogateescape: host paths come back as-is).

    For our own small probes (home folder, target folder checks): a bare paramiko channel costs
    a round trip, where ``Connection.run`` adds tens of milliseconds of runner machinery.
    """
    chan = transport.open_session(timeout=timeout)
    try:
        chan.settimeout(timeout)
        chan.exec_command(command)
        if data:
            chan.sendall(data)
        chan.shutdown_write()
        out = chan.makefile("rb").read().decode(errors="surrogateescape")
        err = chan.makefile_stderr("rb").read().decode(errors="replace")
        return int(chan.recv_exit_status()), out, err
    finally:
        chan.close()
