#!/usr/bin/python3
"""A hand-written WebSocket server for the uvws client's permessage-deflate
specs (spec/deflate_spec.lua): it answers whatever it is told to, valid or
not, and sends chosen frames.

    raw_server.py

Listens on 127.0.0.1 (a free port) and prints "listening on
ws://127.0.0.1:PORT/".  The request target says what to do:

    /?ext=VALUE      answer 101 with Sec-WebSocket-Extensions: VALUE
                     (percent-encoded; absent: no such header)
    &cw=BITS         inflate the client's compressed messages (strictly)
                     with this window (default 15) and echo them
                     uncompressed; an error closes with 1007
    &send=WHAT       then send one frame:
                       z        "hello compressed" compressed (RSV1),
                                window 15
                       z9       the same with the server window 9
                       plain    "hello plain" with RSV1 clear
                       rsv1     an uncompressed "hello" with RSV1 set
                       bomb     100 MiB of zeros compressed (RSV1)
                       corrupt  the bytes ff ff ff ff with RSV1
                       big      BIG (300,000 bytes, byte i = i mod 251)
                                uncompressed, in the same write as the
                                101 response
                       zbig     BIG compressed (RSV1), in the same write
                                as the 101 response
    &wait=1          wait for a message from the client before sending

Each connection logs "offer <client offer or ->", then "close CODE" for
the close frame the client sent (or "close none").  Exits by itself after
120 seconds.
"""
import asyncio
import base64
import hashlib
import struct
import urllib.parse
import zlib

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BIG = bytes(i % 251 for i in range(300000))
_bomb = None


def compress(data, wbits=15):
    c = zlib.compressobj(9, zlib.DEFLATED, -wbits, 9)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def bomb():
    global _bomb
    if _bomb is None:
        c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
        chunk = bytes(1 << 20)
        parts = [c.compress(chunk) for _ in range(100)]
        parts.append(c.flush(zlib.Z_SYNC_FLUSH))
        _bomb = b"".join(parts)[:-4]
    return _bomb


def strict_inflate(d, data):
    """At most 256 bytes of output per zlib call: a distance beyond the
    window is always caught."""
    out, buf = [], data + b"\x00\x00\xff\xff"
    while True:
        chunk = d.decompress(buf, 256)
        out.append(chunk)
        buf = d.unconsumed_tail
        if not chunk and not buf:
            return b"".join(out)


def frame(payload, opcode=1, rsv1=False):
    b1 = 0x80 | (0x40 if rsv1 else 0) | opcode
    n = len(payload)
    if n < 126:
        hdr = struct.pack(">BB", b1, n)
    elif n < 65536:
        hdr = struct.pack(">BBH", b1, 126, n)
    else:
        hdr = struct.pack(">BBQ", b1, 127, n)
    return hdr + payload


async def read_frame(reader):
    h = await reader.readexactly(2)
    n = h[1] & 0x7F
    if n == 126:
        (n,) = struct.unpack(">H", await reader.readexactly(2))
    elif n == 127:
        (n,) = struct.unpack(">Q", await reader.readexactly(8))
    key = await reader.readexactly(4) if h[1] & 0x80 else b"\0\0\0\0"
    data = bytearray(await reader.readexactly(n))
    for i in range(n):
        data[i] ^= key[i % 4]
    return h[0] & 0x0F, bool(h[0] & 0x40), bytes(data)


async def handle(reader, writer):
    close = "none"
    try:
        head = (await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 5)).decode("latin-1")
        lines = head.split("\r\n")
        target = lines[0].split(" ")[1]
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                headers[k.strip().lower()] = v.strip()
        print("offer %s" % headers.get("sec-websocket-extensions", "-"), flush=True)
        q = urllib.parse.parse_qs(urllib.parse.urlsplit(target).query)
        accept = base64.b64encode(hashlib.sha1(
            (headers["sec-websocket-key"] + GUID).encode()).digest()).decode()
        resp = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n" % accept)
        if "ext" in q:
            resp += "Sec-WebSocket-Extensions: %s\r\n" % q["ext"][0]
        head = (resp + "\r\n").encode()
        send = q.get("send", [""])[0]
        if send == "big":
            writer.write(head + frame(BIG, opcode=2))
        elif send == "zbig":
            writer.write(head + frame(compress(BIG), opcode=2, rsv1=True))
        else:
            writer.write(head)
        if "wait" in q:
            await asyncio.wait_for(read_frame(reader), 10)
        inflater = zlib.decompressobj(-int(q.get("cw", ["15"])[0]))
        if send == "z":
            writer.write(frame(compress(b"hello compressed"), rsv1=True))
        elif send == "z9":
            writer.write(frame(compress(b"hello compressed", 9), rsv1=True))
        elif send == "plain":
            writer.write(frame(b"hello plain"))
        elif send == "rsv1":
            writer.write(frame(b"hello", rsv1=True))
        elif send == "bomb":
            writer.write(frame(bomb(), opcode=2, rsv1=True))
        elif send == "corrupt":
            writer.write(frame(b"\xff\xff\xff\xff", opcode=2, rsv1=True))
        await writer.drain()
        for _ in range(100):
            op, rsv1, data = await asyncio.wait_for(read_frame(reader), 10)
            if op == 8:
                close = str(struct.unpack(">H", data[:2])[0]) if len(data) >= 2 else "empty"
                writer.write(frame(data[:2], opcode=8))
                await writer.drain()
                break
            if op in (1, 2):  # echo, uncompressed (unfragmented messages only)
                if rsv1:
                    try:
                        data = strict_inflate(inflater, data)
                    except zlib.error as e:
                        print("inflate error %s" % e, flush=True)
                        writer.write(frame(struct.pack(">H", 1007), opcode=8))
                        await writer.drain()
                        continue
                writer.write(frame(data, opcode=op))
                await writer.drain()
    except Exception:  # noqa: BLE001 - the client hung up
        pass
    print("close %s" % close, flush=True)
    writer.close()


async def main():
    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    bomb()
    print("listening on ws://127.0.0.1:%d/" % port, flush=True)
    await asyncio.sleep(120)


if __name__ == "__main__":
    asyncio.run(main())
