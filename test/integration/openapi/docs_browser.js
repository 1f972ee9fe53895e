// The /docs explorer in a real browser: starts headless Chromium (Debian
// `chromium`) through ../cdp_page.js (DevTools protocol, as the WebSocket
// bridge's browser test does), opens the page, waits for the spec, then for
// each step clicks the operation, fills its parameters, presses Send and
// reads the answer off the page. Prints one JSON line: {"title", "groups":
// [...], "answers": [{"request", "status", "headers", "body"} or {"error"}]}
// (or {"error": "..."}).
//
//   node docs_browser.js CHROMIUM DOCS_URL '[["opId", {"param": "value"}], ...]' [TIMEOUT_MS]
'use strict';
const path = require('path');
const { runInChromium } = require(path.join(__dirname, '..', 'cdp_page'));

const [chromiumBin, docsUrl, stepsJson, timeoutArg] = process.argv.slice(2);
const timeoutMs = Number(timeoutArg || 30000);

// Runs in the page: only what a user does (click, type, click), then reads the DOM.
function pageScript(steps) {
  return `(async () => {
    const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
    const until = async (f, what) => {
      for (let i = 0; i < 400; i++) { const v = f(); if (v) return v; await sleep(25); }
      throw new Error('timed out waiting for ' + what);
    };
    await until(() => document.querySelector('#load-status[data-loaded]'), 'the spec');
    const groups = [...document.querySelectorAll('nav h2')].map((h) => h.textContent);
    const answers = [];
    for (const [op, params] of ${JSON.stringify(steps)}) {
      const link = await until(() => document.querySelector('nav a[data-op=' + JSON.stringify(op) + ']'), 'operation ' + op);
      link.click();
      for (const [k, v] of Object.entries(params)) {
        const inp = await until(() => document.querySelector('#op input[data-param=' + JSON.stringify(k) + ']'), 'input ' + k);
        inp.focus();
        inp.value = v;
        inp.dispatchEvent(new Event('input', { bubbles: true }));
      }
      document.getElementById('send').click();
      await until(() => document.getElementById('resp-status') || document.getElementById('resp-error'), 'the answer');
      const err = document.getElementById('resp-error');
      answers.push(err ? { error: err.textContent } : {
        request: document.getElementById('req-line').textContent,
        status: document.getElementById('resp-status').textContent,
        headers: document.getElementById('resp-headers').textContent,
        body: document.getElementById('resp-body').textContent,
      });
    }
    return JSON.stringify({ title: document.getElementById('title').textContent, groups, answers });
  })()`;
}

runInChromium({ chromium: chromiumBin, startUrl: docsUrl,
                expression: pageScript(JSON.parse(stepsJson)), timeoutMs })
  .then((value) => { process.stdout.write(value + '\n'); process.exit(0); })
  .catch((e) => {
    process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
    process.exit(1);
  });
