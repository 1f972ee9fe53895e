// WebSocket load for bench/ws_bench.py: CONNS sockets, each sends a SIZE-byte binary message,
// waits for its echo, sends the next (closed loop), for SECONDS after a 1 s warm-up.
// With RATE, a fixed load instead: every 2 ms the sockets whose echo came back send, in
// turn, as many messages as RATE messages/s allows (at most one per socket and tick), so
// that two proxies can be compared at the same load.
// Prints {"msgs": N, "secs": S, "p50_ms": x, "p99_ms": y, "errors": E}.
// Usage: node ws_load.js URL CONNS SIZE SECONDS [RATE]
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'test', 'integration', 'node_modules', 'ws'));

const [url, conns, size, seconds] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const rate = +(process.argv[6] || 0);
const payload = Buffer.alloc(size, 0x62);
let measuring = false, msgs = 0, errors = 0, open = 0;
const rtts = [];
let t0 = 0;

function start(ws) {
  let sent = 0n;
  ws._send = () => { ws._busy = true; sent = process.hrtime.bigint(); ws.send(payload, { binary: true }); };
  ws.on('message', () => {
    ws._busy = false;
    if (measuring) {
      msgs++;
      if (rtts.length < 2000000) rtts.push(Number(process.hrtime.bigint() - sent) / 1e6);
    }
    if (!rate) ws._send();
  });
  if (!rate) ws._send();
}

function pace() {
  const tick = 2, per = rate * tick / 1000;
  let due = 0, next = 0;
  setInterval(() => {
    due = Math.min(due + per, global.sockets.length);
    for (let i = 0; i < global.sockets.length && due >= 1; i++) {
      const ws = global.sockets[next++ % global.sockets.length];
      if (!ws._busy) { due--; ws._send(); }
    }
  }, tick);
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
  if (rate) pace();
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
