"""The Docker Engine API over the standard library: what every run pays for, kept light.

docker-py pulls in requests, urllib3 and charset_normalizer: about 100 ms of start-up on
every `dlt train`, for a handful of JSON calls over a unix socket. This client speaks
HTTP/1.1 itself (one kept-alive connection, chunked bodies, the attach upgrade) and covers
the calls runs, shells, run listings and the no-op image check make. Builds, pulls and image
imports keep docker-py (:mod:`dltasks.engine.client`), where its tar, auth and stream handling earn
their import time.

URLs: ``unix:///path``, ``tcp://host:port`` / ``http://host:port`` (plain HTTP unless TLS is
given), ``https://host:port``, and ``ssh://[user@]host[:port]`` (through ``ssh ... docker
system dial-stdio``, as the docker CLI does). TLS uses the ``ssl`` module (imported only then):
the engine's certificate is verified (its CA, else the system's) unless told otherwise, and
ours is shown when given (:class:`dltasks.engine.endpoint.Tls`).

Every failure is a :class:`~dltasks.errors.DltError`: :class:`EngineError` when the engine
answered with an error status, :class:`~dltasks.engine.errors.EngineUnreachable` when it could
not be reached or is not an engine; both name the engine as the user knows it.
"""

from __future__ import annotations

import json
import socket
import urllib.parse
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

from dltasks.engine.dial import dial
from dltasks.errors import DltError, EngineFailure

if TYPE_CHECKING:
    from dltasks.engine.endpoint import Tls

#: The newest API version we speak; older engines are spoken to in their own version.
MAX_API = (1, 45)
_USER_AGENT = "dltasks"


class EngineError(EngineFailure):
    """The engine answered with an error status; ``explanation`` is its message.

    Its one line names the engine, the call and what to do; callers that know better (a
    missing image, a refused GPU request) catch it and say more."""

    def __init__(self, status: int, explanation: str, *, where: str = "the Docker engine",
                 call: str = "") -> None:
        super().__init__(_error_line(status, explanation, where, call))
        self.status = status
        self.explanation = explanation


class NotFound(EngineError):
    """404: no such container or image."""


class _Reader:
    """Buffered reads from a socket: lines for headers, exact reads, and ``read1`` (what is
    there, one ``recv`` at most) for streams."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.buf = bytearray()

    def _fill(self, n: int = 1 << 16) -> bool:
        data = self.sock.recv(n)
        self.buf += data
        return bool(data)

    def readline(self) -> bytes:
        while (i := self.buf.find(b"\n")) < 0:
            if not self._fill():
                i = len(self.buf) - 1
                break
        line = bytes(self.buf[:i + 1])
        del self.buf[:i + 1]
        return line

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, fewer only at the end of the stream."""
        while len(self.buf) < n and self._fill(max(n - len(self.buf), 1 << 16)):
            pass
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    def read1(self, n: int) -> bytes:
        if self.buf:
            data = bytes(self.buf[:n])
            del self.buf[:n]
            return data
        return self.sock.recv(n)


