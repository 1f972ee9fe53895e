// ws_chat_load.js -- load for the WebSocket <-> gRPC bridge benchmark
// (bench/ws_bridge_bench.py): CONNS WebSockets on a bidi Chat binding, each
// keeping INFLIGHT text messages outstanding (a reply lets the next one go)
// until it sent PER_CONN messages; then it closes (1000) and waits for the
// close. Prints {"msgs": replies received, "seconds": wall time, "bad": N}.
//
//   node ws_chat_load.js URL CONNS INFLIGHT PER_CONN
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'test', 'integration', 'node_modules', 'ws'));

const [url, conns, inflight, perConn] = [process.argv[2], ...process.argv.slice(3, 6).map(Number)];
const payload = '"hello through the bridge"';
let received = 0;
let bad = 0;
let open = conns;
const t0 = process.hrtime.bigint();

function done() {
  const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
  process.stdout.write(JSON.stringify({ msgs: received, seconds, bad }) + '\n');
  process.exit(0);
}
setTimeout(() => { bad++; done(); }, 300000);

for (let i = 0; i < conns; i++) {
  const ws = new WebSocket(url + (url.includes('?') ? '&' : '?') + 'from=c' + i,
                           { perMessageDeflate: false });
  let sent = 0;
  let got = 0;
  const send = () => { sent++; ws.send(payload); };
  ws.on('open', () => { while (sent < perConn && sent - got < inflight) send(); });
  ws.on('message', (data) => {
    got++;
    received++;
    if (data.length < 20 || data[0] !== 0x7b /* '{' */) bad++;
    if (sent < perConn) send();
    else if (got === perConn) ws.close(1000);
  });
  ws.on('close', (code) => {
    if (code !== 1000) bad++;
    if (--open === 0) done();
  });
  ws.on('error', () => { bad++; });
}
