"""engineapi's HTTP/1.1 over real unix sockets, against a small scripted server.

The server answers the way dockerd does (chunked JSON, sized JSON, 204, the attach upgrade,
error bodies), with the bytes cut at random places, so the parsing is tested on what a socket
really delivers. The real engine is in tests/integration/test_engineapi.py.
"""

from __future__ import annotations

import json
import random
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from dltasks.engine.api import MAX_API, Engine, EngineError, NotFound
from dltasks.engine.client import open_engine
from dltasks.errors import DltError

NEWEST = ".".join(map(str, MAX_API))
Handler = Callable[[str, str, bytes], bytes]  # (method, target, body) -> raw response


def sized(status: int, body: bytes, extra: str = "") -> bytes:
    return (f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{extra}\r\n").encode() + body


def chunked(status: int, body: bytes, pieces: int = 5) -> bytes:
    out = f"HTTP/1.1 {status} X\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
    step = max(1, len(body) // pieces)
    for i in range(0, len(body), step):
        part = body[i:i + step]
        out += f"{len(part):x}\r\n".encode() + part + b"\r\n"
    return out + b"0\r\n\r\n"


def ping(version: str = "1.41") -> bytes:
    return sized(200, b"OK", f"Api-Version: {version}\r\n")


class Server:
    """Accepts connections on a unix socket; answers each request with ``handler``."""

    def __init__(self, path: Path, handler: Handler, *, seed: int = 0,
                 close_after: int = 0) -> None:
        self.handler, self.rng, self.close_after = handler, random.Random(seed), close_after
        self.connections = 0
        self.requests: list[tuple[str, str]] = []
        self.sock = socket.socket(socket.AF_UNIX)
        self.sock.bind(str(path))
        self.sock.listen(8)
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        f = conn.makefile("rb")
        served = 0
        with conn:
            while line := f.readline():
                method, target, _ = line.decode().split(" ", 2)
                size = 0
                while (h := f.readline()) not in (b"\r\n", b""):
                    k, _, v = h.decode().partition(":")
                    if k.lower() == "content-length":
                        size = int(v)
                body = f.read(size) if size else b""
                self.requests.append((method, target))
                raw = self.handler(method, target, body)
                pos = 0
                while pos < len(raw):  # cut where a socket might
                    n = self.rng.randint(1, 40)
                    conn.sendall(raw[pos:pos + n])
                    pos += n
                served += 1
                if self.close_after and served >= self.close_after:
                    return

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., tuple[Server, str]]]:
    servers: list[Server] = []

    def make(handler: Handler, **kw: int) -> tuple[Server, str]:
        path = tmp_path / f"engine{len(servers)}.sock"
        servers.append(Server(path, handler, **kw))
        return servers[-1], f"unix://{path}"

    yield make
    for s in servers:
        s.close()


@pytest.mark.parametrize("seed", range(4))
def test_chunked_and_sized_answers_share_one_kept_alive_connection(serve, seed: int) -> None:
    big = json.dumps([{"Id": f"c{i}", "Labels": {"k": "v" * i}} for i in range(60)]).encode()

    def handler(method: str, target: str, body: bytes) -> bytes:
        if target == "/_ping":
            return ping()
        if target.startswith("/v1.41/containers/json"):
            return chunked(200, big, pieces=7)
        return sized(200, b'{"Id": "sha256:abc"}')

    server, url = serve(handler, seed=seed)
    e = Engine(url)
    assert [r["Id"] for r in e.containers(filters={"label": ["a=b"]})] == [
        f"c{i}" for i in range(60)]
    assert e.image_id("img:1") == "sha256:abc"
    assert len(e.containers()) == 60
    assert server.connections == 1
    assert server.requests[1][1] == ("/v1.41/containers/json?all=1&filters="
                                     "%7B%22label%22%3A+%5B%22a%3Db%22%5D%7D")


