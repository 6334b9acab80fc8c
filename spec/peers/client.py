"""Python websockets client used by spec/interop_python_spec.lua.

Usage: python3 client.py SCENARIO URL [--no-compression]

Runs one scenario against a uvws server and prints one JSON object on
stdout: {"ok": bool, ...details}.  Every network wait is bounded.
"""

import asyncio
import json
import sys

try:
    import websockets
    from websockets.exceptions import ConnectionClosed
except ImportError as exc:  # reported to the spec, which skips
    print(json.dumps({"ok": False, "import_error": str(exc)}))
    sys.exit(3)

TIMEOUT = 5


def describe(data):
    kind = "text" if isinstance(data, str) else "binary"
    return {"kind": kind, "len": len(data)}


def connect(url, compression):
    return websockets.connect(
        url,
        compression="deflate" if compression else None,
        max_size=2 ** 24,
        open_timeout=TIMEOUT,
        close_timeout=TIMEOUT,
        ping_interval=None,
    )


async def echo(ws):
    """Sends messages of several kinds and sizes; checks each echo."""
    messages = [
        ("text", "hello"),
        ("binary", bytes(range(256))),
        ("empty text", ""),
        ("empty binary", b""),
        ("multibyte text", "κόσμε \U0001F600"),
    ]
    for n in (125, 126, 65535, 65536, 1 << 20):
        messages.append((f"text {n}", "x" * n))
        messages.append((f"binary {n}", bytes(i % 251 for i in range(n))))
    results = []
    for name, msg in messages:
        await ws.send(msg)
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        results.append({"name": name, "ok": got == msg and type(got) is type(msg),
                        "sent": describe(msg), "got": describe(got)})
    await ws.close(1000)
    return {"ok": all(r["ok"] for r in results), "results": results,
            "close_code": ws.close_code}


async def fragmented(ws):
    """Sends fragmented text and binary messages (websockets fragments a
    message given as an iterable); each comes back whole."""
    results = []
    cases = [
        ("text", ["frag", "mented ", "κόσ", "με"]),
        ("binary", [b"\x00\x01", b"", b"\x02\x03\x04"]),
        ("large text", ["y" * 70000, "z" * 70000]),
    ]
    for name, parts in cases:
        await ws.send(iter(parts))
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        want = "".join(parts) if isinstance(parts[0], str) else b"".join(parts)
        results.append({"name": name, "ok": got == want and type(got) is type(want),
                        "got": describe(got), "want": describe(want)})
    await ws.close(1000)
    return {"ok": all(r["ok"] for r in results), "results": results}


async def ping(ws):
    """Pings with a payload and waits for the matching pong."""
    waiter = await ws.ping(b"uvws-ping")
    await asyncio.wait_for(waiter, TIMEOUT)
    empty = await ws.ping()
    await asyncio.wait_for(empty, TIMEOUT)
    await ws.send("after ping")
    got = await asyncio.wait_for(ws.recv(), TIMEOUT)
    await ws.close(1000)
    return {"ok": got == "after ping", "pongs": 2, "echo": got}


def close_with(code, reason):
    async def run(ws):
        await ws.send("before close")
        got = await asyncio.wait_for(ws.recv(), TIMEOUT)
        await ws.close(code, reason)
        return {"ok": got == "before close", "close_code": ws.close_code,
                "close_reason": ws.close_reason}
    return run


async def server_close(ws):
    """The server closes; report the code and reason received."""
    try:
        msg = await asyncio.wait_for(ws.recv(), TIMEOUT)
        return {"ok": False, "unexpected": describe(msg)}
    except ConnectionClosed as exc:
        rcvd = exc.rcvd
        await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
        return {"ok": rcvd is not None,
                "close_code": rcvd.code if rcvd else None,
                "close_reason": rcvd.reason if rcvd else None}


SCENARIOS = {
    "echo": echo,
    "fragmented": fragmented,
    "ping": ping,
    "close_1000": close_with(1000, ""),
    "close_4000": close_with(4000, "custom reason"),
    "server_close": server_close,
}


async def main():
    scenario, url = sys.argv[1], sys.argv[2]
    compression = "--no-compression" not in sys.argv[3:]
    async with connect(url, compression) as ws:
        result = await SCENARIOS[scenario](ws)
        result["extensions"] = [type(e).__name__ for e in ws.extensions]
        return result


if __name__ == "__main__":
    try:
        out = asyncio.run(asyncio.wait_for(main(), 30))
    except Exception as exc:  # reported as a failure with its type
        out = {"ok": False, "error": type(exc).__name__, "message": str(exc)}
    print(json.dumps(out))
