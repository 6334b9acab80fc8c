#!/usr/bin/python3
"""Python websockets 10.4 echo server, compression on (its default), for
the uvws client tests in spec/deflate_spec.lua.

    py_server.py

Listens on 127.0.0.1 (a free port) and prints "listening on
ws://127.0.0.1:PORT/".  Every connection logs "open <offer> => <answer>"
and, at the end, "closed CODE REASON".  Messages are echoed, except:

    "stats"     answers {"bytesRead": N}: the bytes read from the TCP
                connection so far (the client compressed if N is small)
    "close-me"  closes with 4003 "python bye"

Exits by itself after 120 seconds.
"""
import asyncio
import json

import websockets
from websockets.legacy.server import WebSocketServerProtocol


class Counting(WebSocketServerProtocol):
    def data_received(self, data):
        self.bytes_read = getattr(self, "bytes_read", 0) + len(data)
        super().data_received(data)


async def handler(ws, path=None):
    print("open %s => %s" % (ws.request_headers.get("Sec-WebSocket-Extensions", "-"),
                             ws.response_headers.get("Sec-WebSocket-Extensions", "-")),
          flush=True)
    try:
        async for msg in ws:
            if msg == "stats":
                await ws.send(json.dumps({"bytesRead": ws.bytes_read}))
            elif msg == "close-me":
                await ws.close(4003, "python bye")
            else:
                await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    print("closed %s %s" % (ws.close_code, ws.close_reason), flush=True)


async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, create_protocol=Counting,
                                max_size=1 << 24) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening on ws://127.0.0.1:%d/" % port, flush=True)
        await asyncio.sleep(120)


if __name__ == "__main__":
    asyncio.run(main())
