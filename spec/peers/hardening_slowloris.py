#!/usr/bin/python3
"""Slowloris peer for spec/hardening_spec.lua.

    hardening_slowloris.py PORT N INTERVAL LIMIT

Opens N TCP connections to 127.0.0.1:PORT, prints "READY <n> <secs>" (how
many connected, how long that took), then sends each one's WebSocket
upgrade request head one byte every INTERVAL seconds, never finishing it
(the head is longer than LIMIT / INTERVAL bytes).  It watches every socket
for the server closing it (EOF or reset) and, when all are closed or LIMIT
seconds have passed, prints one JSON line:

    {"n": N, "opened": n, "closed": n, "min_age": s, "max_age": s,
     "p50_age": s, "bytes_sent_max": n, "answers": {"<first line>": count},
     "resets": n, "errors": [...]}

where an age is the time from a connection's connect() to the moment its
close was seen.  Loopback only; every wait is bounded by LIMIT.
"""
import json
import resource
import selectors
import socket
import sys
import time


def main():
    port, n, interval, limit = (int(sys.argv[1]), int(sys.argv[2]),
                                float(sys.argv[3]), float(sys.argv[4]))
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, n + 64, 4096))
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))

    head = ("GET /slow HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\n"
            "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            "Sec-WebSocket-Version: 13\r\nX-Padding: %s\r\n\r\n"
            % (port, "p" * 200)).encode()
    sel = selectors.DefaultSelector()
    conns = {}
    errors = []
    t_start = time.monotonic()
    for i in range(n):
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        s.settimeout(5)
        try:
            s.connect(("127.0.0.1", port))
        except OSError as e:
            errors.append("connect %d: %s" % (i, e))
            s.close()
            continue
        s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        s.setblocking(False)
        c = {"sock": s, "t0": time.monotonic(), "sent": 0, "closed_at": None,
             "answer": b"", "reset": False}
        conns[s.fileno()] = c
        sel.register(s, selectors.EVENT_READ, c)
    opened = len(conns)
    print("READY %d %.3f" % (opened, time.monotonic() - t_start), flush=True)

    deadline = time.monotonic() + limit
    next_send = time.monotonic()
    open_count = opened
    while open_count > 0 and time.monotonic() < deadline:
        now = time.monotonic()
        if now >= next_send:
            for c in conns.values():
                if c["closed_at"] is None and c["sent"] < len(head):
                    try:
                        c["sock"].send(head[c["sent"]:c["sent"] + 1])
                        c["sent"] += 1
                    except BlockingIOError:
                        pass
                    except OSError:
                        pass  # the read side notices the close
            next_send = now + interval
        wait = max(0.0, min(next_send, deadline) - time.monotonic())
        for key, _ in sel.select(timeout=wait):
            c = key.data
            try:
                data = c["sock"].recv(4096)
            except BlockingIOError:
                continue
            except OSError:
                data = b""
                c["reset"] = True
            if data:
                c["answer"] += data[:200]
                continue
            c["closed_at"] = time.monotonic()
            sel.unregister(c["sock"])
            c["sock"].close()
            open_count -= 1

    ages = sorted(c["closed_at"] - c["t0"] for c in conns.values()
                  if c["closed_at"] is not None)
    answers = {}
    for c in conns.values():
        if c["answer"]:
            line = c["answer"].split(b"\r\n", 1)[0].decode("latin-1")
            answers[line] = answers.get(line, 0) + 1
    for c in conns.values():
        if c["closed_at"] is None:
            c["sock"].close()
    print(json.dumps({
        "n": n, "opened": opened, "closed": len(ages),
        "min_age": ages[0] if ages else None,
        "max_age": ages[-1] if ages else None,
        "p50_age": ages[len(ages) // 2] if ages else None,
        "bytes_sent_max": max([c["sent"] for c in conns.values()] or [0]),
        "answers": answers,
        "resets": sum(1 for c in conns.values() if c["reset"]),
        "errors": errors[:5],
    }), flush=True)


if __name__ == "__main__":
    main()
