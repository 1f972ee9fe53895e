"""
Reload and drain: SIGHUP swaps a validated config atomically (bad ones are
rejected and the old one keeps serving), reloads under load fail no request,
SIGTERM drains in-flight requests and exits 0.
"""
import json
import os
import re
import signal
import subprocess
import threading
import time
import unittest

from portico_test import PorticoTestCase, curl, free_port


def config(port, admin, echo_port, marker, extra=""):
    return f"""
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin} }}
timeouts: {{ drain: 10s }}
clusters:
  - name: web
    endpoints: [ "127.0.0.1:{echo_port}" ]
routes:
  - name: main
    match: {{ prefix: / }}
    proxy: {{ cluster: web }}
    filters:
      - headers: {{ response: {{ set: {{ x-config: "{marker}" }} }} }}
{extra}
"""


def metric(admin, name):
    st, h, body, _ = curl(f"http://127.0.0.1:{admin}/metrics")
    m = re.search("^" + re.escape(name) + r" (\d+)", body.decode(), re.M)
    return int(m.group(1)) if m else None


class LifecycleTest(PorticoTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.echo()
        self.port, self.admin = free_port(), free_port()
        self.p = self.start(config(self.port, self.admin, self.up.port, "one"), self.port, workers=2)
        self.url = f"http://127.0.0.1:{self.port}/x"

    def wait_marker(self, marker, timeout=5.0):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if curl(self.url)[1].get("x-config") == marker:
                return True
            time.sleep(0.05)
        return False

    def test_reload_swaps_config(self):
        self.assertEqual(curl(self.url)[1]["x-config"], "one")
        self.p.write_config(config(self.port, self.admin, self.up.port, "two"))
        self.p.reload()
        self.assertTrue(self.wait_marker("two"))
        self.assertEqual(metric(self.admin, 'portico_config_reloads_total{result="ok"}'), 1)

    def test_invalid_reload_keeps_old_config(self):
        self.p.write_config("listeners: [ { address: 127.0.0.1:1, bogus: 1 } ]\nroutes: []\n")
        self.p.reload()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and \
                metric(self.admin, 'portico_config_reloads_total{result="failed"}') != 1:
            time.sleep(0.05)
        self.assertEqual(metric(self.admin, 'portico_config_reloads_total{result="failed"}'), 1)
        self.assertEqual(curl(self.url)[1]["x-config"], "one")
        self.assertRegex(self.p.output(), r"portico\.yaml:1:\d+: .*bogus")

    def test_reload_under_load_fails_nothing(self):
        out = {}

        def load():
            p = subprocess.run(["h2load", "-c", "8", "-m", "4", "-D", "4", self.url],
                               capture_output=True, text=True, timeout=60)
            out["h2"] = p.stdout

        def load_h1():
            p = subprocess.run(["h2load", "--h1", "-c", "8", "-D", "4", self.url],
                               capture_output=True, text=True, timeout=60)
            out["h1"] = p.stdout

        threads = [threading.Thread(target=load), threading.Thread(target=load_h1)]
        for t in threads:
            t.start()
        for i in range(10):
            time.sleep(0.3)
            self.p.write_config(config(self.port, self.admin, self.up.port, f"gen{i}"))
            self.p.reload()
        for t in threads:
            t.join(90)
        for k in ("h2", "h1"):
            m = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                          r"(\d+) failed, (\d+) errored", out[k])
            self.assertIsNotNone(m, out[k])
            self.assertGreater(int(m.group(4)), 100, out[k])
            self.assertEqual(int(m.group(5)), 0, out[k])
            self.assertEqual(int(m.group(6)), 0, out[k])
            self.assertRegex(out[k], r"status codes: \d+ 2xx, 0 3xx, 0 4xx, 0 5xx")
        self.assertTrue(self.wait_marker("gen9"))

    def test_sigterm_drains_inflight(self):
        result = {}

        def slow():
            result["r"] = curl(f"http://127.0.0.1:{self.port}/slow/1500")

        t = threading.Thread(target=slow)
        t.start()
        time.sleep(0.4)
        self.p.proc.send_signal(signal.SIGTERM)
        t.join(20)
        st, h, body, err = result["r"]
        self.assertEqual(st, 200, err)
        self.assertEqual(json.loads(body)["path"], "/slow/1500")
        self.assertEqual(self.p.proc.wait(20), 0)
        # new connections are refused once draining finished
        self.assertNotEqual(subprocess.run(["curl", "-s", "-o", "/dev/null", self.url]).returncode, 0)


if __name__ == "__main__":
    unittest.main()
