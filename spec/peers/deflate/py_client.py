#!/usr/bin/python3
"""Python websockets 10.4 client for spec/deflate_spec.lua.

    py_client.py combos URL JSON   each combination of permessage-deflate
                                   offer parameters in JSON (a list of
                                   {"name", "snct", "cnct", "smwb", "cmwb",
                                   "sizes", "rounds"}): one connection,
                                   messages of every size echoed
    py_client.py interop URL       default settings (as most applications
                                   use it): messages echoed, then the
                                   close codes in both directions
    py_client.py publish URL N [snct]
                                   asks the server to publish N bytes on a
                                   topic and checks what arrives (snct:
                                   offering server_no_context_takeover)

Prints one JSON object per line.  "wire_rx" counts the bytes read from the
TCP connection, so that a spec can tell that the peer compressed.  Exits
by itself after 60 seconds.
"""
import asyncio
import json
import random
import sys

import websockets
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory
from websockets.legacy.client import WebSocketClientProtocol

WORDS = ("lorem ipsum dolor sit amet consectetur adipiscing elit sed do eiusmod "
         "tempor incididunt ut labore et dolore magna aliqua websocket deflate "
         "frame message window context takeover").split()


class Counting(WebSocketClientProtocol):
    wire_rx = 0

    def data_received(self, data):
        Counting.wire_rx += len(data)
        super().data_received(data)


def payloads(size, rnd):
    """Four messages of `size` bytes: two texts, two binaries."""
    words = []
    n = 0
    while n < size:
        w = rnd.choice(WORDS)
        words.append(w)
        n += len(w) + 1
    text = " ".join(words)[:size]
    utf8 = ("κόσμε 😀 " * (size // 8 + 1)).encode()[:size].decode("utf-8", "ignore")
    block = rnd.randbytes(max(1, min(size, 1500)))
    blocks = (block * (size // len(block) + 1))[:size]
    return [text, utf8, blocks, rnd.randbytes(size)]


def ext_header(ws):
    return ws.response_headers.get("Sec-WebSocket-Extensions")


async def exchange(ws, msgs):
    """Sends msgs while reading the echoes; returns (ok, bad)."""
    async def sender():
        for m in msgs:
            await ws.send(m)

    bad = []
    ok = 0

    async def receiver():
        nonlocal ok
        for i, m in enumerate(msgs):
            got = await ws.recv()
            if got == m:
                ok += 1
            elif len(bad) < 5:
                bad.append("message %d (%s, %d bytes): got %s of %d bytes" % (
                    i, type(m).__name__, len(m), type(got).__name__, len(got)))

    await asyncio.gather(sender(), receiver())
    return ok, bad


async def combos(url, spec):
    for c in spec:
        factory = ClientPerMessageDeflateFactory(
            server_no_context_takeover=c.get("snct", False),
            client_no_context_takeover=c.get("cnct", False),
            server_max_window_bits=c.get("smwb"),
            client_max_window_bits=c.get("cmwb", True),
        )
        rnd = random.Random(c["name"])
        msgs = []
        for _ in range(c.get("rounds", 1)):
            for size in c["sizes"]:
                msgs.extend(payloads(size, rnd))
        res = {"name": c["name"], "sent": len(msgs), "ok": 0,
               "payload": sum(len(m.encode() if isinstance(m, str) else m) for m in msgs)}
        Counting.wire_rx = 0
        try:
            async with websockets.connect(url, extensions=[factory], max_size=1 << 24,
                                          create_protocol=Counting, close_timeout=1) as ws:
                res["offer"] = ws.request_headers.get("Sec-WebSocket-Extensions")
                res["ext"] = ext_header(ws)
                res["ok"], res["bad"] = await asyncio.wait_for(exchange(ws, msgs), 10)
        except Exception as e:  # noqa: BLE001 - reported to the spec
            res["error"] = "%s: %s" % (type(e).__name__, e)
        res["wire_rx"] = Counting.wire_rx
        print(json.dumps(res), flush=True)


async def interop(url):
    rnd = random.Random(7)
    msgs = []
    for size in (0, 10, 100, 1000, 10000, 100000, 1000000):
        msgs.extend(payloads(size, rnd))
    res = {"sent": len(msgs),
           "payload": sum(len(m.encode() if isinstance(m, str) else m) for m in msgs)}
    Counting.wire_rx = 0
    try:
        async with websockets.connect(url, max_size=1 << 24, create_protocol=Counting) as ws:
            res["offer"] = ws.request_headers.get("Sec-WebSocket-Extensions")
            res["ext"] = ext_header(ws)
            res["ok"], res["bad"] = await exchange(ws, msgs)
            res["wire_rx"] = Counting.wire_rx
            # The server closes when asked.
            await ws.send("close-me")
            try:
                res["after_close_me"] = await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            await asyncio.wait_for(ws.wait_closed(), 5)
            res["server_close"] = [ws.close_code, ws.close_reason]
        # The client closes with a code of its own.
        async with websockets.connect(url, create_protocol=Counting) as ws:
            await ws.send("x" * 300)
            res["echo_after"] = await asyncio.wait_for(ws.recv(), 5) == "x" * 300
            await ws.close(4001, "python bye")
            res["client_close"] = [ws.close_code, ws.close_reason]
    except Exception as e:  # noqa: BLE001
        res["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(res), flush=True)


async def publish(url, n, snct):
    res = {}
    Counting.wire_rx = 0
    factory = ClientPerMessageDeflateFactory(server_no_context_takeover=snct)
    try:
        async with websockets.connect(url, create_protocol=Counting, extensions=[factory]) as ws:
            res["ext"] = ext_header(ws)
            assert await asyncio.wait_for(ws.recv(), 5) == "subscribed"
            before = Counting.wire_rx
            await ws.send("publish %d" % n)
            got = await asyncio.wait_for(ws.recv(), 5)
            res["ok"] = got == "p" * n
            res["len"] = len(got)
            res["wire_rx"] = Counting.wire_rx - before
            # A compressed echo still works on the same connection.
            await ws.send("e" * 5000)
            res["echo"] = await asyncio.wait_for(ws.recv(), 5) == "e" * 5000
    except Exception as e:  # noqa: BLE001
        res["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(res), flush=True)


def main():
    mode, url = sys.argv[1], sys.argv[2]
    if mode == "combos":
        coro = combos(url, json.loads(sys.argv[3]))
    elif mode == "interop":
        coro = interop(url)
    elif mode == "publish":
        coro = publish(url, int(sys.argv[3]), sys.argv[4:] == ["snct"])
    else:
        raise SystemExit("unknown mode " + mode)
    asyncio.run(asyncio.wait_for(coro, 60))


if __name__ == "__main__":
    main()
