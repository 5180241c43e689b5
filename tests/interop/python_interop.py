#!/usr/bin/env python3
"""Interop tests between our `ws` binary and Python's `websockets` package.

Part 1: a websockets client against `ws echo`.
Part 2: websockets servers (written here) against our `ws connect` client.
Part 3: a websockets client against ws-net's axum example (an upgrade done
by axum through ws-net's extractor): subprotocol, deflate, limits.

Run through tests/interop/run.sh, which installs websockets into a venv and
builds `ws` and the example. Standalone:

    WS_BIN=path/to/ws WS_AXUM_EXAMPLE=path/to/examples/axum \
        path/to/venv/bin/python tests/interop/python_interop.py

Prints one line per test, `ok NAME` or `FAIL NAME: reason`, and exits 1 if
any test failed. Every test is bounded by WS_INTEROP_TEST_TIMEOUT seconds
(default 20). Only 127.0.0.1 is used; ports are chosen by the kernel.
Set WS_INTEROP_FILTER to a substring to run only matching tests.
"""

import asyncio
import hashlib
import json
import os
import random
import signal
import sys
import tempfile
import time

import websockets
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve
from websockets.exceptions import ConnectionClosed

WS_BIN = os.environ.get("WS_BIN")
TEST_TIMEOUT = float(os.environ.get("WS_INTEROP_TEST_TIMEOUT", "20"))
FILTER = os.environ.get("WS_INTEROP_FILTER", "")
PREFIX = "py"
HOST = "127.0.0.1"

# --------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------


class Failure(Exception):
    """A test expectation that did not hold."""


_step = ["start"]


def step(text):
    """Record what the test is doing, so a timeout can say where it hung."""
    _step[0] = text


def describe(data):
    """A short description of a message for failure reports."""
    if data is None:
        return "nothing"
    kind = "text" if isinstance(data, str) else "binary"
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else bytes(data)
    head = raw[:24]
    return f"{kind} {len(raw)} bytes sha1={hashlib.sha1(raw).hexdigest()[:12]} starts {head!r}"


def expect_same(got, want, what="message"):
    if type(got) is not type(want) or got != want:
        detail = ""
        if type(got) is type(want):
            a = got.encode("utf-8", "surrogatepass") if isinstance(got, str) else got
            b = want.encode("utf-8", "surrogatepass") if isinstance(want, str) else want
            n = next((i for i in range(min(len(a), len(b))) if a[i] != b[i]), min(len(a), len(b)))
            detail = f"; first difference at byte {n}"
        raise Failure(f"{what}: sent {describe(want)}, got back {describe(got)}{detail}")


def expect(cond, text):
    if not cond:
        raise Failure(text)


def rand_text(n, rng):
    """Random text of exactly n UTF-8 bytes mixing 1- to 4-byte characters."""
    out = []
    left = n
    while left:
        w = rng.randint(1, min(4, left))
        if w == 1:
            c = chr(rng.randint(0x20, 0x7E))
        elif w == 2:
            c = chr(rng.randint(0x80, 0x7FF))
        elif w == 3:
            c = chr(rng.choice((rng.randint(0x800, 0xD7FF), rng.randint(0xE000, 0xFFFD))))
        else:
            c = chr(rng.randint(0x10000, 0x10FFFF))
        out.append(c)
        left -= w
    return "".join(out)


