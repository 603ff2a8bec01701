"""A listening unix socket in a private (0700) temporary folder, for our local ends of SSH
channels: only this user can connect, and the folder goes away even if close() never runs."""

from __future__ import annotations

import atexit
import os
import shutil
import socket
import tempfile


def private_listener(prefix: str, name: str, backlog: int) -> tuple[str, str, socket.socket]:
    """(folder, socket path, listening socket)."""
    folder = tempfile.mkdtemp(prefix=prefix)
    os.chmod(folder, 0o700)
    atexit.register(shutil.rmtree, folder, True)  # also when close() is never reached
    path = os.path.join(folder, name)
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(path)
    listener.listen(backlog)
    return folder, path, listener