def test_a_connection_the_engine_closed_while_idle_is_redialled(serve) -> None:
    def handler(method: str, target: str, body: bytes) -> bytes:
        return ping() if target == "/_ping" else sized(200, b'{"Id": "x"}')

    server, url = serve(handler, close_after=1)  # every connection serves one request
    e = Engine(url)
    assert e.image_id("a") == "x" and e.image_id("b") == "x"
    assert server.connections == 3


def test_errors_carry_the_engines_message(serve) -> None:
    def handler(method: str, target: str, body: bytes) -> bytes:
        if target == "/_ping":
            return ping()
        if "/images/" in target:
            return sized(404, b'{"message": "No such image: nope:1"}')
        if "/start" in target:
            return sized(500, b'{"message": "could not select device driver \\"\\" with '
                              b'capabilities: [[gpu]]"}')
        return chunked(502, b"bad gateway, not json")

    _, url = serve(handler)
    e = Engine(url)
    assert e.image_id("nope:1") is None
    with pytest.raises(NotFound, match="No such image"):
        e.inspect_image("nope:1")
    with pytest.raises(EngineError) as err:
        e.start("c1")
    assert err.value.status == 500 and "could not select device driver" in err.value.explanation
    with pytest.raises(EngineError, match="bad gateway, not json"):
        e.info()


def test_create_sends_json_and_the_name_in_the_query(serve) -> None:
    seen: list[tuple[str, bytes]] = []

    def handler(method: str, target: str, body: bytes) -> bytes:
        seen.append((target, body))
        return ping() if target == "/_ping" else sized(201, b'{"Id": "new", "Warnings": []}')

    _, url = serve(handler)
    cid = Engine(url).create_container({"Image": "i", "Cmd": ["true"]}, name="dlt-p-r1")
    assert cid == "new"
    assert seen[1][0] == "/v1.41/containers/create?name=dlt-p-r1"
    assert json.loads(seen[1][1]) == {"Image": "i", "Cmd": ["true"]}


@pytest.mark.parametrize(("theirs", "used"), [
    ("1.41", "1.41"), ("1.24", "1.24"), ("9.99", NEWEST), ("", NEWEST)])
def test_the_api_version_is_the_older_of_the_two(serve, theirs: str, used: str) -> None:
    def handler(method: str, target: str, body: bytes) -> bytes:
        if target == "/_ping":
            return sized(200, b"OK", f"Api-Version: {theirs}\r\n" if theirs else "")
        return sized(200, b"{}")

    server, url = serve(handler)
    Engine(url).info()
    assert server.requests[-1][1] == f"/v{used}/info"


def test_attach_upgrade_then_raw_bytes_until_close(serve) -> None:
    frames = b"\x01\x00\x00\x00\x00\x00\x00\x03hi\n\x02\x00\x00\x00\x00\x00\x00\x04err\n"

    def handler(method: str, target: str, body: bytes) -> bytes:
        if target == "/_ping":
            return ping()
        return (b"HTTP/1.1 101 UPGRADED\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                b"Content-Type: application/vnd.docker.raw-stream\r\n\r\n" + frames)

    server, url = serve(handler, close_after=1)
    stream = Engine(url).attach("c1")
    assert stream.take_buffered() + stream.readall() == frames
    assert "stream=1" in server.requests[-1][1] and "stdin=0" in server.requests[-1][1]


def test_an_engine_that_is_not_there_is_one_line_naming_the_url(tmp_path: Path) -> None:
    url = f"unix://{tmp_path}/no-engine.sock"
    with pytest.raises(DltError, match=f"cannot reach the Docker engine at {url}: no socket "
                       "there: start it"):
        open_engine(url)


def test_something_that_is_not_an_engine_is_one_line(serve) -> None:
    _, url = serve(lambda method, target, body: b"SSH-2.0-OpenSSH_9.2\r\n\r\n", close_after=1)
    with pytest.raises(DltError, match=f"cannot reach the Docker engine at {url}"):
        open_engine(url)
