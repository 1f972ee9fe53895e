// A real browser on the WebSocket <-> gRPC bridge: starts headless Chromium
// (Debian `chromium`), drives its page through the DevTools protocol (the npm
// `ws` package as the CDP client), lets the page open `new WebSocket(URL)`,
// send the texts given, close after the last answer, and prints one JSON
// line with what the page saw: {"opened": bool, "messages": [...],
// "close": {"code": N, "reason": "...", "wasClean": bool}, "error": "..."}.
//
//   node ws_bridge_browser.js CHROMIUM WS_URL '["\"hi\"", "\"bye\""]' [TIMEOUT_MS]
'use strict';
const path = require('path');
const { runInChromium } = require(path.join(__dirname, '..', 'cdp_page'));

const [chromiumBin, wsUrl, textsJson, timeoutArg] = process.argv.slice(2);
const texts = JSON.parse(textsJson);
const timeoutMs = Number(timeoutArg || 30000);

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

runInChromium({ chromium: chromiumBin, expression: pageScript(wsUrl, texts), timeoutMs })
  .then((value) => { process.stdout.write(value + '\n'); process.exit(0); })
  .catch((e) => {
    process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
    process.exit(1);
  });