class Stream:
    """A streamed response body (chunked, sized, or until close), read as it comes."""

    def __init__(self, reader: _Reader, headers: Mapping[str, str]) -> None:
        self._r = reader
        self._chunked = "chunked" in headers.get("transfer-encoding", "").lower()
        size = headers.get("content-length")
        self._left = int(size) if size is not None and not self._chunked else -1
        self._chunk_left = 0
        self._done = False

    @property
    def sock(self) -> socket.socket:
        """The connection itself (for an upgraded, raw stream: read it after
        :meth:`take_buffered`)."""
        return self._r.sock

    def take_buffered(self) -> bytes:
        """Bytes already read off the socket with the headers but not yet handed out."""
        data = bytes(self._r.buf)
        self._r.buf.clear()
        return data

    def read1(self, n: int) -> bytes:
        """What is available, up to ``n`` bytes; b"" at the end."""
        if self._done:
            return b""
        if self._chunked:
            if self._chunk_left == 0:
                size_line = self._r.readline()
                if not size_line:
                    self._done = True
                    return b""
                if size_line in (b"\r\n", b"\n"):  # the CRLF closing the previous chunk
                    size_line = self._r.readline()
                self._chunk_left = int(size_line.split(b";")[0].strip() or b"0", 16)
                if self._chunk_left == 0:  # the last chunk; then trailers up to a blank line
                    while self._r.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    self._done = True
                    return b""
            data = self._r.read1(min(n, self._chunk_left))
            self._chunk_left -= len(data)
        else:
            data = self._r.read1(n if self._left < 0 else min(n, self._left))
            if self._left >= 0:
                self._left -= len(data)
                self._done = self._left == 0
        if not data:
            self._done = True
        return data

    def read(self, n: int) -> bytes:
        """Exactly ``n`` bytes, fewer only at the end."""
        parts, got = [], 0
        while got < n and (data := self.read1(n - got)):
            parts.append(data)
            got += len(data)
        return b"".join(parts)

    def readall(self) -> bytes:
        parts = []
        while data := self.read1(1 << 16):
            parts.append(data)
        return b"".join(parts)

    def json_lines(self) -> Iterator[Any]:
        """A stream of JSON objects, one per line (build, pull)."""
        buf = b""
        while data := self.read1(1 << 16):
            buf += data
            *lines, buf = buf.split(b"\n")
            for line in lines:
                if line.strip():
                    yield json.loads(line)
        if buf.strip():
            yield json.loads(buf)

    def close(self) -> None:
        self._r.sock.close()


def _error_line(status: int, explanation: str, where: str, call: str) -> str:
    what = f" to {call}" if call else ""
    if status == 403 and "authorization" in explanation.lower():
        return (f"{where} refused{what}: {explanation} (an authorization plugin said no: ask "
                "the engine's administrator)")
    if status >= 500:
        return (f"{where} failed{what} ({status}: {explanation}): see the engine's log "
                "(`journalctl -u docker`)")
    return f"{where} answered {status}{what}: {explanation}"


