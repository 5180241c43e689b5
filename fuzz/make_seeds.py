#!/usr/bin/env python3
"""Write the seed corpora: fuzz/corpus/<target>/seed-*.

The frames and handshakes come from RFC 6455 (§1.2, §1.3, §5.7) and from
the kinds of cases Autobahn|Testsuite sends (fragments with pings between
them, close frames, invalid UTF-8, 16-bit lengths).

frame_decoder, handshake_request and handshake_response read a few
leading option bytes and then raw bytes (layouts in each target's doc
comment). server_connection and roundtrip take structured input decoded
with the `arbitrary` crate (1.x): integers little-endian, bool = low bit
of a byte, enum variant i of n = a u32 v with v * n >> 32 == i, Option =
bool then value, Vec = (bool 1 + element)* then bool 0, and the fuzz
crate's Blob = u16 length then bytes. `cargo fuzz fmt TARGET FILE` prints
how a file decodes.

Run from anywhere: python3 fuzz/make_seeds.py
"""

import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
CORPUS = os.path.join(HERE, "corpus")

DEFAULT = 0xFF  # a size selector byte meaning "the default"


def write(target, name, data):
    d = os.path.join(CORPUS, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(bytes(data))


# --- frames -----------------------------------------------------------------

RFC_KEY = bytes([0x37, 0xFA, 0x21, 0x3D])  # the masking key of §5.7


def frame(opcode, payload, fin=True, mask=None, rsv=0):
    out = bytearray([(0x80 if fin else 0) | rsv << 4 | opcode])
    m = 0x80 if mask is not None else 0
    n = len(payload)
    if n <= 125:
        out.append(m | n)
    elif n <= 0xFFFF:
        out.append(m | 126)
        out += struct.pack(">H", n)
    else:
        out.append(m | 127)
        out += struct.pack(">Q", n)
    if mask is not None:
        out += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes(out) + bytes(payload)


def close_payload(code, reason=b""):
    return struct.pack(">H", code) + reason


# --- frame_decoder ----------------------------------------------------------


def decoder(flags, data, knobs=(DEFAULT, DEFAULT, 0, DEFAULT, 0x80, 0), chunk_max=0, seed=0):
    # flags: bit 0 client role, bit 1 end of file, bit 2 read_buffer
    return bytes([flags, *knobs, chunk_max]) + struct.pack("<H", seed) + data


SERVER, CLIENT = 0, 1


def frame_decoder():
    t = "frame_decoder"
    # §5.7: a single-frame unmasked text message (what a client receives).
    write(t, "rfc-hello-unmasked", decoder(CLIENT, frame(1, b"Hello")))
    # §5.7: a single-frame masked text message (what a server receives).
    write(t, "rfc-hello-masked", decoder(SERVER, frame(1, b"Hello", mask=RFC_KEY), chunk_max=3))
    # §5.7: a fragmented unmasked text message, delivered as fragments.
    write(
        t,
        "rfc-fragmented",
        decoder(
            CLIENT,
            frame(1, b"Hel", fin=False) + frame(0, b"lo"),
            knobs=(DEFAULT, DEFAULT, 1, DEFAULT, 0x80, 0),
            chunk_max=2,
        ),
    )
    # §5.7: an unmasked ping and a masked pong.
    write(t, "rfc-ping", decoder(CLIENT, frame(9, b"Hello")))
    write(t, "rfc-pong-masked", decoder(SERVER, frame(10, b"Hello", mask=RFC_KEY)))
    # §5.7: 256 bytes binary in a single unmasked frame (16-bit length).
    write(t, "rfc-binary-256", decoder(CLIENT, frame(2, bytes(range(256))), chunk_max=50))
    # §5.7: the header of 64 KiB binary in one frame (64-bit length).
    write(t, "rfc-binary-64k-header", decoder(CLIENT, bytes([0x82, 0x7F]) + struct.pack(">Q", 65536)))
    # Autobahn 5.x: masked fragments with a ping in between, then a close.
    k = bytes([1, 2, 3, 4])
    write(
        t,
        "fragments-ping-close",
        decoder(
            SERVER,
            frame(1, b"fragment1", fin=False, mask=k)
            + frame(9, b"ping", mask=k)
            + frame(0, b"fragment2", mask=k)
            + frame(8, close_payload(1000, b"done"), mask=k),
            chunk_max=5,
            seed=7,
        ),
    )
    # Autobahn 6.x: invalid UTF-8 in a text message, then end of file.
    write(
        t,
        "invalid-utf8-eof",
        decoder(SERVER | 2, frame(1, "κόσμε".encode() + b"\xed\xa0\x80edited", mask=k), chunk_max=1),
    )
    # Small limits and the pong backlog: many pings, tiny threshold.
    write(
        t,
        "pings-small-limits",
        decoder(
            CLIENT | 4,
            b"".join(frame(9, bytes([i]) * 20) for i in range(8)) + frame(2, b"x" * 40),
            knobs=(0x20, 0x20, 0, 0x01, 0x02, 0),
            chunk_max=9,
        ),
    )


# --- handshakes -------------------------------------------------------------

RFC_REQUEST = (
    b"GET /chat HTTP/1.1\r\n"
    b"Host: server.example.com\r\n"
    b"Upgrade: websocket\r\n"
    b"Connection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
    b"Origin: http://example.com\r\n"
    b"Sec-WebSocket-Protocol: chat, superchat\r\n"
    b"Sec-WebSocket-Version: 13\r\n\r\n"
)


def request(data, max_head=0x80, max_headers=0x80, chunk_max=0, seed=0, choice=0):
    return bytes([max_head, max_headers, chunk_max]) + struct.pack("<H", seed) + bytes([choice]) + data


def handshake_request():
    t = "handshake_request"
    write(t, "rfc-request", request(RFC_REQUEST))
    write(t, "rfc-request-chunked", request(RFC_REQUEST, chunk_max=7, seed=3, choice=1))
    write(
        t,
        "rfc-request-then-frame",
        request(RFC_REQUEST + frame(1, b"Hello", mask=RFC_KEY), chunk_max=40),
    )
    write(t, "small-limits", request(RFC_REQUEST, max_head=0x20, max_headers=0x06, chunk_max=16))
    write(t, "version-8", request(RFC_REQUEST.replace(b"Version: 13", b"Version: 8")))
    write(t, "post", request(RFC_REQUEST.replace(b"GET", b"POST")))
    write(t, "http10", request(RFC_REQUEST.replace(b"HTTP/1.1", b"HTTP/1.0")))


def response(data, flags=0, max_head=0x80, max_headers=0x80, chunk_max=0, seed=0, choice=0x80):
    return bytes([flags, max_head, max_headers, chunk_max]) + struct.pack("<H", seed) + bytes([choice]) + data


def handshake_response():
    t = "handshake_response"
    ok = (
        b"HTTP/1.1 101 Switching Protocols\r\n"
        b"Upgrade: websocket\r\n"
        b"Connection: Upgrade\r\n"
        b"Sec-WebSocket-Accept: {accept}\r\n"
    )
    write(t, "101", response(ok + b"\r\n"))
    write(t, "101-chunked-with-frame", response(ok + b"\r\n" + frame(1, b"Hello"), chunk_max=9, seed=5))
    write(t, "101-protocol", response(ok + b"Sec-WebSocket-Protocol: chat\r\n\r\n", flags=2, choice=0))
    write(
        t,
        "101-extension",
        response(ok + b"Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n", flags=4),
    )
    # The token beside a list element with obs-text: still an upgrade (a
    # case the fuzzer found where the target's own check disagreed).
    write(
        t,
        "101-connection-obs-text",
        response(ok.replace(b"Connection: Upgrade", b"Connection: \xe0\xd8,,, Upgrade") + b"\r\n"),
    )
    # Extension and subprotocol values the client cannot read: they could
    # name what the server selected, so the response fails.
    write(
        t,
        "101-extension-obs-text",
        response(ok + b"Sec-WebSocket-Extensions: x-\xe9t\xe9\r\n\r\n"),
    )
    write(
        t,
        "101-protocol-obs-text",
        response(ok + b"Sec-WebSocket-Protocol: chat, \xff\r\n\r\n", flags=2, choice=0),
    )
    # §1.3's accept value: right for §1.2's key, wrong for ours.
    write(t, "101-rfc-accept", response(ok.replace(b"{accept}", b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=") + b"\r\n"))
    write(
        t,
        "403",
        response(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 3\r\nConnection: close\r\n\r\nno\n"),
    )


# --- arbitrary encoding -----------------------------------------------------


def variant(i, n):
    v = (i * 2**32 + n - 1) // n
    assert (v * n) >> 32 == i and v < 2**32
    return struct.pack("<I", v)


def boolean(b):
    return bytes([1 if b else 0])


def u8(x):
    return bytes([x])


def u16(x):
    return struct.pack("<H", x)


def u64(x):
    return struct.pack("<Q", x)


def blob(b):
    if isinstance(b, str):
        b = b.encode()
    return u16(len(b)) + b


def option(x):
    return boolean(False) if x is None else boolean(True) + x


def vec(items):
    return b"".join(boolean(True) + i for i in items) + boolean(False)


def knobs(max_frame=DEFAULT, max_message=DEFAULT, deliver=False, pong=DEFAULT, coalesced=0x80, fragment=0):
    return u8(max_frame) + u8(max_message) + boolean(deliver) + u8(pong) + u8(coalesced) + u8(fragment)


# --- server_connection ------------------------------------------------------

ACTIONS = [
    "Peer", "PeerFrame", "PeerClose", "Poll", "Text", "Binary", "Ping",
    "Fragment", "Prepared", "Close", "Drain", "DrainAll", "Eof",
]
OPS = ["Continuation", "Text", "Binary", "Close", "Ping", "Pong", "Other"]


def action(name, body=b""):
    return variant(ACTIONS.index(name), len(ACTIONS)) + body


def peer_frame(op, payload, fin=True, rsv=None, unmasked=False, key=RFC_KEY, split=0):
    body = boolean(fin) + variant(OPS.index(op), len(OPS))
    body += option(None if rsv is None else u8(rsv))
    body += boolean(unmasked) + key + blob(payload) + u16(split)
    return action("PeerFrame", body)


def server_input(actions, k=None, auto_poll=True, first=b""):
    return (k or knobs()) + boolean(auto_poll) + blob(first) + vec(actions)


def server_connection():
    t = "server_connection"
    # §5.7's masked "Hello" with the handshake request, echoed.
    write(
        t,
        "rfc-hello-echo",
        server_input(
            [action("Poll"), action("Text", blob("Hello")), action("Drain", u16(3)), action("DrainAll")],
            first=frame(1, b"Hello", mask=RFC_KEY),
        ),
    )
    # §5.7's ping, answered; a ping of our own.
    write(
        t,
        "ping-pong",
        server_input(
            [
                action("Peer", blob(frame(9, b"Hello", mask=RFC_KEY))),
                action("Drain", u16(2)),
                action("Ping", blob("x")),
                action("DrainAll"),
            ]
        ),
    )
    # Fragments both ways, with control frames between them.
    write(
        t,
        "fragments",
        server_input(
            [
                peer_frame("Text", b"Hel", fin=False, split=2),
                peer_frame("Ping", b"p"),
                peer_frame("Continuation", b"lo", split=5),
                action("Fragment", boolean(True) + blob("frag") + boolean(False)),
                action("Ping", blob("between")),
                action("Fragment", boolean(True) + blob("ment") + boolean(True)),
                action("Prepared", boolean(False) + blob(bytes(range(200)))),
                action("DrainAll"),
            ],
            k=knobs(fragment=0x03),
        ),
    )
    # The client closes; we answer.
    write(
        t,
        "peer-close",
        server_input(
            [
                action("Binary", blob(bytes(300))),
                action("PeerClose", u16(1000) + blob("bye") + bytes([1, 2, 3, 4])),
                action("Drain", u16(100)),
                action("Text", blob("too late")),
                action("DrainAll"),
            ]
        ),
    )
    # We close; the client answers; then end of file.
    write(
        t,
        "local-close",
        server_input(
            [
                action("Close", option(u16(1001) + blob("going away"))),
                action("Text", blob("too late")),
                action("PeerClose", u16(1001) + blob("") + bytes([9, 9, 9, 9])),
                action("DrainAll"),
                action("Eof"),
            ]
        ),
    )
    # A tiny pong backlog threshold: pings while we do not drain.
    write(
        t,
        "pong-backlog",
        server_input(
            [action("Binary", blob(bytes(100)))]
            + [action("Peer", blob(frame(9, bytes([i]) * 10, mask=RFC_KEY))) for i in range(6)]
            + [action("Drain", u16(50)), action("Poll"), action("DrainAll")],
            k=knobs(pong=0x02, coalesced=0x03),
        ),
    )
    # Protocol errors: an unmasked frame, then a reserved opcode.
    write(
        t,
        "errors",
        server_input(
            [
                peer_frame("Text", "κόσμε".encode() + b"\xf4\x90", split=4),
                peer_frame("Other", b"", unmasked=True),
                action("DrainAll"),
            ],
            k=knobs(max_frame=0x10, max_message=0x20, deliver=True),
        ),
    )


# --- roundtrip ----------------------------------------------------------------

ITEMS = ["Text", "Binary", "Ping", "Pong", "Fragmented", "Prepared", "Transfer"]


def item(name, body=b""):
    return variant(ITEMS.index(name), len(ITEMS)) + body


def rt_input(items, fragment=0, deliver=False, chunk_max=0, seed=0, close=None):
    return u8(fragment) + boolean(deliver) + u8(chunk_max) + u64(seed) + option(close) + vec(items)


def fragmented(text, parts):
    return item("Fragmented", boolean(text) + vec(blob(d) + option(None if p is None else blob(p)) for d, p in parts))


def roundtrip():
    t = "roundtrip"
    write(
        t,
        "rfc-messages",
        rt_input(
            [item("Text", blob("Hello")), item("Binary", blob(bytes(range(256)))), item("Ping", blob("Hello"))],
            close=option(u16(1000) + blob("bye")),
        ),
    )
    write(
        t,
        "fragments",
        rt_input(
            [
                item("Text", blob("Hello, world")),
                fragmented(True, [("Hel", "p1"), ("lo", None)]),
                item("Transfer"),
                item("Prepared", boolean(False) + blob(bytes(130))),
                item("Pong", blob("unsolicited")),
            ],
            fragment=0x03,
            deliver=True,
            chunk_max=4,
            seed=11,
            close=option(None),
        ),
    )
    write(
        t,
        "unicode-split",
        rt_input(
            [item("Text", blob("κόσμε €𝄞")), fragmented(True, [("κό", None), ("σμε", "x")])],
            fragment=0x01,
            chunk_max=1,
        ),
    )


def rpc_message():
    """JSON-RPC messages: the specification's section 7 examples and the
    shapes the server treats specially (heartbeat, subscriptions, batches,
    ids of every type)."""
    seeds = {
        "call": '{"jsonrpc": "2.0", "method": "add", "params": [42, 23], "id": 1}',
        "named": '{"jsonrpc":"2.0","method":"echo","params":{"a":[1,{"b":null}]},"id":"x"}',
        "notification": '{"jsonrpc": "2.0", "method": "log", "params": [1,2,3,4,5]}',
        "unknown": '{"jsonrpc": "2.0", "method": "foobar", "id": "1"}',
        "parse-error": '{"jsonrpc": "2.0", "method": "foobar, "params": "bar", "baz]',
        "invalid": '{"jsonrpc": "2.0", "method": 1, "params": "bar"}',
        "empty-batch": "[]",
        "invalid-batch": "[1,2,3]",
        "batch": '[{"jsonrpc":"2.0","method":"add","params":[1,2],"id":"1"},'
        '{"jsonrpc":"2.0","method":"log","params":[7]},{"foo":"boo"},'
        '{"jsonrpc":"2.0","method":"echo","id":null}]',
        "ping": '{"jsonrpc":"2.0","method":"rpc.ping","id":-1.5}',
        "subscribe": '{"jsonrpc":"2.0","method":"sub","id":3}',
        "unsubscribe": '{"jsonrpc":"2.0","method":"unsub","params":[12345],"id":4}',
        "ids": '{"jsonrpc":"2.0","method":"echo","params":[],"id":{"a":1}}',
        # Found by the fuzzer: an id no double can hold was echoed back.
        "id-out-of-range": '{"jss":[ 42, 23], "id": 333335e369633333333333333}',
        "escaped": '{"jsonrpc":"2.0","method":"\\u0061dd","params":[1,2],"id":"\\n"}',
    }
    for name, text in seeds.items():
        write("rpc_message", name, text.encode())


if __name__ == "__main__":
    rpc_message()
    frame_decoder()
    handshake_request()
    handshake_response()
    server_connection()
    roundtrip()
