"""Python websockets client that checks an echo server (spec/cli_spec.lua).

Usage: python3 client_echo_check.py URL [SUBPROTOCOL]

Sends a text, a binary and an empty message, reads the echoes, closes with
1000 and prints one JSON object: {"ok": bool, "echoes": [...], "subprotocol"}.
Every wait is bounded.
"""

import asyncio
import json
import sys

import websockets


async def main(url, protocol):
    out = {"ok": False, "echoes": []}
    async with websockets.connect(url, open_timeout=5, close_timeout=5,
                                  subprotocols=[protocol] if protocol else None,
                                  ping_interval=None) as ws:
        out["subprotocol"] = ws.subprotocol
        sent = ["hello from python", b"\x00\x01\x02", ""]
        for msg in sent:
            await ws.send(msg)
            echo = await asyncio.wait_for(ws.recv(), 5)
            out["echoes"].append(echo if isinstance(echo, str) else "bytes:" + echo.hex())
        out["ok"] = out["echoes"] == ["hello from python", "bytes:000102", ""]
        await ws.close(1000, "done")
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2] if len(sys.argv) > 2 else None))
