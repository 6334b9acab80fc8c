// Node `ws` 8 echo server with permessage-deflate, for spec/deflate_spec.lua.
//
// Usage: node node_server.js [--no-context-takeover] [--max-window-bits N]
//
// perMessageDeflate is `true` (node's defaults: threshold 1024 bytes, zlib
// windows of 15 bits), or an object with serverNoContextTakeover /
// serverMaxWindowBits when those flags are given.  Listens on 127.0.0.1 (a
// free port) and prints "listening on ws://127.0.0.1:PORT/".  Every
// connection logs one line "open <offer> => <answer>", and "closed CODE
// REASON" at the end.  Messages are echoed, except:
//   "stats"     answers {"bytesRead": N}: the bytes read from the TCP
//               connection so far (the client compressed if N is small)
//   "close-me"  closes with 4002 "node bye"
// Exits by itself after 120 seconds.
'use strict';

const { WebSocketServer } = require('ws');

const args = process.argv.slice(2);
let perMessageDeflate = true;
if (args.length > 0) {
  perMessageDeflate = {};
  for (let i = 0; i < args.length; i++) {
    if (args[i] === '--no-context-takeover') perMessageDeflate.serverNoContextTakeover = true;
    else if (args[i] === '--max-window-bits') perMessageDeflate.serverMaxWindowBits = Number(args[++i]);
    else throw new Error('unknown argument ' + args[i]);
  }
}

const wss = new WebSocketServer({
  host: '127.0.0.1',
  port: 0,
  perMessageDeflate,
  maxPayload: 16 * 1024 * 1024,
});

wss.on('listening', () => {
  console.log(`listening on ws://127.0.0.1:${wss.address().port}/`);
});

wss.on('headers', (headers, req) => {
  const answer = headers.find((h) => /^sec-websocket-extensions:/i.test(h));
  console.log(`open ${req.headers['sec-websocket-extensions'] || '-'} => ` +
              `${answer ? answer.replace(/^[^:]*:\s*/, '') : '-'}`);
});

wss.on('connection', (ws, req) => {
  ws.on('error', () => {});
  ws.on('close', (code, reason) => console.log(`closed ${code} ${reason.toString()}`));
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === 'stats') {
      ws.send(JSON.stringify({ bytesRead: req.socket.bytesRead }));
    } else if (!isBinary && data.toString() === 'close-me') {
      ws.close(4002, 'node bye');
    } else {
      ws.send(data, { binary: isBinary });
    }
  });
});

setTimeout(() => process.exit(0), 120000).unref();
