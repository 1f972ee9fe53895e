// WebSocket load for bench/ws_bench.py: CONNS sockets, each sends a SIZE-byte binary message,
// waits for its echo, sends the next (closed loop), for SECONDS after a 1 s warm-up.
// Prints {"msgs": N, "secs": S, "p50_ms": x, "p99_ms": y, "errors": E}.
// Usage: node ws_load.js URL CONNS SIZE SECONDS
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'test', 'integration', 'node_modules', 'ws'));

const [url, conns, size, seconds] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const payload = Buffer.alloc(size, 0x62);
let measuring = false, msgs = 0, errors = 0, open = 0;
const rtts = [];
let t0 = 0;

function start(ws) {
  let sent = 0n;
  const send = () => { sent = process.hrtime.bigint(); ws.send(payload, { binary: true }); };
  ws.on('message', () => {
    if (measuring) {
      msgs++;
      if (rtts.length < 2000000) rtts.push(Number(process.hrtime.bigint() - sent) / 1e6);
    }
    send();
  });
  send();
}

for (let i = 0; i < conns; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  ws.on('open', () => { if (++open === conns) go(); });
  ws.on('error', () => errors++);
  ws.on('close', () => {});
  ws._bench = true;
  global.sockets = (global.sockets || []).concat([ws]);
}

function go() {
  global.sockets.forEach(start);
  setTimeout(() => {
    measuring = true;
    t0 = process.hrtime.bigint();
    setTimeout(() => {
      measuring = false;
      const secs = Number(process.hrtime.bigint() - t0) / 1e9;
      rtts.sort((a, b) => a - b);
      const pct = (p) => rtts.length ? rtts[Math.min(rtts.length - 1, Math.floor(rtts.length * p))] : 0;
      process.stdout.write(JSON.stringify({ msgs, secs, p50_ms: pct(0.5), p99_ms: pct(0.99), errors }) + '\n');
      process.exit(0);
    }, seconds * 1000);
  }, 1000);
}
setTimeout(() => { process.stdout.write(JSON.stringify({ error: 'timeout', open, errors }) + '\n'); process.exit(1); },
           (seconds + 30) * 1000).unref();