class Engine:
    """A client of one engine. Calls raise :class:`EngineError` (:class:`NotFound` for 404)
    and :class:`~dltasks.engine.errors.EngineUnreachable` when it cannot be reached."""

    def __init__(self, url: str, *, timeout: float = 120, tls: Tls | None = None,
                 where: str = "", note: Callable[[], str] | None = None) -> None:
        self.url = url
        self.timeout = timeout
        self.tls = tls
        #: The engine as the user knows it, for messages ("the Docker engine on gpu1").
        self.where = where or f"the Docker engine at {url}"
        self._note = note  # what a forward saw on the far side, asked when a dial fails
        self._idle: _Reader | None = None
        self._prefix = ""  # /_ping is asked unversioned; every later path gets /v<version>
        self._prefix = f"/v{self._negotiate()}"

    def _negotiate(self) -> str:
        """The API version both sides speak (the engine's /_ping says its own)."""
        status, headers, body = self._request("GET", "/_ping")
        if status != 200:
            if b"HTTPS server" in body:
                raise self._unreachable(ConnectionError("client sent an HTTP request to an "
                                                        "HTTPS server"))
            if status not in (401, 403, 404) and not headers.get("api-version"):
                raise _error(status, body, self.where, "answer /_ping")
        theirs = headers.get("api-version", "")
        try:
            major, minor = (int(x) for x in theirs.split(".")[:2])
        except ValueError:
            major, minor = MAX_API
        major, minor = min((major, minor), MAX_API)
        return f"{major}.{minor}"

    # -- HTTP ---------------------------------------------------------------------------------

    def _exchange(self, raw: bytes, timeout: float | None) -> tuple[_Reader, bytes]:
        """Send a request; the connection and the answer's status line. The kept-alive
        connection is tried first; if the engine had closed it, a fresh one is dialled."""
        reused, self._idle = self._idle, None
        while True:
            reader = reused or _Reader(self._dial(timeout))
            reader.sock.settimeout(timeout)
            try:
                reader.sock.sendall(raw)
                status_line = reader.readline()
            except (BrokenPipeError, ConnectionResetError):
                status_line = b""
            if status_line:
                return reader, status_line
            reader.sock.close()
            if reused is None:  # a fresh connection said nothing: the engine went away
                raise self._unreachable(ConnectionError("closed the connection"))
            reused = None

    def _dial(self, timeout: float | None) -> socket.socket:
        try:
            return dial(self.url, timeout, self.tls)
        except OSError as e:  # ssl.SSLError is one too
            raise self._unreachable(e) from None

    def _unreachable(self, err: BaseException) -> DltError:
        from dltasks.engine.errors import unreachable

        note = self._note() if self._note else ""
        return unreachable(err, url=self.url, where=self.where, tls=self.tls is not None,
                           note=note, timeout=self.timeout)

    def _send(self, method: str, path: str, params: Mapping[str, Any] | None,
              body: bytes | None, headers: Mapping[str, str] | None,
              timeout: float | None) -> tuple[_Reader, int, dict[str, str]]:
        target = self._prefix + urllib.parse.quote(path, safe="/:@")
        if params:
            target += "?" + urllib.parse.urlencode(
                {k: _param(v) for k, v in params.items() if v is not None})
        head = [f"{method} {target} HTTP/1.1", "Host: docker", f"User-Agent: {_USER_AGENT}"]
        head += [f"{k}: {v}" for k, v in (headers or {}).items()]
        if body is not None:
            head.append(f"Content-Length: {len(body)}")
            if not any(k.lower() == "content-type" for k in headers or {}):
                head.append("Content-Type: application/json")
        elif method in ("POST", "PUT"):
            head.append("Content-Length: 0")
        raw = ("\r\n".join(head) + "\r\n\r\n").encode() + (body or b"")
        try:
            reader, status_line = self._exchange(raw, timeout)
        except OSError as e:  # a timeout, a reset, TLS refused mid-way
            raise self._unreachable(e) from None
        try:
            if not status_line.startswith(b"HTTP/"):
                raise ValueError
            status = int(status_line.split(None, 2)[1])
        except (IndexError, ValueError):
            reader.sock.close()
            raise self._unreachable(ConnectionError(
                f"it does not answer like a Docker engine (it sent {status_line[:40]!r})")) \
                from None
        hdrs: dict[str, str] = {}
        while (line := reader.readline()) not in (b"\r\n", b"\n", b""):
            k, _, v = line.decode("latin-1").partition(":")
            hdrs[k.strip().lower()] = v.strip()
        return reader, status, hdrs

    def _request(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
                 body: bytes | None = None, headers: Mapping[str, str] | None = None,
                 extra_time: float = 0) -> tuple[int, dict[str, str], bytes]:
        reader, status, hdrs = self._send(method, path, params, body, headers,
                                          self.timeout + extra_time)
        try:
            data = Stream(reader, hdrs).readall() if status not in (204, 304) else b""
        except OSError as e:
            reader.sock.close()
            raise self._unreachable(e) from None
        if hdrs.get("connection", "").lower() != "close" and (
                "content-length" in hdrs or "chunked" in hdrs.get("transfer-encoding", "")
                or status in (204, 304)):
            self._idle = reader
        else:
            reader.sock.close()
        return status, hdrs, data

    def call(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
             body: Any = None) -> Any:
        """One JSON call; its decoded answer (None when empty)."""
        payload = json.dumps(body).encode() if body is not None else None
        status, _, data = self._request(method, path, params=params, body=payload)
        if status >= 400:
            raise _error(status, data, self.where, f"{method} {path}")
        return json.loads(data) if data.strip() else None

    def stream(self, method: str, path: str, *, params: Mapping[str, Any] | None = None,
               body: bytes | None = None, headers: Mapping[str, str] | None = None) -> Stream:
        """A call whose answer streams for as long as it takes (no read timeout)."""
        reader, status, hdrs = self._send(method, path, params, body, headers, None)
        s = Stream(reader, hdrs)
        if status >= 400:
            data = s.readall()
            s.close()
            raise _error(status, data, self.where, f"{method} {path}")
        return s

    def close(self) -> None:
        if self._idle is not None:
            self._idle.sock.close()
            self._idle = None

    # -- the calls we make --------------------------------------------------------------------

    def info(self) -> dict[str, Any]:
        return dict(self.call("GET", "/info"))

    def inspect_image(self, ref: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/images/{ref}/json"))

    def image_id(self, ref: str) -> str | None:
        """The ID of a local image, None when the engine does not have it."""
        try:
            return str(self.inspect_image(ref)["Id"])
        except NotFound:
            return None

    def has_network(self, name: str) -> bool:
        """Whether the engine has network ``name`` (``bridge``: none when dockerd runs with
        ``--bridge=none``, and then no container port can be published)."""
        try:
            self.call("GET", f"/networks/{name}")
        except NotFound:
            return False
        return True

    def tag(self, image: str, repo: str, tag: str) -> None:
        self.call("POST", f"/images/{image}/tag", params={"repo": repo, "tag": tag})

    def create_container(self, config: Mapping[str, Any], name: str | None = None) -> str:
        return str(self.call("POST", "/containers/create", params={"name": name},
                             body=config)["Id"])

    def start(self, cid: str) -> None:
        self.call("POST", f"/containers/{cid}/start")

    def stop(self, cid: str, timeout: int) -> None:
        """SIGTERM, then SIGKILL after ``timeout`` seconds; a container already gone is fine."""
        self._request("POST", f"/containers/{cid}/stop", params={"t": timeout}, extra_time=timeout)

    def remove_container(self, cid: str, *, force: bool = False) -> None:
        self.call("DELETE", f"/containers/{cid}", params={"force": force, "v": False})

    def wait(self, cid: str) -> int:
        """Block until the container exits; its exit code."""
        s = self.stream("POST", f"/containers/{cid}/wait")
        answer = json.loads(s.readall() or b"{}")
        s.close()
        return int(answer.get("StatusCode", 1))

    def inspect_container(self, cid: str) -> dict[str, Any]:
        return dict(self.call("GET", f"/containers/{cid}/json"))

    def containers(self, *, all: bool = True,
                   filters: Mapping[str, list[str]] | None = None) -> list[dict[str, Any]]:
        return list(self.call("GET", "/containers/json",
                              params={"all": all, "filters": json.dumps(filters or {})}))

    def logs(self, cid: str, *, follow: bool = False) -> Stream:
        """The container's output as framed stdout/stderr, from its start."""
        return self.stream("GET", f"/containers/{cid}/logs",
                           params={"stdout": 1, "stderr": 1, "follow": follow, "timestamps": 0})

    def attach(self, cid: str, *, stdin: bool = False) -> Stream:
        """Hijack a connection to the container's stdio, before it starts: nothing is missed.

        Without the engine's log replay (``logs=0``, as `docker run` attaches): replayed while
        the container starts, it raced the live stream and a line could arrive twice."""
        return self.stream("POST", f"/containers/{cid}/attach",
                           params={"stream": 1, "stdout": 1, "stderr": 1, "stdin": stdin,
                                   "logs": 0},
                           headers={"Connection": "Upgrade", "Upgrade": "tcp"})

    def resize(self, cid: str, *, height: int, width: int) -> None:
        self.call("POST", f"/containers/{cid}/resize", params={"h": height, "w": width})

    def exec_create(self, cid: str, config: Mapping[str, Any]) -> str:
        """A process to start in the running container ``cid`` (`docker exec`); its exec id."""
        return str(self.call("POST", f"/containers/{cid}/exec", body=config)["Id"])

    def exec_start(self, eid: str, *, tty: bool) -> Stream:
        """Start exec ``eid`` on a hijacked connection: its stdio, raw (``tty``) or framed."""
        body = json.dumps({"Detach": False, "Tty": tty}).encode()
        return self.stream("POST", f"/exec/{eid}/start", body=body,
                           headers={"Connection": "Upgrade", "Upgrade": "tcp"})

    def exec_inspect(self, eid: str) -> dict[str, Any]:
        """``Running`` and ``ExitCode`` (None while it runs) of exec ``eid``."""
        return dict(self.call("GET", f"/exec/{eid}/json"))

    def exec_resize(self, eid: str, *, height: int, width: int) -> None:
        self.call("POST", f"/exec/{eid}/resize", params={"h": height, "w": width})


def _param(v: Any) -> str:
    if isinstance(v, bool):
        return "1" if v else "0"
    return str(v)


def _error(status: int, data: bytes, where: str = "the Docker engine",
           call: str = "") -> EngineError:
    try:
        message = str(json.loads(data).get("message", ""))
    except (ValueError, AttributeError):
        message = data.decode(errors="replace").strip()
    first = (message.splitlines() or [""])[0][:300]
    return (NotFound if status == 404 else EngineError)(status, first or f"HTTP {status}",
                                                        where=where, call=call)
