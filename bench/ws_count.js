// A fixed WebSocket load for bench/ws_callgrind.py: CONNS sockets, each sends MSGS
// SIZE-byte binary messages in a closed loop (next one after the echo), then
// closes normally. Prints {"msgs": N, "errors": E}. Usage: node ws_count.js URL CONNS SIZE MSGS
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'test', 'integration', 'node_modules', 'ws'));

const [url, conns, size, per] = [process.argv[2], +process.argv[3], +process.argv[4], +process.argv[5]];
const payload = Buffer.alloc(size, 0x62);
let msgs = 0, errors = 0, closed = 0;

function finish() {
  if (++closed === conns) {
    process.stdout.write(JSON.stringify({ msgs, errors }) + '\n');
    process.exit(errors ? 1 : 0);
  }
}

for (let i = 0; i < conns; i++) {
  const ws = new WebSocket(url, { perMessageDeflate: false });
  let left = per;
  ws.on('open', () => ws.send(payload, { binary: true }));
  ws.on('message', () => {
    msgs++;
    if (--left > 0) ws.send(payload, { binary: true });
    else ws.close(1000);
  });
  ws.on('error', () => errors++);
  ws.on('close', finish);
}
setTimeout(() => { process.stdout.write(JSON.stringify({ error: 'timeout', msgs, errors }) + '\n'); process.exit(1); },
           600000).unref();
