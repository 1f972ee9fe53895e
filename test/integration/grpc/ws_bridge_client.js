// A WebSocket client for the bridge tests (npm `ws`). Runs one plan given as
// JSON in argv[2] and prints one JSON line with what happened:
//   {"open": bool, "status": N (a refused handshake), "body": "...", "protocol": "...",
//    "received": [{"type": "text", "data": "..."} | {"type": "binary", "b64": "..."}],
//    "close": {"code": N, "reason": "..."}, "pongs": ["..."], "error": "..."}
// Plan keys:
//   url, protocols (list), headers (object)
//   steps: a list run in order once the socket is open, each one of
//     {"text": "..."} | {"binary_b64": "..."}     send a message
//     {"wait": N}                                 until N messages were received in all
//     {"ping": "payload"}                         send a ping; wait for its pong
//     {"close": CODE}                             send a close frame (CODE 0: none)
//     {"drop": true}                              destroy the TCP connection at once
//     {"sleep": MS}
//     {"pause": true}                             stop reading the socket (a slow reader)
//   finish_after_steps: print the result once the steps ran (no need to wait for a close)
//   timeout_ms (default 10000): the whole run; the result then says "error": "timeout".
'use strict';
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'node_modules', 'ws'));

const plan = JSON.parse(process.argv[2]);
const out = { open: false, received: [], pongs: [] };
let done = false;
function finish() {
  if (done) return;
  done = true;
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exit(0);
}
setTimeout(() => { out.error = 'timeout'; finish(); }, plan.timeout_ms || 10000);

const ws = new WebSocket(plan.url, plan.protocols || [], {
  headers: plan.headers || {},
  perMessageDeflate: false,
});
const waiters = [];
function wake() {
  for (let i = waiters.length - 1; i >= 0; i--) {
    if (waiters[i].ready()) waiters.splice(i, 1)[0].go();
  }
}
function until(ready) {
  return new Promise((go) => {
    if (ready()) go(); else waiters.push({ ready, go });
  });
}
ws.on('unexpected-response', (req, res) => {
  out.status = res.statusCode;
  let body = '';
  res.on('data', (d) => { body += d; });
  res.on('end', () => { out.body = body; finish(); });
});
ws.on('message', (data, isBinary) => {
  out.received.push(isBinary ? { type: 'binary', b64: Buffer.from(data).toString('base64') }
                             : { type: 'text', data: data.toString() });
  wake();
});
ws.on('pong', (data) => { out.pongs.push(data.toString()); wake(); });
ws.on('close', (code, reason) => {
  out.close = { code, reason: reason.toString() };
  finish();
});
ws.on('error', (e) => { out.error = String(e.message || e); if (!out.open) finish(); });
ws.on('open', async () => {
  out.open = true;
  out.protocol = ws.protocol;
  for (const s of plan.steps || []) {
    if (done) return;
    if (s.text !== undefined) ws.send(s.text);
    else if (s.binary_b64 !== undefined) ws.send(Buffer.from(s.binary_b64, 'base64'));
    else if (s.wait !== undefined) await until(() => out.received.length >= s.wait);
    else if (s.ping !== undefined) {
      const n = out.pongs.length;
      ws.ping(s.ping);
      await until(() => out.pongs.length > n);
    } else if (s.close !== undefined) {
      if (s.close) ws.close(s.close); else ws.close();
    } else if (s.drop) {
      ws._socket.destroy();
      out.dropped = true;
      setTimeout(finish, 50);
      return;
    } else if (s.pause) {
      ws._socket.pause();
    } else if (s.sleep !== undefined) await new Promise((r) => setTimeout(r, s.sleep));
  }
  if (plan.finish_after_steps) finish();
});
