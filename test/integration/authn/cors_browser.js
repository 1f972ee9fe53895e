// A real browser on another origin: headless Chromium opens PAGE_URL (a page
// served by the test from another port, i.e. another origin than Portico),
// waits for the page's `window.ptDone` (its calls through Portico) and prints
// what the page shows in its #out element: one JSON line.
//
//   node cors_browser.js CHROMIUM PAGE_URL [TIMEOUT_MS]
'use strict';
const path = require('path');
const { runInChromium } = require(path.join(__dirname, '..', 'cdp_page'));

const [chromium, pageUrl, timeoutArg] = process.argv.slice(2);
const expression = `new Promise((resolve) => {
  const wait = () => (window.ptDone ? window.ptDone.then(
    () => resolve(document.getElementById('out').textContent)) : setTimeout(wait, 50));
  wait();
})`;

runInChromium({ chromium, startUrl: pageUrl, expression, timeoutMs: Number(timeoutArg || 30000) })
  .then((value) => { process.stdout.write(value + '\n'); process.exit(0); })
  .catch((e) => {
    process.stdout.write(JSON.stringify({ error: String(e && e.stack || e) }) + '\n');
    process.exit(1);
  });
