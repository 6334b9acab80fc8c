#!/usr/bin/python3
"""Raw DEFLATE codec for spec/deflate_spec.lua (Lua cannot call zlib).

Reads records from stdin, each an operation and its data:

    u16 big-endian length, operation (ASCII)
    u32 big-endian length, data

and writes one answer per record to stdout:

    u8 status (0 ok, 1 error), u32 big-endian length, data (or the error)

Operations (ID names a stream kept for the whole run, so that a sequence
of messages can share one compressor or decompressor: context takeover):

    c ID WBITS [LEVEL]  compress a message as RFC 7692 7.2.1 says: raw
                        deflate, Z_SYNC_FLUSH, trailing 00 00 ff ff removed
    d ID WBITS          inflate a message (the 00 00 ff ff tail appended),
                        strictly: at most 256 bytes of output per zlib call,
                        so a distance beyond the 2^WBITS window is always
                        caught by zlib ("invalid distance too far back")
                        instead of being resolved in the output buffer
    f WBITS             compress with Z_FINISH: one stream ending in a block
                        with BFINAL set, nothing removed
    z WBITS N           compress the data after its first N bytes with those
                        N bytes as the preset dictionary (zdict): what a peer
                        with context takeover sends after a message of them
    zeros N             one message of N zero bytes compressed at level 9
                        with window 15 (a decompression bomb)
"""
import struct
import sys
import zlib

TAIL = b"\x00\x00\xff\xff"


def read_exact(f, n):
    b = f.read(n)
    if len(b) != n:
        raise EOFError
    return b


def strict_inflate(d, data):
    out = []
    buf = data + TAIL
    while True:
        chunk = d.decompress(buf, 256)
        out.append(chunk)
        buf = d.unconsumed_tail
        if not chunk and not buf:
            break
    return b"".join(out)


def main():
    inp, outp = sys.stdin.buffer, sys.stdout.buffer
    comps, decomps = {}, {}
    while True:
        try:
            (n,) = struct.unpack(">H", read_exact(inp, 2))
        except EOFError:
            break
        op = read_exact(inp, n).decode().split()
        (n,) = struct.unpack(">I", read_exact(inp, 4))
        data = read_exact(inp, n)
        try:
            if op[0] == "c":
                level = int(op[3]) if len(op) > 3 else 6
                c = comps.get(op[1])
                if c is None:
                    c = comps[op[1]] = zlib.compressobj(level, zlib.DEFLATED, -int(op[2]), 8)
                res = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
                assert res.endswith(TAIL)
                res = res[:-4]
            elif op[0] == "d":
                d = decomps.get(op[1])
                if d is None:
                    d = decomps[op[1]] = zlib.decompressobj(-int(op[2]))
                res = strict_inflate(d, data)
            elif op[0] == "f":
                c = zlib.compressobj(6, zlib.DEFLATED, -int(op[1]), 8)
                res = c.compress(data) + c.flush()
            elif op[0] == "z":
                n = int(op[2])
                c = zlib.compressobj(6, zlib.DEFLATED, -int(op[1]), 8, zdict=data[:n])
                res = c.compress(data[n:]) + c.flush(zlib.Z_SYNC_FLUSH)
                assert res.endswith(TAIL)
                res = res[:-4]
            elif op[0] == "zeros":
                c = zlib.compressobj(9, zlib.DEFLATED, -15, 9)
                chunk = bytes(1 << 20)
                parts = [c.compress(chunk) for _ in range(int(op[1]) >> 20)]
                parts.append(c.flush(zlib.Z_SYNC_FLUSH))
                res = b"".join(parts)[:-4]
            else:
                raise ValueError("unknown operation " + op[0])
            outp.write(b"\x00" + struct.pack(">I", len(res)) + res)
        except Exception as e:  # noqa: BLE001 - reported to the spec
            msg = ("%s: %s" % (type(e).__name__, e)).encode()
            outp.write(b"\x01" + struct.pack(">I", len(msg)) + msg)
    outp.flush()


if __name__ == "__main__":
    main()
