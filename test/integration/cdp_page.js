// cdp_page.js -- a real browser for integration tests: starts headless
// Chromium (Debian `chromium`), navigates to `startUrl` when given (and waits
// for its load event), evaluates `expression` in the
// page through the DevTools protocol (the npm `ws` package as the CDP client;
// a promise is awaited, the value returned by value) and stops the browser.
// Used by grpc/ws_bridge_browser.js and authn/cors_browser.js.
//
//   const { runInChromium } = require('../cdp_page');
//   runInChromium({ chromium, startUrl, expression, timeoutMs, errors }) -> Promise<value>
//
// `errors` (optional, an array): gets the text of every console error, uncaught
// exception and browser log error (a failed load) of the page, from before the
// navigation on.
//
// Chromium forks helpers (zygote, renderer, GPU): it runs in its own process
// group, and the whole group is killed, and gone, before its profile (a temp
// dir under $PT_TMPDIR) is removed.
'use strict';
const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');
const WebSocket = require(path.join(__dirname, 'node_modules', 'ws'));

function getJson(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = '';
      res.on('data', (d) => { body += d; });
      res.on('end', () => { try { resolve(JSON.parse(body)); } catch (e) { reject(e); } });
    }).on('error', reject);
  });
}

function stopBrowser(browser, profile) {
  return new Promise((resolve) => {
    const rm = () => {
      try {
        fs.rmSync(profile, { recursive: true, force: true, maxRetries: 10, retryDelay: 100 });
      } catch (e) { /* the test's temp dir cleanup gets what is left */ }
      resolve();
    };
    if (browser === null || browser.exitCode !== null || browser.signalCode !== null) return rm();
    browser.once('exit', () => setTimeout(rm, 100));
    try { process.kill(-browser.pid, 'SIGKILL'); } catch (e) { browser.kill('SIGKILL'); }
    setTimeout(rm, 3000).unref();
  });
}

function pageError(m) {
  const p = m.params;
  if (m.method === 'Runtime.exceptionThrown')
    return 'exception: ' + ((p.exceptionDetails.exception || {}).description || p.exceptionDetails.text);
  if (m.method === 'Runtime.consoleAPICalled' && (p.type === 'error' || p.type === 'assert'))
    return 'console.' + p.type + ': ' + p.args.map((a) => a.value !== undefined ? a.value : a.description).join(' ');
  if (m.method === 'Log.entryAdded' && p.entry.level === 'error')
    return 'log: ' + p.entry.text + (p.entry.url ? ' (' + p.entry.url + ')' : '');
  return null;
}

async function evaluate(browser, expression, startUrl, errors) {
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
  for (let i = 0; i < 100 && page === null; i++) {
    const targets = await getJson(`http://127.0.0.1:${port}/json/list`);
    page = targets.find((t) => t.type === 'page') || null;
    if (page === null) await new Promise((r) => setTimeout(r, 100));
  }
  if (page === null) throw new Error('no page target');
  const cdp = new WebSocket(page.webSocketDebuggerUrl, { perMessageDeflate: false });
  await new Promise((resolve, reject) => { cdp.on('open', resolve); cdp.on('error', reject); });
  let next = 1;
  const waiting = new Map(); // id -> resolve
  let loaded = null;         // resolves on Page.loadEventFired
  cdp.on('message', (data) => {
    const m = JSON.parse(data.toString());
    if (m.id !== undefined && waiting.has(m.id)) {
      waiting.get(m.id)(m);
      waiting.delete(m.id);
    } else if (m.method === 'Page.loadEventFired' && loaded !== null) {
      loaded();
    } else if (errors && pageError(m) !== null) {
      errors.push(pageError(m));
    }
  });
  const call = (method, params) => new Promise((resolve) => {
    const id = next++;
    waiting.set(id, resolve);
    cdp.send(JSON.stringify({ id, method, params: params || {} }));
  });
  if (errors) {
    await call('Runtime.enable');
    await call('Log.enable');
  }
  if (startUrl) {
    // navigate from about:blank and wait for the load event, so the
    // evaluation runs in the page's document (not one being replaced)
    const load = new Promise((resolve) => { loaded = resolve; });
    await call('Page.enable');
    const nav = await call('Page.navigate', { url: startUrl });
    if (nav.error || nav.result.errorText)
      throw new Error('navigation failed: ' + JSON.stringify(nav.error || nav.result));
    await load;
  }
  const reply = await call('Runtime.evaluate',
                           { expression, awaitPromise: true, returnByValue: true });
  cdp.close();
  if (reply.error || reply.result.exceptionDetails)
    throw new Error(JSON.stringify(reply.error || reply.result.exceptionDetails));
  return reply.result.result.value;
}

async function runInChromium({ chromium, startUrl, expression, timeoutMs, errors }) {
  const profile = fs.mkdtempSync(path.join(process.env.PT_TMPDIR || os.tmpdir(), 'pt-chromium-'));
  const browser = spawn(chromium, [
    '--headless=new', '--no-sandbox', '--disable-gpu', '--no-first-run',
    '--no-default-browser-check', '--disable-extensions', '--disable-dev-shm-usage',
    '--remote-debugging-address=127.0.0.1', '--remote-debugging-port=0',
    '--user-data-dir=' + profile, 'about:blank',
  ], { stdio: ['ignore', 'ignore', 'pipe'], detached: true });
  let timer = null;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error('timeout')), timeoutMs || 30000);
  });
  try {
    return await Promise.race([evaluate(browser, expression, startUrl, errors), timeout]);
  } finally {
    clearTimeout(timer);
    await stopBrowser(browser, profile);
  }
}

module.exports = { runInChromium };
