#!/usr/bin/python3
"""A Python `websockets` (10.4) wss client for spec/tls_spec.lua.

    tls_client.py URL SCENARIO [--ca FILE] [--cert FILE --key FILE]
                  [--tls 1.2|1.3] [--server-hostname NAME]

Scenarios:
  echo          text, binary, empty and 1 MiB messages must come back as
                sent; then the client closes with 4001 "py bye".
  server-close  sends "close:4002"; the server is expected to close with 4002.
  connect       only the handshake, then close 1000.

Prints one JSON line: {"ok": bool, "error": str, "version", "cipher",
"alpn", "peer_subject", "results": [...], "close_code", "close_reason"}.
Every wait is bounded.
"""
import argparse
import asyncio
import json
import ssl
import sys

import websockets


def context(args):
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.set_alpn_protocols(["http/1.1"])
    if args.ca:
        ctx.load_verify_locations(args.ca)
    if args.cert:
        ctx.load_cert_chain(args.cert, args.key)
    if args.tls == "1.2":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.maximum_version = ssl.TLSVersion.TLSv1_2
    elif args.tls == "1.3":
        ctx.minimum_version = ssl.TLSVersion.TLSv1_3
        ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    return ctx


def subject_cn(cert):
    for rdn in (cert or {}).get("subject", ()):
        for k, v in rdn:
            if k == "commonName":
                return v
    return None


async def run(args, out):
    kw = {}
    if args.server_hostname:
        kw["server_hostname"] = args.server_hostname
    async with websockets.connect(args.url, ssl=context(args), max_size=None,
                                  compression=None, open_timeout=5,
                                  close_timeout=5, **kw) as ws:
        so = ws.transport.get_extra_info("ssl_object")
        out["version"] = so.version()
        out["cipher"] = so.cipher()[0]
        out["alpn"] = so.selected_alpn_protocol()
        out["peer_subject"] = subject_cn(so.getpeercert())
        results = out["results"] = []
        if args.scenario == "echo":
            msgs = ["héllo wss", b"\x00\x01\x02\xff" * 64, "", b"",
                    bytes(range(256)) * 4096]
            for m in msgs:
                await ws.send(m)
                got = await asyncio.wait_for(ws.recv(), 5)
                results.append({"type": type(m).__name__, "len": len(m),
                                "same": got == m})
            await ws.close(4001, "py bye")
        elif args.scenario == "server-close":
            await ws.send("close:4002")
            try:
                await asyncio.wait_for(ws.recv(), 5)
            except websockets.ConnectionClosed:
                pass
            await asyncio.wait_for(ws.wait_closed(), 5)
        else:
            await ws.close(1000)
        out["close_code"] = ws.close_code
        out["close_reason"] = ws.close_reason
        out["ok"] = all(r["same"] for r in results)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("url")
    p.add_argument("scenario")
    p.add_argument("--ca")
    p.add_argument("--cert")
    p.add_argument("--key")
    p.add_argument("--tls")
    p.add_argument("--server-hostname")
    args = p.parse_args()
    out = {"ok": False}
    try:
        asyncio.run(asyncio.wait_for(run(args, out), 20))
    except Exception as e:  # reported, not raised: the spec checks it
        out["ok"] = False
        out["error"] = "%s: %s" % (type(e).__name__, e)
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
