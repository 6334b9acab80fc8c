"""Python websockets client for spec/api_spec.lua.

Usage: /usr/bin/python3 api_client.py SCENARIO URL

Scenarios:
  rtt        sends "go" to a /ping endpoint and returns the server's
             "rtt ..." answer (the library answers the server's ping)
  keepalive  stays connected (idle) for 1.2 s against a server with a short
             ping_interval/pong_timeout, then checks an echo still works

Prints one JSON object on stdout.  Every wait is bounded.
"""

import asyncio
import json
import sys
import time

try:
    import websockets
    from websockets.exceptions import ConnectionClosed
except ImportError as exc:
    print(json.dumps({"ok": False, "import_error": str(exc)}))
    sys.exit(3)

TIMEOUT = 5


async def rtt(url):
    async with websockets.connect(url, ping_interval=None, compression=None,
                                  open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        await ws.send("go")
        answer = await asyncio.wait_for(ws.recv(), TIMEOUT)
        return {"ok": True, "answer": answer}


async def keepalive(url):
    async with websockets.connect(url, ping_interval=None, compression=None,
                                  open_timeout=TIMEOUT, close_timeout=TIMEOUT) as ws:
        t0 = time.monotonic()
        # Idle: the library keeps answering the server's pings meanwhile.
        await asyncio.sleep(1.2)
        try:
            await ws.send("still here")
            echo = await asyncio.wait_for(ws.recv(), TIMEOUT)
        except ConnectionClosed as exc:
            return {"ok": False, "closed": True, "code": exc.code,
                    "after": time.monotonic() - t0}
        return {"ok": echo == "still here", "echo": echo,
                "after": time.monotonic() - t0}


async def main():
    scenario, url = sys.argv[1], sys.argv[2]
    fn = {"rtt": rtt, "keepalive": keepalive}[scenario]
    try:
        res = await asyncio.wait_for(fn(url), 15)
    except Exception as exc:  # reported to the spec
        res = {"ok": False, "error": repr(exc)}
    print(json.dumps(res))


asyncio.run(main())
