// Node `ws` 8 client with perMessageDeflate: true, for spec/deflate_spec.lua.
//
// Usage: node node_client.js URL
//
// Connects to an echo server, sends texts and binaries of several sizes
// (node compresses those of 1024 bytes and more: its default threshold),
// checks every echo, then asks the server to close ("close-me") and
// reports the code; a second connection closes from the client with 4005.
// Prints one JSON line: {offer, ext, sent, ok, bad, wireRx, payload,
// serverClose, clientClose} or {error}.  Exits by itself after 30 seconds.
'use strict';

const crypto = require('crypto');
const WebSocket = require('ws');

const url = process.argv[2];
const res = { sent: 0, ok: 0, bad: [], payload: 0 };
setTimeout(() => { res.error = 'timeout'; done(); }, 30000).unref();

function done() {
  console.log(JSON.stringify(res));
  process.exit(0);
}

function messages() {
  const out = [];
  for (const size of [0, 10, 100, 1000, 5000, 50000, 500000]) {
    const text = 'node ws says hello to uvws; κόσμε. '.repeat(size / 10 + 1).slice(0, size);
    const block = crypto.randomBytes(Math.max(1, Math.min(size, 1500)));
    const bin = Buffer.alloc(size);
    for (let i = 0; i < size; i += block.length) block.copy(bin, i);
    out.push({ data: text, binary: false }, { data: bin, binary: true },
             { data: crypto.randomBytes(size), binary: true });
  }
  return out;
}

function connect() {
  const ws = new WebSocket(url, { perMessageDeflate: true, maxPayload: 16 * 1024 * 1024 });
  ws.on('error', (e) => { res.error = String(e); done(); });
  return ws;
}

const ws = connect();
// The request is still there right after the constructor.
res.offer = (ws._req && ws._req.getHeader('sec-websocket-extensions')) || null;
ws.on('upgrade', (r) => {
  res.ext = r.headers['sec-websocket-extensions'] || null;
});
ws.on('open', () => {
  const msgs = messages();
  let next = 0;
  for (const m of msgs) {
    ws.send(m.data, { binary: m.binary });
    res.sent++;
    res.payload += Buffer.byteLength(m.data);
  }
  ws.on('message', (data, isBinary) => {
    const m = msgs[next++];
    if (!m) return;
    const want = Buffer.isBuffer(m.data) ? m.data : Buffer.from(m.data);
    if (isBinary === m.binary && Buffer.compare(data, want) === 0) res.ok++;
    else if (res.bad.length < 5) res.bad.push(`message ${next - 1}: ${data.length} bytes, binary ${isBinary}`);
    if (next === msgs.length) {
      res.wireRx = ws._socket.bytesRead;
      ws.send('close-me');
    }
  });
  ws.on('close', (code, reason) => {
    res.serverClose = [code, reason.toString()];
    const ws2 = connect();
    ws2.on('open', () => ws2.close(4005, 'node client bye'));
    ws2.on('close', (c2, r2) => { res.clientClose = [c2, r2.toString()]; done(); });
  });
});
