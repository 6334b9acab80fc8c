#!/usr/bin/python3
"""A Python `websockets` (10.4) wss server for spec/tls_spec.lua.

    tls_server.py CERT KEY

Listens on 127.0.0.1 on a free port and prints
"listening on wss://127.0.0.1:PORT/".  Per connection: sends
"hello from python", then echoes every message, except:
  "close:CODE"   closes with CODE and reason "py server bye".
When the client closes, a line "closed CODE REASON" is printed (the code
the client sent).  Exits after 30 s at most.
"""
import asyncio
import ssl
import sys

import websockets


async def handler(ws, path=None):
    await ws.send("hello from python")
    try:
        async for msg in ws:
            if isinstance(msg, str) and msg.startswith("close:"):
                await ws.close(int(msg[6:]), "py server bye")
                break
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    await ws.wait_closed()
    print("closed %s %s" % (ws.close_code, ws.close_reason))
    sys.stdout.flush()


async def main():
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(sys.argv[1], sys.argv[2])
    async with websockets.serve(handler, "127.0.0.1", 0, ssl=ctx,
                                max_size=None, compression=None) as server:
        port = server.sockets[0].getsockname()[1]
        print("listening on wss://127.0.0.1:%d/" % port)
        sys.stdout.flush()
        await asyncio.sleep(30)


if __name__ == "__main__":
    asyncio.run(main())
