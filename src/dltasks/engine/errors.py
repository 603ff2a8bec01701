"""Why an engine could not be reached, as one line naming it (as the user knows it) and the fix.

Both engine clients (ours in :mod:`dltasks.engine.api`, docker-py in :mod:`dltasks.engine.client`)
turn a failed connection into :class:`EngineUnreachable` through :func:`unreachable`. Each
cause gets its own fix: a missing socket is not a refused port, a plain-HTTP peer is not a
TLS one, and none of them is "start the engine".
"""

from __future__ import annotations

import errno
import socket

from dltasks.errors import ConnectionLost, EngineFailure, LostNote


class EngineUnreachable(EngineFailure):
    """The engine could not be reached, or what answered is not one we can talk to."""


class EngineConnectionLost(EngineUnreachable, ConnectionLost):
    """The engine of a remote host could not be reached because the SSH connection carrying
    it died."""


_START = "start it (`sudo systemctl start docker`, or `dockerd &`) or run `inv setup`"


def unreachable(err: BaseException, *, url: str, where: str, tls: bool,
                note: str = "", timeout: float | None = None) -> EngineUnreachable:
    """``err`` (from dialling ``url``, or its first answer) as one line.

    ``where`` names the engine as the user knows it ("the Docker engine at unix:///var/run/
    docker.sock (the default socket)", "the Docker engine on gpu1"); ``note`` is what a
    forward saw on the far side (a remote socket that is missing, a lost SSH connection).
    """
    kind = EngineConnectionLost if isinstance(note, LostNote) else EngineUnreachable
    return kind(_reason(err, url, where, tls, note, timeout), code=1)


def _reason(err: BaseException, url: str, where: str, tls: bool, note: str,
            timeout: float | None) -> str:
    text = f"{type(err).__name__}: {err}"
    low = text.lower()
    if note:
        return f"cannot reach {where}: {note}"
    if "ssl" in type(err).__module__ or "ssl" in type(err).__name__.lower():
        return _tls_reason(err, where, low)
    if isinstance(err, PermissionError) or "permission denied" in low:
        return (f"permission denied on {where}: add your user to the docker group (`sudo "
                "usermod -aG docker $USER`, then log in again) or run `inv setup`")
    if isinstance(err, FileNotFoundError) or getattr(err, "errno", None) == errno.ENOENT or \
            "no such file" in low:
        return f"cannot reach {where}: no socket there: {_START}"
    if isinstance(err, ConnectionRefusedError) or "connection refused" in low:
        return (f"cannot reach {where}: nothing listens there (connection refused): {_START}, "
                "or point DOCKER_HOST / the docker context at the engine's real address")
    if isinstance(err, (TimeoutError, socket.timeout)) or "timed out" in low:
        within = f" within {timeout:.0f}s" if timeout else ""
        return (f"cannot reach {where}: no answer{within}: check the address and port, and "
                "whether a firewall drops the connection")
    if isinstance(err, socket.gaierror) or "name or service not known" in low:
        return (f"cannot reach {where}: its host name does not resolve: check DOCKER_HOST / "
                "the docker context")
    if "https server" in low:
        return (f"cannot reach {where}: it requires TLS: set DOCKER_TLS_VERIFY=1 and "
                "DOCKER_CERT_PATH (or use a docker context made with --docker "
                "host=...,ca=...,cert=...,key=...)")
    if "does not answer like a docker engine" in low:
        return f"cannot reach {where}: {err}: check the port in DOCKER_HOST / the docker context"
    if tls and ("eof" in low or "reset" in low or "closed the connection" in low):
        return (f"cannot reach {where}: it closed the TLS connection: it may not speak TLS "
                "on that port, or it refused our client certificate (DOCKER_CERT_PATH)")
    if "closed the connection" in low or isinstance(err, ConnectionError):
        return (f"cannot reach {where}: it closed the connection before answering: check "
                "that a Docker engine listens there (see its log)")
    return f"cannot reach {where}: {text}"


def _tls_reason(err: BaseException, where: str, low: str) -> str:
    if "certificate verify failed" in low or type(err).__name__ == "SSLCertVerificationError":
        detail = getattr(err, "verify_message", "") or "certificate verify failed"
        return (f"cannot reach {where}: its certificate is not trusted ({detail}): give its "
                "CA as ca.pem in DOCKER_CERT_PATH (or the context's ca=), or fix the engine's "
                "certificate")
    if "certificate required" in low or "bad certificate" in low or \
            "unknown ca" in low or "certificate unknown" in low:
        return (f"cannot reach {where}: it refused our client certificate: put a cert.pem and "
                "key.pem signed by the engine's CA in DOCKER_CERT_PATH (or the context's "
                "cert=/key=)")
    if "wrong version number" in low or "record layer" in low or "packet length" in low or \
            "unknown protocol" in low or "http request" in low:
        return (f"cannot reach {where}: it does not speak TLS: unset DOCKER_TLS_VERIFY / use "
                "tcp:// without TLS, or the engine's TLS port (usually 2376)")
    return (f"cannot reach {where}: TLS failed ({err}): check DOCKER_CERT_PATH and the "
            "engine's TLS setup")
