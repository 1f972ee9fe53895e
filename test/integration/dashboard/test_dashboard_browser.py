"""
The dashboard in a real browser (issue 13, dash): headless Chromium (Debian
`chromium`, driven over the DevTools protocol by dashboard_browser.js) opens
the admin's /dashboard while a small load loop runs against Portico (bounded
in time): the page loads without a console error, its charts draw, its
request rate moves, and the route, cluster and endpoint rows show.
"""
import http.client
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

from portico_test import PorticoTestCase, free_port, wait_port
from test_dashboard import config

HERE = os.path.dirname(os.path.abspath(__file__))
BROWSER = os.path.join(HERE, "dashboard_browser.js")


def load_loop(port, stop, deadline):
    """Requests on one keep-alive connection, at a changing pace, until `stop` or `deadline`."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    n = 0
    while not stop.is_set() and time.time() < deadline:
        path = "/status/503" if n % 10 == 0 else "/hello"
        try:
            conn.request("GET", path)
            conn.getresponse().read()
        except OSError:
            conn.close()
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
        n += 1
        # bursts and pauses: the per-second rate differs from one second to the next
        time.sleep(0.002 if (int(time.time() * 2) % 3) else 0.02)
    conn.close()


class DashboardBrowserTest(PorticoTestCase):
    def test_page_loads_draws_and_moves_under_load(self):
        chromium = shutil.which("chromium")
        self.assertIsNotNone(chromium, "Debian chromium is missing (scripts/install-deps.sh)")
        up = self.echo()
        port, admin = free_port(), free_port()
        p = self.start(config(port, admin, up.port), port, workers=2)
        wait_port(admin, 10, p.proc)  # the admin listens after the data listeners
        tmp = tempfile.TemporaryDirectory(prefix="pt-dash-browser-")
        self.addCleanup(tmp.cleanup)
        stop = threading.Event()
        t = threading.Thread(target=load_loop, args=(port, stop, time.time() + 40), daemon=True)
        t.start()
        self.addCleanup(t.join, 10)
        self.addCleanup(stop.set)
        r = subprocess.run(["node", BROWSER, chromium, f"http://127.0.0.1:{admin}/dashboard", "40000"],
                           capture_output=True, timeout=60, env=dict(os.environ, PT_TMPDIR=tmp.name))
        stop.set()
        lines = r.stdout.decode().strip().splitlines()
        self.assertTrue(lines, r.stderr.decode())
        out = json.loads(lines[-1])
        if os.environ.get("PT_DASH_SHOW"):
            print(json.dumps(out, indent=1))
        self.assertEqual(r.returncode, 0, out)
        self.assertEqual(out["errors"], [], out)
        self.assertEqual(out["mode"], "stream", out)
        self.assertEqual(out["status"], "live (event stream)")
        self.assertGreaterEqual(out["snapshots"], 3, out)
        # the numbers move: at least two different non-zero request rates were shown
        nonzero = {v for v in out["rps"] if v != "-" and float(v) > 0}
        self.assertGreaterEqual(len(nonzero), 2, out["rps"])
        self.assertGreaterEqual(out["charts"], 3, out)   # requests, latency p50+p99, open, errors
        self.assertGreaterEqual(out["sparks"], 2, out)
        self.assertNotEqual(out["p50"], "-")
        self.assertTrue(out["p99"].endswith("ms") or out["p99"].endswith(" s"), out["p99"])
        routes = {r[0]: r for r in out["routes"]}
        self.assertIn("api", routes)
        self.assertIn("local", routes)  # configured, no traffic: listed anyway
        self.assertGreater(float(routes["api"][1]), 0)
        clusters = {c[0]: c for c in out["clusters"]}
        self.assertIn("web", clusters)
        self.assertIn(f"127.0.0.1:{up.port}", clusters["web"][-1])
        self.assertEqual(out["endpoints"], 1)
        # the page's interpolation: half of 10 in (500, 1000] us -> 750; the +Inf
        # bucket gives its lower bound, flagged; nothing to rank -> null
        self.assertEqual(out["q"][0], {"us": 750, "inf": False})
        self.assertEqual(out["q"][1], {"us": 2500, "inf": True})
        self.assertIsNone(out["q"][2])


if __name__ == "__main__":
    unittest.main()
