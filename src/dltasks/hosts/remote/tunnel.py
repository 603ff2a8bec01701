"""Exec channels of our open SSH connection, offered to local programs (rsync) as a remote shell.

rsync wants a program that behaves like ``ssh HOST COMMAND``. Spawning ``ssh`` costs a fresh
handshake per transfer and reads ~/.ssh/config again; instead, :class:`ExecTunnel` listens on a
unix socket (0700 folder) and runs, for each connection, the command that
:mod:`.rsh_helper` sends in an exec channel of the paramiko transport we already hold. Same
host key, same login, same ProxyJump chain, one connection for everything.
"""

from __future__ import annotations

import os
import select
import shlex
import shutil
import socket
import struct
import sys
import threading
from typing import Any

from dltasks.hosts.remote.localsock import private_listener
from dltasks.hosts.remote.rsh_helper import HEADER

_CHUNK = 256 * 1024


class ExecTunnel:
    """A local socket: each connection runs one command on the host, streams framed output."""

    def __init__(self, transport: Any) -> None:
        self.transport = transport
        self.dir, self.path, self._listener = private_listener("dlt-rsh-", "rsh.sock", 8)
        self._closed = False
        threading.Thread(target=self._accept, name="dlt-rsh", daemon=True).start()

    def rsh(self) -> str:
        """The ``rsync -e`` value that reaches the host through this tunnel."""
        helper = os.path.join(os.path.dirname(os.path.abspath(__file__)), "rsh_helper.py")
        return " ".join(shlex.quote(a) for a in (sys.executable, "-S", "-E", helper, self.path))

    def _accept(self) -> None:
        while not self._closed:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        chan = None
        try:
            size = struct.unpack(">I", _read_exact(conn, 4))[0]
            command = _read_exact(conn, size).decode()
            chan = self.transport.open_session()
            chan.exec_command(command)
            code = _relay(conn, chan)
            conn.sendall(HEADER.pack(b"x", 4) + struct.pack(">i", code))
        except Exception as e:  # noqa: BLE001 - reported to rsync through the helper
            msg = f"dltasks: remote command failed: {e}\n".encode()
            try:
                conn.sendall(HEADER.pack(b"e", len(msg)) + msg + HEADER.pack(b"x", 4)
                             + struct.pack(">i", 255))
            except OSError:
                pass
        finally:
            if chan is not None:
                try:
                    chan.close()
                except Exception:  # noqa: BLE001 - EOFError on a dead connection
                    pass
            conn.close()

    def close(self) -> None:
        self._closed = True
        try:
            self._listener.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._listener.close()
        shutil.rmtree(self.dir, ignore_errors=True)


def _read_exact(conn: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            raise EOFError("helper closed the tunnel early")
        buf += chunk
    return buf


def _relay(conn: socket.socket, chan: Any) -> int:
    """stdin from the helper to the channel; stdout/stderr back as frames; the exit status."""
    conn_open, out_open = True, True
    while out_open:
        ready, _, _ = select.select([conn, chan] if conn_open else [chan], [], [], 0.05)
        if conn in ready:
            data = conn.recv(_CHUNK)
            if data:
                chan.sendall(data)
            else:
                conn_open = False
                chan.shutdown_write()
        while chan.recv_stderr_ready():
            data = chan.recv_stderr(_CHUNK)
            conn.sendall(HEADER.pack(b"e", len(data)) + data)
        if chan in ready or chan.recv_ready():
            data = chan.recv(_CHUNK)
            if data:
                conn.sendall(HEADER.pack(b"o", len(data)) + data)
            else:
                out_open = False
    code = int(chan.recv_exit_status())
    while chan.recv_stderr_ready():
        data = chan.recv_stderr(_CHUNK)
        conn.sendall(HEADER.pack(b"e", len(data)) + data)
    return code
