// The dashboard page in a real browser: starts headless Chromium (Debian
// `chromium`) through ../cdp_page.js, opens the admin's /dashboard, waits
// (bounded) while the test's load runs, and prints one JSON line with what the
// page showed: the tiles' texts over time, the drawn SVG elements, the route
// and cluster rows, a quantile worked out by the page's own code, and every
// console error, uncaught exception and failed load of the page.
//
//   node dashboard_browser.js CHROMIUM DASHBOARD_URL [TIMEOUT_MS]
'use strict';
const path = require('path');
const { runInChromium } = require(path.join(__dirname, '..', 'cdp_page'));

const [chromiumBin, url, timeoutArg] = process.argv.slice(2);
const timeoutMs = Number(timeoutArg || 40000);

// Runs in the page: samples the tiles every 250 ms for up to 15 s, and stops
// once the request rate showed two different non-zero values and the charts drew.
const expression = `new Promise((resolve) => {
  const d = window.porticoDashboard;
  const out = { rps: [], conns: [], snapshots: 0, mode: '' };
  const polyCount = (sel) => Array.from(document.querySelectorAll(sel))
    .filter((p) => (p.getAttribute('points') || '').trim().split(' ').length >= 2).length;
  const rows = (id) => Array.from(document.querySelectorAll('#' + id + ' tbody tr'))
    .map((tr) => Array.from(tr.cells).map((c) => c.textContent));
  const started = Date.now();
  const tick = () => {
    const rps = document.getElementById('g-rps').textContent;
    out.rps.push(rps);
    out.conns.push(document.getElementById('g-conns').textContent);
    const nonzero = new Set(out.rps.filter((v) => v !== '-' && Number(v) > 0));
    out.charts = polyCount('svg.chart polyline');
    out.sparks = polyCount('svg.spark polyline');
    if ((nonzero.size >= 2 && out.charts >= 3 && out.sparks >= 2) || Date.now() - started > 15000) {
      out.snapshots = d.snapshots;
      out.mode = d.mode;
      out.status = document.getElementById('status').textContent;
      out.p50 = document.getElementById('g-p50').textContent;
      out.p99 = document.getElementById('g-p99').textContent;
      out.routes = rows('routes');
      out.clusters = rows('clusters');
      out.endpoints = document.querySelectorAll('#clusters .dot.up').length;
      const bounds = [500, 1000, 2500];
      out.q = [d.quantile([0, 10, 0, 0], bounds, 0.5), d.quantile([0, 0, 0, 4], bounds, 0.99),
               d.quantile([0, 0, 0, 0], bounds, 0.5)];
      resolve(JSON.stringify(out));
    } else {
      setTimeout(tick, 250);
    }
  };
  tick();
})`;

const errors = [];
runInChromium({ chromium: chromiumBin, startUrl: url, expression, timeoutMs, errors })
  .then((value) => {
    const out = JSON.parse(value);
    out.errors = errors;
    process.stdout.write(JSON.stringify(out) + '\n');
    process.exit(0);
  })
  .catch((e) => {
    process.stdout.write(JSON.stringify({ error: String(e && e.stack || e), errors }) + '\n');
    process.exit(1);
  });
