"""The attach/logs stream demultiplexers: frames cut at any byte, order kept, nothing lost.

The one seam is what the demultiplexer reads from: a ``read(n)`` over pre-cut chunks, a real
socket pair behind ``_Settling``, or a BytesIO standing in for the logs response body.
"""

from __future__ import annotations

import io
import random
import socket
import struct
import threading
from collections.abc import Callable, Iterable, Iterator

import pytest

from dltasks.engine.api import Stream, _Reader
from dltasks.engine.lifecycle import _frames, _log_frames, _Settling

Frame = tuple[int, bytes]


def encode(frames: Iterable[Frame]) -> bytes:
    return b"".join(struct.pack(">BxxxL", sid, len(data)) + data for sid, data in frames)


def merged(items: Iterable[Frame]) -> list[Frame]:
    """Adjacent pieces of one stream joined, empty ones dropped: what order-keeping means."""
    out: list[Frame] = []
    for sid, data in items:
        if not data:
            continue
        if out and out[-1][0] == sid:
            out[-1] = (sid, out[-1][1] + data)
        else:
            out.append((sid, bytes(data)))
    return out


def by_stream(items: Iterable[Frame], sid: int) -> bytes:
    return b"".join(bytes(d) for s, d in items if s == sid)


def chunked_reader(data: bytes, sizes: Callable[[], int]) -> Callable[[int], bytes]:
    """read(n): the next chunk (at most n bytes, cut where ``sizes`` says), b"" at the end."""
    pos = 0

    def read(n: int) -> bytes:
        nonlocal pos
        take = max(1, min(n, sizes()))
        chunk = data[pos:pos + take]
        pos += len(chunk)
        return chunk

    return read


def random_frames(rng: random.Random, count: int) -> list[Frame]:
    frames: list[Frame] = []
    for _ in range(count):
        sid = rng.choice((1, 2))
        length = rng.choice((0, 0, 1, 2, 7, 8, 9, rng.randint(10, 300), rng.randint(300, 5000)))
        frames.append((sid, rng.randbytes(length)))
    return frames


def check(got: list[Frame], sent: list[Frame]) -> None:
    assert by_stream(got, 1) == by_stream(sent, 1)
    assert by_stream(got, 2) == by_stream(sent, 2)
    assert merged(got) == merged(sent)
    assert all(data for _, data in got), "no empty pieces are handed on"
    assert all(isinstance(data, (bytes, bytearray)) for _, data in got)


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("max_chunk", [1, 3, 9, 64, 4096, 1 << 20])
def test_random_chunk_boundaries(seed: int, max_chunk: int) -> None:
    rng = random.Random(seed)
    sent = random_frames(rng, 120)
    cut = random.Random(seed * 1000 + max_chunk)
    got = list(_frames(chunked_reader(encode(sent), lambda: cut.randint(1, max_chunk))))
    check(got, sent)


def test_header_split_across_reads_at_every_offset() -> None:
    sent = [(1, b"hello\n"), (2, b"oops\n"), (1, b"world\n")]
    data = encode(sent)
    for first in range(1, len(data)):
        sizes = iter([first, len(data)])
        got = list(_frames(chunked_reader(data, lambda it=sizes: next(it, 1))))
        check(got, sent)


def test_one_byte_at_a_time_header_dribbles() -> None:
    sent = [(2, b"x"), (1, b""), (1, b"y" * 20), (2, b"")]
    got = list(_frames(chunked_reader(encode(sent), lambda: 1)))
    assert got == [(2, b"x"), (1, b"y" * 20)]


def test_zero_length_frames_only_yield_nothing() -> None:
    sent = [(1, b""), (2, b""), (1, b"")]
    assert list(_frames(chunked_reader(encode(sent), lambda: 5))) == []


def test_zero_length_frame_of_other_stream_does_not_split_order() -> None:
    sent = [(1, b"a"), (2, b""), (1, b"b"), (2, b"c"), (1, b""), (2, b"d")]
    got = list(_frames(chunked_reader(encode(sent), lambda: 1 << 20)))
    assert merged(got) == [(1, b"ab"), (2, b"cd")]


