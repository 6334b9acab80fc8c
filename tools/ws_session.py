"""A Python websockets client session for the sanitizer and valgrind runs.

Usage: python3 tools/ws_session.py URL [--shutdown]

Against an echo server (examples/echo_server.lua, tools/session_server.lua):
two sessions (permessage-deflate offered, then compression=None), each
with text, binary, multibyte text, 125/126/65536-byte and 1 MiB messages,
a fragmented message, pings with and without payload and a 1000 close;
then raw sockets for the error paths: a bad Sec-WebSocket-Key (400), a
plain GET, two GETs on one keep-alive connection, an unmasked frame (1002), invalid UTF-8 (1007), a peer that
vanishes mid-frame.  With --shutdown, a last session sends "__shutdown__"
(tools/session_server.lua then shuts down and exits).  Prints one line
per check and exits 0 when all passed.  Every wait is bounded.
"""

import asyncio
import base64
import os
import socket
import ssl
import struct
import sys
from urllib.parse import urlparse

import websockets

TIMEOUT = 30  # generous: the server may run under valgrind
failures = []


def check(name, ok, detail=""):
    print(("ok   " if ok else "FAIL ") + name + ("" if ok else "  " + str(detail)))
    if not ok:
        failures.append(name)


def ssl_ctx(url):
    if not url.startswith("wss:"):
        return None
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    return ctx


async def echo_session(url, compression):
    tag = "deflate" if compression else "plain"
    async with websockets.connect(url, compression="deflate" if compression else None,
                                  max_size=2 ** 24, open_timeout=TIMEOUT,
                                  close_timeout=TIMEOUT, ping_interval=None,
                                  ssl=ssl_ctx(url)) as ws:
        msgs = ["hello", bytes(range(256)), "κόσμε \U0001F600", "", b""]
        for n in (125, 126, 65536, 1 << 20):
            msgs.append("x" * n)
            msgs.append(bytes(i % 251 for i in range(n)))
        for m in msgs:
            await ws.send(m)
            got = await asyncio.wait_for(ws.recv(), TIMEOUT)
            check(f"{tag}: echo {type(m).__name__} {len(m)}",
                  got == m and type(got) is type(m), repr(got)[:60])
        await ws.send(iter(["frag", "mented ", "κόσ", "με"]))
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        check(f"{tag}: fragmented text", got == "fragmented κόσμε", got)
        for payload in (b"uvws-ping", b""):
            waiter = await ws.ping(payload)
            await asyncio.wait_for(waiter, TIMEOUT)
            check(f"{tag}: pong for ping {payload!r}", True)
        await ws.close(1000, "bye")
        check(f"{tag}: close 1000", ws.close_code == 1000, ws.close_code)


def raw_connect(url):
    u = urlparse(url)
    s = socket.create_connection((u.hostname, u.port), timeout=TIMEOUT)
    ctx = ssl_ctx(url)
    if ctx:
        s = ctx.wrap_socket(s, server_hostname=u.hostname)
    return s


def read_until_closed(s, limit=1 << 16):
    data = b""
    try:
        while len(data) < limit:
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionResetError, ssl.SSLError):
        pass
    return data


def upgrade(s, key=None):
    key = key or base64.b64encode(os.urandom(16)).decode()
    s.sendall(("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
               "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
               f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = s.recv(1)
        if not chunk:
            break
        head += chunk
    return head


def frame(opcode, payload, mask=True, fin=True):
    b1 = (0x80 if fin else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack("!BB", b1, (0x80 if mask else 0) | n)
    elif n < 65536:
        hdr = struct.pack("!BBH", b1, (0x80 if mask else 0) | 126, n)
    else:
        hdr = struct.pack("!BBQ", b1, (0x80 if mask else 0) | 127, n)
    if not mask:
        return hdr + payload
    key = os.urandom(4)
    return hdr + key + bytes(c ^ key[i % 4] for i, c in enumerate(payload))


def close_code_of(data):
    # the first server frame should be a close: 0x88 len code...
    if len(data) >= 4 and data[0] == 0x88:
        return struct.unpack("!H", data[2:4])[0]
    return None


def raw_checks(url):
    s = raw_connect(url)
    head = upgrade(s, key="dGVzdA==")
    check("raw: bad key gets 400", head.startswith(b"HTTP/1.1 400"), head[:40])
    s.close()

    s = raw_connect(url)
    s.sendall(b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
    data = read_until_closed(s)
    check("raw: plain GET answered", data.startswith(b"HTTP/1.1 "), data[:40])
    s.close()

    # Two requests on one keep-alive connection, then the client leaves.
    s = raw_connect(url)
    req = b"GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    got = b""
    for _ in range(2):
        s.sendall(req)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = s.recv(1)
            if not chunk:
                break
            head += chunk
        got += head[:12]
        n = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                n = int(line.split(b":")[1])
        while n > 0:
            chunk = s.recv(n)
            if not chunk:
                break
            n -= len(chunk)
    # A server without on_request answers 426 (and may close): then only
    # the first answer is required; with on_request, both must be 200.
    check("raw: two requests on one keep-alive connection",
          got == b"HTTP/1.1 200HTTP/1.1 200" or got.startswith(b"HTTP/1.1 426"), got)
    s.close()

    for name, payload, want in (
        ("unmasked frame gets 1002", frame(1, b"hi", mask=False), 1002),
        ("invalid UTF-8 gets 1007", frame(1, b"ok \xc3\x28 bad"), 1007),
        ("reserved opcode gets 1002", frame(3, b""), 1002),
    ):
        s = raw_connect(url)
        head = upgrade(s)
        s.sendall(payload)
        data = read_until_closed(s)
        check("raw: " + name, head.startswith(b"HTTP/1.1 101") and
              close_code_of(data) == want, (head[:20], data[:8]))
        s.close()

    # The peer vanishes in the middle of a frame and of a message.
    s = raw_connect(url)
    upgrade(s)
    s.sendall(frame(2, b"a" * 1000, fin=False) + frame(0, b"b" * 1000)[:500])
    s.close()
    # And in the middle of the request head.
    s = raw_connect(url)
    s.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgr")
    s.close()
    check("raw: abrupt disconnects sent", True)


async def shutdown(url):
    async with websockets.connect(url, open_timeout=TIMEOUT, close_timeout=TIMEOUT,
                                  ping_interval=None, ssl=ssl_ctx(url)) as ws:
        await ws.send("__shutdown__")
        try:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
        except websockets.exceptions.ConnectionClosed as exc:
            check("shutdown: server closed with 1001",
                  exc.rcvd is not None and exc.rcvd.code == 1001, exc)


async def main(url, stop):
    await echo_session(url, True)
    await echo_session(url, False)
    await asyncio.get_running_loop().run_in_executor(None, raw_checks, url)
    if stop:
        await shutdown(url)


if __name__ == "__main__":
    url = sys.argv[1]
    try:
        asyncio.run(asyncio.wait_for(main(url, "--shutdown" in sys.argv[2:]), 600))
    except Exception as exc:
        check("session", False, f"{type(exc).__name__}: {exc}")
    print(f"{'FAILED: ' + ', '.join(failures) if failures else 'all checks passed'}")
    sys.exit(1 if failures else 0)
