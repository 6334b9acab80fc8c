// Node `ws` 8 server for the uvws client specs (spec/client_spec.lua).
//
// Usage: node server.js
//
// Listens on 127.0.0.1 (a free port), prints "listening on ws://127.0.0.1:PORT/"
// and behaves according to the request path, like
// spec/peers/client_python_server.py: /echo, /headers, /fragments, /close,
// /abort, /ping, /protocol.  Subprotocols spoken: chat, superchat.  Each
// closed connection is logged as "closed PATH CODE REASON".  Exits by itself
// after 120 seconds.
'use strict';

const { WebSocketServer } = require('ws');

const SPOKEN = ['chat', 'superchat'];

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate: false,
  maxPayload: 16 * 1024 * 1024,
  handleProtocols: (protocols) => {
    for (const p of protocols) if (SPOKEN.includes(p)) return p;
    return false;
  },
});

wss.on('listening', () => {
  console.log(`listening on ws://127.0.0.1:${wss.address().port}/`);
});

wss.on('connection', (ws, req) => {
  const path = req.url;
  ws.on('close', (code, reason) => {
    console.log(`closed ${path} ${code} ${reason.toString()}`);
  });
  ws.on('error', () => {});
  ws.on('message', (data, isBinary) => {
    ws.send(data, { binary: isBinary });
  });
  switch (path.split('?')[0]) {
    case '/headers':
      ws.send(JSON.stringify({ path, headers: req.headers }));
      break;
    case '/fragments':
      ws.send('frag-', { fin: false });
      ws.send('ment', { fin: false });
      ws.send('ed', { fin: true });
      ws.send(Buffer.from([1, 2]), { binary: true, fin: false });
      ws.send(Buffer.from([3]), { binary: true, fin: true });
      break;
    case '/close':
      ws.close(4001, 'server says bye');
      break;
    case '/abort':
      ws.terminate();
      break;
    case '/ping': {
      const timer = setTimeout(() => ws.send('no pong'), 5000);
      ws.once('pong', () => { clearTimeout(timer); ws.send('pong received'); });
      ws.ping('srv-ping');
      break;
    }
    case '/protocol':
      ws.send(ws.protocol || 'none');
      break;
    default:
      break;
  }
});

setTimeout(() => process.exit(0), 120000).unref();
