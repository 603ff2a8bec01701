"""Dialling an engine: a unix socket, TCP (plain or TLS, with the ``ssl`` module imported only
then), or ``ssh ... docker system dial-stdio`` as the docker CLI does. :mod:`.api` speaks
HTTP over what this returns."""

from __future__ import annotations

import socket
import subprocess
import urllib.parse
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from dltasks.engine.endpoint import Tls


def dial(url: str, timeout: float | None, tls: Tls | None = None) -> socket.socket:
    u = urllib.parse.urlsplit(url)
    if tls is not None or u.scheme == "https":
        return _dial_tls(u, timeout, tls)
    if u.scheme == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        try:
            sock.connect(u.netloc + u.path if u.netloc else u.path)
        except OSError:
            sock.close()
            raise
        return sock
    if u.scheme in ("tcp", "http"):
        return socket.create_connection((u.hostname or "localhost", u.port or 2375), timeout)
    if u.scheme == "ssh":
        return _dial_ssh(u, timeout)
    raise OSError(f"unsupported engine URL scheme {u.scheme!r}")


def _dial_tls(u: urllib.parse.SplitResult, timeout: float | None,
              tls: Tls | None) -> socket.socket:
    import ssl

    if tls is None or tls.verify:
        ctx = ssl.create_default_context(cafile=tls.ca or None if tls else None)
    else:
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls is not None and tls.cert:
        ctx.load_cert_chain(tls.cert, tls.key or None)
    host = u.hostname or "localhost"
    raw = socket.create_connection((host, u.port or 2376), timeout)
    try:
        sock = ctx.wrap_socket(raw, server_hostname=host)
    except BaseException:
        raw.close()
        raise
    return sock


def _dial_ssh(u: urllib.parse.SplitResult, timeout: float | None) -> socket.socket:
    """One ssh process per connection, bridging its stdio to the engine (`docker system
    dial-stdio` on the far side, as the docker CLI does)."""
    ours, theirs = socket.socketpair()
    argv = ["ssh", "-o", "BatchMode=yes"]
    if u.port:
        argv += ["-p", str(u.port)]
    argv += [f"{u.username}@{u.hostname}" if u.username else str(u.hostname),
             "docker", "system", "dial-stdio"]
    subprocess.Popen(argv, stdin=theirs.fileno(), stdout=theirs.fileno(),
                     stderr=subprocess.DEVNULL, start_new_session=True)
    theirs.close()
    ours.settimeout(timeout)
    return ours
