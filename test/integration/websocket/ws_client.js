// WebSocket client scenarios for the integration tests (npm `ws` client).
// Usage: node ws_client.js SCENARIO URL [ARG]; prints one JSON object with what happened.
//   echo          text, binary and UTF-8 messages, each echoed with its type
//   big N         one N-byte binary message, echoed; compares SHA-256
//   fragments     a text message sent in 3 fragments, echoed whole
//   ping          client ping "abc": the pong relayed back
//   uping         the upstream pings; its report of our pong comes back as a message
//   close CODE    the client closes with CODE "client-bye": the code the client got back
//   uclose        sends one message; the upstream closes (URL names the code)
//   proto         offers subprotocols a and b: which one was agreed
//   many N        N sockets at once, each echoes one message then closes
//   origin O      connects with Origin O: opened, or the refusal status
'use strict';
const crypto = require('crypto');
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'node_modules', 'ws'));

const [scenario, url, arg] = process.argv.slice(2);
const out = (o) => { process.stdout.write(JSON.stringify(o) + '\n'); process.exit(0); };
setTimeout(() => out({ error: 'timeout' }), 60000).unref();

function open(u, protocols, opts) {
  return new WebSocket(u, protocols, Object.assign({ perMessageDeflate: false, maxPayload: 64 << 20 }, opts || {}));
}

function closeAndReport(ws, result) {
  ws.on('close', (code, reason) => out(Object.assign(result, { close: code, reason: reason.toString() })));
  ws.close(1000, 'done');
}

const run = {
  echo() {
    const ws = open(url);
    const sent = [['hello', false], [Buffer.from([0, 1, 2, 255]), true], ['grüße ☃ 𝄞', false]];
    const got = [];
    ws.on('open', () => sent.forEach(([d, b]) => ws.send(d, { binary: b })));
    ws.on('message', (d, b) => {
      got.push({ binary: b, data: b ? d.toString('hex') : d.toString() });
      if (got.length === sent.length) closeAndReport(ws, { got });
    });
    ws.on('error', (e) => out({ error: e.message }));
  },
  big() {
    const n = parseInt(arg, 10);
    const ws = open(url);
    const buf = crypto.randomBytes(n);
    const want = crypto.createHash('sha256').update(buf).digest('hex');
    ws.on('open', () => ws.send(buf, { binary: true }));
    ws.on('message', (d) => closeAndReport(ws, { len: d.length, same: crypto.createHash('sha256').update(d).digest('hex') === want }));
    ws.on('error', (e) => out({ error: e.message }));
  },
  fragments() {
    const ws = open(url);
    ws.on('open', () => {
      ws.send('one ', { fin: false });
      ws.send('two ', { fin: false });
      ws.send('three', { fin: true });
    });
    ws.on('message', (d, b) => closeAndReport(ws, { binary: b, data: d.toString() }));
    ws.on('error', (e) => out({ error: e.message }));
  },
  ping() {
    const ws = open(url);
    ws.on('open', () => ws.ping('abc'));
    ws.on('pong', (d) => closeAndReport(ws, { pong: d.toString() }));
    ws.on('error', (e) => out({ error: e.message }));
  },
  uping() {
    const ws = open(url);
    let pings = 0;
    ws.on('ping', () => pings++);
    ws.on('message', (d) => closeAndReport(ws, { pings, msg: d.toString() }));
    ws.on('error', (e) => out({ error: e.message }));
  },
  close() {
    const ws = open(url);
    ws.on('open', () => ws.close(parseInt(arg, 10), 'client-bye'));
    ws.on('close', (code, reason) => out({ close: code, reason: reason.toString() }));
    ws.on('error', (e) => out({ error: e.message }));
  },
  uclose() {
    const ws = open(url);
    ws.on('open', () => ws.send('x'));
    ws.on('close', (code, reason) => out({ close: code, reason: reason.toString() }));
    ws.on('error', (e) => out({ error: e.message }));
  },
  proto() {
    const ws = open(url, ['a', 'b']);
    ws.on('open', () => closeAndReport(ws, { protocol: ws.protocol }));
    ws.on('error', (e) => out({ error: e.message }));
  },
  many() {
    const n = parseInt(arg, 10);
    let ok = 0, done = 0;
    const errors = [];
    for (let i = 0; i < n; i++) {
      const ws = open(url);
      const m = 'socket ' + i;
      ws.on('open', () => ws.send(m));
      ws.on('message', (d) => { if (d.toString() === m) ok++; ws.close(1000); });
      ws.on('close', () => { if (++done === n) out({ ok, errors }); });
      ws.on('error', (e) => errors.push(e.message));
    }
  },
  origin() {
    const ws = open(url, [], { origin: arg });
    ws.on('open', () => closeAndReport(ws, { opened: true }));
    ws.on('unexpected-response', (req, res) => out({ opened: false, status: res.statusCode }));
    ws.on('error', (e) => out({ error: e.message }));
  },
};

if (!run[scenario]) out({ error: 'unknown scenario ' + scenario });
run[scenario]();
