"""A deliberately broken WebSocket server for the client specs.

Usage: python3 client_raw_server.py

Listens on 127.0.0.1 (a free port), prints "listening on ws://127.0.0.1:PORT/"
and answers each upgrade request according to its path:

  /ok            a correct 101, then echoes nothing and holds the connection
  /200           200 OK with an HTML body (a plain HTTP server)
  /426           426 Upgrade Required
  /no-upgrade    101 without an Upgrade header
  /no-connection 101 without a Connection header
  /bad-accept    101 with a Sec-WebSocket-Accept computed from another key
  /bad-protocol  101 selecting the subprotocol "unoffered"
  /bad-extension 101 selecting x-unoffered-ext (never offered)
  /silent        reads the request and never answers
  /hang-up       closes the TCP connection without answering
  /redirect?n=N&to=URL   302 to /redirect?n=N-1&to=URL, and to URL when N=0

Each connection is served in its own thread; every wait is bounded, and the
process exits by itself after 120 seconds.
"""

import base64
import hashlib
import socketserver
import threading
import urllib.parse

GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def accept_for(key):
    return base64.b64encode(hashlib.sha1((key + GUID).encode()).digest()).decode()


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            return None
        data += chunk
        if len(data) > 65536:
            return None
    return data.split(b"\r\n\r\n", 1)[0].decode("latin-1")


def upgrade_head(key, drop=(), extra=(), accept=None):
    lines = ["HTTP/1.1 101 Switching Protocols"]
    if "upgrade" not in drop:
        lines.append("Upgrade: websocket")
    if "connection" not in drop:
        lines.append("Connection: Upgrade")
    lines.append("Sec-WebSocket-Accept: " + (accept or accept_for(key)))
    lines.extend(extra)
    return "\r\n".join(lines) + "\r\n\r\n"


def plain(status, body, extra=()):
    lines = [f"HTTP/1.1 {status}", "Content-Type: text/html; charset=utf-8",
             f"Content-Length: {len(body)}", "Connection: close"]
    lines.extend(extra)
    return "\r\n".join(lines) + "\r\n\r\n" + body


class Handler(socketserver.BaseRequestHandler):
    def handle(self):
        sock = self.request
        sock.settimeout(30)
        try:
            head = read_head(sock)
        except OSError:
            return
        if head is None:
            return
        target = head.split("\r\n", 1)[0].split(" ")[1]
        headers = {}
        for line in head.split("\r\n")[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        key = headers.get("sec-websocket-key", "")
        url = urllib.parse.urlsplit(target)
        path = url.path
        query = urllib.parse.parse_qs(url.query)
        hold = True
        if path == "/ok":
            out = upgrade_head(key)
        elif path == "/200":
            out, hold = plain("200 OK", "<html><body>hello</body></html>\n"), False
        elif path == "/426":
            out, hold = plain("426 Upgrade Required", "upgrade to websocket\n",
                              ["Upgrade: websocket", "Sec-WebSocket-Version: 13"]), False
        elif path == "/no-upgrade":
            out = upgrade_head(key, drop=("upgrade",))
        elif path == "/no-connection":
            out = upgrade_head(key, drop=("connection",))
        elif path == "/bad-accept":
            out = upgrade_head(key, accept=accept_for("dGhlIHNhbXBsZSBub25jZQ=="))
        elif path == "/bad-protocol":
            out = upgrade_head(key, extra=["Sec-WebSocket-Protocol: unoffered"])
        elif path == "/bad-extension":
            out = upgrade_head(key, extra=["Sec-WebSocket-Extensions: x-unoffered-ext"])
        elif path == "/silent":
            out = None
        elif path == "/hang-up":
            return
        elif path == "/redirect":
            n = int(query.get("n", ["0"])[0])
            to = query.get("to", [""])[0]
            if n > 0:
                loc = "/redirect?" + urllib.parse.urlencode({"n": n - 1, "to": to})
            else:
                loc = to
            out, hold = plain("302 Found", "", ["Location: " + loc]), False
        else:
            out, hold = plain("404 Not Found", "no such test path\n"), False
        try:
            if out is not None:
                sock.sendall(out.encode("latin-1"))
            if hold:
                # Hold the connection until the client goes away.
                while sock.recv(4096):
                    pass
        except OSError:
            pass


class Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True


def main():
    srv = Server(("127.0.0.1", 0), Handler)
    port = srv.server_address[1]
    timer = threading.Timer(120, srv.shutdown)
    timer.daemon = True
    timer.start()
    print(f"listening on ws://127.0.0.1:{port}/", flush=True)
    try:
        srv.serve_forever(poll_interval=0.1)
    finally:
        srv.server_close()


if __name__ == "__main__":
    main()
