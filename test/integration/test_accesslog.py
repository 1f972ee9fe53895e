"""
The access log under stress: lines for huge and long requests are valid JSON
with exact numbers (issue 14, bug 4); rotation with mv + SIGHUP and recovery
from a failed open (issue 14, bug 3).
"""
import json
import os
import resource
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from portico_test import BIN, PorticoTestCase, curl, free_port, wait_port


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


def read(path):
    with open(path, "rb") as f:
        return f.read()


def wait_for(pred, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return False


class AccessLogFileTest(PorticoTestCase):
    def test_rotation_with_mv_and_sighup(self):
        up = self.echo()
        port, admin = free_port(), free_port()
        p = self.start(config(port, up.port, admin), port, workers=2)
        log = os.path.join(p.dir, "access.log")
        old = log + ".1"
        url = f"http://127.0.0.1:{port}"
        for i in range(10):
            self.assertEqual(curl(f"{url}/before/{i}")[0], 200)
        # curl has its answer a moment before the worker logs the request (the
        # log phase runs when the request is released): wait until all ten are
        # counted -- metrics and the log line are written together -- so every
        # line exists before the rename. They may still sit in the workers'
        # buffers: they must end up in the old file, not be lost.
        def answered():
            st, _, body, _ = curl(f"http://127.0.0.1:{admin}/metrics")
            return st == 200 and sum(int(float(l.rsplit(" ", 1)[1]))
                                     for l in body.decode().splitlines()
                                     if l.startswith("portico_requests_total{")) >= 10
        self.assertTrue(wait_for(answered), "the ten requests were never counted")
        self.assertTrue(wait_for(lambda: os.path.exists(log)))
        os.rename(log, old)
        p.reload()
        self.assertTrue(wait_for(lambda: "configuration reloaded" in p.output()), p.output())
        for i in range(10):
            self.assertEqual(curl(f"{url}/after/{i}")[0], 200)
        after = {f"/after/{i}" for i in range(10)}
        before = {f"/before/{i}" for i in range(10)}
        self.assertTrue(wait_for(lambda: {l["path"] for l in log_lines(log)} >= after),
                        "new lines did not reach the new file")
        self.assertTrue(wait_for(lambda: {l["path"] for l in log_lines(old)} >= before),
                        "lines written before the rotation were lost")
        self.assertFalse({l["path"] for l in log_lines(old)} & after,
                         "lines after the rotation went to the renamed file")
        self.assertFalse({l["path"] for l in log_lines(log)} & before)

    def test_failed_open_recovers(self):
        up = self.echo()
        port, admin = free_port(), free_port()
        # the directory does not exist yet: every open fails until it does
        p = self.start(config(port, up.port, admin, log_path="logs/access.log"), port)
        log = os.path.join(p.dir, "logs", "access.log")
        url = f"http://127.0.0.1:{port}"
        for i in range(3):
            self.assertEqual(curl(f"{url}/lost/{i}")[0], 200)
        st, _, body, _ = curl(f"http://127.0.0.1:{admin}/metrics")
        self.assertEqual(st, 200)
        self.assertIn("portico_access_log_dropped_total 3\n", body.decode())
        self.assertIn("cannot open access log", p.output())
        os.mkdir(os.path.join(p.dir, "logs"))
        # a retry comes at most once a second: keep sending until a line lands
        deadline = time.monotonic() + 15
        k = 0
        found = None
        while time.monotonic() < deadline and found is None:
            self.assertEqual(curl(f"{url}/found/{k}")[0], 200)
            k += 1
            found = wait_line(log, lambda l: l["path"].startswith("/found/"), timeout=0.3)
        self.assertIsNotNone(found, p.output())
        self.assertIn("opened", p.output())
        self.assertFalse([l for l in log_lines(log) if l["path"].startswith("/lost/")])

    def test_open_fails_during_fd_exhaustion_then_recovers(self):
        """The issue's own case: the lazy first open hits EMFILE while clients
        hold every descriptor; once they let go, the log must come back."""
        d = tempfile.mkdtemp(prefix="portico-emfile-")
        self.addCleanup(shutil.rmtree, d, True)
        port, admin = free_port(), free_port()
        with open(os.path.join(d, "p.yaml"), "w") as f:
            f.write(f"listeners: [ {{ address: 127.0.0.1:{port} }} ]\n"
                    f"admin: {{ address: 127.0.0.1:{admin} }}\n"
                    "access_log: { path: access.log }\n"
                    "routes:\n  - match: { prefix: / }\n    respond: { body: \"ok\\n\" }\n")
        limit = 64
        err_path = os.path.join(d, "err.log")
        err = open(err_path, "wb")
        self.addCleanup(err.close)
        proc = subprocess.Popen(
            [BIN, "-c", "p.yaml", "-w", "1"], cwd=d, stdout=err, stderr=subprocess.STDOUT,
            preexec_fn=lambda: resource.setrlimit(resource.RLIMIT_NOFILE, (limit, limit)))

        def stop():
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)
        self.addCleanup(stop)
        wait_port(port, proc=proc)
        wait_port(admin, proc=proc)
        log = os.path.join(d, "access.log")
        used = len(os.listdir(f"/proc/{proc.pid}/fd"))
        held = []
        try:
            # one connection per free descriptor, and a few more waiting in the backlog
            for _ in range(limit - used + 4):
                held.append(socket.create_connection(("127.0.0.1", port), timeout=5))
            self.assertTrue(wait_for(lambda: len(os.listdir(f"/proc/{proc.pid}/fd")) >= limit),
                            "could not use up the descriptors")
            s = held[0]
            s.sendall(b"GET /starved HTTP/1.1\r\nHost: x\r\n\r\n")
            self.assertTrue(s.recv(4096).startswith(b"HTTP/1.1 200"))
            self.assertTrue(wait_for(lambda: b"cannot open access log" in read(err_path)))
            self.assertFalse(os.path.exists(log))
        finally:
            for h in held:
                h.close()
        # descriptors are back: within about a second a line lands again
        deadline = time.monotonic() + 15
        k, found = 0, None
        while time.monotonic() < deadline and found is None:
            self.assertEqual(curl(f"http://127.0.0.1:{port}/back/{k}")[0], 200)
            k += 1
            found = wait_line(log, lambda l: l["path"].startswith("/back/"), timeout=0.3)
        self.assertIsNotNone(found, read(err_path))
        st, _, body, _ = curl(f"http://127.0.0.1:{admin}/metrics")
        dropped = [l for l in body.decode().splitlines()
                   if l.startswith("portico_access_log_dropped_total ")]
        self.assertEqual(len(dropped), 1)
        self.assertGreaterEqual(int(dropped[0].split()[1]), 1)
        self.assertFalse([l for l in log_lines(log) if l["path"] == "/starved"])
        stop()
        self.assertEqual(proc.returncode, 0)


if __name__ == "__main__":
    unittest.main()
