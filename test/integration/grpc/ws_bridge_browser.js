// A real browser on the WebSocket <-> gRPC bridge: starts headless Chromium
// (Debian `chromium`), drives its page through the DevTools protocol (the npm
// `ws` package as the CDP client), lets the page open `new WebSocket(URL)`,
// send the texts given, close after the last answer, and prints one JSON
// line with what the page saw: {"opened": bool, "messages": [...],
// "close": {"code": N, "reason": "...", "wasClean": bool}, "error": "..."}.
//
//   node ws_bridge_browser.js CHROMIUM WS_URL '["\"hi\"", "\"bye\""]' [TIMEOUT_MS]
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const WebSocket = require(path.join(__dirname, '..', 'node_modules', 'ws'));

const [chromiumBin, wsUrl, textsJson, timeoutArg] = process.argv.slice(2);
const texts = JSON.parse(textsJson);
const timeoutMs = Number(timeoutArg || 30000);
const profile = fs.mkdtempSync(path.join(process.env.PT_TMPDIR || os.tmpdir(), 'pt-chromium-'));
let browser = null;

// Chromium forks helpers (zygote, renderer, GPU): it runs in its own process
// group, and the whole group is killed, and gone, before its profile is removed.
function cleanup(then) {
  const rm = () => {
    try {
      fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
    } catch (e) { /* the test's temp dir cleanup gets what is left */ }
    then();
  };
  if (browser === null || browser.exitCode !== null || browser.signalCode !== null) return rm();
  browser.once('exit', () => setTimeout(rm, 100));
  try { process.kill(-browser.pid, 'SIGKILL'); } catch (e) { browser.kill('SIGKILL'); }
  setTimeout(rm, 3000).unref();
}
let finished = false;
function finish(result, code) {
  if (finished) return;
  finished = true;
  process.stdout.write(JSON.stringify(result) + '\n');
  cleanup(() => process.exit(code));
}
setTimeout(() => finish({ error: 'timeout' }, 1), timeoutMs);

function getJson(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(e); } });
    }).on('error', reject);
  });
}

// What runs in the page: a plain browser WebSocket, nothing else.
function pageScript(url, msgs) {
  return `new Promise((resolve) => {
    const out = { opened: false, messages: [] };
    const ws = new WebSocket(${JSON.stringify(url)});
    const msgs = ${JSON.stringify(msgs)};
    ws.onopen = () => { out.opened = true; for (const m of msgs) ws.send(m); };
    ws.onmessage = (e) => {
      out.messages.push(e.data);
      if (out.messages.length === msgs.length) ws.close(1000, 'done');
    };
    ws.onerror = () => { out.error = 'error event'; };
    ws.onclose = (e) => {
      out.close = { code: e.code, reason: e.reason, wasClean: e.wasClean };
      resolve(JSON.stringify(out));
    };
  })`;
}

async function main() {
  browser = spawn(chromiumBin, [
    '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--no-default-browser-check', '--disable-extensions', '--disable-dev-shm-usage',
    '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0',
    '--user-data-dir=' + profile, 'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  // Chromium prints "DevTools listening on ws://127.0.0.1:PORT/devtools/browser/..."
  const port = await new Promise((resolve, reject) => {
    let err = '';
    browser.stderr.on('data', (d) => {
      err += d;
      const m = /DevTools listening on ws:\/\/127\.0\.0\.1:(\d+)\//.exec(err);
      if (m) resolve(Number(m[1]));
    });
    browser.on('exit', (code) => reject(new Error('chromium exited ' + code + ': ' + err)));
  });
  let page = null;
  for (let i = 0; i < 50 && page === null; i++) {
    const targets = await getJson(`http://127.0.0.1:${port}/json/list`);
    page = targets.find((t) => t.type === 'page') || null;
    if (page === null) await new Promise((r) => setTimeout(r, 100));
  }
  if (page === null) throw new Error('no page target');
  const cdp = new WebSocket(page.webSocketDebuggerUrl, { perMessageDeflate: false });
  await new Promise((resolve, reject) => { cdp.on('open', resolve); cdp.on('error', reject); });
  const reply = await new Promise((resolve) => {
    cdp.on('message', (data) => {
      const m = JSON.parse(data.toString());
      if (m.id === 1) resolve(m);
    });
    cdp.send(JSON.stringify({
      id: 1,
      method: 'Runtime.evaluate',
      params: { expression: pageScript(wsUrl, texts), awaitPromise: true, returnByValue: true },
    }));
  });
  cdp.close();
  if (reply.error || reply.result.exceptionDetails)
    finish({ error: JSON.stringify(reply.error || reply.result.exceptionDetails) }, 1);
  finish(JSON.parse(reply.result.result.value), 0);
}

main().catch((e) => finish({ error: String(e && e.stack || e) }, 1));
