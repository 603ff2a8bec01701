"""rsync's remote shell (``rsync -e``) when the SSH connection is already open in our process.

Run as a script (``python -S rsh_helper.py SOCKET [-l USER] HOST COMMAND...``), it imports
nothing of dltasks: rsync starts it once per transfer, and start-up time counts. It hands
COMMAND to the :class:`~dltasks.hosts.remote.tunnel.ExecTunnel` listening on SOCKET, which runs it
in an exec channel of the existing paramiko connection; then it copies stdin to the socket and
the tunnel's frames back to stdout/stderr, and exits with the remote command's exit status.

Frames from the tunnel: one type byte (``o`` stdout, ``e`` stderr, ``x`` exit status), a
4-byte big-endian length, the payload.
"""

from __future__ import annotations

import os
import select
import socket
import struct
import sys

HEADER = struct.Struct(">cI")


def remote_command(args: list[str]) -> str:
    """What ssh would run: the words after the host, joined by spaces (ssh does not quote)."""
    i = 0
    while i < len(args) and args[i].startswith("-"):
        i += 2 if args[i] in ("-l", "-p", "-i", "-o") else 1
    return " ".join(args[i + 1:])


def _write_all(fd: int, data: bytes) -> None:
    """Write everything; rsync makes the pipes non-blocking (shared with us), so wait on EAGAIN."""
    view = memoryview(data)
    while view:
        try:
            view = view[os.write(fd, view):]
        except BlockingIOError:
            select.select([], [fd], [])


def main(argv: list[str]) -> int:
    sock_path, command = argv[1], remote_command(argv[2:])
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.connect(sock_path)
    data = command.encode()
    s.sendall(struct.pack(">I", len(data)) + data)
    stdin_open, buf = True, b""
    out, err = sys.stdout.fileno(), sys.stderr.fileno()
    while True:
        watch: list[int] = [s.fileno(), 0] if stdin_open else [s.fileno()]
        ready, _, _ = select.select(watch, [], [])
        if 0 in ready:
            try:
                chunk = os.read(0, 262144)
            except BlockingIOError:
                continue
            if chunk:
                s.sendall(chunk)
            else:
                stdin_open = False
                s.shutdown(socket.SHUT_WR)
        if s.fileno() in ready:
            chunk = s.recv(262144)
            if not chunk:
                return 255  # the tunnel went away without an exit status
            buf += chunk
            while len(buf) >= HEADER.size:
                kind, size = HEADER.unpack_from(buf)
                if len(buf) < HEADER.size + size:
                    break
                payload = buf[HEADER.size:HEADER.size + size]
                buf = buf[HEADER.size + size:]
                if kind == b"x":
                    return int(struct.unpack(">i", payload)[0])
                _write_all(out if kind == b"o" else err, payload)


if __name__ == "__main__":
    sys.exit(main(sys.argv))