def compressible_text(n):
    pattern = "the quick brown fox jumps over the lazy dog 0123456789 "
    return (pattern * (n // len(pattern) + 1))[:n]


def compressible_bytes(n):
    return (bytes(range(256)) * (n // 256 + 1))[:n]


def size_name(n):
    return "1MiB" if n == 1 << 20 else str(n)


SIZES = [0, 125, 126, 65535, 65536, 1 << 20]
UNICODE_SAMPLES = [
    "héllo wörld",
    "Ελληνικά · русский · العربية · עברית",
    "中文字符 日本語のテキスト 한국어",
    "emoji 😀🎉👩‍👩‍👧‍👦 🇫🇷 and astral 𝄞 𐍈",
    "combining e\u0301 a\u0308 and zero width\u200bjoiner",
    "\u0000 nul and control \u0001\u001f\u007f",
    "max code point \U0010ffff and \ufeff BOM",
]


# --------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------


class Listening:
    """A server process that prints `listening on ws://...` first, for the
    duration of an async with: `ws echo` by default."""

    def __init__(self, *args, argv=None, name="ws echo"):
        self.argv = argv or [WS_BIN, "echo", "--listen", f"{HOST}:0"]
        self.args = args
        self.name = name

    async def __aenter__(self):
        self.stderr = tempfile.TemporaryFile()
        step(" ".join((f"starting {self.name}",) + self.args))
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv, *self.args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=self.stderr,
        )
        try:
            line = await asyncio.wait_for(self.proc.stdout.readline(), 10)
        except asyncio.TimeoutError:
            await self.stop()
            raise Failure(f"{self.name} printed no 'listening on' line within 10 s")
        text = line.decode(errors="replace").strip()
        if not text.startswith("listening on ws://"):
            await self.stop()
            raise Failure(f"{self.name} printed {text!r} instead of 'listening on ws://...': {self.log()}")
        self.url = text[len("listening on "):]
        return self

    def log(self):
        self.stderr.seek(0)
        data = self.stderr.read()[-600:].decode(errors="replace").strip()
        return f"{self.name} stderr: {data!r}" if data else f"{self.name} stderr empty"

    async def stop(self):
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(self.proc.wait(), 15)
            except asyncio.TimeoutError:
                self.proc.kill()
                await self.proc.wait()

    async def __aexit__(self, *exc):
        await self.stop()
        self.stderr.close()


EchoServer = Listening


async def run_client(url, lines=None, args=(), wait_for_lines=None, keep_stdin_open=False, timeout=15):
    """Run `ws connect URL ARGS` and return (status, stdout lines, stderr).

    `lines` are written to its stdin at once. Standard input is then closed
    (so the client sends close 1000) once `wait_for_lines` lines have been
    printed (default: as many as were sent), the way a person at a terminal
    would wait for the answers before pressing ^D. Closing right after
    writing would race the echoes against the closing handshake: a server
    may answer a close at once and drop data it has not echoed yet.

    With keep_stdin_open, stdin stays open until the client exits, so the
    server decides when the connection ends.
    """
    lines = lines or []
    if wait_for_lines is None:
        wait_for_lines = len(lines)
    step(f"running ws connect {url} {' '.join(args)}")
    proc = await asyncio.create_subprocess_exec(
        WS_BIN, "connect", url, *args,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        limit=8 << 20,
    )
    out = []

    def close_stdin():
        if not proc.stdin.is_closing():
            proc.stdin.close()

    async def feed():
        try:
            if lines:
                proc.stdin.write("".join(line + "\n" for line in lines).encode())
                await proc.stdin.drain()
            if not keep_stdin_open and wait_for_lines == 0:
                close_stdin()
        except (BrokenPipeError, ConnectionResetError):
            pass

    async def read_stdout():
        while True:
            line = await proc.stdout.readline()
            if not line:
                return
            out.append(line.rstrip(b"\n").decode("utf-8", errors="replace"))
            if not keep_stdin_open and len(out) == wait_for_lines:
                close_stdin()

    async def go():
        _, _, err = await asyncio.gather(feed(), read_stdout(), proc.stderr.read())
        await proc.wait()
        return err

    try:
        err = await asyncio.wait_for(go(), timeout)
    except asyncio.TimeoutError:
        raise Failure(f"ws connect did not exit within {timeout} s; it printed {len(out)} lines "
                      f"(waited for {wait_for_lines}), last {[l[:40] for l in out[-3:]]!r}")
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        close_stdin()
    return proc.returncode, out, err.decode("utf-8", errors="replace")


class PyServer:
    """A websockets server on 127.0.0.1 with a kernel-chosen port."""

    def __init__(self, handler, **kwargs):
        self.handler = handler
        self.kwargs = kwargs
        self.errors = []

    async def __aenter__(self):
        async def wrapped(ws):
            try:
                await self.handler(ws)
            except ConnectionClosed:
                pass
            except Exception as e:  # recorded, reported by the test
                self.errors.append(f"{type(e).__name__}: {e}")

        kwargs = dict(ping_interval=None, close_timeout=5, max_size=None)
        kwargs.update(self.kwargs)
        self.server = await serve(wrapped, HOST, 0, **kwargs)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"ws://{HOST}:{port}/"
        return self

    async def __aexit__(self, *exc):
        self.server.close()
        try:
            await asyncio.wait_for(self.server.wait_closed(), 10)
        except asyncio.TimeoutError:
            pass

    def check(self):
        if self.errors:
            raise Failure("server handler: " + "; ".join(self.errors))


async def echo_handler(ws):
    async for msg in ws:
        await ws.send(msg)


def py_connect(url, **kwargs):
    opts = dict(open_timeout=10, close_timeout=5, ping_interval=None, max_size=None)
    opts.update(kwargs)
    return connect(url, **opts)


async def roundtrip(ws, msg, what="echo"):
    step(f"sending {describe(msg)}")
    await ws.send(msg)
    step(f"waiting for echo of {describe(msg)}")
    got = await ws.recv()
    expect_same(got, msg, what)


async def close_normally(ws):
    step("closing with 1000")
    await ws.close()
    expect(ws.close_code == 1000, f"sent close 1000, server answered close code {ws.close_code} reason {ws.close_reason!r}")


def check_extensions(ws):
    """The server's answer to the client's extension offer.

    `ws` implements no extension yet, so it must answer none, and the
    echoes only work if it really did not negotiate one. Once it implements
    permessage-deflate it may accept that, and only that; the echo tests
    then exercise it. (websockets itself also rejects an answer naming an
    extension it did not offer.)
    """
    ext = ws.response.headers.get_all("Sec-WebSocket-Extensions")
    for value in ext:
        for item in value.split(","):
            name = item.split(";")[0].strip()
            expect(name == "permessage-deflate", f"server answered Sec-WebSocket-Extensions {ext}, which was not offered")
    return ext


# --------------------------------------------------------------------------
# Test registry
# --------------------------------------------------------------------------

TESTS = []


def test(name):
    def register(fn):
        TESTS.append((f"{PREFIX}/{name}", fn))
        return fn

    return register


_text_cache = {}


def payload(kind, typ, n):
    key = (kind, typ, n)
    if key not in _text_cache:
        rng = random.Random(n * 7 + (kind == "random") + 2 * (typ == "text"))
        if typ == "text":
            _text_cache[key] = compressible_text(n) if kind == "compressible" else rand_text(n, rng)
        else:
            _text_cache[key] = compressible_bytes(n) if kind == "compressible" else rng.randbytes(n)
    return _text_cache[key]


# ---- Part 1: websockets client against `ws echo` --------------------------


def add_size_tests(compression, label):
    for typ in ("text", "binary"):
        for kind in ("compressible", "random"):
            for n in SIZES:
                name = f"client/{label}/{typ}-{size_name(n)}-{kind}"

                async def t(typ=typ, kind=kind, n=n):
                    msg = payload(kind, typ, n)
                    async with EchoServer() as srv:
                        async with py_connect(srv.url, compression=compression) as ws:
                            check_extensions(ws)
                            await roundtrip(ws, msg)
                            # The same message again: state is clean after a big one.
                            await roundtrip(ws, msg, "second echo")
                            await close_normally(ws)

                test(name)(t)


add_size_tests("deflate", "deflate-offered")
add_size_tests(None, "no-compression")


@test("client/deflate-offered")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            offered = ws.request.headers.get("Sec-WebSocket-Extensions")
            expect(offered and "permessage-deflate" in offered, f"client did not offer deflate: {offered!r}")
            ext = check_extensions(ws)
            print(f"# ws echo answered the deflate offer with {ext or 'no extension'}", file=sys.stderr, flush=True)
            expect(ws.response.status_code == 101, f"status {ws.response.status_code}")
            # ws echo accepts permessage-deflate: it must be in use here.
            expect(any("permessage-deflate" in v for v in ext), f"ws echo did not accept deflate: {ext!r}")
            await roundtrip(ws, "a" * 10000)
            await roundtrip(ws, payload("random", "binary", 65536))
            await close_normally(ws)


@test("client/unicode-text")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            for s in UNICODE_SAMPLES:
                await roundtrip(ws, s)
            await close_normally(ws)


@test("client/text-and-binary-interleaved")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            for i in range(50):
                await roundtrip(ws, f"text {i}" if i % 2 else f"binary {i}".encode())
            await close_normally(ws)


@test("client/ping-payload")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            for data in (b"hello ping", b"", bytes(range(125)), "unicode pïng ✓".encode()):
                step(f"ping {data[:20]!r}... ({len(data)} bytes) waiting for pong with the same payload")
                waiter = await ws.ping(data)
                try:
                    await asyncio.wait_for(waiter, 5)
                except asyncio.TimeoutError:
                    raise Failure(f"sent ping with {len(data)}-byte payload {data[:20]!r}, no pong with that payload within 5 s")
            await roundtrip(ws, "still alive after pings")
            await close_normally(ws)


@test("client/many-pings-then-message")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            waiters = [await ws.ping(f"p{i}".encode()) for i in range(100)]
            step("waiting for 100 pongs")
            await asyncio.wait_for(asyncio.gather(*waiters), 10)
            await roundtrip(ws, "after 100 pings")
            await close_normally(ws)


@test("client/unsolicited-pong-ignored")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            await ws.pong(b"unsolicited")
            await roundtrip(ws, "after unsolicited pong")
            await close_normally(ws)


@test("client/pipelined-1000")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            msgs = [f"message {i}" if i % 3 else f"bin {i}".encode() for i in range(1000)]
            step("sending 1000 messages")
            for m in msgs:
                await ws.send(m)
            for i, m in enumerate(msgs):
                step(f"receiving echo {i} of 1000")
                got = await ws.recv()
                expect_same(got, m, f"echo #{i} of 1000 (order)")
            await close_normally(ws)


@test("client/pipelined-concurrent-1000-mixed")
async def _():
    # Sender and receiver run at once: exercises backpressure both ways.
    rng = random.Random(42)
    pool = payload("random", "text", 1 << 20)  # slices of it: random text, cheaply

    def text(k):
        start = rng.randint(0, len(pool) - k)
        return pool[start:start + k]

    msgs = [rng.randbytes(rng.randint(0, 8192)) if i % 2 else text(rng.randint(0, 4096)) for i in range(1000)]
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            async def sender():
                for m in msgs:
                    await ws.send(m)

            task = asyncio.ensure_future(sender())
            try:
                for i, m in enumerate(msgs):
                    step(f"receiving echo {i} of 1000 while sending")
                    expect_same(await ws.recv(), m, f"echo #{i} (order)")
                await task
            finally:
                task.cancel()
            await close_normally(ws)


@test("client/fragmented-text")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            step("sending text in 3 fragments")
            await ws.send(["frag", "ment", "ed ✓"])
            expect_same(await ws.recv(), "fragmented ✓", "reassembled fragmented text")
            await close_normally(ws)


@test("client/fragmented-binary")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            parts = [bytes([i]) * (i * 10) for i in range(20)]
            await ws.send(parts)
            expect_same(await ws.recv(), b"".join(parts), "reassembled fragmented binary")
            await close_normally(ws)


@test("client/fragmented-utf8-split-across-frames")
async def _():
    # A 4-byte and a 3-byte character each split across frame boundaries.
    raw = "a😀b€c".encode()
    parts = [raw[:2], raw[2:4], raw[4:7], raw[7:]]
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            await ws.send(parts, text=True)
            expect_same(await ws.recv(), "a😀b€c", "text whose characters straddle fragments")
            await close_normally(ws)


@test("client/fragmented-with-empty-fragments")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            await ws.send(["", "a", "", "", "b", ""])
            expect_same(await ws.recv(), "ab", "fragments with empty ones")
            await ws.send([b"", b""])
            expect_same(await ws.recv(), b"", "message of empty fragments")
            await close_normally(ws)


@test("client/fragmented-async-with-ping-between")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            waiters = []

            async def fragments():
                for i in range(5):
                    yield f"part{i};"
                    waiters.append(await ws.ping(f"mid{i}".encode()))
                    await asyncio.sleep(0.01)

            step("sending async-iterable fragments with pings between them")
            await ws.send(fragments())
            expect_same(await ws.recv(), "".join(f"part{i};" for i in range(5)), "fragmented message with pings inside")
            step("waiting for pongs to pings sent mid-message")
            await asyncio.wait_for(asyncio.gather(*waiters), 5)
            await close_normally(ws)


@test("client/fragmented-1MiB-in-64KiB-frames")
async def _():
    data = payload("random", "binary", 1 << 20)
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            await ws.send([data[i:i + 65536] for i in range(0, len(data), 65536)])
            expect_same(await ws.recv(), data, "1 MiB in 16 fragments")
            await close_normally(ws)


@test("client/close-4000-with-reason")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            await roundtrip(ws, "before close")
            step("close 4000 'custom reason', waiting for the server's close")
            await ws.close(4000, "custom reason")
            expect(ws.close_code == 4000, f"sent close 4000 'custom reason', server answered code {ws.close_code} reason {ws.close_reason!r}")


@test("client/close-1000-no-reason")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            await ws.close(1000)
            expect(ws.close_code == 1000, f"sent close 1000, server answered {ws.close_code} {ws.close_reason!r}")


@test("client/close-max-reason")
async def _():
    reason = "é" * 61 + "x"  # 123 bytes, the most a close frame carries
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            await ws.close(4999, reason)
            expect(ws.close_code == 4999, f"sent close 4999 with 123-byte reason, server answered {ws.close_code} {ws.close_reason!r}")


@test("client/invalid-utf8-text-closed-1007")
async def _():
    # Not interop as such: a peer sending broken text. RFC 6455 §8.1: the
    # server must fail the connection, with close code 1007.
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            await roundtrip(ws, "valid first")
            step("sending a text frame holding invalid UTF-8 (b'ok \\xff\\xfe')")
            await ws.send(b"ok \xff\xfe", text=True)
            try:
                got = await asyncio.wait_for(ws.recv(), 10)
                raise Failure(f"sent text with invalid UTF-8, got back {describe(got)} instead of a close")
            except ConnectionClosed:
                pass
            expect(ws.close_code == 1007, f"sent text with invalid UTF-8, server closed with {ws.close_code} {ws.close_reason!r}, expected 1007")


@test("client/subprotocol-offered-none-selected")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url, subprotocols=["chat", "superchat"]) as ws:
            expect(ws.subprotocol is None, f"ws echo selected {ws.subprotocol!r}")
            await roundtrip(ws, "hello")
            await close_normally(ws)


@test("client/subprotocol-selected")
async def _():
    async with EchoServer("--protocol", "chat.v1", "--protocol", "superchat") as srv:
        async with py_connect(srv.url, subprotocols=["superchat", "chat.v1"]) as ws:
            expect(ws.subprotocol == "superchat", f"ws echo selected {ws.subprotocol!r}, expected the client's first choice 'superchat'")
            await roundtrip(ws, "hello")
            await close_normally(ws)
        async with py_connect(srv.url, subprotocols=["other"]) as ws:
            expect(ws.subprotocol is None, f"ws echo selected {ws.subprotocol!r} though it supports none offered")
            await roundtrip(ws, "hello")
            await close_normally(ws)


@test("client/custom-headers-and-origin")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url, origin="http://example.test",
                              additional_headers={"Authorization": "Bearer x", "X-Many": "a, b"}) as ws:
            await roundtrip(ws, "hello")
            await close_normally(ws)


@test("client/concurrent-20-connections")
async def _():
    async with EchoServer() as srv:
        async def one(k):
            async with py_connect(srv.url) as ws:
                for i in range(50):
                    await roundtrip(ws, f"conn {k} msg {i}")
                await close_normally(ws)

        step("20 concurrent connections, 50 echoes each")
        await asyncio.gather(*(one(k) for k in range(20)))


@test("client/server-sigterm-closes-1001")
async def _():
    async with EchoServer() as srv:
        async with py_connect(srv.url) as ws:
            await roundtrip(ws, "before shutdown")
            step("SIGTERM to ws echo, waiting for close 1001")
            srv.proc.send_signal(signal.SIGTERM)
            try:
                await asyncio.wait_for(ws.wait_closed(), 10)
            except asyncio.TimeoutError:
                raise Failure("no close from ws echo within 10 s of SIGTERM")
            expect(ws.close_code == 1001, f"after SIGTERM expected close 1001, got {ws.close_code} {ws.close_reason!r}")
        step("waiting for ws echo to exit after SIGTERM")
        try:
            rc = await asyncio.wait_for(srv.proc.wait(), 10)
        except asyncio.TimeoutError:
            raise Failure("ws echo still running 10 s after SIGTERM with its only client gone")
        expect(rc == 0, f"ws echo exited with status {rc} after SIGTERM; {srv.log()}")


# ---- Part 2: websockets servers against `ws connect` ----------------------


def expect_closed(err, code, reason=None):
    want = f"closed: {code}" + (f" {reason}" if reason is not None else "")
    lines = [l for l in err.splitlines() if l.startswith("closed:")]
    expect(any(l == want or l.startswith(want + " ") or (reason is None and l.rstrip() == want) for l in lines),
           f"expected {want!r} on stderr, stderr was {err.strip()!r}")


def expect_lines(got, want):
    if got != want:
        for i, (a, b) in enumerate(zip(got, want)):
            if a != b:
                raise Failure(f"stdout line {i}: sent {b[:60]!r} ({len(b)} chars), printed {a[:60]!r} ({len(a)} chars)")
        raise Failure(f"sent {len(want)} lines, stdout had {len(got)}: last {got[-3:]!r}")


def recording_echo(record):
    async def handler(ws):
        async for msg in ws:
            record.append(msg)
            try:
                await ws.send(msg)
            except ConnectionClosed:
                # Close already received: keep draining what is queued, or
                # websockets stops reading and misses the TCP close.
                pass

    return handler


@test("connect/echo-lines")
async def _():
    lines = ["hello", "", "second line", "  spaces  around  ", "x" * 100000] + UNICODE_SAMPLES[:5]
    seen = []
    async with PyServer(recording_echo(seen)) as srv:
        rc, out, err = await run_client(srv.url, lines)
        srv.check()
    expect(seen == lines, f"server received {[describe(m) for m in seen[:3]]}... ({len(seen)} messages) instead of the {len(lines)} lines as text")
    expect_lines(out, lines)
    expect_closed(err, 1000)
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/pipelined-1000-lines")
async def _():
    lines = [f"line {i} ✓" for i in range(1000)]
    async with PyServer(echo_handler) as srv:
        rc, out, err = await run_client(srv.url, lines)
        srv.check()
    expect_lines(out, lines)
    expect_closed(err, 1000)
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/eof-right-after-lines")
async def _():
    # stdin closes as soon as the lines are written: the client sends close
    # 1000 right behind them. websockets answers a close at once and stops
    # echoing, so only a prefix of the echoes may come back, but in order,
    # and the connection must still close cleanly.
    lines = [f"eof test {i}" for i in range(200)]
    seen = []
    async with PyServer(recording_echo(seen)) as srv:
        rc, out, err = await run_client(srv.url, lines, wait_for_lines=0)
        srv.check()
    expect(seen == lines, f"server received {len(seen)} of the {len(lines)} messages sent before the close"
                          f" (first {seen[:3]!r}, last {seen[-3:]!r})")
    expect(out == lines[:len(out)], f"stdout is not a prefix of the lines sent: {out[:5]!r}...")
    expect_closed(err, 1000)
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/binary-lines")
async def _():
    lines = ["bin one", "bïn two", ""]
    seen = []
    async with PyServer(recording_echo(seen)) as srv:
        rc, out, err = await run_client(srv.url, lines, ["--binary"])
        srv.check()
    expect(seen == [l.encode() for l in lines], f"with --binary the server received {seen!r}")
    expect_lines(out, lines)
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/deflate-capable-server")
async def _():
    # `ws connect` offers permessage-deflate; websockets accepts it, and the
    # echoes (compressible and not) come back intact through both codecs.
    offers, answers = [], []

    async def handler(ws):
        offers.append(ws.request.headers.get("Sec-WebSocket-Extensions"))
        answers.append(ws.response.headers.get("Sec-WebSocket-Extensions"))
        await echo_handler(ws)

    lines = ["plain", "a" * 50000, compressible_text(20000), rand_text(30000, random.Random(5))] + UNICODE_SAMPLES[:3]
    async with PyServer(handler, compression="deflate") as srv:
        rc, out, err = await run_client(srv.url, lines)
        srv.check()
    print(f"# ws connect offered {offers[0] if offers else None!r}, answer {answers[0] if answers else None!r}",
          file=sys.stderr, flush=True)
    expect(offers and offers[0] and "permessage-deflate" in offers[0], f"ws connect did not offer deflate: {offers!r}")
    expect(answers and answers[0] and "permessage-deflate" in answers[0], f"deflate was not negotiated: {answers!r}")
    expect_lines(out, lines)
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/no-deflate-flag")
async def _():
    offers = []

    async def handler(ws):
        offers.append(ws.request.headers.get("Sec-WebSocket-Extensions"))
        await echo_handler(ws)

    async with PyServer(handler, compression="deflate") as srv:
        rc, out, err = await run_client(srv.url, ["x" * 1000], ["--no-deflate"])
        srv.check()
    expect(offers == [None], f"--no-deflate still offered {offers!r}")
    expect_lines(out, ["x" * 1000])
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/subprotocol")
async def _():
    offered = []

    async def handler(ws):
        offered.append(ws.request.headers.get("Sec-WebSocket-Protocol"))
        await ws.send(f"subprotocol={ws.subprotocol}")
        await echo_handler(ws)

    async with PyServer(handler, subprotocols=["chat.v2"]) as srv:
        rc, out, err = await run_client(srv.url, ["hi"], ["--protocol", "chat.v1", "--protocol", "chat.v2"],
                                         wait_for_lines=2)
        srv.check()
    expect(offered and offered[0] and [p.strip() for p in offered[0].split(",")] == ["chat.v1", "chat.v2"],
           f"Sec-WebSocket-Protocol offered {offered!r}")
    expect_lines(out, ["subprotocol=chat.v2", "hi"])
    expect("subprotocol chat.v2" in err, f"client did not report subprotocol chat.v2: {err.strip()!r}")
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/subprotocol-offered-none-selected")
async def _():
    async with PyServer(echo_handler) as srv:
        rc, out, err = await run_client(srv.url, ["hi"], ["--protocol", "chat.v1"])
        srv.check()
    expect_lines(out, ["hi"])
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/header-and-origin")
async def _():
    async def handler(ws):
        h = ws.request.headers
        await ws.send(json.dumps({
            "authorization": h.get("Authorization"),
            "origin": h.get("Origin"),
            "x-multi": h.get("X-Multi"),
            "path": ws.request.path,
        }, sort_keys=True))
        await echo_handler(ws)

    async with PyServer(handler) as srv:
        url = srv.url + "some/path?q=1"
        rc, out, err = await run_client(url, ["x"], [
            "--header", "Authorization: Bearer x",
            "--header", "X-Multi: one, two",
            "--origin", "http://example.test",
        ], wait_for_lines=2)
        srv.check()
    expect(out, f"no output; stderr {err.strip()!r}")
    seen = json.loads(out[0])
    want = {"authorization": "Bearer x", "origin": "http://example.test", "x-multi": "one, two", "path": "/some/path?q=1"}
    expect(seen == want, f"server saw {seen}, expected {want}")
    expect_lines(out[1:], ["x"])
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/server-closes-1001-bye")
async def _():
    answer = []

    async def handler(ws):
        await ws.send("hello")
        await ws.close(1001, "bye")
        answer.append(int(ws.close_code))

    async with PyServer(handler) as srv:
        rc, out, err = await run_client(srv.url, keep_stdin_open=True)
        srv.check()
    expect_lines(out, ["hello"])
    expect_closed(err, 1001, "bye")
    expect(rc == 0, f"server closed 1001: expected exit status 0, got {rc}; stderr {err.strip()!r}")
    # The client must answer the close with a close frame (RFC 6455 §5.5.1),
    # normally echoing the code; websockets reports 1006 if none came.
    expect(answer and answer[0] != 1006,
           f"server sent close 1001 'bye'; no close frame came back from the client, "
           f"the TCP connection just ended (websockets reports 1006)")
    expect(answer == [1001], f"server sent close 1001 'bye'; the client answered {answer}")


@test("connect/client-close-answered")
async def _():
    # stdin EOF: the client sends close 1000 and the server answers it.
    codes = []

    async def handler(ws):
        await echo_handler(ws)
        await ws.wait_closed()
        codes.append(int(ws.close_code))

    async with PyServer(handler) as srv:
        rc, out, err = await run_client(srv.url, ["one"])
        step("waiting for the server side to finish")
        await asyncio.sleep(0)
        for _ in range(100):
            if codes:
                break
            await asyncio.sleep(0.05)
        srv.check()
    expect_lines(out, ["one"])
    expect_closed(err, 1000)
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")
    expect(codes == [1000], f"the server received close {codes} from the client, expected 1000")


@test("connect/server-closes-4001-nonzero-exit")
async def _():
    answer = []

    async def handler(ws):
        await ws.close(4001, "custom")
        answer.append(int(ws.close_code))

    async with PyServer(handler) as srv:
        rc, out, err = await run_client(srv.url, keep_stdin_open=True)
        srv.check()
    expect_closed(err, 4001, "custom")
    expect(rc != 0, f"server closed 4001: expected non-zero exit status, got {rc}")
    expect(answer == [4001], f"server sent close 4001; the client answered {answer} (1006 = no close frame came back)")


@test("connect/server-ping-gets-pong")
async def _():
    results = []

    async def handler(ws):
        for data in (b"server ping", b"", bytes(range(125))):
            waiter = await ws.ping(data)
            try:
                await asyncio.wait_for(waiter, 5)
                results.append("ok")
            except asyncio.TimeoutError:
                results.append(f"no pong to {len(data)}-byte ping {data[:20]!r} within 5 s")
        await ws.send("pings done")
        await ws.close()

    async with PyServer(handler) as srv:
        rc, out, err = await run_client(srv.url, keep_stdin_open=True)
        srv.check()
    expect(results == ["ok"] * 3, f"server pings: {results}")
    expect_lines(out, ["pings done"])
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/server-sends-fragmented-and-large")
async def _():
    big = payload("random", "text", 1 << 20).replace("\n", " ").replace("\r", " ")
    raw = "split ☃ and 😀 here".encode()

    async def handler(ws):
        await ws.send(["frag", "mented"])
        await ws.send([raw[:7], raw[7:15], raw[15:]], text=True)
        await ws.send(big)
        await ws.send([big[i:i + 100000] for i in range(0, len(big), 100000)])
        await ws.close()

    async with PyServer(handler) as srv:
        rc, out, err = await run_client(srv.url, keep_stdin_open=True)
        srv.check()
    expect_lines(out, ["fragmented", "split ☃ and 😀 here", big, big])
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/ping-inside-fragmented-message")
async def _():
    results = []

    async def handler(ws):
        async def fragments():
            for i in range(4):
                yield f"f{i};"
                waiter = await ws.ping(f"mid{i}".encode())
                try:
                    await asyncio.wait_for(waiter, 5)
                    results.append("ok")
                except asyncio.TimeoutError:
                    results.append(f"no pong to ping mid{i} sent between fragments")

        await ws.send(fragments())
        await ws.close()

    async with PyServer(handler) as srv:
        rc, out, err = await run_client(srv.url, keep_stdin_open=True)
        srv.check()
    expect(results == ["ok"] * 4, f"pings between fragments: {results}")
    expect_lines(out, ["f0;f1;f2;f3;"])
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/large-line-1MiB")
async def _():
    line = payload("random", "text", 1 << 20).replace("\n", " ").replace("\r", " ")
    seen = []
    async with PyServer(recording_echo(seen)) as srv:
        rc, out, err = await run_client(srv.url, [line, "after"])
        srv.check()
    expect(len(seen) == 2 and seen[0] == line, f"server received {[describe(m) for m in seen]}, sent {describe(line)}")
    expect_lines(out, [line, "after"])
    expect(rc == 0, f"exit status {rc}, stderr {err.strip()!r}")


@test("connect/invalid-utf8-from-server")
async def _():
    # A server sending broken text: the client must fail the connection
    # with 1007 (RFC 6455 §8.1) and exit non-zero.
    codes = []

    async def handler(ws):
        await ws.send("valid first")
        await ws.send(b"bad \xff\xfe", text=True)
        try:
            await asyncio.wait_for(ws.wait_closed(), 10)
        finally:
            codes.append(None if ws.close_code is None else int(ws.close_code))

    async with PyServer(handler) as srv:
        rc, out, err = await run_client(srv.url, keep_stdin_open=True)
        srv.check()
    expect(out[:1] == ["valid first"], f"stdout {out!r}")
    expect(len(out) == 1, f"printed invalid text anyway: {out[1:]!r}")
    expect(codes == [1007], f"the client answered invalid UTF-8 with close code {codes}, expected 1007; stderr {err.strip()!r}")
    expect(rc != 0, f"exit status 0 after invalid UTF-8; stderr {err.strip()!r}")


@test("connect/handshake-refused-403")
async def _():
    def refuse(conn, request):
        return conn.respond(403, "go away\n")

    async with PyServer(echo_handler, process_request=refuse) as srv:
        rc, out, err = await run_client(srv.url, ["never sent"])
    expect(rc != 0, f"handshake refused with 403 but exit status 0; stderr {err.strip()!r}")
    expect(out == [], f"printed {out!r}")


@test("connect/server-drops-tcp-without-close")
async def _():
    async def handler(ws):
        await ws.send("then vanish")
        ws.transport.abort()

    async with PyServer(handler) as srv:
        rc, out, err = await run_client(srv.url, keep_stdin_open=True)
    expect_lines(out, ["then vanish"])
    expect(rc != 0, f"connection dropped without a close frame but exit status 0; stderr {err.strip()!r}")


# ---- ws-net's axum extractor (examples/axum.rs) ----------------------------

AXUM_EXAMPLE = os.environ.get("WS_AXUM_EXAMPLE")


def axum_example():
    if not AXUM_EXAMPLE or not os.access(AXUM_EXAMPLE, os.X_OK):
        raise Failure(f"WS_AXUM_EXAMPLE={AXUM_EXAMPLE!r} is not an executable")
    return Listening(argv=[AXUM_EXAMPLE, f"{HOST}:0"], name="the axum example")


@test("axum/deflate-and-subprotocol-in-force")
async def _():
    async with axum_example() as srv:
        async with py_connect(srv.url, subprotocols=["other", "chat"]) as ws:
            expect(ws.subprotocol == "chat", f"subprotocol {ws.subprotocol!r}, not 'chat'")
            ext = check_extensions(ws)
            expect(any("permessage-deflate" in v for v in ext), f"the axum upgrade did not accept deflate: {ext!r}")
            # Compressed both ways: a large compressible text and random bytes.
            await roundtrip(ws, compressible_text(200_000))
            await roundtrip(ws, payload("random", "binary", 65536))
            await close_normally(ws)


@test("axum/no-deflate-offered")
async def _():
    async with axum_example() as srv:
        async with py_connect(srv.url, compression=None, subprotocols=["chat"]) as ws:
            expect(ws.subprotocol == "chat", f"subprotocol {ws.subprotocol!r}")
            ext = ws.response.headers.get_all("Sec-WebSocket-Extensions")
            expect(not ext, f"extensions answered though none was offered: {ext!r}")
            await roundtrip(ws, "plain")
            await close_normally(ws)


@test("axum/config-limit-1009")
async def _():
    async with axum_example() as srv:
        async with py_connect(srv.url, subprotocols=["chat"]) as ws:
            step("sending 2 MiB, over the example's 1 MiB limit")
            await ws.send(b"x" * (2 << 20))
            try:
                await asyncio.wait_for(ws.recv(), 10)
                raise Failure("a message over the limit was echoed")
            except ConnectionClosed:
                pass
            expect(ws.close_code == 1009, f"closed with {ws.close_code}, not 1009")


@test("axum/plain-get-refused-400")
async def _():
    async with axum_example() as srv:
        port = int(srv.url[len("ws://"):].split("/")[0].rsplit(":", 1)[1])
        step("plain GET on the upgrade route")
        reader, writer = await asyncio.open_connection(HOST, port)
        writer.write(f"GET /echo HTTP/1.1\r\nHost: {HOST}\r\n\r\n".encode())
        await writer.drain()
        line = await asyncio.wait_for(reader.readline(), 10)
        writer.close()
        expect(line.startswith(b"HTTP/1.1 400"), f"answered {line!r}")


# --------------------------------------------------------------------------


async def main():
    if not WS_BIN or not os.access(WS_BIN, os.X_OK):
        print(f"FAIL {PREFIX}/setup: WS_BIN={WS_BIN!r} is not an executable", flush=True)
        return 1
    print(f"# websockets {websockets.__version__}, ws binary {WS_BIN}", file=sys.stderr, flush=True)
    failed = 0
    for name, fn in TESTS:
        if FILTER and FILTER not in name:
            continue
        step("start")
        started = time.monotonic()
        try:
            await asyncio.wait_for(fn(), TEST_TIMEOUT)
        except asyncio.TimeoutError:
            failed += 1
            print(f"FAIL {name}: timed out after {TEST_TIMEOUT:g} s while {_step[0]}", flush=True)
        except Failure as e:
            failed += 1
            print(f"FAIL {name}: {e}", flush=True)
        except ConnectionClosed as e:
            failed += 1
            print(f"FAIL {name}: connection closed while {_step[0]}: {e}", flush=True)
        except Exception as e:
            failed += 1
            print(f"FAIL {name}: {type(e).__name__} while {_step[0]}: {e}", flush=True)
        else:
            print(f"ok {name}", flush=True)
        if os.environ.get("WS_INTEROP_VERBOSE"):
            print(f"#   {time.monotonic() - started:.2f}s", file=sys.stderr, flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
