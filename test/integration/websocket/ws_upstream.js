// A WebSocket upstream for the integration tests (npm `ws` server). Prints
// {"port": N} on stdout once listening. By path:
//   /echo...        echoes every message with its type (text/binary)
//   /close/CODE     closes with CODE and "bye from upstream" after the first message
//   /ping           pings the client ("up-ping") at once, then reports the pong as a text message
//   /proto          picks the first subprotocol offered
//   /flood/N        sends N bytes in 64 KiB binary messages, as fast as the socket takes them
//   /noread         never reads (the socket is paused)
// GET /stats (plain HTTP) answers counters: upgrades, closes (codes and reasons), flood bytes flushed.
'use strict';
const http = require('http');
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'node_modules', 'ws'));

const stats = { upgrades: 0, closes: [], flushed: 0, heads: [] };
const server = http.createServer((req, res) => {
  if (req.url === '/stats') {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify(stats));
    return;
  }
  res.writeHead(200, { 'content-type': 'text/plain' });
  res.end('plain');
});
server.on('upgrade', (req) => {
  stats.upgrades++;
  stats.heads.push({ url: req.url, headers: req.headers });
});
const wss = new WebSocket.Server({
  server,
  maxPayload: 64 * 1024 * 1024,
  perMessageDeflate: false,
  handleProtocols: (protocols) => (protocols.size ? protocols.values().next().value : false),
});

wss.on('connection', (ws, req) => {
  const url = req.url;
  ws.on('close', (code, reason) => stats.closes.push({ url, code, reason: reason.toString() }));
  ws.on('error', () => {});
  if (url.startsWith('/close/')) {
    const code = parseInt(url.split('/')[2], 10);
    ws.once('message', () => ws.close(code, 'bye from upstream'));
    return;
  }
  if (url === '/ping') {
    ws.on('pong', (data) => ws.send('pong:' + data.toString()));
    ws.ping('up-ping');
    return;
  }
  if (url.startsWith('/flood/')) {
    let left = parseInt(url.split('/')[2], 10);
    const chunk = Buffer.alloc(65536, 0x61);
    const pump = () => {
      while (left > 0 && ws.readyState === WebSocket.OPEN && ws.bufferedAmount < 1024 * 1024) {
        const n = Math.min(left, chunk.length);
        ws.send(chunk.subarray(0, n), { binary: true });
        left -= n;
      }
      stats.flushed = ws._socket ? ws._socket.bytesWritten - ws.bufferedAmount : stats.flushed;
      if (left > 0 && ws.readyState === WebSocket.OPEN) setTimeout(pump, 5);
    };
    pump();
    return;
  }
  if (url === '/noread') {
    ws._socket.pause();
    return;
  }
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
});

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});
process.on('SIGTERM', () => process.exit(0));
