"""Python websockets 10.4 server for the uvws client specs.

Usage: python3 client_python_server.py [--no-compression]

Listens on 127.0.0.1 (a free port), prints "listening on ws://127.0.0.1:PORT/"
and behaves according to the request path:

  /echo        echoes every message in kind
  /headers     sends the request path and headers as JSON, then echoes
  /fragments   sends a text message in three fragments and a binary one in
               two, then echoes
  /close       closes with 4001 "server says bye"
  /abort       drops the TCP connection without a close frame
  /ping        pings the client with "srv-ping", reports the pong, echoes
  /protocol    sends the selected subprotocol ("none" without one)

Subprotocols spoken: chat, superchat.  Each closed connection is logged on
stdout as "closed PATH CODE REASON", so the spec sees what the server got.
The process exits by itself after 120 seconds.
"""

import asyncio
import json
import sys

import websockets


async def echo(ws):
    async for msg in ws:
        await ws.send(msg)


async def handler(ws, path):
    route = path.split("?")[0]
    try:
        if route == "/headers":
            await ws.send(json.dumps({"path": path,
                                      "headers": {k.lower(): v for k, v in ws.request_headers.raw_items()}}))
        elif route == "/fragments":
            await ws.send(iter(["frag-", "ment", "ed"]))
            await ws.send(iter([b"\x01\x02", b"\x03"]))
        elif route == "/close":
            await ws.close(4001, "server says bye")
        elif route == "/abort":
            ws.transport.abort()
        elif route == "/ping":
            waiter = await ws.ping(b"srv-ping")
            try:
                await asyncio.wait_for(waiter, 5)
                await ws.send("pong received")
            except asyncio.TimeoutError:
                await ws.send("no pong")
        elif route == "/protocol":
            await ws.send(ws.subprotocol or "none")
        await echo(ws)
    except websockets.exceptions.ConnectionClosed:
        pass
    finally:
        print(f"closed {path} {ws.close_code} {ws.close_reason}", flush=True)


async def main():
    compression = None if "--no-compression" in sys.argv else "deflate"
    async with websockets.serve(handler, "127.0.0.1", 0, compression=compression,
                                subprotocols=["chat", "superchat"], max_size=2 ** 24,
                                ping_interval=None, close_timeout=5) as server:
        port = server.sockets[0].getsockname()[1]
        print(f"listening on ws://127.0.0.1:{port}/", flush=True)
        await asyncio.sleep(120)


if __name__ == "__main__":
    asyncio.run(main())
