#!/usr/bin/env python3
"""Ask a running `wstest -m fuzzingserver` to write its reports.

client.sh uses this only as a fallback when our client crashed or did not
call /updateReports itself, so that the cases that did run still end up in
reports/client. Standard library only: opening handshake, wait for the
server's Close frame, answer it, done.

usage: update_reports.py ws://127.0.0.1:9002 AGENT
"""
import base64
import os
import socket
import struct
import sys
from urllib.parse import quote, urlsplit


def main():
    url, agent = sys.argv[1], sys.argv[2]
    u = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode()
    path = "/updateReports?agent=" + quote(agent)
    s = socket.create_connection((u.hostname, u.port), timeout=60)
    s.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n"
               % (path, u.hostname, u.port, key)).encode())
    buf = b""
    while b"\r\n\r\n" not in buf:
        chunk = s.recv(4096)
        if not chunk:
            sys.exit("update_reports: connection closed during handshake")
        buf += chunk
    head, _, buf = buf.partition(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        sys.exit("update_reports: handshake refused: %r" % head.split(b"\r\n")[0])
    # The server writes the reports, then sends a Close frame.
    while True:
        while len(buf) < 2:
            chunk = s.recv(4096)
            if not chunk:
                return
            buf += chunk
        op, n = buf[0] & 0x0F, buf[1] & 0x7F
        hdr = 2 + {126: 2, 127: 8}.get(n, 0)
        while len(buf) < hdr:
            buf += s.recv(4096)
        if n == 126:
            n = struct.unpack("!H", buf[2:4])[0]
        elif n == 127:
            n = struct.unpack("!Q", buf[2:10])[0]
        while len(buf) < hdr + n:
            buf += s.recv(4096)
        payload, buf = buf[hdr:hdr + n], buf[hdr + n:]
        if op == 8:
            mask = os.urandom(4)
            body = payload[:2]
            s.sendall(bytes([0x88, 0x80 | len(body)]) + mask
                      + bytes(b ^ mask[i % 4] for i, b in enumerate(body)))
            s.close()
            print("update_reports: reports written")
            return


if __name__ == "__main__":
    main()