def test_interleaved_order_kept_in_one_read() -> None:
    sent = [(1, b"o1\n"), (1, b"o2\n"), (2, b"e1\n"), (1, b"o3\n"), (2, b"e2\n"), (2, b"e3\n")]
    got = list(_frames(chunked_reader(encode(sent), lambda: 1 << 20)))
    # one read: consecutive frames of one stream are joined, the switch points are kept
    assert got == [(1, b"o1\no2\n"), (2, b"e1\n"), (1, b"o3\n"), (2, b"e2\ne3\n")]


def test_frame_larger_than_one_read() -> None:
    big = random.Random(7).randbytes(3 * (1 << 18) + 17)
    sent = [(1, b"before"), (2, big), (1, b"after")]
    got = list(_frames(chunked_reader(encode(sent), lambda: 1 << 20)))
    check(got, sent)


@pytest.mark.parametrize("keep", [1, 5, 8, 9, 12])
def test_eof_mid_frame_keeps_every_complete_frame(keep: int) -> None:
    """The engine (or SSH) dropping mid-frame: complete frames arrive, the torn one is dropped."""
    complete = [(1, b"one\n"), (2, b"two\n"), (1, b"three\n")]
    torn = encode([(2, b"0123456789")])[:keep]
    got = list(_frames(chunked_reader(encode(complete) + torn, lambda: 3)))
    check(got, complete)


def test_connection_error_ends_the_stream() -> None:
    data = encode([(1, b"so far\n")])
    calls = iter([data])

    def read(n: int) -> bytes:
        try:
            return next(calls)
        except StopIteration:
            raise ConnectionResetError("engine went away") from None

    assert list(_frames(read)) == [(1, b"so far\n")]


# --------------------------------------------------------------------------------------------
# _Settling over a real socket: the reads the attach path really makes (an upgraded
# connection read until close through engineapi.Stream), the writer cutting bytes at random.


def _socket_stream(data: bytes, seed: int) -> Iterator[Frame]:
    a, b = socket.socketpair()
    rng = random.Random(seed)

    def write() -> None:
        with a:
            pos = 0
            while pos < len(data):
                n = rng.randint(1, 700)
                a.sendall(data[pos:pos + n])
                pos += n

    t = threading.Thread(target=write, daemon=True)
    t.start()
    try:
        yield from _frames(_Settling(Stream(_Reader(b), {})).read)
    finally:
        t.join(10)
        b.close()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_response_over_real_socket(seed: int) -> None:
    sent = random_frames(random.Random(seed), 80)
    got = list(_socket_stream(encode(sent), seed))
    check(got, sent)


# --------------------------------------------------------------------------------------------
# _log_frames: the logs endpoint, read through Stream.read(n) (n bytes unless at EOF)


@pytest.mark.parametrize("seed", range(6))
def test_log_frames_random(seed: int) -> None:
    sent = random_frames(random.Random(seed), 100)
    got = list(_log_frames(io.BytesIO(encode(sent))))
    assert [(s, d) for s, d in sent if d] == got


def test_log_frames_zero_length_and_interleaving() -> None:
    sent = [(1, b""), (2, b"e"), (1, b"o"), (2, b""), (2, b"f")]
    assert list(_log_frames(io.BytesIO(encode(sent)))) == [(2, b"e"), (1, b"o"), (2, b"f")]


def test_log_frames_eof_in_header_and_in_payload() -> None:
    whole = encode([(1, b"abc")])
    assert list(_log_frames(io.BytesIO(whole + whole[:5]))) == [(1, b"abc")]
    # EOF inside a payload: what did arrive is handed on
    assert list(_log_frames(io.BytesIO(whole + encode([(2, b"defgh")])[:10]))) == [
        (1, b"abc"), (2, b"de")]
